"""Word n-gram language models: modified Kneser-Ney estimation to ARPA, and an ARPA reader."""

from asr.lm.arpa import ArpaError, NgramLM
from asr.lm.kneser_ney import build_arpa, estimate_kneser_ney

__all__ = ["ArpaError", "NgramLM", "build_arpa", "estimate_kneser_ney"]
