"""What a decoder returns per utterance: text, word timings and a confidence."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class WordTiming:
    word: str
    start: float  # seconds
    end: float


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


def words_from_frames(chars: list[tuple[str, int]], frame_shift: float) -> list[WordTiming]:
    """Word timings from ``(character, frame)`` emissions: a word spans its first to its last
    character's frame (end exclusive)."""
    words: list[WordTiming] = []
    current, start, last = "", 0, 0
    for ch, frame in [*chars, (" ", -1)]:
        if ch == " ":
            if current:
                words.append(WordTiming(current, round(start * frame_shift, 3),
                                        round((last + 1) * frame_shift, 3)))
            current = ""
            continue
        if not current:
            start = frame
        current += ch
        last = frame
    return words
