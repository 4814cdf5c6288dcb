"""Stateless feature operations on ``(time, dim)`` tensors; each takes every setting explicitly."""

from __future__ import annotations

import torch
import torchaudio.functional as AF


def utterance_cmvn(feats: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-utterance mean/variance normalization over time of ``(time, dim)`` features.

    The statistics are taken in float64: a float32 sum of a constant band (one at the fbank
    floor) rounds differently with the CPU's vector width, and its small offset from the mean,
    divided by a near-zero deviation, became a CPU-dependent constant of order 0.1. In float64
    a sum of float32 values is exact (below 2**29 frames), so such a band maps to exact zeros
    on every machine.
    """
    x = feats.double()
    mean = x.mean(dim=0, keepdim=True)
    std = x.std(dim=0, keepdim=True, unbiased=False)
    return ((x - mean) / (std + eps)).to(feats.dtype)


def stack_frames(feats: torch.Tensor, stack: int, subsample: int) -> torch.Tensor:
    """Concatenate ``stack`` consecutive frames, then keep every ``subsample``-th.

    Frame ``t`` of the output holds input frames ``t*subsample .. t*subsample+stack-1``; the
    last frame is repeated so that no input frame is dropped at the end.

    Args:
        feats: ``(time, dim)``.
        stack: frames per output frame (1 = no stacking).
        subsample: output stride in input frames (1 = every frame).

    Returns:
        ``(ceil(time / subsample), dim * stack)``.
    """
    if stack == 1 and subsample == 1:
        return feats
    time = feats.shape[0]
    n_out = -(-time // subsample)
    pad = max(0, (n_out - 1) * subsample + stack - time)
    padded = torch.cat([feats, feats[-1:].expand(pad, -1)]) if pad else feats
    # unfold gives (n, dim, stack); frames are laid out time-major inside a stacked vector.
    windows = padded.unfold(0, stack, subsample)[:n_out]
    return windows.transpose(1, 2).reshape(n_out, -1)


def speed_perturb(wav: torch.Tensor, sample_rate: int, factor: float) -> torch.Tensor:
    """Kaldi-style speed perturbation: play ``factor`` times faster (tempo and pitch change)."""
    if factor == 1.0:
        return wav
    return AF.resample(wav, round(sample_rate * factor), sample_rate)


def spec_augment(
    feats: torch.Tensor,
    freq_masks: int,
    freq_width: int,
    time_masks: int,
    time_width: int,
    time_ratio: float = 0.2,
    generator: torch.Generator | None = None,
    stack: int = 1,
    subsample: int = 1,
) -> torch.Tensor:
    """SpecAugment (Park et al., 2019) masks on ``(time, dim)`` features, filled with zeros.

    Zero is the mean after utterance normalization, so masked regions carry no information.
    On stacked features (``stack``/``subsample`` as given to :func:`stack_frames`) the masks
    are drawn on the frames before stacking and stacked the same way: a frequency mask hides
    its bands in every stacked slot (``freq_width`` counts bands of one frame, not columns of
    the stacked vector), and a time mask hides its input frames in every window that holds
    them, so neighbouring windows do not leak them back. ``time_width`` and ``time_ratio``
    count output (model) frames. Returns a new tensor; the input is left untouched.
    """
    if freq_masks == 0 and time_masks == 0:
        return feats.clone()  # speed perturbation alone: no mask to build per item
    time, dim = feats.shape
    bands = dim // stack
    # keep[r, b] = 0 where input frame r, band b is masked; stacked like the features.
    keep = torch.ones(time * subsample, bands, dtype=feats.dtype)

    def randint(high: int) -> int:
        return int(torch.randint(0, max(high, 1), (1,), generator=generator))

    for _ in range(freq_masks):
        width = randint(min(freq_width, bands) + 1)
        start = randint(bands - width + 1)
        keep[:, start:start + width] = 0.0
    max_t = min(time_width, int(time * time_ratio))
    for _ in range(time_masks):
        width = randint(max_t + 1)
        start = randint(time - width + 1)
        keep[start * subsample:(start + width) * subsample, :] = 0.0
    return feats * stack_frames(keep, stack, subsample)
