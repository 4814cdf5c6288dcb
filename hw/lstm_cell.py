"""One step of the engine's LSTM cell as a pure function of int64 tensors.

:func:`lstm_step` takes a step's recurrent and input products (exact integer sums) and the
bias, and returns the new cell state, the cell output ``m`` and, per row, how many
values each narrowing clipped; it has no Python branch on tensor values and reports no event
itself, so that :class:`LayerKernels` can hand the whole step to inductor (one fused loop
instead of some thirty int64 passes over the gates), and likewise the projection's narrowing
(:func:`project_step`). The arithmetic is :mod:`asr.compress.fixed_point`'s (``shift_round``,
``fit``), with the datapath's formats held in :class:`CellFormats` and
:class:`ProjectionFormat`; the compiled step computes the same integers (tests hold it equal
to the per-MAC reference)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from asr.compress.fixed_point import Rounding, fit, shift_round
from hw.activation_unit import MAX_TABULATED_BITS, ActivationUnit

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
        """Whether :class:`LayerKernels` compiles this step exactly: one format per row,
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


@dataclass(frozen=True)
class ProjectionFormat:
    """A projection's ``width`` sums to the layer's output: wrapped into ``accumulator_bits``
    (where ``wrap_sums``: a sum may leave it), shifted by ``shift`` with the rounding, then
    fitted into ``bits`` (saturated or wrapped)."""

    width: int
    shift: int | torch.Tensor     # tensors (one per row) run eagerly only
    bits: int
    saturate: bool
    rounding: Rounding
    accumulator_bits: int
    wrap_sums: bool

    @property
    def compilable(self) -> bool:
        return isinstance(self.shift, int) and abs(self.shift) < 31


def layer_step(products: torch.Tensor, inputs: torch.Tensor, bias: torch.Tensor,
               c: torch.Tensor, sigmoid: ActivationUnit, tanh: ActivationUnit, f: CellFormats
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`lstm_step` on the products as the sparse product returns them (float64
    holding exact integers, or int64), returning also ``m`` in float64, the next product's
    operand (exact: ``m`` is an ``activation_bits`` code): ``(c, m, m as float64, counts)``."""
    c, m, counts = lstm_step(products.to(torch.int64), inputs, bias, c, sigmoid, tanh, f)
    return c, m, m.to(torch.float64), counts


def project_step(sums: torch.Tensor, p: ProjectionFormat
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A projection's exact sums ``(rows, width)`` (float64 or int64) to the layer's output:
    the codes, the same in float64 (the recurrent product's operand), and per row the sums
    that left the accumulator and the codes the fit clipped ``(rows, 2)``."""
    q = sums.to(torch.int64)
    n_acc = torch.zeros(q.shape[:-1], dtype=torch.int64)
    if p.wrap_sums:
        q, n_acc = _clip(q, p.accumulator_bits, saturate=False)
    y, n_clip = _clip(shift_round(q, p.shift, p.rounding), p.bits, p.saturate)
    return y, y.to(torch.float64), torch.stack([n_acc, n_clip], dim=-1)


class LayerKernels:
    """One LSTM layer's per-step functions, :func:`layer_step` and :func:`project_step` with
    the layer's formats and activation tables bound: eager, or compiled by inductor (one C++
    loop nest each, for any number of rows). Compiled as exported graphs (``torch.export``,
    then ``torch._inductor.standalone_compile``, which reuses torch's on-disk cache): a call
    runs the compiled code alone, without ``torch.compile``'s per-call guard checks (tens of
    microseconds, as long as the step itself). Where compiling or a compiled call fails (no
    C++ compiler), it warns, keeps why in ``failure`` and steps eagerly: the same integers."""

    def __init__(self, f: CellFormats, p: ProjectionFormat | None, sigmoid: ActivationUnit,
                 tanh: ActivationUnit, compiled: bool) -> None:
        self.f, self.p, self.sigmoid, self.tanh = f, p, sigmoid, tanh
        self.compiled: tuple[Callable, Callable | None] | None = None
        self.failure: str | None = None
        # (the compiled look-ups index the tables unchecked: units of the codes' width)
        if (compiled and f.compilable and (p is None or p.compilable)
                and sigmoid.bits == tanh.bits == f.activation_bits <= MAX_TABULATED_BITS):
            kernels = _compiled_kernels(f, p, sigmoid, tanh)
            if isinstance(kernels, str):
                self.failure = f"compiling failed: {kernels}"
            else:
                self.compiled = kernels
                self.tables = (sigmoid.outputs(), tanh.outputs())

    def step(self, products: torch.Tensor, inputs: torch.Tensor, bias: torch.Tensor,
             c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:func:`layer_step` with this layer's formats."""
        if self.compiled is not None:
            try:
                return self.compiled[0](products, inputs, bias, c, *self.tables)
            except Exception as err:   # the backend's failure, not the datapath's
                self._eager(err)
        return layer_step(products, inputs, bias, c, self.sigmoid, self.tanh, self.f)

    def project(self, sums: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:func:`project_step` with this layer's projection format."""
        if self.p is None:
            raise ValueError("this LSTM layer has no projection")
        if self.compiled is not None and self.compiled[1] is not None:
            try:
                return self.compiled[1](sums)
            except Exception as err:   # the backend's failure, not the datapath's
                self._eager(err)
        return project_step(sums, self.p)

    def _eager(self, err: Exception) -> None:
        log.warning("a compiled LSTM step failed (%s); this layer steps eagerly", err)
        self.failure = f"a compiled step failed: {err!r}"
        self.compiled = None


# Compiled kernels by what their code depends on: the formats and the units' shapes (the
# tables are inputs); where compiling failed, why (so that it is not tried again).
COMPILED: dict[tuple, tuple[Callable, Callable | None] | str] = {}


class _Step(torch.nn.Module):
    """:func:`layer_step` as a module to export; the tables are inputs (the compiled graph
    holds no tensor constants)."""

    def __init__(self, f: CellFormats, sigmoid: ActivationUnit, tanh: ActivationUnit) -> None:
        super().__init__()
        self.f, self.sigmoid, self.tanh = f, sigmoid, tanh

    def forward(self, products, inputs, bias, c, sig_table, tanh_table):
        return layer_step(products, inputs, bias, c, replace(self.sigmoid, _outputs=sig_table),
                          replace(self.tanh, _outputs=tanh_table), self.f)


class _Project(torch.nn.Module):
    """:func:`project_step` as a module to export."""

    def __init__(self, p: ProjectionFormat) -> None:
        super().__init__()
        self.p = p

    def forward(self, sums):
        return project_step(sums, self.p)


def _compiled_kernels(f: CellFormats, p: ProjectionFormat | None, sigmoid: ActivationUnit,
                      tanh: ActivationUnit) -> tuple[Callable, Callable | None] | str:
    units = tuple((u.kind, u.bits, u.in_frac, u.out_frac, u.rounding, u.outputs().numel())
                  for u in (sigmoid, tanh))
    key = (f, p, units)
    if key in COMPILED:
        return COMPILED[key]
    h, rows = f.hidden, torch.export.Dim("rows")
    # examples of two rows: export would specialize sizes 0 and 1
    step_args = (torch.zeros(2, 4 * h, dtype=torch.float64),
                 torch.zeros(2, 4 * h, dtype=torch.int64), torch.zeros(4 * h, dtype=torch.int64),
                 torch.zeros(2, h, dtype=torch.int64), sigmoid.outputs(), tanh.outputs())
    try:
        run_step = _exported(_Step(f, sigmoid, tanh), step_args,
                             ({0: rows}, {0: rows}, None, {0: rows}, None, None))
        run_project = None if p is None else _exported(
            _Project(p), (torch.zeros(2, p.width, dtype=torch.float64),), ({0: rows},))
        COMPILED[key] = (run_step, run_project)
    except Exception as err:   # the backend's failure, not the datapath's
        log.warning("compiling the LSTM step failed (%s); its steps run eagerly", err)
        COMPILED[key] = repr(err)
    return COMPILED[key]


def _exported(module: torch.nn.Module, args: tuple[torch.Tensor, ...], dynamic: tuple
              ) -> Callable:
    """``module`` compiled for tensors shaped as ``args`` (the ``dynamic`` dimensions any
    size)."""
    graph = torch.export.export(module, args, dynamic_shapes=dynamic).graph_module
    examples = [node.meta["val"] for node in graph.graph.nodes if node.op == "placeholder"]
    if len(examples) != len(args):   # a lifted constant would be a further input
        raise RuntimeError(f"the exported step has {len(examples)} inputs, not {len(args)}")
    # No bounds check per table look-up (a few percent of a batch's run): every index is a
    # code fitted into the unit's width just before, so within its 2**bits entries.
    with torch._inductor.config.patch(assert_indirect_indexing=False):
        artifact = torch._inductor.standalone_compile(graph, examples)
    return lambda *xs: tuple(artifact(*xs))
