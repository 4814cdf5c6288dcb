"""The feature front end: waveform -> normalized, stacked features (torchaudio transforms)."""

from __future__ import annotations

import math

import torch
import torchaudio.transforms as T
from torch import nn

from asr.config_errors import ConfigError
from asr.features.config import FeatureConfig
from asr.features.functional import stack_frames, utterance_cmvn

# log(0) guard for the filterbank; about -92 dB.
_LOG_FLOOR = 1e-9
_TOP_DB_NATURAL = 80.0 / 10.0 * math.log(10.0)  # 80 dB of power in natural-log units


class FeatureExtractor(nn.Module):
    """Computes :class:`FeatureConfig` features of a mono waveform.

    Input ``(time,)`` or ``(batch, time)`` at ``cfg.sample_rate``; output ``(frames, cfg.dim)``
    or ``(batch, frames, cfg.dim)``. Normalization is per utterance, so batched and one-by-one
    results agree for equal-length inputs.
    """

    def __init__(self, cfg: FeatureConfig):
        super().__init__()
        self.cfg = cfg
        melkwargs = dict(n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length,
                         n_mels=cfg.n_mels, center=True)
        if cfg.kind == "mfcc":
            self.transform: nn.Module = T.MFCC(sample_rate=cfg.sample_rate, n_mfcc=cfg.n_mfcc,
                                               melkwargs=melkwargs)
        else:
            self.transform = T.MelSpectrogram(sample_rate=cfg.sample_rate, power=2.0, **melkwargs)
        if cfg.normalize == "global":
            if cfg.global_mean is None or cfg.global_std is None:
                raise ConfigError("features.normalize=global needs features.global_mean and "
                                  "features.global_std (asr-train estimates them from the "
                                  "training manifest)")
            self.register_buffer("mean", torch.tensor(cfg.global_mean))
            self.register_buffer("std", torch.tensor(cfg.global_std))

    def num_frames(self, num_samples: int) -> int:
        """Output frames for a waveform of ``num_samples`` samples."""
        frames = num_samples // self.cfg.hop_length + 1 + self.cfg.tail_frames
        return -(-frames // self.cfg.subsample)

    @torch.no_grad()
    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() == 2:
            return torch.stack([self(w) for w in wav])
        feats = self.transform(wav.float())
        if self.cfg.kind == "fbank":
            feats = torch.log(feats + _LOG_FLOOR)
            # Same 80 dB dynamic range as torchaudio's MFCC (AmplitudeToDB top_db=80): silent
            # bands sit at a floor instead of carrying resampler noise into the normalization.
            feats = feats.clamp(min=float(feats.max()) - _TOP_DB_NATURAL)
        feats = feats.transpose(0, 1).contiguous()  # (frames, dim)
        if self.cfg.normalize == "utterance":
            feats = utterance_cmvn(feats)
        elif self.cfg.normalize == "global":
            feats = (feats - self.mean) / self.std
        if self.cfg.tail_frames:
            feats = torch.cat([feats, feats.new_zeros(self.cfg.tail_frames, feats.shape[1])])
        return stack_frames(feats, self.cfg.stack, self.cfg.subsample)
