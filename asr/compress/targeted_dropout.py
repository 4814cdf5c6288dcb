"""Targeted dropout (Gomez et al. 2018) over a pruning structure; with ``column_balanced``,
Spartus's column-balanced targeted dropout (CBTD, Gao et al. 2022).

The *candidates* of a matrix are the weights its pruning structure would drop at the target
density, ranked on the current weights: for ``column_balanced``, in every column of every PE's
share (rows interleaved over the PEs), the ``floor(local_rows * gamma)`` smallest magnitudes,
``gamma = 1 - density``. A training step drops each candidate with probability ``alpha``, for
that step only; at ``alpha = 1`` every candidate goes and the mask is the structure's own
(for ``column_balanced``: the same count in every PE column).
"""

from __future__ import annotations

import torch

from asr.compress.pruning import prune_mask


def candidates(weight: torch.Tensor, density: float, prune_cfg) -> torch.Tensor | None:
    """Boolean mask of the drop candidates of ``weight`` (the complement of the structure's
    mask at ``density``); ``None`` when the matrix stays dense."""
    keep = prune_mask(weight, density, prune_cfg)
    return None if keep is None else ~keep


def dropout_mask(candidate: torch.Tensor, alpha: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """One step's keep mask: every candidate dropped with probability ``alpha``
    (independently), every other weight kept. The draw is made on the CPU, so one seed gives
    the same masks on any device."""
    if alpha <= 0.0:
        return torch.ones_like(candidate, dtype=torch.bool)
    if alpha >= 1.0:
        return ~candidate
    draw = torch.rand(candidate.shape, generator=generator)
    return ~(candidate & (draw < alpha).to(candidate.device))
