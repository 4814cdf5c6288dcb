"""A synthetic speech corpus spoken by text-to-speech voices; needs no download.

Each utterance is one sentence spoken by one *voice* (an engine's accent x variant, e.g.
``espeak:en-gb-scotland+f3``) at a random rate and pitch, optionally with white noise at a given
SNR. Whole voices are held out for the test split (and others for dev), so no test voice is
heard in training; by default a tenth of the sentences are held out for the test split too, so
that the test measures recognition rather than recall of training sentences.

The plan (who says what, how) is drawn from one seeded RNG before any audio is made, so the same
seed and text give the same corpus whatever the number of workers; finished files are kept, so a
killed run continues where it stopped. ``synth.json`` records a hash of the inputs and, per
file, of what it says and how; a rerun with other inputs (text, voices, seed, rates, noise,
sample rate, ...) re-makes exactly the files whose plan changed and names what changed, so old
audio never stands under new transcripts.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from itertools import zip_longest
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from asr import atomic
from asr.audio import AudioError, load_audio, read_audio, write_audio
from asr.config_errors import check
from asr.data.manifest import Utterance, write_manifest
from asr.text import normalize_text

# espeak-ng variants that are sound effects rather than voices.
_ESPEAK_SKIP = ("robo", "robot", "demonic", "whisper", "announcer", "fast", "tweaky", "mr")
_ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp",
                   "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
# Speech runs at about 0.06-0.08 s per character; far less means the voice dropped words.
_MIN_SECONDS_PER_CHAR = 0.02


class SynthError(RuntimeError):
    """A synthesizer that is missing or failed."""


# ---------------------------------------------------------------------------------------------
# Engines: each lists its voices and renders one sentence to a WAV file.


@dataclass(frozen=True)
class Engine:
    name: str
    executable: str
    list_voices: Callable[[], list[str]]
    render: Callable[[str, str, int, int, Path], None]  # voice, text, rate wpm, pitch 0-99, out

    def available(self) -> bool:
        return shutil.which(self.executable) is not None


def _run(cmd: Sequence[str], text_input: str | None = None) -> str:
    proc = subprocess.run(list(cmd), input=text_input, capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        raise SynthError(f"{' '.join(cmd[:3])}...: exit {proc.returncode}: {proc.stderr[-300:]}")
    return proc.stdout


def _espeak_voices() -> list[str]:
    out = _run(["espeak-ng", "--voices=variant"])
    variants = sorted({line.split()[4].removeprefix("!v/") for line in out.splitlines()[1:]
                       if len(line.split()) >= 5})
    variants = [v for v in variants if not any(s in v.lower() for s in _ESPEAK_SKIP)]
    return [f"{accent}+{variant}" for accent in _ESPEAK_ACCENTS for variant in variants]


def _espeak_render(voice: str, text: str, rate: int, pitch: int, out: Path) -> None:
    # Text goes through stdin so that a sentence starting with '-' is never read as an option.
    _run(["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", str(out)], text)


def _flite_voices() -> list[str]:
    out = _run(["flite", "-lv"])
    # *_time voices are limited-domain (they only speak clock times).
    names = out.split(":", 1)[-1].split() if ":" in out else []
    return sorted(v for v in names if not v.endswith("_time"))


def _flite_render(voice: str, text: str, rate: int, pitch: int, out: Path) -> None:
    stretch = 170.0 / rate  # espeak's default rate is about 170 wpm
    f0 = 80 + pitch * 1.4   # map 0-99 onto about 80-220 Hz
    _run(["flite", "-voice", voice, "--setf", f"duration_stretch={stretch:.3f}",
          "--setf", f"int_f0_target_mean={f0:.0f}", "-t", text, "-o", str(out)])


def _festival_voices() -> list[str]:
    root = Path("/usr/share/festival/voices")
    return sorted(p.name for p in root.glob("*/*") if p.is_dir()) if root.is_dir() else []


def _festival_render(voice: str, text: str, rate: int, pitch: int, out: Path) -> None:
    stretch = 170.0 / rate
    _run(["text2wave", "-o", str(out), "-eval", f"(voice_{voice})",
          "-eval", f"(Parameter.set 'Duration_Stretch {stretch:.3f})"], text)


ENGINES: dict[str, Engine] = {
    "espeak": Engine("espeak", "espeak-ng", _espeak_voices, _espeak_render),
    "flite": Engine("flite", "flite", _flite_voices, _flite_render),
    "festival": Engine("festival", "text2wave", _festival_voices, _festival_render),
}


def available_voices(engines: Sequence[str]) -> list[str]:
    """``engine:voice`` names of every usable voice of the named engines (sorted)."""
    voices = []
    for name in engines:
        check(name in ENGINES, "synth.engines", f"names from {sorted(ENGINES)}", name)
        engine = ENGINES[name]
        if not engine.available():
            raise SynthError(f"synth.engines: {name!r} needs {engine.executable!r}, which is not "
                             f"installed (apt-get install {engine.executable})")
        voices += [f"{name}:{v}" for v in engine.list_voices()]
    return sorted(voices)


# ---------------------------------------------------------------------------------------------
# The plan and its rendering.


@dataclass
class SynthConfig:
    """Settings of :func:`synthesize_corpus`.

    Attributes:
        num_utts: utterances to make.
        num_voices: voices drawn from the available ones.
        test_voices, dev_voices: how many of them are held out for test / dev.
        extra_train_voices: more voices drawn after those, for training only: the split of
            the first ``num_voices`` (and so the held-out voices) stays what it was.
        extra_test_utts: more utterances after the ``num_utts``, spoken by the test voices
            only: a larger test set whose first utterances, and whose training and dev splits,
            stay what they were.
        text_holdout: fraction of sentences spoken only in the test split.
        rate: words-per-minute range; pitch: espeak pitch range (0-99).
        engines: synthesizers to draw voices from (espeak, flite, festival).
        snr_db: white noise at this SNR (dB); ``None`` for clean audio.
        sample_rate: rate of the written FLAC files.
        seed: the corpus is a function of the seed, the text and the installed voices.
        workers: parallel renderers (default: every core).
    """

    num_utts: int = 1000
    num_voices: int = 48
    test_voices: int = 8
    dev_voices: int = 4
    extra_train_voices: int = 0
    extra_test_utts: int = 0
    text_holdout: float = 0.1
    rate: tuple[int, int] = (130, 200)
    pitch: tuple[int, int] = (25, 75)
    engines: list[str] = field(default_factory=lambda: ["espeak"])
    snr_db: float | None = None
    sample_rate: int = 16000
    seed: int = 0
    workers: int = 0

    def __post_init__(self) -> None:
        check(self.num_utts >= 1, "synth.num_utts", ">= 1", self.num_utts)
        check(self.test_voices >= 1, "synth.test_voices", ">= 1", self.test_voices)
        check(self.dev_voices >= 0, "synth.dev_voices", ">= 0", self.dev_voices)
        check(self.num_voices > self.test_voices + self.dev_voices, "synth.num_voices",
              f"> test_voices + dev_voices ({self.test_voices + self.dev_voices})",
              self.num_voices)
        check(self.extra_train_voices >= 0, "synth.extra_train_voices", ">= 0",
              self.extra_train_voices)
        check(self.extra_test_utts >= 0, "synth.extra_test_utts", ">= 0", self.extra_test_utts)
        check(0 <= self.text_holdout < 1, "synth.text_holdout", "in [0, 1)", self.text_holdout)
        check(self.rate[0] <= self.rate[1], "synth.rate", "(low, high)", self.rate)
        check(0 <= self.pitch[0] <= self.pitch[1] <= 99, "synth.pitch", "0 <= low <= high <= 99",
              self.pitch)


@dataclass
class _Job:
    index: int
    utt_id: str
    split: str
    voice: str
    rate: int
    pitch: int
    text: str
    out: str
    snr_db: float | None
    sample_rate: int
    noise_seed: int


def builtin_text() -> list[str]:
    """The sentences shipped with the package (LJ Speech excerpts and digit strings)."""
    text = resources.files("asr.resources").joinpath("default_text.txt").read_text("utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def read_sentences(path: str | Path | None) -> list[str]:
    """Normalized, de-duplicated sentences of a text file (one per line; ``#`` starts a comment
    line) or the built-in text."""
    raw = builtin_text() if path is None else Path(path).read_text("utf-8").splitlines()
    seen, out = set(), []
    for line in raw:
        norm = "" if line.startswith("#") else normalize_text(line)
        if norm and norm not in seen:
            seen.add(norm)
            out.append(norm)
    if len(out) < 2:
        raise SynthError(f"{path or 'built-in text'}: needs at least 2 distinct sentences, "
                         f"found {len(out)}")
    return out


def plan_corpus(sentences: Sequence[str], voices: Sequence[str], cfg: SynthConfig,
                out_dir: Path) -> tuple[list[_Job], dict[str, list[str]]]:
    """Decide every utterance's voice, sentence, rate and pitch from ``cfg.seed``."""
    wanted = cfg.num_voices + cfg.extra_train_voices
    if len(voices) < wanted:
        raise SynthError(f"synth.num_voices + extra_train_voices: {wanted} requested but only "
                         f"{len(voices)} voices are available from engines {cfg.engines}")
    rng = random.Random(cfg.seed)
    # Round-robin over engines so that espeak's hundreds of variants do not crowd out the
    # handful of flite/festival voices.
    by_engine: dict[str, list[str]] = {}
    for voice in sorted(voices):
        by_engine.setdefault(voice.split(":", 1)[0], []).append(voice)
    for engine_voices in by_engine.values():
        rng.shuffle(engine_voices)
    interleaved = [v for group in zip_longest(*by_engine.values()) for v in group if v]
    chosen = interleaved[:cfg.num_voices]
    rng.shuffle(chosen)
    split_voices = {
        "test": sorted(chosen[:cfg.test_voices]),
        "dev": sorted(chosen[cfg.test_voices:cfg.test_voices + cfg.dev_voices]),
        "train": sorted(chosen[cfg.test_voices + cfg.dev_voices:]
                        + interleaved[cfg.num_voices:wanted]),
    }
    chosen = chosen + interleaved[cfg.num_voices:wanted]
    shuffled = list(sentences)
    rng.shuffle(shuffled)
    n_held = max(1, round(cfg.text_holdout * len(shuffled))) if cfg.text_holdout > 0 else 0
    test_text, train_text = (shuffled[:n_held], shuffled[n_held:]) if n_held else (
        shuffled, shuffled)
    voice_split = {v: s for s, vs in split_voices.items() for v in vs}
    jobs = []
    # the extra test utterances come after every draw of the first num_utts, so adding them
    # changes none of those
    for i in range(cfg.num_utts + cfg.extra_test_utts):
        if i >= cfg.num_utts:
            voice = rng.choice(split_voices["test"])
        else:
            voice = chosen[i % len(chosen)] if i < len(chosen) else rng.choice(chosen)
        split = voice_split[voice]
        pool = test_text if split == "test" else train_text
        utt_id = f"synth{i:06d}"
        jobs.append(_Job(
            index=i, utt_id=utt_id, split=split, voice=voice,
            rate=rng.randint(*cfg.rate), pitch=rng.randint(*cfg.pitch),
            text=rng.choice(pool), out=str(out_dir / "audio" / split / f"{utt_id}.flac"),
            snr_db=cfg.snr_db, sample_rate=cfg.sample_rate,
            noise_seed=cfg.seed * 1_000_003 + i,
        ))
    return jobs, split_voices


def add_noise(wav: torch.Tensor, snr_db: float, rng: np.random.Generator) -> torch.Tensor:
    """Add white Gaussian noise at ``snr_db`` relative to the signal's mean power."""
    power = float(wav.pow(2).mean())
    noise = rng.standard_normal(wav.shape[0]).astype(np.float32)
    noise *= np.sqrt(power / 10 ** (snr_db / 10))
    return wav + torch.from_numpy(noise)


def _render(job: _Job) -> tuple[int, float | None, str | None]:
    """Render one job; returns (index, duration or None, error or None)."""
    out = Path(job.out)
    if out.is_file():
        # Files are renamed into place when complete, but a damaged one is re-made: decoding
        # the whole file (not only its header) is what proves it usable.
        try:
            wav, sr = read_audio(out)
            return job.index, wav.shape[0] / sr, None
        except AudioError:
            out.unlink()
    engine_name, voice = job.voice.split(":", 1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            wav_path = Path(tmp) / "tts.wav"
            ENGINES[engine_name].render(voice, job.text, job.rate, job.pitch, wav_path)
            wav = load_audio(wav_path, job.sample_rate)
        if wav.shape[0] / job.sample_rate < _MIN_SECONDS_PER_CHAR * len(job.text):
            raise SynthError(f"{job.voice}: implausibly short audio "
                             f"({wav.shape[0] / job.sample_rate:.2f} s for {len(job.text)} chars)")
        if job.snr_db is not None:
            wav = add_noise(wav, job.snr_db, np.random.default_rng(job.noise_seed))
        peak = float(wav.abs().max())
        if peak > 0.99:
            wav = wav * (0.99 / peak)
        partial = out.with_suffix(".part.flac")
        write_audio(partial, wav, job.sample_rate)
        partial.replace(out)
        return job.index, wav.shape[0] / job.sample_rate, None
    except (SynthError, AudioError, subprocess.TimeoutExpired) as err:
        return job.index, None, str(err)


# ---------------------------------------------------------------------------------------------
# What the audio of a folder was made from (synth.json).

STATE_FILE = "synth.json"
_AUDIO_FILE = re.compile(r"synth\d{6}(\.part)?\.flac")


def _sha256(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode("utf-8")).hexdigest()


def synth_inputs(cfg: SynthConfig, sentences: Sequence[str], voices: Sequence[str]
                 ) -> dict[str, object]:
    """Everything the audio depends on: the settings (but ``workers``), the text and the
    voices available (the plan draws from them)."""
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()
              if k != "workers"}
    return {"config": config, "sentences": len(sentences), "text_sha256": _sha256(sentences),
            "voices": len(voices), "voices_sha256": _sha256(list(voices))}


def _job_hash(job: _Job) -> str:
    """What one file says and how; the same hash means the same audio."""
    return _sha256([job.voice, job.text, job.rate, job.pitch, job.snr_db, job.sample_rate,
                    job.noise_seed])


def changed_inputs(old: dict, new: dict) -> list[str]:
    """Human-readable differences between two :func:`synth_inputs`."""
    changes = []
    old_cfg, new_cfg = old.get("config", {}), new["config"]
    for key, value in new_cfg.items():
        if old_cfg.get(key) != value:
            changes.append(f"{key} {old_cfg.get(key)!r} -> {value!r}")
    if old.get("text_sha256") != new["text_sha256"]:
        changes.append(f"the text ({old.get('sentences')} -> {new['sentences']} sentences)")
    if old.get("voices_sha256") != new["voices_sha256"]:
        changes.append(f"the voices available ({old.get('voices')} -> {new['voices']})")
    return changes


def _reconcile(out_dir: Path, jobs: list[_Job], inputs: dict) -> tuple[list[str], int]:
    """Delete the audio under ``out_dir`` not made from this plan, then record the plan in
    ``synth.json``; returns (what changed, files deleted).

    The order survives a kill at any point: stale files go before the new record is written,
    and a file is renamed into place only when complete, so every file on disk is the one its
    record describes."""
    state_path = out_dir / STATE_FILE
    unreadable = False
    try:
        old = json.loads(state_path.read_text("utf-8"))
    except FileNotFoundError:
        old = None
    except ValueError:  # torn by hand or by a disk fault: trust none of the audio
        old, unreadable = {}, True
    wanted = {str(Path(j.out).relative_to(out_dir)): _job_hash(j) for j in jobs}
    recorded = (old or {}).get("files", {})
    removed = 0
    for split in ("train", "dev", "test"):
        for path in sorted((out_dir / "audio" / split).glob("synth*.flac")):
            if not _AUDIO_FILE.fullmatch(path.name):
                continue  # not one of ours
            rel = str(path.relative_to(out_dir))
            if rel not in wanted or recorded.get(rel) != wanted[rel]:  # .part.flac too
                path.unlink()
                removed += 1
    if not removed:
        changes = []
    elif old is None or unreadable:
        changes = [f"no readable {STATE_FILE} records what the audio there was made from"]
    else:
        changes = changed_inputs(old.get("inputs", {}), inputs)
    atomic.write_text(state_path, json.dumps({"inputs": inputs, "inputs_sha256": _sha256(inputs),
                                              "files": wanted}, indent=1))
    return changes, removed


def _init_worker() -> None:
    torch.set_num_threads(1)


@dataclass
class SynthResult:
    splits: dict[str, list[Utterance]]
    voices: dict[str, list[str]]
    failures: list[tuple[str, str]]
    changed: list[str] = field(default_factory=list)  # inputs that differ from the last run's
    remade: int = 0                                   # audio files deleted as stale


def synthesize_corpus(
    out_dir: str | Path,
    cfg: SynthConfig,
    text: str | Path | None = None,
    progress: Callable | None = None,
) -> SynthResult:
    """Make the corpus under ``out_dir``: ``audio/<split>/*.flac``, ``train.jsonl``,
    ``dev.jsonl``, ``test.jsonl``, ``voices.json`` (the voices of each split and the config)
    and ``synth.json`` (the hash of the inputs and of every file's plan).

    Args:
        out_dir: output folder; finished audio already there is reused when it was made from
            the same plan (``synth.json``), and re-made otherwise.
        cfg: the corpus settings.
        text: a text file (one sentence a line) or ``None`` for the built-in text.
        progress: optional ``progress(iterable, total)`` wrapper such as ``tqdm``.
    """
    out_dir = Path(out_dir)
    sentences = read_sentences(text)
    voices = available_voices(cfg.engines)
    jobs, split_voices = plan_corpus(sentences, voices, cfg, out_dir)
    for split in ("train", "dev", "test"):
        (out_dir / "audio" / split).mkdir(parents=True, exist_ok=True)
    changed, remade = _reconcile(out_dir, jobs, synth_inputs(cfg, sentences, voices))
    workers = cfg.workers or os.cpu_count() or 1
    durations: dict[int, float] = {}
    failures = []
    pool = (get_context("spawn").Pool(workers, initializer=_init_worker) if workers > 1
            else _Serial())
    with pool:
        results = pool.imap_unordered(_render, jobs, chunksize=4)
        if progress is not None:
            results = progress(results, total=len(jobs))
        for index, duration, error in results:
            if error is not None:
                failures.append((jobs[index].utt_id, error))
            else:
                durations[index] = duration
    splits: dict[str, list[Utterance]] = {"train": [], "dev": [], "test": []}
    for job in jobs:
        if job.index in durations:
            splits[job.split].append(Utterance(
                audio_filepath=str(Path(job.out).resolve()),
                duration=round(durations[job.index], 4), text=job.text, speaker=job.voice,
                utt_id=job.utt_id,
                extra={"rate": job.rate, "pitch": job.pitch},
            ))
    for split, utts in splits.items():
        write_manifest(out_dir / f"{split}.jsonl", utts)
    meta = {"voices": split_voices, "config": asdict(cfg), "sentences": len(sentences),
            "failures": failures}
    atomic.write_text(out_dir / "voices.json", json.dumps(meta, indent=2))
    return SynthResult(splits, split_voices, failures, changed, remade)


class _Serial:
    """Stand-in for a process pool when one worker is asked for."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @staticmethod
    def imap_unordered(fn: Callable, items: Sequence, chunksize: int = 1):
        return map(fn, items)
