"""A plain reference of the engine: one MAC at a time, in Python integers.

Slow and obviously right, it exists to prove :mod:`hw.functional` bit-exact: it walks each
matrix's stored entries in the engine's order (CSC: PE by PE, column by column, following the
relative row indices through the padding; CSB: row by row, bank by bank; dense: every weight;
a delta LSTM: only the columns of non-zero deltas), decodes each code (codebook table,
alignment shift), multiplies, and adds the product into the row's accumulator with a
wrap-around after every addition. Rounding, saturation and the
activation-unit look-ups are written out for one value at a time. Nothing here is shared with
the vectorized path except the ROM contents of the activation units and the formats (and the op
registry of :mod:`asr.models.ops`, where each op kind's reference registers under backend
``reference``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from asr.compress.sparse_formats import CSBMatrix, CSCMatrix
from asr.models.graph import Conv1dOp, DeltaLSTMOp, GatedResidualOp, LinearOp, LSTMOp, SkipSumOp
from asr.models.ops import dispatch, register
from hw.activation_unit import ActivationUnit
from hw.arith import EventCounter
from hw.integer_model import EngineModel, IntMatrix

Vector = list[int]
REFERENCE = "reference"


def shift_round_int(q: int, s: int, rounding: str) -> int:
    if s <= 0:
        return q << -s
    floor = q >> s           # Python's >> floors, like an arithmetic shift
    if rounding == "floor":
        return floor
    if rounding == "zero":
        return -((-q) >> s) if q < 0 else floor
    rem = q - (floor << s)
    half = 1 << (s - 1)
    if rounding == "nearest":
        return floor + (1 if rem >= half else 0)
    if rounding == "nearest_even":
        return floor + (1 if rem > half or (rem == half and floor % 2 == 1) else 0)
    raise ValueError(rounding)


def fit_int(q: int, bits: int, saturate: bool) -> tuple[int, bool]:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if lo <= q <= hi:
        return q, False
    if saturate:
        return (lo if q < lo else hi), True
    return (q - lo) % (1 << bits) + lo, True


def lookup_int(unit: ActivationUnit, table: list[int], q: int) -> int:
    """``unit``'s output for input code ``q``; ``table`` is its ROM as a list."""
    offset = q - unit.lo
    k = offset >> unit.bin_shift
    if unit.kind == "lut":
        return table[k]
    dx = offset - (k << unit.bin_shift)
    return table[k] + shift_round_int((table[k + 1] - table[k]) * dx, unit.bin_shift,
                                      unit.rounding)


def stored_entries(mat: IntMatrix) -> Iterator[tuple[int, int, int]]:
    """``(row, col, code)`` of every stored entry, in the order the engine streams them."""
    s = mat.storage
    if isinstance(s, CSCMatrix):
        counts, values, rel = s.col_counts.tolist(), s.values.tolist(), s.rel_index.tolist()
        pos = 0
        for pe in range(s.num_pes):
            for col in range(s.shape[1]):
                local = -1
                for _ in range(counts[pe][col]):
                    local += rel[pos] + 1
                    yield local * s.num_pes + pe, col, values[pos]
                    pos += 1
    elif isinstance(s, CSBMatrix):
        values, positions = s.values.tolist(), s.positions.tolist()
        for row, banks in enumerate(values):
            for b, bank in enumerate(banks):
                for k, code in enumerate(bank):
                    yield row, b * s.bank_size + positions[row][b][k], code
    else:
        for row, line in enumerate(mat.codes.tolist()):
            for col, code in enumerate(line):
                yield row, col, code


def decoded_weights(mat: IntMatrix) -> list[tuple[int, int, int]]:
    """``(row, col, weight)`` per stored entry: the code decoded and aligned to its row."""
    table = mat.decode.tolist() if mat.decode is not None else None
    shifts = mat.align.tolist() if mat.align is not None else None
    out = []
    for row, col, code in stored_entries(mat):
        w = table[code + mat.decode_offset] if table is not None else code
        if shifts is not None:
            w <<= shifts[row][col]
        out.append((row, col, w))
    return out


class ReferenceEngine:
    """The engine one value at a time; ``skip`` is the running skip sum of the gated residual
    blocks run so far."""

    def __init__(self, model: EngineModel):
        self.m = model
        self.cfg = model.cfg
        self.events = EventCounter()
        self.skip: tuple[list[Vector], int] | None = None
        self._weights: dict[str, list[tuple[int, int, int]]] = {}
        self._columns: dict[str, dict[int, list[tuple[int, int]]]] = {}
        self._tables = {fn: unit.table.tolist() for fn, unit in model.units.items()}

    def lookup(self, function: str, q: int) -> int:
        return lookup_int(self.m.units[function], self._tables[function], q)

    def _narrow(self, layer: str, q: int, from_frac: int, to_frac: int) -> int:
        v, out = fit_int(shift_round_int(q, from_frac - to_frac, self.cfg.rounding),
                         self.cfg.activation_bits, self.cfg.saturate)
        self.events.add(layer, "saturation" if self.cfg.saturate else "wrap", int(out))
        self.events.add(layer, "values", 1)
        return v

    def _wrap(self, layer: str, exact: int) -> int:
        v, out = fit_int(exact, self.cfg.accumulator_bits, saturate=False)
        self.events.add(layer, "accumulator_overflow", int(out))
        return v

    def spmv(self, mat: IntMatrix, x: Vector, layer: str) -> Vector:
        """One product, MAC by MAC, each addition wrapped to the accumulator's width."""
        if mat.name not in self._weights:
            self._weights[mat.name] = decoded_weights(mat)
        products = ((row, w * x[col]) for row, col, w in self._weights[mat.name])
        return self._accumulate(layer, mat.shape[0], products)

    def _accumulate(self, layer: str, rows: int, products: Iterable[tuple[int, int]]
                    ) -> Vector:
        """Sum ``(row, product)`` pairs in order, each addition wrapped to the accumulator;
        a row whose exact sum left the accumulator's range counts one overflow."""
        acc, exact = [0] * rows, [0] * rows
        for row, p in products:
            acc[row] = fit_int(acc[row] + p, self.cfg.accumulator_bits, saturate=False)[0]
            exact[row] += p
        for row in range(rows):
            over = fit_int(exact[row], self.cfg.accumulator_bits, saturate=False)[1]
            self.events.add(layer, "accumulator_overflow", int(over))
        return acc

    def combine(self, layer: str, terms: list[tuple[int, int]], out_frac: int
                ) -> tuple[int, int]:
        frac = min(max(f for _, f in terms), out_frac + self.cfg.guard_bits)
        total = sum(shift_round_int(v, f - frac, self.cfg.rounding) for v, f in terms)
        return self._wrap(layer, total), frac

    def activation(self, layer: str, acc: int, frac: int, function: str, out_frac: int
                   ) -> int:
        if function in ("sigmoid", "tanh"):
            return self.lookup(function, self._narrow(f"{layer}.{function}_in", acc, frac,
                                                      self.m.units[function].in_frac))
        if function == "relu":
            acc = max(acc, 0)
        return self._narrow(layer, acc, frac, out_frac)

    def dense(self, name: str, xs: list[Vector], fx: int, function: str, bias_key: str
              ) -> tuple[list[Vector], int]:
        mat = self.m.matrices[name]
        b, fb = (v.tolist() for v in self.m.biases[bias_key])
        wf = mat.frac.tolist()
        out_frac = (self.m.signal(name) if function in ("identity", "relu")
                    else self.m.unit_in_frac)
        result_frac = out_frac if function in ("identity", "relu") else self.m.gate_frac
        out = []
        for x in xs:
            acc = self.spmv(mat, x, name)
            row = []
            for r in range(mat.shape[0]):
                s, f = self.combine(name, [(acc[r], wf[r] + fx), (b[r], fb[r])], out_frac)
                row.append(self.activation(name, s, f, function, out_frac))
            out.append(row)
        return out, result_frac

    def conv(self, op: Conv1dOp, xs: list[Vector], fx: int) -> tuple[list[Vector], int]:
        kernel, d = op.weight.shape[-1], op.dilation
        channels = len(xs[0])
        half = (kernel - 1) // 2
        cols = []
        for t in range(len(xs)):
            col = [0] * (channels * kernel)
            for i in range(channels):
                for k in range(kernel):
                    src = t + (k - half) * d
                    if 0 <= src < len(xs):
                        col[i * kernel + k] = xs[src][i]
            cols.append(col)
        return self.dense(op.name, cols, fx, op.activation, f"{op.name}.bias")

    def add(self, layer: str, a: Vector, fa: int, b: Vector, fb: int, out: int) -> Vector:
        res = []
        for u, v in zip(a, b):
            s, f = self.combine(layer, [(u, fa), (v, fb)], out)
            res.append(self._narrow(layer, s, f, out))
        return res

    def lstm(self, op: LSTMOp, xs: list[Vector], fx: int) -> tuple[list[Vector], int]:
        m, name = self.m, op.name
        hidden = op.W_ix.shape[0]
        proj = m.matrices.get(f"{name}.W_ym")
        fy = m.signal(name) if proj is not None else m.signal(f"{name}.m")
        unit_in = m.unit_in_frac
        c = [0] * hidden
        y = [0] * (proj.shape[0] if proj is not None else hidden)
        outputs = []
        for x in xs:
            pre = []
            for g in "ifco":
                wx, wr = m.matrices[f"{name}.W_{g}x"], m.matrices[f"{name}.W_{g}r"]
                ax, ar = self.spmv(wx, x, f"{name}.W_x"), self.spmv(wr, y, f"{name}.W_r")
                b, fb = (v.tolist() for v in m.biases[f"{name}.b_{g}"])
                fxr, frr = wx.frac.tolist(), wr.frac.tolist()
                pre.append([self.combine(f"{name}.gates", [(ax[r], fxr[r] + fx),
                                                           (ar[r], frr[r] + fy),
                                                           (b[r], fb[r])], unit_in)
                            for r in range(hidden)])
            y = self.cell(op, pre, c)
            outputs.append(list(y))
        return outputs, fy

    def cell(self, op: LSTMOp, pre: list[list[tuple[int, int]]], c: list[int]) -> Vector:
        """One LSTM cell step from the gates' sums ``pre`` (i, f, c, o; ``(sum, frac)`` per
        row), one row at a time: updates the cell state ``c`` in place, returns ``y``."""
        m, name = self.m, op.name
        hidden = op.W_ix.shape[0]
        proj = m.matrices.get(f"{name}.W_ym")
        fm = m.signal(f"{name}.m")
        fy = m.signal(name) if proj is not None else fm
        fc, unit_in, fg = m.signal(f"{name}.c"), m.unit_in_frac, m.gate_frac
        gates = {}
        for g, fn in zip("ifco", ("sigmoid", "sigmoid", "tanh", "sigmoid")):
            gates[g] = [self.lookup(fn, self._narrow(f"{name}.gates", s, f, unit_in))
                        for s, f in pre["ifco".index(g)]]
        mo = []
        for r in range(hidden):
            s, f = self.combine(f"{name}.c", [(gates["f"][r] * c[r], fg + fc),
                                              (gates["i"][r] * gates["c"][r], 2 * fg)], fc)
            c[r] = self._narrow(f"{name}.c", s, f, fc)
        for r in range(hidden):
            h = self.lookup("tanh", self._narrow(f"{name}.tanh_in", c[r], fc, unit_in))
            mo.append(self._narrow(f"{name}.m", gates["o"][r] * h, 2 * fg, fm))
        if proj is None:
            return mo
        acc = self.spmv(proj, mo, proj.name)
        pf = proj.frac.tolist()
        return [self._narrow(name, acc[r], pf[r] + fm, fy) for r in range(len(acc))]


    def threshold(self, op: DeltaLSTMOp, side: str, frac: int) -> int:
        """A delta threshold as a code of the signal's format: ``theta * 2**frac`` (an exact
        binary fraction) rounded as every narrowing is, then saturated."""
        theta = getattr(self.cfg, f"theta_{side}")
        theta = getattr(op, f"theta_{side}") if theta is None else theta
        num, den = float(theta * 2.0 ** frac).as_integer_ratio()
        q = shift_round_int(num, den.bit_length() - 1, self.cfg.rounding)
        return fit_int(q, self.cfg.activation_bits, saturate=True)[0]

    def send(self, layer: str, x: Vector, memory: Vector, theta: int) -> Vector:
        """The deltas sent for ``x`` one value at a time; ``memory`` is updated in place."""
        bits = self.cfg.activation_bits
        out = []
        for k, (v, last) in enumerate(zip(x, memory)):
            change = v - last
            d = self._narrow(layer, change if abs(change) >= theta else 0, 0, 0)
            memory[k] = fit_int(last + d, bits, saturate=False)[0]
            out.append(d)
        return out

    def column_products(self, mat: IntMatrix, d: Vector, layer: str) -> Vector:
        """A delta product: only the columns of non-zero deltas are read; within a column,
        its stored entries in storage order, each addition wrapped to the accumulator."""
        if mat.name not in self._columns:
            by_col: dict[int, list[tuple[int, int]]] = {}
            for row, col, w in decoded_weights(mat):
                by_col.setdefault(col, []).append((row, w))
            self._columns[mat.name] = by_col
        columns = self._columns[mat.name]
        products = ((row, w * dv) for col, dv in enumerate(d) if dv
                    for row, w in columns.get(col, []))
        return self._accumulate(layer, mat.shape[0], products)

    def delta_lstm(self, op: DeltaLSTMOp, xs: list[Vector], fx: int
                   ) -> tuple[list[Vector], int]:
        m, name = self.m, op.name
        hidden = op.W_ix.shape[0]
        proj = m.matrices.get(f"{name}.W_ym")
        fy = m.signal(name) if proj is not None else m.signal(f"{name}.m")
        unit_in = m.unit_in_frac
        tx, th = self.threshold(op, "x", fx), self.threshold(op, "h", fy)
        gates = "ifco"
        wx = [m.matrices[f"{name}.W_{g}x"] for g in gates]
        wr = [m.matrices[f"{name}.W_{g}r"] for g in gates]
        bias = [[v.tolist() for v in m.biases[f"{name}.b_{g}"]] for g in gates]
        # M's fractional length per row: the largest of its terms', capped at guard_bits
        # beyond the gate input
        fxr = [w.frac.tolist() for w in wx]
        frr = [w.frac.tolist() for w in wr]
        fracs = [[min(max(fxr[k][r] + fx, frr[k][r] + fy, bias[k][1][r]),
                      unit_in + self.cfg.guard_bits)
                  for r in range(hidden)] for k in range(4)]
        acc = [[self._wrap(f"{name}.gates", shift_round_int(bias[k][0][r],
                                                            bias[k][1][r] - fracs[k][r],
                                                            self.cfg.rounding))
                for r in range(hidden)] for k in range(4)]
        x_hat = [0] * len(xs[0]) if xs else []
        dxs = [self.send(f"{name}.dx", x, x_hat, tx) for x in xs]
        c = [0] * hidden
        y = [0] * (proj.shape[0] if proj is not None else hidden)
        y_hat = [0] * len(y)
        outputs = []
        for dx in dxs:
            dy = self.send(f"{name}.dh", y, y_hat, th)
            for k in range(4):
                ax = self.column_products(wx[k], dx, f"{name}.W_x")
                ar = self.column_products(wr[k], dy, f"{name}.W_r")
                for r in range(hidden):
                    f = fracs[k][r]
                    total = (acc[k][r]
                             + shift_round_int(ax[r], fxr[k][r] + fx - f, self.cfg.rounding)
                             + shift_round_int(ar[r], frr[k][r] + fy - f, self.cfg.rounding))
                    acc[k][r] = self._wrap(f"{name}.gates", total)
            y = self.cell(op, [[(acc[k][r], fracs[k][r]) for r in range(hidden)]
                               for k in range(4)], c)
            outputs.append(list(y))
        return outputs, fy


# The reference backend: ``impl(op, ref: ReferenceEngine, xs, fx) -> (outputs, frac)``, one
# vector per frame.

@register(REFERENCE, "conv1d")
def _conv(op: Conv1dOp, ref: ReferenceEngine, xs: list[Vector], fx: int
          ) -> tuple[list[Vector], int]:
    return ref.conv(op, xs, fx)


@register(REFERENCE, "gated_residual")
def _gated_residual(op: GatedResidualOp, ref: ReferenceEngine, xs: list[Vector], fx: int
                    ) -> tuple[list[Vector], int]:
    f, ff = dispatch(REFERENCE, op.filter, ref, xs, fx)
    g, fg = dispatch(REFERENCE, op.gate, ref, xs, fx)
    fz = max(ff, fg)
    z = [[ref._narrow(f"{op.name}.z", a * b, ff + fg, fz) for a, b in zip(u, v)]
         for u, v in zip(f, g)]
    o, fo = dispatch(REFERENCE, op.out, ref, z, fz)
    fout, fs = ref.m.signal(op.name), ref.m.signal("skip_sum")
    new_x = [ref.add(op.name, u, fx, v, fo, fout) for u, v in zip(xs, o)]
    skip = ref.skip
    if skip is None:
        ref.skip = ([[ref._narrow("skip_sum", v, fo, fs) for v in row] for row in o], fs)
    else:
        ref.skip = ([ref.add("skip_sum", u, skip[1], v, fo, fs)
                     for u, v in zip(skip[0], o)], fs)
    return new_x, fout


@register(REFERENCE, "skip_sum")
def _skip_sum(op: SkipSumOp, ref: ReferenceEngine, xs: list[Vector], fx: int
              ) -> tuple[list[Vector], int]:
    if ref.skip is None:
        raise ValueError(f"{op.name}: no residual block before the skip sum")
    return ref.skip


@register(REFERENCE, "lstm")
def _lstm(op: LSTMOp, ref: ReferenceEngine, xs: list[Vector], fx: int
          ) -> tuple[list[Vector], int]:
    return ref.lstm(op, xs, fx)


@register(REFERENCE, "delta_lstm")
def _delta_lstm(op: DeltaLSTMOp, ref: ReferenceEngine, xs: list[Vector], fx: int
                ) -> tuple[list[Vector], int]:
    return ref.delta_lstm(op, xs, fx)


@register(REFERENCE, "linear")
def _linear(op: LinearOp, ref: ReferenceEngine, xs: list[Vector], fx: int
            ) -> tuple[list[Vector], int]:
    return ref.dense(op.name, xs, fx, op.activation, f"{op.name}.bias")


def run_reference(model: EngineModel, features: torch.Tensor
                  ) -> tuple[torch.Tensor, int, dict[str, dict[str, int]]]:
    """Integer logits, their fractional length and the events, computed MAC by MAC."""
    ref = ReferenceEngine(model)
    cfg = model.cfg
    fx = model.signal("input")
    xs = []
    for row in features.double().tolist():
        vals = []
        for v in row:
            # v * 2**fx is an exact binary fraction num / 2**k: rounding it is the same right
            # shift with rounding that every narrowing below uses
            num, den = (v * 2.0 ** fx).as_integer_ratio()
            q = shift_round_int(num, den.bit_length() - 1, cfg.rounding)
            vals.append(ref._narrow("input", q, 0, 0))
        xs.append(vals)
    for op in model.graph.ops:
        xs, fx = dispatch(REFERENCE, op, ref, xs, fx)
    return torch.tensor(xs, dtype=torch.int64), fx, ref.events.as_dict()
