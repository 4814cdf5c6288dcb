"""Sigmoid and tanh units: a ROM looked up by the top bits of the input code.

The unit's input is an ``activation_bits``-wide code with ``int_bits = log2(input_range)``
integer bits (inputs beyond the range were saturated on the way in: both functions are flat
there). Its output has ``activation_bits - 1`` fraction bits (range [-1, 1)).

- ``lut``: ``entries`` values; entry ``k`` covers input codes ``[lo + k*w, lo + (k+1)*w)`` with
  ``w = 2**(bits - log2(entries))`` and holds the function at the bin's centre, rounded to the
  nearest code (computed once in float64, then only integers are used).
- ``pwl``: ``segments + 1`` table points at the bin edges; between them the output is
  ``y_k + round((y_{k+1} - y_k) * (q - x_k) / w)`` (the rounding is the engine's mode): a
  multiplier, an adder and a shifter, exact in integers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from asr.compress.fixed_point import FixedPointFormat, shift_round
from hw.config import ActivationUnitConfig

FUNCTIONS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh}
# Units up to this input width answer from a table of their output for every input code
# (2**20 int64 entries: 8 MiB); wider ones compute each look-up.
MAX_TABULATED_BITS = 20


@dataclass
class ActivationUnit:
    function: str
    kind: str
    bits: int           # input and output width
    in_frac: int
    out_frac: int
    table: torch.Tensor  # int64: entries (lut) or segments + 1 points (pwl)
    rounding: str
    _slopes: torch.Tensor | None = field(default=None, repr=False)
    _outputs: torch.Tensor | None = field(default=None, repr=False)

    @property
    def lo(self) -> int:
        """The smallest input code (the format's qmin, without building the format: this is
        read on every look-up)."""
        return -(1 << (self.bits - 1))

    @property
    def bin_shift(self) -> int:
        size = self.table.numel() - (self.kind == "pwl")
        return self.bits - int(math.log2(size))

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        """Look up every code of ``q`` (already in the unit's input format).

        The unit is a pure function of its ``bits``-wide input code, so its output for every
        code is computed once by :meth:`rom_datapath` and each call is one gather: the same
        integers, without re-running the ROM look-up, interpolation and rounding per value."""
        if self.bits > MAX_TABULATED_BITS:
            return self.rom_datapath(q)
        # index_select: several times faster than advanced indexing on CPU
        return self.outputs().index_select(0, (q - self.lo).reshape(-1)).view(q.shape).long()

    def outputs(self) -> torch.Tensor:
        """The unit's output for every input code, lowest first (int32; units up to
        ``MAX_TABULATED_BITS`` bits), computed on first use."""
        if self._outputs is None:
            codes = torch.arange(self.lo, self.lo + (1 << self.bits), dtype=torch.int64)
            # held as int32 (outputs are ``bits``-wide codes): half the cache of int64
            self._outputs = self.rom_datapath(codes).to(torch.int32)
        return self._outputs

    def rom_datapath(self, q: torch.Tensor) -> torch.Tensor:
        """The unit as the hardware computes it: the ROM entry of ``q``'s bin (lut), plus the
        rounded interpolation inside the bin (pwl)."""
        offset = q - self.lo
        k = torch.bitwise_right_shift(offset, self.bin_shift)
        if self.kind == "lut":
            return self.table[k]
        dx = torch.bitwise_and(offset, (1 << self.bin_shift) - 1)
        return self.table[k] + shift_round(self.slopes[k] * dx, self.bin_shift, self.rounding)

    @property
    def slopes(self) -> torch.Tensor:
        """``table[k + 1] - table[k]`` of a pwl unit (its second ROM)."""
        if self._slopes is None:
            self._slopes = self.table[1:] - self.table[:-1]
        return self._slopes


def build_activation_unit(function: str, cfg: ActivationUnitConfig, bits: int,
                          rounding: str) -> ActivationUnit:
    """The ROM of ``function`` for a unit configured by ``cfg`` on ``bits``-wide codes."""
    fn = FUNCTIONS[function]
    in_frac = bits - 1 - cfg.input_int_bits
    out_frac = bits - 1
    lo = FixedPointFormat(bits, out_frac).qmin
    if cfg.kind == "lut":
        size = cfg.entries
        width = (1 << bits) // size
        x = (lo + torch.arange(size, dtype=torch.float64) * width + width / 2) * 2.0 ** -in_frac
    else:
        size = cfg.segments
        width = (1 << bits) // size
        x = (lo + torch.arange(size + 1, dtype=torch.float64) * width) * 2.0 ** -in_frac
    # ROM contents are computed once, offline: always rounded to nearest, whatever the
    # datapath's rounding mode.
    table = FixedPointFormat(bits, out_frac).to_int(fn(x))
    return ActivationUnit(function, cfg.kind, bits, in_frac, out_frac, table, rounding)
