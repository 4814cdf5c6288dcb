"""CTC decoding: greedy best path, and beam search with word language models.

The names below are loaded on first use: the command-line modules import
:mod:`asr.decode.options` and :mod:`asr.decode.inputs` through this package, and their
``--help`` should not wait for torch and pyctcdecode.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

# pyctcdecode warns at import when the optional kenlm is missing; the pure-Python LM covers it.
logging.getLogger("pyctcdecode").setLevel(logging.ERROR)

_EXPORTS = {
    "BeamConfig": "asr.decode.beam", "BeamSearchDecoder": "asr.decode.beam",
    "NgramLanguageModel": "asr.decode.beam", "greedy_decode": "asr.decode.greedy",
    "greedy_hypotheses": "asr.decode.greedy", "greedy_paths": "asr.decode.greedy",
    "Hypothesis": "asr.decode.hypothesis", "WordTiming": "asr.decode.hypothesis",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
