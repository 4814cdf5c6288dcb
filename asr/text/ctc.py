"""CTC's best path: argmax per frame, repeats merged, blanks and padding dropped.

Training's validation WER and the greedy decoder both read texts this way."""

from __future__ import annotations

import torch

from asr.text.vocab import CharVocab


def emissions(best: torch.Tensor, lengths: torch.Tensor, blank: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks over ``(batch, time)`` best tokens: the valid (unpadded) frames, and the frames
    that emit a character (first of a run of repeats, not blank, not padding)."""
    valid = torch.arange(best.shape[1], device=best.device)[None] < lengths[:, None]
    changed = torch.ones_like(best, dtype=torch.bool)
    changed[:, 1:] = best[:, 1:] != best[:, :-1]
    return valid, valid & changed & (best != blank)


def greedy_paths(logits: torch.Tensor, lengths: torch.Tensor, blank: int = 0
                 ) -> list[list[int]]:
    """Collapsed best paths of ``(batch, time, vocab)`` scores: argmax per frame, merge
    repeats, drop blanks and padded frames. All masking is done on the whole batch at once."""
    best = logits.argmax(dim=-1)                                    # (B, T)
    _, keep = emissions(best, lengths, blank)
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
