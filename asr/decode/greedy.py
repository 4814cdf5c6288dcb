"""Greedy (best-path) CTC decoding, vectorized over the batch."""

from __future__ import annotations

import torch

from asr.text.vocab import CharVocab


def greedy_paths(logits: torch.Tensor, lengths: torch.Tensor, blank: int = 0
                 ) -> list[list[int]]:
    """Collapsed best paths of ``(batch, time, vocab)`` scores: argmax per frame, merge
    repeats, drop blanks and padded frames. All masking is done on the whole batch at once."""
    best = logits.argmax(dim=-1)                                    # (B, T)
    valid = torch.arange(best.shape[1], device=best.device)[None] < lengths[:, None]
    changed = torch.ones_like(best, dtype=torch.bool)
    changed[:, 1:] = best[:, 1:] != best[:, :-1]
    keep = valid & changed & (best != blank)
    flat = best[keep].tolist()
    counts = keep.sum(dim=1).tolist()
    out, start = [], 0
    for n in counts:
        out.append(flat[start:start + n])
        start += n
    return out


def greedy_decode(logits: torch.Tensor, lengths: torch.Tensor, vocab: CharVocab) -> list[str]:
    """Texts of a batch by greedy CTC decoding; spaces normalized to single separators."""
    return [" ".join(vocab.decode(p).split()) for p in greedy_paths(logits, lengths,
                                                                     vocab.blank_id)]
