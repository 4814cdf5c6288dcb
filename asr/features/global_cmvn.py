"""Training-set feature statistics for ``normalize: global`` (causal normalization)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

import torch

from asr.audio import load_audio
from asr.features.config import FeatureConfig
from asr.features.extract import FeatureExtractor


def estimate_global_cmvn(audio_files: Sequence[str], cfg: FeatureConfig,
                         max_files: int = 500, seed: int = 0) -> tuple[list[float], list[float]]:
    """Per-dimension mean and standard deviation of ``cfg``'s unnormalized features.

    Uses a seeded sample of at most ``max_files`` files, so a resumed run gets the same
    statistics. Statistics are of single frames (before stacking and tail padding).
    """
    files = sorted(audio_files)
    if len(files) > max_files:
        files = sorted(random.Random(seed).sample(files, max_files))
    raw = FeatureExtractor(replace(cfg, normalize="none", stack=1, subsample=1, tail_frames=0,
                                   global_mean=None, global_std=None))
    total = torch.zeros(cfg.base_dim, dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    frames = 0
    for path in files:
        feats = raw(load_audio(path, cfg.sample_rate)).double()
        total += feats.sum(0)
        total_sq += (feats ** 2).sum(0)
        frames += feats.shape[0]
    if frames == 0:
        raise ValueError("estimate_global_cmvn: no audio files given")
    mean = total / frames
    std = (total_sq / frames - mean ** 2).clamp(min=1e-10).sqrt()
    return mean.tolist(), std.tolist()
