"""ESE's layer as generated RTL, synthesized by Yosys for ESE's FPGA: its DSPs, block RAMs,
LUTs and flip-flops beside the device's capacity (XCKU060: 2,760 DSP48E2, 1,080 RAMB36).

The layer is ``benchmarks/rtl_cosim.py``'s (153 inputs, 1024 cells, projection 512, ESE's
per-matrix densities, random weights, 32 outputs), compressed with the ``ese`` preset. Yosys
runs ``asr-hw synth``'s script for the part (``hw/rtl/devices.py``) with one ``stat`` more,
after block-RAM mapping: the DSP and block-RAM counts are known there, long before the LUT
mapping ends (hours on this design). A run stopped by ``--timeout`` prints those; a finished
one prints the final counts too, which are ``asr-hw synth``'s. The Xilinx counts are Yosys
estimates: there is no open place and route for the part.

    python benchmarks/rtl_synth.py --ese-layer-xcku060 [--num-pes 32] [--rtl-dir DIR]
        [--timeout SECONDS] [--set elementwise_lanes=4 ...]
    python benchmarks/rtl_synth.py --ese-layer-xcku060 --pe-memories

``--pe-memories`` synthesizes only PE 0's memories of the generated design: the module
``hw.rtl.probe`` builds from the generator's own plan and emitting functions, so that they are
declared, initialized and read by the lines ``engine.sv`` has for PE 0 (it reads the design's
``mem/pe0.*`` images). The weight memory, the pointer memory (one, read at two addresses) and
the accumulators, each alone and all together (a few minutes).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from rtl_cosim import ese_layer_artifact

from asr.compress.artifact import read_artifact, save_artifact
from asr.tables import markdown_table
from hw.config import load_engine
from hw.integer_model import EngineModel, compile_model
from hw.rtl.design import generate_design
from hw.rtl.devices import Device, get_device
from hw.rtl.generate import NSLOT
from hw.rtl.probe import TOP as PROBE_TOP
from hw.rtl.probe import memory_shape, pe_memory_probe
from hw.rtl.synth import Resource, resource_rows, stat_resources, synthesize
from hw.rtl.tools import ToolError, run_tool, synth_tools


def staged_script(device: Device, source: str) -> str:
    """``asr-hw synth``'s Yosys script for ``device`` with a ``stat`` into ``stat_dsp.json``
    after DSP mapping, one into ``stat_memory.json`` after block-RAM mapping and the final one
    into ``stat.json``."""
    first, *coarse, _ = device.yosys_commands()   # the last from block-RAM mapping on
    return "\n".join([f"read_verilog -sv {source}", "hierarchy -check -auto-top", first,
                      "tee -q -o stat_dsp.json stat -json", *coarse,
                      f"{device.synth} -run {device.after_coarse}:map_ffram",
                      "tee -q -o stat_memory.json stat -json",
                      f"{device.synth} -run map_ffram:", "tee -q -o stat.json stat -json", ""])


def stage_resources(stat: Path, device: Device) -> dict[str, Resource] | None:
    """The resources counted in Yosys' ``stat -json`` file, or None when Yosys did not get
    that far."""
    return stat_resources(json.loads(stat.read_text()), device)[1] if stat.is_file() else None


def pe_memories(out: Path, model: EngineModel, device: Device) -> None:
    """Block RAMs of PE 0's memories of ``model``'s design (generated in ``out``, whose memory
    images they read), by kind: each kind alone, then all together."""
    cfg = model.cfg
    shape = memory_shape(model)
    print(f"PE 0's memories: {asdict(shape)}")
    rows = []
    for kinds, what in ((["weights"], "weights"), (["pointers"], "pointers"),
                        (["accumulators"], f"accumulators ({NSLOT} x {shape.rc})"),
                        (None, "all")):
        sv = out / "probe" / f"pe_memories.{what.split()[0]}.sv"
        sv.parent.mkdir(exist_ok=True)
        sv.write_text(pe_memory_probe(model, kinds, shape))
        r = synthesize([sv], device, top=PROBE_TOP, include_dir=out, cache_dir=out / "synth")
        ram = {k: v for k, v in r.cells.items() if k.startswith("RAMB")}
        rows.append([what, ", ".join(f"{v} {k}" for k, v in sorted(ram.items())),
                     f"{r.used('bram'):g}", f"{cfg.num_pes * r.used('bram'):g}"])
    print(markdown_table(["memories", "cells", f"{device.labels['bram']} (PE 0)",
                          f"x {cfg.num_pes} PEs"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ese-layer-xcku060", action="store_true", required=True,
                        help="ESE's layer on ESE's part (the one design this benchmark has)")
    parser.add_argument("--num-pes", type=int, default=32, help="the ese engine's PEs")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more ese engine overrides")
    parser.add_argument("--rtl-dir", default=None,
                        help="generate the RTL and run Yosys here (kept; default: a temporary "
                             "folder)")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="stop Yosys after this long (the counts after block-RAM mapping "
                             "are printed if it got there)")
    parser.add_argument("--pe-memories", action="store_true",
                        help="only PE 0's memories, by kind (hw.rtl.probe)")
    args = parser.parse_args()
    device = get_device("xcku060")
    cfg = load_engine("ese", [f"num_pes={args.num_pes}", *args.set])
    yosys, _ = synth_tools(False)
    with tempfile.TemporaryDirectory(prefix="ese-layer-") as tmp:
        out = Path(args.rtl_dir or tmp)
        # through a file, as asr-hw synth reads it
        art = read_artifact(save_artifact(Path(tmp) / "ese_layer.model", ese_layer_artifact()))
        model = compile_model(art, cfg)
        design = generate_design(model, out)
        if args.pe_memories:
            pe_memories(out, model, device)
            return
        (out / "synth.ys").write_text(staged_script(device, design.sources[0].name))
        t0 = time.perf_counter()
        stopped = None
        try:
            run_tool(yosys, ["-q", "-l", "yosys.log", "-s", "synth.ys"], out,
                     out / "yosys.log", args.timeout)
        except ToolError as err:
            stopped = str(err)
        seconds = time.perf_counter() - t0
        stages = [(what, stage_resources(out / stat, device)) for what, stat in (
            ("after DSP mapping (later passes may still remove unused DSPs)", "stat_dsp.json"),
            ("after block-RAM mapping (DSPs and block RAMs mapped; LUTs and FFs not yet)",
             "stat_memory.json"), ("final (asr-hw synth's counts)", "stat.json"))]
    engine = ", ".join(f"{k}={getattr(cfg, k)}" for k in (
        "num_pes", "macs_per_pe", "elementwise_lanes", "activation_queue_depth"))
    print(f"ESE's layer on ese ({engine}), {device.part}, {yosys.version}: Yosys estimates; "
          f"{seconds:,.0f} s" + (f"; stopped: {stopped}" if stopped else ""))
    for what, resources in stages:
        if resources is not None:
            print(f"\n{what}:\n" + markdown_table(*resource_rows(resources)))


if __name__ == "__main__":
    main()
