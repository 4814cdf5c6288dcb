"""Loading a training checkpoint on its own: the model, its vocabulary and its features."""

from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import OmegaConf

from asr.features.config import FeatureConfig
from asr.models.acoustic import AcousticModel
from asr.text.vocab import CharVocab
from asr.train.module import build_model

if TYPE_CHECKING:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

log = logging.getLogger(__name__)

# The best-by-validation-WER checkpoints of asr-train and asr-compress's fine-tuning, for
# ModelCheckpoint(filename=..., auto_insert_metric_name=False): best-epoch07-val_wer0.0594.ckpt.
# No '=' in the name, so a path to one passes as a Hydra override value unquoted.
BEST_CHECKPOINT_NAME = "best-epoch{epoch:02d}-val_wer{val_wer:.4f}"


class CheckpointError(ValueError):
    """A file that is not a usable training checkpoint; the message names it."""


def read_checkpoint(path: str | Path, map_location: str = "cpu", mmap: bool = False
                    ) -> dict[str, Any]:
    """A checkpoint file's dict, read without running code: ``weights_only=True`` unpickles
    tensors, containers and plain values only, so a file with a pickle payload (a ``.ckpt``
    shared by someone else) fails here instead of executing. :class:`CheckpointError` names
    the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found is None:   # not a pickle of allowed types at all: a damaged file
            detail = str(err).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
            raise CheckpointError(f"{path}: not a readable checkpoint ({detail})") from None
        raise CheckpointError(f"{path}: refused: the file holds {found.group(1)}, not "
                              "only tensors and plain values, and loading it could run code; "
                              "nothing was executed") from None
    except Exception as err:  # torch raises many kinds for a damaged file
        raise CheckpointError(f"{path}: not a readable checkpoint ({err})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a checkpoint (a {type(ckpt).__name__}, not a dict)")
    return ckpt


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> AcousticModel:
    """Rebuild the model of a checkpoint written by ``asr-train`` (eval mode).

    The file carries the model config, feature config and vocabulary in its
    hyper-parameters, so nothing else is needed. The file is read by :func:`read_checkpoint`,
    which runs no code from it.
    """
    path = Path(path)
    ckpt = read_checkpoint(path, map_location)
    hp = ckpt.get("hyper_parameters")
    if not hp or not {"model", "features", "vocab_tokens"} <= set(hp):
        raise CheckpointError(f"{path}: no model/features/vocab hyper-parameters; not written "
                              "by asr-train")
    vocab = CharVocab(hp["vocab_tokens"])
    features = FeatureConfig(**hp["features"])
    model = build_model(hp["model"], features.dim, len(vocab))
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()
             if k.startswith("model.")}
    model.load_state_dict(state)
    model.eval()
    return AcousticModel(model, vocab, features, dict(hp["model"]), str(path),
                         training_augment(ckpt, path))


def training_augment(ckpt: dict, path: Path) -> dict[str, Any] | None:
    """The augmentation a checkpoint was trained with: its DataModule's hyper-parameters, or,
    for checkpoints written before asr-train recorded them, ``data.augment`` of the resolved
    config that asr-train saves in the run folder (beside ``model.ckpt``, or above
    ``checkpoints/``). None when neither says."""
    recorded = (ckpt.get("datamodule_hyper_parameters") or {}).get("augment")
    if recorded is not None:
        return dict(recorded)
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    config = run_dir / "config.yaml"
    if not config.is_file():
        return None
    try:
        augment = OmegaConf.select(OmegaConf.load(config), "data.augment")
    except Exception:  # not asr-train's YAML: the file does not say
        return None
    if not OmegaConf.is_dict(augment):
        return None
    log.info("%s: training augmentation read from %s", path, config)
    return OmegaConf.to_container(augment, resolve=True)


def average_checkpoints(paths: list[str | Path], out: str | Path) -> Path:
    """Write the parameter average of ``paths`` (ESPnet's ``average_nbest``, icefall's
    ``--avg``) to ``out``: the first checkpoint with its ``state_dict`` replaced.

    Floating tensors (weights and batch-norm statistics) are averaged in float64; integer
    buffers (batch-norm's step counters) keep the first checkpoint's value. Optimizer, loop and
    callback states are dropped: the result is for decoding and compression, not resuming.
    """
    if not paths:
        raise CheckpointError("average_checkpoints: no checkpoints given")
    first = read_checkpoint(paths[0])
    sums = {k: v.double() for k, v in first["state_dict"].items() if v.is_floating_point()}
    for path in paths[1:]:
        state = read_checkpoint(path)["state_dict"]
        if set(state) != set(first["state_dict"]):
            raise CheckpointError(f"{path}: parameters differ from {paths[0]}; cannot average")
        for key in sums:
            sums[key] += state[key].double()
    for key, total in sums.items():
        first["state_dict"][key] = (total / len(paths)).to(first["state_dict"][key].dtype)
    # Callback states would make Lightning restore the first checkpoint's "best" bookkeeping.
    for key in ("optimizer_states", "lr_schedulers", "loops", "callbacks"):
        first.pop(key, None)
    first["averaged_from"] = [str(p) for p in paths]
    torch.save(first, out)
    return Path(out)


def average_best_checkpoints(trainer: pl.Trainer, module: pl.LightningModule,
                             datamodule: pl.LightningDataModule, best_ckpt: ModelCheckpoint,
                             n: int) -> tuple[str, dict[str, float]]:
    """The checkpoint to keep after a fit: the average of ``best_ckpt``'s ``n`` best by
    validation WER when it validates no worse than the single best, else the single best.

    Averaging (ESPnet's ``average_nbest``, icefall's ``--avg``) usually helps, but checkpoints
    far apart in a short run can average into a worse model; the dev set decides. Returns the
    chosen path and, when an average was tried, ``averaged_checkpoints`` and
    ``averaged_val_wer``. The validation runs through ``trainer``, so its callbacks (e.g.
    asr-compress's masks and quantization) see the averaged weights as they see any epoch's.
    """
    best = best_ckpt.best_model_path
    ranked = sorted(best_ckpt.best_k_models.items(), key=lambda kv: float(kv[1]))[:n]
    if len(ranked) < 2:
        return best, {}
    averaged = Path(best).parent / f"average-{len(ranked)}best.ckpt"
    if trainer.is_global_zero:  # DDP: one writer; the other ranks wait for the file
        average_checkpoints([p for p, _ in ranked], averaged)
    trainer.strategy.barrier("average_best")
    result = trainer.validate(module, datamodule, ckpt_path=str(averaged), verbose=False,
                              weights_only=True)[0]
    info = {"averaged_checkpoints": len(ranked), "averaged_val_wer": float(result["val_wer"])}
    best_wer = float(best_ckpt.best_model_score)
    use_average = info["averaged_val_wer"] <= best_wer
    if trainer.is_global_zero:
        log.info("keeping %s (dev WER: average of %d %.4f, best single %.4f)",
                 "the average" if use_average else "the best checkpoint", len(ranked),
                 info["averaged_val_wer"], best_wer)
    return (str(averaged) if use_average else best), info
