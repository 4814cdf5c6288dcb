"""Training checkpoints: reading one on its own (the model, its vocabulary and its features),
averaging the best, and writing them atomically (a killed run never leaves a torn one)."""

from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import CheckpointIO, TorchCheckpointIO
from pytorch_lightning.trainer.states import TrainerFn

from asr.atomic import replacing
from asr.features.config import FeatureConfig
from asr.models.acoustic import AcousticModel
from asr.text.vocab import CharVocab
from asr.train.module import build_model

if TYPE_CHECKING:
    import pytorch_lightning as pl

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


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic on every filesystem.

    Lightning serializes into memory, then moves a file made in the system's temporary folder
    onto the target; where that folder is another filesystem than the run folder (a tmpfs
    ``/tmp``, a network ``exp/``) the move is a copy straight into ``last.ckpt``, so a kill
    during it leaves a truncated file, and nothing is fsynced. This writes beside the target,
    fsyncs, and renames (:func:`asr.atomic.replacing`).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:  # Lightning's own TypeError for this case
            return super().save_checkpoint(checkpoint, path, storage_options)
        with replacing(path) as tmp:
            torch.save(checkpoint, tmp)


def with_atomic_checkpoints(trainer_args: dict[str, Any]) -> dict[str, Any]:
    """``pl.Trainer`` arguments with :class:`AtomicCheckpointIO` added to ``plugins``, unless
    the config names a checkpoint writer of its own."""
    plugins = trainer_args.get("plugins")
    plugins = [] if plugins is None else list(plugins) if isinstance(plugins, list | tuple) \
        else [plugins]
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    return {**trainer_args, "plugins": plugins}


class RunCheckpoint(ModelCheckpoint):
    """A :class:`ModelCheckpoint` whose bookkeeping survives a moved run folder.

    Lightning restores the best scores only when the checkpoint folder's path is the one
    recorded; from a moved or copied run folder it restores ``best_model_path`` (pointing into
    the old folder) without ``best_model_score``, and keeping the best epoch then fails. The
    files keep their names in the new folder, so the recorded paths are re-rooted there.
    """

    @property
    def state_key(self) -> str:
        # The key Lightning's own ModelCheckpoint has: checkpoints of runs started with it
        # restore into these (subclasses with their own meaning keep their own name).
        key = super().state_key
        name = type(self).__qualname__
        if name in ("RunCheckpoint", "LastCheckpoint"):
            return "ModelCheckpoint" + key[len(name):]
        return key

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("dirpath")
        if old is not None and self.dirpath is not None and old != self.dirpath:
            log.info("checkpoints moved from %s to %s: their records follow", old, self.dirpath)

            def moved(path: Any) -> Any:
                if isinstance(path, str) and path and Path(path).parent == Path(old):
                    return str(Path(self.dirpath) / Path(path).name)
                return path

            state_dict = {**state_dict, "dirpath": self.dirpath,
                          "best_k_models": {moved(p): v for p, v in
                                            state_dict.get("best_k_models", {}).items()},
                          **{k: moved(state_dict[k]) for k in
                             ("best_model_path", "kth_best_model_path", "last_model_path")
                             if k in state_dict}}
        super().load_state_dict(state_dict)


class LastCheckpoint(RunCheckpoint):
    """``last.ckpt`` every ``every_n_train_steps`` steps and again at the end of every epoch.

    The step-based save alone leaves ``last.ckpt`` without the epoch's validation when a save
    falls on a run's final step: a run resumed from it (the fit finished, but the process was
    killed before ``model.ckpt`` or the ``.model`` was written) skips that validation and its
    best-epoch record, and keeps no best checkpoint. Saved at the epoch's end (after its
    validation) by a callback placed after the best-checkpoint one (Lightning keeps the order
    among checkpoint callbacks), the record it holds is current.
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int):
        super().__init__(dirpath=dirpath, save_last=True, save_top_k=0,
                         every_n_train_steps=every_n_train_steps)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run or \
                trainer.state.fn != TrainerFn.FITTING:
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


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
    with replacing(out) as tmp:  # model.ckpt may be this file: never a torn one
        torch.save(first, tmp)
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
