"""The timing model against ESE's and BBS's published figures, on the ESE-shaped layer.

Prints ESE's per-matrix table next to the ``ese`` preset's (compute and total time per
matrix, the layer's latency and GOP/s), and the ``bbs`` preset's GOP/s at 87.5%
bank-balanced sparsity against BBS's 304.1.

    python benchmarks/hw_validation.py
    python benchmarks/hw_validation.py --set activation_queue_depth=8    # an engine override
    python benchmarks/hw_validation.py --with-padding     # plain load-balanced pattern
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
    ese_shaped_artifact,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="engine override for both presets, e.g. "
                        "activation_queue_depth=64 (repeatable)")
    parser.add_argument("--with-padding", action="store_true",
                        help="prune load-balanced without closing long zero runs, so the CSC "
                        "holds padding entries (ESE's byte column shows none)")
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
    print(f"({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
