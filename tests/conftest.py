"""Shared fixtures: every test makes its own audio (generated signals, synthesized speech)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def tone(seconds: float, sample_rate: int, freq: float = 440.0, amp: float = 0.5,
         seed: int | None = None) -> np.ndarray:
    """A sine (plus a little noise when ``seed`` is given), float32 mono."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = amp * np.sin(2 * np.pi * freq * t)
    if seed is not None:
        x += 0.01 * np.random.default_rng(seed).standard_normal(x.shape)
    return x.astype(np.float32)


def write(path: Path | str, data: np.ndarray, sample_rate: int, subtype: str | None = None
          ) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sample_rate, subtype=subtype)
    return path


@pytest.fixture
def make_wav(tmp_path):
    """``make_wav(name, seconds=1.0, sample_rate=16000, freq=440)`` -> path of a WAV tone."""

    def _make(name: str, seconds: float = 1.0, sample_rate: int = 16000, freq: float = 440.0,
              folder: Path | None = None) -> Path:
        return write((folder or tmp_path) / name, tone(seconds, sample_rate, freq, seed=1),
                     sample_rate)

    return _make


requires_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                     reason="espeak-ng is not installed (make test installs it)")
