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

    def narrow(self, layer: str, q: torch.Tensor, bits: int, saturate: bool) -> torch.Tensor:
        out, n = narrow(q, bits, saturate)
        self.add(layer, "saturation" if saturate else "wrap", n)
        self.add(layer, "values", q.numel())
        return out

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {layer: dict(kinds) for layer, kinds in self.counts.items()}
