"""The one fixed-point number type of the project, and its vectorized integer arithmetic.

A :class:`FixedPointFormat` is a ``bits``-wide integer code ``q`` read as ``q * 2**-frac``
(two's complement when ``signed``), with the rounding and overflow modes that every conversion
into it uses. The compressor's quantizers, the artifact, the engine's datapath, its activation
ROMs, ``asr-hw trace`` and the command line all speak of formats through this type.

Two notations are read and written:

- ``Q<int>.<frac>`` (``Q1.7``, ``Q3.12``; a trailing ``u`` for unsigned): ``int = bits - frac``
  with the sign bit counted in ``int``, as in ARM's and the seed's notation;
- the integer-fraction pair ``<int>-<frac>`` (``1-7``) of the seed's format sweeps.

Both are the same split: ``Q1.7`` and ``1-7`` are the 8-bit format with 7 fraction bits.

The arithmetic works on whole int64 tensors, exactly (codes stay far below 2**62):

- :func:`round_float`: a float tensor to integral values by a rounding mode (quantizers);
- :func:`shift_round`: ``q * 2**-s`` rounded, an arithmetic right shift with a rounding adder
  (``s < 0`` is an exact left shift): how the datapath moves between fractional lengths;
- :func:`fit`: into ``bits`` two's-complement bits, saturating or wrapping; :func:`narrow`
  the same, with the number of values that were out of range.

Rounding modes (:class:`Rounding`): ``nearest`` adds half an LSB then floors (ties towards
+inf, a rounding adder), ``nearest_even`` breaks ties to even (IEEE), ``floor`` drops the low
bits (two's-complement truncation), ``zero`` truncates the magnitude (sign-magnitude).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch

from asr.config_errors import ConfigError, check


class Rounding(str, Enum):
    NEAREST = "nearest"
    NEAREST_EVEN = "nearest_even"
    FLOOR = "floor"
    ZERO = "zero"


class Overflow(str, Enum):
    SATURATE = "saturate"
    WRAP = "wrap"


ROUNDING = tuple(r.value for r in Rounding)
OVERFLOW = tuple(o.value for o in Overflow)


def rounding_mode(value: str | Rounding, key: str = "rounding") -> Rounding:
    """``value`` as a :class:`Rounding`; a :class:`ConfigError` naming ``key`` otherwise."""
    if isinstance(value, Rounding):   # the datapath's hot path: already a mode
        return value
    try:
        return Rounding(value)
    except ValueError:
        raise ConfigError(f"{key}: expected one of {ROUNDING}, got {value!r}") from None


def round_float(x: torch.Tensor, rounding: str | Rounding) -> torch.Tensor:
    """Round a float tensor to integral values (same dtype) by ``rounding``."""
    mode = rounding_mode(rounding)
    if mode is Rounding.NEAREST:
        return torch.floor(x + 0.5)
    if mode is Rounding.NEAREST_EVEN:
        return torch.round(x)
    if mode is Rounding.FLOOR:
        return torch.floor(x)
    return torch.trunc(x)


def _round_right(q: torch.Tensor, right, mode: Rounding) -> torch.Tensor:
    """``q * 2**-right`` rounded, ``right >= 0`` (an int or a broadcast tensor)."""
    floor = torch.bitwise_right_shift(q, right)
    if mode is Rounding.FLOOR:
        return floor
    if mode is Rounding.ZERO:
        return torch.where(q < 0, -torch.bitwise_right_shift(-q, right), floor)
    if isinstance(right, int):
        half = (1 << right) >> 1
    else:
        one = torch.ones((), dtype=torch.int64)
        half = torch.bitwise_right_shift(torch.bitwise_left_shift(one, right), 1)  # 0 if 0
    if mode is Rounding.NEAREST:
        return torch.bitwise_right_shift(q + half, right)
    rem = q - torch.bitwise_left_shift(floor, right)
    odd = torch.bitwise_and(floor, 1) == 1
    if isinstance(half, int):
        up = (rem > half) | ((rem == half) & odd) if half > 0 else torch.zeros_like(odd)
    else:
        up = (rem > half) | ((rem == half) & (half > 0) & odd)
    return floor + up.to(torch.int64)


def shift_round(q: torch.Tensor, shift: torch.Tensor | int,
                rounding: str | Rounding) -> torch.Tensor:
    """``q * 2**-shift`` rounded by ``rounding``; ``shift`` may be a broadcast tensor, and a
    negative shift is an exact left shift."""
    mode = rounding_mode(rounding)
    if isinstance(shift, int):
        if shift <= 0:
            return torch.bitwise_left_shift(q, -shift) if shift else q
        return _round_right(q, shift, mode)
    lo, hi = torch.aminmax(shift)
    if int(lo) == int(hi):      # one shift for all: the cheaper scalar path
        return shift_round(q, int(lo), mode)
    if int(hi) <= 0:
        return torch.bitwise_left_shift(q, -shift)
    if int(lo) >= 0:
        return _round_right(q, shift, mode)
    return _round_right(torch.bitwise_left_shift(q, (-shift).clamp(min=0)), shift.clamp(min=0),
                        mode)


def int_range(bits: int, signed: bool = True) -> tuple[int, int]:
    """The smallest and largest code of ``bits`` bits."""
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def fit(q: torch.Tensor, bits: int, saturate: bool, signed: bool = True) -> torch.Tensor:
    """``q`` into ``bits`` bits, saturated or wrapped around as a ``bits``-wide register
    would; exactly the out-of-range codes change (no branch on values: traceable)."""
    lo, hi = int_range(bits, signed)
    if saturate:
        return q.clamp(lo, hi)
    if q.is_floating_point():   # integral values in a float tensor (the quantizers)
        return torch.remainder(q - lo, 1 << bits) + lo
    # (q - lo) mod 2**bits as the low bits of its two's-complement code: no division
    return torch.bitwise_and(q - lo, (1 << bits) - 1) + lo


def narrow(q: torch.Tensor, bits: int, saturate: bool, signed: bool = True
           ) -> tuple[torch.Tensor, int]:
    """:func:`fit`, with the number of values that were out of range: ``(q, out_of_range)``.
    In range, ``q`` itself comes back."""
    lo, hi = int_range(bits, signed)
    if q.numel() == 0:
        return q, 0
    qmin, qmax = torch.aminmax(q)
    if int(qmin) >= lo and int(qmax) <= hi:
        return q, 0
    fitted = fit(q, bits, saturate, signed)
    return fitted, int((fitted != q).sum())


_Q_FORM = re.compile(r"^[Qq](-?\d+)\.(-?\d+)(u?)$")
_DASH_FORM = re.compile(r"^(\d+)-(\d+)$")


@dataclass(frozen=True)
class FixedPointFormat:
    """``bits``-wide codes scaled by ``2**-frac`` (``frac`` may exceed ``bits`` or be negative).

    Equality is strict: two formats are equal only when width, fractional length, sign,
    rounding and overflow modes all are. Rounding and overflow accept their names as strings
    and are held as :class:`Rounding` and :class:`Overflow`.
    """

    bits: int
    frac: int
    signed: bool = True
    rounding: Rounding = Rounding.NEAREST
    overflow: Overflow = Overflow.SATURATE

    def __post_init__(self) -> None:
        object.__setattr__(self, "rounding", rounding_mode(self.rounding))
        try:
            object.__setattr__(self, "overflow", Overflow(self.overflow))
        except ValueError:
            raise ConfigError(f"overflow: expected one of {OVERFLOW}, "
                              f"got {self.overflow!r}") from None
        check(isinstance(self.bits, int) and isinstance(self.frac, int), "bits/frac",
              "integers", (self.bits, self.frac))
        check(self.bits >= 1 + int(self.signed), "bits",
              ">= 2 for a signed format, >= 1 unsigned", self.bits)
        check(self.bits <= 62, "bits", "<= 62 (held exactly in int64)", self.bits)

    # -- derived quantities ---------------------------------------------------------------
    @property
    def int_bits(self) -> int:
        """Bits left of the binary point, the sign bit included when signed."""
        return self.bits - self.frac

    @property
    def saturate(self) -> bool:
        return self.overflow is Overflow.SATURATE

    @property
    def qmin(self) -> int:
        return int_range(self.bits, self.signed)[0]

    @property
    def qmax(self) -> int:
        return int_range(self.bits, self.signed)[1]

    @property
    def lsb(self) -> float:
        """The value of one code step, ``2**-frac``."""
        return 2.0 ** -self.frac

    @property
    def min(self) -> float:
        return self.qmin * self.lsb

    @property
    def max(self) -> float:
        return self.qmax * self.lsb

    # -- conversions ----------------------------------------------------------------------
    def fit(self, q: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Bring integer codes into range by the overflow mode; returns the codes and how
        many were out of range."""
        return narrow(q, self.bits, self.saturate, self.signed)

    def from_scaled(self, scaled: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Values already multiplied by their ``2**frac`` (a tensor of scales allows one
        fractional length per partition) -> int64 codes and the count out of range."""
        q, out = self.fit(round_float(scaled.double(), self.rounding))
        return q.to(torch.int64), out

    def to_int(self, x: torch.Tensor) -> torch.Tensor:
        """Float values -> int64 codes (rounded, then saturated or wrapped)."""
        return self.from_scaled(x.double() * 2.0 ** self.frac)[0]

    def to_float(self, q: torch.Tensor) -> torch.Tensor:
        return q.double() * self.lsb

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Fake quantization: the nearest representable values, in ``x``'s dtype."""
        return self.to_float(self.to_int(x)).to(x.dtype)

    def requantize(self, q: torch.Tensor, frac: int | torch.Tensor) -> tuple[torch.Tensor, int]:
        """Codes with fractional length ``frac`` -> this format: shift with this format's
        rounding, then saturate or wrap. Returns the codes and the count out of range."""
        return self.fit(shift_round(q, frac - self.frac, self.rounding))

    # -- text and dict forms --------------------------------------------------------------
    def __str__(self) -> str:
        return f"Q{self.int_bits}.{self.frac}" + ("" if self.signed else "u")

    def dashed(self) -> str:
        """The integer-fraction form, ``1-7``."""
        return f"{self.int_bits}-{self.frac}"

    @classmethod
    def parse(cls, text: str, **modes: Any) -> FixedPointFormat:
        """``Q1.7``, ``Q3.12u`` or ``1-7`` (``modes``: signed, rounding, overflow)."""
        s = text.strip()
        m = _Q_FORM.match(s)
        if m:
            int_bits, frac = int(m.group(1)), int(m.group(2))
            if m.group(3):
                modes = {**modes, "signed": False}
            return cls(int_bits + frac, frac, **modes)
        m = _DASH_FORM.match(s)
        if m:
            return cls(int(m.group(1)) + int(m.group(2)), int(m.group(2)), **modes)
        raise ConfigError(f"format: expected Q<int>.<frac> (Q1.7) or <int>-<frac> (1-7), "
                          f"got {text!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (loadable with ``torch.load(weights_only=True)``)."""
        return {"bits": self.bits, "frac": self.frac, "signed": self.signed,
                "rounding": self.rounding.value, "overflow": self.overflow.value}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FixedPointFormat:
        unknown = set(d) - {"bits", "frac", "signed", "rounding", "overflow"}
        check(not unknown, "format", "keys bits, frac, signed, rounding, overflow",
              sorted(unknown))
        return cls(**d)
