"""PE 0's memories of the generated engine as a module of their own (``pe_memories``), to
synthesize them alone: the block RAMs of each kind (weights, pointers, accumulators) of a design
too large for Yosys whole (``benchmarks/rtl_synth.py --pe-memories``). Every PE's memories have
PE 0's shape.

The module is built from the engine's own plan and emitting functions (:mod:`hw.rtl.generate`:
:func:`~hw.rtl.generate.pe_memory_shape`, ``weight_memories``, ``pointer_memory``,
``acc_memory`` and the vectors they read and write), so its memories are declared, initialized,
written and read by the very lines ``engine.sv`` has for PE 0. The vectors keep the engine's
widths (every PE's entries); PE 0's are connected to the ports:

- ``w_addr`` / ``w_data``: multiplier ``b``'s weight memory at ``[b*WAB +: WAB]`` /
  ``[b*EBMAX +: EBMAX]``;
- ``p_addr``, ``p_first``, ``p_next`` (csc): the pointer memory read at ``p_addr`` and
  ``p_addr + 1``;
- ``a_we`` (one bit per gate matrix), ``a_waddr``, ``a_wdata``: the accumulators' write (the
  copies are written alike); ``a_raddr``: copy ``c``'s read address at ``[c*AAB +: AAB]``;
  ``a_rdata``: gate matrix ``s``'s copy ``c`` at ``[(s*RC + c)*A +: A]``.

Its ``$readmemh`` paths are the engine's (``mem/pe0.*.hex``, relative): read it in the folder
the engine was generated into.
"""

from __future__ import annotations

from collections.abc import Sequence

from asr.config_errors import ConfigError
from hw.integer_model import EngineModel
from hw.rtl.generate import (
    NSLOT,
    PeMemoryShape,
    acc_memory,
    acc_signals,
    check_supported,
    pe_memory_shape,
    plan_design,
    pointer_memory,
    pointer_signals,
    weight_memories,
    weight_signals,
)

PROBE_KINDS = ("weights", "pointers", "accumulators")
TOP = "pe_memories"


def probe_kinds(shape: PeMemoryShape, kinds: Sequence[str] | None) -> tuple[str, ...]:
    """``kinds`` checked against the memories the engine has (None: all of them)."""
    have = PROBE_KINDS if shape.csc else ("weights", "accumulators")
    if kinds is None:
        return have
    for k in kinds:
        if k not in have:
            why = "" if k not in PROBE_KINDS else " (a csb engine has no pointer memories)"
            raise ConfigError(f"PE memory kinds: one of {have}{why}, got {k!r}")
    return tuple(k for k in have if k in kinds)


def render_probe(shape: PeMemoryShape, kinds: Sequence[str] | None = None,
                 title: str = "") -> str:
    """The ``pe_memories`` module of PE 0's memories of ``kinds`` (None: all) for ``shape``."""
    kinds = probe_kinds(shape, kinds)
    s, P, M = shape, shape.num_pes, shape.macs
    ports = ["  input  logic clk"]
    body = [f"  localparam integer {k} = {v};" for k, v in s.localparams().items()]
    if "weights" in kinds:
        ports += [f"  input  logic [{M * s.wab - 1}:0] w_addr",
                  f"  output logic [{M * s.entry_bits - 1}:0] w_data"]
        decls, reads = weight_memories(s, 0)
        body += [*weight_signals(s), *decls, "  always_ff @(posedge clk) begin", *reads,
                 "  end"]
        body += [f"  assign wa[{b}] = w_addr[{b} * WAB +: WAB];\n"
                 f"  assign w_data[{b} * EBMAX +: EBMAX] = wq[{b}];" for b in range(M)]
    if "pointers" in kinds:
        ports += [f"  input  logic [{s.pab - 1}:0] p_addr",
                  f"  output logic [{s.ptr_bits - 1}:0] p_first",
                  f"  output logic [{s.ptr_bits - 1}:0] p_next"]
        decls, reads = pointer_memory(s, 0)
        body += [*pointer_signals(s), *decls, "  always_ff @(posedge clk) begin", *reads,
                 "  end",
                 "  assign pa_n = p_addr;\n  assign p_first = pq0[0];\n  assign p_next = pq1[0];"]
    if "accumulators" in kinds:
        ports += [f"  input  logic [{NSLOT - 1}:0] a_we",
                  f"  input  logic [{s.aab - 1}:0] a_waddr",
                  f"  input  logic [{s.acc_bits - 1}:0] a_wdata",
                  f"  input  logic [{s.rc * s.aab - 1}:0] a_raddr",
                  f"  output logic [{NSLOT * s.rc * s.acc_bits - 1}:0] a_rdata"]
        body += acc_signals(s)
        for sl in range(NSLOT):
            for c in range(s.rc):
                body += acc_memory(s, 0, sl, c)
        body.append("  assign awa[0] = a_waddr;\n  assign awd[0] = a_wdata;")
        body += [f"  assign awe[{sl * P}] = a_we[{sl}];" for sl in range(NSLOT)]
        body += [f"  assign ara[{c}] = a_raddr[{c} * AAB +: AAB];" for c in range(s.rc)]
        body += [f"  assign a_rdata[{sl * s.rc + c} * A +: A] = aq[{sl * P * s.rc + c}];"
                 for sl in range(NSLOT) for c in range(s.rc)]
    head = (f"// PE 0's memories ({', '.join(kinds)}) of the engine asr-hw rtl generates"
            f"{' for ' + title if title else ''},\n// declared and read as its engine.sv does "
            "them (hw.rtl.probe); do not edit.")
    return "\n".join([head, f"module {TOP} (", ",\n".join(ports), ");", *body,
                      "endmodule"]) + "\n"


def memory_shape(model: EngineModel) -> PeMemoryShape:
    """The PE memories' shape of the engine generated for ``model``, planned as
    :func:`~hw.rtl.generate.generate_rtl` plans it (writing nothing)."""
    check_supported(model)
    mats, layers, *_ = plan_design(model, None)
    return pe_memory_shape(mats, layers, model.cfg)


def pe_memory_probe(model: EngineModel, kinds: Sequence[str] | None = None,
                    shape: PeMemoryShape | None = None) -> str:
    """PE 0's memories of ``kinds`` (of :data:`PROBE_KINDS`; None: all the engine has) of the
    engine :func:`~hw.rtl.generate.generate_rtl` generates for ``model`` (an artifact compiled
    for its engine), as the SystemVerilog module ``pe_memories``. ``shape``:
    :func:`memory_shape` of ``model`` when the caller has it (planning a large design is not
    free)."""
    cfg = model.cfg
    title = (f"engine {cfg.name!r} ({cfg.sparse_format}, {cfg.num_pes} PEs x "
             f"{cfg.macs_per_pe} MACs) and model {model.model_type!r}")
    return render_probe(shape or memory_shape(model), None if kinds is None else list(kinds),
                        title)
