"""ESE's layer as generated RTL, synthesized by Yosys for ESE's FPGA: its DSPs, block RAMs,
LUTs and flip-flops beside the device's capacity (XCKU060: 2,760 DSP48E2, 1,080 RAMB36).

The layer is ``benchmarks/rtl_cosim.py``'s (153 inputs, 1024 cells, projection 512, ESE's
per-matrix densities, random weights, 32 outputs), compressed with the ``ese`` preset and run
through ``asr-hw synth``. The Xilinx counts are Yosys estimates: there is no open place and
route for the part. Yosys takes long on a design this size (docs/rtl-synthesis.md); a result is
cached (``asr-hw synth``'s cache), so a second run prints at once.

    python benchmarks/rtl_synth.py --ese-layer-xcku060 [--num-pes 32] [--timeout 14400]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from rtl_cosim import ese_layer_artifact

from asr.compress.artifact import save_artifact
from asr.tables import markdown_table
from hw.config import load_engine


def synth_ese_layer(device: str, num_pes: int, timeout: float | None, force: bool,
                    cache_dir: str | None) -> tuple[list[str], dict]:
    """``asr-hw synth`` of ESE's layer on the ``ese`` engine with ``num_pes`` PEs: the command
    (as typed, with the artifact's temporary path) and its JSON result."""
    with tempfile.TemporaryDirectory(prefix="ese-layer-") as tmp:
        art = save_artifact(Path(tmp) / "ese_layer.model", ese_layer_artifact())
        cmd = ["asr-hw", "synth", str(art), "--engine", "ese", "--set", f"num_pes={num_pes}",
               "--device", device, "--json"]
        cmd += [f"--timeout={timeout:g}"] if timeout else []
        cmd += ["--force"] if force else []
        cmd += [f"--cache-dir={cache_dir}"] if cache_dir else []
        # exit 1 is "does not fit": the counts are printed all the same
        done = subprocess.run([sys.executable, "-m", "hw.cli", *cmd[1:]], capture_output=True,
                              text=True)
    if done.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed (exit {done.returncode}):\n{done.stderr}")
    return cmd, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ese-layer-xcku060", action="store_true", required=True,
                        help="ESE's layer on ESE's part (the one design this benchmark has)")
    parser.add_argument("--num-pes", type=int, default=32, help="the ese engine's PEs")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="stop Yosys after this long")
    parser.add_argument("--force", action="store_true", help="ignore a cached result")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    cmd, r = synth_ese_layer("xcku060", args.num_pes, args.timeout, args.force, args.cache_dir)
    cfg = load_engine("ese", [f"num_pes={args.num_pes}"])
    rows = [[name, res["label"], f"{res['used']:,g}", f"{res['available']:,}",
             f"{res['percent']:.1f}"] for name, res in r["resources"].items()]
    print(" ".join(cmd))
    print(f"{r['top']} on {r['device']} ({r['part']}): Yosys estimates, "
          f"{'fits' if r['fits'] else 'does NOT fit: ' + str(r['reason'])}; "
          f"{', '.join(r['tools'].values())}; Yosys {r['seconds'].get('yosys', 0):,.0f} s"
          f"{' (cached)' if r['cached'] else ''}; logs: {r['log_dir']}")
    print(markdown_table(["resource", "primitive", "used", "available", "%"], rows))
    print(f"engine: {cfg.num_pes} PEs x {cfg.macs_per_pe} multiplier, "
          f"{cfg.elementwise_lanes} element-wise lanes, {cfg.weight_bits}-bit weights with "
          f"{cfg.index_bits}-bit indices, {cfg.activation_bits}-bit activations; one frame "
          f"{r['frame_cycles']:,.0f} cycles ({r['latency_per_frame_us']:.2f} us at "
          f"{r['clock_mhz']:g} MHz, timing model)")


if __name__ == "__main__":
    main()
