"""Corpus importers: detect a corpus layout and turn it into manifest utterances.

Supported layouts (detected in this order):

- ``kaldi``: a data dir with ``wav.scp``, ``text`` and optionally ``utt2spk``;
- ``librispeech``: speaker/chapter folders with ``*.trans.txt`` beside ``.flac`` files;
- ``fsdd``: the Free Spoken Digit Dataset, ``{digit}_{speaker}_{take}.wav`` (in ``recordings/``);
- ``folder``: audio files with a ``.txt`` transcript of the same name beside each.

A file that cannot be read (corrupt, empty, too short, missing) is skipped and counted with its
reason; the import goes on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from num2words import num2words

from asr.audio import AudioError, audio_info
from asr.data.manifest import Utterance
from asr.text import normalize_text

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au")
_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


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

    @property
    def hours(self) -> float:
        return sum(u.duration for u in self.utterances) / 3600


def _read_table(path: Path) -> dict[str, str]:
    """Kaldi two-column table: first token is the key, the rest of the line the value. As in
    Kaldi, any run of whitespace (spaces or tabs) separates the key from the value."""
    table = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        key, value = parts[0], parts[1] if len(parts) > 1 else ""
        if not value.strip():
            raise CorpusFormatError(f"{path}:{lineno}: expected '<key> <value>', got {line!r}")
        table[key] = value.strip()
    return table


def _is_kaldi(src: Path) -> bool:
    return (src / "wav.scp").is_file() and (src / "text").is_file()


def _scan_kaldi(src: Path, skipped: list[tuple[str, str]]) -> Iterator[_Entry]:
    if (src / "segments").is_file():
        raise CorpusFormatError(f"{src / 'segments'}: Kaldi segments are not supported; "
                                "cut the recordings into one file per utterance first")
    wavs = _read_table(src / "wav.scp")
    texts = _read_table(src / "text")
    spk = _read_table(src / "utt2spk") if (src / "utt2spk").is_file() else {}
    for utt_id, text in texts.items():
        if utt_id not in wavs:
            skipped.append((utt_id, "in text but not in wav.scp"))
            continue
        location = wavs[utt_id]
        if location.endswith("|"):
            # A piped command: use the audio file it names, if it names one.
            names = [t for t in location.split() if t.lower().endswith(AUDIO_SUFFIXES)]
            if not names:
                skipped.append((utt_id, f"piped wav.scp entry without a file: {location!r}"))
                continue
            location = names[-1]
        audio = Path(location)
        if not audio.is_absolute():
            # Kaldi paths are relative to the recipe folder; try the data dir, then its parents.
            candidates = [src / audio, src.parent / audio, src.parent.parent / audio]
            audio = next((c for c in candidates if c.exists()), candidates[0])
        yield _Entry(audio, text, spk.get(utt_id), utt_id)


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
) -> ImportResult:
    """Import a corpus folder into manifest utterances.

    Args:
        src: corpus folder.
        format: layout name; detected when ``None``.
        min_duration: shorter audio is skipped (seconds).
        progress: optional wrapper around the entry iterator (e.g. a progress bar).

    Returns:
        The utterances (absolute audio paths, normalized text, the transcript as found in
        ``text_raw``) and the skipped entries with their reasons.
    """
    src = Path(src).resolve()
    fmt = format or detect_format(src)
    if fmt not in LAYOUTS:
        raise CorpusFormatError(f"format: expected one of {list(LAYOUTS)}, got {fmt!r}")
    skipped: list[tuple[str, str]] = []
    entries = LAYOUTS[fmt][1](src, skipped)
    if progress is not None:
        entries = progress(entries)
    utterances = []
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
        utterances.append(Utterance(
            audio_filepath=str(entry.audio.resolve()), duration=round(info.duration, 4),
            text=text, speaker=entry.speaker, utt_id=entry.utt_id,
            extra={**entry.extra, "text_raw": entry.text},
        ))
    return ImportResult(fmt, utterances, skipped)
