"""The engine's configuration: an :class:`EngineConfig` per accelerator design.

Presets live in ``conf/hw/`` (``ese``, ``bbs``, ``eie_like``, ``delta``), each with the published
figures and sources it encodes; :func:`load_engine` composes one with Hydra (so any key can be
overridden: ``hw.clock_mhz=250``) and validates it before any work starts. Every error names
its key (``hw.accumulator_bits``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from asr.compress.fixed_point import ROUNDING, FixedPointFormat
from asr.config_errors import ConfigError, check
from hw.presets import HW_CONF_DIR, preset_names

FORMATS = ("csc", "csb", "dense")
ACTIVATION_KINDS = ("lut", "pwl")
LAYER_TYPES = ("recurrent", "projection", "input", "conv", "output")


def _is_pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


@dataclass
class ActivationUnitConfig:
    """The sigmoid/tanh units: a look-up table of ``entries`` values (``lut``) or ``segments``
    linear pieces between table points (``pwl``), over inputs in ``[-input_range,
    input_range)`` (beyond it the input saturates, where sigmoid and tanh are flat)."""

    kind: str = "lut"
    entries: int = 2048
    segments: int = 64
    input_range: float = 8.0

    def validate(self, activation_bits: int) -> None:
        check(self.kind in ACTIVATION_KINDS, "hw.activation_unit.kind",
              f"one of {ACTIVATION_KINDS}", self.kind)
        size = self.entries if self.kind == "lut" else self.segments
        key = "entries" if self.kind == "lut" else "segments"
        check(_is_pow2(size) and size <= 1 << activation_bits, f"hw.activation_unit.{key}",
              f"a power of two <= 2**activation_bits ({1 << activation_bits})", size)
        check(self.input_range > 0 and math.log2(self.input_range).is_integer(),
              "hw.activation_unit.input_range", "a power of two (the input's integer bits)",
              self.input_range)

    @property
    def input_int_bits(self) -> int:
        return int(math.log2(self.input_range))


@dataclass
class EnergyTable:
    """Energy per operation in pJ at the ``reference_bits`` width (Horowitz, ISSCC 2014, 45 nm:
    32-bit int add 0.1, int multiply 3.1, register file 1, SRAM read 5, DRAM read 640), scaled
    by width: adds, register and memory accesses linearly, multiplies by the product of the
    operand widths (an array multiplier's area). ``static_w`` is drawn for the whole latency."""

    reference_bits: int = 32
    int_add: float = 0.1
    int_mult: float = 3.1
    register: float = 1.0
    sram_read: float = 5.0
    dram_read: float = 640.0
    lut_read: float = 5.0
    static_w: float = 1.0
    technology: str = "45 nm (Horowitz, ISSCC 2014)"

    def validate(self) -> None:
        for key in ("int_add", "int_mult", "register", "sram_read", "dram_read", "lut_read",
                    "static_w"):
            check(getattr(self, key) >= 0, f"hw.energy.{key}", ">= 0", getattr(self, key))
        check(self.reference_bits >= 1, "hw.energy.reference_bits", ">= 1",
              self.reference_bits)

    def add(self, bits: int) -> float:
        return self.int_add * bits / self.reference_bits

    def mult(self, a_bits: int, b_bits: int) -> float:
        return self.int_mult * a_bits * b_bits / self.reference_bits ** 2

    def per_bit(self, kind: str) -> float:
        """pJ per bit moved for ``register``, ``sram_read``, ``dram_read`` or ``lut_read``."""
        return getattr(self, kind) / self.reference_bits


@dataclass
class EngineConfig:
    """One accelerator design. Widths are in bits; the arithmetic is two's complement.

    - ``weight_bits``/``activation_bits``/``bias_bits``: stored values. Products are exact
      (``product_bits`` must hold ``weight_bits + activation_bits``); they are aligned (exact
      left shifts) and summed in ``accumulator_bits`` registers that wrap around, as DSP
      accumulators do; a sum that ends outside their range is an overflow, counted per layer.
    - Partial sums feeding one output (several matrix products, the bias, element-wise
      products) are combined at ``guard_bits`` more fraction bits than the output's format
      (fewer when no term has them).
    - Every narrowing (accumulator -> activation, gate products -> cell state) shifts right
      with ``rounding`` and then saturates (``saturate: true``) or wraps; events are counted.
    - ``sparse_format``: ``csc`` (ESE/EIE: columns broadcast to ``num_pes`` PEs, each with
      ``macs_per_pe`` multipliers, ``activation_queue_depth`` columns of slack), ``csb`` (BBS:
      a PE takes a whole row, one multiplier per bank) or ``dense``.
    - ``skip_zero_deltas``: a delta engine (EdgeDRNN, Spartus) for ``delta_lstm`` layers: only
      the columns of non-zero input/hidden deltas are fetched and multiplied, ``mac_arrays``
      columns at a time, each by an array of ``num_pes`` PEs holding interleaved rows (a
      balanced column slice each). The thresholds are the model's unless ``theta_x``/
      ``theta_h`` override them; they are quantized to the signal's activation format.
    - ``activation_frac``: one fractional length for every signal (Q8.8: 8) instead of the
      calibrated per-signal formats (``None``).
    - ``channels``: utterances processed at once by replicated engines (ESE's 32 channels):
      multiplies throughput, not latency.
    - ``onchip_weight_bytes``: weight buffers; layer-type groups are placed on chip in
      ``weight_placement`` order, a group wholly or not at all; the rest stream from DDR at
      ``ddr_gbps`` (GB/s, effective) every time step, overlapped with compute.
    """

    name: str = "custom"
    description: str = ""
    sources: list[str] = field(default_factory=list)
    num_pes: int = 32
    macs_per_pe: int = 1
    channels: int = 1
    clock_mhz: float = 200.0
    weight_bits: int = 12
    activation_bits: int = 16
    bias_bits: int = 16
    product_bits: int = 28
    accumulator_bits: int = 32
    guard_bits: int = 8
    index_bits: int = 4
    rounding: str = "nearest"
    saturate: bool = True
    sparse_format: str = "csc"
    skip_zero_activations: bool = False
    skip_zero_deltas: bool = False
    mac_arrays: int = 1
    theta_x: float | None = None
    theta_h: float | None = None
    activation_frac: int | None = None
    activation_queue_depth: int = 8
    pipeline_depth: int = 8
    elementwise_lanes: int = 32
    elementwise_depth: int = 8
    onchip_weight_bytes: int = 1 << 20
    weight_placement: list[str] = field(default_factory=lambda: list(LAYER_TYPES))
    ddr_gbps: float = 12.8
    activation_unit: ActivationUnitConfig = field(default_factory=ActivationUnitConfig)
    energy: EnergyTable = field(default_factory=EnergyTable)

    def __post_init__(self) -> None:
        if isinstance(self.activation_unit, dict):
            self.activation_unit = ActivationUnitConfig(**self.activation_unit)
        if isinstance(self.energy, dict):
            self.energy = EnergyTable(**self.energy)
        self.validate()

    def validate(self) -> None:
        for key in ("num_pes", "macs_per_pe", "channels", "activation_queue_depth",
                    "elementwise_lanes", "index_bits", "mac_arrays"):
            check(getattr(self, key) >= 1, f"hw.{key}", ">= 1", getattr(self, key))
        for key in ("pipeline_depth", "elementwise_depth", "onchip_weight_bytes", "guard_bits"):
            check(getattr(self, key) >= 0, f"hw.{key}", ">= 0", getattr(self, key))
        check(self.clock_mhz > 0, "hw.clock_mhz", "> 0", self.clock_mhz)
        check(self.ddr_gbps > 0, "hw.ddr_gbps", "> 0", self.ddr_gbps)
        for key in ("weight_bits", "activation_bits", "bias_bits"):
            check(2 <= getattr(self, key) <= 24, f"hw.{key}", "in [2, 24]", getattr(self, key))
        check(self.product_bits >= self.weight_bits + self.activation_bits, "hw.product_bits",
              f">= weight_bits + activation_bits ({self.weight_bits + self.activation_bits}):"
              " products are exact", self.product_bits)
        check(self.product_bits <= self.accumulator_bits <= 52, "hw.accumulator_bits",
              f"in [product_bits ({self.product_bits}), 52] (sums held exactly in float64)",
              self.accumulator_bits)
        check(self.rounding in ROUNDING, "hw.rounding", f"one of {ROUNDING}", self.rounding)
        check(self.sparse_format in FORMATS, "hw.sparse_format", f"one of {FORMATS}",
              self.sparse_format)
        for kind in self.weight_placement:
            check(kind in LAYER_TYPES, "hw.weight_placement", f"layer types from {LAYER_TYPES}",
                  kind)
        for key in ("theta_x", "theta_h"):
            value = getattr(self, key)
            check(value is None or (isinstance(value, int | float)
                                    and not isinstance(value, bool) and value >= 0),
                  f"hw.{key}", ">= 0 (a delta threshold), or null for the model's", value)
        check(self.activation_frac is None or (
            isinstance(self.activation_frac, int) and not isinstance(self.activation_frac, bool)
            and 0 <= self.activation_frac < self.activation_bits),
            "hw.activation_frac", f"an integer in [0, activation_bits ({self.activation_bits}))"
            " or null (calibrated formats)", self.activation_frac)
        check(not self.skip_zero_deltas or self.sparse_format in ("csc", "dense"),
              "hw.sparse_format", "csc or dense when skip_zero_deltas is true (delta columns "
              "are broadcast to the PEs)", self.sparse_format)
        self.activation_unit.validate(self.activation_bits)
        self.energy.validate()

    def weight_format(self, frac: int) -> FixedPointFormat:
        """Weights the engine quantizes itself (float matrices, decoded tables): the
        configured rounding, always saturated (a quantizer never wraps)."""
        return FixedPointFormat(self.weight_bits, frac, rounding=self.rounding)

    def bias_format(self, frac: int) -> FixedPointFormat:
        return FixedPointFormat(self.bias_bits, frac, rounding=self.rounding)

    def activation_format(self, frac: int) -> FixedPointFormat:
        """A signal's format: the configured rounding and overflow."""
        return FixedPointFormat(self.activation_bits, frac, rounding=self.rounding,
                                overflow="saturate" if self.saturate else "wrap")

    @property
    def clock_hz(self) -> float:
        return self.clock_mhz * 1e6

    @property
    def multipliers(self) -> int:
        return self.mac_arrays * self.num_pes * self.macs_per_pe

    @property
    def data_dependent(self) -> bool:
        """Whether a frame's cycles depend on the data (zero activations or deltas skipped)."""
        return self.skip_zero_activations or self.skip_zero_deltas


def engine_from_dict(d: dict, origin: str = "hw") -> EngineConfig:
    """An :class:`EngineConfig` from a (resolved) mapping; unknown keys are errors naming them."""
    known = set(EngineConfig.__dataclass_fields__)
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"{origin}: unknown key(s) {unknown}; known: {sorted(known)}")
    d = dict(d)
    for sub, cls in (("activation_unit", ActivationUnitConfig), ("energy", EnergyTable)):
        if isinstance(d.get(sub), dict):
            extra = sorted(set(d[sub]) - set(cls.__dataclass_fields__))
            if extra:
                raise ConfigError(f"{origin}.{sub}: unknown key(s) {extra}")
    _check_types(EngineConfig(), d, origin)
    for sub, cls in (("activation_unit", ActivationUnitConfig), ("energy", EnergyTable)):
        if isinstance(d.get(sub), dict):
            _check_types(cls(), d[sub], f"{origin}.{sub}")
    try:
        return EngineConfig(**d)
    except TypeError as err:
        raise ConfigError(f"{origin}: {err}") from None


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _check_types(defaults: object, d: dict, origin: str) -> None:
    """Each plain value has the type of the field's default (an int is a number too), so a
    value like ``num_pes=abc`` is named instead of failing inside a comparison."""
    for key, value in d.items():
        want = type(getattr(defaults, key, None))
        if want not in _TYPE_NAMES:
            continue
        ok = (isinstance(value, want) and not (want is int and isinstance(value, bool))
              or (want is float and isinstance(value, int) and not isinstance(value, bool)))
        if not ok:
            raise ConfigError(f"{origin}.{key}: expected {_TYPE_NAMES[want]}, got {value!r}")


def load_engine(preset: str, overrides: list[str] | None = None) -> EngineConfig:
    """A preset name (``ese``), or a path to a YAML file, composed with ``overrides``
    (``["clock_mhz=250"]``, keys relative to the engine) and validated."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    path = Path(preset)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"hw: no engine config file {path}")
        conf_dir, name = path.resolve().parent, path.stem
    else:
        if preset not in preset_names():
            raise ConfigError(f"hw: unknown engine preset {preset!r}; presets: "
                              f"{preset_names()} (or a path to a .yaml file)")
        conf_dir, name = HW_CONF_DIR, preset
    for item in overrides or []:
        check_override_key(item)
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        try:
            cfg = compose(name, overrides or [])
        except Exception as err:  # Hydra's parse and type errors: say which override
            raise ConfigError(f"--set {' '.join(overrides or [])}: {err}") from None
    return engine_from_dict(OmegaConf.to_container(cfg, resolve=True), "hw")


def engine_keys() -> list[str]:
    """Every key an engine override may set: the fields, and ``activation_unit.*`` and
    ``energy.*`` inside their groups."""
    keys = []
    for name in EngineConfig.__dataclass_fields__:
        sub = {"activation_unit": ActivationUnitConfig, "energy": EnergyTable}.get(name)
        keys += ([f"{name}.{f}" for f in sub.__dataclass_fields__] if sub else [name])
    return keys


def check_override_key(item: str) -> None:
    """``KEY=VALUE`` with a known key; a typo is named with the nearest valid keys."""
    import difflib

    key, eq, _ = item.partition("=")
    if not eq or not key.strip():
        raise ConfigError(f"--set: expected KEY=VALUE (e.g. clock_mhz=250), got {item!r}")
    key = key.strip().lstrip("+~")
    keys = engine_keys()
    if key not in keys and not any(k.startswith(key + ".") for k in keys):
        near = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(near)}?" if near else f"; known keys: {keys}"
        raise ConfigError(f"--set: unknown engine key {key!r}{hint}")
