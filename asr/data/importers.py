"""Corpus importers: detect a corpus layout and turn it into manifest utterances.

Supported layouts (detected in this order):

- ``kaldi``: a data dir with ``wav.scp``, ``text`` and optionally ``utt2spk`` and ``segments``
  (each segment is cut out of its recording into a WAV file of its own);
- ``librispeech``: speaker/chapter folders with ``*.trans.txt`` beside ``.flac`` files;
- ``fsdd``: the Free Spoken Digit Dataset, ``{digit}_{speaker}_{take}.wav`` (in ``recordings/``);
- ``folder``: audio files with a ``.txt`` transcript of the same name beside each.

A file that cannot be read (corrupt, empty, too short, missing) is skipped and counted with its
reason; the import goes on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import soundfile as sf
from num2words import num2words

from asr import atomic
from asr.audio import AudioError, AudioInfo, audio_info
from asr.data.manifest import Utterance
from asr.text import normalize_text

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au")
_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
# A segment may end this far (seconds) past its recording's end: times rounded to 10 ms, as
# Kaldi recipes write them, are cut at the end with a warning; anything further is an error.
SEGMENT_END_TOLERANCE = 0.01


class CorpusFormatError(ValueError):
    """A corpus folder whose layout is not recognized or is inconsistent."""


@dataclass
class _Entry:
    """One utterance as a layout describes it, before the audio is checked."""

    audio: Path
    text: str
    speaker: str | None = None
    utt_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportResult:
    format: str
    utterances: list[Utterance]
    skipped: list[tuple[str, str]]  # (path or utt id, reason)
    warnings: list[str] = field(default_factory=list)

    @property
    def hours(self) -> float:
        return sum(u.duration for u in self.utterances) / 3600


def _table_lines(path: Path, maxsplit: int = -1) -> Iterator[tuple[int, str, list[str]]]:
    """The non-blank lines of a Kaldi table file as (line number, the line, its fields). As in
    Kaldi, any run of whitespace (spaces or tabs) separates the fields."""
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split(maxsplit=maxsplit)
        if fields:
            yield lineno, line, fields


def _read_table(path: Path) -> dict[str, str]:
    """Kaldi two-column table: first token is the key, the rest of the line the value."""
    table = {}
    for lineno, line, fields in _table_lines(path, maxsplit=1):
        if len(fields) < 2:
            raise CorpusFormatError(f"{path}:{lineno}: expected '<key> <value>', got {line!r}")
        table[fields[0]] = fields[1].strip()
    return table


def _is_kaldi(src: Path) -> bool:
    return (src / "wav.scp").is_file() and (src / "text").is_file()


def _kaldi_audio(src: Path, location: str) -> Path | None:
    """The audio file of a ``wav.scp`` value; None for a piped command that names none."""
    if location.endswith("|"):
        # A piped command: use the audio file it names, if it names one.
        names = [t for t in location.split() if t.lower().endswith(AUDIO_SUFFIXES)]
        if not names:
            return None
        location = names[-1]
    audio = Path(location)
    if not audio.is_absolute():
        # Kaldi paths are relative to the recipe folder; try the data dir, then its parents.
        candidates = [src / audio, src.parent / audio, src.parent.parent / audio]
        audio = next((c for c in candidates if c.exists()), candidates[0])
    return audio


def _scan_kaldi(src: Path, skipped: list[tuple[str, str]], segments_dir: Path | None = None,
                warnings: list[str] | None = None) -> Iterator[_Entry]:
    wavs = _read_table(src / "wav.scp")
    texts = _read_table(src / "text")
    spk = _read_table(src / "utt2spk") if (src / "utt2spk").is_file() else {}
    if (src / "segments").is_file():
        yield from _cut_segments(src, wavs, texts, spk, skipped, segments_dir,
                                 [] if warnings is None else warnings)
        return
    for utt_id, text in texts.items():
        if utt_id not in wavs:
            skipped.append((utt_id, "in text but not in wav.scp"))
            continue
        audio = _kaldi_audio(src, wavs[utt_id])
        if audio is None:
            skipped.append((utt_id, f"piped wav.scp entry without a file: {wavs[utt_id]!r}"))
            continue
        yield _Entry(audio, text, spk.get(utt_id), utt_id)


@dataclass(frozen=True)
class _Segment:
    utt_id: str
    recording: str
    start: float
    end: float      # -1: to the end of the recording
    where: str      # "<segments file>:<line>", for messages


def _read_segments(path: Path, recordings: dict[str, str]) -> list[_Segment]:
    """Kaldi ``segments``: ``<utt-id> <recording-id> <start-seconds> <end-seconds>`` a line;
    every line is checked before any audio is read."""
    segments: list[_Segment] = []
    first_line: dict[str, int] = {}
    for lineno, line, fields in _table_lines(path):
        where = f"{path}:{lineno}"
        if len(fields) != 4:
            raise CorpusFormatError(f"{where}: expected '<utt-id> <recording-id> "
                                    f"<start-seconds> <end-seconds>', got {line!r}")
        utt, rec, start_text, end_text = fields
        if utt in first_line:
            raise CorpusFormatError(f"{where}: utterance {utt!r} is defined twice (first on "
                                    f"line {first_line[utt]})")
        if rec not in recordings:
            raise CorpusFormatError(f"{where}: utterance {utt!r}: recording {rec!r} is not a "
                                    f"key of {path.parent / 'wav.scp'}")
        try:
            start, end = float(start_text), float(end_text)
        except ValueError:
            start = end = math.nan
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0:
            raise CorpusFormatError(f"{where}: utterance {utt!r}: expected start >= 0 and end "
                                    f"in seconds (end -1: to the end of the recording), got "
                                    f"{start_text!r} {end_text!r}")
        if end != -1 and start >= end:
            raise CorpusFormatError(f"{where}: utterance {utt!r}: start {start_text} s is not "
                                    f"before end {end_text} s")
        first_line[utt] = lineno
        segments.append(_Segment(utt, rec, start, end, where))
    return segments


def _segment_file_name(utt_id: str) -> str:
    return re.sub(r"[^\w.-]", "_", utt_id).lstrip(".") + ".wav"


def _cut(info: AudioInfo, cuts: list[tuple[float, float, Path]]) -> None:
    """Write seconds [start, end) of ``info``'s file to WAV ``out`` (atomically) for each
    ``(start, end, out)`` of ``cuts``, in the source's sample format where WAV holds it, else
    float. The recording is opened once for all its cuts."""
    subtype = info.subtype if sf.check_format("WAV", info.subtype) else "FLOAT"
    with sf.SoundFile(info.path) as f:
        for start, end, out in cuts:
            f.seek(round(start * info.sample_rate))
            data = f.read(round(end * info.sample_rate) - f.tell(), dtype="float64",
                          always_2d=True)
            with atomic.replacing(out) as tmp:
                sf.write(str(tmp), data, info.sample_rate, subtype=subtype, format="WAV")


def _cut_segments(src: Path, wavs: dict[str, str], texts: dict[str, str],
                  spk: dict[str, str], skipped: list[tuple[str, str]],
                  segments_dir: Path | None, warnings: list[str]) -> Iterator[_Entry]:
    segments = _read_segments(src / "segments", wavs)
    if segments_dir is None:
        raise CorpusFormatError(f"{src / 'segments'}: the segments are cut out of their "
                                "recordings into WAV files, so the import needs a folder for "
                                "them (segments_dir)")
    # Each recording's header (or why it cannot be used), then every end checked against it
    # before the first file is cut.
    by_recording: dict[str, list[_Segment]] = {}
    for seg in segments:
        by_recording.setdefault(seg.recording, []).append(seg)
    recordings: dict[str, AudioInfo | str] = {}
    for rec in by_recording:
        audio = _kaldi_audio(src, wavs[rec])
        try:
            recordings[rec] = (audio_info(audio, min_duration=0) if audio is not None
                               else f"piped wav.scp entry without a file: {wavs[rec]!r}")
        except AudioError as err:
            recordings[rec] = str(err)
    ends: dict[str, float] = {}
    for seg in segments:
        info = recordings[seg.recording]
        if isinstance(info, str):
            continue
        end = info.duration if seg.end == -1 else seg.end
        if end > info.duration:
            beyond = (f"{seg.where}: utterance {seg.utt_id!r}: end {seg.end:g} s is beyond the "
                      f"{info.duration:g} s of recording {seg.recording!r} ({info.path})")
            if end > info.duration + SEGMENT_END_TOLERANCE:
                raise CorpusFormatError(f"{beyond}; up to {SEGMENT_END_TOLERANCE:g} s past "
                                        "the end is cut there with a warning")
            warnings.append(f"{beyond}; cut at {info.duration:g} s")
            end = info.duration
        if seg.start >= end:
            raise CorpusFormatError(f"{seg.where}: utterance {seg.utt_id!r}: start "
                                    f"{seg.start:g} s is not before the end of recording "
                                    f"{seg.recording!r} ({info.duration:g} s)")
        ends[seg.utt_id] = end
    for utt_id in sorted(texts.keys() - {s.utt_id for s in segments}):
        skipped.append((utt_id, "in text but not in segments"))
    # A recording at a time (in order of first use), so that each is opened once.
    for rec, of_rec in by_recording.items():
        info = recordings[rec]
        for seg in of_rec:
            if seg.utt_id not in texts:
                skipped.append((seg.utt_id, "in segments but not in text"))
            elif isinstance(info, str):
                skipped.append((seg.utt_id, f"recording {rec!r}: {info}"))
        kept = [seg for seg in of_rec if seg.utt_id in texts]
        if isinstance(info, str) or not kept:
            continue
        outs = {seg.utt_id: segments_dir / _segment_file_name(seg.utt_id) for seg in kept}
        _cut(info, [(seg.start, ends[seg.utt_id], outs[seg.utt_id]) for seg in kept])
        for seg in kept:
            yield _Entry(outs[seg.utt_id], texts[seg.utt_id], spk.get(seg.utt_id), seg.utt_id,
                         {"recording": rec, "segment_start": seg.start,
                          "segment_end": ends[seg.utt_id]})


def _is_librispeech(src: Path) -> bool:
    return next(src.glob("**/*.trans.txt"), None) is not None


def _scan_librispeech(src: Path, skipped: list[tuple[str, str]]) -> Iterator[_Entry]:
    for trans in sorted(src.glob("**/*.trans.txt")):
        for utt_id, text in _read_table(trans).items():
            audio = trans.parent / f"{utt_id}.flac"
            yield _Entry(audio, text, utt_id.split("-")[0], utt_id)


def _fsdd_dir(src: Path) -> Path:
    return src / "recordings" if (src / "recordings").is_dir() else src


def _is_fsdd(src: Path) -> bool:
    names = [p.name for p in _fsdd_dir(src).glob("*.wav")]
    return bool(names) and all(_FSDD_NAME.match(n) for n in names)


def _scan_fsdd(src: Path, skipped: list[tuple[str, str]]) -> Iterator[_Entry]:
    for audio in sorted(_fsdd_dir(src).glob("*.wav")):
        match = _FSDD_NAME.match(audio.name)
        assert match is not None  # guaranteed by _is_fsdd
        digit, speaker, take = match.groups()
        yield _Entry(audio, num2words(int(digit)), speaker, audio.stem, {"take": int(take)})


def _is_folder(src: Path) -> bool:
    return any(p.suffix.lower() in AUDIO_SUFFIXES and p.with_suffix(".txt").is_file()
               for p in src.rglob("*"))


def _scan_folder(src: Path, skipped: list[tuple[str, str]]) -> Iterator[_Entry]:
    for audio in sorted(p for p in src.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        transcript = audio.with_suffix(".txt")
        if not transcript.is_file():
            skipped.append((str(audio), "no transcript (.txt) beside it"))
            continue
        rel = audio.relative_to(src)
        speaker = rel.parts[0] if len(rel.parts) > 1 else None
        utt_id = str(rel.with_suffix("")).replace("/", "_")
        yield _Entry(audio, transcript.read_text(encoding="utf-8").strip(), speaker, utt_id)


# Detection order matters: a Kaldi dir may also hold a folder of audio files.
LAYOUTS: dict[str, tuple[Callable[[Path], bool], Callable[..., Iterator[_Entry]]]] = {
    "kaldi": (_is_kaldi, _scan_kaldi),
    "librispeech": (_is_librispeech, _scan_librispeech),
    "fsdd": (_is_fsdd, _scan_fsdd),
    "folder": (_is_folder, _scan_folder),
}


def detect_format(src: str | Path) -> str:
    """Name of the layout of corpus folder ``src`` (a key of :data:`LAYOUTS`)."""
    src = Path(src)
    if not src.is_dir():
        raise CorpusFormatError(f"{src}: not a folder")
    for name, (detect, _) in LAYOUTS.items():
        if detect(src):
            return name
    raise CorpusFormatError(
        f"{src}: no known corpus layout (expected one of {list(LAYOUTS)}: a Kaldi data dir with "
        "wav.scp and text, LibriSpeech *.trans.txt, FSDD {digit}_{speaker}_{take}.wav files, "
        "or audio files with .txt transcripts beside them)"
    )


def import_corpus(
    src: str | Path,
    format: str | None = None,
    min_duration: float = 0.05,
    progress: Callable[[Iterator[_Entry]], Iterator[_Entry]] | None = None,
    segments_dir: str | Path | None = None,
) -> ImportResult:
    """Import a corpus folder into manifest utterances.

    Args:
        src: corpus folder.
        format: layout name; detected when ``None``.
        min_duration: shorter audio is skipped (seconds).
        progress: optional wrapper around the entry iterator (e.g. a progress bar).
        segments_dir: where the segments of a Kaldi dir with a ``segments`` file are written,
            one WAV file each (``<utt-id>.wav``); required for such a dir.

    Returns:
        The utterances (absolute audio paths, normalized text, the transcript as found in
        ``text_raw``), the skipped entries with their reasons, and warnings (segment ends
        cut to their recording's end).
    """
    src = Path(src).resolve()
    fmt = format or detect_format(src)
    if fmt not in LAYOUTS:
        raise CorpusFormatError(f"format: expected one of {list(LAYOUTS)}, got {fmt!r}")
    skipped: list[tuple[str, str]] = []
    warnings: list[str] = []
    scan = LAYOUTS[fmt][1]
    if fmt == "kaldi":
        scan = partial(scan, segments_dir=None if segments_dir is None else Path(segments_dir),
                       warnings=warnings)
    entries = scan(src, skipped)
    if progress is not None:
        entries = progress(entries)
    utterances = []
    rates: dict[int, list[str]] = {}
    for entry in entries:
        try:
            info = audio_info(entry.audio, min_duration=min_duration)
        except AudioError as err:
            skipped.append((err.path, err.reason))
            continue
        text = normalize_text(entry.text)
        if not text:
            skipped.append((str(entry.audio), f"empty transcript after normalization: "
                                              f"{entry.text!r}"))
            continue
        rates.setdefault(info.sample_rate, []).append(str(entry.audio))
        utterances.append(Utterance(
            audio_filepath=str(entry.audio.resolve()), duration=round(info.duration, 4),
            text=text, speaker=entry.speaker, utt_id=entry.utt_id,
            extra={**entry.extra, "text_raw": entry.text},
        ))
    warnings += _rate_warnings(rates)
    return ImportResult(fmt, utterances, skipped, warnings)


# Below this, speech loses the formants that tell consonants apart.
MIN_SPEECH_RATE = 8000


def _rate_warnings(rates: dict[int, list[str]]) -> list[str]:
    """A corpus of mixed sample rates, or of rates too low for speech, is imported (every
    file is resampled to the model's rate when read), but said."""
    out = []
    if len(rates) > 1:
        counts = ", ".join(f"{r} Hz: {len(p)} files (e.g. {p[0]})"
                           for r, p in sorted(rates.items(), reverse=True))
        out.append(f"mixed sample rates ({counts}); every file is resampled to the model's "
                   f"features.sample_rate when read, and a lower rate has an empty top band")
    low = {r: p for r, p in rates.items() if r < MIN_SPEECH_RATE}
    for r, p in sorted(low.items()):
        out.append(f"{len(p)} files at {r} Hz, below {MIN_SPEECH_RATE} Hz (e.g. {p[0]}): too "
                   f"narrow-band for speech recognition")
    return out
