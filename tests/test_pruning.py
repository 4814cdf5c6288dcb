"""Every pruner keeps the largest weights and meets its exact structural promise."""

import pytest
import torch

from asr.compress import bank_balanced_prune, block_prune, load_balanced_prune, magnitude_prune
from asr.compress.sparse_formats import encode_csc
from asr.config_errors import ConfigError


@pytest.fixture
def weight():
    return torch.randn(64, 96, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("density", [1.0, 0.5, 0.125, 0.05])
def test_magnitude_keeps_the_largest(weight, density):
    mask = magnitude_prune(weight, density)
    assert mask.sum() == round(density * weight.numel())
    if density < 1:
        assert weight.abs()[mask].min() >= weight.abs()[~mask].max()


@pytest.mark.parametrize("density", [0.5, 0.25, 0.0625])
def test_bank_balanced_same_nonzeros_in_every_bank(weight, density):
    mask = bank_balanced_prune(weight, density, bank_size=16)
    per_bank = mask.view(64, 6, 16).sum(-1)
    assert (per_bank == round(density * 16)).all()
    banks, kept = weight.abs().view(64, 6, 16), mask.view(64, 6, 16)
    for r, b in [(0, 0), (17, 3), (63, 5)]:
        assert banks[r, b][kept[r, b]].min() >= banks[r, b][~kept[r, b]].max()


@pytest.mark.parametrize("density", [0.5, 0.11])
def test_load_balanced_same_nonzeros_on_every_pe(weight, density):
    mask = load_balanced_prune(weight, density, num_pes=8)
    per_pe = torch.stack([mask[p::8].sum() for p in range(8)])
    assert (per_pe == round(density * 8 * 96)).all()
    for p in (0, 5):
        rows = weight.abs()[p::8]
        assert rows[mask[p::8]].min() >= rows[~mask[p::8]].max()


@pytest.mark.parametrize("density,max_run", [(0.11, 15), (0.05, 15), (0.3, 3)])
def test_padding_free_load_balanced_needs_no_csc_padding(density, max_run):
    weight = torch.randn(256, 96, generator=torch.Generator().manual_seed(1))
    plain = load_balanced_prune(weight, density, num_pes=8)
    mask = load_balanced_prune(weight, density, num_pes=8, max_zero_run=max_run)
    for p in range(8):                  # same count on every PE as the plain pattern
        assert mask[p::8].sum() == plain[p::8].sum()
        for c in range(96):             # no run of zeros longer than max_run before a weight
            run = 0
            for kept in mask[p::8, c].tolist():
                assert not kept or run <= max_run, (p, c)
                run = 0 if kept else run + 1
    bits = (max_run + 1).bit_length() - 1
    assert encode_csc(plain.long(), 8, bits).padding > 0
    csc = encode_csc(mask.long(), 8, bits)
    assert csc.padding == 0 and csc.entries == mask.sum()
    # the padding slots went to real weights, at a small cost in kept magnitude
    assert weight.abs()[mask].sum() >= 0.9 * weight.abs()[plain].sum()
    # a pattern without long runs is left as it is
    assert torch.equal(load_balanced_prune(weight, density, num_pes=8, max_zero_run=31), plain)


def test_block_keeps_whole_blocks_of_largest_norm(weight):
    mask = block_prune(weight, 0.25, block=(4, 8))
    blocks = mask.view(16, 4, 12, 8)
    whole = blocks.all(dim=(1, 3)) | ~blocks.any(dim=(1, 3))
    assert whole.all() and blocks.all(dim=(1, 3)).sum() == 48
    norms = weight.view(16, 4, 12, 8).pow(2).sum(dim=(1, 3))
    kept = blocks.all(dim=(1, 3))
    assert norms[kept].min() >= norms[~kept].max()


def test_invalid_structures_name_the_key(weight):
    with pytest.raises(ConfigError, match="prune.bank_size"):
        bank_balanced_prune(weight, 0.5, bank_size=7)
    with pytest.raises(ConfigError, match="prune.num_pes"):
        load_balanced_prune(weight, 0.5, num_pes=5)
    with pytest.raises(ConfigError, match="prune.max_zero_run"):
        load_balanced_prune(weight, 0.5, num_pes=8, max_zero_run=-1)
    with pytest.raises(ConfigError, match="prune.block"):
        block_prune(weight, 0.5, block=(5, 8))
    with pytest.raises(ConfigError, match="prune.density"):
        magnitude_prune(weight, 0.0)
