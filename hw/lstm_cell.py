"""One step of the engine's LSTM cell as a pure function of int64 tensors.

:func:`lstm_step` takes a step's recurrent and input products (exact integer sums) and the
bias, and returns the new cell state, the cell output ``m`` and, per row, how many
values each narrowing clipped; it has no Python branch on tensor values and reports no event
itself, so that :func:`compiled_lstm_step` can hand the whole step to ``torch.compile`` (one
fused loop instead of some thirty int64 passes over the gates). The arithmetic is
:mod:`asr.compress.fixed_point`'s (``shift_round``, ``fit``), with the datapath's formats held in
:class:`CellFormats`; the compiled step computes the same integers (tests hold it equal to the
per-MAC reference).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from asr.compress.fixed_point import Rounding, fit, shift_round
from hw.activation_unit import ActivationUnit

# What the columns of lstm_step's counts are: (event layer suffix, kind); "clip" is
# "saturation" or "wrap" by the engine's overflow mode.
STEP_EVENTS = (("W_r", "accumulator_overflow"), ("gates", "accumulator_overflow"),
               ("gates", "clip"), ("c", "accumulator_overflow"), ("c", "clip"),
               ("tanh_in", "clip"), ("m", "clip"))

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CellFormats:
    """The integers that fix one LSTM layer's step: fractional lengths (the gate sums'
    ``frac``, the recurrent products' shift to it, the activation unit's input ``unit_in`` and
    output ``gate``, the cell state's ``c`` and output's ``m``), widths, and which checks a
    step needs (``wrap_products``: a recurrent sum may leave the accumulator; ``wrap_gates``:
    a gate sum may)."""

    hidden: int
    frac: int | torch.Tensor      # tensors (one per row) run eagerly only
    shift_r: int | torch.Tensor
    shift_x: int | torch.Tensor
    unit_in: int
    gate: int
    c: int
    m: int
    guard_bits: int
    activation_bits: int
    accumulator_bits: int
    saturate: bool
    rounding: Rounding
    wrap_products: bool
    wrap_gates: bool

    @property
    def cell_frac(self) -> int:
        """The cell sum's fractional length: the larger term's, at most ``guard_bits`` beyond
        the cell state's."""
        return min(max(self.gate + self.c, 2 * self.gate), self.c + self.guard_bits)

    @property
    def compilable(self) -> bool:
        """Whether :func:`compiled_lstm_step` computes this step exactly: one format per row,
        and every shift below 31 bits (a margin: inductor's C++ computes ``1 << s`` of a
        symbolic shift in 32 bits; the shifts are compiled as constants, but stay in range)."""
        shifts = (self.shift_r, self.shift_x, self.frac, self.gate + self.c - self.cell_frac,
                  2 * self.gate - self.cell_frac, self.cell_frac - self.c,
                  self.c - self.unit_in, 2 * self.gate - self.m)
        if not all(isinstance(s, int) for s in shifts):
            return False
        return all(abs(s) < 31 for s in (*shifts, self.frac - self.unit_in))


def _clip(q: torch.Tensor, bits: int, saturate: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``q`` fitted into ``bits`` and the count per row of the values that changed."""
    fitted = fit(q, bits, saturate)
    return fitted, (fitted != q).sum(-1)


def lstm_step(products: torch.Tensor, inputs: torch.Tensor, bias: torch.Tensor,
              c: torch.Tensor, sigmoid: ActivationUnit, tanh: ActivationUnit, f: CellFormats
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step for ``rows`` utterances: ``products`` and ``inputs`` (int64
    ``(rows, 4 * hidden)``) are the exact recurrent and input sums at their matrices'
    fractional lengths (the inputs' already wrapped into the accumulator), ``bias`` the bias
    at ``f.frac``; ``c`` the cell state. Returns the new ``c``, the cell output ``m`` and the
    out-of-range counts ``(rows, 7)`` in the order of :data:`STEP_EVENTS`."""
    n_raw = n_acc = torch.zeros(c.shape[:-1], dtype=torch.int64)
    if f.wrap_products:
        products, n_raw = _clip(products, f.accumulator_bits, saturate=False)
    acc = (shift_round(products, f.shift_r, f.rounding) + shift_round(inputs, f.shift_x, f.rounding)
           + bias)
    if f.wrap_gates:
        acc, n_acc = _clip(acc, f.accumulator_bits, saturate=False)
    c, m, counts = cell_step(acc, f.frac, c, sigmoid, tanh, f)
    return c, m, torch.cat([torch.stack([n_raw, n_acc], dim=-1), counts], dim=-1)


def cell_step(acc: torch.Tensor, frac: int | torch.Tensor, c: torch.Tensor,
              sigmoid: ActivationUnit, tanh: ActivationUnit, f: CellFormats
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The cell from its gate sums ``acc`` (i, f, c, o stacked, at fractional length ``frac``,
    one or one per row): the new cell state, the output ``m`` and the counts of the last five
    :data:`STEP_EVENTS` (``f.frac``, ``f.shift_r`` and the wrap flags are not read)."""
    h, bits = f.hidden, f.activation_bits
    gin, n_gates = _clip(shift_round(acc, frac - f.unit_in, f.rounding), bits, f.saturate)
    s = sigmoid(gin)   # one look-up pass; the c rows' sigmoid is not used
    i, fg, o = s[..., :h], s[..., h:2 * h], s[..., 3 * h:]
    g = tanh(gin[..., 2 * h:3 * h])
    fcell = f.cell_frac
    total = (shift_round(fg * c, f.gate + f.c - fcell, f.rounding)
             + shift_round(i * g, 2 * f.gate - fcell, f.rounding))
    total, n_cacc = _clip(total, f.accumulator_bits, saturate=False)
    c, n_c = _clip(shift_round(total, fcell - f.c, f.rounding), bits, f.saturate)
    t_in, n_t = _clip(shift_round(c, f.c - f.unit_in, f.rounding), bits, f.saturate)
    m, n_m = _clip(shift_round(o * tanh(t_in), 2 * f.gate - f.m, f.rounding), bits, f.saturate)
    return c, m, torch.stack([n_gates, n_cacc, n_c, n_t, n_m], dim=-1)


class CompiledStep:
    """:func:`lstm_step` compiled by ``torch.compile`` (inductor, CPU: one C++ loop nest per
    step; compiled on first use for each layer format and batch-size range, cached on disk
    by torch). Where compiling fails (no C++ compiler), it warns once and steps eagerly: the
    same integers."""

    def __init__(self) -> None:
        # dynamic=False: every int (widths, shifts) stays a constant of its graph; only the
        # number of rows varies, marked per call
        self.compiled: Callable | None = torch.compile(lstm_step, dynamic=False)

    def __call__(self, *args: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.compiled is not None:
            for rows in args[:2] + args[3:4]:   # products, inputs, c
                torch._dynamo.maybe_mark_dynamic(rows, 0)
            try:
                return self.compiled(*args)
            except Exception as err:   # the backend's failure, not the datapath's
                log.warning("torch.compile failed (%s); LSTM steps run eagerly", err)
                self.compiled = None
        return lstm_step(*args)


@functools.cache
def compiled_lstm_step() -> CompiledStep:
    """The process's one :class:`CompiledStep`."""
    return CompiledStep()
