"""Compression ratio of each preset on an ESE-shaped LSTM layer (153 inputs, 1024 cells,
projection 512: ESE's 3.25 M weights; 160 inputs for BBS's banks of 16), against float32.

The weights are random (PyTorch's uniform LSTM initialization): storage depends on shape, density,
formats and the sparsity pattern, so ratios are structural; trained weights change only the
Huffman-coded sizes (their value histogram).

    python benchmarks/storage_ese_shape.py [--presets ese bbs deep_compression spartus]
    python benchmarks/storage_ese_shape.py --presets ese --set compress.prune.max_zero_run=15

Spartus's column-balanced matrices (``compress=spartus``) are stored by the artifact as ESE's
CSC, but their natural format needs less: per PE, column by column, every column holds the
same ``k`` entries, so the column pointers are implied (column ``j`` starts at entry
``j * k``) and no padding is ever needed if each entry carries its absolute local row
(``ceil(log2(rows / num_pes))`` bits) instead of a relative one. That format's bytes are
printed as "balanced CSC": entries * (value bits + local-row bits), nothing else.
"""

from __future__ import annotations

import argparse
import math
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
    parser.add_argument("--presets", nargs="+",
                        default=["ese", "bbs", "deep_compression", "spartus"])
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
        densities = validate_against_model(cfg, views, m.model_type)
        masks = prune_model(views, densities, cfg.prune)
        rows = [r for r in storage_table(build_artifact(m, masks, densities, cfg))
                if r.name != "output"]   # ESE's figures cover the LSTM layer's 9 matrices
        t = totals(rows)
        balanced = ""
        if cfg.prune.method == "column_balanced":
            size = sum(balanced_csc_bytes(masks[r.name], cfg.prune.num_pes, r.value_bits)
                       if r.name in masks else r.bytes for r in rows)
            balanced = f"  balanced CSC {size} bytes ({4 * t['params'] / size:.1f}x)"
        print(f"{name:17s} density {100 * t['density']:5.1f}%  value+index "
              f"{t['entry_ratio']:5.1f}x  with pointers/codebooks {t['ratio']:5.1f}x  "
              f"Huffman {t['huffman_ratio']:5.1f}x{balanced}  "
              f"({time.perf_counter() - t0:.1f} s)")


def balanced_csc_bytes(mask: torch.Tensor, num_pes: int, value_bits: int) -> int:
    """Bytes of a column-balanced matrix as per-PE CSC with implied pointers (see the module
    docstring): every kept weight stores its value and its local row in its PE's share."""
    rows, cols = mask.shape
    local = rows // num_pes
    counts = mask.view(local, num_pes, cols).sum(dim=0)          # kept per (PE, column)
    if not bool((counts == counts.flatten()[0]).all()):
        raise ValueError("balanced_csc_bytes: the mask is not column-balanced")
    row_bits = max(1, math.ceil(math.log2(local)))
    return math.ceil(int(mask.sum()) * (value_bits + row_bits) / 8)


if __name__ == "__main__":
    main()
