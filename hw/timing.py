"""The engine's cycle-level timing model.

Every sparse matrix-vector product is timed from this model's real sparsity pattern:

- ``csc`` engines (ESE, EIE) broadcast the input vector one column per cycle to all PEs; PE
  ``p`` then spends ``ceil(entries[p, j] / macs_per_pe)`` cycles on column ``j`` (its stored
  entries, padding included). Each PE holds up to ``activation_queue_depth`` broadcast columns,
  so a PE can run ahead of a slower one by that much and no more: column ``j`` is broadcast at
  ``b_j = max(b_{j-1} + 1, max_p start[p, j - depth])``, PE ``p`` starts it at
  ``max(finish[p, j-1], b_j)``. EIE-like engines skip the columns whose input is zero.
- ``csb`` engines (BBS) give a PE one whole row at a time with one multiplier per bank:
  ``ceil(banks / macs_per_pe) * per_bank`` cycles per row, rows interleaved over the PEs.
- dense matrices are processed the same way with every weight stored.
- delta engines (``skip_zero_deltas``: Spartus, EdgeDRNN) fetch only the columns of a delta
  LSTM's non-zero input/hidden deltas, ``mac_arrays`` at a time (:func:`delta_timing`), so
  their cycles differ frame by frame: :meth:`FrameTiming.cycles_per_frame` gives them, and
  :func:`cycle_distribution` their mean, p50, p99 and maximum. Their other products (a
  projection, the output layer) deal every column to the arrays the same way.

Then ``pipeline_depth`` cycles of fill/drain per product; weights that do not fit on chip (see
:meth:`EngineConfig <hw.config.EngineConfig>`'s placement) stream from DDR every time step and
the product takes ``max(compute, load)``; the element-wise stage (gates, cell state, gated
residuals) takes ``ceil(cells / elementwise_lanes) + elementwise_depth`` cycles. An LSTM layer's
time steps are sequential (the recurrent matrices need ``y_{t-1}``), so an utterance costs its
frames times the per-frame cycles. WaveNet frames are timed the same way, one output frame at a
time through every conv. Each op kind says which products and element-wise stages it costs
through its implementation registered under backend ``timing`` of :mod:`asr.models.ops`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from asr.compress.sparse_formats import CSBMatrix, CSCMatrix
from asr.models.graph import Conv1dOp, DeltaLSTMOp, GatedResidualOp, LinearOp, LSTMOp, SkipSumOp
from asr.models.ops import dispatch, register
from asr.tables import markdown_table
from hw.config import EngineConfig
from hw.integer_model import EngineModel, IntMatrix

TIMING = "timing"


@dataclass
class MatrixTiming:
    """One matrix's product for one frame (cycles and microseconds), ESE's table's columns."""

    name: str
    layer_type: str
    shape: tuple[int, int]
    density: float
    entries: int
    bytes: int
    on_chip: bool
    compute_cycles: float
    load_cycles: float
    cycles: float
    macs: int            # multiplications done (stored entries, padding included)
    useful_macs: int     # of which with a kept weight
    pe_work: list[float]  # busy cycles per PE
    utilization: float   # useful MACs / (multipliers * compute cycles)
    imbalance: float     # busiest PE / mean PE
    compute_us: float
    total_us: float
    frame_cycles: list[float] | None = None   # per frame, when the data decides (else None)
    read_bytes: float | None = None     # stored bytes read per frame (None: all of them)
    columns_read: float | None = None   # input columns read per frame (None: all of them)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, name: str, mats: list[IntMatrix], shape: tuple[int, int], cfg: EngineConfig,
           on_chip: bool, compute: float, load: float, cycles: float, macs: float,
           useful: float, busy: np.ndarray, frame_cycles: np.ndarray | None = None,
           read_bytes: float | None = None, columns_read: float | None = None
           ) -> MatrixTiming:
        """The record of one product of ``mats`` (one matrix, or a delta layer's gate
        matrices as one) from its cycles, MACs and per-PE ``busy`` cycles: the density,
        utilization, imbalance and times follow from them the same way for every engine."""
        rows, cols = shape
        us = 1e6 / cfg.clock_hz
        return cls(
            name, mats[0].layer_type, shape, sum(m.nnz for m in mats) / max(1, rows * cols),
            sum(m.entries for m in mats), sum(m.bytes for m in mats), on_chip, compute, load,
            cycles, int(round(macs)), int(round(useful)), [float(b) for b in busy],
            useful / max(1.0, cfg.multipliers * compute),
            float(busy.max() / max(1e-9, busy.mean())), compute * us, cycles * us,
            None if frame_cycles is None else frame_cycles.tolist(), read_bytes, columns_read)


def pe_column_work(mat: IntMatrix, cfg: EngineConfig) -> np.ndarray:
    """Entries each PE processes per column, ``(num_pes, cols)``, for a column-broadcast
    engine."""
    rows, cols = mat.shape
    if isinstance(mat.storage, CSCMatrix) and mat.storage.num_pes == cfg.num_pes:
        return mat.storage.col_counts.numpy().astype(np.float64)
    rows_of_pe = np.bincount(np.arange(rows) % cfg.num_pes, minlength=cfg.num_pes)
    return np.repeat(rows_of_pe[:, None].astype(np.float64), cols, axis=1)


def column_broadcast_cycles(work: np.ndarray, cfg: EngineConfig,
                            active: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cycles of column-broadcast products. ``work`` is ``(pes, cols)`` entries; ``active`` an
    optional ``(frames, cols)`` mask of non-zero inputs (skipped columns cost nothing).
    Returns ``(cycles per frame, busy cycles per PE per frame)``."""
    per_col = np.ceil(work / cfg.macs_per_pe)                    # (P, C)
    frames = 1 if active is None else active.shape[0]
    pes, cols = per_col.shape
    depth = cfg.activation_queue_depth
    finish = np.zeros((frames, pes))
    starts = np.zeros((depth, frames, pes))   # ring of the last `depth` columns' starts
    bcast = np.full(frames, -1.0)
    for j in range(cols):
        cost = np.broadcast_to(per_col[:, j], (frames, pes))
        if active is not None:
            on = active[:, j]
            cost = cost * on[:, None]
        else:
            on = np.ones(frames, dtype=bool)
        ready = starts[j % depth].max(axis=1) if j >= depth else np.zeros(frames)
        b = np.where(on, np.maximum(bcast + 1, ready), bcast)
        start = np.where(on[:, None], np.maximum(finish, b[:, None]), finish)
        starts[j % depth] = np.where(on[:, None], start, starts[(j - 1) % depth])
        finish = start + cost
        bcast = b
    busy = per_col.sum(axis=1)[None, :] if active is None else active.astype(np.float64) @ \
        per_col.T
    return finish.max(axis=1), busy


def row_bank_cycles(mat: IntMatrix, cfg: EngineConfig) -> tuple[float, np.ndarray]:
    """Cycles of a row-per-PE (BBS) product: ``(cycles, busy cycles per PE)``."""
    rows, cols = mat.shape
    if isinstance(mat.storage, CSBMatrix):
        banks = cols // mat.storage.bank_size
        per_bank = mat.storage.values.shape[2]
    else:
        banks, per_bank = cols, 1
    per_row = math.ceil(banks / cfg.macs_per_pe) * per_bank
    rows_of_pe = np.bincount(np.arange(rows) % cfg.num_pes, minlength=cfg.num_pes)
    busy = rows_of_pe * per_row
    return float(busy.max()), busy.astype(np.float64)


def placement(model: EngineModel) -> dict[str, bool]:
    """Which matrices live on chip: layer-type groups in ``weight_placement`` order, each
    group wholly on chip while it fits."""
    cfg = model.cfg
    free = cfg.onchip_weight_bytes
    on: dict[str, bool] = {}
    for kind in cfg.weight_placement:
        group = [m for m in model.matrices.values() if m.layer_type == kind]
        size = sum(m.bytes for m in group)
        fits = size <= free
        if fits:
            free -= size
        on.update({m.name: fits for m in group})
    return {name: on.get(name, False) for name in model.matrices}


def matrix_timing(mat: IntMatrix, cfg: EngineConfig, on_chip: bool,
                  active: np.ndarray | None = None) -> MatrixTiming:
    """Timing of one product (averaged over the frames of ``active`` when given)."""
    rows, cols = mat.shape
    if cfg.sparse_format == "csb":
        compute, busy = row_bank_cycles(mat, cfg)
        macs = mat.entries
        busy_mean = busy
    elif cfg.mac_arrays > 1:
        # An engine of several MAC arrays (a delta engine) deals the columns of its other
        # products (projection, output layer) to the arrays in turn, as it does the delta
        # columns: leaving all arrays but one idle would not use its multipliers.
        work = pe_column_work(mat, cfg)
        act_f = np.ones((1, cols)) if active is None else active.astype(np.float64)
        cyc, busy_mean = dealt_column_cycles(work, act_f, cfg)
        compute = float(cyc.mean())
        macs = float((act_f @ work.sum(axis=0)).mean())
    else:
        work = pe_column_work(mat, cfg)
        cyc, busy = column_broadcast_cycles(work, cfg, active)
        compute = float(cyc.mean())
        busy_mean = busy.mean(axis=0)
        macs = (float(work.sum()) if active is None
                else float((active.astype(np.float64) @ work.sum(axis=0)).mean()))
    compute += cfg.pipeline_depth
    load = 0.0 if on_chip else mat.bytes / (cfg.ddr_gbps * 1e9) * cfg.clock_hz
    per_frame = None
    if active is not None and cfg.sparse_format != "csb":   # csb rows skip no columns
        per_frame = np.maximum(cyc + cfg.pipeline_depth, load)
        cycles = float(per_frame.mean())
    else:
        cycles = max(compute, load)
    useful = mat.nnz if active is None else mat.nnz * float(active.mean())
    return MatrixTiming.of(mat.name, [mat], (rows, cols), cfg, on_chip, compute, load, cycles,
                           macs, useful, busy_mean, per_frame)


def delta_column_cycles(per_col: np.ndarray, active: np.ndarray, arrays: int) -> np.ndarray:
    """Compute cycles per frame of a delta engine: the non-zero delta columns of a frame
    (``active``, ``(frames, cols)``) are dealt in turn to ``arrays`` MAC arrays, column ``j``
    costing its array ``per_col[j]`` cycles; the frame ends when the busiest array does."""
    rank = np.cumsum(active, axis=1) - 1
    cost = active * per_col[None, :]
    per_array = [np.where(rank % arrays == a, cost, 0.0).sum(axis=1) for a in range(arrays)]
    return np.max(per_array, axis=0)


def dealt_column_cycles(work: np.ndarray, active: np.ndarray, cfg: EngineConfig
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Columns dealt to ``cfg.mac_arrays`` arrays (:func:`delta_column_cycles`), column ``j``
    costing its array ``max(1, max_p ceil(work[p, j] / macs_per_pe))`` cycles. ``work`` is
    ``(pes, cols)`` entries, ``active`` a ``(frames, cols)`` 0/1 mask of the columns sent.
    Returns ``(compute cycles per frame, busy cycles per PE averaged over the frames)``."""
    per_pe = np.ceil(work / cfg.macs_per_pe)
    cycles = delta_column_cycles(np.maximum(1.0, per_pe.max(axis=0)), active, cfg.mac_arrays)
    return cycles, (active @ per_pe.T).mean(axis=0)


def delta_timing(name: str, mats: list[IntMatrix], cfg: EngineConfig, on_chip: bool,
                 active: np.ndarray | None) -> MatrixTiming:
    """A delta LSTM's gate products on a delta engine (``skip_zero_deltas``), as one product
    of the stacked ``[W_x | W_r]`` (``4*hidden x (inputs + outputs)``) by the concatenated
    deltas ``[dx_t, dh_{t-1}]``. Only the columns of non-zero deltas are fetched; each goes to
    one MAC array, whose ``num_pes`` PEs hold interleaved rows (the gate matrices' CSC over
    ``num_pes``) and work on it in step: ``max(1, max_p ceil(entries[p, j] / macs_per_pe))``
    cycles (a column-balanced matrix gives every PE the same count). ``active`` is the
    ``(frames, cols)`` non-zero-delta mask; None takes every delta as non-zero (the worst
    case). Weights that are not on chip stream the active columns' entries from DDR."""
    x_mats = [m for m in mats if m.name.rsplit(".", 1)[1].endswith("x")]
    r_mats = [m for m in mats if not m.name.rsplit(".", 1)[1].endswith("x")]

    def columns(per_matrix) -> np.ndarray:
        """A per-column figure of the stacked matrix: the x side's columns, then the r
        side's, each summed over the four gates (the last axis is the columns)."""
        return np.concatenate([sum(per_matrix(m) for m in x_mats),
                               sum(per_matrix(m) for m in r_mats)], axis=-1)

    work = columns(lambda m: pe_column_work(m, cfg))   # (P, C)
    cols = work.shape[1]
    act = np.ones((1, cols), dtype=bool) if active is None else active.astype(bool)
    act_f = act.astype(np.float64)
    compute, busy = dealt_column_cycles(work, act_f, cfg)
    compute = compute + cfg.pipeline_depth
    read_bytes = act_f @ columns(_column_entries) * mats[0].entry_bits / 8   # per frame
    load = np.zeros(len(act)) if on_chip else read_bytes / (cfg.ddr_gbps * 1e9) * cfg.clock_hz
    per_frame = np.maximum(compute, load)
    return MatrixTiming.of(
        name, mats, (sum(m.shape[0] for m in x_mats), cols), cfg, on_chip,
        float(compute.mean()), float(load.mean()), float(per_frame.mean()),
        float((act_f @ work.sum(axis=0)).mean()), float((act_f @ columns(_column_nnz)).mean()),
        busy, per_frame if active is not None else None, float(read_bytes.mean()),
        float(act_f.sum(axis=1).mean()))


def _column_entries(mat: IntMatrix) -> np.ndarray:
    """Stored entries per column (padding included; every weight when stored dense)."""
    if isinstance(mat.storage, CSCMatrix):
        return mat.storage.col_counts.numpy().sum(axis=0).astype(np.float64)
    return np.full(mat.shape[1], float(mat.shape[0]))


def _column_nnz(mat: IntMatrix) -> np.ndarray:
    kept = mat.mask if mat.mask is not None else mat.weights != 0
    return kept.sum(dim=0).numpy().astype(np.float64)


@dataclass
class Elementwise:
    """An element-wise stage: ``lstm`` (gates, cell state) or ``gated`` (gated residual)."""

    name: str
    kind: str
    cells: int
    cycles: float


@dataclass
class FrameTiming:
    """One frame through the whole model: the products in engine order and the element-wise
    stages."""

    matrices: list[MatrixTiming]
    elementwise: list[Elementwise]
    clock_hz: float
    channels: int

    @property
    def cycles(self) -> float:
        return sum(m.cycles for m in self.matrices) + sum(e.cycles for e in self.elementwise)

    @property
    def latency_us(self) -> float:
        return self.cycles / self.clock_hz * 1e6

    def cycles_per_frame(self) -> np.ndarray:
        """Every frame's cycles: the products' per-frame figures where the data decides them
        (engines that skip zero activations or deltas), else one value for every frame."""
        total: np.ndarray | float = sum(e.cycles for e in self.elementwise)
        for m in self.matrices:
            total = total + (np.asarray(m.frame_cycles) if m.frame_cycles is not None
                             else m.cycles)
        return np.atleast_1d(np.asarray(total, dtype=np.float64))

    @property
    def ops(self) -> int:
        """Operations (a multiply and an add per kept weight) of one frame."""
        return 2 * sum(m.useful_macs for m in self.matrices)

    @property
    def dense_ops(self) -> int:
        return 2 * sum(m.shape[0] * m.shape[1] for m in self.matrices)

    def gops(self, dense: bool = False) -> float:
        """GOP/s of the whole engine (all channels busy): real, or dense-equivalent."""
        ops = self.dense_ops if dense else self.ops
        return ops * self.channels / (self.latency_us * 1e3)

    def as_dict(self) -> dict:
        return {"cycles": self.cycles, "latency_us": self.latency_us, "ops": self.ops,
                "cycles_per_frame": cycle_distribution(self.cycles_per_frame(), self.clock_hz),
                "dense_ops": self.dense_ops, "gops": self.gops(), "gops_dense": self.gops(True),
                "channels": self.channels,
                "matrices": [m.as_dict() for m in self.matrices],
                "elementwise": [asdict(e) for e in self.elementwise]}


def cycle_distribution(cycles: np.ndarray, clock_hz: float) -> dict[str, float]:
    """Mean, median, 99th percentile and maximum of per-frame cycles, in cycles and us."""
    c = np.asarray(cycles, dtype=np.float64)
    stats = {"frames": int(c.size), "mean": float(c.mean()), "p50": float(np.percentile(c, 50)),
             "p99": float(np.percentile(c, 99)), "max": float(c.max())}
    return {**stats, **{f"{k}_us": stats[k] / clock_hz * 1e6
                        for k in ("mean", "p50", "p99", "max")}}


def format_distribution(d: dict[str, float]) -> str:
    """One line: cycles per frame as mean, p50, p99 and max (and in us)."""
    return (f"cycles per frame over {d['frames']} frame(s): mean {d['mean']:.1f}, "
            f"p50 {d['p50']:.0f}, p99 {d['p99']:.0f}, max {d['max']:.0f} "
            f"({d['mean_us']:.3f} / {d['p50_us']:.3f} / {d['p99_us']:.3f} / "
            f"{d['max_us']:.3f} us)")


def _elementwise(cfg: EngineConfig, name: str, kind: str, cells: int) -> Elementwise:
    return Elementwise(name, kind, cells,
                       math.ceil(cells / cfg.elementwise_lanes) + cfg.elementwise_depth)


class FrameTimer:
    """One frame's timing being built in engine order: what each op's ``timing``
    implementation adds its products and element-wise stages to."""

    def __init__(self, model: EngineModel, activity: dict[str, np.ndarray] | None,
                 include: set[str] | None):
        self.model = model
        self.cfg = model.cfg
        self.onchip = placement(model)
        self.skip = self.cfg.skip_zero_activations and activity is not None
        self.activity = activity
        self.include = include
        self.timings: list[MatrixTiming] = []
        self.elementwise: list[Elementwise] = []

    def product(self, name: str) -> None:
        """The product of matrix ``name`` (unless ``include`` leaves it out)."""
        if self.include is None or name in self.include:
            mat = self.model.matrices[name]
            self.timings.append(matrix_timing(mat, self.cfg, self.onchip[name],
                                              self.activity.get(name) if self.skip else None))

    def delta_product(self, op: DeltaLSTMOp) -> None:
        """A delta LSTM's gate products on a delta engine (see :func:`delta_timing`)."""
        names = [f"{op.name}.{n}" for n in op.GATE_MATRICES]
        if self.include is not None and not any(n in self.include for n in names):
            return
        active = None
        if self.activity is not None and f"{op.name}.dx" in self.activity:
            active = np.concatenate([self.activity[f"{op.name}.dx"],
                                     self.activity[f"{op.name}.dh"]], axis=1)
        self.timings.append(delta_timing(
            f"{op.name}.W_x|W_r", [self.model.matrices[n] for n in names], self.cfg,
            all(self.onchip[n] for n in names), active))

    def stage(self, name: str, kind: str, cells: int, cycles: float | None = None) -> None:
        """An element-wise stage (``include`` filters these once the frame is complete);
        ``cycles`` overrides the lanes' figure (0: overlapped with the products)."""
        stage = _elementwise(self.cfg, name, kind, cells)
        if cycles is not None:
            stage.cycles = cycles
        self.elementwise.append(stage)

    def frame(self) -> FrameTiming:
        elementwise = self.elementwise
        if self.include is not None:
            elementwise = [e for e in elementwise if e.name in self.include]
        return FrameTiming(self.timings, elementwise, self.cfg.clock_hz, self.cfg.channels)


# The timing backend: ``impl(op, timer: FrameTimer)`` adds the op's products and stages.

@register(TIMING, "conv1d")
@register(TIMING, "linear")
def _dense_timing(op: Conv1dOp | LinearOp, timer: FrameTimer) -> None:
    timer.product(op.name)


@register(TIMING, "gated_residual")
def _gated_residual_timing(op: GatedResidualOp, timer: FrameTimer) -> None:
    for conv in (op.filter, op.gate, op.out):
        dispatch(TIMING, conv, timer)
    timer.stage(f"{op.name}.elementwise", "gated", op.out.weight.shape[0])


@register(TIMING, "skip_sum")
def _skip_sum_timing(op: SkipSumOp, timer: FrameTimer) -> None:
    """The skip sum is accumulated by the residual blocks: selecting it costs nothing."""


@register(TIMING, "lstm")
def _lstm_timing(op: LSTMOp, timer: FrameTimer) -> None:
    for n in op.GATE_MATRICES:
        timer.product(f"{op.name}.{n}")
    _cell_and_projection(op, timer)


def _cell_and_projection(op: LSTMOp | DeltaLSTMOp, timer: FrameTimer) -> None:
    """What follows an LSTM layer's gate products, delta or not: the element-wise stage
    (gates, cell state) and the projection."""
    timer.stage(f"{op.name}.elementwise", "lstm", op.W_ix.shape[0])
    if op.W_ym is not None:
        timer.product(f"{op.name}.W_ym")


@register(TIMING, "delta_lstm")
def _delta_lstm_timing(op: DeltaLSTMOp, timer: FrameTimer) -> None:
    """On a delta engine, only non-zero delta columns are read; the delta units compare every
    input and output against its memory as the columns are scanned, overlapped with the
    products (0 cycles of their own; their work counts in energy). On another engine the
    layer is an LSTM on ``x_hat``/``y_hat``: every column, every frame."""
    if not timer.cfg.skip_zero_deltas:
        _lstm_timing(op, timer)
        return
    timer.delta_product(op)
    inputs = op.W_ix.shape[1]
    outputs = op.W_ym.shape[0] if op.W_ym is not None else op.W_ix.shape[0]
    timer.stage(f"{op.name}.deltas", "delta", inputs + outputs, cycles=0.0)
    _cell_and_projection(op, timer)


def frame_timing(model: EngineModel, activity: dict[str, np.ndarray] | None = None,
                 include: set[str] | None = None) -> FrameTiming:
    """Per-frame timing of the whole model (or of the matrices named in ``include``).
    ``activity`` maps a matrix name to its ``(frames, cols)`` non-zero-input mask (used only
    by engines that skip zero activations)."""
    timer = FrameTimer(model, activity, include)
    for op in model.graph.ops:
        dispatch(TIMING, op, timer)
    return timer.frame()


@dataclass
class UtteranceTiming:
    frames: int
    frame: FrameTiming
    audio_seconds: float | None = None

    @property
    def cycles(self) -> float:
        return self.frames * self.frame.cycles

    @property
    def latency_s(self) -> float:
        return self.cycles / self.frame.clock_hz

    @property
    def rtf(self) -> float | None:
        """Modeled hardware time over audio time (one channel)."""
        return self.latency_s / self.audio_seconds if self.audio_seconds else None

    def as_dict(self) -> dict:
        return {"frames": self.frames, "cycles": self.cycles, "latency_s": self.latency_s,
                "latency_per_frame_us": self.frame.latency_us, "rtf": self.rtf,
                "gops": self.frame.gops(), "gops_dense": self.frame.gops(True)}


TIMING_COLUMNS = ("matrix", "shape", "density %", "bytes", "on chip", "compute us", "total us",
                  "utilization", "imbalance")


def timing_records(frame: FrameTiming) -> list[dict]:
    """ESE's per-matrix table for one frame as numbers (for JSON): one record per matrix, per
    element-wise stage and a total; keys as :data:`TIMING_KEYS`, None where a column does not
    apply."""
    recs = [{"matrix": m.name, "rows": m.shape[0], "cols": m.shape[1], "density": m.density,
             "bytes": m.bytes, "on_chip": m.on_chip, "compute_us": m.compute_us,
             "total_us": m.total_us, "utilization": m.utilization, "imbalance": m.imbalance}
            for m in frame.matrices]
    recs += [{"matrix": e.name, "cells": e.cells, "total_us": e.cycles / frame.clock_hz * 1e6}
             for e in frame.elementwise]
    recs.append({"matrix": "total", "bytes": sum(m.bytes for m in frame.matrices),
                 "compute_us": sum(m.compute_us for m in frame.matrices),
                 "total_us": frame.latency_us})
    return [{k: r.get(k) for k in TIMING_KEYS} for r in recs]


TIMING_KEYS = ("matrix", "rows", "cols", "cells", "density", "bytes", "on_chip", "compute_us",
               "total_us", "utilization", "imbalance")


def timing_record_cells(r: dict) -> list[str]:
    """One record of :func:`timing_records` as the table's strings (:data:`TIMING_COLUMNS`)."""
    def num(key: str, fmt: str) -> str:
        return "" if r.get(key) is None else fmt.format(r[key])

    shape = (f"{r['rows']}x{r['cols']}" if r.get("rows") is not None
             else f"{r['cells']} cells" if r.get("cells") is not None else "")
    density = "" if r.get("density") is None else f"{100 * r['density']:.1f}"
    on_chip = "" if r.get("on_chip") is None else ("yes" if r["on_chip"] else "no")
    return [r["matrix"], shape, density, num("bytes", "{}"), on_chip,
            num("compute_us", "{:.2f}"), num("total_us", "{:.2f}"),
            num("utilization", "{:.2f}"), num("imbalance", "{:.3f}")]


def timing_table_rows(frame: FrameTiming) -> list[list[str]]:
    """ESE's per-matrix table for one frame (columns :data:`TIMING_COLUMNS`), with the
    element-wise stages and a total row."""
    return [timing_record_cells(r) for r in timing_records(frame)]


def timing_table_markdown(frame: FrameTiming) -> str:
    """ESE's per-matrix table for one frame of this model on this engine, with its GOP/s."""
    return (markdown_table(TIMING_COLUMNS, timing_table_rows(frame))
            + f"\n\n{frame.gops():.1f} GOP/s ({frame.gops(True):.1f} GOP/s dense-equivalent), "
            f"{frame.channels} channel(s)")
