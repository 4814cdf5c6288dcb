"""Acoustic features: config, extraction, augmentation and the on-disk cache."""

from asr.features.config import AugmentConfig, FeatureConfig
from asr.features.extract import FeatureExtractor

__all__ = ["AugmentConfig", "FeatureConfig", "FeatureExtractor"]
