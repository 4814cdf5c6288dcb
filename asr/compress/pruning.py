"""Pruning masks of one weight matrix, one function per sparsity structure.

Every function takes a 2-D ``weight`` (rows = outputs) and a target ``density`` (fraction of
weights kept) and returns a boolean mask of the same shape, keeping the largest magnitudes
within each group that the structure balances:

* :func:`magnitude_prune`: the whole matrix (Deep Compression; unstructured);
* :func:`block_prune`: whole ``(bh, bw)`` blocks ranked by their L2 norm;
* :func:`bank_balanced_prune`: every bank of ``bank_size`` consecutive weights of a row keeps
  the same number of non-zeros (BBS);
* :func:`load_balanced_prune`: rows are interleaved over ``num_pes`` processing elements
  (row ``r`` to PE ``r % num_pes``) and every PE keeps the same number of non-zeros
  (ESE's load-balance-aware pruning). With ``max_zero_run`` no column of a PE's share skips
  more zero rows than that between kept weights, so ESE's CSC with relative indices of
  ``log2(max_zero_run + 1)`` bits needs no padding entries (see :func:`close_long_runs`).

Ties are broken by position (stable sort), so masks are deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from asr.config_errors import ConfigError, check


def _check(weight: torch.Tensor, density: float, prefix: str) -> None:
    if weight.dim() != 2:
        raise ConfigError(f"{prefix}: pruning works on 2-D matrices, got shape "
                          f"{tuple(weight.shape)}")
    check(0.0 < density <= 1.0, f"{prefix}.density", "in (0, 1]", density)


def _keep_top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Mask of the ``keep`` largest entries along the last dimension of ``scores``."""
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    mask = torch.zeros_like(scores, dtype=torch.bool)
    mask.scatter_(-1, order[..., :keep], True)
    return mask


def magnitude_prune(weight: torch.Tensor, density: float, prefix: str = "prune"
                    ) -> torch.Tensor:
    """Keep the ``round(density * numel)`` largest magnitudes of the matrix."""
    _check(weight, density, prefix)
    keep = max(1, round(density * weight.numel()))
    return _keep_top(weight.detach().abs().flatten(), keep).view_as(weight)


def block_prune(weight: torch.Tensor, density: float, block: tuple[int, int] = (4, 4),
                prefix: str = "prune") -> torch.Tensor:
    """Keep the ``round(density * blocks)`` blocks of largest L2 norm."""
    _check(weight, density, prefix)
    bh, bw = block
    rows, cols = weight.shape
    check(bh >= 1 and rows % bh == 0, f"{prefix}.block", f"a row count dividing {rows}", block)
    check(bw >= 1 and cols % bw == 0, f"{prefix}.block", f"a column count dividing {cols}",
          block)
    norms = weight.detach().view(rows // bh, bh, cols // bw, bw).pow(2).sum(dim=(1, 3))
    keep = max(1, round(density * norms.numel()))
    blocks = _keep_top(norms.flatten(), keep).view_as(norms)
    return blocks.repeat_interleave(bh, 0).repeat_interleave(bw, 1)


def bank_balanced_prune(weight: torch.Tensor, density: float, bank_size: int = 16,
                        prefix: str = "prune") -> torch.Tensor:
    """Every bank (``bank_size`` consecutive weights of a row) keeps
    ``round(density * bank_size)`` weights (at least one)."""
    _check(weight, density, prefix)
    rows, cols = weight.shape
    check(bank_size >= 1 and cols % bank_size == 0, f"{prefix}.bank_size",
          f"a divisor of the row length {cols}", bank_size)
    keep = max(1, round(density * bank_size))
    banks = weight.detach().abs().view(rows, cols // bank_size, bank_size)
    return _keep_top(banks, keep).view(rows, cols)


def load_balanced_prune(weight: torch.Tensor, density: float, num_pes: int = 32,
                        prefix: str = "prune", max_zero_run: int = 0) -> torch.Tensor:
    """Rows go to PEs round-robin; every PE keeps ``round(density * its weights)``.
    ``max_zero_run > 0``: the kept pattern also leaves no run of more than that many zero
    local rows before a kept weight of a column (:func:`close_long_runs`)."""
    _check(weight, density, prefix)
    rows, cols = weight.shape
    check(num_pes >= 1 and rows % num_pes == 0, f"{prefix}.num_pes",
          f"a divisor of the row count {rows} (every PE gets as many rows)", num_pes)
    check(max_zero_run >= 0, f"{prefix}.max_zero_run", ">= 0 (0: no limit)", max_zero_run)
    per_pe = rows // num_pes * cols
    keep = max(1, round(density * per_pe))
    # (rows // num_pes, num_pes, cols) -> PE-major: PE p holds rows p, p + N, p + 2N, ...
    by_pe = weight.detach().abs().view(rows // num_pes, num_pes, cols).transpose(0, 1)
    mask = _keep_top(by_pe.reshape(num_pes, per_pe), keep)
    if max_zero_run:
        # (pe, local row, col) -> (pe, col, local row): runs are counted down a column
        scores = by_pe.permute(0, 2, 1)
        mask = close_long_runs(mask.view(num_pes, rows // num_pes, cols).permute(0, 2, 1),
                               scores, max_zero_run).permute(0, 2, 1)
    return mask.reshape(num_pes, rows // num_pes, cols).transpose(0, 1).reshape(rows, cols)


def _prev_kept(mask: torch.Tensor) -> torch.Tensor:
    """For every position of ``(..., L)``, the index of the previous kept one (-1: none)."""
    pos = torch.arange(mask.shape[-1], device=mask.device).expand_as(mask)
    prev = torch.where(mask, pos, -1).cummax(-1).values
    return torch.cat([torch.full_like(prev[..., :1], -1), prev[..., :-1]], -1)


def _next_kept(mask: torch.Tensor) -> torch.Tensor:
    """For every position of ``(..., L)``, the index of the next kept one (``L``: none)."""
    length = mask.shape[-1]
    pos = torch.arange(length, device=mask.device).expand_as(mask)
    nxt = torch.where(mask, pos, length).flip(-1).cummin(-1).values.flip(-1)
    return torch.cat([nxt[..., 1:], torch.full_like(nxt[..., :1], length)], -1)


def close_long_runs(mask: torch.Tensor, scores: torch.Tensor, max_run: int) -> torch.Tensor:
    """Make a ``(pes, cols, local rows)`` mask free of runs of more than ``max_run`` unkept
    positions before a kept one, keeping each PE's count of kept weights.

    A relative-index CSC stores a padding entry for every such run: an entry that costs a
    multiply and a memory word but holds nothing. Here the entry goes to a real weight: each
    long run gets the largest weight among the ``max_run + 1`` positions after its start (the
    padding slot's window), and the PE then drops as many of its smallest kept weights as it
    gained, choosing only weights whose removal opens no long run (a column's last kept weight
    always qualifies), at most one per column per round. Trailing runs need no entry."""
    mask = mask.clone()
    length = mask.shape[-1]
    rows = torch.arange(length, device=mask.device)
    window = torch.arange(max_run + 1, device=mask.device)
    budget = mask.sum(dim=(1, 2))
    while True:  # fill: each pass shortens every long run by at least max_run + 1
        prev = _prev_kept(mask)
        p, c, r = torch.nonzero(mask & (rows - prev - 1 > max_run), as_tuple=True)
        if not len(p):
            break
        slots = prev[p, c, r][:, None] + 1 + window                  # (runs, max_run + 1)
        best = scores[p[:, None], c[:, None], slots].argmax(dim=1, keepdim=True)
        mask[p, c, slots.gather(1, best)[:, 0]] = True
    while True:  # trim back to the budget
        excess = mask.sum(dim=(1, 2)) - budget
        if not (excess > 0).any():
            return mask
        prev, nxt = _prev_kept(mask), _next_kept(mask)
        removable = mask & ((nxt == length) | (nxt - prev - 1 <= max_run))
        low, row = scores.masked_fill(~removable, float("inf")).min(dim=2)  # one per column
        rank = low.argsort(dim=1, stable=True).argsort(dim=1)
        p, c = torch.nonzero((rank < excess[:, None]) & torch.isfinite(low), as_tuple=True)
        mask[p, c, row[p, c]] = False


def column_balanced_prune(weight: torch.Tensor, density: float, num_pes: int = 64,
                          prefix: str = "prune") -> torch.Tensor:
    """Spartus's column-balanced sparsity (CBTD, Gao et al. 2022): rows go to PEs round-robin
    (row ``r`` to PE ``r % num_pes``) and, in every column of every PE's ``rows / num_pes``
    local rows, the ``floor(local_rows * gamma)`` smallest magnitudes are dropped, ``gamma =
    1 - density`` being CBTD's target sparsity: each PE column keeps ``local_rows -
    floor(local_rows * gamma)`` weights (at least one)."""
    check(0.0 < density <= 1.0, f"{prefix}.density",
          "in (0, 1] (1 - gamma; CBTD's target sparsity gamma in [0, 1))", density)
    _check(weight, density, prefix)
    rows, cols = weight.shape
    check(num_pes >= 1 and rows % num_pes == 0, f"{prefix}.num_pes",
          f"a divisor of the row count {rows} (every PE gets as many rows)", num_pes)
    local = rows // num_pes
    # 1e-9: a density such as 0.06 must not lose a kept weight to 1 - 0.06 = 0.9400000000000001
    keep = local - math.floor(local * (1.0 - density) + 1e-9)
    # (local row, pe, col) -> (pe, col, local row): rank each PE column's weights
    by_column = weight.detach().abs().view(local, num_pes, cols).permute(1, 2, 0)
    mask = _keep_top(by_column, keep)
    return mask.permute(2, 0, 1).reshape(rows, cols)


PRUNERS: dict[str, Callable[..., torch.Tensor]] = {
    "magnitude": magnitude_prune,
    "block": block_prune,
    "bank_balanced": bank_balanced_prune,
    "load_balanced": load_balanced_prune,
    "column_balanced": column_balanced_prune,
}


def prune_mask(weight: torch.Tensor, density: float, cfg, prefix: str = "compress.prune"
               ) -> torch.Tensor | None:
    """The mask of one matrix by a :class:`~asr.compress.config.PruneConfig` (its ``method``
    and structure parameters); ``None`` when the matrix stays dense. Conv kernels
    ``(out, in, k)`` are pruned as ``(out, in * k)`` matrices."""
    if cfg.method == "none" or density >= 1.0:
        return None
    w = weight.detach().reshape(weight.shape[0], -1)
    if cfg.method == "magnitude":
        mask = magnitude_prune(w, density, prefix)
    elif cfg.method == "block":
        mask = block_prune(w, density, tuple(cfg.block), prefix)
    elif cfg.method == "bank_balanced":
        mask = bank_balanced_prune(w, density, cfg.bank_size, prefix)
    elif cfg.method == "column_balanced":
        mask = column_balanced_prune(w, density, cfg.num_pes, prefix)
    else:
        mask = load_balanced_prune(w, density, cfg.num_pes, prefix, cfg.max_zero_run)
    return mask.view(weight.shape)


@torch.no_grad()
def prune_model(matrices: dict[str, torch.Tensor], densities: dict[str, float], cfg
                ) -> dict[str, torch.Tensor]:
    """One-shot pruning: zero every matrix (a view into the model) to its density in place;
    returns the masks of the pruned ones."""
    masks = {}
    for name, view in matrices.items():
        mask = prune_mask(view, densities.get(name, 1.0), cfg)
        if mask is not None:
            view.mul_(mask)
            masks[name] = mask
    return masks
