"""The timing model against ESE's, BBS's and Spartus's published figures.

Prints ESE's per-matrix table next to the ``ese`` preset's (compute and total time per
matrix, the layer's latency and GOP/s), the ``bbs`` preset's GOP/s at 87.5%
bank-balanced sparsity against BBS's 304.1, and the ``delta`` preset on a Spartus-sized delta
LSTM layer (1024 units, 94% CBTD weight sparsity) with its temporal sparsity swept from 0 to
90%: us per step and effective (dense-equivalent) GOp/s against Spartus's ~1 us and 9.4 TOp/s.

    python benchmarks/hw_validation.py
    python benchmarks/hw_validation.py --set activation_queue_depth=8    # an engine override
    python benchmarks/hw_validation.py --with-padding     # plain load-balanced pattern
    python benchmarks/hw_validation.py --no-spartus       # ESE and BBS only
"""

from __future__ import annotations

import argparse
import time

from asr.compress.config import compress_preset
from asr.tables import markdown_table
from hw.config import load_engine
from hw.integer_model import compile_model
from hw.timing import frame_timing
from hw.validation import (
    BBS_GOPS,
    ESE_GOPS,
    ESE_TABLE,
    ESE_TOTAL_US,
    LSTM_LAYER,
    SPARTUS_GAMMA,
    SPARTUS_HIDDEN,
    SPARTUS_INPUTS,
    SPARTUS_LAYER,
    SPARTUS_TOPS,
    SPARTUS_US_PER_STEP,
    delta_activity,
    ese_shaped_artifact,
    spartus_layer_artifact,
)

SWEEP = [i / 10 for i in range(10)]   # temporal sparsity 0 .. 90%


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="engine override for every preset, e.g. "
                        "activation_queue_depth=64 (repeatable)")
    parser.add_argument("--with-padding", action="store_true",
                        help="prune load-balanced without closing long zero runs, so the CSC "
                        "holds padding entries (ESE's byte column shows none)")
    parser.add_argument("--no-spartus", action="store_true",
                        help="leave out the delta preset's Spartus validation (about 30 s: "
                        "it builds and quantizes a 1024-unit layer)")
    args = parser.parse_args()
    t0 = time.perf_counter()

    def layer(name: str):
        artifact = ese_shaped_artifact(compress_preset(name), padding_free=not args.with_padding)
        return frame_timing(compile_model(artifact, load_engine(name, args.overrides)),
                            include=LSTM_LAYER)

    frame = layer("ese")
    rows = []
    for m in frame.matrices:
        k = m.name.rsplit(".", 1)[1]
        _, compute, total = ESE_TABLE[k]
        rows.append([k, f"{100 * m.density:.1f}", m.entries, compute, f"{m.compute_us:.2f}",
                     f"{m.compute_us / compute:.3f}", total, f"{m.total_us:.2f}",
                     "yes" if m.on_chip else "no"])
    print(markdown_table(["matrix", "density %", "entries", "ESE compute us", "model compute us",
                          "ratio", "ESE total us", "model total us", "on chip"], rows))
    print(f"ese: layer latency {frame.latency_us:.1f} us (ESE {ESE_TOTAL_US}, ratio "
          f"{frame.latency_us / ESE_TOTAL_US:.3f}); {frame.gops():.1f} GOP/s (ESE {ESE_GOPS}, "
          f"ratio {frame.gops() / ESE_GOPS:.3f}); {frame.gops(True):.1f} dense-equivalent")
    bbs = layer("bbs")
    print(f"bbs: layer latency {bbs.latency_us:.2f} us; {bbs.gops():.1f} GOP/s (BBS {BBS_GOPS}, "
          f"ratio {bbs.gops() / BBS_GOPS:.3f})")
    if not args.no_spartus:
        print()
        spartus(args.overrides)
    print(f"({time.perf_counter() - t0:.1f} s)")


def spartus(overrides: list[str]) -> None:
    """The delta preset on the Spartus-sized layer, temporal sparsity swept."""
    cfg = load_engine("delta", overrides)
    artifact = spartus_layer_artifact(cfg.num_pes)
    model = compile_model(artifact, cfg)
    rows = []
    for sparsity in SWEEP:
        acts = delta_activity(SPARTUS_INPUTS, SPARTUS_HIDDEN, 32, sparsity)
        frame = frame_timing(model, acts, include=SPARTUS_LAYER)
        us, gops = frame.latency_us, frame.gops(True)
        rows.append([f"{100 * sparsity:.0f}", f"{frame.cycles:.0f}", f"{us:.3f}",
                     f"{us / SPARTUS_US_PER_STEP:.2f}", f"{gops:.0f}",
                     f"{gops / (SPARTUS_TOPS * 1e3):.2f}"])
    print(f"delta (Spartus-sized layer: {SPARTUS_INPUTS} inputs (assumed), {SPARTUS_HIDDEN} "
          f"units, no projection, {100 * SPARTUS_GAMMA:.0f}% CBTD weight sparsity over "
          f"{cfg.num_pes} PEs, {cfg.mac_arrays} MAC arrays, {cfg.clock_mhz:.0f} MHz)")
    print(markdown_table(["temporal sparsity %", "cycles/step", "us/step",
                          f"/ Spartus {SPARTUS_US_PER_STEP} us", "effective GOp/s",
                          f"/ Spartus {SPARTUS_TOPS} TOp/s"], rows))
    same_multipliers(artifact, overrides)


def same_multipliers(artifact, overrides: list[str]) -> None:
    """The same layer on one ``ese`` channel (32 multipliers, every column every step) and on
    the ``delta`` preset resized to 32 multipliers (one array of 32 PEs), both with 5-bit
    indices (32 local rows per PE: no padding entries) and the weights on chip: the speed-up
    is then the skipped columns' share, at most 1 / (1 - temporal sparsity)."""
    same = [*overrides, "index_bits=5", "onchip_weight_bytes=4194304"]
    ese = frame_timing(compile_model(artifact, load_engine("ese", same)), include=SPARTUS_LAYER)
    model = compile_model(artifact, load_engine("delta", [*same, "num_pes=32", "mac_arrays=1"]))
    rows = []
    for sparsity in (0.0, 0.5, 0.7, 0.9):
        acts = delta_activity(SPARTUS_INPUTS, SPARTUS_HIDDEN, 32, sparsity)
        frame = frame_timing(model, acts, include=SPARTUS_LAYER)
        rows.append([f"{100 * sparsity:.0f}", f"{ese.latency_us:.2f}", f"{frame.latency_us:.2f}",
                     f"{ese.latency_us / frame.latency_us:.2f}",
                     f"{1 / (1 - sparsity):.2f}"])
    print("same layer, 32 multipliers each (ese: one channel, every column; delta: num_pes=32 "
          "mac_arrays=1), both index_bits=5 and every weight on chip")
    print(markdown_table(["temporal sparsity %", "ese us/step", "delta us/step", "speed-up",
                          "1 / (1 - sparsity)"], rows))


if __name__ == "__main__":
    main()
