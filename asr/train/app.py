"""``asr-train``: the Hydra app that trains a CTC acoustic model with Lightning.

    asr-train experiment=fsdd_lstm                     # a preset from conf/experiment/
    asr-train data=synthetic model=wavenet_small trainer.max_epochs=5
    asr-train experiment=fsdd_lstm resume=true         # continue a killed run
    asr-train experiment=speechocean762_lstm_pretrained   # fine-tune (init_from=CKPT)
    asr-train -m experiment=fsdd_lstm optim.optimizer.lr=1e-3,3e-3   # a sweep

Everything a run makes lives in its run folder (``run_dir``, default ``exp/<name>``): the
resolved ``config.yaml``, ``checkpoints/`` (the ``average_best`` best by validation WER and
``last.ckpt``), CSV and TensorBoard logs, ``model.ckpt`` (the best checkpoint, or the average
of the ``average_best`` best when that validates no worse) and ``metrics.json``. Every file
is written atomically (a killed run leaves the previous version whole); the run holds
``.lock`` in the folder, so a second run there stops at once; ``resume=true`` refuses a config
that differs from the saved one in anything but where the run lives and how long it goes on.
"""

from __future__ import annotations

from asr import CONF_DIR as _CONF_DIR
from asr.console import exit_on_version, hydra_early_exit, invoked_as

# `asr-train --help`/`--version` answer here, before torch and Lightning load (seconds).
if invoked_as("asr-train"):
    hydra_early_exit("asr-train", _CONF_DIR / "asr_train", "train")

import json
import logging
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

from asr import atomic
from asr.audio import AudioError
from asr.config_errors import ConfigError
from asr.console import quiet_library_noise
from asr.data.datamodule import CTCDataModule
from asr.data.manifest import ManifestError, read_manifest
from asr.features.global_cmvn import estimate_global_cmvn
from asr.run_lock import run_lock
from asr.text.vocab import CharVocab
from asr.train.checkpoint import (
    BEST_CHECKPOINT_NAME,
    CheckpointError,
    LastCheckpoint,
    RunCheckpoint,
    average_best_checkpoints,
    read_checkpoint,
    with_atomic_checkpoints,
)
from asr.train.config import TRAIN_CONF_DIR, TrainSpec, validate_train_config
from asr.train.module import CTCModule
from asr.train.resume import (
    TRAIN_DERIVED,
    TRAIN_RESUME_FREE,
    check_resume_config,
    resumed_csv_logger,
)

log = logging.getLogger("asr-train")


def run_dir_of(cfg: DictConfig) -> Path:
    """The run folder: Hydra's output dir inside the app (per job in a sweep), else run_dir."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.run_dir)


def _with_global_cmvn(cfg: DictConfig, spec: TrainSpec) -> TrainSpec:
    """Estimate ``normalize: global`` statistics from the training manifest and write them
    into ``cfg.features`` (so they reach the saved config and the checkpoint)."""
    files = [u.audio_filepath for u in read_manifest(spec.data.train_manifest)]
    mean, std = estimate_global_cmvn(files, spec.features, seed=int(cfg.seed))
    with open_dict(cfg):
        cfg.features.global_mean = mean
        cfg.features.global_std = std
    return replace(spec, features=replace(spec.features, global_mean=mean, global_std=std))


def train(cfg: DictConfig) -> dict[str, float]:
    """Validate ``cfg``, train, test ``model.ckpt`` (best or averaged); returns the metrics.

    The run holds ``run_dir/.lock`` throughout: a second run on the same folder stops at once
    (:class:`~asr.run_lock.FolderInUseError`, naming the holder's PID)."""
    spec = validate_train_config(cfg)  # every config error surfaces before any data is read
    run_dir = run_dir_of(cfg)
    # Under DDP the other ranks are processes rank 0 launched, inside its lock.
    with run_lock(run_dir / ".lock", f"run_dir {run_dir}", "pass another run_dir",
                  enabled=rank_zero_only.rank == 0):
        return _train(cfg, spec, run_dir)


def _train(cfg: DictConfig, spec: TrainSpec, run_dir: Path) -> dict[str, float]:
    ckpt_dir = run_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if last.exists() and not cfg.resume:
        if not cfg.overwrite:
            raise ConfigError(f"resume: {run_dir} already holds a run ({last}); pass "
                              "resume=true to continue it or overwrite=true to start over")
        shutil.rmtree(ckpt_dir)
    if cfg.resume and not last.exists():
        raise ConfigError(f"resume: true, but {last} does not exist, so there is nothing to "
                          "continue; pass resume=false to start a new run")
    if cfg.resume:
        check_resume_config(run_dir / "config.yaml", cfg, str(run_dir),
                            "resume it with that config, or pass resume=false overwrite=true "
                            "to start over", TRAIN_RESUME_FREE, TRAIN_DERIVED)
    for manifest in (spec.data.train_manifest, spec.data.val_manifest, spec.data.test_manifest):
        if manifest is not None and not Path(manifest).is_file():
            raise ManifestError(f"{manifest}: no such manifest (prepare the data first, e.g. "
                                "recipes/<corpus>/prepare.sh)")
    if spec.features.normalize == "global" and spec.features.global_mean is None:
        spec = _with_global_cmvn(cfg, spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    # Under DDP every rank runs this function (Lightning relaunches the command per rank);
    # only rank 0 writes the run folder's files.
    if rank_zero_only.rank == 0:
        atomic.write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    pl.seed_everything(int(cfg.seed), workers=True)
    module = CTCModule(spec.model, OmegaConf.to_container(cfg.features, resolve=True),
                       CharVocab().tokens, spec.optim)
    resuming = bool(cfg.resume) and last.exists()
    if resuming:  # refuse a checkpoint that would run code before Lightning opens it
        read_checkpoint(last, mmap=True)
    if spec.init_state is not None and not resuming:  # a resumed run has its own weights
        module.model.load_state_dict(spec.init_state)
        log.info("weights initialized from %s", spec.init_from)
    datamodule = CTCDataModule(
        spec.data.train_manifest, spec.data.val_manifest, spec.data.test_manifest,
        features=spec.features, augment=spec.data.augment, batch=spec.data.batch,
        cache_dir=spec.data.cache_dir, seed=int(cfg.seed),
    )
    best_ckpt = RunCheckpoint(dirpath=ckpt_dir, filename=BEST_CHECKPOINT_NAME,
                              auto_insert_metric_name=False, monitor="val_wer", mode="min",
                              save_top_k=int(cfg.average_best))
    # A separate step-based callback keeps last.ckpt fresh, so a kill loses little work.
    last_ckpt = LastCheckpoint(ckpt_dir, int(cfg.checkpoint_every_n_steps))
    callbacks = [best_ckpt, last_ckpt, LearningRateMonitor(logging_interval="step")]
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStopping(monitor="val_wer", mode="min",
                                       patience=int(cfg.early_stopping_patience),
                                       check_on_train_epoch_end=False))
    loggers = [resumed_csv_logger(run_dir, last if resuming else None),
               TensorBoardLogger(run_dir, name="tensorboard", version="")]
    trainer = pl.Trainer(**with_atomic_checkpoints(spec.trainer), default_root_dir=str(run_dir),
                         callbacks=callbacks, logger=loggers)
    trainer.fit(module, datamodule, ckpt_path=str(last) if resuming else None, weights_only=True)

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    best = best_ckpt.best_model_path
    if best:
        metrics["best_val_wer"] = float(best_ckpt.best_model_score)
        chosen, averaged = average_best_checkpoints(trainer, module, datamodule, best_ckpt,
                                                    int(cfg.average_best))
        metrics.update(averaged)
        if trainer.is_global_zero:
            atomic.copy_file(chosen, run_dir / "model.ckpt")
        if spec.data.test_manifest is not None and cfg.test_after_fit:
            for result in trainer.test(module, datamodule, ckpt_path=chosen, verbose=False,
                                       weights_only=True):
                metrics.update({k: float(v) for k, v in result.items()})
    metrics["global_step"] = trainer.global_step
    metrics["epochs"] = trainer.current_epoch
    if trainer.is_global_zero:
        atomic.write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics


# Its own config root (conf/asr_train): the other apps' groups stay out of its --help.
@hydra.main(config_path=str(TRAIN_CONF_DIR), config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except (ConfigError, ManifestError, AudioError, CheckpointError) as err:
        print(f"asr-train: error: {err}", file=sys.stderr)
        sys.exit(2)
    # A sweeper optimizing the run reads this value.
    return metrics.get("best_val_wer")


def main() -> None:
    exit_on_version("asr-train")   # also when imported under another name (python -m)
    quiet_library_noise()
    _hydra_main()


if __name__ == "__main__":
    main()
