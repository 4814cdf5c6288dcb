"""Compression: pruning masks and schedules, number formats and quantizers, sparse storage,
the sparse low-bit artifact and its storage accounting (``asr-compress``).

model -> :mod:`pruning` masks (scheduled by :mod:`callback` during fine-tuning) ->
:mod:`quantize` integer codes -> :mod:`sparse_formats` storage -> :mod:`artifact` file ->
:mod:`accounting` table.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["PRUNERS", "bank_balanced_prune", "block_prune", "load_balanced_prune",
           "magnitude_prune", "prune_mask"]


def __getattr__(name: str) -> Any:
    # The pruning functions load torch: imported on first use, so that `asr-compress --help`
    # (whose module lives in this package) answers without loading it.
    if name in __all__:
        return getattr(importlib.import_module("asr.compress.pruning"), name)
    raise AttributeError(f"module 'asr.compress' has no attribute {name!r}")
