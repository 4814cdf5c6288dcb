"""Huffman coding sizes (Deep Compression's last stage): how many bits a stream of symbols
takes under the optimal prefix code built from its own histogram."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable

import torch


def huffman_code_lengths(counts: dict[int, int]) -> dict[int, int]:
    """Code length of every symbol of a histogram (a single symbol gets a 1-bit code)."""
    symbols = [s for s, c in counts.items() if c > 0]
    if len(symbols) <= 1:
        return {s: 1 for s in symbols}
    # Heap of (weight, tie-breaker, symbols under the node): merging two nodes adds one bit to
    # every symbol below them.
    heap = [(counts[s], i, [s]) for i, s in enumerate(sorted(symbols))]
    heapq.heapify(heap)
    lengths = dict.fromkeys(symbols, 0)
    tie = len(heap)
    while len(heap) > 1:
        w1, _, s1 = heapq.heappop(heap)
        w2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (w1 + w2, tie, s1 + s2))
        tie += 1
    return lengths


def histogram(symbols: torch.Tensor | Iterable[int]) -> dict[int, int]:
    if isinstance(symbols, torch.Tensor):
        values, counts = torch.unique(symbols.flatten(), return_counts=True)
        return dict(zip(values.tolist(), counts.tolist()))
    return dict(Counter(symbols))


def huffman_bits(symbols: torch.Tensor | Iterable[int]) -> int:
    """Bits of the Huffman-coded stream (the code table itself not included)."""
    counts = histogram(symbols)
    lengths = huffman_code_lengths(counts)
    return sum(counts[s] * n for s, n in lengths.items())
