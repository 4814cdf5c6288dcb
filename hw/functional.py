"""The engine's bit-accurate functional model, vectorized over whole tensors.

:func:`run_engine` executes an :class:`~hw.integer_model.EngineModel` on one utterance's
features and returns integer logits. Every signal is an ``(int64 codes, fractional length)``
pair; the datapath of each op, in the engine's order:

- sparse matrix-vector products: exact products ``w * x`` summed per output row (float64
  matmuls hold these integers exactly: compile-time bounds keep every sum below 2**53);
- accumulation of all terms of an output (input and recurrent products, bias) at the row's
  largest fractional length (exact left shifts), wrapped into ``accumulator_bits``;
- narrowing to the next signal's format: right shift with the configured rounding, then
  saturation (or wrap) into ``activation_bits``;
- sigmoid/tanh through the activation units; element-wise products (gates, cell state,
  gated residuals) exact, then narrowed the same way.

A delta LSTM (:meth:`Datapath.delta_lstm`) thresholds its input and output changes on the
codes (thresholds quantized to the signal's format), sends the deltas as ``activation_bits``
codes, and keeps the four gates' accumulated memory ``M`` in ``accumulator_bits`` from step to
step; its traced run records the deltas as ``{layer}.dx`` and ``{layer}.dh`` and the memories
they were taken against, after each step, as ``{layer}.x_hat`` and ``{layer}.y_hat``.

Formats: features and every op output use the DFP fractional lengths calibrated by
``asr-compress`` (``input``, op names, ``{lstm}.c``, ``{lstm}.m``); gate pre-activations use
the activation unit's input format and gate outputs its output format. Each op kind's datapath
is registered under backend ``datapath`` of :mod:`asr.models.ops`.
:mod:`hw.reference` computes the same thing one MAC at a time; tests hold the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from asr.compress.fixed_point import (
    FixedPointFormat,
    fit,
    narrow,
    round_float,
    rounding_mode,
    shift_round,
)
from asr.models.graph import Conv1dOp, DeltaLSTMOp, GatedResidualOp, LinearOp, LSTMOp, SkipSumOp
from asr.models.ops import dispatch, register
from hw.arith import EventCounter, RowEventCounter
from hw.config import EngineConfig
from hw.integer_model import EngineModel, IntMatrix
from hw.lstm_cell import (
    STEP_EVENTS,
    CellFormats,
    LayerKernels,
    ProjectionFormat,
    cell_step,
    project_step,
)

EXACT_LIMIT = 2 ** 53
# An LSTM's input products are computed for this many rows (frames) at a time.
INPUT_BLOCK_ROWS = 32
# LSTM layers of at least this many cells run their steps compiled (hw.lstm_cell), unless a
# run says otherwise (``compiled``).
COMPILE_MIN_HIDDEN = 512
DATAPATH = "datapath"

Signal = tuple[torch.Tensor, int]   # (int64 codes, fractional length)


@dataclass
class EngineRun:
    """Integer logits ``(time, vocab)`` with fractional length ``frac``, the events counted per
    layer, (when traced) every op's output as ``(codes, frac)``, the LSTM layers whose steps
    all ran compiled (:class:`~hw.lstm_cell.LayerKernels`), and the layers whose compiling or
    compiled step failed, by why: they stepped eagerly (the same integers)."""

    logits: torch.Tensor
    frac: int
    events: dict[str, dict[str, int]]
    trace: dict[str, tuple[torch.Tensor, int]] = field(default_factory=dict)
    compiled_layers: list[str] = field(default_factory=list)
    fallbacks: dict[str, str] = field(default_factory=dict)

    def logits_float(self) -> torch.Tensor:
        return self.logits.double() * 2.0 ** -self.frac


def im2col(x: torch.Tensor, kernel: int, dilation: int) -> torch.Tensor:
    """``(time, in)`` -> ``(time, in * kernel)``, column ``i * kernel + k`` holding
    ``x[t + (k - (kernel - 1) // 2) * dilation, i]`` (zero outside the utterance): a conv as
    one matrix product, in the column order of ``weight.reshape(out, in * kernel)``."""
    pad = (kernel - 1) // 2 * dilation
    t = x.shape[0]
    xp = torch.nn.functional.pad(x, (0, 0, pad, pad))
    taps = [xp[k * dilation:k * dilation + t] for k in range(kernel)]
    return torch.stack(taps, dim=2).reshape(t, -1)


class Datapath:
    """The engine's arithmetic on tensors; ``events`` collects saturations and overflows,
    ``skip`` is the running skip sum of the gated residual blocks run so far. ``compiled``:
    whether LSTM steps run compiled (None: layers of at least ``COMPILE_MIN_HIDDEN`` cells);
    ``kernels`` holds each LSTM layer's step functions, as they ran."""

    def __init__(self, model: EngineModel, trace: bool = False,
                 events: EventCounter | RowEventCounter | None = None,
                 compiled: bool | None = None):
        self.m = model
        self.cfg = model.cfg
        self.rounding = rounding_mode(model.cfg.rounding)
        self.events = events if events is not None else EventCounter()
        self.trace: dict[str, tuple[torch.Tensor, int]] | None = {} if trace else None
        self.skip: tuple[torch.Tensor, int] | None = None
        self.compiled = compiled
        self.kernels: dict[str, LayerKernels] = {}

    # -- primitives -------------------------------------------------------------------------

    def matvec(self, mat: IntMatrix, x: torch.Tensor, layer: str | None = None
               ) -> torch.Tensor:
        """One sparse matrix-vector product per row of ``x`` (codes ``(time, cols)``): each
        output row's exact sum of products ``w * x`` at fractional length ``mat.frac + fx``,
        wrapped into the accumulator (overflows counted for ``layer``)."""
        out = self.products(mat, x)
        if self.product_bound(mat) < 1 << (self.cfg.accumulator_bits - 1):
            return out   # no sum can leave the accumulator: nothing to check
        return self.wrap_accumulator(layer or mat.name, out)

    def products(self, mat: IntMatrix, x: torch.Tensor) -> torch.Tensor:
        """:meth:`matvec`'s exact sums, before the accumulator's wrap (``(rows, out)``
        int64, row-major)."""
        if self.product_bound(mat) >= EXACT_LIMIT:   # beyond float64's exact integers
            return x @ mat.weights.t()                # int64 (slow, rare)
        w, xd = mat.matmul_operand(), x.double()
        if w.layout != torch.sparse_csr:
            out = xd @ w.t()
        elif x.shape[0] == 1:
            out = torch.mv(w, xd[0])[None]
        else:
            out = (w @ xd.t()).t()   # the sparse product comes out (out, rows)
        return out.to(torch.int64, memory_format=torch.contiguous_format)

    def product_bound(self, mat: IntMatrix) -> int:
        """Largest magnitude a row's sum of products (or any partial sum) can reach: inputs
        are activation codes, ``|x| <= 2**(activation_bits - 1)``."""
        return mat.max_row_abs_sum * (1 << (self.cfg.activation_bits - 1))

    def accumulate(self, layer: str, terms: list[tuple[torch.Tensor, torch.Tensor | int]],
                   out_frac: int) -> tuple[torch.Tensor, torch.Tensor | int]:
        """Combine the partial sums feeding one output (products of several matrices, the
        bias, element-wise products): each term ``(values, frac)`` is brought to the common
        fractional length ``F = min(largest term frac, out_frac + guard_bits)`` (exact left
        shift, or a rounding right shift), the terms are added and the sum wrapped into the
        accumulator. Returns ``(sum, F)``; ``F`` is per row (a tensor) unless every term has one
        fractional length (ints)."""
        if all(isinstance(f, int) for _, f in terms):   # one format per term: scalar shifts
            frac = min(max(f for _, f in terms), out_frac + self.cfg.guard_bits)
            total = sum(shift_round(v, f - frac, self.rounding) for v, f in terms)
            return self.wrap_accumulator(layer, total), frac
        width = terms[0][0].shape[-1]
        fracs = [torch.as_tensor(f, dtype=torch.int64).expand(width) for _, f in terms]
        frac = torch.stack(fracs).amax(dim=0).clamp(max=out_frac + self.cfg.guard_bits)
        total = sum(shift_round(v, f - frac, self.rounding) for (v, _), f in zip(terms, fracs))
        return self.wrap_accumulator(layer, total), frac

    def wrap_accumulator(self, layer: str, total: torch.Tensor) -> torch.Tensor:
        return self.events.narrow(layer, total, self.cfg.accumulator_bits, saturate=False,
                                  kind="accumulator_overflow", values=False)

    def narrow(self, layer: str, q: torch.Tensor, from_frac, to_frac: int) -> torch.Tensor:
        """Round ``q`` (fractional length ``from_frac``) to ``to_frac`` and fit it into
        ``activation_bits``."""
        shifted = shift_round(q, from_frac - to_frac, self.rounding)
        return self.events.narrow(layer, shifted, self.cfg.activation_bits, self.cfg.saturate)

    def activation(self, layer: str, acc: torch.Tensor, frac, function: str, out_frac: int
                   ) -> tuple[torch.Tensor, int]:
        """The op's activation on an accumulator: identity/relu narrow to ``out_frac``;
        sigmoid/tanh go through their unit (output at the unit's format)."""
        if function in ("sigmoid", "tanh"):
            unit = self.m.units[function]
            return unit(self.narrow(f"{layer}.{function}_in", acc, frac, unit.in_frac)), \
                unit.out_frac
        if function == "relu":
            acc = acc.clamp(min=0)
        elif function != "identity":
            raise ValueError(f"{layer}: activation {function!r} has no hardware unit")
        return self.narrow(layer, acc, frac, out_frac), out_frac

    def record(self, name: str, codes: torch.Tensor, frac: int) -> None:
        if self.trace is not None:
            self.trace[name] = (codes, frac)

    # -- ops --------------------------------------------------------------------------------

    def input(self, features: torch.Tensor) -> tuple[torch.Tensor, int]:
        frac = self.m.signal("input")
        q = round_float(features.double() * 2.0 ** frac, self.rounding).to(torch.int64)
        return self.events.narrow("input", q, self.cfg.activation_bits, self.cfg.saturate), frac

    def dense(self, name: str, x: torch.Tensor, fx: int, activation: str,
              bias_key: str) -> tuple[torch.Tensor, int]:
        """A Conv1dOp/LinearOp's product (``x`` already im2col'ed) with bias and activation."""
        mat = self.m.matrices[name]
        b, fb = self.m.biases[bias_key]
        out_frac = (self.m.signal(name) if activation in ("identity", "relu")
                    else self.m.unit_in_frac)
        acc, frac = self.accumulate(name, [(self.matvec(mat, x), mat.frac + fx), (b, fb)],
                                    out_frac)
        return self.activation(name, acc, frac, activation, out_frac)

    def conv(self, op: Conv1dOp, x: torch.Tensor, fx: int) -> tuple[torch.Tensor, int]:
        cols = im2col(x, op.weight.shape[-1], op.dilation)
        return self.dense(op.name, cols, fx, op.activation, f"{op.name}.bias")

    def add(self, layer: str, a: torch.Tensor, fa: int, b: torch.Tensor, fb: int, out: int
            ) -> torch.Tensor:
        total, frac = self.accumulate(layer, [(a, fa), (b, fb)], out)
        return self.narrow(layer, total, frac, out)

    def gated_residual(self, op: GatedResidualOp, x: torch.Tensor, fx: int,
                       skip: tuple[torch.Tensor, int] | None
                       ) -> tuple[torch.Tensor, int, tuple[torch.Tensor, int]]:
        f, ff = dispatch(DATAPATH, op.filter, self, x, fx)
        g, fg = dispatch(DATAPATH, op.gate, self, x, fx)
        fz = max(ff, fg)
        z = self.narrow(f"{op.name}.z", f * g, ff + fg, fz)
        o, fo = dispatch(DATAPATH, op.out, self, z, fz)
        fout = self.m.signal(op.name)
        x_new = self.add(op.name, x, fx, o, fo, fout)
        fs = self.m.signal("skip_sum")
        s = o if skip is None else skip[0]
        s_frac = fo if skip is None else skip[1]
        skip_new = (self.narrow("skip_sum", o, fo, fs) if skip is None
                    else self.add("skip_sum", s, s_frac, o, fo, fs))
        return x_new, fout, (skip_new, fs)

    def lstm(self, op: LSTMOp, xs: list[torch.Tensor], fx: int
             ) -> tuple[list[torch.Tensor], int]:
        """One LSTM layer over utterances run side by side: ``xs`` (codes ``(time, in)``) are
        sorted longest first, and the rows of each step are the utterances still running (a
        prefix of the batch), so no step is computed for an utterance that has ended and each
        utterance's integers and events are those of a run alone. The batch turns each step's
        recurrent and projection products into one sparse-dense product."""
        m = self.m
        name = op.name
        gs = gate_setup(m, name, fx)
        wx, wr, proj, hidden, fy, bias = gs.wx, gs.wr, gs.proj, gs.hidden, gs.fy, gs.bias
        lengths = [int(x.shape[0]) for x in xs]
        if lengths != sorted(lengths, reverse=True):
            raise ValueError(f"{name}: utterances must be sorted longest first ({lengths})")
        steps, rows = (lengths[0] if lengths else 0), len(xs)
        # The gate accumulator's fractional length per row and each term's shift to it are
        # the same every step (see accumulate); as plain ints when all rows agree, so that
        # every step's shifts take the scalar path.
        frac, shift_r = scalar_if_uniform(gs.frac), scalar_if_uniform(gs.shift_r)
        shift_x = scalar_if_uniform(gs.shift_x)
        # Packed by time step (as PackedSequence): step t's rows are the utterances still
        # running, stored from start[t], so nothing is computed or held for ended ones.
        running = (torch.tensor(lengths)[None] > torch.arange(steps)[:, None]).sum(1)
        start = torch.cumsum(running, 0) - running
        starts, counts_per_step = start.tolist(), running.tolist()
        packed = [start[:n] + k for k, n in enumerate(lengths)]   # each frame's packed row
        xp = torch.cat(xs) if xs else torch.zeros(0, wx.shape[1], dtype=torch.int64)
        if rows > 1:
            xp = xp.index_select(0, torch.argsort(torch.cat(packed)))
        utterance = torch.arange(xp.shape[0]) - start.repeat_interleave(running)
        # Can a gate sum leave the accumulator? Only if the bounds of its shifted terms
        # (|shift_round(v, s)| <= (|v| >> s) + 1) and the bias add up beyond it.
        limit = 1 << (self.cfg.accumulator_bits - 1)
        gate_bound = (shifted_bound(self.product_bound(wx), shift_x) + int(bias.abs().max())
                      + shifted_bound(self.product_bound(wr), shift_r))
        fm = gs.fm
        formats = self.cell_formats(hidden, gs.fc, fm, frac, shift_r, shift_x,
                                    wrap_products=self.product_bound(wr) >= limit,
                                    wrap_gates=gate_bound >= limit)
        projection = self.projection_format(proj, fm, fy)
        kernels = self.kernels[name] = self.layer_kernels(formats, projection, [wr, proj])
        out_dim = proj.shape[0] if proj is not None else hidden
        c = torch.zeros(rows, hidden, dtype=torch.int64)
        # the layer's output in float64: the recurrent product's operand
        y_operand = torch.zeros(rows, out_dim, dtype=torch.float64)
        ys, counts, projected = [], [], []
        # Input products do not depend on the recurrence: one product for the frames of
        # several steps (a block small enough to stay in cache).
        block = max(1, INPUT_BLOCK_ROWS // max(rows, 1))
        for t0 in range(0, steps, block):
            t1 = min(t0 + block, steps)
            r0, r1 = starts[t0], starts[t1 - 1] + counts_per_step[t1 - 1]
            inputs = self.input_products(wx, xp[r0:r1], utterance[r0:r1])
            for t in range(t0, t1):
                first, active = starts[t] - r0, counts_per_step[t]
                c, y, y_operand, n = kernels.step(
                    self.sums(wr, y_operand[:active]), inputs[first:first + active], bias,
                    c[:active])
                counts.append(n)
                if proj is not None:   # narrowed by the shift computed once
                    y, y_operand, n = kernels.project(self.sums(proj, y_operand))
                    projected.append(n)
                ys.append(y)
        # Every step's rows in time-packed order, as the outputs and counts were appended:
        # the steps' events are counted once per utterance.
        per_row = torch.zeros(rows, len(STEP_EVENTS), dtype=torch.int64)
        if counts:
            per_row.index_add_(0, utterance, torch.cat(counts))
        if proj is not None:
            self.projection_events(name, proj.name, utterance, projected, lengths, out_dim)
        self.cell_events(name, hidden, per_row.tolist(), lengths, STEP_EVENTS)
        out = torch.cat(ys) if ys else torch.zeros(0, out_dim, dtype=torch.int64)
        return [out[rows_k] for rows_k in packed], fy

    def projection_events(self, name: str, proj: str, utterance: torch.Tensor,
                          counts: list[torch.Tensor], steps: list[int], width: int) -> None:
        """Report the projection's events per utterance: its sums that left the accumulator
        (under ``proj``) and the outputs the narrowing clipped (under ``name``), from each
        step's counts ``(rows, 2)`` in time-packed order, and the ``width`` values of each of
        utterance ``k``'s ``steps[k]`` steps."""
        clip = "saturation" if self.cfg.saturate else "wrap"
        per_row = torch.zeros(len(steps), 2, dtype=torch.int64)
        if counts:
            per_row.index_add_(0, utterance, torch.cat(counts))
        for k, ((n_acc, n_clip), n) in enumerate(zip(per_row.tolist(), steps)):
            events = self.utterance_events(k)
            events.add(proj, "accumulator_overflow", n_acc)
            events.add(name, clip, n_clip)
            events.add(name, "values", n * width)

    def sums(self, mat: IntMatrix, x: torch.Tensor) -> torch.Tensor:
        """:meth:`products` of codes ``x`` held in float64 (``(rows, cols)``, as the LSTM
        step returns them), left in float64 where they are exact (int64 beyond)."""
        if self.product_bound(mat) >= EXACT_LIMIT:   # beyond float64's exact integers
            return x.to(torch.int64) @ mat.weights.t()   # int64 (slow, rare)
        w = mat.matmul_operand()
        if w.layout != torch.sparse_csr:
            return x @ w.t()
        if x.shape[0] == 1:
            return torch.mv(w, x[0])[None]   # twice the speed of a one-column product
        return (w @ x.t()).t().contiguous()   # the sparse product comes out (out, rows)

    def cell_events(self, name: str, hidden: int, clipped: list[list[int]], steps: list[int],
                    kinds: tuple[tuple[str, str], ...]) -> None:
        """Report utterance ``k``'s cell events: ``clipped[k]``, its out-of-range counts of
        ``kinds`` (:data:`~hw.lstm_cell.STEP_EVENTS`), and the values of its ``steps[k]``
        steps."""
        clip = "saturation" if self.cfg.saturate else "wrap"
        widths = {"gates": 4 * hidden, "c": hidden, "tanh_in": hidden, "m": hidden}
        for k, (counted, n) in enumerate(zip(clipped, steps)):
            events = self.utterance_events(k)
            for (suffix, kind), count in zip(kinds, counted):
                events.add(f"{name}.{suffix}", clip if kind == "clip" else kind, count)
            for suffix, width in widths.items():
                events.add(f"{name}.{suffix}", "values", n * width)

    def input_products(self, mat: IntMatrix, x: torch.Tensor, utterance: torch.Tensor
                       ) -> torch.Tensor:
        """:meth:`matvec` on rows of several utterances (row ``r`` is utterance
        ``utterance[r]``'s), each utterance's accumulator overflows counted as its own."""
        out = self.products(mat, x)
        if self.product_bound(mat) < 1 << (self.cfg.accumulator_bits - 1):
            return out
        wrapped, n = narrow(out, self.cfg.accumulator_bits, saturate=False)
        if n:   # rare: count per utterance
            per_row = (wrapped != out).sum(1)
            per_utterance = torch.zeros(int(utterance.max()) + 1, dtype=torch.int64)
            per_utterance.index_add_(0, utterance, per_row)
            for k, count in enumerate(per_utterance.tolist()):
                self.utterance_events(k).add(mat.name, "accumulator_overflow", count)
        return wrapped

    def layer_kernels(self, formats: CellFormats, projection: ProjectionFormat | None,
                      mats: list[IntMatrix | None]) -> LayerKernels:
        """The layer's step functions, compiled where ``compiled`` says (by default for
        layers of at least ``COMPILE_MIN_HIDDEN`` cells, where compiling pays off) and the
        products ``mats`` are exact in float64."""
        exact = all(mat is None or self.product_bound(mat) < EXACT_LIMIT for mat in mats)
        wanted = (formats.hidden >= COMPILE_MIN_HIDDEN if self.compiled is None
                  else self.compiled)
        units = self.m.units
        return LayerKernels(formats, projection, units["sigmoid"], units["tanh"],
                            compiled=wanted and exact)

    def kernel_report(self) -> tuple[list[str], dict[str, str]]:
        """The LSTM layers run so far whose steps all ran compiled, and those whose compiling
        or compiled step failed (by why), which stepped eagerly."""
        return ([name for name, k in self.kernels.items() if k.compiled is not None],
                {name: k.failure for name, k in self.kernels.items() if k.failure is not None})

    def projection_format(self, proj: IntMatrix | None, fm: int, fy: int
                          ) -> ProjectionFormat | None:
        """How projection ``proj`` narrows its sums of the cell output (fractional length
        ``fm``) to the layer's output (``fy``); None without a projection."""
        if proj is None:
            return None
        return ProjectionFormat(
            proj.shape[0], scalar_if_uniform(proj.frac + fm - fy), self.cfg.activation_bits,
            self.cfg.saturate, self.rounding, self.cfg.accumulator_bits,
            self.product_bound(proj) >= 1 << (self.cfg.accumulator_bits - 1))

    def cell_formats(self, hidden: int, fc: int, fm: int, frac: int | torch.Tensor,
                     shift_r: int | torch.Tensor = 0, shift_x: int | torch.Tensor = 0,
                     wrap_products: bool = False, wrap_gates: bool = False) -> CellFormats:
        cfg, m = self.cfg, self.m
        return CellFormats(hidden, frac, shift_r, shift_x, m.unit_in_frac, m.gate_frac, fc, fm,
                           cfg.guard_bits, cfg.activation_bits, cfg.accumulator_bits,
                           cfg.saturate, self.rounding, wrap_products, wrap_gates)

    def utterance_events(self, k: int) -> EventCounter:
        """Where utterance ``k``'s events go when its rows are handled alone."""
        return self.events.row(k) if isinstance(self.events, RowEventCounter) else self.events

    def cell(self, name: str, acc: torch.Tensor, c: torch.Tensor, formats: CellFormats,
             proj: IntMatrix | None, projection: ProjectionFormat | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of a delta LSTM cell from its gates' accumulators ``acc`` (i, f, c, o
        stacked, in the layer's ``formats``): the new cell state and output ``y`` (projected
        by ``proj``, narrowed as ``projection`` says, when ``proj`` is set)."""
        m = self.m
        c, mo, clipped = cell_step(acc, formats.frac, c, m.units["sigmoid"], m.units["tanh"],
                                   formats)
        counted = clipped.reshape(-1, clipped.shape[-1]).tolist()
        self.cell_events(name, formats.hidden, counted, [1] * len(counted), STEP_EVENTS[2:])
        if proj is None or projection is None:
            return c, mo
        # the plain LSTM's narrowing (and events), on one row
        y, _, n = project_step(self.products(proj, mo[None]), projection)
        self.projection_events(name, proj.name, torch.zeros(1, dtype=torch.int64), [n], [1],
                               projection.width)
        return c, y[0]

    def deltas(self, layer: str, x: torch.Tensor, memory: torch.Tensor, theta: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The deltas sent for codes ``x`` (``(..., n)``) against ``memory`` (the last values
        sent) and the new memory. A change is sent when ``|x - memory| >= theta`` (codes of
        the same format); the sent delta is an ``activation_bits`` code (saturated or wrapped,
        counted under ``layer``) and the memory moves by exactly what was sent, so it never
        drifts from the receiver's sum of deltas."""
        change = x - memory
        sent = torch.where(change.abs() >= theta, change, torch.zeros_like(change))
        sent = self.events.narrow(layer, sent, self.cfg.activation_bits, self.cfg.saturate)
        return sent, fit(memory + sent, self.cfg.activation_bits, saturate=False)

    def delta_lstm(self, op: DeltaLSTMOp, x: torch.Tensor, fx: int
                   ) -> tuple[torch.Tensor, int]:
        """A delta LSTM layer. ``M`` (the 4 gates' accumulators) starts at the biases and
        adds each step's products of the sent deltas; its fractional length per row is the
        LSTM's (the largest term's, at most ``guard_bits`` beyond the gate input), so when no
        term is rounded into it ``M_t = b + W_x x_hat_t + W_r y_hat_t`` exactly and never
        drifts; otherwise each step's product sum is rounded once into it."""
        name = op.name
        gs = gate_setup(self.m, name, fx)
        wx, wr, proj, hidden, fy = gs.wx, gs.wr, gs.proj, gs.hidden, gs.fy
        tx = delta_threshold(self.cfg, op, "x", fx)
        th = delta_threshold(self.cfg, op, "h", fy)
        rounding = self.rounding
        # The input deltas do not depend on the recurrence: all steps first, one product.
        x_hat = torch.zeros(x.shape[1], dtype=torch.int64)
        dxs, x_hats = [], []
        for t in range(x.shape[0]):
            dx, x_hat = self.deltas(f"{name}.dx", x[t], x_hat, tx)
            dxs.append(dx)
            x_hats.append(x_hat)
        dx = torch.stack(dxs) if dxs else x.new_zeros((0, x.shape[1]))
        px = shift_round(self.matvec(wx, dx), gs.shift_x, rounding)
        acc = self.wrap_accumulator(f"{name}.gates", gs.bias)
        formats = self.cell_formats(hidden, gs.fc, gs.fm, gs.frac)
        projection = self.projection_format(proj, gs.fm, fy)
        c = torch.zeros(hidden, dtype=torch.int64)
        y = torch.zeros(proj.shape[0] if proj is not None else hidden, dtype=torch.int64)
        y_hat = torch.zeros_like(y)
        outputs, dys, y_hats = [], [], []
        for t in range(x.shape[0]):
            dy, y_hat = self.deltas(f"{name}.dh", y, y_hat, th)
            dys.append(dy)
            y_hats.append(y_hat)
            pr = shift_round(self.matvec(wr, dy[None])[0], gs.shift_r, rounding)
            acc = self.wrap_accumulator(f"{name}.gates", acc + px[t] + pr)
            c, y = self.cell(name, acc, c, formats, proj, projection)
            outputs.append(y)
        self.record(f"{name}.dx", dx, fx)
        self.record(f"{name}.x_hat", torch.stack(x_hats) if x_hats else dx, fx)
        no_y = y.new_zeros((0, y.numel()))
        self.record(f"{name}.dh", torch.stack(dys) if dys else no_y, fy)
        self.record(f"{name}.y_hat", torch.stack(y_hats) if y_hats else no_y, fy)
        return torch.stack(outputs), fy


def shifted_bound(bound: int, shift: int | torch.Tensor) -> int:
    """A bound of ``|shift_round(v, shift)|`` for ``|v| <= bound`` (the smallest shift's)."""
    least = int(shift if isinstance(shift, int) else shift.min())
    return (bound >> least) + 1 if least >= 0 else bound << -least


def scalar_if_uniform(values: torch.Tensor) -> torch.Tensor | int:
    """``values`` as one int when all are equal (shifts by an int take the scalar path)."""
    lo, hi = torch.aminmax(values)
    return int(lo) if int(lo) == int(hi) else values


def delta_threshold(cfg: EngineConfig, op: DeltaLSTMOp, side: str, frac: int) -> int:
    """The threshold of ``op``'s input (``side="x"``) or recurrent (``"h"``) deltas as a code
    of the signal's format (fractional length ``frac``): the engine's ``theta_x``/``theta_h``
    when set, else the model's; rounded by the engine's rounding, saturated."""
    theta = getattr(cfg, f"theta_{side}")
    theta = getattr(op, f"theta_{side}") if theta is None else theta
    fmt = FixedPointFormat(cfg.activation_bits, frac, rounding=cfg.rounding)
    return int(fmt.to_int(torch.tensor([float(theta)]))[0])


def stacked(model: EngineModel, name: str, side: str) -> IntMatrix:
    """The four gate matrices of one side (``x`` input, ``r`` recurrent) stacked by rows
    (i, f, c, o), so one product serves all gates; cached on the model."""
    key = ("stacked", name, side)
    if key not in model.cache:
        mats = [model.matrices[f"{name}.W_{g}{side}"] for g in "ifco"]
        model.cache[key] = IntMatrix(f"{name}.W_{side}", mats[0].layer_type,
                                     torch.cat([mt.codes for mt in mats]),
                                     torch.cat([mt.frac for mt in mats]),
                                     torch.cat([mt.weights for mt in mats]), None,
                                     mats[0].value_bits, mats[0].index_bits)
    return model.cache[key]


@dataclass(frozen=True)
class GateSetup:
    """An LSTM layer's gate sums, fixed before its first step: the stacked matrices, the
    projection, the formats (``fy`` the recurrent input's: the projection's output or ``m``),
    the accumulator's fractional length per row ``frac`` (the largest term's, at most
    ``guard_bits`` beyond the gate input), each product's shift to it and the bias at it."""

    wx: IntMatrix
    wr: IntMatrix
    proj: IntMatrix | None
    hidden: int
    fy: int
    fm: int
    fc: int
    frac: torch.Tensor
    shift_x: torch.Tensor
    shift_r: torch.Tensor
    bias: torch.Tensor


def gate_setup(model: EngineModel, name: str, fx: int) -> GateSetup:
    """The gate sums of LSTM layer ``name`` (plain or delta) whose input has fractional length
    ``fx``."""
    wx, wr = stacked(model, name, "x"), stacked(model, name, "r")
    b = torch.cat([model.biases[f"{name}.b_{g}"][0] for g in "ifco"])
    fb = torch.cat([model.biases[f"{name}.b_{g}"][1] for g in "ifco"])
    proj = model.matrices.get(f"{name}.W_ym")
    fm = model.signal(f"{name}.m")
    fy = model.signal(name) if proj is not None else fm
    fxr, frr = wx.frac + fx, wr.frac + fy
    frac = torch.stack([fxr, frr, fb]).amax(dim=0).clamp(
        max=model.unit_in_frac + model.cfg.guard_bits)
    bias = shift_round(b, fb - frac, rounding_mode(model.cfg.rounding))
    return GateSetup(wx, wr, proj, wx.shape[0] // 4, fy, fm, model.signal(f"{name}.c"), frac,
                     fxr - frac, frr - frac, bias)


# The datapath backend: ``impl(op, dp: Datapath, x, fx) -> (codes, frac)`` of the op's output.

@register(DATAPATH, "conv1d")
def _conv(op: Conv1dOp, dp: Datapath, x: torch.Tensor, fx: int) -> Signal:
    return dp.conv(op, x, fx)


@register(DATAPATH, "gated_residual")
def _gated_residual(op: GatedResidualOp, dp: Datapath, x: torch.Tensor, fx: int) -> Signal:
    x, fx, dp.skip = dp.gated_residual(op, x, fx, dp.skip)
    return x, fx


@register(DATAPATH, "skip_sum")
def _skip_sum(op: SkipSumOp, dp: Datapath, x: torch.Tensor, fx: int) -> Signal:
    if dp.skip is None:
        raise ValueError(f"{op.name}: no residual block before the skip sum")
    return dp.skip


@register(DATAPATH, "lstm")
def _lstm(op: LSTMOp, dp: Datapath, x: torch.Tensor, fx: int) -> Signal:
    ys, fy = dp.lstm(op, [x], fx)
    return ys[0], fy


@register(DATAPATH, "delta_lstm")
def _delta_lstm(op: DeltaLSTMOp, dp: Datapath, x: torch.Tensor, fx: int) -> Signal:
    return dp.delta_lstm(op, x, fx)


@register(DATAPATH, "linear")
def _linear(op: LinearOp, dp: Datapath, x: torch.Tensor, fx: int) -> Signal:
    return dp.dense(op.name, x, fx, op.activation, f"{op.name}.bias")


def run_engine(model: EngineModel, features: torch.Tensor, trace: bool = False,
               compiled: bool | None = None) -> EngineRun:
    """Run one utterance's ``(time, input_dim)`` features through the engine (``compiled``:
    whether LSTM steps run compiled, see :class:`Datapath`)."""
    dp = Datapath(model, trace, compiled=compiled)
    x, fx = dp.input(features)
    dp.record("input", x, fx)
    for op in model.graph.ops:
        x, fx = dispatch(DATAPATH, op, dp, x, fx)
        dp.record(op.name, x, fx)
    return EngineRun(x, fx, dp.events.as_dict(), dp.trace or {}, *dp.kernel_report())


def run_engine_batch(model: EngineModel, features: list[torch.Tensor],
                     compiled: bool | None = None) -> list[EngineRun]:
    """Run several utterances side by side: LSTM layers step all of them at once (one sparse
    product per step for the batch), every other op runs per utterance. Each returned run
    (in the order of ``features``) has the integers and events of :func:`run_engine` on that
    utterance alone; tests hold the two equal. ``compiled``: whether LSTM steps run
    compiled (None: by the layer's size, see :class:`Datapath`)."""
    order = sorted(range(len(features)), key=lambda i: -int(features[i].shape[0]))
    events = RowEventCounter(len(order))
    rows = [Datapath(model, events=events.row(k)) for k in range(len(order))]
    xs, fx = [], 0
    for k, i in enumerate(order):
        x, fx = rows[k].input(features[i])
        xs.append(x)
    batch = Datapath(model, events=events, compiled=compiled)
    for op in model.graph.ops:
        if type(op) is LSTMOp:
            xs, fx = batch.lstm(op, xs, fx)
        else:
            outs = [dispatch(DATAPATH, op, dp, x, fx) for dp, x in zip(rows, xs)]
            xs, fx = [o[0] for o in outs], (outs[0][1] if outs else fx)
    counts = events.as_dicts()
    compiled_layers, fallbacks = batch.kernel_report()
    runs: list[EngineRun | None] = [None] * len(order)
    for k, i in enumerate(order):
        runs[i] = EngineRun(xs[k], fx, counts[k], {}, list(compiled_layers), dict(fallbacks))
    return runs  # type: ignore[return-value]
