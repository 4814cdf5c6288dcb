"""Number formats of the sparse low-bit model and the quantizers that map float tensors to them.

* :class:`~asr.compress.fixed_point.FixedPointFormat` (its own module): two's-complement
  Q(m.n) integers with a rounding mode and saturation (or wrap-around).
* Dynamic fixed point (DFP): a fixed width whose fractional length comes from the data's range
  (:func:`frac_for_range`), shared by a whole tensor or by each partition of it (per row, per PE
  of an interleaved engine, per bank); :func:`quantize_fixed` returns the integers and the
  fractional length of every partition.
* FlexPoint: 16-bit mantissas with one 5-bit exponent per tensor (:func:`quantize_flexpoint`), a
  DFP whose shared exponent must fit the exponent field.
* Weight sharing by k-means (:func:`kmeans_codebook`, Deep Compression: 2**b centroids, linear
  initialization) and power-of-two weights (:func:`quantize_pow2`, log-domain as in LogNet).

Every quantizer returns a :class:`QuantizedTensor`: integer codes plus what turns them back into
values, so the artifact stores integers and the hardware model reads the same integers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from asr.compress.fixed_point import FixedPointFormat
from asr.config_errors import check


def frac_for_range(max_abs: torch.Tensor, bits: int, signed: bool = True) -> torch.Tensor:
    """DFP's fractional length: the most fraction bits that still hold ``max_abs``
    (elementwise over partitions). ``int_bits = floor(log2(max_abs)) + 1`` so that ``max_abs``
    itself does not saturate; an all-zero partition gets ``bits - 1``."""
    m = max_abs.double()
    int_bits = torch.where(m > 0, torch.floor(torch.log2(m.clamp_min(1e-300))) + 1,
                           torch.zeros_like(m))
    return (bits - int(signed) - int_bits).to(torch.int64)


GRANULARITY = ("tensor", "row", "pe", "bank")


def partition_max_abs(weight: torch.Tensor, granularity: str, num_pes: int = 1,
                      bank_size: int = 1) -> torch.Tensor:
    """Largest magnitude per partition of a 2-D matrix, broadcastable against it: one value
    (``tensor``), one per row (``row``), per PE of a row-interleaved engine (``pe``: row ``r``
    belongs to PE ``r % num_pes``) or per bank of ``bank_size`` columns in each row (``bank``)."""
    a = weight.detach().abs().double()
    rows, cols = a.shape
    if granularity == "tensor":
        return a.max().reshape(1, 1)
    if granularity == "row":
        return a.amax(dim=1, keepdim=True)
    if granularity == "pe":
        check(rows % num_pes == 0, "num_pes", f"a divisor of the row count {rows}", num_pes)
        per_pe = a.view(rows // num_pes, num_pes, cols).amax(dim=(0, 2))
        return per_pe.repeat(rows // num_pes).view(rows, 1)
    if granularity == "bank":
        check(cols % bank_size == 0, "bank_size", f"a divisor of the row length {cols}",
              bank_size)
        per_bank = a.view(rows, cols // bank_size, bank_size).amax(dim=2)
        return per_bank.repeat_interleave(bank_size, dim=1)
    raise ValueError(f"granularity: expected one of {GRANULARITY}, got {granularity!r}")


@dataclass
class QuantizedTensor:
    """Integer codes and how to read them.

    ``kind`` is ``fixed`` (value = code * 2**-frac, ``frac`` broadcast over the codes),
    ``codebook`` (value = codebook[code]; code -1 marks a pruned zero) or ``pow2`` (value =
    sign(code) * 2**(|code| - 1 + exp_min); code 0 is zero).
    """

    kind: str
    codes: torch.Tensor           # int64, the tensor's shape
    bits: int                     # bits of one stored code (the value bits of the table)
    frac: torch.Tensor | None = None
    codebook: torch.Tensor | None = None
    exp_min: int = 0
    signed: bool = True
    rounding: str = "nearest"
    saturated: int = 0            # codes that hit the format's range while quantizing

    def dequantize(self) -> torch.Tensor:
        if self.kind == "fixed":
            return self.codes.double() * torch.pow(2.0, -self.frac.double())
        if self.kind == "codebook":
            values = self.codebook.double()[self.codes.clamp_min(0)]
            return torch.where(self.codes >= 0, values, torch.zeros_like(values))
        if self.kind == "pow2":
            mag = torch.pow(2.0, (self.codes.abs() - 1 + self.exp_min).double())
            return torch.where(self.codes == 0, torch.zeros_like(mag), mag * self.codes.sign())
        raise ValueError(f"unknown quantized kind {self.kind!r}")

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def quantize_fixed(weight: torch.Tensor, bits: int, granularity: str = "tensor",
                   rounding: str = "nearest", saturate: bool = True, num_pes: int = 1,
                   bank_size: int = 1, frac: int | None = None) -> QuantizedTensor:
    """Dynamic fixed point: ``bits``-wide codes with a fractional length per partition chosen
    from the partition's range (or ``frac`` for every partition: plain Q(m.n))."""
    w = weight.detach()
    flat = w.reshape(w.shape[0], -1)  # conv kernels (out, in, k) are (out, in * k) matrices
    if frac is None:
        fracs = frac_for_range(partition_max_abs(flat, granularity, num_pes, bank_size), bits)
    else:
        fracs = torch.tensor([[frac]], dtype=torch.int64)
    fmt = FixedPointFormat(bits, 0, rounding=rounding,
                           overflow="saturate" if saturate else "wrap")
    codes, saturated = fmt.from_scaled(flat.double() * torch.pow(2.0, fracs.double()))
    codes = codes.reshape(w.shape)
    if fracs.shape[1] == 1:  # per tensor or per row: broadcast over the remaining dimensions
        fracs = fracs.reshape(fracs.shape[0], *([1] * (w.dim() - 1)))
    else:
        fracs = fracs.reshape(w.shape)
    return QuantizedTensor("fixed", codes, bits, frac=fracs,
                           rounding=rounding, saturated=saturated)


def quantize_flexpoint(weight: torch.Tensor, mantissa_bits: int = 16, exponent_bits: int = 5,
                       rounding: str = "nearest") -> QuantizedTensor:
    """FlexPoint (flex16+5): one shared exponent per tensor, held in ``exponent_bits`` bits
    (two's complement), so ``frac = -exponent`` is clamped to the field's range."""
    w = weight.detach()
    frac = int(frac_for_range(w.abs().max().reshape(1), mantissa_bits)[0])
    lo, hi = -(1 << (exponent_bits - 1)), (1 << (exponent_bits - 1)) - 1
    frac = -min(max(-frac, lo), hi)
    return quantize_fixed(w, mantissa_bits, rounding=rounding, frac=frac)


def kmeans_codebook(weight: torch.Tensor, mask: torch.Tensor | None, bits: int,
                    iterations: int = 30) -> QuantizedTensor:
    """Deep Compression's weight sharing: 1-D k-means over the kept weights with ``2**bits``
    centroids, linearly initialized between the smallest and largest weight (the
    initialization Deep Compression found best: it keeps the rare large weights).

    Pruned weights get code -1 (zero, not a centroid); codes of kept weights are the centroid
    indices, ``bits`` wide."""
    w = weight.detach().double()
    keep = torch.ones_like(w, dtype=torch.bool) if mask is None else mask.bool()
    values = w[keep]
    k = 1 << bits
    if values.numel() == 0:
        return QuantizedTensor("codebook", torch.full(w.shape, -1, dtype=torch.int64), bits,
                               codebook=torch.zeros(k, dtype=torch.float64))
    centroids = torch.linspace(float(values.min()), float(values.max()), k, dtype=torch.float64)
    for _ in range(iterations):
        assign = nearest_centroid(values, centroids)
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, assign, values)
        counts = torch.zeros(k, dtype=torch.float64).index_add_(0, assign,
                                                                torch.ones_like(values))
        moved = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
        if torch.equal(moved, centroids):
            break
        centroids = moved
    codes = torch.full(w.shape, -1, dtype=torch.int64)
    codes[keep] = nearest_centroid(values, centroids)
    return QuantizedTensor("codebook", codes, bits, codebook=centroids)


def nearest_centroid(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid of every value (ties to the lower index)."""
    order = torch.argsort(centroids)
    srt = centroids[order]
    mids = (srt[1:] + srt[:-1]) / 2
    return order[torch.bucketize(values, mids, right=False)]


def quantize_pow2(weight: torch.Tensor, bits: int, mask: torch.Tensor | None = None
                  ) -> QuantizedTensor:
    """Log-domain weights ``sign * 2**e``: one sign bit and ``bits - 1`` bits of exponent code
    (code 0 is zero), the largest exponent taken from the tensor's range. Rounding is to the
    nearest power of two in the log domain; magnitudes below half the smallest step become 0."""
    check(bits >= 2, "bits", ">= 2 for power-of-two weights", bits)
    w = weight.detach().double()
    if mask is not None:
        w = w * mask
    levels = (1 << (bits - 1)) - 1
    max_abs = float(w.abs().max())
    if max_abs == 0:
        return QuantizedTensor("pow2", torch.zeros(w.shape, dtype=torch.int64), bits)
    exp_max = round(math.log2(max_abs))
    exp_min = exp_max - levels + 1
    e = torch.round(torch.log2(w.abs().clamp_min(1e-300))).clamp(max=exp_max)
    code = (e - exp_min + 1).clamp_min(1)
    # Below the smallest power the nearest value is zero or 2**exp_min: the linear midpoint.
    code = torch.where(w.abs() < 2.0 ** (exp_min - 1), torch.zeros_like(code), code)
    return QuantizedTensor("pow2", (code * w.sign()).to(torch.int64), bits, exp_min=exp_min)


def quantize_matrix(weight: torch.Tensor, fmt, mask: torch.Tensor | None = None,
                    num_pes: int = 1, bank_size: int = 1) -> QuantizedTensor | None:
    """Quantize one weight matrix by a :class:`~asr.compress.config.NumberFormatConfig`
    (``None`` for ``kind: none``); pruned weights (``mask`` False) stay exactly zero."""
    w = weight.detach() if mask is None else weight.detach() * mask
    if fmt.kind == "none":
        return None
    if fmt.kind == "fixed":
        return quantize_fixed(w, fmt.bits, fmt.granularity, fmt.rounding, fmt.saturate,
                              num_pes, bank_size)
    if fmt.kind == "flexpoint":
        return quantize_flexpoint(w, fmt.bits, fmt.exponent_bits, fmt.rounding)
    if fmt.kind == "kmeans":
        return kmeans_codebook(w, mask if mask is not None else w != 0, fmt.bits)
    if fmt.kind == "pow2":
        return quantize_pow2(w, fmt.bits, mask)
    raise ValueError(f"kind: expected fixed, flexpoint, kmeans, pow2 or none, got {fmt.kind!r}")
