"""The Lightning DataModule of CTC training: manifests in, padded duration-bucketed batches out."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from asr.config_errors import check
from asr.data.dataset import BucketBatchSampler, CTCDataset, collate_ctc
from asr.data.manifest import Utterance, read_manifest
from asr.features.config import AugmentConfig, FeatureConfig
from asr.text.vocab import CharVocab

log = logging.getLogger(__name__)


@dataclass
class BatchConfig:
    """Batching: at most ``max_seconds`` of padded audio and ``max_batch_size`` utterances."""

    max_seconds: float = 120.0
    max_batch_size: int = 64
    num_workers: int = 2

    def __post_init__(self) -> None:
        check(self.max_seconds > 0, "data.batch.max_seconds", "> 0", self.max_seconds)
        check(self.max_batch_size > 0, "data.batch.max_batch_size", "> 0", self.max_batch_size)
        check(self.num_workers >= 0, "data.batch.num_workers", ">= 0", self.num_workers)


def fits_ctc(dataset: CTCDataset, index: int) -> bool:
    """Whether CTC can align the labels: every label, plus a blank between repeats, needs a
    frame. Utterances that cannot be aligned would give an infinite loss."""
    tokens = dataset.tokens[index].tolist()
    repeats = sum(a == b for a, b in zip(tokens, tokens[1:]))
    return dataset.num_frames(index) >= len(tokens) + repeats


class CTCDataModule(pl.LightningDataModule):
    """Train/val/test manifests -> DataLoaders of :func:`collate_ctc` batches.

    Args:
        train_manifest, val_manifest, test_manifest: JSON-lines manifests (test optional).
        features: feature settings (a :class:`FeatureConfig` or a dict of its fields).
        augment: training augmentation (dict or :class:`AugmentConfig`); None for none.
        batch: :class:`BatchConfig` or dict.
        cache_dir: feature cache folder; None computes features every time.
        vocab_tokens: vocabulary tokens; None for the default characters.
        seed: shuffling seed.
    """

    def __init__(
        self,
        train_manifest: str | Path,
        val_manifest: str | Path,
        test_manifest: str | Path | None = None,
        features: FeatureConfig | dict | None = None,
        augment: AugmentConfig | dict | None = None,
        batch: BatchConfig | dict | None = None,
        cache_dir: str | Path | None = None,
        vocab_tokens: list[str] | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.manifests = {"train": train_manifest, "val": val_manifest, "test": test_manifest}
        self.features = _as(FeatureConfig, features)
        self.augment = _as(AugmentConfig, augment) if augment is not None else None
        # Lightning stores these in every checkpoint ("datamodule_hyper_parameters"): the model
        # file says what it was trained with, and asr-compress fine-tunes with the same.
        self.save_hyperparameters({"augment": asdict(self.augment or AugmentConfig())})
        self.batch = _as(BatchConfig, batch)
        self.cache_dir = cache_dir
        self.vocab = CharVocab(vocab_tokens)
        self.seed = seed
        self.datasets: dict[str, CTCDataset] = {}
        self.dropped: dict[str, int] = {}

    def _dataset(self, split: str) -> CTCDataset:
        if split not in self.datasets:
            utts: list[Utterance] = read_manifest(self.manifests[split])
            ds = CTCDataset(utts, self.vocab, self.features,
                            self.augment if split == "train" else None, self.cache_dir)
            keep = [i for i in range(len(ds)) if fits_ctc(ds, i)]
            self.dropped[split] = len(ds) - len(keep)
            if self.dropped[split]:
                log.warning("%s: dropped %d utterance(s) whose transcript is longer than its "
                            "frames allow", self.manifests[split], self.dropped[split])
                ds.keep_only(keep)
            self.datasets[split] = ds
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"]}.get(
            stage or "fit", ["train", "val"])
        for split in splits:
            if self.manifests[split] is not None:
                self._dataset(split)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        ds = self._dataset(split)
        trainer = getattr(self, "trainer", None)
        sampler = BucketBatchSampler(
            [u.duration for u in ds.utterances], self.batch.max_seconds,
            self.batch.max_batch_size, shuffle=shuffle, seed=self.seed,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
        )
        return DataLoader(ds, batch_sampler=sampler, collate_fn=collate_ctc,
                          num_workers=self.batch.num_workers,
                          persistent_workers=self.batch.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        if self.manifests["test"] is None:
            raise ValueError("data.test_manifest is not set")
        return self._loader("test", shuffle=False)


def _as(cls: type, value: object) -> object:
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict) or hasattr(value, "items"):
        return cls(**dict(value))
    raise TypeError(f"expected {cls.__name__} or a dict, got {type(value).__name__}")
