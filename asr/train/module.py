"""The LightningModule of every CTC acoustic model: loss, optimizer schedule, validation WER."""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch import nn

from asr.config_errors import ConfigError
from asr.features.config import FeatureConfig
from asr.metrics import error_rates
from asr.text.ctc import greedy_decode
from asr.text.vocab import CharVocab


def build_model(model_config: dict, input_dim: int, vocab_size: int) -> nn.Module:
    """Instantiate an acoustic model from its config (``_target_`` + arguments)."""
    try:
        return instantiate(model_config, input_dim=input_dim, vocab_size=vocab_size,
                           _convert_="all")
    except InstantiationException as err:
        # Hydra wraps the model's own validation error; surface the one that names the key.
        if isinstance(err.__cause__, ConfigError):
            raise err.__cause__ from None
        raise


def warmup_decay(step: int, warmup: int, total: int, schedule: str, floor: float) -> float:
    """Learning-rate multiplier: linear warm-up over ``warmup`` steps, then ``schedule``
    (cosine, linear or constant) down to ``floor`` at step ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return floor + (1 - floor) * (1 - progress)


def build_optimizer(params: Any, optim: dict, total_steps: int
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The optimizer of ``optim["optimizer"]`` (a ``_partial_`` config) and its per-step
    warm-up/decay schedule over ``total_steps``."""
    optimizer = instantiate(optim["optimizer"])(params=params)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: warmup_decay(step, optim["warmup_steps"], total_steps, optim["schedule"],
                                  optim["min_lr_ratio"]),
    )
    return optimizer, scheduler


class CTCModule(pl.LightningModule):
    """Trains a CTC acoustic model.

    Everything needed to rebuild the model travels in the checkpoint's hyper-parameters: the
    model config, the feature config and the vocabulary (see :func:`asr.train.load_checkpoint`).

    Args:
        model: model config (``_target_`` and arguments, without input/vocab sizes).
        features: :class:`FeatureConfig` fields.
        vocab_tokens: the vocabulary's tokens.
        optim: ``optimizer`` (a ``_partial_`` optimizer config), ``warmup_steps``, ``schedule``
            (cosine, linear, constant) and ``min_lr_ratio``.
    """

    def __init__(self, model: dict, features: dict, vocab_tokens: list[str], optim: dict):
        super().__init__()
        self.save_hyperparameters()
        self.vocab = CharVocab(vocab_tokens)
        self.features = FeatureConfig(**features)
        self.model = build_model(model, self.features.dim, len(self.vocab))
        self.ctc_loss = nn.CTCLoss(blank=self.vocab.blank_id, zero_infinity=True)
        # stage -> {dataset index: (reference, hypothesis)}
        self._eval_texts: dict[str, dict[int, tuple[str, str]]] = {}

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model(features, lengths)

    def _loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self(batch["features"], batch["feature_lengths"])
        out_lengths = self.model.output_lengths(batch["feature_lengths"])
        # CTC in float32 whatever the training precision: bf16 log-probs lose the alignment sums.
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)
        loss = self.ctc_loss(log_probs, batch["tokens"], out_lengths, batch["token_lengths"])
        return loss, logits, out_lengths

    def _training_loss(self, batch: dict) -> torch.Tensor:
        """The loss to minimize; subclasses add terms (and log them) here."""
        loss, _, _ = self._loss(batch)
        return loss

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        # Models with a training schedule of their own (a delta LSTM's threshold annealing)
        # follow the trainer's optimizer step, which a resumed run restores.
        anneal = getattr(self.model, "anneal", None)
        if anneal is not None:
            anneal(self.global_step)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self._training_loss(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["utt_ids"]))
        return loss

    def _eval_step(self, batch: dict, stage: str) -> None:
        loss, logits, out_lengths = self._loss(batch)
        self.log(f"{stage}_loss", loss, prog_bar=True, sync_dist=True,
                 batch_size=len(batch["utt_ids"]))
        hyps = greedy_decode(logits.float(), out_lengths, self.vocab)
        refs = [self.vocab.decode(t[:n].tolist())
                for t, n in zip(batch["tokens"], batch["token_lengths"])]
        self._eval_texts.setdefault(stage, {}).update(zip(batch["indices"], zip(refs, hyps)))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _eval_epoch_end(self, stage: str) -> None:
        texts = self._eval_texts.pop(stage, {})
        if self.trainer.world_size > 1:
            # DDP: each rank holds a shard (plus batches repeated to even the shards out). The
            # corpus WER is scored on the union; a mean of per-rank WERs would weight ranks,
            # not words, and count the repeats.
            shards: list[dict] = [{} for _ in range(self.trainer.world_size)]
            torch.distributed.all_gather_object(shards, texts)
            texts = {i: pair for shard in shards for i, pair in shard.items()}
        if not texts:
            return
        refs, hyps = zip(*(texts[i] for i in sorted(texts)))
        rates = error_rates(refs, hyps)
        # Every rank now holds the same corpus figure; sync_dist only keeps Lightning from
        # warning about epoch-level values in DDP.
        self.log(f"{stage}_wer", rates.wer, prog_bar=True, sync_dist=True)
        self.log(f"{stage}_cer", rates.cer, prog_bar=True, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer, scheduler = build_optimizer(self.parameters(), self.hparams.optim,
                                               int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
