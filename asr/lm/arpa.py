"""A pure-Python ARPA n-gram model: back-off scoring without KenLM (KenLM is an optional,
faster extra)."""

from __future__ import annotations

import re
from pathlib import Path

from asr.lm.kneser_ney import BOS, EOS, UNK

_COUNT = re.compile(r"^ngram (\d+)=(\d+)$")
_SECTION = re.compile(r"^\\(\d+)-grams:$")


class ArpaError(ValueError):
    """A malformed ARPA file; the message names the file and line."""


class NgramLM:
    """Back-off n-gram model read from ARPA; scores are log10 probabilities.

    Words outside the vocabulary are scored as ``<unk>`` (or -99 when the model has none).
    """

    def __init__(self, probs: list[dict[tuple[str, ...], float]],
                 backoffs: list[dict[tuple[str, ...], float]]):
        self.order = len(probs) - 1
        self.probs = probs
        self.backoffs = backoffs
        self.vocab = {g[0] for g in probs[1]}

    @classmethod
    def from_arpa(cls, path: str | Path) -> NgramLM:
        path = Path(path)
        if not path.is_file():
            raise ArpaError(f"{path}: no such language model file")
        counts: dict[int, int] = {}
        probs: list[dict] = [{}]
        backoffs: list[dict] = [{}]
        section = None
        with open(path, encoding="utf-8") as f:
            for lineno, raw in enumerate(f, 1):
                line = raw.strip()
                if not line or line == "\\data\\":
                    continue
                if line == "\\end\\":
                    break
                if m := _COUNT.match(line):
                    counts[int(m.group(1))] = int(m.group(2))
                    continue
                if m := _SECTION.match(line):
                    section = int(m.group(1))
                    while len(probs) <= section:
                        probs.append({})
                        backoffs.append({})
                    continue
                fields = line.split()
                if section is None or len(fields) not in (section + 1, section + 2):
                    raise ArpaError(f"{path}:{lineno}: not an ARPA line: {line[:80]!r}")
                try:
                    gram = tuple(fields[1:section + 1])
                    probs[section][gram] = float(fields[0])
                    if len(fields) == section + 2:
                        backoffs[section][gram] = float(fields[-1])
                except ValueError:
                    raise ArpaError(f"{path}:{lineno}: bad number in {line[:80]!r}") from None
        if not counts or len(probs) < 2:
            raise ArpaError(f"{path}: no \\data\\ section or no 1-grams: not an ARPA file")
        for n, expected in counts.items():
            got = len(probs[n]) if n < len(probs) else 0
            if got != expected:
                raise ArpaError(f"{path}: header says {expected} {n}-grams, file has {got}")
        return cls(probs, backoffs)

    def log10_prob(self, context: tuple[str, ...], word: str) -> float:
        """log10 P(word | context), backing off through shorter contexts."""
        if word not in self.vocab:
            word = UNK
            if UNK not in self.vocab:
                return -99.0
        context = context[len(context) - self.order + 1:] if self.order > 1 else ()
        penalty = 0.0
        while True:
            gram = (*context, word)
            score = self.probs[len(gram)].get(gram)
            if score is not None:
                return penalty + score
            if not context:
                return -99.0
            penalty += self.backoffs[len(context)].get(context, 0.0)
            context = context[1:]

    def sentence_log10_prob(self, words: list[str], boundaries: bool = True) -> float:
        """log10 probability of a sentence (with ``<s>``/``</s>`` when ``boundaries``)."""
        context: tuple[str, ...] = (BOS,) if boundaries else ()
        total = 0.0
        for word in [*words, EOS] if boundaries else words:
            total += self.log10_prob(context, word)
            context = (*context, word)
        return total
