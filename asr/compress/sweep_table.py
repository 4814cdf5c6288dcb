"""Tabulate an ``asr-compress -m`` sweep: WER against density for every pruning method (or any
two config keys), from the ``<stem>.metrics.json`` and ``<stem>.config.yaml`` each point wrote.

    python -m asr.compress.sweep_table 'exp/fsdd_wavenet/density/*.model' \
        --rows compress.prune.method --cols compress.prune.density
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from asr import tables


def load_points(pattern: str) -> list[tuple[dict, dict]]:
    """(resolved config, metrics) of every finished point matching ``pattern``."""
    points = []
    for path in sorted(glob.glob(pattern)):
        stem = Path(path).with_suffix("")
        metrics = Path(f"{stem}.metrics.json")
        config = Path(f"{stem}.config.yaml")
        if metrics.is_file() and config.is_file():
            points.append((OmegaConf.to_container(OmegaConf.load(config)),
                           json.loads(metrics.read_text())))
    return points


def _get(cfg: dict, dotted: str):
    for key in dotted.split("."):
        cfg = cfg[key]
    return cfg


def markdown_table(points: list[tuple[dict, dict]], rows: str, cols: str,
                   metric: str = "wer") -> str:
    """Rows by one config key, columns by another; cells: compressed dev ``metric`` in % with
    the measured density; a header line gives the float model's figure."""
    cells: dict = {}
    row_keys, col_keys = [], []
    floats = set()
    for cfg, m in points:
        r, c = _get(cfg, rows), _get(cfg, cols)
        row_keys += [r] if r not in row_keys else []
        col_keys += [c] if c not in col_keys else []
        dev = m.get("dev", {})
        if dev:
            floats.add(round(100 * dev["float"][metric], 2))
            cells[r, c] = (100 * dev["compressed"][metric], 100 * m["storage"]["density"])
    col_keys.sort(key=lambda v: -v if isinstance(v, int | float) else 0)
    table = [[r] + [f"{cells[r, c][0]:.2f} ({cells[r, c][1]:.1f}%)" if (r, c) in cells else "-"
                    for c in col_keys] for r in row_keys]
    header = [rows + " \\ " + cols, *map(str, col_keys)]
    return (f"float model: dev {metric.upper()} {', '.join(f'{f:.2f}%' for f in sorted(floats))}"
            "\n\n" + tables.markdown_table(header, table) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr.compress.sweep_table",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pattern", help="glob of the sweep's .model files (quoted)")
    parser.add_argument("--rows", default="compress.prune.method")
    parser.add_argument("--cols", default="compress.prune.density")
    parser.add_argument("--metric", default="wer", choices=["wer", "cer"])
    args = parser.parse_args(argv)
    points = load_points(args.pattern)
    if not points:
        print(f"sweep_table: no finished points match {args.pattern}", file=sys.stderr)
        return 2
    print(markdown_table(points, args.rows, args.cols, args.metric), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
