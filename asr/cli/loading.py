"""Any model file a user passes: a compressed model or a training checkpoint."""

from __future__ import annotations

from pathlib import Path

from asr.compress.artifact import load_compressed
from asr.models.acoustic import AcousticModel
from asr.train.checkpoint import load_checkpoint


def load_model(path: str | Path) -> AcousticModel:
    """A compressed model (``*.model``, the suffix asr-compress writes) or a training
    checkpoint (anything else); the file is read once."""
    return load_compressed(path) if Path(path).suffix == ".model" else load_checkpoint(path)
