"""Structured configs of ``asr-compress``: pruning, quantization and the fine-tuning schedule.

A preset (``conf/compress/ese.yaml``, ``bbs.yaml``, ``deep_compression.yaml``,
``spartus.yaml``) fills a :class:`CompressConfig`; :func:`validate_against_model` then checks
it against the matrices of the model being compressed (a bank size that does not divide a row,
a PE count that does not divide the rows, an index width too narrow for the format) before any
work starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from asr.compress.fixed_point import ROUNDING
from asr.compress.pruning import PRUNERS
from asr.compress.quantize import GRANULARITY
from asr.config_errors import ConfigError, check

LAYER_TYPES = ("input", "recurrent", "projection", "conv", "output")
WEIGHT_KINDS = ("fixed", "flexpoint", "kmeans", "pow2", "none")
SCHEDULES = ("one_shot", "agp", "dsd", "targeted_dropout")
STORAGE = ("csc", "csb", "dense")


@dataclass
class PruneConfig:
    """``method`` (magnitude, block, bank_balanced, load_balanced, column_balanced or none) to
    ``density`` (fraction kept; column_balanced: 1 - CBTD's gamma); ``targets`` overrides the
    density per layer type (input, recurrent, projection, conv, output) or per matrix name
    (``layers.0.W_ix``), the name winning.
    ``max_zero_run`` (load_balanced only; 0: off): no PE column skips more zero rows than this
    before a kept weight, so a CSC with ``log2(max_zero_run + 1)``-bit indices stores no
    padding (15 for ESE's 4-bit indices)."""

    method: str = "none"
    density: float = 1.0
    targets: dict[str, float] = field(default_factory=dict)
    num_pes: int = 32
    bank_size: int = 16
    block: list[int] = field(default_factory=lambda: [4, 4])
    max_zero_run: int = 0

    def __post_init__(self) -> None:
        check(self.method in (*PRUNERS, "none"), "compress.prune.method",
              f"one of {[*PRUNERS, 'none']}", self.method)
        check(0.0 < self.density <= 1.0, "compress.prune.density",
              "in (0, 1] (1 - gamma, CBTD's target sparsity gamma in [0, 1))"
              if self.method == "column_balanced" else "in (0, 1]", self.density)
        for key, value in self.targets.items():
            check(0.0 < float(value) <= 1.0, f"compress.prune.targets.{key}", "in (0, 1]",
                  value)
        check(self.num_pes >= 1, "compress.prune.num_pes", ">= 1", self.num_pes)
        check(self.bank_size >= 1, "compress.prune.bank_size", ">= 1", self.bank_size)
        check(len(self.block) == 2 and min(self.block) >= 1, "compress.prune.block",
              "[rows, cols] >= 1", self.block)
        check(self.max_zero_run >= 0, "compress.prune.max_zero_run", ">= 0 (0: no limit)",
              self.max_zero_run)
        check(self.max_zero_run == 0 or self.method == "load_balanced",
              "compress.prune.max_zero_run", "0 unless compress.prune.method is load_balanced",
              self.max_zero_run)


@dataclass
class NumberFormatConfig:
    """One tensor class's number format: ``kind`` fixed (DFP: fractional length from the
    range, per ``granularity``), flexpoint (16-bit mantissa, shared 5-bit exponent), kmeans
    (``2**bits`` shared values), pow2 (sign + exponent) or none (float)."""

    kind: str = "fixed"
    bits: int = 16
    granularity: str = "tensor"
    rounding: str = "nearest"
    saturate: bool = True
    exponent_bits: int = 5

    def validate(self, prefix: str) -> None:
        check(self.kind in WEIGHT_KINDS, f"{prefix}.kind", f"one of {WEIGHT_KINDS}", self.kind)
        if self.kind == "none":
            return
        low = 1 if self.kind == "kmeans" else 2
        check(low <= self.bits <= 32, f"{prefix}.bits", f"in [{low}, 32] (0-bit formats "
              "hold nothing)", self.bits)
        check(self.granularity in GRANULARITY, f"{prefix}.granularity",
              f"one of {GRANULARITY}", self.granularity)
        check(self.rounding in ROUNDING, f"{prefix}.rounding", f"one of {ROUNDING}",
              self.rounding)
        check(2 <= self.exponent_bits <= 8, f"{prefix}.exponent_bits", "in [2, 8]",
              self.exponent_bits)


@dataclass
class QuantConfig:
    weights: NumberFormatConfig = field(default_factory=lambda: NumberFormatConfig(bits=12))
    biases: NumberFormatConfig = field(default_factory=lambda: NumberFormatConfig(bits=16))
    activations: NumberFormatConfig = field(default_factory=lambda: NumberFormatConfig(bits=16))
    accumulator_bits: int = 32

    def __post_init__(self) -> None:
        self.weights.validate("compress.quant.weights")
        self.biases.validate("compress.quant.biases")
        self.activations.validate("compress.quant.activations")
        for name, fmt in (("biases", self.biases), ("activations", self.activations)):
            check(fmt.kind in ("fixed", "none"), f"compress.quant.{name}.kind",
                  "fixed or none", fmt.kind)
        check(8 <= self.accumulator_bits <= 62, "compress.quant.accumulator_bits",
              "in [8, 62]", self.accumulator_bits)


@dataclass
class StorageConfig:
    """Sparse storage of the artifact: ``csc`` (ESE/EIE: relative indices of ``index_bits``
    with padding), ``csb`` (BBS: positions inside banks) or ``dense``."""

    format: str = "csc"
    index_bits: int = 4

    def __post_init__(self) -> None:
        check(self.format in STORAGE, "compress.storage.format", f"one of {STORAGE}",
              self.format)
        check(1 <= self.index_bits <= 16, "compress.storage.index_bits", "in [1, 16]",
              self.index_bits)


@dataclass
class ScheduleConfig:
    """When masks and quantization act during fine-tuning, in fractions of its steps.

    ``one_shot``: prune once at the start. ``agp``: automated gradual pruning (Zhu & Gupta's
    cubic) from density 1 at ``begin`` to the target at ``end``, masks refreshed every
    ``frequency`` steps. ``dsd``: ``cycles`` of sparse then dense phases (DSD), ending sparse
    when ``final_sparse``. ``targeted_dropout``: every step, the weights the pruning structure
    would drop at the target density (``column_balanced``: CBTD's ``floor(local_rows * gamma)``
    smallest of every PE column, ``gamma = 1 - prune.density``) are each dropped for that step
    with probability ``alpha``, which rises linearly from 0 at ``begin`` to 1 at ``end``; from
    ``end`` on the mask is the structure's, fixed. ``qat_begin``: where quantization-aware
    training starts."""

    kind: str = "one_shot"
    begin: float = 0.0
    end: float = 0.5
    frequency: int = 10
    cycles: int = 1
    final_sparse: bool = True
    qat_begin: float = 0.0

    def __post_init__(self) -> None:
        check(self.kind in SCHEDULES, "compress.schedule.kind", f"one of {SCHEDULES}",
              self.kind)
        check(0.0 <= self.begin <= self.end <= 1.0, "compress.schedule.begin/end",
              "0 <= begin <= end <= 1", (self.begin, self.end))
        check(self.frequency >= 1, "compress.schedule.frequency", ">= 1", self.frequency)
        check(self.cycles >= 1, "compress.schedule.cycles", ">= 1", self.cycles)
        check(0.0 <= self.qat_begin <= 1.0, "compress.schedule.qat_begin", "in [0, 1]",
              self.qat_begin)


@dataclass
class CompressConfig:
    name: str = "custom"
    prune: PruneConfig = field(default_factory=PruneConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def __post_init__(self) -> None:
        # Targeted dropout draws from the structure's drop candidates: without a pruning
        # method there are none, and the schedule would silently train dense.
        check(self.schedule.kind != "targeted_dropout" or self.prune.method != "none",
              "compress.prune.method", f"one of {list(PRUNERS)} with "
              "compress.schedule.kind=targeted_dropout (column_balanced: CBTD)",
              self.prune.method)


def layer_type(name: str, model_type: str) -> str:
    """The layer type of a matrix name: input/recurrent/projection (LSTM), conv (WaveNet) or
    output (the last layer, to the vocabulary)."""
    if name in ("output", "conv2"):
        return "output"
    if model_type in ("lstm", "delta_lstm"):
        if name.endswith("W_ym") or name.endswith("W_ym_reverse"):
            return "projection"
        gate = name.rsplit(".", 1)[-1].removesuffix("_reverse")
        return "input" if gate.endswith("x") else "recurrent"
    return "conv"


def target_density(cfg: PruneConfig, name: str, model_type: str) -> float:
    """The density one matrix is pruned to (1.0: left dense)."""
    if cfg.method == "none":
        return 1.0
    if name in cfg.targets:
        return float(cfg.targets[name])
    return float(cfg.targets.get(layer_type(name, model_type), cfg.density))


def validate_against_model(cfg: CompressConfig, matrices: dict[str, torch.Tensor],
                           model_type: str) -> dict[str, float]:
    """Check the config against every matrix it will touch; returns each matrix's density."""
    unknown = set(cfg.prune.targets) - set(LAYER_TYPES) - set(matrices)
    if unknown:
        raise ConfigError(f"compress.prune.targets: unknown key(s) {sorted(unknown)}; allowed: "
                          f"layer types {list(LAYER_TYPES)} or matrix names such as "
                          f"{list(matrices)[:3]}")
    densities = {}
    p = cfg.prune
    for name, weight in matrices.items():
        density = target_density(p, name, model_type)
        densities[name] = density
        rows, cols = weight.reshape(weight.shape[0], -1).shape
        pruned = density < 1.0
        if not pruned:
            continue  # dense matrices are stored dense, whatever the format
        if p.method == "bank_balanced" or cfg.storage.format == "csb":
            check(cols % p.bank_size == 0, "compress.prune.bank_size",
                  f"a divisor of every pruned row length ({name} has {cols}; set "
                  f"compress.prune.targets.{name}=1.0 to leave it dense)", p.bank_size)
        if p.method in ("load_balanced", "column_balanced") or cfg.storage.format == "csc":
            check(rows % p.num_pes == 0, "compress.prune.num_pes",
                  f"a divisor of every pruned matrix's row count ({name} has {rows})",
                  p.num_pes)
        if p.method == "block":
            check(rows % p.block[0] == 0 and cols % p.block[1] == 0, "compress.prune.block",
                  f"a block tiling {name} ({rows}x{cols})", p.block)
    if cfg.storage.format == "csb":
        if p.method not in ("bank_balanced", "none"):
            raise ConfigError("compress.storage.format: csb stores bank-balanced matrices "
                              f"only; compress.prune.method is {p.method}")
        need = max(1, math.ceil(math.log2(p.bank_size)))
        check(cfg.storage.index_bits >= need, "compress.storage.index_bits",
              f">= {need} to address a position in a bank of {p.bank_size}",
              cfg.storage.index_bits)
    return densities


def compress_preset(name: str, *overrides: str) -> CompressConfig:
    """A ``conf/compress`` preset as ``asr-compress`` composes it (presets extend
    ``none.yaml``), with ``compress.*`` overrides, validated."""
    from hydra import compose, initialize_config_dir

    from asr.train.config import CONF_DIR, structured_config

    with initialize_config_dir(config_dir=str(CONF_DIR / "asr_compress"), version_base="1.3"):
        cfg = compose("asr_compress", [f"compress={name}", "model=-", "out=-.model",
                                       *overrides])
    return structured_config(CompressConfig, cfg.compress, "compress")
