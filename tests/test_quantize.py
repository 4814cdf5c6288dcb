"""Number formats and quantizers: exact round trips, rounding, saturation, partitions."""

import pytest
import torch

from asr.compress.quantize import (
    FixedPointFormat,
    frac_for_range,
    kmeans_codebook,
    quantize_fixed,
    quantize_flexpoint,
    quantize_pow2,
)
from asr.config_errors import ConfigError


@pytest.mark.parametrize("rounding", ["nearest", "nearest_even", "floor", "zero"])
def test_representable_values_round_trip_exactly(rounding):
    fmt = FixedPointFormat(8, 5, rounding=rounding)
    codes = torch.arange(fmt.qmin, fmt.qmax + 1)
    values = codes.double() / 32
    assert torch.equal(fmt.to_int(values), codes)
    assert torch.equal(fmt.quantize(values), values)


def test_rounding_modes_on_halves():
    x = torch.tensor([0.5, -0.5, 1.5, -1.5, 2.5])
    expect = {
        "nearest": [1, 0, 2, -1, 3],       # halves up
        "nearest_even": [0, -0, 2, -2, 2],
        "floor": [0, -1, 1, -2, 2],
        "zero": [0, 0, 1, -1, 2],
    }
    for rounding, want in expect.items():
        got = FixedPointFormat(8, 0, rounding=rounding).to_int(x)
        assert got.tolist() == want, rounding


def test_saturation_and_wrap_are_counted():
    sat = FixedPointFormat(4, 0)                       # [-8, 7]
    q, n = sat.fit(torch.tensor([-9.0, -8.0, 7.0, 8.0, 20.0]))
    assert q.tolist() == [-8, -8, 7, 7, 7] and n == 3
    wrap = FixedPointFormat(4, 0, saturate=False)
    q, n = wrap.fit(torch.tensor([8.0, -9.0, 7.0]))
    assert q.tolist() == [-8, 7, 7] and n == 2
    assert str(FixedPointFormat(8, 7)) == "Q1.7"
    with pytest.raises(ConfigError, match="bits"):
        FixedPointFormat(1, 0)


def test_dfp_fraction_length_holds_the_range():
    assert frac_for_range(torch.tensor([1.0]), 8).item() == 6    # 1.0 needs one int bit
    assert frac_for_range(torch.tensor([0.9]), 8).item() == 7
    assert frac_for_range(torch.tensor([5.0]), 16).item() == 12
    assert frac_for_range(torch.tensor([0.0]), 8).item() == 7
    w = torch.randn(64, 32) * 3
    q = quantize_fixed(w, 8)
    assert q.saturated == 0
    assert (q.dequantize() - w).abs().max() <= 2.0 ** -q.frac.item() / 2 + 1e-12


def test_partitioned_dfp_shares_a_scale_per_pe_row_bank():
    w = torch.randn(8, 32)
    w[1] *= 100  # PE 1 (rows 1 and 5 with 4 PEs) has a large range
    pe = quantize_fixed(w, 12, "pe", num_pes=4)
    fr = pe.frac.flatten()
    assert fr[1] == fr[5] and fr[0] == fr[4] and fr[1] < fr[0]
    row = quantize_fixed(w, 12, "row")
    assert row.frac.shape == (8, 1)
    bank = quantize_fixed(w, 12, "bank", bank_size=8)
    assert bank.frac.shape == (8, 32)
    assert torch.equal(bank.frac[:, :8], bank.frac[:, :1].expand(8, 8))
    for q in (pe, row, bank):
        assert q.saturated == 0
        err = (q.dequantize() - w).abs()
        assert bool((err <= torch.pow(2.0, -q.frac.double()) / 2 + 1e-12).all())
    # a conv kernel (out, in, k) is quantized as an (out, in * k) matrix
    conv = quantize_fixed(torch.randn(8, 4, 3), 8, "row")
    assert conv.codes.shape == (8, 4, 3) and conv.frac.shape == (8, 1, 1)


def test_flexpoint_clamps_the_shared_exponent():
    q = quantize_flexpoint(torch.tensor([0.75, -0.5]))
    assert q.frac.item() == 15 and torch.equal(q.dequantize(), torch.tensor([0.75, -0.5]).double())
    tiny = quantize_flexpoint(torch.tensor([1e-9]), exponent_bits=5)
    assert tiny.frac.item() == 16          # exponent -16, the 5-bit field's floor


def test_kmeans_recovers_shared_values_and_keeps_pruned_zeros():
    levels = torch.tensor([-0.8, -0.1, 0.3, 0.9], dtype=torch.float64)
    w = levels[torch.randint(0, 4, (40, 20), generator=torch.Generator().manual_seed(0))]
    mask = torch.rand(40, 20, generator=torch.Generator().manual_seed(1)) < 0.5
    q = kmeans_codebook(w * mask, mask, bits=2)
    assert torch.allclose(torch.sort(q.codebook).values, levels)
    assert torch.allclose(q.dequantize(), w * mask)
    assert bool((q.codes[~mask] == -1).all()) and bool((q.codes[mask] >= 0).all())


def test_pow2_round_trips_powers_of_two():
    w = torch.tensor([0.5, -0.25, 0.125, 0.0, -1.0, 0.3])
    q = quantize_pow2(w, bits=4)
    assert q.dequantize()[:5].tolist() == [0.5, -0.25, 0.125, 0.0, -1.0]
    assert q.dequantize()[5].item() == 0.25   # 0.3 is nearest 2**-2 in the log domain
    small = quantize_pow2(torch.tensor([1.0, 2.0 ** -10]), bits=3)   # exponents 0, -1, -2
    assert small.dequantize().tolist() == [1.0, 0.0]
