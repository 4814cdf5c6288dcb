"""Greedy (best-path) CTC decoding with word times and confidence, vectorized over the batch.

The best path itself is :mod:`asr.text.ctc`'s, shared with training's validation WER."""

from __future__ import annotations

import torch

from asr.decode.hypothesis import Hypothesis, words_from_frames
from asr.text.ctc import emissions, greedy_decode, greedy_paths
from asr.text.vocab import CharVocab


def greedy_hypotheses(logits: torch.Tensor, lengths: torch.Tensor, vocab: CharVocab,
                      frame_shift: float = 0.01) -> list[Hypothesis]:
    """Greedy decoding with word timings and a confidence per utterance (the geometric mean
    of the best path's frame posteriors)."""
    log_probs = logits.float().log_softmax(-1)
    best_logp, best = log_probs.max(dim=-1)                          # (B, T)
    valid, keep = emissions(best, lengths, vocab.blank_id)
    confidence = ((best_logp * valid).sum(1) / lengths.clamp(min=1)).exp().tolist()
    hyps = []
    for b in range(best.shape[0]):
        frames = keep[b].nonzero().flatten().tolist()
        chars = [(vocab.tokens[t], f) for t, f in zip(best[b, frames].tolist(), frames)]
        words = words_from_frames(chars, frame_shift, best_logp[b].tolist())
        hyps.append(Hypothesis(" ".join(w.word for w in words), words, confidence[b]))
    return hyps


__all__ = ["greedy_decode", "greedy_hypotheses", "greedy_paths"]
