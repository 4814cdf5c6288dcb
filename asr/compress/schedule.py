"""Pruning schedules over a fine-tuning run: how far each matrix is from its target density.

:func:`prune_progress` returns ``progress`` in [0, 1]; a matrix with target density ``d`` is
held at density ``1 - progress * (1 - d)``: 0 is dense, 1 is the target. Under targeted dropout
the progress is the drop probability ``alpha`` (:func:`dropout_alpha`): a matrix's expected
density during a step is the same ``1 - alpha * (1 - d)``.
"""

from __future__ import annotations

from asr.compress.config import ScheduleConfig


def agp_progress(fraction: float) -> float:
    """Automated gradual pruning (Zhu & Gupta 2017): sparsity rises as ``1 - (1 - p)**3``, fast
    at first while the network has redundancy to lose, slowly near the target."""
    p = min(max(fraction, 0.0), 1.0)
    return 1.0 - (1.0 - p) ** 3


def dropout_alpha(cfg: ScheduleConfig, step: int, total_steps: int) -> float:
    """Targeted dropout's drop probability at ``step``: 0 before ``begin``, rising linearly to
    1 at ``end`` (fractions of the fine-tuning steps), as the authors' CBTD code anneals it
    (linearly, there per epoch; here per step). ``begin == end``: 0 then 1 at once."""
    if total_steps <= 0:
        return 1.0
    fraction = step / total_steps
    if fraction >= cfg.end:
        return 1.0
    if fraction < cfg.begin:
        return 0.0
    return (fraction - cfg.begin) / (cfg.end - cfg.begin)


def prune_progress(cfg: ScheduleConfig, step: int, total_steps: int) -> float:
    """Progress towards the target density at optimizer step ``step`` of ``total_steps``
    (no fine-tuning at all, ``total_steps == 0``, means one-shot pruning: progress 1)."""
    if total_steps <= 0:
        return 1.0
    fraction = step / total_steps
    if cfg.kind == "one_shot":
        return 1.0 if fraction >= cfg.begin else 0.0
    if cfg.kind == "agp":
        if fraction < cfg.begin:
            return 0.0
        # Masks change only every `frequency` steps: weights recover between prunings.
        step = step - step % cfg.frequency
        span = max(cfg.end - cfg.begin, 1e-12)
        return agp_progress((step / total_steps - cfg.begin) / span)
    if cfg.kind == "targeted_dropout":
        return dropout_alpha(cfg, step, total_steps)
    if cfg.kind == "dsd":
        phases = 2 * cfg.cycles + int(cfg.final_sparse)
        phase = min(int(fraction * phases), phases - 1)
        return 1.0 if phase % 2 == 0 else 0.0  # sparse, dense, sparse, ...
    raise ValueError(f"compress.schedule.kind: unknown {cfg.kind!r}")


def density_at(target: float, progress: float) -> float:
    return 1.0 - progress * (1.0 - target)
