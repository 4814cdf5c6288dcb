"""Compression ratio of each preset on an ESE-shaped LSTM layer (153 inputs, 1024 cells,
projection 512: ESE's 3.25 M weights; 160 inputs for BBS's banks of 16), against float32.

The weights are random (PyTorch's uniform LSTM initialization): storage depends on shape, density,
formats and the sparsity pattern, so ratios are structural; trained weights change only the
Huffman-coded sizes (their value histogram).

    python benchmarks/storage_ese_shape.py [--presets ese bbs deep_compression]
    python benchmarks/storage_ese_shape.py --presets ese --set compress.prune.max_zero_run=15
"""

from __future__ import annotations

import argparse
import time

import torch

from asr.compress.accounting import storage_table, totals
from asr.compress.artifact import build_artifact
from asr.compress.config import compress_preset, validate_against_model
from asr.compress.pruning import prune_model
from asr.models import LSTMCTC


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["ese", "bbs", "deep_compression"])
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="compress override for every preset, e.g. "
                        "compress.prune.max_zero_run=15 (repeatable)")
    args = parser.parse_args()
    for name in args.presets:
        cfg = compress_preset(name, *args.overrides)
        t0 = time.perf_counter()
        # BBS banks of 16 need a row length they divide: the 153 inputs are zero-padded to 160
        inputs = 160 if cfg.prune.method == "bank_balanced" else 153
        torch.manual_seed(0)
        m = LSTMCTC(inputs, 32, hidden_size=1024, proj_size=512, num_layers=1)
        views = m.matrices()
        densities = validate_against_model(cfg, views, "lstm")
        masks = prune_model(views, densities, cfg.prune)
        rows = [r for r in storage_table(build_artifact(m, masks, densities, cfg))
                if r.name != "output"]   # ESE's figures cover the LSTM layer's 9 matrices
        t = totals(rows)
        print(f"{name:17s} density {100 * t['density']:5.1f}%  value+index "
              f"{t['entry_ratio']:5.1f}x  with pointers/codebooks {t['ratio']:5.1f}x  "
              f"Huffman {t['huffman_ratio']:5.1f}x  ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
