"""``asr-hw rtl``: the engine of one :class:`~hw.config.EngineConfig` and artifact as
synthesizable SystemVerilog.

The design is one sequential engine per sparse format, cycle for cycle what
:mod:`hw.timing` models, and bit for bit what :mod:`hw.functional` computes:

- PE memories (``mem/pe<P>.w<L>.hex``, ``mem/pe<P>.ptr.hex``: the images of ``asr-hw
  export``, ``weights/``, one matrix after the other) are block RAMs read on the clock edge,
  a multiply stage after the decode stage (one of the ``pipeline_depth`` stages); they and the
  activation ROMs (``tables/``) are read with ``$readmemh``; the per-row alignment
  shifts and aligned biases the compiler derives from the artifact's formats are ROMs too
  (``const/``), so the SystemVerilog holds only shapes and widths.
- ``csc`` (ESE): each cycle one column of the input vector is broadcast to every PE's
  activation queue (``activation_queue_depth`` deep) when every queue has room, with the PE's
  column pointers; a free PE pops the columns it has no entries in, up to and including the
  next one it has, and spends ``ceil(entries / macs_per_pe)`` cycles on that one, decoding
  the relative row indices; each stored entry is one multiply-accumulate into the row's
  ``accumulator_bits`` accumulator (wrap-around), read, added and written back in the stage
  after the multiply, the sum forwarded when the next entry hits the same row.
- the gate matrices' accumulators are block RAMs, per PE one per gate matrix (copies where
  the element-wise unit reads several of a PE's cells a cycle); on ``csc`` a row reads as
  zero until the running product writes it (a valid bit per row of the product running,
  cleared as it starts), and the element-wise unit reads a gate matrix's rows that no entry
  reaches as zero (a bit per cell and gate matrix, ``const/<layer>.nz.hex``). A ``csc``
  projection's and the output layer's accumulators are per-PE distributed RAM with a valid
  bit per row (a projection's is also the layer's output ``y``: no copy); csb's are
  registers.
- ``csb`` (BBS): every PE takes one row at a time, ``macs_per_pe`` multipliers each on a
  bank, one stored entry per multiplier per cycle: ``ceil(banks / macs_per_pe) * per_bank``
  cycles a row.
- after the last MAC of a product, ``pipeline_depth`` cycles (fill/drain); weights placed off
  chip hold the product for their DDR load time (ceil of the model's).
- the element-wise stage, one unit for all layers: ``elementwise_lanes`` cells a cycle (gate
  alignment, rounding shifter, saturation, the sigmoid/tanh ROMs, cell state, output), each
  group's accumulators read the cycle before, then ``elementwise_depth`` cycles; a csb
  projection narrows its accumulators as its product ends, a csc one the row the broadcast
  reads; the output layer narrows the row it streams out.
- a streaming top: features in (one code per beat, valid/ready, double-buffered), logits out
  (valid/ready, ``out_last`` on the last of a frame).
- the input buffer's two banks and each layer's ``c`` and ``m`` are distributed RAM (one
  write port, read without a clock; a word of ``elementwise_lanes`` cells), not register
  arrays: a register array read at a variable index is a multiplexer over all of it. Other
  arrays are read and written at constant indices where the index is known to lie in a part
  (a PE's queue, a memory's valid bits), and a ``csc`` projection's row is narrowed where the
  broadcast reads it (one narrowing unit, not one per row).

Supported: LSTM models (LSTM layers with or without projection, a linear output) on ``csc``
and ``csb`` engines with fixed-point weights of one fractional length per row, and WaveNets
(:mod:`hw.rtl.wavenet`, which builds on this module's products). Anything else is
refused before any file is written, naming the key or matrix and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from asr import atomic
from asr.compress.artifact import Artifact
from asr.compress.fixed_point import Rounding, rounding_mode, shift_round
from asr.compress.sparse_formats import CSBMatrix, CSCMatrix, encode_csb, encode_csc
from asr.config_errors import ConfigError
from asr.models.graph import LinearOp, LSTMOp
from hw.config import EngineConfig
from hw.export import hex_words, pe_memories
from hw.functional import gate_setup
from hw.integer_model import EngineModel, IntMatrix, compile_model
from hw.timing import placement

RTL_FORMATS = ("csc", "csb")
NSLOT = len(LSTMOp.GATE_MATRICES)   # accumulator memories per PE: a layer's gate matrices
SHIFT_BITS = 8      # per-row shift ROM words (two's complement)


class RtlError(ValueError):
    """A model or engine the generator cannot build; the message names what and why."""


@dataclass
class MatrixPlan:
    index: int
    name: str
    rows: int
    cols: int
    src: str              # the SystemVerilog array the product reads
    words: int            # words per PE memory (>= 1)
    entry_bits: int
    value_bits: int
    index_bits: int
    pe_files: dict[int, str]
    ptr_bits: int = 0
    ptr_files: dict[int, str] = field(default_factory=dict)
    bank_size: int = 0
    banks: int = 0
    per_bank: int = 0
    load_cycles: int = 0
    wbase: int = 0        # first word of the matrix in each PE's weight memories
    pbase: int = 0        # first word of the matrix in each PE's pointer memory
    slot: int = -1        # the accumulator memory of a gate matrix (-1: the register file)


@dataclass
class LayerPlan:
    index: int
    name: str
    hidden: int
    out_dim: int
    src: str
    y: str                # the array holding the layer's output
    gates: list[int]      # matrix indices, GATE_MATRICES order
    proj: int | None
    cell: dict[str, int]  # the element-wise stage's shifts (scalars)
    shifts: dict[str, int] = field(default_factory=dict)   # ranges of the per-row shift ROMs


@dataclass
class Phase:
    kind: str             # "product" or "elementwise"
    name: str             # the timing model's matrix or stage name
    target: int           # matrix index or layer index


@dataclass
class RtlDesign:
    """What :func:`generate_rtl` wrote: enough for the co-simulation to drive and read it."""

    out_dir: str
    engine: str
    sparse_format: str
    activation_bits: int
    input_dim: int
    vocab: int
    phases: list[Phase]
    dumps: list[tuple[str, str, int]]   # (trace layer, SV array, length) per frame
    matrices: list[MatrixPlan]
    source_hash: str
    memories: list[str] = field(default_factory=list)   # the PE memories' images the RTL reads
    model_type: str = "lstm"
    # frames the engine looks ahead (a WaveNet's "same" convolutions): the steps it runs
    # after an utterance's last frame
    lookahead: int = 0

    def save(self, folder: Path) -> Path:
        """Write ``rtl.json`` into ``folder`` (where the design is being written)."""
        path = Path(folder) / "rtl.json"
        path.write_text(json.dumps(asdict(self), indent=1))
        return path


# -- checks --------------------------------------------------------------------------------

def check_supported(model: EngineModel) -> None:
    """Refuse, naming the key or matrix and what is allowed, what the generator cannot build."""
    cfg = model.cfg
    if cfg.sparse_format not in RTL_FORMATS:
        raise ConfigError(f"hw.sparse_format: the RTL generator builds one of {RTL_FORMATS}, "
                          f"got {cfg.sparse_format!r}")
    if cfg.skip_zero_activations:
        raise ConfigError("hw.skip_zero_activations: the RTL generator builds false (every "
                          "column is broadcast), got true")
    if cfg.pipeline_depth < 3:
        # the PE memories' registered read, the multiply and the accumulator memory's
        # read-modify-write are the product's pipeline stages
        raise ConfigError(f"hw.pipeline_depth: the RTL generator needs >= 3 (the weight "
                          f"memory read, the multiply, the accumulator read-modify-write), "
                          f"got {cfg.pipeline_depth}")
    if cfg.elementwise_depth < 4:
        # the last group's accumulators are read in the unit's last counted cycle; its four
        # stages follow
        raise ConfigError(f"hw.elementwise_depth: the RTL generator needs >= 4 (the "
                          f"element-wise unit's four stages after the accumulator read), got "
                          f"{cfg.elementwise_depth}")
    if cfg.sparse_format == "csc" and cfg.macs_per_pe != 1:
        raise ConfigError(f"hw.macs_per_pe: the RTL generator builds 1 on csc (a PE's "
                          f"accumulator memory has one write port), got {cfg.macs_per_pe}")
    _check_weights(model)
    if model.model_type == "wavenet":
        from hw.rtl.wavenet import check_wavenet  # the WaveNet engine builds on this module
        check_wavenet(model)
        return
    ops = model.graph.ops
    ok = (len(ops) >= 2 and all(type(op) is LSTMOp for op in ops[:-1])
          and isinstance(ops[-1], LinearOp))
    if not ok:
        kinds = sorted({type(op).__name__ for op in ops})
        raise RtlError(f"model type {model.model_type!r} (ops {kinds}) is not supported by the "
                       "RTL generator yet: it builds LSTM models (LSTM layers, then a linear "
                       "output) and WaveNets")
    for op in ops[:-1]:
        if (op.gate_activation, op.cell_activation) != ("sigmoid", "tanh"):
            raise RtlError(f"{op.name}: gate/cell activations {op.gate_activation}/"
                           f"{op.cell_activation}; the RTL has sigmoid/tanh units")
    if ops[-1].activation not in ("identity", "relu"):
        raise RtlError(f"{ops[-1].name}: activation {ops[-1].activation!r}; the RTL output "
                       "layer supports identity or relu")


def _check_weights(model: EngineModel) -> None:
    for name, mat in model.matrices.items():
        if mat.decode is not None or mat.align is not None:
            what = "decoded (codebook/power-of-two)" if mat.decode is not None else \
                "finer than a row (DFP banks)"
            raise RtlError(f"{name}: weights {what}; the RTL generator supports fixed-point "
                           "weights with one fractional length per row "
                           "(compress.quant.weights: kind fixed, granularity row or matrix)")


# -- constants -----------------------------------------------------------------------------

def _sr(v: torch.Tensor, s, rounding) -> torch.Tensor:
    return shift_round(v, s, rounding)


def _ints(t) -> list[int]:
    return [int(v) for v in (t.tolist() if isinstance(t, torch.Tensor) else t)]


class _Writer:
    def __init__(self, out_dir: Path | None):
        self.out = out_dir     # None: plan only, write nothing

    def hexfile(self, rel: str, values: list[int], bits: int) -> str:
        if self.out is None:
            return rel
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(hex_words(values, bits)) + "\n")
        return rel


@dataclass
class Readout:
    """A dense op's output read from its accumulators (:meth:`hw.functional.Datapath.dense`):
    per row the alignment shift, the aligned bias and the narrowing shift (images
    ``const/<name>.{sm,ba,sn}.hex``, ROMs ``sm_<tag>``, ``ba_<tag>``, ``sn_<tag>``), then its
    activation; ``frac`` is the output's fractional length."""

    tag: str
    name: str
    function: str
    rows: int
    frac: int
    shifts: dict[str, int]

    def roms(self) -> list[str]:
        return [f"sm_{self.tag}", f"ba_{self.tag}", f"sn_{self.tag}"]


def dense_readout(model: EngineModel, name: str, fx: int, function: str, tag: str,
                  w: _Writer) -> Readout:
    """The bias, narrowing and activation of ``name``'s product at input fraction ``fx``, as
    ``Datapath.dense`` applies them, written as ROM images."""
    cfg = model.cfg
    mat = model.matrices[name]
    rows = mat.shape[0]
    b, fb = model.biases[f"{name}.bias"]
    if function in ("sigmoid", "tanh"):
        unit = model.units[function]
        target, frac = unit.in_frac, unit.out_frac
    else:
        target = frac = model.signal(name)
    fp = torch.as_tensor(mat.frac + fx, dtype=torch.int64).expand(rows)
    fbt = torch.as_tensor(fb, dtype=torch.int64).expand(rows)
    F = torch.stack([fp, fbt]).amax(dim=0).clamp(max=target + cfg.guard_bits)
    sm, sn = _ints(fp - F), _ints(F - target)
    w.hexfile(f"const/{name}.sm.hex", sm, SHIFT_BITS)
    w.hexfile(f"const/{name}.ba.hex", _ints(_sr(b, fbt - F, rounding_mode(cfg.rounding))),
              cfg.accumulator_bits)
    w.hexfile(f"const/{name}.sn.hex", sn, SHIFT_BITS)
    return Readout(tag, name, function, rows, frac,
                   {"align_right": max(sm), "narrow_left": max(0, -min(sn)),
                    "narrow_right": max(sn)})


def act_lookup(fn: str, q: str, kind: str) -> str:
    """The expression of the ``fn`` ROM's output for input ``q`` (``pwl``: interpolated to
    the next entry)."""
    rom = "sig_rom" if fn == "sigmoid" else "tanh_rom"
    nxt = f"{rom}[act_k({q}) + 1]" if kind == "pwl" else f"{rom}[act_k({q})]"
    return f"act_y({q}, {rom}[act_k({q})], {nxt})"


def _as_sparse(mat: IntMatrix, cfg: EngineConfig) -> IntMatrix:
    """A matrix kept whole (no mask) in the engine's own format, every weight stored: the
    work the timing model charges for it (``rows / num_pes`` entries a column, or a row of
    one-weight banks)."""
    if mat.storage is not None:
        return mat
    full = torch.ones_like(mat.codes, dtype=torch.bool)
    if cfg.sparse_format == "csc":
        # rows padded to a multiple of the PEs with rows that store nothing (the timing model
        # gives the last PEs one row fewer)
        pad = -mat.shape[0] % cfg.num_pes
        codes = torch.cat([mat.codes, torch.zeros(pad, mat.shape[1], dtype=mat.codes.dtype)])
        mask = torch.cat([full, torch.zeros(pad, mat.shape[1], dtype=torch.bool)])
        storage = encode_csc(codes, cfg.num_pes, cfg.index_bits, mask)
    else:
        storage = encode_csb(mat.codes, full, 1, mat.name)
    return replace(mat, storage=storage, index_bits=storage.index_bits, _cache={})


def _matrix_plan(i: int, mat: IntMatrix, cfg: EngineConfig, src: str, on_chip: bool,
                 w: _Writer, images: list, touched: dict[int, set[int]]) -> MatrixPlan:
    bytes_ = mat.bytes
    mat = _as_sparse(mat, cfg)
    rows, cols = mat.shape
    mems = pe_memories(mat, cfg)
    images.append(mems)
    words = max([1] + [len(v[0]) for v in mems.values()])
    plan = MatrixPlan(i, mat.name, rows, cols, src, words, mat.entry_bits,
                      mat.value_bits, mat.index_bits, {})
    for pe, (entries, pointers) in mems.items():
        if entries:
            plan.pe_files[pe] = w.hexfile(f"weights/{mat.name}.pe{pe}.hex", entries,
                                          mat.entry_bits)
        if pointers:
            pbits = max(1, max(pointers).bit_length())
            plan.ptr_bits = max(plan.ptr_bits, pbits)
    if isinstance(mat.storage, CSCMatrix):
        # the rows its entries (padding included) reach: the accumulators its product writes
        touched[i] = set(mat.storage.entry_positions()[0].tolist())
        for pe, (_, pointers) in mems.items():
            plan.ptr_files[pe] = w.hexfile(f"weights/{mat.name}.pe{pe}.ptr.hex", pointers,
                                           plan.ptr_bits)
    elif isinstance(mat.storage, CSBMatrix):
        plan.bank_size = mat.storage.bank_size
        plan.banks = cols // plan.bank_size
        plan.per_bank = int(mat.storage.values.shape[2])
    if not on_chip:
        plan.load_cycles = math.ceil(bytes_ / (cfg.ddr_gbps * 1e9) * cfg.clock_hz)
    return plan


def bank_words(m: MatrixPlan, cfg: EngineConfig) -> int:
    """Words of matrix ``m`` in each of a PE's ``macs_per_pe`` weight memories."""
    lanes = cfg.macs_per_pe
    if m.banks:   # csb: lane l holds banks l, l + lanes, ...: one word per row, round, entry
        return max(1, math.ceil(m.rows / cfg.num_pes) * math.ceil(m.banks / lanes) * m.per_bank)
    return max(1, math.ceil(m.words / lanes))


def write_pe_memories(mats: list[MatrixPlan], images: list, cfg: EngineConfig,
                      w: _Writer) -> list[str]:
    """Each PE's weight memories (``mem/pe<P>.w<L>.hex``, one per multiplier) and pointer
    memory (``mem/pe<P>.ptr.hex``): the matrices' export images one after the other, so that
    each is one block RAM read on the clock edge. A csc PE's ``macs_per_pe`` consecutive
    entries lie in its ``macs_per_pe`` memories (entry ``e`` in memory ``e mod macs``); a csb
    PE's multiplier ``l`` reads banks ``l, l + macs, ...`` from its own memory."""
    P, lanes = cfg.num_pes, cfg.macs_per_pe
    ebmax = max(m.entry_bits for m in mats)
    pbmax = max([1] + [m.ptr_bits for m in mats])
    words: dict[tuple[int, int], list[int]] = {(p, b): [] for p in range(P) for b in range(lanes)}
    ptrs: dict[int, list[int]] = {p: [] for p in range(P)}
    wb = pb = 0
    for m, mems in zip(mats, images):
        m.wbase, m.pbase = wb, pb
        n = bank_words(m, cfg)
        for p in range(P):
            entries, pointers = mems.get(p, ([], []))
            for b in range(lanes):
                if m.banks:
                    k, rounds = m.per_bank, math.ceil(m.banks / lanes)
                    region = []
                    for rl in range(n // (rounds * k)):
                        for rnd in range(rounds):
                            bank = rnd * lanes + b
                            for kk in range(k):
                                e = (rl * m.banks + bank) * k + kk
                                ok = bank < m.banks and e < len(entries)
                                region.append(entries[e] if ok else 0)
                else:
                    region = [entries[i * lanes + b] if i * lanes + b < len(entries) else 0
                              for i in range(n)]
                words[p, b] += region
            if m.ptr_files:
                ptrs[p] += pointers if pointers else [0] * (m.cols + 1)
        wb += n
        pb += m.cols + 1 if m.ptr_files else 0
    files = []
    for (p, b), v in words.items():
        files.append(w.hexfile(f"mem/pe{p}.w{b}.hex", v + [0], ebmax))
    if any(m.ptr_files for m in mats):
        for p, v in ptrs.items():
            files.append(w.hexfile(f"mem/pe{p}.ptr.hex", v + [0], pbmax))
    return files


class Products:
    """A design's matrices as they are planned, one product phase each: their plans, the
    phases so far, their PE memory images and (csc) the rows each product writes."""

    def __init__(self, model: EngineModel, w: _Writer):
        self.model, self.w = model, w
        self.onchip = placement(model)
        self.mats: list[MatrixPlan] = []
        self.phases: list[Phase] = []
        self.images: list[dict[int, tuple[list[int], list[int]]]] = []
        self.touched: dict[int, set[int]] = {}

    def add(self, name: str, src: str) -> int:
        """Plan matrix ``name`` (its product reads ``src``) and its phase; its index."""
        plan = _matrix_plan(len(self.mats), self.model.matrices[name], self.model.cfg, src,
                            self.onchip[name], self.w, self.images, self.touched)
        self.mats.append(plan)
        self.phases.append(Phase("product", name, plan.index))
        return plan.index


def plan_design(model: EngineModel, out_dir: Path | None
                ) -> tuple[list[MatrixPlan], list[LayerPlan], dict, list[Phase], list[str]]:
    """Matrices, layers, output layer and phases of the design, and its PE memory images;
    writes the data files into ``out_dir`` (None: writes nothing)."""
    cfg = model.cfg
    w = _Writer(out_dir)
    products = Products(model, w)
    mats, phases, mems, touched = products.mats, products.phases, products.images, \
        products.touched
    layers: list[LayerPlan] = []
    unit_in, fg = model.unit_in_frac, model.gate_frac
    guard = cfg.guard_bits
    acc_bits = cfg.accumulator_bits
    add_matrix = products.add

    src, fx = "feat", model.signal("input")
    ops = model.graph.ops
    for li, op in enumerate(ops[:-1]):
        name, hidden = op.name, op.W_ix.shape[0]
        proj_mat = model.matrices.get(f"{name}.W_ym")
        fm = model.signal(f"{name}.m")
        fy = model.signal(name) if proj_mat is not None else fm
        fc = model.signal(f"{name}.c")
        y = f"y_{li}" if proj_mat is not None else f"m_{li}"
        # accumulators are reused: a layer's gate products (one accumulator memory each) are
        # consumed by its element-wise stage before the next layer's products start
        gates = [add_matrix(f"{name}.{g}", src if g.endswith("x") else y)
                 for g in LSTMOp.GATE_MATRICES]
        # the gate accumulator's per-row format, as hw.functional.Datapath.lstm
        gs = gate_setup(model, name, fx)
        sx, sr, sn = _ints(gs.shift_x), _ints(gs.shift_r), _ints(gs.frac - unit_in)
        w.hexfile(f"const/{name}.sx.hex", sx, SHIFT_BITS)
        w.hexfile(f"const/{name}.sr.hex", sr, SHIFT_BITS)
        w.hexfile(f"const/{name}.sn.hex", sn, SHIFT_BITS)
        shifts = {"align_right": max(sx + sr), "narrow_left": max(0, -min(sn)),
                  "narrow_right": max(sn)}
        # the aligned biases' low accumulator_bits bits: all the wrapped sum depends on
        w.hexfile(f"const/{name}.ba.hex", _ints(gs.bias), acc_bits)
        fcell = min(max(fg + fc, 2 * fg), fc + guard)
        cell = {"cs1": fg + fc - fcell, "cs2": 2 * fg - fcell, "cn": fcell - fc,
                "ct": fc - unit_in, "cm": 2 * fg - fm}
        phases.append(Phase("elementwise", f"{name}.elementwise", li))
        proj = None
        if proj_mat is not None:
            proj = add_matrix(f"{name}.W_ym", f"m_{li}")
            ysh = _ints(proj_mat.frac + fm - fy)
            w.hexfile(f"const/{name}.ysh.hex", ysh, SHIFT_BITS)
            shifts["narrow_left"] = max(shifts["narrow_left"], -min(ysh))
            shifts["narrow_right"] = max(shifts["narrow_right"], max(ysh))
        out_dim = proj_mat.shape[0] if proj_mat is not None else hidden
        layers.append(LayerPlan(li, name, hidden, out_dim, src, y, gates, proj, cell, shifts))
        for slot, g in enumerate(gates):
            mats[g].slot = slot
        src, fx = y, fy
    out = ops[-1]
    oi = add_matrix(out.name, src)
    ro = dense_readout(model, out.name, fx, out.activation, "out", w)
    for fn, unit in model.units.items():
        w.hexfile(f"tables/{fn}.hex", _ints(unit.table), unit.bits)
    output = {"name": out.name, "matrix": oi, "rows": ro.rows, "relu": out.activation == "relu",
              "shifts": ro.shifts}
    files = write_pe_memories(mats, mems, cfg, w)
    if cfg.sparse_format == "csc":
        # per cell, which of its layer's gate matrices write its accumulator (bit = slot): a
        # row no entry reaches keeps an earlier product's sum, which must read as zero
        for ly in layers:
            w.hexfile(f"const/{ly.name}.nz.hex",
                      [sum(1 << s for s, g in enumerate(ly.gates) if k in touched[g])
                       for k in range(ly.hidden)], NSLOT)
    return mats, layers, output, phases, files


# -- SystemVerilog ---------------------------------------------------------------------------

def _sv_rounding(mode: Rounding, fn: str = "sr64", width: str = "64") -> str:
    return {
        Rounding.NEAREST: f"{fn} = (v + half) >>> s;",
        Rounding.FLOOR: f"{fn} = fl;",
        Rounding.ZERO: f"{fn} = (v < 0) ? -((-v) >>> s) : fl;",
        Rounding.NEAREST_EVEN: "rem = v - (fl <<< s);\n"
                               f"      {fn} = fl + (((rem > half) || (rem == half && fl[0])) ?"
                               f" {width}'(1) : {width}'(0));",
    }[mode]


def _sr_function(fn: str, width: str, mode: Rounding) -> str:
    """shift_round at ``width`` bits (a SystemVerilog constant expression)."""
    return f"""  function automatic logic signed [{width}-1:0] {fn}(
      input logic signed [{width}-1:0] v, input integer s);
    logic signed [{width}-1:0] fl, rem, half;
    begin
      rem = '0;
      fl = v >>> s;
      half = (s > 0) ? ({width}'(1) <<< (s - 1)) : {width}'(0);
      if (s <= 0) {fn} = v <<< (-s);
      else begin
        {_sv_rounding(mode, fn, width)}
      end
    end
  endfunction
"""


def gate_widths(ranges: list[dict[str, int]], acc_bits: int) -> tuple[int, int]:
    """The widths of the arithmetic on accumulators, (alignment, narrowing), for the shift
    ranges of the layers' gates and projections and of the output layer.

    Alignment: the accumulator register keeps the low ``A`` bits of the aligned sum, and those
    depend only on the low ``A`` bits of each term (a left shift) or fit in ``A`` bits (a
    right shift, rounded within one more bit while it is at most ``A - 1``): ``A + 1``.
    Narrowing: a left shift by up to ``L`` (the layers' largest) before saturation needs
    ``A + L + 1``. Shifts outside those ranges keep 64 bits."""
    right = max(r["align_right"] for r in ranges)
    align = acc_bits + 1 if right <= acc_bits - 1 else 64
    left = max(r["narrow_left"] for r in ranges)
    nright = max(r["narrow_right"] for r in ranges)
    narrow = acc_bits + left + 1 if nright <= acc_bits - 1 and acc_bits + left + 1 <= 64 else 64
    return align, narrow


def vector_read(src: str, index: str, lanes: int, narrowed: dict[str, str]) -> str:
    """The expression reading element ``index`` of the signal vector ``src``: the input
    buffer's bank the frame reads, a layer's ``m`` (a word of ``lanes`` cells per group, zero
    until the layer's first element-wise stage), a projection's output (a register; on csc
    the broadcast's read of its accumulators at ``bj``, narrowed: ``narrowed`` maps it to that
    expression)."""
    if src == "feat":
        return f"fbuf[frb ? IN + ({index}) : ({index})]"
    if src.startswith("m_"):
        i = src[2:]
        word = f"{src}[{_div(index, lanes)}]" if lanes > 1 else f"{src}[{index}]"
        cell = f"lane_of({word}, {_mod(index, lanes)})" if lanes > 1 else word
        return f"(st_{i} ? AB'({cell}) : AB'(0))"
    if src in narrowed:
        return narrowed[src]
    return f"{src}[{index}]"


def _src_read(target: str, index: str, mats: list[MatrixPlan], lanes: int,
              narrowed: dict[str, str] | None = None) -> str:
    """``target = `` the input vector of matrix ``cm`` at ``index``, one read per distinct
    vector (:func:`vector_read`)."""
    srcs: dict[str, list[int]] = {}
    for m in mats:
        srcs.setdefault(m.src, []).append(m.index)
    lines = ["case (cm)"]
    for src, idx in srcs.items():
        read = vector_read(src, index, lanes, narrowed or {})
        lines.append(f"  {', '.join(map(str, idx))}: {target} = {read};")
    lines += [f"  default: {target} = '0;", "endcase"]
    return "\n".join(lines)


def _indent(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line if line else line for line in text.splitlines())


def arith_functions(cfg: EngineConfig) -> str:
    """The engine's pure arithmetic functions: shift_round, the accumulator's wrap, the
    fit into ``activation_bits``, the aligned and narrowed accumulator arithmetic and the
    activation ROMs' lookup (the ROMs are read at the call site)."""
    act_expr = ("y0;" if cfg.activation_unit.kind == "lut"
                else "AB'(a + sr64((b - a) * dx, BIN_SHIFT));")
    return f"""  // shift_round: a right shift rounded ({cfg.rounding}), a negative shift a left one
  function automatic logic signed [63:0] sr64(input logic signed [63:0] v, input integer s);
    logic signed [63:0] fl, rem, half;
    begin
      rem = 64'sd0;
      fl = v >>> s;
      half = (s > 0) ? (64'sd1 <<< (s - 1)) : 64'sd0;
      if (s <= 0) sr64 = v <<< (-s);
      else begin
        {_sv_rounding(rounding_mode(cfg.rounding))}
      end
    end
  endfunction

  // the accumulator register: wrap-around at A bits
  function automatic logic signed [63:0] wrap_acc(input logic signed [63:0] v);
    wrap_acc = {{{{(64 - A){{v[A - 1]}}}}, v[A - 1:0]}};
  endfunction

  // into activation_bits: saturate (SAT) or wrap
  function automatic logic signed [AB-1:0] fit(input logic signed [63:0] v);
    if (SAT != 0 && v > AMAXV) fit = AMAXV[AB-1:0];
    else if (SAT != 0 && v < AMINV) fit = AMINV[AB-1:0];
    else fit = v[AB-1:0];
  endfunction

  function automatic logic signed [AB-1:0] narrow(input logic signed [63:0] v, input integer s);
    narrow = fit(sr64(v, s));
  endfunction

  // accumulators aligned in GW1 bits and narrowed in GW2 bits (hw.rtl.generate.gate_widths)
{_sr_function("sr_al", "GW1", rounding_mode(cfg.rounding))}
{_sr_function("sr_gn", "GW2", rounding_mode(cfg.rounding))}
  function automatic logic signed [A-1:0] wrap_al(input logic signed [GW1-1:0] v);
    wrap_al = v[A - 1:0];
  endfunction

  function automatic logic signed [AB-1:0] narrow_g(input logic signed [A-1:0] v,
                                                    input integer s);
    logic signed [GW2-1:0] t;
    begin
      t = sr_gn(GW2'(v), s);
      if (SAT != 0 && t > GW2'(AMAXV)) narrow_g = AMAXV[AB-1:0];
      else if (SAT != 0 && t < GW2'(AMINV)) narrow_g = AMINV[AB-1:0];
      else narrow_g = t[AB-1:0];
    end
  endfunction

  // the activation ROMs: entry of the input's bin; pwl interpolates to the next entry
  function automatic integer act_k(input logic signed [AB-1:0] q);
    logic [AB-1:0] off;
    begin
      off = q ^ {{1'b1, {{(AB - 1){{1'b0}}}}}};
      act_k = off >> BIN_SHIFT;
    end
  endfunction

  function automatic logic signed [AB-1:0] act_y(input logic signed [AB-1:0] q,
                                                  input logic signed [AB-1:0] y0,
                                                  input logic signed [AB-1:0] y1);
    logic [AB-1:0] off;
    logic signed [63:0] a, b, dx;
    begin
      off = q ^ {{1'b1, {{(AB - 1){{1'b0}}}}}};
      a = y0;
      b = y1;
      dx = 64'(off & ((1 << BIN_SHIFT) - 1));
      act_y = {act_expr}
    end
  endfunction
"""


# The streaming top's parts every engine shares: the logits stream out one code per beat, and
# a running phase counts its cycles (and a product its drain) until its end.
OUTPUT_STREAM = """      if (out_busy && out_ready) begin
        if (ocnt == V - 1) begin out_busy <= 1'b0; ocnt <= 0; end
        else ocnt <= ocnt + 1;
      end
"""
PHASE_TICK = """      end else if (run) begin
        pc <= pc + 1;
        if (kind == KIND_PRODUCT && idle) drain <= drain + 1;
      end
    end
  end
"""


def module_header(model: EngineModel, utterance: bool) -> str:
    """``module asr_engine (`` and its ports: the streaming top's (``utterance``: also
    ``in_last`` on an utterance's last code and ``utt_done`` as its last step ends)."""
    cfg = model.cfg
    last = ("  input  logic in_last,   // with the last code of an utterance's last frame\n"
            if utterance else "")
    done = ",\n  output logic utt_done" if utterance else ""
    return (f"// Generated by asr-hw rtl for engine {cfg.name!r} ({cfg.sparse_format}, "
            f"{cfg.num_pes} PEs x {cfg.macs_per_pe} MACs) and model {model.model_type!r}; do "
            "not edit.\nmodule asr_engine (\n  input  logic clk,\n  input  logic rst,\n"
            "  input  logic in_valid,\n  output logic in_ready,\n  input  logic [AB-1:0] "
            f"in_data,\n{last}  output logic out_valid,\n  input  logic out_ready,\n"
            "  output logic [AB-1:0] out_data,\n  output logic out_last,\n"
            f"  output logic frame_done{done}\n);")


def localparams(consts: dict[str, int]) -> list[str]:
    """The engine's integer localparams and the constants every engine declares."""
    return [*(f"  localparam integer {k} = {v};" for k, v in consts.items()),
            "  localparam logic signed [63:0] AMAXV = (64'sd1 <<< (AB - 1)) - 64'sd1;",
            "  localparam logic signed [63:0] AMINV = -(64'sd1 <<< (AB - 1));",
            "  localparam integer KIND_PRODUCT = 0, KIND_ELEMENTWISE = 1;"]


def matrix_constants(mats: list[MatrixPlan], cfg: EngineConfig, extra: str,
                     values: dict[int, int], default: int) -> list[str]:
    """The running matrix's constants (``cur_rows`` ... ``cur_wb``, and ``cur_<extra>`` from
    ``values``, ``default`` for a matrix not in it), selected by ``cm``."""
    P = cfg.num_pes

    def line(head: str, f: dict[str, int]) -> str:
        return f"      {head}: begin " + " ".join(f"cur_{k} = {v};" for k, v in f.items()) \
            + " end"

    L = ["    case (cm)"]
    for m in mats:
        rounds = math.ceil(m.banks / cfg.macs_per_pe) if m.banks else 0
        L.append(line(str(m.index), {
            "rows": m.rows, "cols": m.cols, "load": m.load_cycles, "banks": m.banks,
            "k": m.per_bank, "bs": m.bank_size, "rounds": rounds,
            "rpe": math.ceil(m.rows / P), "wb": m.wbase, extra: values.get(m.index, default)}))
    L.append(line("default", {"rows": 0, "cols": 0, "load": 0, "banks": 0, "k": 0, "bs": 1,
                              "rounds": 0, "rpe": 0, "wb": 0, extra: default}))
    return L + ["    endcase\n  end\n"]


def preamble(cfg: EngineConfig, consts: dict[str, int], mats: list[MatrixPlan], phases: int,
             input_dim: int, vocab: int) -> list[str]:
    """The localparams (``consts`` and the widths of the counters and indices held in
    registers: not integers, since a 32-bit register makes each comparison and sum with it 32
    bits wide) and the pure arithmetic functions."""
    consts = {**consts, **index_widths(mats, cfg, phases, input_dim, vocab)}
    return [*localparams(consts), "", arith_functions(cfg)]


def phase_functions(phases: list[Phase]) -> list[str]:
    """``ph_kind(x)`` and ``ph_target(x)``: phase ``x``'s kind and matrix or layer."""
    L = ["  function automatic integer ph_kind(input integer x);\n    case (x)"]
    L += [f"      {i}: ph_kind = {0 if p.kind == 'product' else 1};  // {p.name}"
          for i, p in enumerate(phases)]
    L += ["      default: ph_kind = 0;\n    endcase\n  endfunction",
          "  function automatic integer ph_target(input integer x);\n    case (x)"]
    L += [f"      {i}: ph_target = {p.target};" for i, p in enumerate(phases)]
    L += ["      default: ph_target = 0;\n    endcase\n  endfunction"]
    return L


def render_engine(model: EngineModel, mats: list[MatrixPlan], layers: list[LayerPlan],
                  output: dict, phases: list[Phase], input_dim: int) -> str:
    cfg = model.cfg
    unit = model.units["tanh"]
    table_words = unit.table.numel()
    bin_shift = unit.bin_shift
    csc = cfg.sparse_format == "csc"
    shape = pe_memory_shape(mats, layers, cfg)
    # csb's projections' and output layer's accumulators (a register file; csc's are per-PE
    # memories, RowMemory)
    npres = max(m.rows for m in mats if m.slot < 0)
    vocab = output["rows"]
    widths = gate_widths([ly.shifts for ly in layers] + [output["shifts"]], cfg.accumulator_bits)
    P, D = cfg.num_pes, cfg.activation_queue_depth
    L: list[str] = []
    add = L.append
    add(module_header(model, utterance=False))
    mem = shape.localparams()
    consts = {
        "AB": cfg.activation_bits, "A": mem["A"], "P": mem["P"], "MACS": mem["MACS"],
        "D": D, "PD": cfg.pipeline_depth, "LANES": cfg.elementwise_lanes, "PB": mem["PB"],
        "ED": cfg.elementwise_depth, "IN": input_dim, "V": vocab, "NPH": len(phases),
        "NPRES": npres, "EBMAX": mem["EBMAX"], "BIN_SHIFT": bin_shift,
        "TBL": table_words, "SAT": int(cfg.saturate),
        "GW1": widths[0], "GW2": widths[1],
    }
    L += preamble(cfg, consts, mats, len(phases), input_dim, vocab)
    # -- memories --
    add("  // weight, pointer, activation and per-row constant ROMs")
    add("  logic signed [AB-1:0] sig_rom [0:TBL-1];\n  logic signed [AB-1:0] tanh_rom [0:TBL-1];")
    for ly in layers:
        n4 = 4 * ly.hidden
        for c in ("sx", "sr", "sn"):
            add(f"  logic signed [{SHIFT_BITS - 1}:0] {c}_{ly.index} [0:{n4 - 1}];")
        add(f"  logic signed [A-1:0] ba_{ly.index} [0:{n4 - 1}];")
        if csc:
            add(f"  logic [{NSLOT - 1}:0] nz_{ly.index} [0:{ly.hidden - 1}];")
        if ly.proj is not None:
            add(f"  logic signed [{SHIFT_BITS - 1}:0] ysh_{ly.index} [0:{ly.out_dim - 1}];")
    add(f"  logic signed [{SHIFT_BITS - 1}:0] osm [0:V-1];\n"
        f"  logic signed [{SHIFT_BITS - 1}:0] osn [0:V-1];\n"
        "  logic signed [A-1:0] oba [0:V-1];")
    add("  initial begin")
    add('    $readmemh("tables/sigmoid.hex", sig_rom);\n'
        '    $readmemh("tables/tanh.hex", tanh_rom);')
    for ly in layers:
        for c in ("sx", "sr", "sn", "ba") + (("nz",) if csc else ()):
            add(f'    $readmemh("const/{ly.name}.{c}.hex", {c}_{ly.index});')
        if ly.proj is not None:
            add(f'    $readmemh("const/{ly.name}.ysh.hex", ysh_{ly.index});')
    on = output["name"]
    add(f'    $readmemh("const/{on}.sm.hex", osm);\n    $readmemh("const/{on}.sn.hex", osn);\n'
        f'    $readmemh("const/{on}.ba.hex", oba);')
    add("  end\n")
    # -- signals --
    add("  // signals: the frame's input (two banks in distributed RAM: one filled while the")
    add("  // frame reads the other), each layer's cell state and m (distributed RAM, in the")
    add("  // element-wise unit's block), y, the projection's and output layer's accumulators")
    add("  // (registers: read whole as their product ends)")
    add("  (* ram_style = \"distributed\" *) logic [AB-1:0] fbuf [0:2*IN-1];")
    add("  logic fwb, frb;   // the bank being filled, the bank the frame reads")
    add("`ifndef SYNTHESIS\n  // simulation only: the frame's input\n"
        "  logic signed [AB-1:0] feat [0:IN-1];\n"
        "  always_comb for (integer k = 0; k < IN; k++) feat[k] = fbuf[frb ? IN + k : k];\n"
        "`endif")
    add("  function automatic logic [AB-1:0] lane_of(input logic [LANES*AB-1:0] w, "
        "input integer l);\n    lane_of = w[l * AB +: AB];\n  endfunction")
    rmems = {rm.matrix: rm for rm in row_memories(layers, output, P)} if csc else {}
    for ly in layers:
        if ly.proj is not None and csc:
            add(proj_memories(ly, rmems[ly.proj]))
        elif ly.proj is not None:
            add(f"  logic signed [AB-1:0] y_{ly.index} [0:{ly.out_dim - 1}];")
    if csc:
        add(row_memory_decls(rmems[output["matrix"]], f"{output['name']}", "ocnt", "ord"))
    else:
        add("  logic signed [A-1:0] pres [0:NPRES-1];")
    add("  logic [INW-1:0] fin_cnt;\n  logic [VW-1:0] ocnt;\n  logic [PHW-1:0] ph;\n"
        "  integer pc, drain;\n  logic fin_full, out_busy, run;")
    add("")
    # -- phase table and per-matrix constants --
    add("  // the phases of a frame, in the timing model's order")
    L += phase_functions(phases)
    add("  function automatic integer ew_len(input integer l);\n    case (l)")
    for ly in layers:
        add(f"      {ly.index}: ew_len = {math.ceil(ly.hidden / cfg.elementwise_lanes)} + ED;")
    add("      default: ew_len = 1;\n    endcase\n  endfunction")
    add("  integer kind, cm, cur_rows, cur_cols, cur_load, cur_banks, cur_k, "
        "cur_bs, cur_rounds, cur_rpe, cur_wb, cur_slot;")
    add("  logic idle, ph_last, start;")
    add("  always_comb begin\n    kind = ph_kind(ph);\n    cm = ph_target(ph);")
    L += matrix_constants(mats, cfg, "slot", {m.index: m.slot for m in mats}, -1)
    add(_render_csc() if csc else _render_csb())
    add(_pe_memories(shape, mats))
    add(_acc_memories(shape, cfg))
    add(_product_comb(csc, mats, cfg, layers))
    add(_mac_stage(csc, mats, cfg.macs_per_pe, cfg.elementwise_lanes))
    add(f"""
  always_comb begin
    if (kind == KIND_PRODUCT)
      ph_last = run && idle && drain >= PD - 1 && pc + 1 >= cur_load;
    else
      ph_last = run && pc == ew_len(cm) - 1;
  end

  assign in_ready = !fin_full;
  assign out_valid = out_busy;
  assign out_last = out_busy && ocnt == V - 1;

  // control: input buffer, frame start, phase stepping, output stream
  assign start = !run && fin_full && !out_busy;
  always_ff @(posedge clk)
    if (!rst && in_valid && !fin_full) fbuf[fwb ? IN + fin_cnt : fin_cnt] <= in_data;
  always_ff @(posedge clk) begin
    if (rst) begin
      run <= 1'b0; fin_full <= 1'b0; fin_cnt <= 0; out_busy <= 1'b0; ocnt <= 0;
      fwb <= 1'b0; frb <= 1'b1;
      frame_done <= 1'b0; ph <= 0; pc <= 0; drain <= 0;
    end else begin
      frame_done <= 1'b0;
      if (in_valid && !fin_full) begin
        if (fin_cnt == IN - 1) begin fin_cnt <= 0; fin_full <= 1'b1; end
        else fin_cnt <= fin_cnt + 1;
      end
{OUTPUT_STREAM}      if (start) begin
        frb <= fwb; fwb <= !fwb;
        fin_full <= 1'b0; run <= 1'b1; ph <= 0; pc <= 0; drain <= 0;
      end else if (run && ph_last) begin
        pc <= 0; drain <= 0;
        if (ph == NPH - 1) begin
          run <= 1'b0; ph <= 0; frame_done <= 1'b1; out_busy <= 1'b1; ocnt <= 0;
        end else ph <= ph + 1;
{PHASE_TICK}""")
    add(_product_state(csc))
    add(_res_block(csc, mats, cfg, rmems))
    add(_elementwise_block(layers, phases, cfg.activation_unit.kind, cfg.elementwise_lanes,
                           csc))
    for ly in layers:
        add(_layer_block(ly, phases, cfg.elementwise_lanes, csc))
    add(_output_block(output, rmems.get(output["matrix"])))
    add("endmodule")
    return "\n".join(L) + "\n"


@dataclass(frozen=True)
class RowMemory:
    """csc: the accumulators of a projection or of the output layer, per PE a distributed RAM
    of its rows (row ``r`` in PE ``r mod P``, word ``r div P``: a PE's read-modify-write reads
    and writes only its own memory) and a valid bit per row (cleared as the product starts and
    by reset: a row no entry reached reads as zero)."""

    matrix: int           # the product that accumulates into it
    mem: str              # PE p's memory is <mem>_<p>, its valid bits <valid>_<p>
    valid: str
    rows: int
    num_pes: int

    @property
    def words(self) -> int:
        return math.ceil(self.rows / self.num_pes)

    @property
    def ab(self) -> int:
        return max(1, (self.words - 1).bit_length())

    def read(self, p: int, word: str) -> str:
        """PE ``p``'s accumulator at ``word`` (zero where its valid bit is clear)."""
        w = f"{self.ab}'({word})"
        return f"{self.valid}_{p}[{w}] ? {self.mem}_{p}[{w}] : '0"


def row_memories(layers: list[LayerPlan], output: dict, num_pes: int) -> list[RowMemory]:
    """csc's projection and output accumulators: a projection's is also the layer's output
    ``y`` (nothing reads ``y`` while its projection runs: the layer's recurrent product comes
    before it, the next layer's products after), so no copy is kept; the output layer's hold
    while the logits stream out (a frame starts only once the last is out)."""
    mems = [RowMemory(ly.proj, f"yr_{ly.index}", f"yok_{ly.index}", ly.out_dim, num_pes)
            for ly in layers if ly.proj is not None]
    return mems + [RowMemory(output["matrix"], "orr", "ook", output["rows"], num_pes)]


def row_memory_decls(rm: RowMemory, title: str, index: str, read_name: str) -> str:
    """``rm``'s memories and valid bits, and ``read_name``: its row ``index`` (one read, a
    multiplexer over the PEs' memories, not over every row)."""
    P = rm.num_pes
    L = [f"  // {title}: accumulators per PE in distributed RAM, a valid bit a row"]
    for p in range(P):
        L.append(f'  (* ram_style = "distributed" *) logic [A-1:0] {rm.mem}_{p} '
                 f'[0:{rm.words - 1}];')
    L.append("  logic [{}:0] {};".format(rm.words - 1,
                                        ", ".join(f"{rm.valid}_{p}" for p in range(P))))
    L.append(f"  logic signed [A-1:0] {read_name};   // row {index}")
    cases = "\n".join(f"      {p}: {read_name} = {rm.read(p, _div(index, P))};"
                      for p in range(P))
    L.append(f"""  always_comb begin
    case ({_mod(index, P)})
{cases}
      default: {read_name} = '0;
    endcase
  end""")
    return "\n".join(L)


def _row_view(rm: RowMemory, target: str, value: str) -> str:
    """Simulation only: ``target[k] = value`` for each row ``k`` of ``rm``, where ``value``
    reads the row's accumulator as ``ACC`` and its index as ``K``."""
    P = rm.num_pes
    lines = "\n".join(
        f"      if (w * P + {p} < {rm.rows}) {target}[w * P + {p}] = "
        + value.replace("ACC", f"({rm.read(p, 'w')})").replace("K", f"w * P + {p}") + ";"
        for p in range(P))
    return f"""  always_comb
    for (integer w = 0; w < {rm.words}; w++) begin
{lines}
    end"""


def proj_memories(ly: LayerPlan, rm: RowMemory) -> str:
    """csc: layer ``ly``'s projection accumulators (:class:`RowMemory`), which the broadcast
    reads at row ``bj`` and narrows (one narrowing unit, not one per row)."""
    i = ly.index
    decls = row_memory_decls(rm, f"{ly.name}'s projection", "bj", f"yrd_{i}")
    view = _row_view(rm, f"yv_{i}", f"narrow_g(ACC, ysh_{i}[K])")
    return f"""{decls}
`ifndef SYNTHESIS
  // simulation only: the layer's output as the broadcast reads it
  logic signed [AB-1:0] yv_{i} [0:{ly.out_dim - 1}];
{view}
`endif"""


def index_widths(mats: list[MatrixPlan], cfg: EngineConfig, phases: int, input_dim: int,
                  vocab: int) -> dict[str, int]:
    """Bits of the registers that count and index: the queues' head and length (``QW``: up to
    ``2 D - 2`` before the wrap), a column's entry pointers (``EW``: a pointer, plus the
    multipliers past it), a PE's row (``RW``, signed: -1 before its first entry), the broadcast
    column (``BJW``), the phase (``PHW``) and the input and output counters."""
    ptr_bits = max([1] + [m.ptr_bits for m in mats])
    rows = max(math.ceil(m.rows / cfg.num_pes) for m in mats)
    return {"QW": (2 * cfg.activation_queue_depth).bit_length(),
            "EW": (2 ** ptr_bits - 1 + cfg.macs_per_pe).bit_length(),
            "RW": rows.bit_length() + 1, "BJW": max(m.cols for m in mats).bit_length() + 1,
            "PHW": phases.bit_length(), "INW": max(1, input_dim.bit_length()),
            "VW": max(1, vocab.bit_length())}


def _render_csc() -> str:
    return """  // csc: column broadcast into per-PE activation queues; each queued column carries
  // the PE's pointers (read as it is broadcast), so that columns with no entries for a PE pass
  // through it without costing a cycle
  logic [BJW-1:0] bj;
  // (PE p's queue is entries p*D ... p*D+D-1, read and written at constant indices: a slot
  // is picked among its D entries, not among all P*D)
  logic [PB-1:0] qe0 [0:P*D-1];
  logic [PB-1:0] qe1 [0:P*D-1];
  logic signed [AB-1:0] qx [0:P*D-1];
  // whether the queued column has entries for the PE (decided as it is broadcast)
  logic qne [0:P*D-1];
  logic [QW-1:0] qh [0:P-1];
  logic [QW-1:0] qn [0:P-1];
  logic act [0:P-1];
  logic [EW-1:0] ce [0:P-1];
  logic [EW-1:0] cend [0:P-1];
  logic signed [RW-1:0] crow [0:P-1];
  logic signed [AB-1:0] cx [0:P-1];
  // decisions of this cycle
  logic push;
  logic signed [AB-1:0] bx;
  integer be0 [0:P-1];
  integer be1 [0:P-1];
  integer npop [0:P-1];
  logic enq [0:P-1];
  logic work [0:P-1];
  integer n_e [0:P-1];
  integer n_end [0:P-1];
  integer n_row [0:P-1];
  logic signed [AB-1:0] n_x [0:P-1];
  // issued to the multiply stage (s1: this cycle, s2: registered): the entries read, whether
  // they start a column, its input, the memory of the first entry
  logic s1_en [0:P*MACS-1];
  logic s2_en [0:P*MACS-1];
  logic s1_new [0:P-1];
  logic s2_new [0:P-1];
  logic signed [AB-1:0] s1_x [0:P-1];
  logic signed [AB-1:0] s2_x [0:P-1];
  integer s1_rot [0:P-1];
  integer s2_rot [0:P-1];
  logic mac_en [0:P*MACS-1];
  logic signed [RW-1:0] mac_row [0:P*MACS-1];
  logic signed [63:0] mac_prod [0:P*MACS-1];
  // the read-modify-write stage (s3): the row's accumulator read on the last edge, or the
  // sum written on it when the row is the same (forwarded), plus the product
  logic a3_en [0:P-1];
  logic a3_fwd [0:P-1];
  logic a3_v [0:P-1];
  logic signed [RW-1:0] a3_row [0:P-1];
  logic signed [63:0] a3_prod [0:P-1];
  logic signed [A-1:0] a3_fv [0:P-1];
  logic signed [A-1:0] a3_sum [0:P-1];
"""


def _render_csb() -> str:
    return """  // csb: every PE on one row at a time, MACS multipliers on MACS banks
  integer rl, rnd, kk;
  logic signed [A-1:0] pacc [0:P-1];
  logic signed [A-1:0] nacc [0:P-1];
  logic row_we [0:P-1];
  integer row_addr [0:P-1];
  // issued to the multiply stage (s1: this cycle, s2: registered)
  logic s1_act, s2_act, s1_first, s2_first, s1_last, s2_last;
  integer s1_rnd, s2_rnd, s2_rl;
  logic s1_ok [0:P-1];
  logic s2_ok [0:P-1];
  integer s1_raddr [0:P-1];
  integer s2_raddr [0:P-1];
  logic s1_en [0:P*MACS-1];
  logic s2_en [0:P*MACS-1];
"""


def _div(x: str, n: int) -> str:
    if n == 1:
        return x
    if n & (n - 1) == 0:
        return f"(({x}) >> {n.bit_length() - 1})"
    return f"(({x}) / {n})"


def _mod(x: str, n: int) -> str:
    if n == 1:
        return "0"
    if n & (n - 1) == 0:
        return f"(({x}) & {n - 1})"
    return f"(({x}) % {n})"


@dataclass(frozen=True)
class PeMemoryShape:
    """Widths and depths of a PE's memories (every PE's are alike): the localparams and
    array bounds the engine declares them with."""

    num_pes: int          # P
    macs: int             # MACS: weight memories per PE
    csc: bool             # a pointer memory per PE
    entry_bits: int       # EBMAX: a weight memory's word
    ptr_bits: int         # PB: a pointer memory's word
    acc_bits: int         # A: an accumulator memory's word
    wdepth: int           # words of each weight memory (the matrices' and one spare)
    pdepth: int           # words of each pointer memory
    dep: int              # DEP: words of each accumulator memory
    rc: int               # RC: copies of each accumulator memory

    @property
    def wab(self) -> int:
        return max(1, (self.wdepth - 1).bit_length())

    @property
    def pab(self) -> int:
        return max(1, (self.pdepth - 1).bit_length())

    @property
    def aab(self) -> int:
        return max(1, (self.dep - 1).bit_length())

    def localparams(self) -> dict[str, int]:
        """The engine's localparams the memories' declarations use (besides their own)."""
        return {"A": self.acc_bits, "P": self.num_pes, "MACS": self.macs, "PB": self.ptr_bits,
                "EBMAX": self.entry_bits}


def pe_memory_shape(mats: list[MatrixPlan], layers: list[LayerPlan],
                    cfg: EngineConfig) -> PeMemoryShape:
    """The PE memories' shape of the design planned as ``mats`` and ``layers`` for ``cfg``."""
    return PeMemoryShape(
        num_pes=cfg.num_pes, macs=cfg.macs_per_pe, csc=cfg.sparse_format == "csc",
        entry_bits=max(m.entry_bits for m in mats),
        ptr_bits=max([1] + [m.ptr_bits for m in mats]), acc_bits=cfg.accumulator_bits,
        wdepth=sum(bank_words(m, cfg) for m in mats) + 1,
        pdepth=sum(m.cols + 1 for m in mats) + 1,
        dep=acc_depth(layers, cfg.num_pes),
        rc=acc_copies(layers, cfg.num_pes, cfg.elementwise_lanes))


# One PE's memories, as declarations and reads (hw.rtl.probe puts PE 0's alone into a module).

def weight_signals(s: PeMemoryShape) -> list[str]:
    """The weight memories' address and data vectors (every PE's, every multiplier's)."""
    return ["  // PE memories (mem/): each a block RAM read on the clock edge at the address this",
            "  // cycle decides; the word is used the next cycle, in the multiply stage",
            f"  localparam integer WAB = {s.wab};",
            "  logic [P*MACS-1:0][WAB-1:0] wa;",
            "  logic [P*MACS-1:0][EBMAX-1:0] wq;"]


def weight_memories(s: PeMemoryShape, p: int) -> tuple[list[str], list[str]]:
    """PE ``p``'s weight memories, one per multiplier: their declarations and their reads
    (statements of one ``always_ff``)."""
    decls, reads = [], []
    for b in range(s.macs):
        i = p * s.macs + b
        decls.append(f'  (* ram_style = "block" *) logic [EBMAX-1:0] wm_{p}_{b} '
                     f'[0:{s.wdepth - 1}];')
        decls.append(f'  initial $readmemh("mem/pe{p}.w{b}.hex", wm_{p}_{b});')
        reads.append(f"    wq[{i}] <= wm_{p}_{b}[wa[{i}]];")
    return decls, reads


def pointer_signals(s: PeMemoryShape) -> list[str]:
    """The pointer memories' address (one for all PEs) and data vectors (csc)."""
    return ["  // pointers: read one cycle ahead, at the column the broadcast counter moves to;",
            "  // the memory's two read ports give a column's first and one-past-last entry in "
            "the",
            "  // same cycle (one true-dual-port block RAM)",
            f"  localparam integer PAB = {s.pab};",
            "  logic [PAB-1:0] pa_n;",
            "  logic [P-1:0][PB-1:0] pq0;",
            "  logic [P-1:0][PB-1:0] pq1;"]


def pointer_memory(s: PeMemoryShape, p: int) -> tuple[list[str], list[str]]:
    """PE ``p``'s pointer memory, read at two addresses: its declaration and its reads."""
    return ([f'  (* ram_style = "block" *) logic [PB-1:0] pm_{p} [0:{s.pdepth - 1}];',
             f'  initial $readmemh("mem/pe{p}.ptr.hex", pm_{p});'],
            [f"    pq0[{p}] <= pm_{p}[pa_n];", f"    pq1[{p}] <= pm_{p}[pa_n + 1'b1];"])


def acc_signals(s: PeMemoryShape) -> list[str]:
    """The accumulator memories' localparams, write and read vectors (every PE's)."""
    return ["  // accumulator memories (gate matrices): written by the multiply-accumulate, read "
            "by",
            "  // the element-wise unit one cycle before it uses them (its cycle pc reads group "
            "pc)",
            f"  localparam integer NSLOT = {NSLOT}, DEP = {s.dep}, RC = {s.rc}, "
            f"AAB = {s.aab};",
            "  logic [NSLOT*P-1:0] awe;",
            "  logic [P-1:0][AAB-1:0] awa;",
            "  logic [P-1:0][A-1:0] awd;",
            "  logic [P*RC-1:0][AAB-1:0] ara;",
            "  logic [NSLOT*P*RC-1:0][A-1:0] aq;"]


def acc_memory(s: PeMemoryShape, p: int, sl: int, c: int) -> list[str]:
    """Copy ``c`` of PE ``p``'s accumulator memory of gate matrix ``sl``: its declaration and
    its ``always_ff`` (written at one address, read at its own, on the clock edge)."""
    P, rc = s.num_pes, s.rc
    name = f"acc_{p}_{sl}_{c}"
    # no_rw_check: a read of the word being written (csc's back-to-back MACs into one row)
    # is forwarded around the memory, so its collision value is unused
    return [f'  (* ram_style = "block", no_rw_check *) logic [A-1:0] {name} [0:DEP-1];',
            f"  always_ff @(posedge clk) begin\n"
            f"    if (awe[{sl * P + p}]) {name}[awa[{p}]] <= awd[{p}];\n"
            f"    aq[{(sl * P + p) * rc + c}] <= {name}[ara[{p * rc + c}]];\n"
            f"  end"]


def _pe_memories(s: PeMemoryShape, mats: list[MatrixPlan],
                 next_phase: str = "start ? 0 : ph + 1") -> str:
    """One block RAM per PE and multiplier (weights) and per PE (pointers, csc), each read
    on the clock edge into a register: the standard inference pattern. ``ram_style`` keeps
    a small engine's memories in block RAM too (Yosys would put a few hundred words in
    LUTs), as the engine's PE memories are. ``next_phase``: the phase a start or a phase's
    end moves to (the pointers are read one cycle ahead)."""
    L = weight_signals(s)
    reads = []
    for p in range(s.num_pes):
        decls, rd = weight_memories(s, p)
        L += decls
        reads += rd
    L += ["  always_ff @(posedge clk) begin", *reads, "  end"]
    if not s.csc:
        return "\n".join(L) + "\n"
    L += pointer_signals(s)
    L += ["  function automatic integer pbase(input integer x);\n    case (x)"]
    L += [f"      {m.index}: pbase = {m.pbase};" for m in mats]
    L += ["      default: pbase = 0;\n    endcase\n  endfunction"]
    reads = []
    for p in range(s.num_pes):
        decls, rd = pointer_memory(s, p)
        L += decls
        reads += rd
    L += ["  always_comb begin : ptr_addr",
          "    integer bn, cn;",
          "    if (start || (run && ph_last)) begin",
          f"      bn = 0; cn = ph_target({next_phase});",
          "    end else begin",
          "      bn = (run && kind == KIND_PRODUCT && push) ? bj + 1 : bj; cn = cm;",
          "    end",
          "    pa_n = PAB'(pbase(cn) + bn);",
          "  end",
          "  always_ff @(posedge clk) begin", *reads, "  end"]
    return "\n".join(L) + "\n"


def acc_depth(layers: list[LayerPlan], num_pes: int) -> int:
    """Words of each accumulator memory: a PE's rows of the widest layer's gate matrix (row
    ``r`` lies in PE ``r mod num_pes``, word ``r div num_pes``)."""
    return max(math.ceil(ly.hidden / num_pes) for ly in layers)


def acc_copies(layers: list[LayerPlan], num_pes: int, lanes: int) -> int:
    """Copies of each accumulator memory: the element-wise unit reads ``lanes`` consecutive
    cells a cycle, and a PE serves one word of them per copy (the copies are written alike
    and read at their own addresses)."""
    return max(((b % num_pes) + min(lanes, ly.hidden - b) - 1) // num_pes + 1
               for ly in layers for b in range(0, ly.hidden, lanes))


def _acc_memories(s: PeMemoryShape, cfg: EngineConfig) -> str:
    """The gate matrices' accumulators: per PE, one block RAM per gate matrix of a layer
    (``NSLOT``, the element-wise unit reads the eight of a cell at once), ``RC`` copies when
    it reads several cells of a PE a cycle; written at one address a cycle, read on the clock
    edge. csc keeps a valid bit per accumulator (cleared as its product starts: a block RAM
    cannot be cleared in a cycle); csb writes every row once, as its last bank is done."""
    P, rc, csc = s.num_pes, s.rc, s.csc
    L = [*acc_signals(s), "  integer eb, eg, ew_q;"]
    for sl in range(NSLOT):
        for p in range(P):
            for c in range(rc):
                L += acc_memory(s, p, sl, c)
    mac_read = "      if (kind == KIND_PRODUCT) ara[p * RC] = AAB'(mac_row[p]);\n" if csc else ""
    eob = max(1, (P - 1).bit_length())
    lanes = cfg.elementwise_lanes
    cases = []
    for o in sorted({(g * lanes) % P for g in range(P)}):
        body = []
        for ln in range(lanes):
            pp, c = (o + ln) % P, (o + ln) // P
            if c >= rc:
                continue
            for sl in range(NSLOT):
                j = (sl * P + pp) * rc + c
                body.append(f"        ev[{sl * lanes + ln}] = aq[{j}];")
        cases.append(f"      {o}: begin\n" + "\n".join(body) + "\n      end")
    cases = "\n".join(cases)
    L.append(f"""  // cell k = eb + lane lies in PE k mod P, word k div P: copy (k div P - eb div P)
  always_comb ew_q = {_div("pc * LANES", P)};
  always_comb begin : acc_raddr
    for (integer p = 0; p < P; p++) begin
      for (integer c = 0; c < RC; c++) ara[p * RC + c] = AAB'(ew_q + c);
{mac_read}    end
  end
  always_ff @(posedge clk) begin eb <= pc * LANES; eg <= pc; end
  // the group's first cell lies in PE eo (a few values: LANES is constant): each lane's
  // accumulators are one of those few words, selected by eo (not an index into all of aq)
  logic [{eob - 1}:0] eo;
  always_ff @(posedge clk) eo <= {eob}'({_mod("pc * LANES", P)});
  logic signed [A-1:0] ev [0:NSLOT*LANES-1];
  always_comb begin : ew_acc
    for (integer i = 0; i < NSLOT * LANES; i++) ev[i] = '0;
    case (eo)
{cases}
      default: ;
    endcase
  end""")
    return "\n".join(L) + "\n"


def _product_comb(csc: bool, mats: list[MatrixPlan], cfg: EngineConfig,
                  layers: list[LayerPlan], reads: dict[str, str] | None = None) -> str:
    """The product's decisions of a cycle; ``reads`` maps a matrix's ``src`` to the
    expression reading its input at the broadcast column (the layers' own are derived)."""
    M = cfg.macs_per_pe
    if csc:
        narrowed = {ly.y: f"narrow_g(yrd_{ly.index}, ysh_{ly.index}[bj])"
                    for ly in layers if ly.proj is not None}
        narrowed.update(reads or {})
        return f"""  always_comb begin : csc_decide
    logic all_ok, found, take, inprod, nw;
    integer fk, slot, base, lim, kb;
    logic signed [AB-1:0] x;
    logic found_q [0:P-1];
    integer fslot [0:P-1];
    logic [D-1:0] ne;
    // every temporary assigned on every path (no latches)
    found = 1'b0; take = 1'b0; nw = 1'b0; fk = 0; slot = 0; base = 0; lim = 0; kb = 0;
    x = '0; ne = '0;
    for (integer p = 0; p < P; p++) begin found_q[p] = 1'b0; fslot[p] = 0; end
    inprod = run && kind == KIND_PRODUCT;
    all_ok = 1'b1;
    bx = '0;
    for (integer p = 0; p < P; p++) begin be0[p] = 0; be1[p] = 0; end
    if (bj < cur_cols) begin
{_indent(_src_read("bx", "bj", mats, cfg.elementwise_lanes, narrowed), 6)}
      for (integer p = 0; p < P; p++) begin be0[p] = pq0[p]; be1[p] = pq1[p]; end
    end
    // a free PE pops the queued columns it has no entries in, up to and including the first
    // one it has entries in (which it starts)
    for (integer p = 0; p < P; p++) begin
      found = 1'b0; fk = 0; fslot[p] = 0;
      // which queued columns hold entries for the PE
      for (integer j = 0; j < D; j++) ne[j] = qne[p * D + j];
      for (integer i = 0; i < D; i++) begin
        slot = qh[p] + i;
        if (slot >= D) slot = slot - D;
        if (!found && i < qn[p] && ne[slot]) begin
          found = 1'b1; fk = i; fslot[p] = slot;
        end
      end
      found_q[p] = found;
      npop[p] = (!inprod || act[p]) ? 0 : (found ? fk + 1 : qn[p]);
      if (qn[p] - npop[p] >= D) all_ok = 1'b0;
    end
    push = inprod && bj < cur_cols && all_ok;
    // done once every column is out and no PE has anything left after this cycle
    idle = inprod && (bj >= cur_cols || (push && bj + 1 == cur_cols));
    for (integer p = 0; p < P; p++) begin
      // the broadcast column reaches the PE's front when it is free and its queue drains
      take = push && inprod && !act[p] && !found_q[p];
      enq[p] = push && !take;
      base = ce[p]; lim = cend[p]; x = cx[p]; nw = 1'b0;
      work[p] = inprod && act[p];
      if (inprod && !act[p] && found_q[p]) begin
        for (integer j = 0; j < D; j++)
          if (fslot[p] == j) begin
            base = qe0[p * D + j]; lim = qe1[p * D + j]; x = qx[p * D + j];
          end
        work[p] = 1'b1; nw = 1'b1;
      end else if (take && be1[p] > be0[p]) begin
        base = be0[p]; lim = be1[p]; x = bx; work[p] = 1'b1; nw = 1'b1;
      end
      // entry base + k is word (base + k) / MACS of memory (base + k) % MACS
      for (integer b = 0; b < MACS; b++) begin
        kb = {_mod("b - " + _mod("base", M) + " + MACS", M)};
        wa[p * MACS + b] = WAB'(cur_wb + {_div("base + kb", M)});
      end
      for (integer k = 0; k < MACS; k++) s1_en[p * MACS + k] = work[p] && base + k < lim;
      s1_new[p] = nw;
      s1_x[p] = x;
      s1_rot[p] = {_mod("base", M)};
      n_e[p] = base + MACS;
      n_end[p] = lim;
      n_x[p] = x;
      if (work[p] || qn[p] - npop[p] + (enq[p] ? 1 : 0) != 0) idle = 1'b0;
    end
  end
"""
    return """  always_comb begin : csb_decide
    integer row;
    logic first, last;
    row = 0;
    idle = rl >= cur_rpe || cur_k == 0;
    first = rnd == 0 && kk == 0;
    last = rnd == cur_rounds - 1 && kk == cur_k - 1;
    s1_act = run && kind == KIND_PRODUCT && !idle;
    s1_first = first;
    s1_last = last;
    s1_rnd = rnd;
    for (integer p = 0; p < P; p++) begin
      row = rl * P + p;
      s1_ok[p] = s1_act && row < cur_rows;
      s1_raddr[p] = row;
      // multiplier mm's memory holds banks mm, mm + MACS, ...: one word per row, round, entry
      for (integer mm = 0; mm < MACS; mm++) begin
        wa[p * MACS + mm] = WAB'(cur_wb + (rl * cur_rounds + rnd) * cur_k + kk);
        s1_en[p * MACS + mm] = s1_ok[p] && rnd * MACS + mm < cur_banks;
      end
    end
  end
"""


def _mac_stage(csc: bool, mats: list[MatrixPlan], M: int, lanes: int) -> str:
    """The multiply stage: the words read on the last clock edge, decoded and multiplied."""
    if csc:
        return f"""  // multiply stage: relative row indices decoded, products into the accumulators
  always_ff @(posedge clk) begin
    for (integer p = 0; p < P; p++) begin
      s2_new[p] <= s1_new[p]; s2_x[p] <= s1_x[p]; s2_rot[p] <= s1_rot[p];
    end
    for (integer i = 0; i < P * MACS; i++) s2_en[i] <= !rst && s1_en[i];
  end
  always_comb begin : csc_mac
    integer r, rel;
    logic [EBMAX-1:0] wd;
    logic signed [63:0] wv, xv;
    r = 0; rel = 0; wd = '0; wv = 64'sd0; xv = 64'sd0;
    for (integer p = 0; p < P; p++) begin
      r = s2_new[p] ? -1 : crow[p];
      xv = s2_x[p];
      for (integer k = 0; k < MACS; k++) begin
        mac_en[p * MACS + k] = 1'b0;
        mac_row[p * MACS + k] = 0;
        mac_prod[p * MACS + k] = 64'sd0;
        if (s2_en[p * MACS + k]) begin
          wd = wq[p * MACS + {_mod("s2_rot[p] + k", M)}];
          case (cm)
{_indent(chr(10).join(f"{m.index}: {_wval_case(m)}" for m in mats), 12)}
            default: wv = 64'sd0;
          endcase
          rel = wd & ((1 << {mats[0].index_bits}) - 1);
          r = r + rel + 1;
          mac_en[p * MACS + k] = 1'b1;
          mac_row[p * MACS + k] = r;
          mac_prod[p * MACS + k] = wv * xv;
        end
      end
      n_row[p] = r;
    end
  end
"""
    return f"""  // multiply stage: each multiplier's word, its input at the bank position, row sums
{CSB_STAGE_REGISTERS}  always_comb begin : csb_mac
    integer bank, pos;
    logic [EBMAX-1:0] wd;
    logic signed [AB-1:0] x;
    logic signed [63:0] wv, xv, sum;
    bank = 0; pos = 0; wd = '0; x = '0; wv = 64'sd0; xv = 64'sd0; sum = 64'sd0;
    for (integer p = 0; p < P; p++) begin
      sum = 64'sd0;
      for (integer mm = 0; mm < MACS; mm++) begin
        if (s2_en[p * MACS + mm]) begin
          bank = s2_rnd * MACS + mm;
          wd = wq[p * MACS + mm];
          case (cm)
{_indent(chr(10).join(f"{m.index}: begin {_wval_case(m)} pos = wd & "
                      f"((1 << {m.index_bits}) - 1); end" for m in mats), 12)}
            default: begin wv = 64'sd0; pos = 0; end
          endcase
{_indent(_src_read("x", "bank * cur_bs + pos", mats, lanes), 10)}
          xv = x;
          sum = sum + wv * xv;
        end
      end
      row_we[p] = s2_ok[p] && s2_last;
      row_addr[p] = s2_raddr[p];
      nacc[p] = A'((s2_first ? 64'sd0 : 64'(pacc[p])) + sum);
      awa[p] = AAB'(s2_rl);
      awd[p] = nacc[p];
      for (integer s = 0; s < NSLOT; s++) awe[s * P + p] = row_we[p] && cur_slot == s;
    end
  end
"""


# csb: the multiply stage's registers of what the decode stage issued
CSB_STAGE_REGISTERS = """  always_ff @(posedge clk) begin
    s2_act <= !rst && s1_act; s2_first <= s1_first; s2_last <= s1_last; s2_rnd <= s1_rnd;
    s2_rl <= rl;
    for (integer p = 0; p < P; p++) begin s2_ok[p] <= s1_ok[p]; s2_raddr[p] <= s1_raddr[p]; end
    for (integer i = 0; i < P * MACS; i++) s2_en[i] <= s1_en[i];
  end
"""


def _wval_case(m: MatrixPlan) -> str:
    top = m.entry_bits - 1
    ib = m.index_bits
    ext = 64 - m.value_bits
    return f"wv = {{{{{ext}{{wd[{top}]}}}}, wd[{top}:{ib}]}};"


def _product_state(csc: bool) -> str:
    if csc:
        return """  // csc product state: broadcast counter, queues, the column each PE works on
  always_ff @(posedge clk) begin
    if (rst || start || (run && ph_last)) begin
      bj <= 0;
      for (integer p = 0; p < P; p++) begin
        qh[p] <= 0; qn[p] <= 0; act[p] <= 1'b0; ce[p] <= 0; cend[p] <= 0; crow[p] <= -1;
        cx[p] <= '0;
      end
    end else if (run && kind == KIND_PRODUCT) begin
      if (push) bj <= bj + 1;
      for (integer p = 0; p < P; p++) begin : pe
        integer tail, head;
        tail = qh[p] + qn[p];
        if (tail >= D) tail = tail - D;
        head = qh[p] + npop[p];
        if (head >= D) head = head - D;
        if (enq[p]) begin
          for (integer j = 0; j < D; j++)
            if (tail == j) begin
              qe0[p * D + j] <= PB'(be0[p]); qe1[p * D + j] <= PB'(be1[p]); qx[p * D + j] <= bx;
              qne[p * D + j] <= be1[p] > be0[p];
            end
        end
        qh[p] <= head;
        qn[p] <= qn[p] - npop[p] + (enq[p] ? 1 : 0);
        crow[p] <= n_row[p];   // the multiply stage's last row
        if (work[p]) begin
          act[p] <= n_e[p] < n_end[p];
          ce[p] <= n_e[p]; cend[p] <= n_end[p]; cx[p] <= n_x[p];
        end
      end
    end
  end
"""
    return """  // csb product state: the row of each PE, the round of banks, the entry in the bank
  always_ff @(posedge clk) begin
    if (rst || start || (run && ph_last)) begin
      rl <= 0; rnd <= 0; kk <= 0;
      for (integer p = 0; p < P; p++) pacc[p] <= '0;
    end else if (run && kind == KIND_PRODUCT) begin
      if (!idle) begin
        if (kk == cur_k - 1) begin
          kk <= 0;
          if (rnd == cur_rounds - 1) begin rnd <= 0; rl <= rl + 1; end
          else rnd <= rnd + 1;
        end else kk <= kk + 1;
      end
      if (s2_act) for (integer p = 0; p < P; p++) pacc[p] <= nacc[p];
    end
  end
"""

def _res_block(csc: bool, mats: list[MatrixPlan], cfg: EngineConfig,
               rmems: dict[int, RowMemory]) -> str:
    if not csc:
        return """  // a row's sum lands as its last entry is done: in the gate matrix's accumulator
  // memory (above) or the register file
  always_ff @(posedge clk) begin
    for (integer p = 0; p < P; p++)
      if (row_we[p] && cur_slot < 0) pres[row_addr[p]] <= nacc[p];
  end
"""
    P = cfg.num_pes
    pv = " ".join(f"pv_{p}," for p in range(P))[:-1]

    def clear(m: MatrixPlan) -> str:
        if m.slot >= 0:
            return " ".join(f"pv_{p} <= '0;" for p in range(P))
        return " ".join(f"{rmems[m.index].valid}_{p} <= '0;" for p in range(P))

    clears = "\n".join(f"          {m.index}: begin {clear(m)} end" for m in mats)
    pv_writes = "\n".join(f"    if (a3_en[{p}] && cur_slot >= 0) pv_{p}[AAB'(a3_row[{p}])] <= 1'b1;"
                          for p in range(P))
    pv_reads = "\n".join(f"      a3_v[{p}] <= pv_{p}[AAB'(mac_row[{p}])];" for p in range(P))
    # a projection's or the output layer's accumulator at a3_row: the PE's own memory
    res_reads = []
    for p in range(P):
        res_reads.append("    case (cm)")
        for j, rm in rmems.items():
            res_reads.append(f"      {j}: rb[{p}] = {rm.read(p, f'a3_row[{p}]')};")
        res_reads.append(f"      default: rb[{p}] = '0;\n    endcase")
    res_reads = "\n".join(res_reads)
    row_writes = "\n".join(
        f"  always_ff @(posedge clk)\n    if (a3_en[{p}] && cm == {j}) "
        f"{rm.mem}_{p}[{rm.ab}'(a3_row[{p}])] <= a3_sum[{p}];"
        for j, rm in rmems.items() for p in range(P))
    valid_resets = " ".join(f"{rm.valid}_{p} <= '0;" for rm in rmems.values()
                            for p in range(P))
    row_valid = "\n".join(
        f"    if (a3_en[{p}] && cm == {j}) {rm.valid}_{p}[{rm.ab}'(a3_row[{p}])] <= 1'b1;"
        for j, rm in rmems.items() for p in range(P))
    return f"""  // the accumulators: one MAC per stored entry, read, added and written back in
  // s3; a row reads zero until the product writes it: a valid bit per row of the gate
  // product running (pv_<pe>: one product at a time) or of a projection's or the output
  // layer's memory, cleared as the product starts
  logic [DEP-1:0] {pv};
  logic signed [A-1:0] rb [0:P-1];
  always_comb begin : res_read
{res_reads}
  end
  always_comb begin : acc_rmw
    logic signed [A-1:0] base;
    base = '0;
    for (integer p = 0; p < P; p++) begin
      if (cur_slot < 0) base = rb[p];
      else if (a3_fwd[p]) base = a3_fv[p];
      else if (a3_v[p]) begin
        base = '0;
        for (integer s = 0; s < NSLOT; s++) if (cur_slot == s) base = aq[(s * P + p) * RC];
      end else base = '0;
      a3_sum[p] = A'(base + A'(a3_prod[p]));
      awa[p] = AAB'(a3_row[p]);
      awd[p] = a3_sum[p];
      for (integer s = 0; s < NSLOT; s++) awe[s * P + p] = a3_en[p] && cur_slot == s;
    end
  end
  always_ff @(posedge clk) begin
    for (integer p = 0; p < P; p++) begin
      a3_en[p] <= !rst && mac_en[p];
      a3_row[p] <= mac_row[p];
      a3_prod[p] <= mac_prod[p];
      a3_fwd[p] <= a3_en[p] && a3_row[p] == mac_row[p];
      a3_fv[p] <= a3_sum[p];
    end
{pv_reads}
  end
  integer nxt;
  always_comb nxt = start ? 0 : ph + 1;
  always_ff @(posedge clk) begin
    if ((start || (run && ph_last && ph != NPH - 1)) && ph_kind(nxt) == KIND_PRODUCT) begin
      case (ph_target(nxt))
{clears}
        default: ;
      endcase
    end
{pv_writes}
{row_valid}
    if (rst) begin {valid_resets} end
  end
{row_writes}
"""


def _phase_of(phases: list[Phase], kind: str, target: int) -> int:
    return next(i for i, p in enumerate(phases) if p.kind == kind and p.target == target)


def _layer_block(ly: LayerPlan, phases: list[Phase], lanes: int, csc: bool) -> str:
    """A layer's own state beside the shared element-wise unit: its cell state ``c`` and
    output ``m`` (distributed RAM, a word of ``lanes`` cells per group, written by the unit
    while it runs the layer), the flag that makes them read as zero until its first
    element-wise stage, and on csb its projection's output."""
    i, H = ly.index, ly.hidden
    ew = _phase_of(phases, "elementwise", i)
    groups = math.ceil(H / lanes)
    proj = ""
    if ly.proj is not None and not csc:
        # csb: the projection narrows its accumulators as its product ends (csc's accumulate
        # in its output's memories: proj_memories)
        pp = _phase_of(phases, "product", ly.proj)
        proj = f"""      // the projection narrows its accumulators as its product ends
      if (run && ph_last && ph == {pp})
        for (integer k = 0; k < {ly.out_dim}; k++)
          y_{i}[k] <= narrow_g(pres[k], ysh_{i}[k]);
"""
    reset_y = (f"\n      for (integer k = 0; k < {ly.out_dim}; k++) y_{i}[k] <= '0;"
               if ly.proj is not None and not csc else "")
    read = vector_read(f"m_{i}", "k", lanes, {})
    view = ("" if ly.proj is not None else f"""`ifndef SYNTHESIS
  // simulation only: the layer's output
  logic signed [AB-1:0] mv_{i} [0:{H - 1}];
  always_comb for (integer k = 0; k < {H}; k++) mv_{i}[k] = {read};
`endif
""")
    return f"""  // {ly.name}: the cell state and m, a word of LANES cells per group in distributed
  // RAM (one write port, read without a clock), written by the element-wise unit while it
  // runs this layer; st: they hold a frame's values (after reset they read as zero)
  (* ram_style = "distributed" *) logic [LANES*AB-1:0] c_{i} [0:{groups - 1}];
  (* ram_style = "distributed" *) logic [LANES*AB-1:0] m_{i} [0:{groups - 1}];
  logic st_{i};
  always_ff @(posedge clk) begin
    if (e2_v && e2_l == {i}) c_{i}[e2_w] <= cw;
    if (e3_v && e3_l == {i}) m_{i}[e3_w] <= mw;
  end
{view}  always_ff @(posedge clk) begin
    if (rst) begin
      st_{i} <= 1'b0;{reset_y}
    end else begin
      if (run && ph_last && ph == {ew}) st_{i} <= 1'b1;
{proj}    end
  end
"""


def _elementwise_block(layers: list[LayerPlan], phases: list[Phase], kind: str, lanes: int,
                       csc: bool) -> str:
    """The element-wise unit, one for all layers (they run one after the other), four stages
    after the accumulators' read (its cycle ``pc`` reads group ``pc``): e1 aligns and narrows
    the gates, e2 looks up their activations, e3 updates the cell state and narrows it for
    tanh, e4 computes ``m``. Between the stages, ``activation_bits`` registers and the layer
    they hold; the last group's ``m`` lands in cycle ``groups + 3``, inside the
    ``elementwise_depth`` wait (>= 4). Each layer's per-row constants are its own ROMs, read
    and selected by the layer running; its cell-update shifts are constants, so each layer
    has its own shift and narrowing after the shared multipliers."""
    lw = max(1, (len(layers) - 1).bit_length())

    def act(fn: str, q: str) -> str:
        return act_lookup(fn, q, kind)

    ew_layer = "\n".join(f"      {_phase_of(phases, 'elementwise', ly.index)}: begin "
                         f"ewl = {ly.index}; ewn = {ly.hidden}; "
                         f"ewg = {math.ceil(ly.hidden / lanes)}; end" for ly in layers)
    # the gate's constants of the running layer at cell k (csc: a gate matrix with no entry
    # in the cell's row left its accumulator as an earlier product did: it reads as zero)
    rom_cases = []
    for ly in layers:
        i, H = ly.index, ly.hidden
        sel = [f"sx_{i}[g * {H} + k]", f"sr_{i}[g * {H} + k]", f"sn_{i}[g * {H} + k]",
               f"ba_{i}[g * {H} + k]"]
        nz = (f" zx = nz_{i}[k][g]; zr = nz_{i}[k][4 + g];" if csc else "")
        rom_cases.append(f"            {i}: begin xs = {sel[0]}; rs = {sel[1]}; ns = {sel[2]}; "
                         f"bs = {sel[3]};{nz} end")
    rom_cases = "\n".join(rom_cases)
    cell3 = "\n".join(
        f"        {ly.index}: cn[ln] = narrow(wrap_acc(sr64(p1, {ly.cell['cs1']}) + "
        f"sr64(p2, {ly.cell['cs2']})), {ly.cell['cn']});" for ly in layers)
    cell4 = "\n".join(f"        {ly.index}: mw[ln * AB +: AB] = narrow(p3, {ly.cell['cm']});"
                      for ly in layers)
    celltanh = "\n".join(f"            {ly.index}: e3_h[ln] <= narrow(64'(cn[ln]), "
                         f"{ly.cell['ct']});" for ly in layers)
    state = "\n".join(f"      {ly.index}: begin cr = c_{ly.index}[e2_w]; st2 = st_{ly.index}; end"
                      for ly in layers)
    acts = "\n".join(
        f"        e2_a[{g} * LANES + ln] <= "
        f"{act('tanh' if g == 2 else 'sigmoid', f'e1_g[{g} * LANES + ln]')};"
        for g in range(4))
    return f"""  // the element-wise unit, shared by the layers: LANES cells a cycle in four stages,
  // group pc - 1 in e1 in cycle pc, as its accumulators were read on the last edge
  logic signed [AB-1:0] e1_g [0:4*LANES-1];
  logic signed [AB-1:0] e2_a [0:4*LANES-1];
  logic signed [AB-1:0] e3_h [0:LANES-1];
  logic signed [AB-1:0] e3_o [0:LANES-1];
  logic e1_v, e2_v, e3_v, st2;
  integer e1_w, e2_w, e3_w, ewn, ewg;
  logic [{lw - 1}:0] ewl, e1_l, e2_l, e3_l;   // the layer each stage holds
  logic [LANES*AB-1:0] cr, cw, mw;
  logic signed [AB-1:0] cn [0:LANES-1];
  always_comb begin   // the layer whose element-wise phase runs: its cells and groups
    ewl = '0; ewn = 0; ewg = 0;
    case (ph)
{ew_layer}
      default: ;
    endcase
  end
  always_comb begin   // e2's layer: its previous cell state and whether it holds one
    cr = '0; st2 = 1'b0;
    case (e2_l)
{state}
      default: ;
    endcase
  end
  always_comb begin : e34
    logic signed [63:0] ta, tb, tc, td, p1, p2, p3;
    logic signed [AB-1:0] hh;
    hh = '0; ta = 64'sd0; tb = 64'sd0; tc = 64'sd0; td = 64'sd0;
    p1 = 64'sd0; p2 = 64'sd0; p3 = 64'sd0; cw = '0; mw = '0;
    for (integer ln = 0; ln < LANES; ln++) begin
      // e3: the cell state from the activations and the previous frame's c
      ta = e2_a[LANES + ln];
      // (selected at AB bits, then sign-extended: the multiplier stays AB bits wide)
      tb = 64'($signed(st2 ? cr[ln * AB +: AB] : AB'(0)));
      tc = e2_a[ln]; td = e2_a[2 * LANES + ln];
      p1 = ta * tb; p2 = tc * td;
      cn[ln] = '0;
      case (e2_l)
{cell3}
        default: ;
      endcase
      cw[ln * AB +: AB] = cn[ln];
      // e4: m = o * tanh(c)
      hh = {act("tanh", "e3_h[ln]")};
      ta = e3_o[ln]; tb = hh;
      p3 = ta * tb;
      case (e3_l)
{cell4}
        default: ;
      endcase
    end
  end
  always_ff @(posedge clk) begin : ew
    integer k;
    logic signed [{SHIFT_BITS - 1}:0] xs, rs, ns;
    logic signed [A-1:0] bs;
    logic zx, zr;
    xs = '0; rs = '0; ns = '0; bs = '0; zx = 1'b1; zr = 1'b1;
    e1_v <= !rst && run && kind == KIND_ELEMENTWISE && pc >= 1 && pc <= ewg;
    e2_v <= !rst && e1_v;
    e3_v <= !rst && e2_v;
    e1_l <= ewl; e2_l <= e1_l; e3_l <= e2_l;
    e1_w <= eg; e2_w <= e1_w; e3_w <= e2_w;
    for (integer ln = 0; ln < LANES; ln++) begin
      k = eb + ln;
      if (k < ewn) begin
        for (integer g = 0; g < 4; g++) begin
          case (ewl)
{rom_cases}
            default: ;
          endcase
          // ($signed: the conditional with an unsized zero is unsigned, and would be
          // zero-extended into the alignment's width)
          e1_g[g * LANES + ln] <= narrow_g(wrap_al(
              sr_al(GW1'($signed(zx ? ev[g * LANES + ln] : '0)), xs) + GW1'(bs)
              + sr_al(GW1'($signed(zr ? ev[(4 + g) * LANES + ln] : '0)), rs)), ns);
        end
      end
{acts}
    end
    for (integer ln = 0; ln < LANES; ln++)
      if (e2_v) begin
        case (e2_l)
{celltanh}
          default: ;
        endcase
        e3_o[ln] <= e2_a[3 * LANES + ln];
      end
  end
"""


def _output_block(output: dict, rm: RowMemory | None) -> str:
    """The output layer's bias and narrowing, of the row being streamed out: its
    accumulators are ``rm``'s (csc) or the register file's (csb)."""
    relu = "\n    if (t < 0) t = '0;" if output["relu"] else ""
    name = output["name"]
    view = (_row_view(rm, "logits", "logit(ACC, K)") if rm is not None else
            "  always_comb for (integer k = 0; k < V; k++) logits[k] = logit(pres[k], k);")
    acc = "ord" if rm is not None else "pres[ocnt]"
    return f"""  // {name}: bias and narrowing of row ocnt as the logits stream out (one unit, not
  // one per row: a frame starts only once the last logit is out, so the accumulators hold)
  always_comb begin : out_layer
    logic signed [A-1:0] t;
    t = wrap_al(sr_al(GW1'({acc}), osm[ocnt]) + GW1'(oba[ocnt]));{relu}
    out_data = narrow_g(t, osn[ocnt]);
  end
`ifndef SYNTHESIS
  // simulation only: every logit of the frame, as out_data gives them
  function automatic logic signed [AB-1:0] logit(input logic signed [A-1:0] acc,
                                                 input integer k);
    logic signed [A-1:0] t;
    t = wrap_al(sr_al(GW1'(acc), osm[k]) + GW1'(oba[k]));{relu}
    logit = narrow_g(t, osn[k]);
  endfunction
  logic signed [AB-1:0] logits [0:V-1];
{view}
`endif
"""


def dump_layer(li: int, arr: str, n: int, frame: str) -> str:
    """The testbench's line ``L <li> <frame> <n words of dut.arr>`` (statements)."""
    return (f'        $fwrite(fo, "L {li} %0d", {frame});\n'
            f'        for (integer k = 0; k < {n}; k++) $fwrite(fo, " %h", dut.{arr}[k]);\n'
            '        $fwrite(fo, "\\n");')


def render_testbench(dumps: list[tuple[str, str, int]], cfg: EngineConfig) -> str:
    dumps_text = "\n".join(dump_layer(li, arr, n, "frames_done")
                           for li, (_, arr, n) in enumerate(dumps))
    return testbench(
        "// Generated by asr-hw rtl: streams +in= (hex codes, a frame per line) through\n"
        "// asr_engine and writes +out= (layer outputs, logits, cycles per phase); do not edit.",
        cfg.activation_bits, dumps[0][2], False, "frames_done",
        f"""    if (frame_done) begin
{dumps_text}
      frames_done = frames_done + 1;
    end""")


def testbench(comment: str, activation_bits: int, input_dim: int, utterance: bool, step: str,
              dump_block: str) -> str:
    """The co-simulation testbench: streams the ``+in=`` codes into ``asr_engine`` (with
    ``in_last`` on the last where ``utterance``: the engine's ``in_last``/``utt_done``
    ports), writes each phase's cycles (``P <step> <phase> <cycles>``, ``step`` the expression
    of the frame or step), what ``dump_block`` writes (the layers' outputs), the streamed
    logits and the total cycles, and finishes after the last frame's logits."""
    last = ", in_last = 1'b0" if utterance else ""
    ports = ("  logic in_ready, out_valid, out_last, frame_done, utt_done;" if utterance else
             "  logic in_ready, out_valid, out_last, frame_done;")
    inst = (".in_last, .out_valid,\n                  .out_ready, .out_data, .out_last, "
            ".frame_done, .utt_done);" if utterance else
            ".out_valid, .out_ready,\n                  .out_data, .out_last, .frame_done);")
    counters = "fed, outs_done" if utterance else "fed, frames_done, outs_done"
    zero = "fed = 0; outs_done = 0;" if utterance else "fed = 0; frames_done = 0; outs_done = 0;"
    feed = ("in_data <= v; in_valid <= 1'b1; in_last <= fed == nframes * IN - 1; "
            "fed = fed + 1;\n      end else begin in_valid <= 1'b0; in_last <= 1'b0; end"
            if utterance else
            "in_data <= v; in_valid <= 1'b1; fed = fed + 1;\n      end else in_valid <= 1'b0;")
    return f"""{comment}
module asr_tb;
  localparam integer AB = {activation_bits};
  localparam integer IN = {input_dim};
  logic clk = 1'b0;
  logic rst = 1'b1;
  always #1 clk = ~clk;
  logic in_valid = 1'b0, out_ready = 1'b1{last};
{ports}
  logic [AB-1:0] in_data = '0, out_data;
  asr_engine dut (.clk, .rst, .in_valid, .in_ready, .in_data, {inst}
  integer fi, fo, nframes, {counters}, pcnt, r;
  longint cyc, limit;
  logic [AB-1:0] v;
  string inpath, outpath;
  initial begin
    if (!$value$plusargs("in=%s", inpath)) $fatal(1, "asr_tb: +in=FILE missing");
    if (!$value$plusargs("out=%s", outpath)) $fatal(1, "asr_tb: +out=FILE missing");
    if (!$value$plusargs("frames=%d", nframes)) $fatal(1, "asr_tb: +frames=N missing");
    if (!$value$plusargs("limit=%d", limit)) limit = 64'd1000000000;
    fi = $fopen(inpath, "r");
    fo = $fopen(outpath, "w");
    if (fi == 0) $fatal(1, "asr_tb: cannot read %s", inpath);
    {zero} pcnt = 0; cyc = 0;
    repeat (3) @(posedge clk);
    rst = 1'b0;
  end
  always @(posedge clk) if (!rst) begin
    cyc = cyc + 1;
    if (cyc > limit) $fatal(1, "asr_tb: no progress after %0d cycles", cyc);
    if (!in_valid || in_ready) begin
      if (fed < nframes * IN) begin
        r = $fscanf(fi, "%h", v);
        {feed}
    end
    if (dut.run) begin
      pcnt = pcnt + 1;
      if (dut.ph_last) begin
        $fwrite(fo, "P %0d %0d %0d\\n", {step}, dut.ph, pcnt);
        pcnt = 0;
      end
    end
{dump_block}
    if (out_valid && out_ready) begin
      if (dut.ocnt == 0) $fwrite(fo, "O %0d", outs_done);
      $fwrite(fo, " %h", out_data);
      if (out_last) begin
        $fwrite(fo, "\\n");
        outs_done = outs_done + 1;
        if (outs_done == nframes) begin
          $fwrite(fo, "C %0d\\n", cyc);
          $fclose(fo);
          $finish;
        end
      end
    end
  end
endmodule
"""


def generate_rtl(model: EngineModel, out_dir: Path, final_dir: Path | None = None
                 ) -> RtlDesign:
    """Write the design of ``model`` (compiled for its engine) to ``out_dir``, as plain files:
    its callers write into a folder of their own (:func:`write_rtl` into one that replaces
    its output whole). The design records ``final_dir`` (default ``out_dir``) as its folder."""
    check_supported(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if model.model_type == "wavenet":
        from hw.rtl.wavenet import generate_wavenet
        return generate_wavenet(model, out_dir, final_dir)
    mats, layers, output, phases, mem_files = plan_design(model, out_dir)
    input_dim = mats[layers[0].gates[0]].cols
    engine = render_engine(model, mats, layers, output, phases, input_dim)
    dumps = [("input", "feat", input_dim)]
    csc = model.cfg.sparse_format == "csc"
    dumps += [(ly.name, f"yv_{ly.index}" if csc and ly.proj is not None else
               ly.y if ly.proj is not None else f"mv_{ly.index}", ly.out_dim) for ly in layers]
    dumps.append((output["name"], "logits", output["rows"]))
    tb = render_testbench(dumps, model.cfg)
    (out_dir / "engine.sv").write_text(engine)
    (out_dir / "tb.sv").write_text(tb)
    digest = hashlib.sha256((engine + tb).encode()).hexdigest()[:16]
    design = RtlDesign(str(final_dir or out_dir), model.cfg.name, model.cfg.sparse_format,
                       model.cfg.activation_bits, input_dim, output["rows"], phases, dumps,
                       mats, digest, mem_files)
    design.save(out_dir)
    return design


def write_rtl(artifact: Artifact, cfg: EngineConfig, out_dir: Path) -> RtlDesign:
    """``asr-hw rtl``: compile ``artifact`` for ``cfg`` and write its design into a temporary
    folder that then replaces ``out_dir`` whole (the SystemVerilog reads its images by
    relative paths), so a killed run leaves the previous design as it was."""
    model = compile_model(artifact, cfg)
    out_dir = Path(out_dir)
    with atomic.replacing_dir(out_dir, "rtl.json") as tmp:
        return generate_rtl(model, tmp, out_dir)
