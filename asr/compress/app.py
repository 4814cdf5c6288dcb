"""``asr-compress``: the Hydra app that turns a trained checkpoint into the sparse low-bit model.

    asr-compress model=exp/fsdd_lstm/model.ckpt compress=ese out=exp/fsdd_lstm/ese.model
    asr-compress model=... compress=bbs data=fsdd finetune.max_epochs=5 out=...   # fine-tune
    asr-compress -m model=... compress.prune.density=0.05,0.1 \
        out='exp/s/d${compress.prune.density}.model'

Without fine-tuning (``finetune.max_epochs=0``) it prunes one-shot and quantizes post-training;
with ``data=<corpus>`` and epochs it fine-tunes on that corpus under the preset's schedule (AGP,
one-shot, DSD or targeted dropout) with quantization-aware training, through Lightning, with
the augmentation the checkpoint was trained with (``finetune.augment=data``: ``data.augment``).
It keeps the epoch of best dev WER once the masks are final (``finetune.keep=best``; ``last``:
the last epoch), or the average of the ``finetune.average_best`` best such epochs when dev finds
it no worse.
Beside ``out`` it writes ``<stem>.config.yaml`` (the resolved config), ``<stem>.storage.md``/
``.json`` (the per-matrix storage table) and, when data is given, ``<stem>.metrics.json``
(greedy WER/CER of the float and the compressed model on the dev set, which fine-tuning epoch
was kept, and the augmentation it trained with). Each file is replaced atomically (a killed run
leaves the previous ``.model`` whole); ``<out>.lock`` keeps a second run off the same ``out``;
a resumed fine-tuning refuses a config other than the one in ``<stem>.finetune/config.yaml``.
"""

from __future__ import annotations

from asr import CONF_DIR as _CONF_DIR
from asr.console import exit_on_version, hydra_early_exit, invoked_as

# `asr-compress --help`/`--version` answer here, before torch and Lightning load (seconds).
if invoked_as("asr-compress"):
    hydra_early_exit("asr-compress", _CONF_DIR / "asr_compress", "asr_compress")

import copy
import json
import logging
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from asr import atomic
from asr.audio import AudioError, load_audio
from asr.compress.accounting import storage_table, table_json, table_markdown, totals
from asr.compress.artifact import build_artifact, compressed_acoustic_model, save_artifact
from asr.compress.callback import CompressionCallback, SettledBestCheckpoint
from asr.compress.config import CompressConfig, validate_against_model
from asr.compress.distill import DistillingCTCModule
from asr.compress.pruning import prune_model
from asr.config_errors import ConfigError, check
from asr.console import quiet_library_noise
from asr.data.datamodule import CTCDataModule
from asr.data.manifest import ManifestError, read_manifest
from asr.decode.recognizer import greedy_error_rates
from asr.features.config import AugmentConfig
from asr.features.extract import FeatureExtractor
from asr.models.acoustic import AcousticModel
from asr.run_lock import run_lock
from asr.train.checkpoint import (
    BEST_CHECKPOINT_NAME,
    CheckpointError,
    LastCheckpoint,
    average_best_checkpoints,
    load_checkpoint,
    read_checkpoint,
    with_atomic_checkpoints,
)
from asr.train.config import CONF_DIR, DataConfig, check_trainer_args, structured_config
from asr.train.module import CTCModule
from asr.train.resume import check_resume_config, resumed_csv_logger

log = logging.getLogger("asr-compress")

TOP_LEVEL_KEYS = {"compress", "data", "trainer", "model", "out", "seed", "resume", "finetune",
                  "calibration", "evaluate", "max_eval_utterances"}
# Keys a resumed fine-tuning may change: where the artifact goes, what is done after the fit
# (calibration, evaluation), logging and data loading. The preset, the model, the data, the
# schedule (finetune.max_epochs sets its length) and the trainer must match. trainer.max_epochs
# is unused: finetune.max_epochs replaces it.
COMPRESS_RESUME_FREE = ("resume", "out", "evaluate", "max_eval_utterances", "calibration",
                        "trainer.max_epochs", "trainer.enable_progress_bar",
                        "trainer.enable_model_summary", "trainer.log_every_n_steps",
                        "data.batch.num_workers", "data.cache_dir", "data.test_manifest")


@dataclass
class FinetuneConfig:
    max_epochs: int = 0
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 0
    qat: bool = True
    keep: str = "best"
    average_best: int = 1
    distill_weight: float = 0.0
    distill_temperature: float = 1.0
    augment: str = "train"

    def __post_init__(self) -> None:
        check(self.keep in ("best", "last"), "finetune.keep", "best or last", self.keep)
        check(self.augment in ("train", "data"), "finetune.augment",
              "train (the checkpoint's training augmentation) or data (data.augment)",
              self.augment)
        check(self.average_best >= 1, "finetune.average_best",
              ">= 1 (1 = the best epoch alone)", self.average_best)
        check(self.average_best == 1 or self.keep == "best", "finetune.average_best",
              "1 with finetune.keep=last (it averages the best epochs)", self.average_best)
        check(self.distill_weight >= 0, "finetune.distill_weight", ">= 0 (0: off)",
              self.distill_weight)
        check(self.distill_temperature > 0, "finetune.distill_temperature", "> 0",
              self.distill_temperature)
        check(self.max_epochs >= 0, "finetune.max_epochs", ">= 0", self.max_epochs)
        check(self.lr > 0, "finetune.lr", "> 0", self.lr)
        check(self.weight_decay >= 0, "finetune.weight_decay", ">= 0", self.weight_decay)
        check(self.warmup_steps >= 0, "finetune.warmup_steps", ">= 0", self.warmup_steps)


@dataclass
class CalibrationConfig:
    manifest: str | None = None
    max_utterances: int = 32

    def __post_init__(self) -> None:
        check(self.max_utterances >= 0, "calibration.max_utterances", ">= 0",
              self.max_utterances)


@dataclass
class CompressJob:
    """The validated pieces of an ``asr-compress`` config."""

    compress: CompressConfig
    finetune: FinetuneConfig
    calibration: CalibrationConfig
    data: DataConfig | None
    model: AcousticModel
    densities: dict[str, float]
    out: Path
    augment: AugmentConfig | None = None  # finetune_augment(); None without fine-tuning


def validate_compress_config(cfg: DictConfig) -> CompressJob:
    """Check everything (including the preset against the model's matrices) before any work."""
    unknown = set(cfg.keys()) - TOP_LEVEL_KEYS
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {sorted(unknown)}; allowed: "
                          f"{sorted(TOP_LEVEL_KEYS)}")
    for key in ("model", "out"):
        if OmegaConf.is_missing(cfg, key):
            raise ConfigError(f"{key}: must be set (model=CKPT out=PATH)")
    compress = structured_config(CompressConfig, cfg.compress, "compress")
    finetune = structured_config(FinetuneConfig, cfg.finetune, "finetune")
    calibration = structured_config(CalibrationConfig, cfg.calibration, "calibration")
    data = structured_config(DataConfig, cfg.data, "data") if cfg.get("data") else None
    if finetune.max_epochs > 0 and data is None:
        raise ConfigError("finetune.max_epochs: fine-tuning needs data=<corpus> (its train "
                          "manifest)")
    check_trainer_args(OmegaConf.to_container(cfg.trainer, resolve=True))
    for manifest in ([data.train_manifest, data.val_manifest] if data else []) + \
            [calibration.manifest]:
        if manifest is not None and not Path(manifest).is_file():
            raise ManifestError(f"{manifest}: no such manifest (prepare the data first)")
    out = Path(cfg.out)
    if out.suffix != ".model":
        raise ConfigError(f"out: {out}: expected a path ending in .model")
    model = load_checkpoint(cfg.model)
    if getattr(model.model, "bidirectional", False):
        raise ConfigError(f"model: {cfg.model} is a bidirectional LSTM; the sparse engine "
                          "runs unidirectional ones (as ESE)")
    densities = validate_against_model(compress, model.model.matrices(),
                                       model.model.model_type)
    augment = finetune_augment(finetune, data, model) if finetune.max_epochs > 0 else None
    return CompressJob(compress, finetune, calibration, data, model, densities, out, augment)


def finetune_augment(finetune: FinetuneConfig, data: DataConfig,
                     model: AcousticModel) -> AugmentConfig:
    """The fine-tuning's augmentation: with ``finetune.augment=train`` the one the checkpoint
    was trained with, since masks the model never saw cost the FSDD models 1.7-3.3 test WER
    points after fine-tuning (docs/results.md); ``data.augment`` with ``finetune.augment=data``
    or when the checkpoint does not say."""
    if finetune.augment == "data":
        return data.augment
    recorded = model.train_augment
    if recorded is None:
        log.warning("%s records no training augmentation; fine-tuning with data.augment",
                    model.path)
        return data.augment
    try:
        augment = AugmentConfig(**recorded)
    except (TypeError, ConfigError) as err:
        raise CheckpointError(f"{model.path}: its recorded training augmentation {recorded} "
                              f"is not usable ({err})") from None
    if augment != data.augment:
        log.info("fine-tuning with the training augmentation of %s (%s), not data.augment "
                 "(finetune.augment=data takes that)", model.path, recorded)
    return augment


def _finetune(cfg: DictConfig, job: CompressJob) -> tuple[dict[str, torch.Tensor], dict]:
    """Fine-tune under the compression callback; returns the final masks and which epoch's
    weights were kept (``finetune.keep``)."""
    ft = job.finetune
    optim = {"optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True,
                           "lr": ft.lr, "weight_decay": ft.weight_decay},
             "warmup_steps": ft.warmup_steps, "schedule": "cosine", "min_lr_ratio": 0.1}
    features = vars(job.model.features)
    module_class = DistillingCTCModule if ft.distill_weight > 0 else CTCModule
    model_config = dict(job.model.model_config)
    if "anneal_steps" in model_config:   # a trained delta LSTM keeps its final thresholds
        model_config["anneal_steps"] = 0
    module = module_class(model_config, features, job.model.vocab.tokens, optim)
    if ft.distill_weight > 0:
        # A copy: job.model.model receives the fine-tuned weights at the end.
        module.attach_teacher(copy.deepcopy(job.model.model), ft.distill_weight,
                              ft.distill_temperature)
    module.model.load_state_dict(job.model.model.state_dict())
    run_dir = job.out.with_suffix(".finetune")
    callback = CompressionCallback(job.compress, job.densities, qat=ft.qat, seed=int(cfg.seed))
    last = run_dir / "checkpoints" / "last.ckpt"
    resuming = bool(cfg.resume) and last.exists()
    if resuming:  # masks and weights of one preset must not be finished under another
        check_resume_config(run_dir / "config.yaml", cfg, str(run_dir),
                            "resume it with that config, or pass resume=false to fine-tune "
                            "afresh", COMPRESS_RESUME_FREE)
        read_checkpoint(last, mmap=True)  # refuse a checkpoint that would run code
    if rank_zero_only.rank == 0:
        atomic.write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    callbacks: list[pl.Callback] = [callback]
    best = None
    if ft.keep == "best":  # keep=last reads no best-epoch checkpoint: write none
        best = SettledBestCheckpoint(callback, save_top_k=ft.average_best,
                                     dirpath=run_dir / "checkpoints",
                                     filename=BEST_CHECKPOINT_NAME,
                                     auto_insert_metric_name=False)
        callbacks.append(best)
    # after the best one: last.ckpt saved at an epoch's end holds its best-epoch record
    callbacks.append(LastCheckpoint(run_dir / "checkpoints", every_n_train_steps=50))
    trainer_args = {**OmegaConf.to_container(cfg.trainer, resolve=True),
                    "max_epochs": ft.max_epochs}
    trainer = pl.Trainer(**with_atomic_checkpoints(trainer_args),
                         default_root_dir=str(run_dir), callbacks=callbacks,
                         logger=resumed_csv_logger(run_dir, last if resuming else None))
    d = job.data
    datamodule = CTCDataModule(d.train_manifest, d.val_manifest, None, features=features,
                               augment=job.augment, batch=d.batch, cache_dir=d.cache_dir,
                               seed=int(cfg.seed))
    trainer.fit(module, datamodule, ckpt_path=str(last) if resuming else None,
                weights_only=True)
    kept = {"keep": ft.keep, "epochs": trainer.current_epoch, "augment": asdict(job.augment)}
    if best is not None and best.best_model_path:
        # Same masks as the last epoch (the schedule had settled); only the weights differ, so
        # an average of settled epochs keeps the masks' zeros.
        chosen, averaged = average_best_checkpoints(trainer, module, datamodule, best,
                                                    ft.average_best)
        state = read_checkpoint(chosen)["state_dict"]
        module.load_state_dict(state)
        kept.update(checkpoint=Path(chosen).name, val_wer=float(best.best_model_score),
                    **averaged)
    else:
        kept["checkpoint"] = "last"
    log.info("fine-tuning: keeping %s", kept["checkpoint"])
    # The schedule's end point (a mask refresh may fall between the last steps).
    views = {k: v for k, v in module.model.matrices().items() if k in job.densities}
    callback.update_masks(views, callback.total_steps)
    # The artifact is built on the CPU, whatever device fine-tuned.
    masks = {name: mask.cpu() for name, mask in callback.masks.items()}
    with torch.no_grad():
        for name, mask in masks.items():
            views[name].mul_(mask.to(views[name].device))
    job.model.model.load_state_dict(module.model.state_dict())
    job.model.model.eval()
    return masks, kept


def _calibration_features(job: CompressJob) -> list[torch.Tensor]:
    manifest = job.calibration.manifest or (job.data.val_manifest if job.data else None)
    if manifest is None or job.calibration.max_utterances == 0:
        return []
    extractor = FeatureExtractor(job.model.features)
    feats = []
    for utt in read_manifest(manifest)[:job.calibration.max_utterances]:
        try:
            feats.append(extractor(load_audio(utt.audio_filepath,
                                              job.model.features.sample_rate)))
        except AudioError as err:
            log.warning("calibration: skipping %s", err)
    return feats


def compress(cfg: DictConfig) -> dict[str, Any]:
    """Validate, prune/fine-tune, quantize, write the artifact; returns its summary.

    The run holds ``<out>.lock`` throughout (it guards ``out``, its side files and the
    ``.finetune`` folder): a second run for the same ``out`` stops at once, naming the PID."""
    job = validate_compress_config(cfg)
    # Under DDP the other ranks are processes rank 0 launched, inside its lock.
    with run_lock(f"{job.out}.lock", f"out {job.out}", "pass another out",
                  enabled=rank_zero_only.rank == 0):
        return _compress(cfg, job)


def _compress(cfg: DictConfig, job: CompressJob) -> dict[str, Any]:
    pl.seed_everything(int(cfg.seed), workers=True)
    evaluate = bool(cfg.evaluate) and job.data is not None
    float_model = copy.deepcopy(job.model) if evaluate else None
    summary: dict[str, Any] = {}
    if job.finetune.max_epochs > 0:
        masks, summary["finetune"] = _finetune(cfg, job)
        if rank_zero_only.rank != 0:
            return summary  # DDP: the ranks end with the same weights; rank 0 writes them
    else:
        masks = prune_model(job.model.model.matrices(), job.densities, job.compress.prune)
    art = build_artifact(job.model.model, masks, job.densities, job.compress,
                         _calibration_features(job))
    art = replace(art, model_config=job.model.model_config, features=vars(job.model.features),
                  vocab_tokens=job.model.vocab.tokens)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    rows = storage_table(art)
    summary["storage"] = totals(rows)
    if evaluate:
        utts = read_manifest(job.data.val_manifest)
        if cfg.max_eval_utterances:
            utts = utts[:int(cfg.max_eval_utterances)]
        float_rates = greedy_error_rates(float_model, utts)
        comp_rates = greedy_error_rates(compressed_acoustic_model(art), utts)
        summary["dev"] = {"manifest": job.data.val_manifest, "utterances": len(utts),
                          "float": float_rates.to_dict(), "compressed": comp_rates.to_dict()}
    save_artifact(job.out, replace(art, config=resolved, source=str(cfg.model),
                                   metrics=copy.deepcopy(summary)))
    # The file's own size (not inside the file: it is known once the file is written).
    file_bytes = job.out.stat().st_size
    summary["storage"]["file_bytes"] = file_bytes
    stem = job.out.with_suffix("")
    atomic.write_text(f"{stem}.config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    atomic.write_text(f"{stem}.storage.md", table_markdown(rows, file_bytes))
    atomic.write_text(f"{stem}.storage.json", table_json(rows, file_bytes))
    atomic.write_text(f"{stem}.metrics.json", json.dumps(summary, indent=2))
    return summary


def _print_summary(out: str, summary: dict[str, Any]) -> None:
    s = summary["storage"]
    print(f"asr-compress: wrote {out}: {s['nnz']}/{s['params']} weights kept "
          f"({100 * s['density']:.1f}%); against float32: {s['entry_ratio']:.1f}x for values "
          f"and indices (ESE's count), {s['ratio']:.1f}x with pointers and codebooks, "
          f"{s['huffman_ratio']:.1f}x Huffman-coded")
    print(f"asr-compress: {s['bytes']} bytes accounted (values, indices, pointers, codebooks), "
          f"{s['file_bytes']} bytes on disk ({s['file_bytes'] / max(1, s['bytes']):.2f}x)")
    if "dev" in summary:
        f, c = summary["dev"]["float"], summary["dev"]["compressed"]
        print(f"asr-compress: dev WER float {100 * f['wer']:.2f}% -> compressed "
              f"{100 * c['wer']:.2f}% (CER {100 * f['cer']:.2f}% -> {100 * c['cer']:.2f}%)")


# Its own config root (conf/asr_compress: the compress, data and trainer groups linked in):
# asr-train's `model` group would otherwise claim the `model=CKPT` override.
@hydra.main(config_path=str(CONF_DIR / "asr_compress"), config_name="asr_compress",
            version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float | None:
    try:
        summary = compress(cfg)
    except (ConfigError, ManifestError, AudioError, CheckpointError) as err:
        print(f"asr-compress: error: {err}", file=sys.stderr)
        sys.exit(2)
    if "storage" in summary:  # not on the other DDP ranks
        _print_summary(cfg.out, summary)
    return summary.get("dev", {}).get("compressed", {}).get("wer")


def main() -> None:
    exit_on_version("asr-compress")   # also when imported under another name (python -m)
    quiet_library_noise()
    _hydra_main()


if __name__ == "__main__":
    main()
