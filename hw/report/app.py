"""``asr-hw report``: the Hydra app (``conf/asr_hw_report/report.yaml``).

    asr-hw report models.lstm=exp/synthetic_lstm/model.ckpt data=synthetic hw=ese
    asr-hw report -m hw=ese,bbs models.lstm=... models.wavenet=... out=exp/report/synthetic
    asr-hw report -m compress.prune.density=0.05,0.1,0.2 quant.bits=8,12,16 hw=ese,bbs ...

A single run evaluates one point and writes the report of every point under ``out``; with
``-m`` the launcher (joblib: ``hydra.launcher.n_jobs`` processes) runs one job per point and
:class:`WriteReportAfterSweep` writes the report once they have all finished. On a cluster the
same sweep runs through the submitit (SLURM) or Ray launcher, see ``docs/report.md``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from asr.audio import AudioError
from asr.compress.artifact import ArtifactError
from asr.config_errors import ConfigError
from asr.console import quiet_library_noise
from asr.data.manifest import ManifestError
from asr.tables import markdown_table
from asr.train.checkpoint import CheckpointError
from asr.train.config import CONF_DIR
from hw.report.config import apply_quant_bits, validate_report_config
from hw.report.document import summary_table, write_report
from hw.report.point import evaluate_point, load_points
from hw.rtl.tools import ToolError

log = logging.getLogger("asr-hw report")
INPUT_ERRORS = (ConfigError, ManifestError, AudioError, CheckpointError, ArtifactError,
                ToolError)


def report_title(cfg: DictConfig) -> str:
    if cfg.get("title"):
        return str(cfg.title)
    return f"{cfg.data.name}: {', '.join(cfg.models)} on the modeled engines"


def write_and_print(cfg: DictConfig) -> list[dict[str, Any]]:
    """Aggregate every point under ``cfg.out`` into the report; print its table and path."""
    out = Path(cfg.out)
    points = load_points(out)
    decoder = "greedy" if "greedy" in cfg.decoders else str(cfg.decoders[0])
    rows, files = write_report(points, out, report_title(cfg), decoder)
    header, cells = summary_table(rows)
    keep = [i for i, h in enumerate(header) if h not in ("GOP/s", "uJ/utt", "ms/utt")]
    print(markdown_table([header[i] for i in keep], [[r[i] for i in keep] for r in cells]))
    failed = [(p["id"], f) for p in points for f in p.get("failures", [])]
    for pid, f in failed:
        print(f"asr-hw report: point {pid}, model {f['model'] or '(all)'} failed: {f['error']}",
              file=sys.stderr)
    print(f"\nasr-hw report: {len(points)} point(s), {len(failed)} failure(s); wrote "
          f"{files[0]} (and report.html, report.json, {len(files) - 3} figures)")
    return points


class WriteReportAfterSweep(Callback):
    """Hydra callback: after every point of a ``-m`` sweep has run, write the one report."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        points = write_and_print(config)
        if points and all(p.get("status") == "failed" for p in points):
            # nothing was evaluated: the command failed, whatever the launcher says
            print("asr-hw report: error: every point failed", file=sys.stderr)
            sys.exit(1)


def _limit_threads() -> None:
    """Points running side by side share the cores instead of each taking all of them; a
    caller's ``OMP_NUM_THREADS`` (a recipe running other jobs beside this one) caps that."""
    import torch

    n_jobs = OmegaConf.select(HydraConfig.get(), "launcher.n_jobs", default=1) or 1
    cores = os.cpu_count() or 1
    jobs = cores if n_jobs < 0 else max(1, n_jobs)
    threads = max(1, cores // jobs)
    cap = os.environ.get("OMP_NUM_THREADS", "")
    if cap.isdigit() and int(cap) > 0:
        threads = min(threads, int(cap))
    torch.set_num_threads(threads)


@hydra.main(config_path=str(CONF_DIR / "asr_hw_report"), config_name="report",
            version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    quiet_library_noise()   # again: a launcher's worker process starts without the filters
    hc = HydraConfig.get()
    overrides = list(hc.overrides.task)
    if hc.mode == RunMode.MULTIRUN:
        # Each point records its own failure; the callback reports them all at the end.
        _limit_threads()
        evaluate_point(cfg, overrides, Path(cfg.out), in_launcher=True)
        return
    try:
        # a single run stops on bad input before any work
        validate_report_config(apply_quant_bits(cfg))
    except INPUT_ERRORS as err:
        print(f"asr-hw report: error: {err}", file=sys.stderr)
        sys.exit(2)
    result = evaluate_point(cfg, overrides, Path(cfg.out))
    write_and_print(cfg)
    if result["failures"]:
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``asr-hw report ARGS`` (Hydra reads ``sys.argv``)."""
    if argv is not None:
        sys.argv = ["asr-hw report", *argv]
    quiet_library_noise()
    _hydra_main()
