"""NeMo-style JSON-lines manifests: one utterance per line.

Required fields: ``audio_filepath`` (absolute), ``duration`` (seconds), ``text`` (normalized).
Optional: ``speaker``, ``utt_id``, ``text_raw`` (the transcript as found) and any
corpus-specific field (FSDD's ``take``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from asr.atomic import atomic_open


@dataclass
class Utterance:
    audio_filepath: str
    duration: float
    text: str
    speaker: str | None = None
    utt_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        data = {k: v for k, v in data.items() if v is not None}
        return {**data, **extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Utterance:
        known = {k: data[k] for k in ("audio_filepath", "duration", "text", "speaker", "utt_id")
                 if k in data}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**known, extra=extra)


class ManifestError(ValueError):
    """A malformed manifest; the message names the file and line."""


def write_manifest(path: str | Path, utterances: Iterable[Utterance]) -> int:
    """Write utterances as JSON lines (atomically); returns how many were written."""
    n = 0
    # A unique temporary file beside it, fsynced, then renamed over it: a killed writer (or
    # two at once) never leaves a torn manifest.
    with atomic_open(path, "w") as f:
        for utt in utterances:
            f.write(json.dumps(utt.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    return n


def read_manifest(path: str | Path) -> list[Utterance]:
    """Read a JSON-lines manifest; relative audio paths resolve against the manifest's folder."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest")
    base = path.resolve().parent
    out = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as err:
                raise ManifestError(f"{path}:{lineno}: invalid JSON ({err.msg})") from err
            missing = [k for k in ("audio_filepath", "duration", "text") if k not in data]
            if missing:
                raise ManifestError(f"{path}:{lineno}: missing field(s) {missing}")
            audio = Path(data["audio_filepath"])
            if not audio.is_absolute():
                data["audio_filepath"] = str(base / audio)
            out.append(Utterance.from_dict(data))
    return out
