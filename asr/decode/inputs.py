"""The audio files a decoding command is given: files, folders, globs and manifests."""

from __future__ import annotations

import glob
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from asr.data.manifest import read_manifest

# Extensions of the formats libsndfile reads (plus upper-case variants).
AUDIO_EXTENSIONS = {"." + f.lower() for f in sf.available_formats()} | {
    ".wav", ".flac", ".ogg", ".opus", ".mp3", ".aif", ".aiff", ".au", ".sph", ".nist"}


@dataclass(frozen=True)
class AudioInput:
    """One file to decode, with the utterance id its manifest gives it (None elsewhere)."""

    path: str
    utt_id: str | None = None


def expand_audio_inputs(items: Sequence[str], failures: list[tuple[str, str]]
                        ) -> list[AudioInput]:
    """Files of folders, globs and manifests (with their utt_ids), in the order given; missing
    paths -> failures."""
    inputs: list[AudioInput] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            inputs += [AudioInput(str(f)) for f in sorted(p.rglob("*"))
                       if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS]
        elif p.is_file() and p.suffix == ".jsonl":
            inputs += [AudioInput(u.audio_filepath, u.utt_id) for u in read_manifest(p)]
        elif p.is_file():
            inputs.append(AudioInput(str(p)))
        elif glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                failures.append((item, "the pattern matches no file"))
            inputs += [AudioInput(m) for m in matches if Path(m).is_file()]
        else:
            failures.append((item, "no such file or folder"))
    return inputs


def expand_inputs(items: Sequence[str], failures: list[tuple[str, str]]) -> list[str]:
    """Files of folders, globs and manifests, in the order given; missing paths -> failures."""
    return [a.path for a in expand_audio_inputs(items, failures)]


def base_id(item: AudioInput) -> str:
    """An input's utterance id before de-duplication: its manifest utt_id, else the file name
    without its extension; whitespace becomes ``_`` (Kaldi, trn and CTM files split on it)."""
    name = item.utt_id if item.utt_id else Path(item.path).stem
    return re.sub(r"\s+", "_", name.strip()) or "_"


def unique_ids(inputs: Sequence[AudioInput]) -> tuple[list[str], int]:
    """Utterance ids of ``inputs`` (:func:`base_id`), unique: the first input with an id keeps
    it, later ones get ``-2``, ``-3``, ... (the lowest unused). Returns the ids and how many
    were renamed."""
    taken = {base_id(a) for a in inputs}
    used: set[str] = set()
    ids, renamed = [], 0
    for item in inputs:
        utt = base_id(item)
        if utt in used:
            n = 2
            while f"{utt}-{n}" in used or f"{utt}-{n}" in taken:
                n += 1
            utt, renamed = f"{utt}-{n}", renamed + 1
        used.add(utt)
        ids.append(utt)
    return ids, renamed
