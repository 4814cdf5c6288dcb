"""Transcript text: English normalization and the CTC character vocabulary."""

from asr.text.normalize import normalize_text
from asr.text.vocab import CharVocab

__all__ = ["CharVocab", "normalize_text"]
