"""Number formats and quantizers: exact round trips, rounding, saturation, partitions."""

import pytest
import torch

from asr.compress.fixed_point import FixedPointFormat, Overflow, Rounding, fit, narrow
from asr.compress.quantize import (
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
    wrap = FixedPointFormat(4, 0, overflow="wrap")
    q, n = wrap.fit(torch.tensor([8.0, -9.0, 7.0]))
    assert q.tolist() == [-8, 7, 7] and n == 2
    assert str(FixedPointFormat(8, 7)) == "Q1.7"
    with pytest.raises(ConfigError, match="bits"):
        FixedPointFormat(1, 0)


def test_integer_codes_wrap_as_a_register_of_that_width():
    # int64 codes wrap through their low bits; the same as (q - lo) mod 2**bits + lo
    values = [-(2 ** 40) - 3, -(2 ** 31) - 1, -(2 ** 31), -9, -8, -1, 0, 7, 8, 2 ** 31 - 1,
              2 ** 31, 2 ** 33 + 5, 2 ** 40]
    for bits, signed in ((4, True), (32, True), (8, False)):
        lo = -(1 << (bits - 1)) if signed else 0
        want = [(v - lo) % (1 << bits) + lo for v in values]
        assert fit(torch.tensor(values), bits, False, signed).tolist() == want
        q, n = narrow(torch.tensor(values), bits, False, signed)
        assert q.tolist() == want and n == sum(w != v for w, v in zip(want, values))


def test_format_derived_range_and_modes():
    fmt = FixedPointFormat(8, 7)
    assert (fmt.qmin, fmt.qmax, fmt.lsb) == (-128, 127, 2 ** -7)
    assert (fmt.min, fmt.max) == (-1.0, 127 / 128)
    assert fmt.rounding is Rounding.NEAREST and fmt.overflow is Overflow.SATURATE
    u = FixedPointFormat(8, 8, signed=False)
    assert (u.qmin, u.qmax, u.max) == (0, 255, 255 / 256)
    assert FixedPointFormat(16, 12, rounding="floor").rounding is Rounding.FLOOR
    with pytest.raises(ConfigError, match="rounding: expected one of .*got 'up'"):
        FixedPointFormat(8, 7, rounding="up")
    with pytest.raises(ConfigError, match="overflow: expected one of .*got 'clip'"):
        FixedPointFormat(8, 7, overflow="clip")


def test_format_equality_is_strict():
    assert FixedPointFormat(8, 7) == FixedPointFormat(8, 7, rounding="nearest")
    assert FixedPointFormat(8, 7) != FixedPointFormat(8, 7, rounding="floor")
    assert FixedPointFormat(8, 7) != FixedPointFormat(8, 7, overflow="wrap")
    assert FixedPointFormat(8, 7) != FixedPointFormat(8, 7, signed=False)
    assert FixedPointFormat(8, 7) != FixedPointFormat(9, 7)
    assert FixedPointFormat(8, 7) != (8, 7)
    assert len({FixedPointFormat(8, 7), FixedPointFormat(8, 7), FixedPointFormat(8, 6)}) == 2


@pytest.mark.parametrize("text,bits,frac,signed", [
    ("Q1.7", 8, 7, True), ("Q3.12", 15, 12, True), ("Q8.8", 16, 8, True),
    ("Q0.8u", 8, 8, False), ("1-7", 8, 7, True), ("0-8", 8, 8, True), ("2-6", 8, 6, True),
])
def test_format_parse_and_print_both_notations(text, bits, frac, signed):
    fmt = FixedPointFormat.parse(text)
    assert (fmt.bits, fmt.frac, fmt.signed) == (bits, frac, signed)
    assert FixedPointFormat.parse(str(fmt)) == fmt
    if signed:
        assert FixedPointFormat.parse(fmt.dashed()) == fmt
    assert fmt.dashed() == f"{bits - frac}-{frac}"


def test_format_parse_errors_name_the_text():
    for bad in ("Q1", "1.7", "8", "a-b", ""):
        with pytest.raises(ConfigError, match="expected Q<int>.<frac>"):
            FixedPointFormat.parse(bad)


def test_format_dict_round_trip_keeps_every_field():
    fmt = FixedPointFormat(12, 9, signed=True, rounding="nearest_even", overflow="wrap")
    d = fmt.to_dict()
    assert d == {"bits": 12, "frac": 9, "signed": True, "rounding": "nearest_even",
                 "overflow": "wrap"}
    assert all(type(v) in (int, bool, str) for v in d.values())   # weights_only loadable
    assert FixedPointFormat.from_dict(d) == fmt
    with pytest.raises(ConfigError, match="format"):
        FixedPointFormat.from_dict({**d, "scale": 2})


def test_requantize_shifts_with_the_format_rounding():
    q = torch.tensor([5, -5, 6, 7, 1000])           # at frac 2: 1.25, -1.25, 1.5, 1.75, 250
    assert FixedPointFormat(8, 1).requantize(q, 2)[0].tolist() == [3, -2, 3, 4, 127]
    assert FixedPointFormat(8, 1, rounding="floor").requantize(q, 2)[0].tolist() == \
        [2, -3, 3, 3, 127]
    up, out = FixedPointFormat(8, 3).requantize(q, 2)          # exact left shift, saturated
    assert up.tolist() == [10, -10, 12, 14, 127] and out == 1


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
