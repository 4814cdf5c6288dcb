"""CTC decoding: greedy best path, and beam search with word language models."""

import logging

# pyctcdecode warns at import when the optional kenlm is missing; the pure-Python LM covers it.
logging.getLogger("pyctcdecode").setLevel(logging.ERROR)

from asr.decode.beam import BeamConfig, BeamSearchDecoder, NgramLanguageModel  # noqa: E402
from asr.decode.greedy import greedy_decode, greedy_hypotheses, greedy_paths  # noqa: E402
from asr.decode.hypothesis import Hypothesis, WordTiming  # noqa: E402

__all__ = ["BeamConfig", "BeamSearchDecoder", "Hypothesis", "NgramLanguageModel", "WordTiming",
           "greedy_decode", "greedy_hypotheses", "greedy_paths"]
