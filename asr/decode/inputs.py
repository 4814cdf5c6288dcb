"""The audio files a decoding command is given: files, folders, globs and manifests."""

from __future__ import annotations

import glob
from pathlib import Path

import soundfile as sf

from asr.data.manifest import read_manifest

# Extensions of the formats libsndfile reads (plus upper-case variants).
AUDIO_EXTENSIONS = {"." + f.lower() for f in sf.available_formats()} | {
    ".wav", ".flac", ".ogg", ".opus", ".mp3", ".aif", ".aiff", ".au", ".sph", ".nist"}


def expand_inputs(items: list[str], failures: list[tuple[str, str]]) -> list[str]:
    """Files of folders, globs and manifests, in the order given; missing paths -> failures."""
    paths: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths += sorted(str(f) for f in p.rglob("*")
                            if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
        elif p.is_file() and p.suffix == ".jsonl":
            paths += [u.audio_filepath for u in read_manifest(p)]
        elif p.is_file():
            paths.append(str(p))
        elif glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                failures.append((item, "the pattern matches no file"))
            paths += [m for m in matches if Path(m).is_file()]
        else:
            failures.append((item, "no such file or folder"))
    return paths
