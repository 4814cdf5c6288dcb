"""Interpolated modified Kneser-Ney estimation (Chen & Goodman, 1998) written as ARPA.

No package on PyPI estimates ARPA files (KenLM's ``lmplz`` is not in its wheel), so the
project has its own. The estimate follows KenLM's ``lmplz``:

* sentences are wrapped in ``<s> ... </s>``; the vocabulary gets ``<unk>``;
* the highest order uses raw counts, lower orders use continuation counts (the number of
  distinct words seen before the n-gram), except n-grams starting with ``<s>``, which cannot
  be continued to the left and keep their raw counts;
* each order has three discounts D1, D2, D3+ from its count-of-counts;
* every order is interpolated with the next lower one, and unigrams with the uniform
  distribution, so ``<unk>`` receives the left-over mass;
* probabilities of seen n-grams are the interpolated ones, and the back-off weight of a
  context is its interpolation weight, so that ARPA back-off reproduces the interpolated
  model exactly and every conditional distribution sums to one.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from asr.atomic import atomic_open

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
Ngram = tuple[str, ...]


@dataclass
class NgramEstimate:
    """``probs[n][ngram]`` and ``backoffs[n][ngram]`` as natural probabilities/weights."""

    order: int
    probs: list[dict[Ngram, float]]
    backoffs: list[dict[Ngram, float]]
    discounts: list[tuple[float, float, float]]


def _discounts(counts: Iterable[int]) -> tuple[float, float, float]:
    """D1, D2, D3+ from the count-of-counts (with safe values for tiny corpora)."""
    coc = Counter(c for c in counts if c <= 4)
    t1, t2, t3, t4 = (coc.get(k, 0) for k in (1, 2, 3, 4))
    if min(t1, t2, t3, t4) == 0:
        # Too little data for Chen & Goodman's formula: the textbook constant discounts.
        return 0.5, 1.0, 1.5
    y = t1 / (t1 + 2 * t2)
    d = (1 - 2 * y * t2 / t1, 2 - 3 * y * t3 / t2, 3 - 4 * y * t4 / t3)
    # The formula can leave (0, k) on odd count statistics; keep each D_k a proper discount.
    return tuple(min(max(dk, 0.05), k - 0.05 if k < 3 else 2.95)
                 for k, dk in zip((1, 2, 3), d))  # type: ignore[return-value]


def estimate_kneser_ney(sentences: Iterable[list[str]], order: int) -> NgramEstimate:
    """Estimate an interpolated modified Kneser-Ney model of ``order`` from word lists."""
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    raw: list[Counter[Ngram]] = [Counter() for _ in range(order + 1)]
    for words in sentences:
        tokens = [BOS, *words, EOS]
        for n in range(1, order + 1):
            for i in range(len(tokens) - n + 1):
                raw[n][tuple(tokens[i:i + n])] += 1
    if not raw[1]:
        raise ValueError("no text to estimate a language model from")

    # Adjusted counts: raw at the top order and for <s>-initial n-grams, else continuation.
    adjusted: list[Counter[Ngram]] = [Counter() for _ in range(order + 1)]
    adjusted[order] = Counter(raw[order])
    for n in range(order - 1, 0, -1):
        left_ext: Counter[Ngram] = Counter(g[1:] for g in raw[n + 1])
        for g, c in raw[n].items():
            adjusted[n][g] = c if g[0] == BOS else left_ext.get(g, 0)
    adjusted[1].pop((BOS,), None)  # <s> is never predicted
    adjusted[1].setdefault((UNK,), 0)  # unseen: it gets only the uniform share

    vocab_size = len(adjusted[1])
    probs: list[dict[Ngram, float]] = [{} for _ in range(order + 1)]
    backoffs: list[dict[Ngram, float]] = [{} for _ in range(order + 1)]
    discounts: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)]
    for n in range(1, order + 1):
        d = _discounts(adjusted[n].values())
        discounts.append(d)
        by_context: dict[Ngram, list[tuple[Ngram, int]]] = defaultdict(list)
        for g, c in adjusted[n].items():
            by_context[g[:-1]].append((g, c))
        for context, entries in by_context.items():
            total = sum(c for _, c in entries)
            if total == 0:  # only <unk> among unigrams: no data at this order
                gamma = 1.0
            else:
                mass = sum(d[min(c, 3) - 1] for _, c in entries if c > 0)
                gamma = mass / total
            for g, c in entries:
                discounted = max(c - d[min(c, 3) - 1], 0.0) / total if c > 0 else 0.0
                lower = 1.0 / vocab_size if n == 1 else probs[n - 1][g[1:]]
                probs[n][g] = discounted + gamma * lower
            if n > 1:
                backoffs[n - 1][context] = gamma
    return NgramEstimate(order, probs, backoffs, discounts)


def _log10(x: float) -> float:
    return math.log10(x) if x > 0 else -99.0


def write_arpa(model: NgramEstimate, path: str | Path) -> None:
    """Write ``model`` in ARPA format (log10 probabilities and back-off weights). The file is
    streamed to a temporary file and replaces ``path`` only when complete, so an interrupted
    build leaves the previous model as it was."""
    tables = [{}] + [dict(model.probs[n]) for n in range(1, model.order + 1)]
    tables[1][(BOS,)] = 0.0  # <s> only starts sentences: written as log10 p = -99
    with atomic_open(path, "w", "utf-8") as f:
        f.write("\n\\data\\\n")
        f.writelines(f"ngram {n}={len(tables[n])}\n" for n in range(1, model.order + 1))
        for n in range(1, model.order + 1):
            f.write(f"\n\\{n}-grams:\n")
            for g in sorted(tables[n]):
                line = f"{_log10(tables[n][g]):.7g}\t{' '.join(g)}"
                if g in model.backoffs[n]:
                    line += f"\t{_log10(model.backoffs[n][g]):.7g}"
                f.write(line + "\n")
        f.write("\n\\end\\\n")


def build_arpa(sentences: Iterable[list[str]], order: int, path: str | Path) -> NgramEstimate:
    """Estimate a modified Kneser-Ney model of ``order`` and write it to ``path``."""
    model = estimate_kneser_ney(sentences, order)
    write_arpa(model, path)
    return model
