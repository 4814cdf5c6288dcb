"""Pruning schedules, DSD and quantization-aware training as one Lightning callback.

The model's weights are the *latent* float weights that the optimizer updates. Around every
training step the callback

1. refreshes the masks when the schedule moves (one-shot, AGP every ``frequency`` steps, DSD's
   sparse/dense phases), ranking the latent weights; under targeted dropout (CBTD with
   ``column_balanced``) it draws a fresh mask every step while ``0 < alpha < 1``: the
   structure's drop candidates, ranked on the latent weights, each dropped with probability
   ``alpha`` (:mod:`asr.compress.targeted_dropout`);
2. writes ``Q(latent * mask)`` into the weights before the forward pass (``Q`` is the weight
   quantizer once QAT has begun, the identity before);
3. puts the latent weights back before the optimizer step, so the gradient taken at the
   quantized point updates the latent weights: the straight-through estimator;
4. re-applies the masks after the step, so pruned weights stay exactly zero (not a targeted
   dropout draw: the dropped weights keep their latent values and may come back).

Validation sees the pruned, quantized model. Under targeted dropout, before ``alpha`` reaches 1
it sees the structure's deterministic mask at the target density on the current weights (the
end state; the authors' code evaluates its randomly dropped weights, but those epochs are never
the kept one); from ``alpha = 1`` on the mask is fixed, as AGP's at its end.

k-means weight sharing keeps each weight's cluster fixed once QAT begins and moves every
centroid to its cluster's mean latent weight: Deep Compression's centroid fine-tuning (the
centroid follows its cluster's mean gradient).
Masks and the schedule's position travel in Lightning checkpoints, so a killed fine-tuning
resumes with the same masks.

:class:`SettledBestCheckpoint` keeps the best validation WER among the epochs whose model
already is the one the artifact will hold (final masks, QAT on), the way ``asr-train`` keeps
its best epoch: an epoch validated at an intermediate density is not a candidate.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch

from asr.compress.config import CompressConfig
from asr.compress.pruning import prune_mask
from asr.compress.quantize import quantize_matrix
from asr.compress.schedule import density_at, prune_progress
from asr.compress.targeted_dropout import dropout_mask
from asr.train.checkpoint import RunCheckpoint


class CompressionCallback(pl.Callback):
    """Applies ``cfg``'s pruning schedule and QAT to ``pl_module.model``.

    Args:
        cfg: the compression config (prune, quant, schedule).
        densities: target density of every matrix (from ``validate_against_model``).
        qat: quantize weights during fine-tuning (from ``schedule.qat_begin`` on).
        seed: seeds targeted dropout's draws (its own generator: the data order and the
            model's dropout keep theirs).
    """

    def __init__(self, cfg: CompressConfig, densities: dict[str, float], qat: bool = True,
                 seed: int = 0):
        self.cfg = cfg
        self.densities = densities
        self.qat = qat and cfg.quant.weights.kind != "none"
        self.masks: dict[str, torch.Tensor] = {}
        self.progress: float | None = None
        self.total_steps = 0
        self.settle_step = 0
        self._latent: dict[str, torch.Tensor] | None = None
        self._clusters: dict[str, torch.Tensor] = {}
        self.targeted = cfg.schedule.kind == "targeted_dropout"
        self.generator = torch.Generator().manual_seed(seed)

    # -- the schedule -------------------------------------------------------------------------
    def _views(self, pl_module: pl.LightningModule) -> dict[str, torch.Tensor]:
        views = pl_module.model.matrices()
        return {k: views[k] for k in self.densities}

    @property
    def transient(self) -> bool:
        """Whether ``masks`` is one step's targeted dropout draw (``0 < alpha < 1``)."""
        return self.targeted and self.progress is not None and 0.0 < self.progress < 1.0

    def update_masks(self, views: dict[str, torch.Tensor], step: int) -> None:
        progress = prune_progress(self.cfg.schedule, step, self.total_steps)
        if self.targeted and 0.0 < progress < 1.0:
            self._draw_masks(views, progress)
            return
        if progress == self.progress:
            return
        self.progress = progress
        self.masks = self._structure_masks(
            views, {name: density_at(d, progress) for name, d in self.densities.items()})
        self._clusters = {}  # cluster membership follows the masks

    def _draw_masks(self, views: dict[str, torch.Tensor], alpha: float) -> None:
        """Targeted dropout: this step's candidates (on the latent weights: what the structure
        drops at the target densities), each dropped with probability ``alpha``."""
        self.progress = alpha
        self.masks = {name: dropout_mask(~keep, alpha, self.generator)
                      for name, keep in self.end_masks(views).items()}
        self._clusters = {}

    def end_masks(self, views: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The structure's masks at the target densities on the current weights: targeted
        dropout's state at ``alpha = 1``."""
        return self._structure_masks(views, self.densities)

    def _structure_masks(self, views: dict[str, torch.Tensor], densities: dict[str, float]
                         ) -> dict[str, torch.Tensor]:
        """The pruning structure's masks of ``views`` at ``densities`` (by name), ranked on
        the current weights; none for a matrix that stays dense."""
        masks = {}
        for name, w in views.items():
            mask = prune_mask(w, densities[name], self.cfg.prune)
            if mask is not None:
                masks[name] = mask
        return masks

    def qat_active(self, step: int) -> bool:
        return self.qat and step >= self.cfg.schedule.qat_begin * self.total_steps

    def first_settled_step(self) -> int:
        """The first step from which the schedule stays at its end point (the masks it
        trains with are the artifact's) with QAT, if on, already running."""
        final = prune_progress(self.cfg.schedule, self.total_steps, self.total_steps)
        step = self.total_steps
        # Scan back: DSD's first sparse phase has the final progress but not the final masks.
        while step > 0 and prune_progress(self.cfg.schedule, step - 1,
                                          self.total_steps) == final:
            step -= 1
        if self.qat:
            step = max(step, math.ceil(self.cfg.schedule.qat_begin * self.total_steps))
        return step

    # -- latent <-> applied weights -----------------------------------------------------------
    def _fake_quant(self, name: str, latent: torch.Tensor, mask: torch.Tensor | None
                    ) -> torch.Tensor:
        fmt = self.cfg.quant.weights
        if fmt.kind == "kmeans":
            if name not in self._clusters:
                # k-means runs on the CPU (the artifact's quantizer); codes follow the weights
                self._clusters[name] = quantize_matrix(
                    latent.cpu(), fmt, None if mask is None else mask.cpu()).codes.to(latent.device)
            codes = self._clusters[name]
            k = 1 << fmt.bits
            keep = codes >= 0
            sums = torch.zeros(k, dtype=latent.dtype, device=latent.device).index_add_(
                0, codes[keep], latent[keep])
            counts = torch.bincount(codes[keep], minlength=k).clamp_min(1)
            return torch.where(keep, (sums / counts)[codes.clamp_min(0)],
                               torch.zeros_like(latent))
        q = quantize_matrix(latent, fmt, mask, self.cfg.prune.num_pes, self.cfg.prune.bank_size)
        return q.dequantize().to(latent.dtype)

    @torch.no_grad()
    def apply(self, pl_module: pl.LightningModule, quantize: bool,
              masks: dict[str, torch.Tensor] | None = None) -> None:
        """Stash the latent weights and write the masked (and quantized) ones in their place
        (``masks``: these instead of the schedule's)."""
        views = self._views(pl_module)
        masks = self.masks if masks is None else masks
        self._latent = {k: v.detach().clone() for k, v in views.items()}
        for name, view in views.items():
            w = self._latent[name]
            mask = masks.get(name)
            if mask is not None:
                mask = mask.to(w.device)
                w = w * mask
            if quantize:
                w = self._fake_quant(name, w, mask)
            view.copy_(w)

    @torch.no_grad()
    def restore(self, pl_module: pl.LightningModule) -> None:
        if self._latent is None:
            return
        for name, view in self._views(pl_module).items():
            view.copy_(self._latent[name])
        self._latent = None

    @torch.no_grad()
    def _mask_latent(self, pl_module: pl.LightningModule) -> None:
        for name, view in self._views(pl_module).items():
            if name in self.masks:
                # Lightning's teardown moves the module to the CPU before on_fit_end, while
                # masks made during a GPU fit stay on the GPU.
                view.mul_(self.masks[name].to(view.device))

    # -- Lightning hooks ----------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.total_steps = int(trainer.estimated_stepping_batches)
        self.settle_step = self.first_settled_step()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        self.update_masks(self._views(pl_module), step)
        self.apply(pl_module, self.qat_active(step))

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        self.restore(pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self.restore(pl_module)  # a skipped optimizer step (NaN loss) still restores
        if not self.transient:
            self._mask_latent(pl_module)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        masks = None
        if self.targeted and self.progress != 1.0:
            masks = self.end_masks(self._views(pl_module))
            self._clusters = {}  # k-means clusters follow the masks: none of training's
        self.apply(pl_module, self.qat_active(trainer.global_step), masks)
        if masks is not None:
            self._clusters = {}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.restore(pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Leave the masked latent weights: the artifact quantizes them (after batch-norm
        # folding, for WaveNet) with the same quantizer.
        self.restore(pl_module)
        if not self.transient:  # a draw is no mask: the schedule's end point is made after
            self._mask_latent(pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"masks": self.masks, "progress": self.progress,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.masks = state_dict["masks"]
        self.progress = state_dict["progress"]   # (and so whether the masks are a draw)
        if "generator" in state_dict:
            self.generator.set_state(state_dict["generator"])


class SettledBestCheckpoint(RunCheckpoint):
    """Saves the ``save_top_k`` best checkpoints by validation WER, among validations run after
    ``compression``'s schedule has settled (the last training step taken used the final masks
    and, with QAT, quantized weights).

    Lightning runs checkpoint callbacks after the others, so the saved weights are the masked
    latent ones that :class:`CompressionCallback` restores after validation.
    """

    def __init__(self, compression: CompressionCallback, save_top_k: int = 1, **kwargs: Any):
        super().__init__(monitor="val_wer", mode="min", save_top_k=save_top_k,
                         save_on_train_epoch_end=False, **kwargs)
        self.compression = compression

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step - 1 >= self.compression.settle_step:
            super().on_validation_end(trainer, pl_module)
