"""CTC decoding: greedy best path (and beam search with language models, issue 4)."""

from asr.decode.greedy import greedy_decode, greedy_paths

__all__ = ["greedy_decode", "greedy_paths"]
