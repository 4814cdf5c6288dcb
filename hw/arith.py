"""The engine's integer arithmetic on whole tensors (int64), with its events counted.

A value is an integer code ``q`` with a fractional length ``f`` (value ``q * 2**-f``). Two
operations make up every datapath in the engine:

- :func:`shift_round`: ``q * 2**-s`` rounded to an integer by the configured mode (a right
  shift with a rounding adder; a negative ``s`` is an exact left shift, which brings operands
  to a common fractional length): ``nearest`` adds half an LSB then floors (ties go up),
  ``nearest_even`` breaks ties to even, ``floor`` drops the low bits, ``zero`` truncates the
  magnitude.
- :func:`narrow`: into ``bits`` two's-complement bits, saturating to the range or wrapping
  around; returns how many values were out of range.

:class:`EventCounter` keeps those counts per layer and kind (saturations, accumulator
overflows), so that nothing the hardware would clip goes unreported.
"""

from __future__ import annotations

from collections import defaultdict

import torch


def _round_right(q: torch.Tensor, right, rounding: str) -> torch.Tensor:
    """``q * 2**-right`` rounded, ``right >= 0`` (an int or a broadcast tensor)."""
    floor = torch.bitwise_right_shift(q, right)
    if rounding == "floor":
        return floor
    if rounding == "zero":
        return torch.where(q < 0, -torch.bitwise_right_shift(-q, right), floor)
    if isinstance(right, int):
        half = (1 << right) >> 1
    else:
        one = torch.ones((), dtype=torch.int64)
        half = torch.bitwise_right_shift(torch.bitwise_left_shift(one, right), 1)  # 0 if 0
    if rounding == "nearest":
        return torch.bitwise_right_shift(q + half, right)
    if rounding == "nearest_even":
        rem = q - torch.bitwise_left_shift(floor, right)
        odd = torch.bitwise_and(floor, 1) == 1
        up = (rem > half) | ((rem == half) & odd) if isinstance(half, int) and half > 0 else \
            (rem > half) | ((rem == half) & (torch.as_tensor(half) > 0) & odd)
        return floor + up.to(torch.int64)
    raise ValueError(f"rounding: unknown mode {rounding!r}")


def shift_round(q: torch.Tensor, shift: torch.Tensor | int, rounding: str) -> torch.Tensor:
    """``q * 2**-shift`` rounded by ``rounding``; ``shift`` may be a broadcast tensor, and a
    negative shift is an exact left shift."""
    if isinstance(shift, int):
        if shift <= 0:
            return torch.bitwise_left_shift(q, -shift) if shift else q
        return _round_right(q, shift, rounding)
    lo, hi = torch.aminmax(shift)
    if int(lo) == int(hi):      # one shift for all: the cheaper scalar path
        return shift_round(q, int(lo), rounding)
    if int(hi) <= 0:
        return torch.bitwise_left_shift(q, -shift)
    if int(lo) >= 0:
        return _round_right(q, shift, rounding)
    return _round_right(torch.bitwise_left_shift(q, (-shift).clamp(min=0)), shift.clamp(min=0),
                        rounding)


def int_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def narrow(q: torch.Tensor, bits: int, saturate: bool) -> tuple[torch.Tensor, int]:
    """Into ``bits`` two's-complement bits: saturate or wrap. Returns ``(q, out_of_range)``."""
    lo, hi = int_range(bits)
    if q.numel() == 0:
        return q, 0
    qmin, qmax = torch.aminmax(q)
    if int(qmin) >= lo and int(qmax) <= hi:
        return q, 0
    out = int(((q < lo) | (q > hi)).sum())
    if saturate:
        return q.clamp(lo, hi), out
    return torch.remainder(q - lo, 1 << bits) + lo, out


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
