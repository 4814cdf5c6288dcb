"""The sparse low-bit model: one file that ``asr-decode``, ``asr-eval`` and ``hw`` all read.

:func:`build_artifact` takes a (fine-tuned, masked) float model, exports its inference graph
(batch norm folded, ESE's gate matrices), and quantizes every weight matrix and bias by the
compression config; pruned matrices are also encoded in the configured sparse storage (ESE's CSC
or BBS's CSB). Activation ranges from calibration utterances give every signal a DFP format.
The result is an :class:`Artifact`; :func:`save_artifact` writes it and :func:`read_artifact`
reads and validates it (:class:`ArtifactError`, naming the file and the field, otherwise).

The file (schema version 2) stores what the engine stores, and nothing dense: a
``torch.save`` of plain dicts, lists, numbers, strings and one uint8 tensor (``torch.load(...,
weights_only=True)`` reads it)::

    {"format": "asr-fpga/sparse-low-bit-model", "version": 2, "byteorder": "little",
     "sha256": <hex SHA-256 of payload and blob>, "blob": <uint8: every tensor's bytes>,
     "payload": {
        "graph":       the inference graph without weights (op kinds, names, dilations,
                       activations); every weight and bias is the key of its entry below,
        "matrices":    {key: matrix entry}, "biases": {key: bias entry},
        "activations": {signal: {"max_abs", "format"}},
        "compress":    the resolved CompressConfig,
        "model_config", "features", "vocab_tokens", "config" (the resolved asr-compress
        config), "source" (the checkpoint), "metrics"}}

Every tensor of the payload lies in ``blob`` and is written as ``{"__blob__": [start, stop]}``
(plus ``dtype`` and ``shape`` unless it is a 1-D uint8 stream): one archive record instead of
one per tensor.

A matrix entry: ``shape``, ``layer_type``, ``target_density``, ``nnz``, ``pruned``, ``quant``
(how its codes read: ``kind`` fixed/codebook/pow2 and ``bits``; for fixed a
:class:`~asr.compress.fixed_point.FixedPointFormat` and the fractional length of every
partition at its own granularity, tensor/row/PE/bank (:class:`FracPartition`); the float64
codebook; or ``exp_min``; null for a matrix left in float) and ``storage``, the codes as the
engine holds them: ``csc`` (the stored weights' codes, every entry's relative index, entries
per PE column, where the padding entries are), ``csb`` (values and positions in their banks),
``dense`` (every code), each integer stream bit-packed at the width its range needs
(:class:`PackedInts`: at most the format's bits), or ``float`` (a matrix left unquantized: its
tensor in its own dtype). No mask is stored: CSC and CSB storage hold it exactly; a pruned
matrix stored dense has the weights whose code is not the pruned one, plus ``kept_at_fill``
(the few kept weights that quantized to the pruned code). A bias entry: its codes and
:class:`CodeFormat`, or its float tensor when not quantized.

:attr:`Artifact.graph` rebuilds the dequantized inference graph (float64, exactly what
:func:`build_artifact` computed, run in PyTorch by :class:`GraphModel`) from the codes. The file
is about the storage table's accounted bytes (:mod:`asr.compress.accounting`) plus the biases
and a few kilobytes of metadata. The SHA-256 is checked on reading, and writes are atomic (a
temporary file in the same folder, fsynced, then renamed over the target).
"""

from __future__ import annotations

import copy
import hashlib
import math
import struct
import sys
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, get_origin, get_type_hints

import numpy as np
import torch
from torch import nn

from asr.atomic import replacing
from asr.compress.config import CompressConfig, layer_type
from asr.compress.fixed_point import FixedPointFormat
from asr.compress.quantize import QuantizedTensor, frac_for_range, quantize_matrix
from asr.compress.sparse_formats import CSBMatrix, CSCMatrix, encode_csb, encode_csc
from asr.config_errors import ConfigError
from asr.features.config import FeatureConfig
from asr.models.acoustic import AcousticModel, GraphModel
from asr.models.graph import (
    DeltaLSTMOp,
    InferenceGraph,
    graph_from_dict,
    graph_parameters,
    graph_to_dict,
    run_graph,
)
from asr.text.vocab import CharVocab

ARTIFACT_FORMAT = "asr-fpga/sparse-low-bit-model"
ARTIFACT_VERSION = 2
_RERUN = "re-run asr-compress to rewrite it"


class ArtifactError(ValueError):
    """A file that is not a readable compressed model; the message names it."""


class _FieldError(Exception):
    """A field of the payload that does not hold what the schema says (file named later)."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}")
        self.where, self.problem = where, problem


# -- reading plain values ----------------------------------------------------------------------

def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _check_type(value: Any, kinds: tuple[type, ...], where: str) -> Any:
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    elif float in kinds and isinstance(value, int):
        ok = True
    else:
        ok = isinstance(value, kinds)
    if not ok:
        names = " or ".join("None" if k is type(None) else k.__name__ for k in kinds)
        raise _FieldError(where, f"expected {names}, got {type(value).__name__}")
    return value


def _get(d: Any, key: str, where: str, *kinds: type) -> Any:
    """``d[key]``, required, of one of ``kinds``."""
    if not isinstance(d, dict):
        raise _FieldError(where or "payload", f"expected a mapping, got {type(d).__name__}")
    if key not in d:
        raise _FieldError(_join(where, key), "missing")
    return _check_type(d[key], kinds, _join(where, key)) if kinds else d[key]


def _get_choice(d: Any, key: str, where: str, allowed) -> str:
    """``d[key]``, a string among ``allowed``."""
    value = _get(d, key, where, str)
    _expect(value in allowed, _join(where, key),
            f"expected one of {sorted(allowed) if isinstance(allowed, dict) else allowed}, "
            f"got {value!r}")
    return value


def _tensor(d: Any, key: str, where: str, dtype: torch.dtype | None = None,
            floating: bool = False) -> torch.Tensor:
    t = _get(d, key, where, torch.Tensor)
    if dtype is not None and t.dtype != dtype:
        raise _FieldError(_join(where, key), f"expected a {dtype} tensor, got {t.dtype}")
    if floating and not t.is_floating_point():
        raise _FieldError(_join(where, key), f"expected a float tensor, got {t.dtype}")
    return t


def _shape(d: Any, key: str, where: str) -> tuple[int, ...]:
    s = _get(d, key, where, list, tuple)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in s):
        raise _FieldError(_join(where, key), f"expected a list of sizes, got {s!r}")
    return tuple(s)


def _expect(ok: bool, where: str, problem: str) -> None:
    if not ok:
        raise _FieldError(where, problem)


# -- bit packing -------------------------------------------------------------------------------

_CHUNK = 1 << 18   # values per packing step (a multiple of 8: chunks start on a byte)


def pack_bits(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Non-negative integers below ``2**bits``, each ``bits`` wide, least significant bit
    first, into a uint8 tensor of ``ceil(n * bits / 8)`` bytes (vectorized)."""
    if not 0 <= bits <= 63:
        raise ValueError(f"bits: expected 0..63, got {bits}")
    v = values.reshape(-1).to(torch.int64)
    if bits == 0 or v.numel() == 0:
        if v.numel() and bool((v != 0).any()):
            raise ValueError("0-bit packing holds zeros only")
        return torch.zeros(0, dtype=torch.uint8)
    lo, hi = torch.aminmax(v)
    if int(lo) < 0 or int(hi) >> bits:
        raise ValueError(f"values [{int(lo)}, {int(hi)}] do not fit {bits} unsigned bits")
    shifts = np.arange(bits, dtype=np.int64)
    arr = v.numpy()
    out = []
    for start in range(0, arr.size, _CHUNK):
        planes = (arr[start:start + _CHUNK, None] >> shifts) & 1
        out.append(np.packbits(planes.astype(np.uint8).reshape(-1), bitorder="little"))
    return torch.from_numpy(np.concatenate(out))


def unpack_bits(data: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """The ``count`` integers :func:`pack_bits` packed ``bits`` wide (int64)."""
    if bits == 0:
        return torch.zeros(count, dtype=torch.int64)
    need = math.ceil(count * bits / 8)
    if data.dtype != torch.uint8 or data.numel() != need:
        raise ValueError(f"{count} values of {bits} bits need {need} bytes, got "
                         f"{data.numel()} ({data.dtype})")
    raw = data.contiguous().numpy()
    weights = np.left_shift(np.int64(1), np.arange(bits, dtype=np.int64))
    out = np.empty(count, dtype=np.int64)
    for start in range(0, count, _CHUNK):
        n = min(_CHUNK, count - start)
        first, last = start * bits // 8, math.ceil((start + n) * bits / 8)
        planes = np.unpackbits(raw[first:last], count=n * bits, bitorder="little")
        out[start:start + n] = planes.reshape(n, bits).astype(np.int64) @ weights
    return torch.from_numpy(out)


@dataclass(frozen=True, eq=False)
class PackedInts:
    """An integer tensor stored ``bits`` wide: ``value = packed + offset`` (``bits`` 0: every
    value is ``offset``). :meth:`encode` picks the narrowest width for the values' range."""

    data: torch.Tensor           # uint8, ceil(numel * bits / 8) bytes
    shape: tuple[int, ...]
    bits: int
    offset: int

    @classmethod
    def encode(cls, values: torch.Tensor) -> PackedInts:
        v = values.detach().cpu().to(torch.int64)
        if v.numel() == 0:
            return cls(torch.zeros(0, dtype=torch.uint8), tuple(v.shape), 0, 0)
        lo, hi = (int(x) for x in torch.aminmax(v))
        bits = (hi - lo).bit_length()
        return cls(pack_bits(v - lo, bits), tuple(v.shape), bits, lo)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def decode(self) -> torch.Tensor:
        return (unpack_bits(self.data, self.bits, self.numel) + self.offset).reshape(self.shape)

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "shape": list(self.shape), "bits": self.bits,
                "offset": self.offset}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> PackedInts:
        data = _tensor(d, "data", where, torch.uint8)
        shape = _shape(d, "shape", where)
        bits = _get(d, "bits", where, int)
        offset = _get(d, "offset", where, int)
        _expect(0 <= bits <= 63, _join(where, "bits"), f"expected 0..63, got {bits}")
        need = math.ceil(math.prod(shape) * bits / 8)
        _expect(data.dim() == 1 and data.numel() == need, _join(where, "data"),
                f"{math.prod(shape)} values of {bits} bits need {need} bytes, "
                f"got {data.numel()}")
        return cls(data, shape, bits, offset)


def _float_tensor(t: torch.Tensor) -> torch.Tensor:
    """A float tensor as stored: detached, on the CPU, its own storage (not a view)."""
    return t.detach().cpu().clone().contiguous()


# -- number formats ----------------------------------------------------------------------------

GRANULARITIES = ("tensor", "row", "pe", "bank", "element")


def _frac_shape(granularity: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The broadcast shape :func:`~asr.compress.quantize.quantize_fixed` gives ``frac``."""
    rows, dims = shape[0], len(shape)
    if granularity == "tensor":
        return (1,) * dims
    if granularity in ("row", "pe"):
        return (rows,) + (1,) * (dims - 1)
    return shape


@dataclass(frozen=True, eq=False)
class FracPartition:
    """The fractional length of every DFP partition of a tensor, at its own granularity:
    ``tensor`` (one), ``row`` (per row), ``pe`` (``size`` values: row ``r`` has value
    ``r % size``), ``bank`` (per ``size`` columns of each row of the ``(rows, -1)`` matrix),
    ``element`` (every weight)."""

    granularity: str
    size: int
    values: PackedInts

    @classmethod
    def of(cls, frac: torch.Tensor, shape: tuple[int, ...], num_pes: int = 1,
           bank_size: int = 1) -> FracPartition:
        f = frac.detach().to(torch.int64)
        rows = shape[0]
        if tuple(f.shape) == _frac_shape("tensor", shape):
            return cls("tensor", 1, PackedInts.encode(f.reshape(1)))
        if tuple(f.shape) == _frac_shape("row", shape):
            per_row = f.reshape(rows)
            for p in sorted({1, num_pes}):
                if rows % p == 0 and torch.equal(per_row.view(rows // p, p),
                                                 per_row[:p].expand(rows // p, p)):
                    return cls("pe", p, PackedInts.encode(per_row[:p]))
            return cls("row", 1, PackedInts.encode(per_row))
        if tuple(f.shape) == tuple(shape):
            f2 = f.reshape(rows, -1)
            cols = f2.shape[1]
            if bank_size >= 1 and cols % bank_size == 0:
                banks = f2.reshape(rows, cols // bank_size, bank_size)
                if bool((banks == banks[..., :1]).all()):
                    return cls("bank", bank_size, PackedInts.encode(banks[..., 0]))
            return cls("element", 1, PackedInts.encode(f2))
        raise ValueError(f"fractional lengths of shape {tuple(f.shape)} do not partition a "
                         f"tensor of shape {shape}")

    def _values_shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        rows = shape[0]
        cols = math.prod(shape[1:])
        return {"tensor": (1,), "row": (rows,),
                "pe": (self.size,) if rows % self.size == 0 else None,
                "bank": (rows, cols // self.size) if cols % self.size == 0 else None,
                "element": (rows, cols)}[self.granularity]

    def expand(self, shape: tuple[int, ...]) -> torch.Tensor:
        """int64 fractional lengths broadcastable against codes of ``shape`` (the shape the
        quantizer gave them)."""
        v = self.values.decode()
        rows = shape[0]
        if self.granularity == "pe":
            v = v.repeat(rows // self.size)
        elif self.granularity == "bank":
            v = v.repeat_interleave(self.size, dim=1)
        return v.reshape(_frac_shape(self.granularity, shape))

    def to_dict(self) -> dict[str, Any]:
        return {"granularity": self.granularity, "size": self.size,
                "values": self.values.to_dict()}

    @classmethod
    def from_dict(cls, d: Any, where: str, shape: tuple[int, ...]) -> FracPartition:
        g = _get_choice(d, "granularity", where, GRANULARITIES)
        size = _get(d, "size", where, int)
        _expect(size >= 1, _join(where, "size"), f"expected >= 1, got {size}")
        part = cls(g, size, PackedInts.from_dict(_get(d, "values", where), _join(where, "values")))
        want = part._values_shape(shape)
        _expect(want == part.values.shape, _join(where, "values.shape"),
                f"expected {want} for {g} partitions of a {shape} tensor, "
                f"got {part.values.shape}")
        return part


QUANT_KINDS = ("fixed", "codebook", "pow2")


@dataclass(frozen=True, eq=False)
class CodeFormat:
    """How a tensor's integer codes read (a :class:`QuantizedTensor` without its codes).

    ``fixed``: ``format`` (width, sign, rounding, overflow; its ``frac`` is the largest
    partition's) and ``frac``, the fractional length of every partition; ``codebook``: the
    ``2**bits`` float64 centroids (code -1: a pruned zero); ``pow2``: ``exp_min``."""

    kind: str
    bits: int
    format: FixedPointFormat | None = None
    frac: FracPartition | None = None
    codebook: torch.Tensor | None = None
    exp_min: int = 0
    saturated: int = 0

    @property
    def fill(self) -> int:
        """The code of a weight that is not stored."""
        return -1 if self.kind == "codebook" else 0

    @classmethod
    def of(cls, q: QuantizedTensor, shape: tuple[int, ...], saturate: bool = True,
           num_pes: int = 1, bank_size: int = 1) -> CodeFormat:
        if q.kind == "fixed":
            fmt = FixedPointFormat(q.bits, int(q.frac.max()), q.signed, q.rounding,
                                   "saturate" if saturate else "wrap")
            return cls("fixed", q.bits, fmt, FracPartition.of(q.frac, shape, num_pes,
                                                              bank_size),
                       saturated=int(q.saturated))
        if q.kind == "codebook":
            return cls("codebook", q.bits, codebook=_float_tensor(q.codebook),
                       saturated=int(q.saturated))
        if q.kind == "pow2":
            return cls("pow2", q.bits, exp_min=int(q.exp_min), saturated=int(q.saturated))
        raise ValueError(f"unknown quantized kind {q.kind!r}")

    def quantized(self, codes: torch.Tensor) -> QuantizedTensor:
        """The :class:`QuantizedTensor` of ``codes`` in this format."""
        shape = tuple(codes.shape)
        if self.kind == "fixed":
            return QuantizedTensor("fixed", codes, self.bits, frac=self.frac.expand(shape),
                                   signed=self.format.signed,
                                   rounding=self.format.rounding.value,
                                   saturated=self.saturated)
        if self.kind == "codebook":
            return QuantizedTensor("codebook", codes, self.bits, codebook=self.codebook,
                                   saturated=self.saturated)
        return QuantizedTensor("pow2", codes, self.bits, exp_min=self.exp_min,
                               saturated=self.saturated)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "bits": self.bits, "saturated": self.saturated}
        if self.kind == "fixed":
            d.update(format=self.format.to_dict(), frac=self.frac.to_dict())
        elif self.kind == "codebook":
            d["codebook"] = self.codebook
        else:
            d["exp_min"] = self.exp_min
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str, shape: tuple[int, ...]) -> CodeFormat:
        kind = _get_choice(d, "kind", where, QUANT_KINDS)
        bits = _get(d, "bits", where, int)
        _expect(1 <= bits <= 32, _join(where, "bits"), f"expected 1..32, got {bits}")
        saturated = _get(d, "saturated", where, int)
        if kind == "fixed":
            try:
                fmt = FixedPointFormat.from_dict(_get(d, "format", where, dict))
            except (ConfigError, TypeError) as err:
                raise _FieldError(_join(where, "format"), str(err)) from None
            frac = FracPartition.from_dict(_get(d, "frac", where), _join(where, "frac"), shape)
            _expect(fmt.bits == bits, _join(where, "format.bits"),
                    f"expected {bits} (the codes' width), got {fmt.bits}")
            return cls(kind, bits, fmt, frac, saturated=saturated)
        if kind == "codebook":
            book = _tensor(d, "codebook", where, torch.float64)
            _expect(tuple(book.shape) == (1 << bits,), _join(where, "codebook"),
                    f"expected {1 << bits} centroids, got shape {tuple(book.shape)}")
            return cls(kind, bits, codebook=book, saturated=saturated)
        return cls(kind, bits, exp_min=_get(d, "exp_min", where, int), saturated=saturated)


# -- storage -----------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class DenseCodes:
    """Every code of the matrix, in the weight's shape."""

    codes: PackedInts
    tag: ClassVar[str] = "dense"

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.tag, "codes": self.codes.to_dict()}

    @classmethod
    def from_dict(cls, d: Any, where: str, shape: tuple[int, ...]) -> DenseCodes:
        codes = PackedInts.from_dict(_get(d, "codes", where), _join(where, "codes"))
        _expect(codes.shape == shape, _join(where, "codes.shape"),
                f"expected {shape}, got {codes.shape}")
        return cls(codes)


@dataclass(frozen=True, eq=False)
class FloatWeights:
    """A matrix left unquantized: its float tensor (pruned weights 0) in its own dtype."""

    value: torch.Tensor
    tag: ClassVar[str] = "float"

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.tag, "value": self.value}

    @classmethod
    def from_dict(cls, d: Any, where: str, shape: tuple[int, ...]) -> FloatWeights:
        value = _tensor(d, "value", where, floating=True)
        _expect(tuple(value.shape) == shape, _join(where, "value.shape"),
                f"expected {shape}, got {tuple(value.shape)}")
        return cls(value)


def _matrix_shape(d: Any, where: str, shape: tuple[int, ...]) -> tuple[int, int]:
    s = _shape(d, "shape", where)
    want = (shape[0], math.prod(shape[1:])) if shape else None
    _expect(s == want, _join(where, "shape"), f"expected {want} (the weight as a matrix), "
            f"got {s}")
    return s


def _ascending(idx: torch.Tensor) -> PackedInts:
    """Ascending indices as their differences (the first from 0), packed."""
    return PackedInts.encode(torch.diff(idx, prepend=idx.new_zeros(1)))


def _indices(steps: PackedInts, size: int, where: str) -> torch.Tensor:
    idx = torch.cumsum(steps.decode().reshape(-1), 0)
    if idx.numel() and (int(idx[0]) < 0 or int(idx[-1]) >= size
                        or bool((idx[1:] <= idx[:-1]).any())):
        raise ArtifactError(f"{where}: indices outside 0..{size - 1} or not ascending")
    return idx


def _csc_layout(shape: tuple[int, int], num_pes: int, index_bits: int, rel_index: torch.Tensor,
                col_counts: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Every CSC entry's ``values`` at the position it decodes to (0 elsewhere)."""
    return CSCMatrix(shape, num_pes, index_bits, values, rel_index, col_counts, 0, 0).to_dense()


@dataclass(frozen=True, eq=False)
class CSCStorage:
    """:class:`~asr.compress.sparse_formats.CSCMatrix` with its streams packed: the codes of
    the stored weights, every entry's relative index, the entries per PE column, and where
    the padding entries are (they hold the fill code)."""

    shape: tuple[int, int]
    num_pes: int
    index_bits: int
    values: PackedInts       # (entries - padding,) codes of the stored weights
    rel_index: PackedInts    # (entries,) padding included
    col_counts: PackedInts   # (num_pes, cols) entries per PE column, padding included
    padding_at: PackedInts   # padding entries' ascending entry numbers, as differences
    fill: int
    tag: ClassVar[str] = "csc"

    @classmethod
    def of(cls, m: CSCMatrix, mask: torch.Tensor) -> CSCStorage:
        """``m`` as encoded from a 2-D ``mask`` (the kept weights are its real entries)."""
        n = m.entries
        at = _csc_layout(m.shape, m.num_pes, m.index_bits, m.rel_index, m.col_counts,
                         torch.arange(1, n + 1))
        real = torch.zeros(n, dtype=torch.bool)
        real[at[mask & (at > 0)] - 1] = True
        pad = torch.nonzero(~real).reshape(-1)
        if pad.numel() != m.padding or bool((m.values[pad] != m.fill).any()):
            raise RuntimeError("CSC padding entries do not match the mask")
        return cls(tuple(m.shape), m.num_pes, m.index_bits, PackedInts.encode(m.values[real]),
                   PackedInts.encode(m.rel_index), PackedInts.encode(m.col_counts),
                   _ascending(pad), int(m.fill))

    @property
    def entries(self) -> int:
        return self.rel_index.numel

    def _real(self) -> torch.Tensor:
        real = torch.ones(self.entries, dtype=torch.bool)
        real[_indices(self.padding_at, self.entries, "csc padding_at")] = False
        return real

    def matrix(self) -> CSCMatrix:
        real = self._real()
        values = torch.full((self.entries,), self.fill, dtype=torch.int64)
        values[real] = self.values.decode()
        return CSCMatrix(self.shape, self.num_pes, self.index_bits, values,
                         self.rel_index.decode(), self.col_counts.decode(),
                         self.padding_at.numel, self.fill)

    def kept(self) -> torch.Tensor:
        """The stored weights (bool, ``shape``): the positions of the real entries."""
        return _csc_layout(self.shape, self.num_pes, self.index_bits, self.rel_index.decode(),
                           self.col_counts.decode(), self._real().to(torch.int64)) != 0

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.tag, "shape": list(self.shape), "num_pes": self.num_pes,
                "index_bits": self.index_bits, "values": self.values.to_dict(),
                "rel_index": self.rel_index.to_dict(), "col_counts": self.col_counts.to_dict(),
                "padding_at": self.padding_at.to_dict(), "fill": self.fill}

    @classmethod
    def from_dict(cls, d: Any, where: str, shape: tuple[int, ...]) -> CSCStorage:
        rows, cols = _matrix_shape(d, where, shape)
        num_pes = _get(d, "num_pes", where, int)
        _expect(num_pes >= 1 and rows % num_pes == 0, _join(where, "num_pes"),
                f"expected a divisor of the row count {rows}, got {num_pes}")
        index_bits = _get(d, "index_bits", where, int)
        _expect(1 <= index_bits <= 16, _join(where, "index_bits"),
                f"expected 1..16, got {index_bits}")
        p = {k: PackedInts.from_dict(_get(d, k, where), _join(where, k))
             for k in ("values", "rel_index", "col_counts", "padding_at")}
        entries = p["rel_index"].numel
        _expect(p["rel_index"].shape == (entries,), _join(where, "rel_index.shape"),
                f"expected one dimension, got {p['rel_index'].shape}")
        _expect(p["values"].shape == (entries - p["padding_at"].numel,),
                _join(where, "values.shape"), f"expected ({entries} entries - "
                f"{p['padding_at'].numel} padding,), got {p['values'].shape}")
        _expect(p["col_counts"].shape == (num_pes, cols), _join(where, "col_counts.shape"),
                f"expected {(num_pes, cols)}, got {p['col_counts'].shape}")
        return cls((rows, cols), num_pes, index_bits, p["values"], p["rel_index"],
                   p["col_counts"], p["padding_at"], _get(d, "fill", where, int))


@dataclass(frozen=True, eq=False)
class CSBStorage:
    """:class:`~asr.compress.sparse_formats.CSBMatrix` with its streams packed."""

    shape: tuple[int, int]
    bank_size: int
    values: PackedInts       # (rows, banks, k)
    positions: PackedInts    # (rows, banks, k)
    fill: int
    tag: ClassVar[str] = "csb"

    @classmethod
    def of(cls, m: CSBMatrix) -> CSBStorage:
        return cls(tuple(m.shape), m.bank_size, PackedInts.encode(m.values),
                   PackedInts.encode(m.positions), int(m.fill))

    def matrix(self) -> CSBMatrix:
        return CSBMatrix(self.shape, self.bank_size, self.values.decode(),
                         self.positions.decode(), self.fill)

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.tag, "shape": list(self.shape), "bank_size": self.bank_size,
                "values": self.values.to_dict(), "positions": self.positions.to_dict(),
                "fill": self.fill}

    @classmethod
    def from_dict(cls, d: Any, where: str, shape: tuple[int, ...]) -> CSBStorage:
        rows, cols = _matrix_shape(d, where, shape)
        bank = _get(d, "bank_size", where, int)
        _expect(bank >= 1 and cols % bank == 0, _join(where, "bank_size"),
                f"expected a divisor of the row length {cols}, got {bank}")
        values = PackedInts.from_dict(_get(d, "values", where), _join(where, "values"))
        positions = PackedInts.from_dict(_get(d, "positions", where), _join(where, "positions"))
        ok = (len(values.shape) == 3 and values.shape[:2] == (rows, cols // bank)
              and positions.shape == values.shape)
        _expect(ok, _join(where, "values.shape"), f"expected ({rows}, {cols // bank}, k) "
                f"values and positions, got {values.shape} and {positions.shape}")
        _expect(positions.numel == 0 or 0 <= positions.offset < bank,
                _join(where, "positions.offset"), f"expected a position in a bank of {bank}, "
                f"got {positions.offset}")
        return cls((rows, cols), bank, values, positions, _get(d, "fill", where, int))


Storage = DenseCodes | FloatWeights | CSCStorage | CSBStorage
_STORAGE_TYPES: dict[str, Any] = {c.tag: c for c in (DenseCodes, FloatWeights, CSCStorage,
                                                     CSBStorage)}


# -- entries -----------------------------------------------------------------------------------

@dataclass(eq=False)
class MatrixEntry:
    """One weight matrix of the artifact (see the module docstring); its dense codes, mask and
    storage object are decoded on first use and kept."""

    shape: tuple[int, ...]
    layer_type: str
    target_density: float
    nnz: int
    pruned: bool
    quant: CodeFormat | None
    storage: Storage
    # A pruned matrix stored dense (codes or float): its kept weights whose code is the pruned
    # one (a weight quantized to zero), which the codes alone read as pruned, as differences
    # of their ascending flat indices (the first from 0). None otherwise: CSC and CSB storage
    # hold the mask exactly.
    kept_at_fill: PackedInts | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def storage_format(self) -> str:
        """``csc``, ``csb`` or ``dense`` (a float matrix is stored dense)."""
        return "dense" if isinstance(self.storage, FloatWeights) else self.storage.tag

    @property
    def fill(self) -> int:
        return 0 if self.quant is None else self.quant.fill

    @property
    def codes(self) -> torch.Tensor | None:
        """int64 codes in the weight's shape, pruned weights holding the fill code; None for
        a float matrix."""
        if "codes" not in self._cache:
            s = self.storage
            if isinstance(s, FloatWeights):
                codes = None
            elif isinstance(s, DenseCodes):
                codes = s.codes.decode()
            else:
                codes = self.storage_object().to_dense().reshape(self.shape)
            self._cache["codes"] = codes
        return self._cache["codes"]

    def storage_object(self) -> CSCMatrix | CSBMatrix | None:
        """The :class:`CSCMatrix`/:class:`CSBMatrix` the matrix is stored in (None: dense)."""
        if "storage" not in self._cache:
            s = self.storage
            self._cache["storage"] = (s.matrix() if isinstance(s, CSCStorage | CSBStorage)
                                      else None)
        return self._cache["storage"]

    def _derived_mask(self) -> torch.Tensor:
        """The kept weights the storage itself shows."""
        s = self.storage
        if isinstance(s, CSBStorage):
            m = self.storage_object()
            rows, cols = m.shape
            banks = torch.zeros(rows, cols // m.bank_size, m.bank_size, dtype=torch.bool)
            banks.scatter_(2, m.positions, True)
            return banks.reshape(self.shape)
        if isinstance(s, CSCStorage):
            return s.kept().reshape(self.shape)
        if isinstance(s, FloatWeights):
            return s.value != 0
        return self.codes != self.fill

    @property
    def mask(self) -> torch.Tensor | None:
        """The pruning mask (bool, the weight's shape); None for a matrix left dense."""
        if not self.pruned:
            return None
        if "mask" not in self._cache:
            mask = self._derived_mask().clone()
            if self.kept_at_fill is not None:
                mask.view(-1)[_indices(self.kept_at_fill, mask.numel(), "kept_at_fill")] = True
            self._cache["mask"] = mask
        return self._cache["mask"]

    def quantized(self) -> QuantizedTensor | None:
        """The codes and their format (None for a float matrix)."""
        return None if self.quant is None else self.quant.quantized(self.codes)

    def dequantized(self) -> torch.Tensor:
        """float64 weights, the weight's shape: what the quantized model computes with."""
        if isinstance(self.storage, FloatWeights):
            return self.storage.value.to(torch.float64)
        return self.quantized().dequantize().to(torch.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "layer_type": self.layer_type,
                "target_density": self.target_density, "nnz": self.nnz, "pruned": self.pruned,
                "quant": None if self.quant is None else self.quant.to_dict(),
                "storage": self.storage.to_dict(),
                "kept_at_fill": (None if self.kept_at_fill is None
                                 else self.kept_at_fill.to_dict())}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> MatrixEntry:
        shape = _shape(d, "shape", where)
        _expect(len(shape) >= 2, _join(where, "shape"), f"expected a matrix, got {shape}")
        ltype = _get(d, "layer_type", where, str)
        density = float(_get(d, "target_density", where, float))
        nnz = _get(d, "nnz", where, int)
        pruned = _get(d, "pruned", where, bool)
        qd = _get(d, "quant", where, dict, type(None))
        quant = None if qd is None else CodeFormat.from_dict(qd, _join(where, "quant"), shape)
        sd = _get(d, "storage", where, dict)
        tag = _get_choice(sd, "format", _join(where, "storage"), _STORAGE_TYPES)
        _expect((tag == "float") == (quant is None), _join(where, "storage.format"),
                f"{tag} storage with quant {'null' if quant is None else quant.kind}")
        storage = _STORAGE_TYPES[tag].from_dict(sd, _join(where, "storage"), shape)
        kd = _get(d, "kept_at_fill", where, dict, type(None))
        kept = None if kd is None else PackedInts.from_dict(kd, _join(where, "kept_at_fill"))
        _expect((kept is not None) == (pruned and tag in ("dense", "float")),
                _join(where, "kept_at_fill"), "expected exactly for a pruned matrix stored "
                "dense (sparse storage holds the mask)")
        return cls(shape, ltype, density, nnz, pruned, quant, storage, kept)

    @classmethod
    def build(cls, name: str, weight: torch.Tensor, q: QuantizedTensor | None,
              mask: torch.Tensor | None, cfg: CompressConfig, ltype: str,
              target_density: float) -> MatrixEntry:
        """The entry of ``weight`` (already masked), quantized to ``q`` (None: float),
        stored as ``cfg.storage`` says when pruned."""
        shape = tuple(weight.shape)
        nnz = int((weight != 0).sum()) if mask is None else int(mask.sum())
        if q is None:
            quant, storage = None, FloatWeights(_float_tensor(weight))
        else:
            w = cfg.quant.weights
            quant = CodeFormat.of(q, shape, w.saturate if w.kind == "fixed" else True,
                                  cfg.prune.num_pes, cfg.prune.bank_size)
            codes = q.codes.reshape(shape[0], -1)
            if mask is None or cfg.storage.format == "dense":
                storage = DenseCodes(PackedInts.encode(q.codes))
            elif cfg.storage.format == "csb":
                storage = CSBStorage.of(encode_csb(codes, mask.reshape(codes.shape),
                                                   cfg.prune.bank_size, name, quant.fill))
            else:
                mask2 = mask.reshape(codes.shape)
                storage = CSCStorage.of(encode_csc(codes, cfg.prune.num_pes,
                                                   cfg.storage.index_bits, mask2, quant.fill),
                                        mask2)
        entry = cls(shape, ltype, float(target_density), nnz, mask is not None, quant, storage)
        if mask is not None:
            shown = entry._derived_mask()
            if bool((shown & ~mask).any()):
                raise RuntimeError(f"{name}: the storage holds weights the mask prunes")
            if isinstance(storage, CSCStorage | CSBStorage):
                if not torch.equal(shown, mask):
                    raise RuntimeError(f"{name}: the sparse storage does not hold the mask")
            else:
                kept = torch.nonzero((mask & ~shown).reshape(-1)).reshape(-1)
                entry.kept_at_fill = _ascending(kept)
            entry._cache.clear()
        return entry


@dataclass(eq=False)
class BiasEntry:
    """One bias: codes ``(n, 1)`` and their fixed-point format, or (not quantized) its float
    tensor in its own dtype."""

    shape: tuple[int, ...]
    quant: CodeFormat | None = None
    codes: PackedInts | None = None
    value: torch.Tensor | None = None

    @classmethod
    def build(cls, bias: torch.Tensor, q: QuantizedTensor | None, saturate: bool = True
              ) -> BiasEntry:
        shape = tuple(bias.shape)
        if q is None:
            return cls(shape, value=_float_tensor(bias))
        return cls(shape, CodeFormat.of(q, tuple(q.codes.shape), saturate),
                   PackedInts.encode(q.codes))

    def quantized(self) -> QuantizedTensor | None:
        return None if self.quant is None else self.quant.quantized(self.codes.decode())

    def dequantized(self) -> torch.Tensor:
        if self.quant is None:
            return self.value.to(torch.float64)
        return self.quantized().dequantize().reshape(self.shape).to(torch.float64)

    def to_dict(self) -> dict[str, Any]:
        if self.quant is None:
            return {"shape": list(self.shape), "quant": None, "value": self.value}
        return {"shape": list(self.shape), "quant": self.quant.to_dict(),
                "codes": self.codes.to_dict()}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> BiasEntry:
        shape = _shape(d, "shape", where)
        qd = _get(d, "quant", where, dict, type(None))
        if qd is None:
            value = _tensor(d, "value", where, floating=True)
            _expect(tuple(value.shape) == shape, _join(where, "value.shape"),
                    f"expected {shape}, got {tuple(value.shape)}")
            return cls(shape, value=value)
        n = math.prod(shape)
        quant = CodeFormat.from_dict(qd, _join(where, "quant"), (n, 1))
        _expect(quant.kind == "fixed", _join(where, "quant.kind"),
                f"expected fixed, got {quant.kind}")
        codes = PackedInts.from_dict(_get(d, "codes", where), _join(where, "codes"))
        _expect(codes.shape == (n, 1), _join(where, "codes.shape"),
                f"expected {(n, 1)}, got {codes.shape}")
        return cls(shape, quant, codes)


@dataclass(frozen=True)
class ActivationEntry:
    """A signal's calibrated range and its DFP format at the compression's activation bits."""

    max_abs: float
    format: FixedPointFormat

    def to_dict(self) -> dict[str, Any]:
        return {"max_abs": self.max_abs, "format": self.format.to_dict()}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> ActivationEntry:
        max_abs = float(_get(d, "max_abs", where, float))
        try:
            fmt = FixedPointFormat.from_dict(_get(d, "format", where, dict))
        except (ConfigError, TypeError) as err:
            raise _FieldError(_join(where, "format"), str(err)) from None
        return cls(max_abs, fmt)


# -- the graph without weights -----------------------------------------------------------------

def graph_structure(graph: InferenceGraph) -> dict[str, Any]:
    """``graph`` as plain data without its tensors: every weight and bias is replaced by its
    parameter key (:func:`~asr.models.graph.graph_parameters`)."""
    skeleton = graph_from_dict(graph_to_dict(graph))
    for key, _, op, attr in graph_parameters(skeleton):
        setattr(op, attr, key)
    structure = graph_to_dict(skeleton)
    if _has_tensor(structure):
        raise ValueError("graph_structure: a tensor that is not a graph parameter")
    return structure


def _has_tensor(obj: Any) -> bool:
    if isinstance(obj, torch.Tensor):
        return True
    if isinstance(obj, dict):
        return any(_has_tensor(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return any(_has_tensor(v) for v in obj)
    return False


def _skeleton(structure: Any) -> tuple[InferenceGraph, list[tuple[str, str, Any, str]]]:
    """The graph of ``structure`` (parameter keys in place of tensors) and its parameters;
    :class:`_FieldError` when it is not one."""
    _get(structure, "model_type", "graph", str)
    _get(structure, "input_dim", "graph", int)
    _get(structure, "vocab_size", "graph", int)
    _get(structure, "ops", "graph", list)
    try:
        graph = graph_from_dict(structure)
        params = list(graph_parameters(graph))
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise _FieldError("graph.ops", f"not an inference graph ({err!r})") from None
    for key, _, op, attr in params:
        _expect(getattr(op, attr) == key, f"graph.ops[{op.name}].{attr}",
                f"expected the parameter key {key!r}, got {getattr(op, attr)!r}")
    for op in graph.ops:
        if isinstance(op, DeltaLSTMOp):   # the delta thresholds: plain numbers >= 0
            for attr in ("theta_x", "theta_h"):
                value = getattr(op, attr)
                _expect(isinstance(value, int | float) and not isinstance(value, bool)
                        and value >= 0, f"graph.ops[{op.name}].{attr}",
                        f"expected a threshold >= 0, got {value!r}")
    if _has_tensor(structure):
        raise _FieldError("graph", "holds tensors (weights belong in matrices/biases)")
    return graph, params


# -- the artifact ------------------------------------------------------------------------------

_SCALARS = (int, float, str, bool, list, dict, tuple)


def _dataclass_from_dict(cls: type, d: Any, where: str) -> Any:
    """A config dataclass (nested ones too) from its :func:`dataclasses.asdict`; every field
    required, no unknown keys, values of the declared types."""
    if not isinstance(d, dict):
        raise _FieldError(where, f"expected a mapping, got {type(d).__name__}")
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls) if f.init]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise _FieldError(_join(where, unknown[0]), f"unknown key (expected {names})")
    kwargs = {}
    for name in names:
        hint = hints[name]
        if is_dataclass(hint):
            kwargs[name] = _dataclass_from_dict(hint, _get(d, name, where), _join(where, name))
            continue
        origin = get_origin(hint) or hint
        kinds = (origin,) if origin in _SCALARS else ()
        kwargs[name] = _get(d, name, where, *kinds)
    try:
        return cls(**kwargs)
    except (ConfigError, TypeError) as err:
        raise _FieldError(where, str(err)) from None


@dataclass(eq=False)
class Artifact:
    """A compressed model: what :func:`save_artifact` writes and :func:`read_artifact` reads
    (see the module docstring). ``structure`` is the inference graph without its weights;
    :attr:`graph` rebuilds it with the dequantized weights."""

    structure: dict[str, Any]
    matrices: dict[str, MatrixEntry]
    biases: dict[str, BiasEntry]
    activations: dict[str, ActivationEntry]
    compress: CompressConfig
    model_config: dict[str, Any] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)
    vocab_tokens: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)   # the resolved asr-compress config
    source: str = ""                                        # the checkpoint it came from
    metrics: dict[str, Any] = field(default_factory=dict)
    graph_cache: InferenceGraph | None = field(default=None, repr=False, compare=False)

    @property
    def model_type(self) -> str:
        return self.structure["model_type"]

    @property
    def graph(self) -> InferenceGraph:
        """The inference graph with the dequantized float64 weights and biases (fresh op
        objects on every call; the tensors are decoded once and shared)."""
        if self.graph_cache is None:
            self.graph_cache = self.rebuild_graph()
        return graph_from_dict(graph_to_dict(self.graph_cache))

    def rebuild_graph(self) -> InferenceGraph:
        """The graph decoded from the stored codes (what :attr:`graph` caches)."""
        graph = graph_from_dict(copy.deepcopy(self.structure))
        for key, kind, op, attr in graph_parameters(graph):
            entry = self.matrices[key] if kind == "weight" else self.biases[key]
            setattr(op, attr, entry.dequantized())
        return graph

    def feature_config(self) -> FeatureConfig:
        return FeatureConfig(**self.features)

    def to_dict(self) -> dict[str, Any]:
        """The payload: plain dicts, lists, numbers, strings and tensors."""
        return {"graph": copy.deepcopy(self.structure),
                "matrices": {k: e.to_dict() for k, e in self.matrices.items()},
                "biases": {k: e.to_dict() for k, e in self.biases.items()},
                "activations": {k: a.to_dict() for k, a in self.activations.items()},
                "compress": asdict(self.compress), "model_config": dict(self.model_config),
                "features": dict(self.features), "vocab_tokens": list(self.vocab_tokens),
                "config": dict(self.config), "source": self.source,
                "metrics": dict(self.metrics)}

    @classmethod
    def from_dict(cls, payload: Any) -> Artifact:
        """The artifact of a payload; :class:`_FieldError` naming the first bad field."""
        _, params = _skeleton(_get(payload, "graph", "", dict))
        mats = _get(payload, "matrices", "", dict)
        biases = _get(payload, "biases", "", dict)
        for group, kind, held in (("matrices", "weight", mats), ("biases", "bias", biases)):
            keys = [k for k, kd, _, _ in params if kd == kind]
            missing = [k for k in keys if k not in held]
            extra = sorted(set(held) - set(keys))
            _expect(not missing, f"{group}.{missing[0] if missing else ''}",
                    "missing (a graph parameter without an entry)")
            _expect(not extra, f"{group}.{extra[0] if extra else ''}",
                    "not a parameter of the graph")
        matrices = {k: MatrixEntry.from_dict(v, f"matrices.{k}") for k, v in mats.items()}
        bias_entries = {k: BiasEntry.from_dict(v, f"biases.{k}") for k, v in biases.items()}
        acts = {k: ActivationEntry.from_dict(v, f"activations.{k}")
                for k, v in _get(payload, "activations", "", dict).items()}
        compress = _dataclass_from_dict(CompressConfig, _get(payload, "compress", "", dict),
                                        "compress")
        tokens = _get(payload, "vocab_tokens", "", list)
        _expect(all(isinstance(t, str) for t in tokens), "vocab_tokens",
                "expected a list of strings")
        return cls(payload["graph"], matrices, bias_entries, acts, compress,
                   _get(payload, "model_config", "", dict), _get(payload, "features", "", dict),
                   tokens, _get(payload, "config", "", dict), _get(payload, "source", "", str),
                   _get(payload, "metrics", "", dict))


# -- building ----------------------------------------------------------------------------------

def storage_object(entry: MatrixEntry) -> CSCMatrix | CSBMatrix | None:
    """The :class:`CSCMatrix`/:class:`CSBMatrix` of a stored matrix entry (None if dense)."""
    return entry.storage_object()


def quantized_tensor(entry: MatrixEntry | BiasEntry) -> QuantizedTensor | None:
    return entry.quantized()


def calibrate(graph: InferenceGraph, features: list[torch.Tensor]) -> dict[str, float]:
    """Largest magnitude of every signal over the calibration utterances."""
    ranges: dict[str, float] = {}
    for f in features:
        run_graph(graph, f, ranges=ranges)
    return ranges


def build_artifact(model: nn.Module, masks: dict[str, torch.Tensor], densities: dict[str, float],
                   cfg: CompressConfig, calibration: list[torch.Tensor] | None = None
                   ) -> Artifact:
    """Quantize and encode ``model`` (already pruned by ``masks``) into an :class:`Artifact`
    (its model/feature/vocabulary metadata empty: the caller fills them in). Its
    :attr:`~Artifact.graph` is the dequantized graph computed here."""
    graph = model.export()
    structure = graph_structure(graph)
    q = cfg.quant
    matrices: dict[str, MatrixEntry] = {}
    biases: dict[str, BiasEntry] = {}
    for key, kind, op, attr in graph_parameters(graph):
        tensor = getattr(op, attr)
        if kind == "weight":
            mask = masks.get(key)
            mask = None if mask is None else mask.reshape(tensor.shape).bool()
            qt = quantize_matrix(tensor, q.weights, mask, cfg.prune.num_pes,
                                 cfg.prune.bank_size)
            if mask is not None:
                tensor = tensor * mask
            matrices[key] = MatrixEntry.build(key, tensor, qt, mask, cfg,
                                              layer_type(key, graph.model_type),
                                              densities.get(key, 1.0))
            if qt is not None:
                tensor = qt.dequantize()
        else:
            qt = None
            if q.biases.kind == "fixed":
                qt = quantize_matrix(tensor.reshape(-1, 1), q.biases)
            biases[key] = BiasEntry.build(tensor, qt, q.biases.saturate)
            if qt is not None:
                tensor = qt.dequantize().reshape(tensor.shape)
        setattr(op, attr, tensor.to(torch.float64))
    activations: dict[str, ActivationEntry] = {}
    if calibration:
        ranges = calibrate(graph, calibration)
        a = q.activations
        for name, max_abs in ranges.items():
            frac = int(frac_for_range(torch.tensor([max_abs]), a.bits)[0])
            activations[name] = ActivationEntry(
                float(max_abs), FixedPointFormat(a.bits, frac, rounding=a.rounding,
                                                 overflow="saturate" if a.saturate else "wrap"))
    return Artifact(structure, matrices, biases, activations, copy.deepcopy(cfg),
                    graph_cache=graph)


# -- the file ----------------------------------------------------------------------------------

def _feed(h: Any, obj: Any) -> None:
    """Hash ``obj`` canonically (dict keys sorted; tensors by dtype, shape and bytes)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{list(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(b"D%d:" % len(obj))
        for key in sorted(obj, key=lambda k: (type(k).__name__, str(k))):
            _feed(h, key)
            _feed(h, obj[key])
    elif isinstance(obj, list | tuple):
        h.update(b"L%d:" % len(obj))
        for item in obj:
            _feed(h, item)
    elif isinstance(obj, str):
        raw = obj.encode("utf-8", "surrogatepass")
        h.update(b"S%d:" % len(raw) + raw)
    elif isinstance(obj, bool):
        h.update(b"B1" if obj else b"B0")
    elif isinstance(obj, int):
        h.update(b"I%d;" % obj)
    elif isinstance(obj, float):
        h.update(b"F" + struct.pack("<d", obj))
    elif obj is None:
        h.update(b"N")
    else:
        raise TypeError(f"artifact payload: {type(obj).__name__} is not a plain value "
                        "(dict, list, str, number, None or tensor)")


def payload_digest(payload: dict[str, Any]) -> str:
    """SHA-256 (hex) of a payload, independent of how ``torch.save`` laid it out."""
    h = hashlib.sha256()
    _feed(h, payload)
    return h.hexdigest()


_BLOB = "__blob__"
_DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool, torch.float16,
    torch.bfloat16, torch.float32, torch.float64)}


def _to_blob(payload: dict[str, Any]) -> tuple[dict[str, Any], torch.Tensor]:
    """Every tensor of ``payload`` moved into one byte blob, replaced by a reference
    ``{"__blob__": [start, stop], "dtype", "shape"}`` (just ``{"__blob__": [start, stop]}``
    for a 1-D uint8 tensor: a packed stream): one record in the file instead of one per
    tensor (each costs a few hundred bytes in a ``torch.save`` archive)."""
    parts: list[torch.Tensor] = []
    at = 0

    def walk(node: Any) -> Any:
        nonlocal at
        if isinstance(node, torch.Tensor):
            t = node.detach().cpu().contiguous()
            raw = t.reshape(-1).view(torch.uint8)
            ref: dict[str, Any] = {_BLOB: [at, at + raw.numel()]}
            if t.dtype != torch.uint8 or t.dim() != 1:
                ref.update(dtype=str(t.dtype).removeprefix("torch."), shape=list(t.shape))
            parts.append(raw)
            at += raw.numel()
            return ref
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list | tuple):
            return type(node)(walk(v) for v in node)
        return node

    stored = walk(payload)
    blob = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.uint8)
    return stored, blob


def _from_blob(stored: Any, blob: torch.Tensor, where: str = "") -> Any:
    """:func:`_to_blob` undone: every reference becomes its tensor (uint8 ones view the blob)."""
    if isinstance(stored, dict):
        if _BLOB not in stored:
            return {k: _from_blob(v, blob, _join(where, k)) for k, v in stored.items()}
        span = _get(stored, _BLOB, where, list)
        ok = len(span) == 2 and all(isinstance(x, int) for x in span)
        _expect(ok and 0 <= span[0] <= span[1] <= blob.numel(), where,
                f"not a range of the file's blob ({span!r})")
        if "dtype" in stored:
            dtype = _DTYPES.get(_get(stored, "dtype", where, str))
            shape = _shape(stored, "shape", where)
        else:
            dtype, shape = torch.uint8, (span[1] - span[0],)
        ok = dtype is not None and span[1] - span[0] == math.prod(shape) * dtype.itemsize
        _expect(ok, where, f"not a tensor of the file ({stored!r})")
        raw = blob[span[0]:span[1]]
        return (raw if dtype == torch.uint8 else raw.clone().view(dtype)).reshape(shape)
    if isinstance(stored, list | tuple):
        return type(stored)(_from_blob(v, blob, f"{where}[{i}]") for i, v in enumerate(stored))
    return stored


def save_artifact(path: str | Path, artifact: Artifact, **metadata: Any) -> Path:
    """Write ``artifact`` (with ``metadata`` fields replaced: ``vocab_tokens=...``,
    ``source=...``) to ``path`` atomically: into a temporary file in the same folder, flushed
    and fsynced, then renamed over ``path`` (a kill while writing leaves the previous file as
    it was)."""
    if metadata:
        artifact = replace(artifact, **metadata)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stored, blob = _to_blob(artifact.to_dict())
    data = {"format": ARTIFACT_FORMAT, "version": ARTIFACT_VERSION, "byteorder": sys.byteorder,
            "sha256": payload_digest({"payload": stored, "blob": blob}), "payload": stored,
            "blob": blob}
    with replacing(path) as tmp, open(tmp, "wb") as f:  # a kill leaves the previous file
        torch.save(data, f)
    return path


def read_artifact(path: str | Path) -> Artifact:
    """The :class:`Artifact` of a file; :class:`ArtifactError` naming the file (and the field)
    when it is not a valid one."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such compressed model")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a damaged or foreign file
        raise ArtifactError(f"{path}: not a compressed model ({err})") from None
    if not isinstance(data, dict) or data.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path}: not a compressed model written by asr-compress")
    version = data.get("version")
    if version != ARTIFACT_VERSION:
        if isinstance(version, int) and version < ARTIFACT_VERSION:
            raise ArtifactError(f"{path}: a version {version} compressed model (an older "
                                f"asr-compress wrote it); this asr-fpga reads version "
                                f"{ARTIFACT_VERSION}: {_RERUN}")
        raise ArtifactError(f"{path}: artifact version {version!r}; this asr-fpga reads "
                            f"version {ARTIFACT_VERSION}")
    payload, blob, digest = data.get("payload"), data.get("blob"), data.get("sha256")
    if (not isinstance(payload, dict) or not isinstance(digest, str)
            or not isinstance(blob, torch.Tensor) or blob.dtype != torch.uint8 or blob.dim() != 1):
        raise ArtifactError(f"{path}: payload, blob or sha256 missing; {_RERUN}")
    try:
        ok = payload_digest({"payload": payload, "blob": blob}) == digest
    except TypeError:
        ok = False
    if not ok:
        raise ArtifactError(f"{path}: checksum mismatch (the file was damaged or changed "
                            f"after asr-compress wrote it); {_RERUN}")
    if data.get("byteorder") != sys.byteorder:
        raise ArtifactError(f"{path}: written on a {data.get('byteorder')}-endian machine; "
                            f"this one is {sys.byteorder}-endian")
    try:
        return Artifact.from_dict(_from_blob(payload, blob))
    except _FieldError as err:
        raise ArtifactError(f"{path}: {err.where}: {err.problem}; {_RERUN}") from None


def activation_format(artifact: Artifact, signal: str) -> FixedPointFormat:
    return artifact.activations[signal].format


def load_graph(artifact: Artifact) -> InferenceGraph:
    return artifact.graph


def load_compressed(path: str | Path) -> AcousticModel:
    """An :class:`~asr.models.acoustic.AcousticModel` running the artifact's quantized graph,
    for ``asr-decode`` and ``asr-eval``."""
    return compressed_acoustic_model(read_artifact(path), str(path))


def compressed_acoustic_model(artifact: Artifact, path: str = "<memory>") -> AcousticModel:
    """The :class:`~asr.models.acoustic.AcousticModel` of an :class:`Artifact`."""
    model = GraphModel(artifact.graph).eval()
    return AcousticModel(model, CharVocab(artifact.vocab_tokens), artifact.feature_config(),
                         dict(artifact.model_config), str(path))
