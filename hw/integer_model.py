"""The artifact compiled for one engine: integer weights, biases and a format for every signal.

:func:`compile_model` reads a compressed model (the :class:`~asr.compress.artifact.Artifact`
of a ``*.model`` file) and an
:class:`~hw.config.EngineConfig` and returns an :class:`EngineModel`:

- every weight matrix as integers with one fractional length per row (:class:`IntMatrix`).
  Fixed-point codes are used as stored; DFP partitions finer than a row (banks) are aligned to
  the row's largest fractional length by an exact left shift (the weight path's shifter).
  Codebook (k-means) and power-of-two weights are decoded through a table to
  ``weight_bits``-wide fixed point, as EIE decodes its 4-bit indices to 16 bits. Float
  matrices (left unquantized by the preset) are quantized here to ``weight_bits`` DFP per row.
- the sparse storage each matrix is streamed from (CSC over the engine's PEs, CSB, or dense):
  the artifact's own when its layout matches the engine, else re-encoded for this engine.
- biases as integers with their fractional lengths (``bias_bits``).
- the fractional length of every activation signal at ``activation_bits``, from the ranges
  calibrated by ``asr-compress`` (DFP), or one format for all (``activation_format``, the
  ``--formats`` sweep of ``asr-hw trace``).
- the sigmoid/tanh units.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from asr.compress.artifact import Artifact, ArtifactError, BiasEntry, MatrixEntry
from asr.compress.fixed_point import FixedPointFormat
from asr.compress.quantize import frac_for_range, partition_max_abs
from asr.compress.sparse_formats import CSBMatrix, CSCMatrix, encode_csb, encode_csc
from asr.config_errors import ConfigError
from asr.models.graph import InferenceGraph, graph_parameters
from asr.models.ops import kind_of
from hw.activation_unit import ActivationUnit, build_activation_unit
from hw.config import EngineConfig


@dataclass
class IntMatrix:
    """One weight matrix as the engine holds it.

    ``codes`` are the stored codes ((rows, cols), the pruned ones 0 after decoding);
    ``decode`` maps a stored code to its integer weight (``None``: the code is the weight;
    else a table indexed by ``code + decode_offset``); ``align`` (or ``None``) is the left
    shift of each weight to its row's fractional length ``frac`` (rows,). ``weights`` are the
    decoded, aligned integers the arithmetic uses."""

    name: str
    layer_type: str
    codes: torch.Tensor
    frac: torch.Tensor
    weights: torch.Tensor
    storage: CSCMatrix | CSBMatrix | None
    value_bits: int
    index_bits: int
    decode: torch.Tensor | None = None
    decode_offset: int = 0
    align: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def max_row_abs_sum(self) -> int:
        """Largest sum of weight magnitudes of a row: a product's sum is at most this times
        the largest input."""
        if "row_sum" not in self._cache:
            self._cache["row_sum"] = (int(self.weights.abs().sum(dim=1).max())
                                      if self.weights.numel() else 0)
        return self._cache["row_sum"]

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.weights.shape)

    @property
    def nnz(self) -> int:
        return int((self.weights != 0).sum()) if self.mask is None else int(self.mask.sum())

    @property
    def entries(self) -> int:
        """Stored entries (padding included); a dense matrix stores every weight."""
        return self.storage.entries if self.storage is not None else self.weights.numel()

    @property
    def entry_bits(self) -> int:
        return self.value_bits + self.index_bits   # 0 index bits when stored dense

    @property
    def bytes(self) -> int:
        return math.ceil(self.entries * self.entry_bits / 8)

    def matmul_operand(self) -> torch.Tensor:
        """``weights`` as float64 for exact integer products (dense, or CSR when sparse)."""
        if "operand" not in self._cache:
            w = self.weights.double().contiguous()
            density = float((self.weights != 0).float().mean()) if w.numel() else 1.0
            with warnings.catch_warnings():   # torch calls sparse CSR "beta"; it is exact here
                warnings.simplefilter("ignore")
                if density < 0.3 and w.shape[0] >= 64:
                    csr = w.to_sparse_csr()
                    # int32 indices: torch hands these to its fast (MKL) sparse kernels, about
                    # twice the speed of its int64 path; the sums are the same exact integers
                    w = torch.sparse_csr_tensor(csr.crow_indices().int(),
                                                csr.col_indices().int(), csr.values(),
                                                csr.shape)
                self._cache["operand"] = w
        return self._cache["operand"]


@dataclass
class EngineModel:
    cfg: EngineConfig
    graph: InferenceGraph            # the artifact's dequantized graph (float reference)
    matrices: dict[str, IntMatrix]
    biases: dict[str, tuple[torch.Tensor, torch.Tensor]]   # codes (n,), frac (n,)
    formats: dict[str, int]          # fractional length of each signal at activation_bits
    units: dict[str, ActivationUnit]
    vocab_tokens: list[str]
    features: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    uniform_frac: int | None = None  # one format for every signal (the --formats sweep)
    cache: dict = field(default_factory=dict, repr=False)

    @property
    def model_type(self) -> str:
        return self.graph.model_type

    @property
    def unit_in_frac(self) -> int:
        return self.units["tanh"].in_frac

    @property
    def gate_frac(self) -> int:
        return self.units["tanh"].out_frac

    def signal(self, name: str) -> int:
        if self.uniform_frac is not None:
            return self.uniform_frac
        if name not in self.formats:
            raise ArtifactError(f"no calibrated range for signal {name!r} in the artifact; "
                                "re-run asr-compress with calibration utterances "
                                "(calibration.manifest or data=...)")
        return self.formats[name]


def _decode_table(q, cfg: EngineConfig) -> tuple[torch.Tensor, int, int]:
    """Codebook/pow2 codes -> ``weight_bits`` fixed point: (table, offset, frac)."""
    bits = q.bits
    if q.kind == "codebook":
        codes = torch.arange(-1, 1 << bits)
        offset = 1
    else:
        levels = (1 << (bits - 1)) - 1
        codes = torch.arange(-levels, levels + 1)
        offset = levels
    probe = replace(q, codes=codes)
    values = probe.dequantize()
    frac = int(frac_for_range(values.abs().max().reshape(1), cfg.weight_bits)[0])
    return cfg.weight_format(frac).to_int(values), offset, frac


def _storage_for(name: str, entry: MatrixEntry, codes: torch.Tensor, mask: torch.Tensor | None,
                 cfg: EngineConfig, fill: int, bank_size: int) -> CSCMatrix | CSBMatrix | None:
    """The artifact's storage when it is this engine's layout, else re-encoded for it."""
    if mask is None or cfg.sparse_format == "dense":
        return None
    stored = entry.storage_object() if entry.quant is not None else None
    if cfg.sparse_format == "csc":
        if (isinstance(stored, CSCMatrix) and stored.num_pes == cfg.num_pes
                and stored.index_bits == cfg.index_bits):
            return stored
        rows = codes.shape[0]
        if rows % cfg.num_pes:
            # A CSC engine interleaves rows over its PEs; a silent dense schedule would report
            # a latency many times the sparse one.
            divisors = [d for d in range(2, min(rows, 256) + 1) if rows % d == 0]
            raise ConfigError(f"hw.num_pes: {cfg.num_pes} does not divide the {rows} rows of "
                              f"{name}; the engine interleaves rows over its PEs (divisors: "
                              f"{divisors[-8:]})")
        return encode_csc(codes, cfg.num_pes, cfg.index_bits, mask, fill)
    if isinstance(stored, CSBMatrix):
        return stored
    try:
        return encode_csb(codes, mask, bank_size, name, fill)
    except ConfigError as err:
        raise ConfigError(f"hw.sparse_format: csb needs bank-balanced matrices ({err}); "
                          "compress with compress=bbs or use a csc/dense engine") from None


def _int_matrix(name: str, entry: MatrixEntry, weight: torch.Tensor, cfg: EngineConfig,
                bank_size: int, notes: list[str]) -> IntMatrix:
    ltype = entry.layer_type
    mask = entry.mask
    rows = weight.shape[0]
    w2 = weight.reshape(rows, -1)
    mask2 = None if mask is None else mask.reshape(w2.shape).bool()
    q = entry.quantized()
    decode, offset, align_shift = None, 0, None
    if q is None:
        # Float matrix (the preset left it unquantized): DFP per row at the engine's width.
        fr = frac_for_range(partition_max_abs(w2, "row"), cfg.weight_bits).reshape(rows)
        codes = cfg.weight_format(0).from_scaled(
            w2.double() * torch.pow(2.0, fr.double())[:, None])[0]
        weights, frac, value_bits, fill = codes, fr, cfg.weight_bits, 0
        notes.append(f"{name}: float weights quantized by the engine to {cfg.weight_bits}-bit "
                     "DFP per row")
    else:
        codes = q.codes.reshape(rows, -1)
        if q.kind == "fixed":
            if q.bits > cfg.weight_bits:
                raise ConfigError(f"hw.weight_bits: {cfg.weight_bits} bits, but the artifact's "
                                  f"{name} has {q.bits}-bit weights")
            fr_full = q.frac.expand(weight.shape).reshape(rows, -1)
            frac = fr_full.amax(dim=1)
            shift = frac[:, None] - fr_full
            if bool((shift != 0).any()):
                align_shift = shift
                notes.append(f"{name}: DFP partitions aligned to one fractional length per row")
            weights = torch.bitwise_left_shift(codes, shift)
            value_bits, fill = q.bits, 0
        else:
            decode, offset, f = _decode_table(q, cfg)
            weights = decode[codes + offset]
            frac = torch.full((rows,), f, dtype=torch.int64)
            value_bits, fill = q.bits, (-1 if q.kind == "codebook" else 0)
            notes.append(f"{name}: {q.kind} codes decoded through a {decode.numel()}-entry table "
                         f"to {cfg.weight_bits}-bit fixed point")
    storage = _storage_for(name, entry, codes, mask2, cfg, fill, bank_size)
    if storage is not None:
        decoded = storage.to_dense()
        if not torch.equal(decoded, torch.where(mask2, codes, torch.full_like(codes, fill))):
            raise ArtifactError(f"{name}: sparse storage does not decode to the stored codes")
    if mask2 is not None:
        weights = torch.where(mask2, weights, torch.zeros_like(weights))
        codes = torch.where(mask2, codes, torch.full_like(codes, fill))
    return IntMatrix(name, ltype, codes, frac.to(torch.int64), weights, storage, value_bits,
                     storage.index_bits if storage is not None else 0,
                     decode, offset, align_shift, mask2)


def _int_bias(key: str, entry: BiasEntry, tensor: torch.Tensor, cfg: EngineConfig
              ) -> tuple[torch.Tensor, torch.Tensor]:
    q = entry.quantized()
    n = tensor.numel()
    if q is not None:
        if q.bits > cfg.bias_bits:
            raise ConfigError(f"hw.bias_bits: {cfg.bias_bits} bits, but the artifact's {key} "
                              f"has {q.bits}-bit codes")
        return q.codes.reshape(n), q.frac.expand(q.codes.shape).reshape(n).to(torch.int64)
    f = int(frac_for_range(tensor.abs().max().reshape(1), cfg.bias_bits)[0])
    return cfg.bias_format(f).to_int(tensor.reshape(n)), torch.full((n,), f, dtype=torch.int64)


def compile_model(artifact: Artifact, cfg: EngineConfig,
                  activation_format: FixedPointFormat | None = None) -> EngineModel:
    """The :class:`EngineModel` of an artifact for ``cfg``. ``activation_format`` gives every
    signal that one format (``activation_bits`` becomes its width) instead of the calibrated
    DFP ones."""
    if activation_format is not None:
        bits = activation_format.bits
        unit = replace(cfg.activation_unit, entries=min(cfg.activation_unit.entries, 1 << bits),
                       segments=min(cfg.activation_unit.segments, 1 << bits))
        cfg = replace(cfg, activation_bits=bits, activation_unit=unit)
    graph = artifact.graph
    check_delta_model(graph, cfg)
    bank_size = artifact.compress.prune.bank_size
    notes: list[str] = []
    matrices: dict[str, IntMatrix] = {}
    biases: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, kind, op, attr in graph_parameters(graph):
        tensor = getattr(op, attr)
        if kind == "weight":
            matrices[key] = _int_matrix(key, artifact.matrices[key], tensor, cfg, bank_size,
                                        notes)
        else:
            biases[key] = _int_bias(key, artifact.biases[key], tensor, cfg)
    formats = {name: int(frac_for_range(torch.tensor([a.max_abs]), cfg.activation_bits)[0])
               for name, a in artifact.activations.items()}
    units = {fn: build_activation_unit(fn, cfg.activation_unit, cfg.activation_bits,
                                       cfg.rounding) for fn in ("sigmoid", "tanh")}
    return EngineModel(cfg, graph, matrices, biases, formats, units,
                       list(artifact.vocab_tokens), dict(artifact.features),
                       notes, cfg.activation_frac if activation_format is None
                       else activation_format.frac)


def check_delta_model(graph: InferenceGraph, cfg: EngineConfig) -> None:
    """A delta engine (``skip_zero_deltas``) runs delta LSTM layers: a model without one is an
    error naming the model it needs. (A delta model on another engine runs: the datapath
    honours its thresholds, and the engine reads every column every frame.)"""
    if cfg.skip_zero_deltas and not any(kind_of(op) == "delta_lstm" for op in graph.ops):
        raise ConfigError(f"hw.skip_zero_deltas: engine {cfg.name!r} is a delta engine and "
                          f"needs a delta model (model=delta_lstm: delta_lstm layers); this "
                          f"artifact's model is {graph.model_type!r} with layers "
                          f"{sorted({kind_of(op) for op in graph.ops})}")
