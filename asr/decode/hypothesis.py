"""What a decoder returns per utterance: text, word timings and a confidence."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field


@dataclass
class WordTiming:
    """A word's span in seconds (end exclusive) and, where the decoder gives one, its
    confidence in [0, 1] (greedy: the geometric mean of the best path's frame posteriors over
    the word's frames; beam search gives none)."""

    word: str
    start: float  # seconds
    end: float
    confidence: float | None = None


@dataclass
class Hypothesis:
    """A decoded utterance.

    ``confidence`` is in [0, 1]: for greedy decoding the geometric mean of the best path's
    frame posteriors; for beam search the posterior of the best beam among the final beams.
    """

    text: str
    words: list[WordTiming] = field(default_factory=list)
    confidence: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def words_from_frames(chars: list[tuple[str, int]], frame_shift: float,
                      frame_logp: Sequence[float] | None = None) -> list[WordTiming]:
    """Word timings from ``(character, frame)`` emissions: a word spans its first to its last
    character's frame (end exclusive). With ``frame_logp`` (the best path's log posterior of
    every frame) each word gets the geometric mean of its frames' posteriors as confidence."""
    words: list[WordTiming] = []
    current, start, last = "", 0, 0
    for ch, frame in [*chars, (" ", -1)]:
        if ch == " ":
            if current:
                confidence = None
                if frame_logp is not None:
                    span = frame_logp[start:last + 1]
                    confidence = round(math.exp(sum(span) / len(span)), 4)
                words.append(WordTiming(current, round(start * frame_shift, 3),
                                        round((last + 1) * frame_shift, 3), confidence))
            current = ""
            continue
        if not current:
            start = frame
        current += ch
        last = frame
    return words
