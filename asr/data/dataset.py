"""Utterances -> feature/label tensors: the on-disk feature cache, the dataset, duration
bucketing and padding."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from asr.audio import load_audio
from asr.data.manifest import Utterance
from asr.features.config import AugmentConfig, FeatureConfig
from asr.features.extract import FeatureExtractor
from asr.features.functional import spec_augment, speed_perturb
from asr.text.vocab import CharVocab


class FeatureCache:
    """Features on disk under ``root/<feature-config hash>/``, one ``.npy`` per (file, speed).

    The key covers the audio file's absolute path, size and modification time and the speed
    factor, so an edited file or another feature config never reads stale features. Writes go
    to a temporary name and are renamed, so concurrent workers never see half a file.
    """

    def __init__(self, root: str | Path, cfg: FeatureConfig):
        self.dir = Path(root) / cfg.cache_key()
        self.dir.mkdir(parents=True, exist_ok=True)
        config_file = self.dir / "features.json"
        if not config_file.exists():
            config_file.write_text(json.dumps(asdict(cfg), indent=2))

    def path(self, audio: str, speed: float) -> Path:
        stat = os.stat(audio)
        key = f"{os.path.abspath(audio)}|{stat.st_size}|{stat.st_mtime_ns}|{speed}"
        digest = hashlib.sha1(key.encode()).hexdigest()
        return self.dir / digest[:2] / f"{digest}.npy"

    def load(self, audio: str, speed: float) -> torch.Tensor | None:
        path = self.path(audio, speed)
        if not path.exists():
            return None
        try:
            return torch.from_numpy(np.load(path))
        except (ValueError, OSError, EOFError):
            path.unlink(missing_ok=True)  # a truncated file from a killed writer
            return None

    def save(self, audio: str, speed: float, feats: torch.Tensor) -> None:
        path = self.path(audio, speed)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, feats.numpy())
        tmp.replace(path)


class CTCDataset(Dataset):
    """Items ``{"features": (T, D), "tokens": (L,), "utt_id": str, "index": int}`` of a manifest.

    Augmentation (speed perturbation, SpecAugment) is applied only when ``augment`` is given;
    speed-perturbed features are cached per factor, SpecAugment masks are drawn fresh each time.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        vocab: CharVocab,
        features: FeatureConfig,
        augment: AugmentConfig | None = None,
        cache_dir: str | Path | None = None,
    ):
        self.utterances = list(utterances)
        self.vocab = vocab
        self.features = features
        self.augment = augment if augment is not None and augment.enabled else None
        self.extractor = FeatureExtractor(features)
        self.cache = FeatureCache(cache_dir, features) if cache_dir is not None else None
        self.tokens = [torch.tensor(vocab.encode(u.text), dtype=torch.long)
                       for u in self.utterances]

    def __len__(self) -> int:
        return len(self.utterances)

    def keep_only(self, indices: Sequence[int]) -> None:
        """Restrict the dataset to ``indices`` (in that order), in place."""
        self.utterances = [self.utterances[i] for i in indices]
        self.tokens = [self.tokens[i] for i in indices]

    def num_frames(self, index: int, speed: float = 1.0) -> int:
        """Feature frames of utterance ``index`` (from its duration, without reading audio)."""
        samples = int(self.utterances[index].duration / speed * self.features.sample_rate)
        return self.extractor.num_frames(samples)

    def compute_features(self, audio: str, speed: float = 1.0) -> torch.Tensor:
        if self.cache is not None:
            cached = self.cache.load(audio, speed)
            if cached is not None:
                return cached
        wav = load_audio(audio, self.features.sample_rate)
        wav = speed_perturb(wav, self.features.sample_rate, speed)
        feats = self.extractor(wav)
        if self.cache is not None:
            self.cache.save(audio, speed, feats)
        return feats

    def __getitem__(self, index: int) -> dict:
        utt = self.utterances[index]
        speed = 1.0
        if self.augment is not None:
            factors = self.augment.speed_factors
            speed = factors[int(torch.randint(len(factors), (1,)))]
        feats = self.compute_features(utt.audio_filepath, speed)
        if self.augment is not None:
            a = self.augment
            feats = spec_augment(feats, a.freq_masks, a.freq_width, a.time_masks, a.time_width,
                                 a.time_ratio, stack=self.features.stack,
                                 subsample=self.features.subsample)
        return {"features": feats, "tokens": self.tokens[index],
                "utt_id": utt.utt_id or utt.audio_filepath, "index": index}


def collate_ctc(items: Sequence[dict]) -> dict:
    """Pad a list of dataset items into a batch.

    Returns ``features (B, T, D)``, ``feature_lengths (B,)``, ``tokens (B, L)`` padded with 0,
    ``token_lengths (B,)``, ``utt_ids`` and ``indices`` (positions in the dataset: unique
    where ``utt_id`` may not be, so DDP evaluation can drop the batches it repeats).
    """
    feats = [it["features"] for it in items]
    tokens = [it["tokens"] for it in items]
    return {
        "features": torch.nn.utils.rnn.pad_sequence(feats, batch_first=True),
        "feature_lengths": torch.tensor([f.shape[0] for f in feats], dtype=torch.long),
        "tokens": torch.nn.utils.rnn.pad_sequence(tokens, batch_first=True),
        "token_lengths": torch.tensor([t.shape[0] for t in tokens], dtype=torch.long),
        "utt_ids": [it["utt_id"] for it in items],
        "indices": [it["index"] for it in items],
    }


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of utterances of similar duration, to waste little compute on padding.

    Utterances are sorted by duration and cut into batches holding at most ``max_seconds`` of
    audio (counted as batch size x longest utterance, i.e. the padded size) and at most
    ``max_batch_size`` utterances. With ``shuffle`` the order of batches changes every epoch
    (``set_epoch``; Lightning calls it) and durations are jittered within 10% first so batches
    do not repeat exactly. ``num_replicas``/``rank`` shard batches for DDP.
    """

    def __init__(
        self,
        durations: Sequence[float],
        max_seconds: float = 120.0,
        max_batch_size: int = 64,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        if max_seconds <= 0 or max_batch_size <= 0:
            raise ValueError("batch.max_seconds and batch.max_batch_size must be > 0, got "
                             f"{max_seconds} and {max_batch_size}")
        self.durations = list(durations)
        self.max_seconds = max_seconds
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        keys = [d * (1 + 0.1 * (rng.random() - 0.5)) if self.shuffle else d
                for d in self.durations]
        order = sorted(range(len(keys)), key=keys.__getitem__)
        batches: list[list[int]] = []
        batch: list[int] = []
        longest = 0.0
        for i in order:
            new_longest = max(longest, self.durations[i])
            if batch and (new_longest * (len(batch) + 1) > self.max_seconds
                          or len(batch) >= self.max_batch_size):
                batches.append(batch)
                batch, new_longest = [], self.durations[i]
            batch.append(i)
            longest = new_longest
        if batch:
            batches.append(batch)
        if self.shuffle:
            rng.shuffle(batches)
        # Every replica gets the same number of batches (DDP steps must line up).
        per_replica = math.ceil(len(batches) / self.num_replicas)
        batches += batches[: per_replica * self.num_replicas - len(batches)]
        return batches[self.rank::self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())
