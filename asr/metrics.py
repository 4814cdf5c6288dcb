"""Word and character error rates through jiwer (no hand-written edit distance)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import jiwer


@dataclass
class ErrorRates:
    """Corpus-level error rates; ``wer``/``cer`` are fractions (0.05 = 5%)."""

    wer: float
    cer: float
    substitutions: int
    deletions: int
    insertions: int
    ref_words: int
    utterances: int

    def to_dict(self) -> dict:
        return asdict(self)


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> ErrorRates:
    """WER and CER of normalized hypotheses against references (corpus level).

    Empty references are allowed (their words count as insertions); an empty hypothesis is
    scored as all deletions.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("no utterances to score")
    # jiwer refuses empty strings; a single space scores as zero words.
    refs = [r if r.strip() else " " for r in references]
    hyps = [h if h.strip() else " " for h in hypotheses]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    ref_words = words.hits + words.substitutions + words.deletions
    return ErrorRates(
        wer=_rate(words.substitutions + words.deletions + words.insertions, ref_words),
        cer=_rate(chars.substitutions + chars.deletions + chars.insertions,
                  chars.hits + chars.substitutions + chars.deletions),
        substitutions=words.substitutions,
        deletions=words.deletions,
        insertions=words.insertions,
        ref_words=ref_words,
        utterances=len(references),
    )


def _rate(errors: int, total: int) -> float:
    return errors / total if total else float(errors > 0)
