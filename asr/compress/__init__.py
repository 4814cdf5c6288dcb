"""Compression: pruning masks and schedules, number formats and quantizers, sparse storage,
the sparse low-bit artifact and its storage accounting (``asr-compress``).

model -> :mod:`pruning` masks (scheduled by :mod:`callback` during fine-tuning) ->
:mod:`quantize` integer codes -> :mod:`sparse_formats` storage -> :mod:`artifact` file ->
:mod:`accounting` table.
"""

from asr.compress.pruning import (
    PRUNERS,
    bank_balanced_prune,
    block_prune,
    load_balanced_prune,
    magnitude_prune,
    prune_mask,
)

__all__ = ["PRUNERS", "bank_balanced_prune", "block_prune", "load_balanced_prune",
           "magnitude_prune", "prune_mask"]
