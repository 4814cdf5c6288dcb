"""Structured configs of the feature front end (Hydra group ``conf/features/``)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from asr.config_errors import ConfigError, check


@dataclass
class FeatureConfig:
    """Acoustic features computed from 16 kHz mono audio.

    Attributes:
        kind: ``"mfcc"`` (seed WaveNet input) or ``"fbank"`` (log-mel filterbank).
        sample_rate: model sample rate in Hz; audio is resampled to it.
        n_mfcc: MFCC coefficients (kind=mfcc).
        n_mels: mel bands (fbank output size, and the filterbank MFCC is computed from).
        win_ms, hop_ms: analysis window and hop in milliseconds.
        n_fft: FFT size; must cover the window.
        normalize: ``"utterance"`` mean/variance normalization per utterance (sees the whole
            utterance: fine for WaveNet and bidirectional models), ``"global"`` with fixed
            training-set statistics (causal: what a streaming LSTM must use, since per-utterance
            statistics tell its first frame what the utterance holds), or ``"none"``.
        global_mean, global_std: per-dimension statistics of ``"global"`` (before stacking);
            ``asr-train`` estimates them from the training manifest when they are unset, and
            they travel with the checkpoint.
        stack: frames concatenated into one (ESE-style frame stacking), 1 = off.
        subsample: keep every n-th (stacked) frame, 1 = off.
        tail_frames: frames of zeros (the normalized mean) appended after the last frame,
            before stacking: an output delay that lets a unidirectional model emit the last
            characters after the speech ends (corpora such as FSDD are trimmed tight).
    """

    kind: str = "mfcc"
    sample_rate: int = 16000
    n_mfcc: int = 20
    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    normalize: str = "utterance"
    stack: int = 1
    subsample: int = 1
    tail_frames: int = 0
    global_mean: list[float] | None = None
    global_std: list[float] | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, prefix: str = "features") -> None:
        check(self.kind in ("mfcc", "fbank"), f"{prefix}.kind", "'mfcc' or 'fbank'", self.kind)
        check(self.sample_rate >= 4000, f"{prefix}.sample_rate", ">= 4000", self.sample_rate)
        check(self.n_mels >= 1, f"{prefix}.n_mels", ">= 1", self.n_mels)
        check(1 <= self.n_mfcc <= self.n_mels, f"{prefix}.n_mfcc", f"1..n_mels ({self.n_mels})",
              self.n_mfcc)
        check(0 < self.hop_ms <= self.win_ms, f"{prefix}.hop_ms", f"0 < hop_ms <= win_ms "
              f"({self.win_ms})", self.hop_ms)
        check(self.n_fft >= self.win_length, f"{prefix}.n_fft",
              f">= window length in samples ({self.win_length})", self.n_fft)
        check(self.normalize in ("utterance", "global", "none"), f"{prefix}.normalize",
              "'utterance', 'global' or 'none'", self.normalize)
        for key in ("global_mean", "global_std"):
            stats = getattr(self, key)
            check(stats is None or len(stats) == self.base_dim, f"{prefix}.{key}",
                  f"{self.base_dim} values (one per feature)", stats)
        check(self.global_std is None or min(self.global_std) > 0, f"{prefix}.global_std",
              "positive values", self.global_std)
        check(self.stack >= 1, f"{prefix}.stack", ">= 1", self.stack)
        check(self.subsample >= 1, f"{prefix}.subsample", ">= 1", self.subsample)
        check(self.tail_frames >= 0, f"{prefix}.tail_frames", ">= 0", self.tail_frames)

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def base_dim(self) -> int:
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    @property
    def dim(self) -> int:
        """Size of one output feature vector (after stacking)."""
        return self.base_dim * self.stack

    @property
    def frame_shift(self) -> float:
        """Seconds between output frames (after subsampling)."""
        return self.hop_ms / 1000 * self.subsample

    def cache_key(self) -> str:
        """Short hash of every setting that changes the features: the feature cache's key."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: dict) -> FeatureConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"features: unknown key(s) {sorted(unknown)}; "
                              f"allowed: {sorted(cls.__dataclass_fields__)}")
        return cls(**data)


@dataclass
class AugmentConfig:
    """Training-time augmentation (never applied to dev/test).

    Attributes:
        speed_factors: speed perturbation factors drawn uniformly per utterance (Kaldi's 0.9,
            1.0, 1.1); ``[1.0]`` turns it off. Perturbed features are cached per factor.
        freq_masks, freq_width: SpecAugment frequency masks and their maximum width, in bands
            of one frame (with stacking, a mask hides its bands in every stacked slot).
        time_masks, time_width: SpecAugment time masks and their maximum width, in model
            frames (after subsampling; with stacking, the masked input frames are hidden in
            every window that holds them).
        time_ratio: a time mask never exceeds this fraction of the utterance.
    """

    speed_factors: list[float] = field(default_factory=lambda: [1.0])
    freq_masks: int = 0
    freq_width: int = 4
    time_masks: int = 0
    time_width: int = 20
    time_ratio: float = 0.2

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, prefix: str = "augment") -> None:
        check(len(self.speed_factors) > 0 and all(0.5 <= f <= 2.0 for f in self.speed_factors),
              f"{prefix}.speed_factors", "non-empty list of factors in [0.5, 2.0]",
              self.speed_factors)
        for key in ("freq_masks", "freq_width", "time_masks", "time_width"):
            check(getattr(self, key) >= 0, f"{prefix}.{key}", ">= 0", getattr(self, key))
        check(0.0 < self.time_ratio <= 1.0, f"{prefix}.time_ratio", "in (0, 1]", self.time_ratio)

    @property
    def enabled(self) -> bool:
        return self.speed_factors != [1.0] or self.freq_masks > 0 or self.time_masks > 0
