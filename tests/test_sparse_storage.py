"""Sparse storage (ESE's CSC, BBS's CSB) and Huffman sizes against independent counts."""

import pytest
import torch

from asr.compress.huffman import huffman_bits, huffman_code_lengths
from asr.compress.pruning import bank_balanced_prune
from asr.compress.sparse_formats import encode_csb, encode_csc
from asr.config_errors import ConfigError


def _sparse_codes(rows, cols, density, seed):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(-100, 100, (rows, cols), generator=g)
    return codes * (torch.rand(rows, cols, generator=g) < density)


def _reference_csc(codes, num_pes, index_bits):
    """Entries and padding the plain way: PE by PE, column by column, row by row."""
    span = 1 << index_bits
    entries, padding = [], 0
    for p in range(num_pes):
        for c in range(codes.shape[1]):
            zeros, pending = 0, []
            for r in range(p, codes.shape[0], num_pes):
                v = int(codes[r, c])
                if v == 0:
                    zeros += 1
                    if zeros == span:          # the index field overflows: a padding entry
                        pending.append((p, c, 0, span - 1))
                        zeros = 0
                    continue
                entries += pending + [(p, c, v, zeros)]   # trailing zeros need no padding
                padding += len(pending)
                zeros, pending = 0, []
    return entries, padding


@pytest.mark.parametrize("num_pes,index_bits,density", [(1, 4, 0.1), (4, 2, 0.2), (8, 3, 0.05)])
def test_csc_matches_a_plain_encoder_and_decodes_exactly(num_pes, index_bits, density):
    codes = _sparse_codes(64, 24, density, seed=num_pes)
    csc = encode_csc(codes, num_pes, index_bits)
    entries, padding = _reference_csc(codes, num_pes, index_bits)
    assert csc.padding == padding
    assert csc.values.tolist() == [e[2] for e in entries]
    assert csc.rel_index.tolist() == [e[3] for e in entries]
    per_pe = [sum(1 for e in entries if e[0] == p) for p in range(num_pes)]
    assert csc.pe_entries().tolist() == per_pe
    assert torch.equal(csc.to_dense(), codes)


def test_csc_pads_a_gap_longer_than_the_index_field():
    col = torch.zeros(40, 1, dtype=torch.int64)
    col[16, 0] = 5     # 16 zeros before it: a 4-bit index holds 15, so one padding entry
    col[39, 0] = 7     # 22 zeros: one more
    csc = encode_csc(col, 1, 4)
    assert csc.values.tolist() == [0, 5, 0, 7]
    assert csc.rel_index.tolist() == [15, 0, 15, 6]
    assert csc.padding == 2
    assert torch.equal(csc.to_dense(), col)


def test_csc_stores_kept_weights_with_a_zero_code_through_the_mask():
    codes = torch.tensor([[0, 3], [2, 0]])
    mask = torch.tensor([[True, True], [True, False]])
    csc = encode_csc(codes, 1, 4, mask=mask, fill=-1)
    assert csc.entries == 3
    assert csc.to_dense().tolist() == [[0, 3], [2, -1]]


def test_csb_round_trip_and_balance_check():
    w = torch.randn(16, 64)
    mask = bank_balanced_prune(w, 0.25, bank_size=16)
    codes = torch.randint(1, 50, (16, 64)) * mask
    csb = encode_csb(codes, mask, 16)
    assert csb.values.shape == (16, 4, 4) and csb.index_bits == 4
    assert bool((csb.positions[..., 1:] > csb.positions[..., :-1]).all())
    assert torch.equal(csb.to_dense(), codes)
    mask[0, 0] = ~mask[0, 0]
    with pytest.raises(ConfigError, match="not bank-balanced"):
        encode_csb(codes, mask, 16, name="W_ix")


def test_huffman_sizes_match_the_textbook_and_an_independent_count():
    # CLRS's example: the optimal code takes 224 bits (in thousands of characters).
    freqs = {0: 45, 1: 13, 2: 12, 3: 16, 4: 9, 5: 5}
    lengths = huffman_code_lengths(freqs)
    assert sum(freqs[s] * n for s, n in lengths.items()) == 224
    assert sum(2.0 ** -n for n in lengths.values()) == 1.0     # a full prefix code
    # Independent count: the coded size equals the sum of every merge's weight.
    g = torch.Generator().manual_seed(0)
    symbols = torch.randint(0, 30, (5000,), generator=g) ** 2 % 37
    counts = sorted(torch.unique(symbols, return_counts=True)[1].tolist())
    merged = 0
    while len(counts) > 1:
        a, b = counts.pop(0), counts.pop(0)
        merged += a + b
        counts = sorted([*counts, a + b])
    assert huffman_bits(symbols) == merged
    assert huffman_bits(torch.zeros(10, dtype=torch.int64)) == 10
