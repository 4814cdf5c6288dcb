"""Compression: pruning masks (and, as issue 5 lands, schedules, quantizers and the artifact)."""

from asr.compress.pruning import (
    PRUNERS,
    bank_balanced_prune,
    block_prune,
    load_balanced_prune,
    magnitude_prune,
)

__all__ = ["PRUNERS", "bank_balanced_prune", "block_prune", "load_balanced_prune",
           "magnitude_prune"]
