"""Resuming a run: the config it was started with must be the one it continues with, and the
logs written before the kill are kept.

A resumed run restores weights, optimizer, schedule and (for asr-compress) masks from its
checkpoint; with a different model, data or preset it would silently mix two experiments (an
``ese`` label over ``bbs`` masks). :func:`check_resume_config` compares the resolved config
saved when the run started with the current one and names every key that differs.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger

from asr.config_errors import ConfigError
from asr.train.checkpoint import read_checkpoint

log = logging.getLogger(__name__)

# Keys that may change when asr-train resumes: where the run lives, how long it goes on, how
# it logs and loads data, and what is done after the fit. Everything else (model, features,
# data, optimizer, seed, precision, devices) must match. A key ignores its sub-keys too.
TRAIN_RESUME_FREE = (
    "resume", "overwrite", "run_dir", "name", "init_from", "test_after_fit",
    "early_stopping_patience", "checkpoint_every_n_steps", "trainer.max_epochs",
    "trainer.max_steps", "trainer.max_time", "trainer.enable_progress_bar",
    "trainer.enable_model_summary", "trainer.log_every_n_steps", "data.batch.num_workers",
    "data.cache_dir", "data.test_manifest",
)
# Values estimated from the data when the config leaves them unset (global CMVN): the saved
# config holds the estimate, the current one null until it is estimated again.
TRAIN_DERIVED = ("features.global_mean", "features.global_std")

_ABSENT = object()
_SHOWN = 8  # differences listed in the message


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def _free(key: str, free: Iterable[str]) -> bool:
    return any(key == f or key.startswith(f + ".") for f in free)


def config_differences(saved: dict[str, Any], current: dict[str, Any],
                       free: Iterable[str] = (), derived: Iterable[str] = ()
                       ) -> list[tuple[str, Any, Any]]:
    """``(key, saved value, current value)`` of every leaf that differs, by dotted key, except
    the ``free`` keys (and their sub-keys) and the ``derived`` keys the current config leaves
    unset. A key missing on one side has the value ``_ABSENT`` there."""
    a, b = _flatten(saved), _flatten(current)
    free, derived = tuple(free), tuple(derived)
    diffs = []
    for key in sorted(set(a) | set(b)):
        old, new = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if _free(key, free) or (key in derived and new in (None, _ABSENT)):
            continue
        if old != new:
            diffs.append((key, old, new))
    return diffs


def _show(value: Any) -> str:
    if value is _ABSENT:
        return "(unset)"
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def check_resume_config(saved_file: Path, cfg: DictConfig, where: str, hint: str,
                        free: Iterable[str] = (), derived: Iterable[str] = ()) -> None:
    """Raise :class:`ConfigError` when ``cfg`` differs from the resolved config saved in
    ``saved_file`` in any key but ``free``: "resume: the run in <where> was started with a
    different config: model.hidden_size 48 -> 64; <hint>". A run without a saved config (one
    killed before writing it) is not checked."""
    if not saved_file.is_file():
        log.warning("resume: %s has no %s; cannot check that the config is the one the run "
                    "started with", where, saved_file.name)
        return
    try:
        saved = OmegaConf.to_container(OmegaConf.load(saved_file), resolve=True)
    except Exception as err:  # a damaged or foreign file: say so rather than guess
        raise ConfigError(f"resume: {saved_file} is not readable ({err}); {hint}") from None
    current = OmegaConf.to_container(cfg, resolve=True)
    diffs = config_differences(saved if isinstance(saved, dict) else {}, current, free, derived)
    if not diffs:
        return
    listed = "; ".join(f"{k} {_show(old)} -> {_show(new)}" for k, old, new in diffs[:_SHOWN])
    more = f"; and {len(diffs) - _SHOWN} more" if len(diffs) > _SHOWN else ""
    raise ConfigError(f"resume: the run in {where} was started with a different config: "
                      f"{listed}{more}; {hint}")


def resumed_csv_logger(run_dir: Path, resumed_from: Path | None) -> CSVLogger:
    """The CSV logger of ``run_dir/logs``; a resumed run keeps the rows logged before.

    Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts; the rows up to
    the resumed checkpoint's step are written back first (later ones would be logged twice).
    """
    logger = CSVLogger(run_dir, name="logs", version="")
    path = Path(logger.log_dir) / "metrics.csv"
    if resumed_from is None or not path.is_file():
        return logger
    # mmap: only the step is read, not the weights and optimizer state Lightning loads later
    step = read_checkpoint(resumed_from, mmap=True)["global_step"]
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("step", "") == "" or int(r["step"]) <= step]
    writer = logger.experiment  # creating the writer removes the old file
    writer.metrics = rows
    writer.save()
    return logger
