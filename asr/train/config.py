"""Structured configs of ``asr-train`` and their validation before any data is read.

The composed Hydra config has the groups ``data``, ``features``, ``model``, ``optim`` and
``trainer`` plus a few top-level keys. :func:`validate_train_config` checks every group against
its dataclass (unknown keys, wrong types, impossible values), resolves the model's and the
optimizer's ``_target_`` and binds their arguments, and checks the Lightning ``Trainer``
arguments; each error names the key.
"""

from __future__ import annotations

import inspect
import logging
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from asr import CONF_DIR
from asr.config_errors import ConfigError, check
from asr.data.datamodule import BatchConfig
from asr.features.config import AugmentConfig, FeatureConfig
from asr.text.vocab import CharVocab
from asr.train.checkpoint import CheckpointError, load_checkpoint
from asr.train.module import build_model

# asr-train's config root: train.yaml and the groups data, features, model, optim, trainer and
# experiment (see asr.CONF_DIR).
TRAIN_CONF_DIR = CONF_DIR / "asr_train"


@dataclass
class DataConfig:
    name: str = "data"
    train_manifest: str = "???"
    val_manifest: str = "???"
    test_manifest: str | None = None
    cache_dir: str | None = None
    batch: BatchConfig = field(default_factory=BatchConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class OptimConfig:
    optimizer: dict[str, Any] = field(default_factory=lambda: {
        "_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3})
    warmup_steps: int = 200
    schedule: str = "cosine"
    min_lr_ratio: float = 0.05

    def __post_init__(self) -> None:
        check(self.warmup_steps >= 0, "optim.warmup_steps", ">= 0", self.warmup_steps)
        check(self.schedule in ("cosine", "linear", "constant"), "optim.schedule",
              "cosine, linear or constant", self.schedule)
        check(0.0 <= self.min_lr_ratio <= 1.0, "optim.min_lr_ratio", "in [0, 1]",
              self.min_lr_ratio)


TOP_LEVEL_KEYS = {"data", "features", "model", "optim", "trainer", "name", "seed", "resume",
                  "overwrite", "run_dir", "test_after_fit", "early_stopping_patience",
                  "checkpoint_every_n_steps", "average_best", "init_from", "experiment"}


@dataclass
class TrainSpec:
    """The validated pieces of a training config."""

    data: DataConfig
    features: FeatureConfig
    model: dict[str, Any]
    optim: dict[str, Any]
    trainer: dict[str, Any]
    init_from: str | None = None
    # the init_from checkpoint's weights, read once while validating
    init_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)


def structured_config(schema: type, node: Any, prefix: str) -> Any:
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or ""
        raise ConfigError(f"{prefix}{'.' + key if key else ''}: {err.msg}") from None


def _check_target(node: dict[str, Any], prefix: str, provided: tuple[str, ...] = ()) -> None:
    target = node.get("_target_")
    if not target:
        raise ConfigError(f"{prefix}._target_: missing (the class or function to build)")
    try:
        fn = get_method(target)
    except Exception as err:  # Hydra raises several kinds for an unknown path
        raise ConfigError(f"{prefix}._target_: cannot import {target!r} ({err})") from None
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    for key in node:
        if not key.startswith("_") and key not in params:
            allowed = sorted(k for k in params if k not in ("self", *provided))
            raise ConfigError(f"{prefix}.{key}: unknown argument of {target}; "
                              f"allowed: {allowed}")


def check_trainer_args(trainer: dict[str, Any]) -> None:
    """Every ``trainer.*`` key is a Trainer argument of the right type, and Lightning accepts
    the set: for CPU runs a Trainer is built from them (no logger, no checkpoints, nothing
    written), so a bad precision or device count fails here, before any data is read."""
    params = inspect.signature(pl.Trainer.__init__).parameters
    for key in trainer:
        if key not in params:
            raise ConfigError(f"trainer.{key}: not an argument of pytorch_lightning.Trainer")
    for key in ("callbacks", "logger", "default_root_dir"):
        if key in trainer:
            raise ConfigError(f"trainer.{key}: set by asr-train itself (run_dir, loggers and "
                              "checkpoints are configured from the top-level keys)")
    for key, value in trainer.items():
        _check_plain_type(f"trainer.{key}", params[key].annotation, value)
    for key in ("max_epochs", "max_steps"):
        if isinstance(trainer.get(key), int):
            check(trainer[key] >= -1, f"trainer.{key}", ">= -1 (-1: no limit)", trainer[key])
    if str(trainer.get("accelerator", "auto")) not in ("cpu", "auto"):
        return   # a GPU (or other) preset is checked where it runs: this machine may have none
    quiet = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    level = quiet.level
    quiet.setLevel(logging.WARNING)   # the dry build's "GPU available" lines are not news
    try:
        pl.Trainer(**{**trainer, "logger": False, "enable_checkpointing": False,
                      "enable_progress_bar": False, "enable_model_summary": False})
    except Exception as err:  # Lightning raises several kinds for a bad combination
        raise ConfigError(f"trainer: {err}") from None
    finally:
        quiet.setLevel(level)


_PLAIN = {"int": int, "float": float, "bool": bool, "str": str}


def _check_plain_type(key: str, annotation: Any, value: Any) -> None:
    """``value`` fits an annotation made of plain types (``int | str | None``, ...); other
    annotations are left to the callee. Lightning's annotations are strings here."""
    words = re.findall(r"[A-Za-z_]+", str(annotation).replace("typing.", ""))
    names = [{"NoneType": "None"}.get(w, w) for w in words if w not in ("Optional", "Union")]
    if not names or any(n not in (*_PLAIN, "None") for n in names):
        return
    types = tuple(_PLAIN[n] for n in names if n in _PLAIN)
    ok = ((value is None and "None" in names)
          or (isinstance(value, types) and not (isinstance(value, bool) and bool not in types))
          or (float in types and isinstance(value, int) and not isinstance(value, bool)))
    if not ok:
        raise ConfigError(f"{key}: expected {' or '.join(names)}, got {value!r}")


def check_optimizer(optimizer: dict[str, Any], prefix: str = "optim.optimizer") -> None:
    """Build the optimizer over one dummy parameter: torch's own checks (a negative or
    non-numeric learning rate, bad betas) fail here, before any data is read."""
    from hydra.utils import instantiate

    target = get_method(optimizer["_target_"])
    for key, param in inspect.signature(target).parameters.items():
        if key in optimizer and isinstance(param.default, float) and (
                isinstance(optimizer[key], bool) or not isinstance(optimizer[key], int | float)):
            raise ConfigError(f"{prefix}.{key}: expected a number, got {optimizer[key]!r}")
    try:
        instantiate(optimizer)([torch.nn.Parameter(torch.zeros(1))])
    except Exception as err:  # torch raises ValueError or TypeError, Hydra wraps them
        raise ConfigError(f"{prefix}: {str(err).splitlines()[-1].strip() or err}") from None


def validate_train_config(cfg: DictConfig) -> TrainSpec:
    """Check the whole training config; raise :class:`ConfigError` naming the first bad key."""
    unknown = set(cfg.keys()) - TOP_LEVEL_KEYS
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {sorted(unknown)}; allowed: "
                          f"{sorted(TOP_LEVEL_KEYS)}")
    data = structured_config(DataConfig, cfg.data, "data")
    if "???" in (data.train_manifest, data.val_manifest):
        raise ConfigError("data.train_manifest and data.val_manifest must be set")
    features = FeatureConfig.from_dict(OmegaConf.to_container(cfg.features, resolve=True))
    model = OmegaConf.to_container(cfg.model, resolve=True)
    _check_target(model, "model", provided=("input_dim", "vocab_size"))
    for key in ("input_dim", "vocab_size"):
        if key in model:
            raise ConfigError(f"model.{key}: derived from the features and the vocabulary; "
                              "remove it from the model config")
    optim_cfg = structured_config(OptimConfig, cfg.optim, "optim")
    _check_target(optim_cfg.optimizer, "optim.optimizer", provided=("params",))
    if not optim_cfg.optimizer.get("_partial_", False):
        raise ConfigError("optim.optimizer._partial_: must be true (the parameters are "
                          "supplied by the training module)")
    check_optimizer(optim_cfg.optimizer)
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    check_trainer_args(trainer)
    check(int(cfg.seed) >= 0, "seed", ">= 0", cfg.seed)
    for key in ("resume", "overwrite"):
        if key in cfg:
            check(isinstance(cfg[key], bool), key, "true or false", cfg[key])
    check(int(cfg.average_best) >= 1, "average_best", ">= 1 (1 = the best checkpoint alone)",
          cfg.average_best)
    # Build the model on the meta device: its own checks run (impossible sizes fail here, not
    # mid-run) without allocating or initializing a single weight.
    with torch.device("meta"):
        shapes = state_shapes(build_model(model, features.dim, len(CharVocab())))
    init_from = cfg.get("init_from")
    init_state = None
    if init_from is not None:
        init_from = str(init_from)
        init_state = check_init_checkpoint(init_from, features, shapes)
    optim = {"optimizer": optim_cfg.optimizer, "warmup_steps": optim_cfg.warmup_steps,
             "schedule": optim_cfg.schedule, "min_lr_ratio": optim_cfg.min_lr_ratio}
    return TrainSpec(data, features, model, optim, trainer, init_from, init_state)


def state_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Every entry of the model's state dict and its shape."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_init_checkpoint(path: str, features: FeatureConfig,
                          shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """``init_from``: the checkpoint must be one ``asr-train`` wrote, computed on the same
    features (the weights mean nothing on others) and hold a weight of the same shape for
    every parameter of this run's model. Dropout and other shape-free settings may differ;
    so may ``global_mean``/``global_std``, which a ``normalize: global`` run re-estimates on
    its own corpus. Returns the checkpoint's model weights."""
    try:
        pretrained = load_checkpoint(path)
    except CheckpointError as err:
        raise ConfigError(f"init_from: {err}") from None
    free = {"global_mean", "global_std"}
    theirs, ours = asdict(pretrained.features), asdict(features)
    for key in ours.keys() - free:
        if theirs[key] != ours[key]:
            raise ConfigError(f"init_from: {path} was trained on features.{key}={theirs[key]!r}, "
                              f"this run has features.{key}={ours[key]!r}; use the "
                              "checkpoint's feature config")
    if pretrained.vocab.tokens != CharVocab().tokens:
        raise ConfigError(f"init_from: {path} has another vocabulary than this run's")
    state = state_shapes(pretrained.model)
    for key, shape in shapes.items():
        if state.get(key) != shape:
            raise ConfigError(f"init_from: {path} has no weight {key} of shape {shape} "
                              f"(it has {state.get(key)}); the model config must build the "
                              "checkpoint's architecture")
    extra = sorted(state.keys() - shapes.keys())
    if extra:
        raise ConfigError(f"init_from: {path} has weights this run's model lacks ({extra[0]}, "
                          f"{len(extra)} in all); the model config must build the checkpoint's "
                          "architecture")
    return pretrained.model.state_dict()
