"""The engine's arithmetic events, counted per layer.

The arithmetic itself (``shift_round``, ``narrow``) is the fixed-point type's, in
:mod:`asr.compress.fixed_point`. :class:`EventCounter` keeps the counts of what it clipped per
layer and kind (saturations, wraps, accumulator overflows), so that nothing the hardware would
clip goes unreported.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from asr.compress.fixed_point import narrow


class EventCounter:
    """Counts per layer of the events a datapath produces: ``saturation`` (a value clipped into
    its format), ``wrap`` (wrapped instead), ``accumulator_overflow`` (a sum that ended outside
    the accumulator), plus ``values`` (values produced) for rates."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def add(self, layer: str, kind: str, n: int) -> None:
        if n:
            self.counts[layer][kind] += int(n)

    def narrow(self, layer: str, q: torch.Tensor, bits: int, saturate: bool,
               kind: str | None = None, values: bool = True) -> torch.Tensor:
        """``q`` saturated (or wrapped) into ``bits``; what left the range is counted as
        ``kind`` (default ``saturation``/``wrap``), and ``q``'s size as ``values``."""
        out, n = narrow(q, bits, saturate)
        self.add(layer, kind or ("saturation" if saturate else "wrap"), n)
        if values:
            self.add(layer, "values", q.numel())
        return out

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {layer: dict(kinds) for layer, kinds in self.counts.items()}


class RowEventCounter:
    """:class:`EventCounter`'s counts for utterances run side by side: the first dimension of
    every tensor it narrows is the utterance, and the rows present are the first ones of the
    batch (utterances sorted longest first, the ended ones dropped). Each utterance gets the
    counts of its own rows, as if it had been run alone."""

    def __init__(self, rows: int) -> None:
        self.counters = [EventCounter() for _ in range(rows)]
        # values produced per layer and row: every row present gets the same count, so one
        # vector add per call instead of a dict update per row
        self.values: dict[str, torch.Tensor] = {}

    def narrow(self, layer: str, q: torch.Tensor, bits: int, saturate: bool,
               kind: str | None = None, values: bool = True) -> torch.Tensor:
        out, n = narrow(q, bits, saturate)
        rows = q.shape[0]
        if n:   # the rows that left the range: their codes changed
            per_row = (out != q).reshape(rows, -1).sum(1).tolist()
            for counter, k in zip(self.counters, per_row):
                counter.add(layer, kind or ("saturation" if saturate else "wrap"), k)
        if values:
            if layer not in self.values:
                self.values[layer] = torch.zeros(len(self.counters), dtype=torch.int64)
            self.values[layer][:rows] += q[0].numel() if rows else 0
        return out

    def row(self, i: int) -> EventCounter:
        """The counter of row ``i`` (what its utterance's ops run alone report into)."""
        return self.counters[i]

    def as_dicts(self) -> list[dict[str, dict[str, int]]]:
        for layer, counts in self.values.items():
            for counter, n in zip(self.counters, counts.tolist()):
                counter.add(layer, "values", n)
        self.values = {}
        return [counter.as_dict() for counter in self.counters]
