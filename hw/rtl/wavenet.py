"""WaveNet engines as RTL: the dilated convolutions as im2col products on the ``csc`` and
``csb`` PE arrays of :mod:`hw.rtl.generate`, streaming frame by frame with a look-ahead.

The model's convolutions are "same" convolutions: output frame ``t`` of a block with kernel
``k`` and dilation ``d`` reads its input at ``t - (k-1)/2 d ... t + (k-1)/2 d``. The engine
runs *steps*: step ``s`` computes frame ``s`` of the input convolution, frame ``s - lag_b`` of
residual block ``b`` (``lag_b`` the sum of the look-aheads ``(k-1)/2 d`` of blocks ``0..b``)
and frame ``s - lag`` of the head, each only where that frame lies in the utterance. The
utterance's end (``in_last`` on its last code) starts ``lag`` steps that read no input and
flush the blocks; taps outside the utterance read zero, as :func:`hw.functional.im2col`
pads. So every frame of every layer is computed once, and the utterance costs its frames
times the timing model's per-frame cycles.

- the products are :mod:`hw.rtl.generate`'s (csc: column broadcast, activation queues, one
  MAC per stored entry; csb: a row per PE, a multiplier per bank); a dilated conv's column
  (csc: the broadcast's, channel ``bch``, tap ``btp``; csb: each multiplier's) is read from
  the block input's history at its frame;
- histories: block ``b``'s input ``x_b`` is kept for ``(k-1) d + 1`` frames (per PE a
  distributed RAM, row ``r`` of frame slot ``f`` in PE ``r mod P``, word ``f W + r div P``);
  the input convolution's MACs accumulate into ``x_0``'s history, which is read through its
  bias, narrowing and activation (the activation unit on the read path, as a csc projection
  is narrowed where the broadcast reads it); the skip sum is kept for the frames between the
  first block's and the head's;
- csc: a conv's accumulators (filter, gate, out, head) are per-PE distributed RAM with a
  valid bit a row, read through the conv's bias, narrowing and activation: the out product
  reads ``z = tanh(f) sigmoid(g)`` on the fly, the head's second conv its first's output;
  csb: a row's sum is final as its last bank is done and is written then through them
  (``x_0``, ``f``, ``z``, ``o`` and the head's outputs are values);
- the gated residual's element-wise stage (``elementwise_lanes`` channels a cycle, then
  ``elementwise_depth``): ``o = tanh(out)``, ``x_{b+1} = x_b + o`` into the next block's
  history, the skip sum ``+ o``;
- the last conv's logits stream out as :mod:`hw.rtl.generate`'s output layer does.

Supported: the input conv of kernel 1, gated residual blocks (filter and gate of one odd
kernel and dilation, out of kernel 1; the blocks' activations alike), the skip sum, a head of
kernel-1 convs ending in an identity or relu output; with ``elementwise_lanes <= num_pes``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from asr.config_errors import ConfigError
from asr.models.graph import Conv1dOp, GatedResidualOp, SkipSumOp
from hw.integer_model import EngineModel
from hw.rtl.generate import (
    CSB_STAGE_REGISTERS,
    OUTPUT_STREAM,
    PHASE_TICK,
    SHIFT_BITS,
    MatrixPlan,
    PeMemoryShape,
    Phase,
    Products,
    Readout,
    RowMemory,
    RtlDesign,
    RtlError,
    _ints,
    _mac_stage,
    _output_block,
    _pe_memories,
    _product_comb,
    _product_state,
    _render_csb,
    _render_csc,
    _Writer,
    _wval_case,
    act_lookup,
    bank_words,
    dense_readout,
    dump_layer,
    gate_widths,
    matrix_constants,
    module_header,
    phase_functions,
    preamble,
    row_memory_decls,
    testbench,
    write_pe_memories,
)

ACTIVATIONS = ("tanh", "sigmoid", "identity", "relu")   # the readouts' functions


def check_wavenet(model: EngineModel) -> None:
    """Refuse, naming the key or op and what is allowed, a WaveNet the generator cannot build
    (the engine-wide checks of :func:`hw.rtl.generate.check_supported` come first)."""
    cfg = model.cfg
    if cfg.elementwise_lanes > cfg.num_pes:
        raise ConfigError(f"hw.elementwise_lanes: the WaveNet RTL builds at most num_pes "
                          f"({cfg.num_pes}) lanes (each lane's channel in its own PE's "
                          f"memories), got {cfg.elementwise_lanes}")
    ops = model.graph.ops
    kinds = [type(op).__name__ for op in ops]
    nblocks = sum(isinstance(op, GatedResidualOp) for op in ops)
    ok = (len(ops) >= 4 and isinstance(ops[0], Conv1dOp) and nblocks >= 1
          and all(isinstance(op, GatedResidualOp) for op in ops[1:1 + nblocks])
          and isinstance(ops[1 + nblocks], SkipSumOp)
          and len(ops) > 2 + nblocks
          and all(isinstance(op, Conv1dOp) for op in ops[2 + nblocks:]))
    if not ok:
        raise RtlError(f"WaveNet ops {kinds}: the RTL generator builds an input conv, gated "
                       "residual blocks, the skip sum and a head of convs")

    def kernel_one(op: Conv1dOp, where: str) -> None:
        if op.weight.shape[-1] != 1:
            raise RtlError(f"{op.name}: kernel {op.weight.shape[-1]}; the RTL builds kernel 1 "
                           f"for the {where}")

    def activation(op: Conv1dOp, allowed: tuple[str, ...]) -> None:
        if op.activation not in allowed:
            raise RtlError(f"{op.name}: activation {op.activation!r}; the RTL builds one of "
                           f"{allowed} there")

    kernel_one(ops[0], "input conv")
    activation(ops[0], ACTIVATIONS)
    for op in ops[1:1 + nblocks]:
        f, g = op.filter, op.gate
        if (f.weight.shape[-1], f.dilation) != (g.weight.shape[-1], g.dilation):
            raise RtlError(f"{op.name}: filter and gate differ in kernel or dilation; the RTL "
                           "reads one history for both")
        if f.weight.shape[0] != g.weight.shape[0]:
            raise RtlError(f"{op.name}: filter and gate differ in channels")
        kernel_one(op.out, "residual block's out conv")
        activation(f, ACTIVATIONS)
        activation(g, ACTIVATIONS)
        activation(op.out, ACTIVATIONS)
    for part in ("filter", "gate", "out"):
        acts = sorted({getattr(op, part).activation for op in ops[1:1 + nblocks]})
        if len(acts) > 1:
            raise RtlError(f"the blocks' {part} convs have activations {acts}; the RTL's "
                           f"blocks share one {part} activation unit")
    for op in ops[2 + nblocks:]:
        kernel_one(op, "head")
        activation(op, ACTIVATIONS)
    activation(ops[-1], ("identity", "relu"))


def readout_stmts(r: Readout, acc: str, k: str, out: str, kind: str) -> str:
    """Statements setting ``out`` to ``r``'s output of accumulator ``acc`` at row ``k``
    (temporaries ``rt`` (A bits) and ``rq`` (AB bits) declared by the caller)."""
    return readout_core(r.function, acc, *(f"{n}[{k}]" for n in r.roms()), out, kind)


def readout_core(function: str, acc: str, sm: str, ba: str, sn: str, out: str,
                 kind: str) -> str:
    """``out`` = ``function`` of accumulator ``acc`` aligned by ``sm``, plus the aligned bias
    ``ba``, narrowed by ``sn`` (one unit: the blocks select their ROMs' words into it)."""
    lines = [f"rt = wrap_al(sr_al(GW1'({acc}), {sm}) + GW1'({ba}));"]
    if function == "relu":
        lines.append("if (rt < 0) rt = '0;")
    lines.append(f"rq = narrow_g(rt, {sn});")
    val = act_lookup(function, "rq", kind) if function in ("sigmoid", "tanh") else "rq"
    lines.append(f"{out} = {val};")
    return " ".join(lines)


@dataclass
class Block:
    index: int
    name: str
    kernel: int
    dilation: int
    filter: int           # matrix indices
    gate: int
    out: int
    rf: Readout
    rg: Readout
    ro: Readout
    fx: int               # the fraction of its input x_b
    fout: int             # of its output x_{b+1}
    fz: int               # of z = f g

    @property
    def reach(self) -> int:
        """Frames it looks ahead (and back): ``(k - 1) / 2 d``."""
        return (self.kernel - 1) // 2 * self.dilation

    @property
    def depth(self) -> int:
        """Frames of its input's history: ``(k - 1) d + 1``."""
        return (self.kernel - 1) * self.dilation + 1


@dataclass
class WaveNetPlan:
    mats: list[MatrixPlan]
    phases: list[Phase]
    groups: list[int]     # per phase: 0 the input conv, b + 1 block b, B + 1 the head
    lags: list[int]       # per group
    conv_in: Readout
    blocks: list[Block]
    head: list[Readout]   # the head's convs but the last (read by the next)
    head_mats: list[int]
    output: dict
    channels: int         # C: residual channels
    zrows: int            # rows of the filter and gate
    fs: int               # the skip sum's fraction
    files: list[str]

    @property
    def lag(self) -> int:
        return self.lags[-1]

    @property
    def skip_depth(self) -> int:
        """Frames of the skip sum kept: from the head's frame to the first block's."""
        return self.lag - self.lags[1] + 1


def plan_wavenet(model: EngineModel, out_dir: Path | None) -> WaveNetPlan:
    cfg = model.cfg
    w = _Writer(out_dir)
    products = Products(model, w)
    mats, phases = products.mats, products.phases
    groups: list[int] = []    # per phase

    def add_matrix(name: str, src: str, group: int) -> int:
        groups.append(group)
        return products.add(name, src)

    ops = model.graph.ops
    nb = sum(isinstance(op, GatedResidualOp) for op in ops)
    fx = model.signal("input")
    first = ops[0]
    add_matrix(first.name, "feat", 0)
    conv_in = dense_readout(model, first.name, fx, first.activation, "ci", w)
    fx = conv_in.frac
    blocks: list[Block] = []
    lags = [0]
    for b, op in enumerate(ops[1:1 + nb]):
        fi = add_matrix(op.filter.name, "wn", b + 1)
        gi = add_matrix(op.gate.name, "wn", b + 1)
        rf = dense_readout(model, op.filter.name, fx, op.filter.activation, f"f{b}", w)
        rg = dense_readout(model, op.gate.name, fx, op.gate.activation, f"g{b}", w)
        fz = max(rf.frac, rg.frac)
        oi = add_matrix(op.out.name, "wn", b + 1)
        ro = dense_readout(model, op.out.name, fz, op.out.activation, f"o{b}", w)
        phases.append(Phase("elementwise", f"{op.name}.elementwise", b))
        groups.append(b + 1)
        blk = Block(b, op.name, op.filter.weight.shape[-1], op.filter.dilation, fi, gi, oi,
                    rf, rg, ro, fx, model.signal(op.name), fz)
        blocks.append(blk)
        lags.append(lags[-1] + blk.reach)
        fx = blk.fout
    fs = model.signal("skip_sum")
    fx = fs
    head: list[Readout] = []
    head_mats: list[int] = []
    convs = ops[2 + nb:]
    for i, op in enumerate(convs):
        head_mats.append(add_matrix(op.name, "wn", nb + 1))
        if i < len(convs) - 1:
            r = dense_readout(model, op.name, fx, op.activation, f"h{i}", w)
            head.append(r)
            fx = r.frac
    lags.append(lags[-1])
    out = convs[-1]
    ro = dense_readout(model, out.name, fx, out.activation, "out", w)
    for fn, unit in model.units.items():
        w.hexfile(f"tables/{fn}.hex", _ints(unit.table), unit.bits)
    # csc: the rows the input conv's entries reach (csb writes every row)
    reached = products.touched.get(0, set(range(conv_in.rows)))
    w.hexfile(f"const/{first.name}.nz.hex",
              [int(k in reached) for k in range(conv_in.rows)], 1)
    output = {"name": out.name, "matrix": head_mats[-1], "rows": ro.rows,
              "relu": out.activation == "relu", "shifts": ro.shifts, "readout": ro}
    files = write_pe_memories(mats, products.images, cfg, w)
    return WaveNetPlan(mats, phases, groups, lags, conv_in, blocks, head, head_mats, output,
                       conv_in.rows, blocks[0].rf.rows, fs, files)


def _per_pe_memory(name: str, bits: str, words: int, P: int) -> str:
    return "\n".join(f'  (* ram_style = "distributed" *) logic [{bits}-1:0] {name}_{p} '
                     f'[0:{words - 1}];' for p in range(P))


def _read_case(target: str, name: str, row: str, word: str | None, P: int,
               pad: int = 4) -> str:
    """``target = <name>_<row mod P>[word]`` (a multiplexer over the PEs' memories; ``word``
    None: over the PEs' registers ``<name>_<p>``, a memory's word read on the last edge)."""
    sp = " " * pad
    at = "" if word is None else f"[{word}]"
    cases = "\n".join(f"{sp}  {p}: {target} = {name}_{p}{at};" for p in range(P))
    return f"{sp}case ({row} % {P})\n{cases}\n{sp}  default: {target} = '0;\n{sp}endcase"


def _slot(counter: str, back: int, depth: int) -> str:
    """``(counter - back) mod depth`` for a counter in ``[0, depth)``."""
    back %= depth
    if back == 0:
        return counter
    return f"({counter} >= {back} ? {counter} - {back} : {counter} + {depth - back})"


def render_wavenet(model: EngineModel, plan: WaveNetPlan, input_dim: int) -> str:
    cfg = model.cfg
    kind = cfg.activation_unit.kind
    unit = model.units["tanh"]
    P, D, lanes = cfg.num_pes, cfg.activation_queue_depth, cfg.elementwise_lanes
    mats, phases, blocks = plan.mats, plan.phases, plan.blocks
    B = len(blocks)
    C = plan.channels
    Wc = math.ceil(C / P)
    readouts = ([plan.conv_in] + [r for b in blocks for r in (b.rf, b.rg, b.ro)] + plan.head
                + [plan.output["readout"]])
    widths = gate_widths([r.shifts for r in readouts], cfg.accumulator_bits)
    csc = cfg.sparse_format == "csc"
    shape = PeMemoryShape(P, cfg.macs_per_pe, csc, max(m.entry_bits for m in mats),
                          max([1] + [m.ptr_bits for m in mats]), cfg.accumulator_bits,
                          sum(bank_words(m, cfg) for m in mats) + 1,
                          sum(m.cols + 1 for m in mats) + 1, 1, 1)
    vocab = plan.output["rows"]
    L: list[str] = []
    add = L.append
    add(module_header(model, utterance=True))
    mem = shape.localparams()
    consts = {
        "AB": cfg.activation_bits, "A": mem["A"], "P": P, "MACS": mem["MACS"], "D": D,
        "PD": cfg.pipeline_depth, "LANES": lanes, "PB": mem["PB"], "ED": cfg.elementwise_depth,
        "IN": input_dim, "V": vocab, "NPH": len(phases), "EBMAX": mem["EBMAX"],
        "BIN_SHIFT": unit.bin_shift, "TBL": unit.table.numel(), "SAT": int(cfg.saturate),
        "GW1": widths[0], "GW2": widths[1], "C": C, "WC": Wc, "LAG": plan.lag,
        "DS": plan.skip_depth,
    }
    L += preamble(cfg, consts, mats, len(phases), input_dim, vocab)
    # -- ROMs --
    add("  // activation ROMs, the convs' per-row alignment, bias and narrowing")
    add("  logic signed [AB-1:0] sig_rom [0:TBL-1];\n  logic signed [AB-1:0] tanh_rom [0:TBL-1];")
    out_r = plan.output["readout"]
    for r in readouts:
        names = ("osm", "oba", "osn") if r is out_r else r.roms()
        add(f"  logic signed [{SHIFT_BITS - 1}:0] {names[0]} [0:{r.rows - 1}];")
        add(f"  logic signed [A-1:0] {names[1]} [0:{r.rows - 1}];")
        add(f"  logic signed [{SHIFT_BITS - 1}:0] {names[2]} [0:{r.rows - 1}];")
    add(f"  logic nz_ci [0:{C - 1}];   // rows the input conv's entries reach")
    add("  initial begin")
    add('    $readmemh("tables/sigmoid.hex", sig_rom);\n'
        '    $readmemh("tables/tanh.hex", tanh_rom);')
    for r in readouts:
        names = ("osm", "oba", "osn") if r is out_r else r.roms()
        for n, ext in zip(names, ("sm", "ba", "sn")):
            add(f'    $readmemh("const/{r.name}.{ext}.hex", {n});')
    add(f'    $readmemh("const/{plan.conv_in.name}.nz.hex", nz_ci);')
    add("  end\n")
    # -- the input buffer --
    add("  (* ram_style = \"distributed\" *) logic [AB-1:0] fbuf [0:2*IN-1];")
    add("  logic fwb, frb;   // the bank being filled, the bank the step reads")
    add("`ifndef SYNTHESIS\n  logic signed [AB-1:0] feat [0:IN-1];\n"
        "  always_comb for (integer k = 0; k < IN; k++) feat[k] = fbuf[frb ? IN + k : k];\n"
        "`endif")
    # -- steps, frames and groups --
    ngroups = B + 2
    add("  // steps: step s computes frame s - lag of each group (the input conv, each block, "
        "the\n  // head) where it lies in the utterance; T frames once in_last was seen (tk)")
    add("  integer s, T, nrecv, ss;\n  logic tk;")
    add("  integer " + ", ".join(f"fr_{g}" for g in range(ngroups)) + ";")
    add(f"  logic [{ngroups - 1}:0] gact;")
    hs = ", ".join(f"hs_{b}" for b in range(B + 1))
    add(f"  integer {hs};   // the slot of x_b's newest frame in its history")
    add("  always_comb begin")
    for g in range(ngroups):
        add(f"    fr_{g} = s - {plan.lags[g]};")
        add(f"    gact[{g}] = fr_{g} >= 0 && (!tk || fr_{g} < T);")
    add("  end")
    first_of = {g: min(i for i, gg in enumerate(plan.groups) if gg == g) for g in range(ngroups)}
    last_of = {g: max(i for i, gg in enumerate(plan.groups) if gg == g) for g in range(ngroups)}
    add("  integer ph_first, ph_end;   // the step's phases: its active groups' (contiguous)")
    add("  always_comb begin\n    ph_first = 0; ph_end = 0;")
    for g in reversed(range(ngroups)):
        add(f"    if (gact[{g}]) ph_first = {first_of[g]};")
    for g in range(ngroups):
        add(f"    if (gact[{g}]) ph_end = {last_of[g]};")
    add("  end")
    add("  logic [INW-1:0] fin_cnt;\n  logic [VW-1:0] ocnt;\n  logic [PHW-1:0] ph;\n"
        "  integer pc, drain, ph_nx;\n  logic fin_full, out_busy, run, step_in;")
    # -- phase table --
    L += phase_functions(phases)
    groups_ew = math.ceil(C / lanes)
    add("  integer kind, cm, cur_rows, cur_cols, cur_load, cur_banks, cur_k, cur_bs, "
        "cur_rounds, cur_rpe, cur_wb, cur_kk;")
    add("  logic idle, ph_last, start;")
    add("  always_comb begin\n    kind = ph_kind(ph);\n    cm = ph_target(ph);")
    # cur_kk: a dilated conv's kernel (the broadcast's taps a channel)
    kernels = {b.filter: b.kernel for b in blocks} | {b.gate: b.kernel for b in blocks}
    L += matrix_constants(mats, cfg, "kk", kernels, 1)
    add(_render_csc() if csc else _render_csb())
    add(_pe_memories(shape, mats, "ph_nx"))
    add(_product_comb(csc, mats, cfg, [], {"wn": "wrd"}))
    add(_mac_stage(True, mats, cfg.macs_per_pe, lanes) if csc else _csb_mac(plan))
    add(_product_state(csc))
    # -- control --
    hs_steps = "\n".join(f"            if (fr_{b} >= 0) hs_{b} <= hs_{b} == {_depth(plan, b) - 1}"
                         f" ? 0 : hs_{b} + 1;" for b in range(B + 1))
    hs_reset = "\n".join(f"            hs_{b} <= 0;" for b in range(B + 1))
    step_end = f"""          if (tk && s + 1 == T + LAG) begin   // the utterance's last step
            s <= 0; T <= 0; tk <= 1'b0; nrecv <= 0; ss <= 0; utt_done <= 1'b1;
{hs_reset}
          end else begin
            s <= s + 1;
            ss <= ss == DS - 1 ? 0 : ss + 1;
{hs_steps}
          end"""
    add(f"""
  always_comb begin
    if (kind == KIND_PRODUCT)
      ph_last = run && idle && drain >= PD - 1 && pc + 1 >= cur_load;
    else
      ph_last = run && pc == {groups_ew} + ED - 1;
  end

  assign in_ready = !fin_full && !tk;
  assign out_valid = out_busy;
  assign out_last = out_busy && ocnt == V - 1;

  // control: input buffer, step start, phase stepping, output stream
  assign step_in = !(tk && s >= T);   // the step reads a frame of input
  assign start = !run && !out_busy && (fin_full || !step_in);
  always_comb ph_nx = start ? ph_first : ph + 1;
  always_ff @(posedge clk)
    if (!rst && in_valid && in_ready) fbuf[fwb ? IN + fin_cnt : fin_cnt] <= in_data;
  always_ff @(posedge clk) begin
    if (rst) begin
      run <= 1'b0; fin_full <= 1'b0; fin_cnt <= 0; out_busy <= 1'b0; ocnt <= 0;
      fwb <= 1'b0; frb <= 1'b1; frame_done <= 1'b0; utt_done <= 1'b0; ph <= 0; pc <= 0;
      drain <= 0; s <= 0; T <= 0; tk <= 1'b0; nrecv <= 0; ss <= 0;
{chr(10).join(f"      hs_{b} <= 0;" for b in range(B + 1))}
    end else begin
      frame_done <= 1'b0; utt_done <= 1'b0;
      if (in_valid && in_ready) begin
        if (fin_cnt == IN - 1) begin
          fin_cnt <= 0; fin_full <= 1'b1; nrecv <= nrecv + 1;
          if (in_last) begin tk <= 1'b1; T <= nrecv + 1; end
        end else fin_cnt <= fin_cnt + 1;
      end
{OUTPUT_STREAM}      if (start && gact == '0) begin
        // no layer has a frame in this step (a gap between the blocks' frames, in the flush
        // of an utterance shorter than the look-ahead): it costs nothing
{step_end}
      end else if (start) begin
        if (step_in) begin frb <= fwb; fwb <= !fwb; fin_full <= 1'b0; end
        run <= 1'b1; ph <= PHW'(ph_first); pc <= 0; drain <= 0;
      end else if (run && ph_last) begin
        pc <= 0; drain <= 0;
        if (ph == PHW'(ph_end)) begin
          run <= 1'b0;
          if (gact[{ngroups - 1}]) begin out_busy <= 1'b1; ocnt <= 0; frame_done <= 1'b1; end
{step_end}
        end else ph <= ph + 1;
{PHASE_TICK}""")
    add(_memories(plan, P, Wc, csc))
    if csc:
        add(_broadcast_reads(plan, P, kind))
        add(_accumulate(plan, P))
    else:
        add(_csb_reads(plan, P))
        add(_csb_rows(plan, P, kind))
    add(_gated_stage(plan, model, P, kind, csc))
    add(_history_ports(plan, P, Wc, csc))
    add(_views(plan, P, kind, csc))
    add(_output_block(plan.output, RowMemory(plan.output["matrix"], "orr", "ook", vocab, P)
                      if csc else None))
    add("endmodule")
    return "\n".join(L) + "\n"


def _csb_mac(plan: WaveNetPlan) -> str:
    """csb's multiply stage: each multiplier's word and its column (``mcol``), its input at
    that column (``mx``, :func:`_csb_reads`) and the row sums."""
    mats = plan.mats
    cases = "\n".join(f"            {m.index}: begin {_wval_case(m)} pos = wd & "
                      f"((1 << {m.index_bits}) - 1); end" for m in mats)
    return f"""  // multiply stage: each multiplier's word, its column, its input there, row sums
{CSB_STAGE_REGISTERS}  integer mcol [0:P*MACS-1];
  logic signed [63:0] mwv [0:P*MACS-1];
  logic signed [AB-1:0] mx [0:P*MACS-1];
  always_comb begin : csb_cols
    integer pos;
    logic [EBMAX-1:0] wd;
    logic signed [63:0] wv;
    pos = 0; wd = '0; wv = 64'sd0;
    for (integer i = 0; i < P * MACS; i++) begin
      mcol[i] = 0; mwv[i] = 64'sd0;
      if (s2_en[i]) begin
        wd = wq[i];
        case (cm)
{cases}
          default: begin wv = 64'sd0; pos = 0; end
        endcase
        mwv[i] = wv;
        mcol[i] = (s2_rnd * MACS + i % MACS) * cur_bs + pos;
      end
    end
  end
  always_comb begin : csb_mac
    logic signed [63:0] sum;
    sum = 64'sd0;
    for (integer p = 0; p < P; p++) begin
      sum = 64'sd0;
      for (integer mm = 0; mm < MACS; mm++)
        if (s2_en[p * MACS + mm]) sum = sum + mwv[p * MACS + mm] * 64'(mx[p * MACS + mm]);
      row_we[p] = s2_ok[p] && s2_last;
      row_addr[p] = s2_raddr[p];
      nacc[p] = A'((s2_first ? 64'sd0 : 64'(pacc[p])) + sum);
    end
  end
"""


def _csb_reads(plan: WaveNetPlan, P: int) -> str:
    """csb: each multiplier's input at its column ``mcol``: the frame's features, a block's
    tap (channel ``c div k``, tap ``c mod k``) from its input's history, z, the skip sum or a
    head conv's output (all values: written through their activation as their rows ended)."""
    L = ["  always_comb begin : csb_x",
         "    integer c, ch, tp, off, sl;",
         "    logic signed [AB-1:0] v;",
         "    c = 0; ch = 0; tp = 0; off = 0; sl = 0; v = '0;",
         "    for (integer i = 0; i < P * MACS; i++) begin",
         "      c = mcol[i]; mx[i] = '0;",
         "      case (cm)",
         "        0: mx[i] = fbuf[frb ? IN + c : c];"]
    for b in plan.blocks:
        i = b.index
        L.append(f"        {b.filter}, {b.gate}: begin   // {b.name}'s tap")
        L.append(f"          ch = c / {b.kernel}; tp = c % {b.kernel}; "
                 f"off = ({b.kernel - 1} - tp) * {b.dilation};")
        L.append(f"          sl = hs_{i} - off;\n          if (sl < 0) sl = sl + {b.depth};")
        L.append(_read_case("v", f"h{i}", "ch", "sl * WC + ch / P", P, 10))
        L.append(f"          mx[i] = (fr_{i} - off >= 0 && (!tk || fr_{i} - off < T)) ? v : "
                 "'0;\n        end")
    outs = ", ".join(str(b.out) for b in plan.blocks)
    L.append(f"        {outs}: begin")
    L.append(_read_case("mx[i]", "zv", "c", "c / P", P, 10))
    L.append("        end")
    back = plan.lag % plan.skip_depth
    L.append(f"        {plan.head_mats[0]}: begin   // the skip sum of the head's frame")
    L.append(_read_case("mx[i]", "sk", "c", f"{_slot('ss', back, plan.skip_depth)} * WC + "
                        "c / P", P, 10))
    L.append("        end")
    for i in range(len(plan.head)):
        L.append(f"        {plan.head_mats[i + 1]}: begin")
        L.append(_read_case("mx[i]", f"hv{i}", "c", "c / P", P, 10))
        L.append("        end")
    L.append("        default: ;\n      endcase\n    end\n  end")
    return "\n".join(L) + "\n"


def _csb_rows(plan: WaveNetPlan, P: int, kind: str) -> str:
    """csb: a row's sum, final as its last bank is done, through its conv's bias, narrowing
    and activation (one unit per PE, the running conv's ROM words selected into it), written
    where it is read: x_0's history, f, z = f g, o, the head's; the output layer's raw."""
    fn_code = {"identity": 0, "relu": 1, "tanh": 2, "sigmoid": 3}
    convs = [(0, plan.conv_in)]
    for b in plan.blocks:
        convs += [(b.filter, b.rf), (b.gate, b.rg), (b.out, b.ro)]
    convs += [(j, r) for j, r in zip(plan.head_mats, plan.head)]
    sel = "\n".join(f"        {j}: begin sm = {r.roms()[0]}[row_addr[p]]; ba = {r.roms()[1]}"
                    f"[row_addr[p]]; sn = {r.roms()[2]}[row_addr[p]]; fn = "
                    f"{fn_code[r.function]}; end" for j, r in convs)
    tanh, sig = act_lookup("tanh", "rq", kind), act_lookup("sigmoid", "rq", kind)
    b0 = plan.blocks[0]
    zshift = b0.rf.frac + b0.rg.frac - b0.fz
    writes = []
    for p in range(P):
        w = [f"          0: h0_{p}[hs_0 * WC + s2_rl] <= rv[{p}];"]
        w.append(f"          {', '.join(str(b.filter) for b in plan.blocks)}: "
                 f"fv_{p}[s2_rl] <= rv[{p}];")
        w.append(f"          {', '.join(str(b.gate) for b in plan.blocks)}: "
                 f"zv_{p}[s2_rl] <= narrow(64'($signed(fv_{p}[s2_rl])) * 64'(rv[{p}]), "
                 f"{zshift});")
        w.append(f"          {', '.join(str(b.out) for b in plan.blocks)}: "
                 f"ov_{p}[s2_rl] <= rv[{p}];")
        w += [f"          {j}: hv{i}_{p}[s2_rl] <= rv[{p}];"
              for i, j in enumerate(plan.head_mats[:-1])]
        w.append(f"          {plan.head_mats[-1]}: pres[row_addr[{p}]] <= nacc[{p}];")
        writes.append(f"      if (row_we[{p}])\n        case (cm)\n" + "\n".join(w)
                      + "\n          default: ;\n        endcase")
    return f"""  // a row's output as its sum is final: one readout unit per PE
  logic signed [AB-1:0] rv [0:P-1];
  always_comb begin : csb_readout
    logic signed [{SHIFT_BITS - 1}:0] sm, sn;
    logic signed [A-1:0] ba, rt;
    logic signed [AB-1:0] rq;
    integer fn;
    sm = '0; sn = '0; ba = '0; rt = '0; rq = '0; fn = 0;
    for (integer p = 0; p < P; p++) begin
      sm = '0; sn = '0; ba = '0; fn = 0;
      case (cm)
{sel}
        default: ;
      endcase
      rt = wrap_al(sr_al(GW1'(nacc[p]), sm) + GW1'(ba));
      if (fn == 1 && rt < 0) rt = '0;
      rq = narrow_g(rt, sn);
      case (fn)
        2: rv[p] = {tanh};
        3: rv[p] = {sig};
        default: rv[p] = rq;
      endcase
    end
  end
  always_ff @(posedge clk) begin
{chr(10).join(writes)}
  end
"""


def _depth(plan: WaveNetPlan, b: int) -> int:
    """Frames of history ``b`` (x_b): block ``b``'s taps; the last block's output one."""
    return plan.blocks[b].depth if b < len(plan.blocks) else 1


def _row_mems(plan: WaveNetPlan, P: int) -> dict[str, RowMemory]:
    """The convs' accumulators (shared by the blocks: one block's run at a time): filter,
    gate, out, the head's, the output's."""
    rms = {"f": RowMemory(-1, "fm", "fmv", plan.zrows, P),
           "g": RowMemory(-1, "gm", "gmv", plan.zrows, P),
           "o": RowMemory(-1, "om", "omv", plan.channels, P)}
    for i, r in enumerate(plan.head):
        rms[f"h{i}"] = RowMemory(-1, f"hm{i}", f"hmv{i}", r.rows, P)
    rms["out"] = RowMemory(plan.output["matrix"], "orr", "ook", plan.output["rows"], P)
    return rms


def _mem_of(plan: WaveNetPlan) -> dict[int, str]:
    """Matrix index -> the accumulator memory its product writes (``x0``: x_0's history)."""
    m = {0: "x0"}
    for b in plan.blocks:
        m.update({b.filter: "f", b.gate: "g", b.out: "o"})
    for i, j in enumerate(plan.head_mats):
        m[j] = f"h{i}" if i < len(plan.head) else "out"
    return m


def _memories(plan: WaveNetPlan, P: int, Wc: int, csc: bool) -> str:
    if not csc:
        # csb: a row's sum is final as its last bank is done, and is written then through its
        # conv's bias, narrowing and activation: x_0's history, f, z = f g, o and the head's
        # outputs hold values; the output layer's accumulators are a register file
        L = ["  // x_0's history (values)",
             _per_pe_memory("h0", "AB", _depth(plan, 0) * Wc, P),
             "  // the convs' outputs: f, z = f g, o, the head's",
             *(_per_pe_memory(n, "AB", math.ceil(rows / P), P) for n, rows in
               [("fv", plan.zrows), ("zv", plan.zrows), ("ov", plan.channels)]
               + [(f"hv{i}", r.rows) for i, r in enumerate(plan.head)]),
             "  logic signed [A-1:0] pres [0:V-1];"]
        return "\n".join(L) + "\n"
    L = ["  // x_0's history: the input conv's accumulators (its MACs write frame hs_0's slot)",
         _per_pe_memory("h0", "A", _depth(plan, 0) * Wc, P),
         "  logic [{}:0] {};   // rows the input conv's product wrote".format(
             Wc - 1, ", ".join(f"pv0_{p}" for p in range(P)))]
    for key, rm in _row_mems(plan, P).items():
        index, read = ("ocnt", "ord") if key == "out" else ("bj", f"{rm.mem}_rd")
        L.append(row_memory_decls(rm, f"accumulators {key}", index, read))
    return "\n".join(L) + "\n"


def _broadcast_reads(plan: WaveNetPlan, P: int, kind: str) -> str:
    """``wrd``: the broadcast column's input of the running product (other than the input
    conv's, which reads the frame's features): a block's tap from its input's history, z
    from the filter's and gate's accumulators, the skip sum, a head conv's output."""
    blocks = plan.blocks
    L = ["  // the broadcast column's channel and tap (a dilated conv's im2col column bj)",
         "  integer bch, btp;",
         "  always_ff @(posedge clk) begin",
         "    if (rst || start || (run && ph_last)) begin bch <= 0; btp <= 0; end",
         "    else if (run && kind == KIND_PRODUCT && push) begin",
         "      if (btp == cur_kk - 1) begin btp <= 0; bch <= bch + 1; end",
         "      else btp <= btp + 1;",
         "    end",
         "  end",
         "  logic signed [AB-1:0] wrd;"]
    L.append("  integer xs_0;   // x_0's slot of the tap (its history is read without a clock)")
    for b in blocks:
        i = b.index
        L.append(f"  logic xok_{i};\n  logic signed [AB-1:0] xv_{i};")
    L.append("  always_comb begin : taps\n    integer off;\n"
             "    logic signed [A-1:0] acc, rt;\n    logic signed [AB-1:0] rq;\n"
             "    off = 0; acc = '0; rt = '0; rq = '0;")
    for b in blocks:
        i, dep = b.index, b.depth
        L.append(f"    // block {b.name}: tap btp of channel bch, {b.kernel - 1} - btp taps "
                 f"back from x_{i}'s newest frame")
        L.append(f"    off = ({b.kernel - 1} - btp) * {b.dilation};")
        L.append(f"    xok_{i} = fr_{i} - off >= 0 && (!tk || fr_{i} - off < T);")
        if i == 0:
            L.append(f"    xs_0 = hs_0 - off;\n    if (xs_0 < 0) xs_0 = xs_0 + {dep};")
            L.append(_read_case("acc", "h0", "bch", "xs_0 * WC + bch / P", P))
            L.append("    if (!nz_ci[bch]) acc = '0;")
            L.append("    " + readout_stmts(plan.conv_in, "acc", "bch", "xv_0", kind))
        else:   # read on the last edge at the column's address (_history_ports)
            L.append(_read_case(f"xv_{i}", f"h{i}_q", "bch", None, P))
    L.append("  end")
    rms = _row_mems(plan, P)
    sel = [f"    logic signed [{SHIFT_BITS - 1}:0] {v};" for v in ("fsm", "fsn", "gsm", "gsn")]
    L.append("  always_comb begin : wn_read\n    logic signed [A-1:0] rt, fba, gba;\n"
             + "\n".join(sel) + "\n"
             "    logic signed [AB-1:0] rq, f, g;\n    logic signed [63:0] fg;\n"
             "    rt = '0; rq = '0; f = '0; g = '0; fg = 64'sd0; wrd = '0; fsm = '0; fsn = '0;"
             "\n    gsm = '0; gsn = '0; fba = '0; gba = '0;\n"
             "    // the running out conv's block: its filter's and gate's ROM words at bj\n"
             "    case (cm)")
    for b in blocks:
        fr, gr = b.rf.roms(), b.rg.roms()
        L.append(f"      {b.out}: begin fsm = {fr[0]}[bj]; fba = {fr[1]}[bj]; fsn = {fr[2]}[bj];"
                 f" gsm = {gr[0]}[bj]; gba = {gr[1]}[bj]; gsn = {gr[2]}[bj]; end")
    L.append("      default: ;\n    endcase\n    case (cm)")
    for b in blocks:
        i = b.index
        L.append(f"      {b.filter}, {b.gate}: wrd = xok_{i} ? xv_{i} : '0;")
    b0 = blocks[0]
    zf = readout_core(b0.rf.function, f"{rms['f'].mem}_rd", "fsm", "fba", "fsn", "f", kind)
    zg = readout_core(b0.rg.function, f"{rms['g'].mem}_rd", "gsm", "gba", "gsn", "g", kind)
    outs = ", ".join(str(b.out) for b in blocks)
    L.append(f"      {outs}: begin  // z = f g (one unit for the blocks)\n        {zf}\n"
             f"        {zg}\n        fg = 64'(f) * 64'(g);\n"
             f"        wrd = narrow(fg, {b0.rf.frac + b0.rg.frac - b0.fz});\n      end")
    L.append(f"      {plan.head_mats[0]}: begin  // the skip sum of the head's frame")
    L.append(_read_case("wrd", "sk_q", "bj", None, P, 8))
    L.append("      end")
    for i, r in enumerate(plan.head):
        stmts = readout_stmts(r, f"{rms[f'h{i}'].mem}_rd", "bj", "wrd", kind)
        L.append(f"      {plan.head_mats[i + 1]}: begin {stmts} end")
    L.append("      default: wrd = '0;\n    endcase\n  end")
    return "\n".join(L) + "\n"


def _accumulate(plan: WaveNetPlan, P: int) -> str:
    """The read-modify-write stage (s3): a row's accumulator read (distributed RAM: the
    write of the last cycle is seen) or zero before the product's first entry in it, plus
    the product; the sum written into the running product's memory."""
    rms = _row_mems(plan, P)
    mem_of = _mem_of(plan)
    by_mem: dict[str, list[int]] = {}
    for j, key in mem_of.items():
        by_mem.setdefault(key, []).append(j)
    reads, writes, valid, clears = [], [], [], []
    h0w = "hs_0 * WC + a3_row[{p}]"
    for p in range(P):
        reads.append("    case (cm)")
        for key, js in by_mem.items():
            ids = ", ".join(map(str, js))
            if key == "x0":
                reads.append(f"      {ids}: rb[{p}] = pv0_{p}[a3_row[{p}]] ? "
                             f"h0_{p}[{h0w.format(p=p)}] : '0;")
            else:
                reads.append(f"      {ids}: rb[{p}] = {rms[key].read(p, f'a3_row[{p}]')};")
        reads.append(f"      default: rb[{p}] = '0;\n    endcase")
    for key, js in by_mem.items():
        cond = " || ".join(f"cm == {j}" for j in js)
        tclr = " || ".join(f"ph_target(ph_nx) == {j}" for j in js)
        for p in range(P):
            if key == "x0":
                writes.append(f"    if (a3_en[{p}] && ({cond})) h0_{p}[{h0w.format(p=p)}] <= "
                              f"a3_sum[{p}];")
                valid.append(f"    if (a3_en[{p}] && ({cond})) pv0_{p}[a3_row[{p}]] <= 1'b1;")
            else:
                rm = rms[key]
                writes.append(f"    if (a3_en[{p}] && ({cond})) "
                              f"{rm.mem}_{p}[{rm.ab}'(a3_row[{p}])] <= a3_sum[{p}];")
                valid.append(f"    if (a3_en[{p}] && ({cond})) "
                             f"{rm.valid}_{p}[{rm.ab}'(a3_row[{p}])] <= 1'b1;")
        vname = "pv0" if key == "x0" else rms[key].valid
        clears.append(f"      if ({tclr}) begin "
                      + " ".join(f"{vname}_{p} <= '0;" for p in range(P)) + " end")
    rstv = " ".join(f"{rm.valid}_{p} <= '0;" for rm in rms.values() for p in range(P))
    rstv += " " + " ".join(f"pv0_{p} <= '0;" for p in range(P))
    return f"""  // the accumulators: one MAC per stored entry, read, added and written back in s3
  logic signed [A-1:0] rb [0:P-1];
  always_comb begin : res_read
{chr(10).join(reads)}
  end
  always_comb
    for (integer p = 0; p < P; p++) a3_sum[p] = A'(rb[p] + A'(a3_prod[p]));
  always_ff @(posedge clk) begin
    for (integer p = 0; p < P; p++) begin
      a3_en[p] <= !rst && mac_en[p];
      a3_row[p] <= mac_row[p];
      a3_prod[p] <= mac_prod[p];
    end
  end
  always_ff @(posedge clk) begin
{chr(10).join(writes)}
  end
  // valid bits: cleared as their product starts, set as a row is written
  always_ff @(posedge clk) begin
    if ((start || (run && ph_last && ph != PHW'(ph_end))) && ph_kind(ph_nx) == KIND_PRODUCT)
    begin
{chr(10).join(clears)}
    end
{chr(10).join(valid)}
    if (rst) begin {rstv} end
  end
"""


def _gated_stage(plan: WaveNetPlan, model: EngineModel, P: int, kind: str, csc: bool) -> str:
    """The gated residual's element-wise stage, shared by the blocks: LANES channels a cycle;
    its cycle ``pc`` issues the history and skip reads of group ``pc`` (:func:`_history_ports`)
    and computes and writes group ``pc - 1``, then ED cycles."""
    cfg = model.cfg
    guard = cfg.guard_bits
    blocks = plan.blocks
    fs = plan.fs
    rms = _row_mems(plan, P)
    ew_phase = {p.target: i for i, p in enumerate(plan.phases) if p.kind == "elementwise"}
    ew_case = "\n".join(f"      {ew_phase[b.index]}: ewb = {b.index};" for b in blocks)
    ngroups = math.ceil(plan.channels / cfg.elementwise_lanes)
    body = []
    for b in blocks:
        i = b.index
        fx, fo, fout = b.fx, b.ro.frac, b.fout
        F = min(max(fx, fo), fout + guard)
        center = _slot(f"hs_{i}", b.reach, b.depth)
        if i == 0:   # x_0's history: distributed RAM, read here
            xread = _read_case("acc" if csc else "xc", "h0", "k", f"{center} * WC + k / P", P,
                               10)
            if csc:
                xread += ("\n          if (!nz_ci[k]) acc = '0;\n          "
                          + readout_stmts(plan.conv_in, "acc", "k", "xc", kind))
        else:        # read on the last edge
            xread = _read_case("xc", f"h{i}_q", "k", None, P, 10)
        if i == 0:
            skip = f"sn = narrow(64'(o), {fo - fs});"
        else:
            Fs = min(max(fs, fo), fs + guard)
            skip = (f"sn = narrow(wrap_acc(sr64(64'(sc), {fs - Fs}) + "
                    f"sr64(64'(o), {fo - Fs})), {Fs - fs});")
        body.append(f"""        {i}: begin
          // x_{i + 1} = x_{i} + o; skip += o
{xread}
          xn = narrow(wrap_acc(sr64(64'(xc), {fx - F}) + sr64(64'(o), {fo - F})), {F - fout});
          {skip}
        end""")
    body = "\n".join(body)
    # o = out(z): one unit for the blocks, the running block's ROM words selected into it
    osel = "\n".join(f"          {b.index}: begin qsm = {b.ro.roms()[0]}[k]; "
                     f"qba = {b.ro.roms()[1]}[k]; qsn = {b.ro.roms()[2]}[k]; end"
                     for b in blocks)
    oread = _rm_read_case("acc", rms["o"], "k", 8)
    ocore = readout_core(blocks[0].ro.function, "acc", "qsm", "qba", "qsn", "o", kind)
    if not csc:   # o was written as a value
        osel, ocore = "", ""
        oread = _read_case("o", "ov", "k", "k / P", P, 8)
    return f"""  // the gated residual's element-wise stage: LANES channels a cycle
  integer ewb;
  always_comb begin
    ewb = 0;
    case (ph)
{ew_case}
      default: ;
    endcase
  end
  logic e_v;
  integer e_k [0:LANES-1];
  logic signed [AB-1:0] e_xn [0:LANES-1];
  logic signed [AB-1:0] e_sn [0:LANES-1];
  always_comb begin : gated
    integer k;
    logic signed [A-1:0] acc, rt, qba;
    logic signed [{SHIFT_BITS - 1}:0] qsm, qsn;
    logic signed [AB-1:0] rq, o, xc, sc, xn, sn;
    e_v = run && kind == KIND_ELEMENTWISE && pc >= 1 && pc <= {ngroups};
    k = 0; acc = '0; rt = '0; rq = '0; o = '0; xc = '0; sc = '0; xn = '0;
    sn = '0; qsm = '0; qba = '0; qsn = '0;
    for (integer ln = 0; ln < LANES; ln++) begin
      k = (pc - 1) * LANES + ln;
      e_k[ln] = k; e_xn[ln] = '0; e_sn[ln] = '0;
      if (e_v && k < C) begin
        case (ewb)
{osel}
          default: ;
        endcase
{oread}
        {ocore}
{_read_case("sc", "sk_q", "k", None, P, 8)}
        case (ewb)
{body}
          default: ;
        endcase
        e_xn[ln] = xn; e_sn[ln] = sn;
      end
    end
  end
"""


def _history_ports(plan: WaveNetPlan, P: int, Wc: int, csc: bool) -> str:
    """The histories of x_1 .. x_B and the skip sum, per PE: one write port (the element-wise
    stage's lane in that PE), and for those read by the element-wise stage or the broadcast
    one read port, read on the clock edge. csc: block RAM; the broadcast's address is the
    column it moves to (as the pointers'), so the word is there as the column is. csb:
    distributed RAM (its multipliers also read them, each at its own column)."""
    blocks = plan.blocks
    B = len(blocks)
    style = "block" if csc else "distributed"
    ds = plan.skip_depth
    L = ["  // the histories' and the skip sum's ports: the element-wise stage writes group pc - 1",
         "  // and reads group pc; PE p holds at most one lane of a group (LANES <= P)",
         "  integer gw [0:P-1];     // the word of PE p's channel in group pc (-1: none)",
         "  integer gwl [0:P-1];    // the lane of group pc - 1 in PE p (-1: none)",
         "  always_comb begin : lanes_of_pes",
         "    integer k;",
         "    k = 0;",
         "    for (integer p = 0; p < P; p++) begin",
         "      gw[p] = -1; gwl[p] = -1;",
         "      for (integer ln = 0; ln < LANES; ln++) begin",
         "        k = pc * LANES + ln;",
         "        if (k < C && k % P == p) gw[p] = k / P;",
         "        if (e_v && e_k[ln] < C && e_k[ln] % P == p) gwl[p] = ln;",
         "      end",
         "    end",
         "  end"]
    if csc:
        L += ["  // the column the broadcast moves to: its channel and tap",
              "  integer bj_n, bch_n, btp_n, ph_rd;",
              "  always_comb begin : next_column",
              "    ph_rd = (start || (run && ph_last)) ? ph_nx : ph;",
              "    if (start || (run && ph_last)) begin bj_n = 0; bch_n = 0; btp_n = 0; end",
              "    else if (run && kind == KIND_PRODUCT && push) begin",
              "      bj_n = bj + 1;",
              "      if (btp == cur_kk - 1) begin btp_n = 0; bch_n = bch + 1; end",
              "      else begin btp_n = btp + 1; bch_n = bch; end",
              "    end else begin bj_n = bj; bch_n = bch; btp_n = btp; end",
              "  end"]
    sk_slots = "\n".join(
        f"      {b.index}: sks = {_slot('ss', plan.lags[b.index + 1] % ds, ds)};"
        for b in blocks)
    L.append(f"""  integer sks;   // the skip sum's slot of the running block's frame
  always_comb begin
    sks = 0;
    case (ewb)
{sk_slots}
      default: ;
    endcase
  end""")
    mems = [(f"h{b}", _depth(plan, b)) for b in range(1, B + 1)] + [("sk", ds)]
    for name, depth in mems:
        read = name == "sk" or int(name[1:]) < B
        for p in range(P):
            m = f"{name}_{p}"
            L.append(f'  (* ram_style = "{style}" *) logic [AB-1:0] {m} [0:{depth * Wc - 1}];')
            L.append(f"  logic {name}_we_{p};\n  integer {name}_wa_{p};\n"
                     f"  logic [AB-1:0] {name}_wd_{p};")
            if read:
                L.append(f"  integer {name}_ra_{p};\n  logic signed [AB-1:0] {name}_q_{p};")
            L.append("  always_ff @(posedge clk) begin")
            L.append(f"    if ({name}_we_{p}) {m}[{name}_wa_{p}] <= {name}_wd_{p};")
            if read:
                L.append(f"    {name}_q_{p} <= {m}[{name}_ra_{p}];")
            L.append("  end")
        # the write ports: block b - 1's stage writes x_b at its newest slot; every block's
        # stage writes the skip sum at its frame's slot
        lines = []
        for p in range(P):
            if name == "sk":
                cond, wa, wd = "1'b1", f"sks * WC + e_k[gwl[{p}]] / P", f"e_sn[gwl[{p}]]"
            else:
                b = int(name[1:])
                cond = f"ewb == {b - 1}"
                wa = f"{_slot(f'hs_{b}', 0, depth)} * WC + e_k[gwl[{p}]] / P"
                wd = f"e_xn[gwl[{p}]]"
            lines.append(f"    {name}_we_{p} = gwl[{p}] >= 0 && {cond};\n"
                         f"    {name}_wa_{p} = gwl[{p}] >= 0 ? {wa} : 0;\n"
                         f"    {name}_wd_{p} = gwl[{p}] >= 0 ? {wd} : '0;")
            if not read:
                continue
            if name == "sk":
                ew = f"sks * WC + gw[{p}]"
                bc = (f"{_slot('ss', plan.lag % ds, ds)} * WC + bj_n / P" if csc else None)
                sel = f"ph_rd == {_phase_of_matrix(plan, plan.head_mats[0])}"
            else:
                blk = blocks[b]
                ew = f"{_slot(f'hs_{b}', blk.reach, blk.depth)} * WC + gw[{p}]"
                off = f"({blk.kernel - 1} - btp_n) * {blk.dilation}"
                bc = (f"(hs_{b} >= {off} ? hs_{b} - {off} : hs_{b} - {off} + {blk.depth})"
                      " * WC + bch_n / P")
                sel = " || ".join(f"ph_rd == {_phase_of_matrix(plan, j)}"
                                  for j in (blk.filter, blk.gate))
            addr = f"({sel}) ? {bc} : gw[{p}] >= 0 ? {ew} : 0" if csc else \
                f"gw[{p}] >= 0 ? {ew} : 0"
            lines.append(f"    {name}_ra_{p} = {addr};")
        L.append("  always_comb begin\n" + "\n".join(lines) + "\n  end")
    return "\n".join(L) + "\n"


def _phase_of_matrix(plan: WaveNetPlan, j: int) -> int:
    return next(i for i, p in enumerate(plan.phases) if p.kind == "product" and p.target == j)


def _rm_read_case(target: str, rm: RowMemory, row: str, pad: int) -> str:
    """``target = `` row ``row`` of ``rm`` (zero where its valid bit is clear)."""
    sp = " " * pad
    cases = "\n".join(f"{sp}  {p}: {target} = {rm.read(p, f'{row} / P')};"
                      for p in range(rm.num_pes))
    return f"{sp}case ({row} % P)\n{cases}\n{sp}  default: {target} = '0;\n{sp}endcase"


def _views(plan: WaveNetPlan, P: int, kind: str, csc: bool) -> str:
    """Simulation only: each layer's output of its frame, as the dumps read them."""
    B = len(plan.blocks)
    rms = _row_mems(plan, P)
    ngroups = B + 2
    # the phase that ended, its frames and the slots, captured as it ends: the dump reads
    # the memories a cycle later, once its last write has landed
    L = ["`ifndef SYNTHESIS", "  logic d_v;\n  integer d_ph, d_ss;",
         "  integer " + ", ".join(f"d_fr_{g}" for g in range(ngroups)) + ";",
         "  integer " + ", ".join(f"d_hs_{b}" for b in range(B + 1)) + ";",
         "  always_ff @(posedge clk) begin",
         "    d_v <= !rst && run && ph_last; d_ph <= ph; d_ss <= ss;",
         *[f"    d_fr_{g} <= fr_{g};" for g in range(ngroups)],
         *[f"    d_hs_{b} <= hs_{b};" for b in range(B + 1)],
         "  end",
         f"  logic signed [AB-1:0] x0v [0:{plan.channels - 1}];"]
    L.append("  always_comb begin : view_x0\n    logic signed [A-1:0] acc, rt;\n"
             "    logic signed [AB-1:0] rq;\n    acc = '0; rt = '0; rq = '0;\n"
             "    for (integer k = 0; k < C; k++) begin")
    if csc:
        L.append(_read_case("acc", "h0", "k", "d_hs_0 * WC + k / P", P, 6))
        L.append("      if (!nz_ci[k]) acc = '0;")
        L.append("      " + readout_stmts(plan.conv_in, "acc", "k", "x0v[k]", kind))
    else:
        L.append(_read_case("x0v[k]", "h0", "k", "d_hs_0 * WC + k / P", P, 6))
    L.append("    end\n  end")
    for b in range(1, B + 1):
        L.append(f"  logic signed [AB-1:0] x{b}v [0:{plan.channels - 1}];")
        L.append("  always_comb\n    for (integer k = 0; k < C; k++) begin")
        L.append(_read_case(f"x{b}v[k]", f"h{b}", "k", f"d_hs_{b} * WC + k / P", P, 6))
        L.append("    end")
    L.append(f"  logic signed [AB-1:0] skv [0:{plan.channels - 1}];")
    L.append("  always_comb\n    for (integer k = 0; k < C; k++) begin")
    back = plan.lag % plan.skip_depth
    L.append(_read_case("skv[k]", "sk", "k", f"{_slot('d_ss', back, plan.skip_depth)} * WC + "
                        "k / P", P, 6))
    L.append("    end")
    for i, r in enumerate(plan.head):
        if not csc:
            L.append(f"  logic signed [AB-1:0] hv{i}v [0:{r.rows - 1}];")
            L.append(f"  always_comb\n    for (integer k = 0; k < {r.rows}; k++) begin")
            L.append(_read_case(f"hv{i}v[k]", f"hv{i}", "k", "k / P", P, 6))
            L.append("    end")
            continue
        L.append(f"  logic signed [AB-1:0] hv{i} [0:{r.rows - 1}];")
        L.append(f"  always_comb begin : view_h{i}\n    logic signed [A-1:0] acc, rt;\n"
                 "    logic signed [AB-1:0] rq;\n    acc = '0; rt = '0; rq = '0;\n"
                 f"    for (integer k = 0; k < {r.rows}; k++) begin")
        L.append(_rm_read_case("acc", rms[f"h{i}"], "k", 6))
        L.append("      " + readout_stmts(r, "acc", "k", f"hv{i}[k]", kind))
        L.append("    end\n  end")
    L.append("`endif")
    return "\n".join(L) + "\n"


def wavenet_dumps(plan: WaveNetPlan, model: EngineModel, input_dim: int, csc: bool
                  ) -> list[tuple[str, str, int, int, str]]:
    """(trace layer, SV array, length, the phase whose end completes it, its frame's
    signal) per layer the co-simulation compares."""
    ph_of = {p.target: i for i, p in enumerate(plan.phases) if p.kind == "elementwise"}
    ops = model.graph.ops
    B = len(plan.blocks)
    head_ops = ops[2 + B:]
    d = [("input", "feat", input_dim, 0, "d_fr_0"),
         (ops[0].name, "x0v", plan.channels, 0, "d_fr_0")]
    for b in plan.blocks:
        d.append((b.name, f"x{b.index + 1}v", plan.channels, ph_of[b.index],
                  f"d_fr_{b.index + 1}"))
    d.append(("skip_sum", "skv", plan.channels, ph_of[B - 1], f"d_fr_{B}"))
    for i, r in enumerate(plan.head):
        ph = next(k for k, p in enumerate(plan.phases)
                  if p.kind == "product" and p.target == plan.head_mats[i])
        d.append((head_ops[i].name, f"hv{i}" if csc else f"hv{i}v", r.rows, ph,
                  f"d_fr_{B + 1}"))
    d.append((head_ops[-1].name, "logits", plan.output["rows"], len(plan.phases) - 1,
              f"d_fr_{B + 1}"))
    return d


def render_wavenet_testbench(dumps: list[tuple[str, str, int, int, str]],
                             activation_bits: int, input_dim: int) -> str:
    dumps_text = "\n".join(f"      if (dut.d_ph == {ph}) begin\n"
                           f"{dump_layer(li, arr, n, f'dut.{fr}')}\n      end"
                           for li, (_, arr, n, ph, fr) in enumerate(dumps))
    return testbench(
        "// Generated by asr-hw rtl: streams +in= (hex codes, a frame per line, in_last on the\n"
        "// last) through asr_engine and writes +out= (layer outputs per frame, logits, cycles "
        "per\n// phase and step); do not edit.", activation_bits, input_dim, True, "dut.s",
        "    if (dut.d_v) begin   // a phase ended on the last edge: its layer's output, its "
        f"frame\n{dumps_text}\n    end")


def generate_wavenet(model: EngineModel, out_dir: Path, final_dir: Path | None = None
                     ) -> RtlDesign:
    """:func:`hw.rtl.generate.generate_rtl` for a WaveNet (checked by its caller)."""
    check_wavenet(model)
    plan = plan_wavenet(model, out_dir)
    input_dim = plan.mats[0].cols
    engine = render_wavenet(model, plan, input_dim)
    dumps = wavenet_dumps(plan, model, input_dim, model.cfg.sparse_format == "csc")
    tb = render_wavenet_testbench(dumps, model.cfg.activation_bits, input_dim)
    (out_dir / "engine.sv").write_text(engine)
    (out_dir / "tb.sv").write_text(tb)
    digest = hashlib.sha256((engine + tb).encode()).hexdigest()[:16]
    design = RtlDesign(str(final_dir or out_dir), model.cfg.name, model.cfg.sparse_format,
                       model.cfg.activation_bits, input_dim, plan.output["rows"], plan.phases,
                       [d[:3] for d in dumps], plan.mats, digest, plan.files,
                       model_type="wavenet", lookahead=plan.lag)
    design.save(out_dir)
    return design
