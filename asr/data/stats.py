"""Corpus statistics: hours, utterances, speakers, vocabulary, durations."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from asr.data.manifest import Utterance


@dataclass
class CorpusStats:
    utterances: int
    hours: float
    speakers: int
    words: int
    word_types: int
    characters: list[str]
    duration_min: float
    duration_mean: float
    duration_median: float
    duration_max: float

    def to_dict(self) -> dict:
        return asdict(self)


def corpus_stats(utterances: Sequence[Utterance]) -> CorpusStats:
    """Statistics of a list of utterances (an empty list gives zeros)."""
    durations = [u.duration for u in utterances] or [0.0]
    words = Counter(w for u in utterances for w in u.text.split())
    chars = sorted({c for u in utterances for c in u.text})
    return CorpusStats(
        utterances=len(utterances),
        hours=round(sum(durations) / 3600, 4),
        speakers=len({u.speaker for u in utterances if u.speaker is not None}),
        words=sum(words.values()),
        word_types=len(words),
        characters=chars,
        duration_min=round(min(durations), 3),
        duration_mean=round(statistics.fmean(durations), 3),
        duration_median=round(statistics.median(durations), 3),
        duration_max=round(max(durations), 3),
    )
