"""The validated config of ``asr-hw report`` (``conf/asr_hw_report/report.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from asr.compress.app import CalibrationConfig, FinetuneConfig
from asr.compress.config import CompressConfig
from asr.config_errors import ConfigError, check
from asr.data.manifest import ManifestError
from asr.decode.recognizer import DECODERS
from asr.train.config import DataConfig, check_trainer_args, structured_config
from hw.config import EngineConfig, engine_from_dict

TOP_LEVEL_KEYS = {"hw", "compress", "data", "trainer", "models", "decoders", "lm", "beam_width",
                  "max_utterances", "out", "title", "seed", "resume", "quant", "finetune",
                  "calibration", "synth"}
MODEL_SUFFIXES = (".ckpt", ".model")


@dataclass
class ReportJob:
    """The validated pieces of one point's config."""

    hw: EngineConfig
    compress: CompressConfig
    data: DataConfig
    models: dict[str, Path]
    decoders: list[str]
    lm: str | None
    beam_width: int
    max_utterances: int
    finetune: FinetuneConfig
    calibration: CalibrationConfig
    synth: SynthSettings | None = None     # None: no resources section


@dataclass(frozen=True)
class SynthSettings:
    """``synth.*``: the device each engine's RTL is synthesized for."""

    device: str
    place_route: bool
    cache_dir: Path


def synth_settings(raw: dict | None) -> SynthSettings | None:
    """The validated ``synth`` group, or None when it is off; the device and the tools are
    checked here, before any work."""
    from hw.rtl.devices import get_device
    from hw.rtl.synth import default_cache_dir
    from hw.rtl.tools import synth_tools

    raw = dict(raw or {})
    allowed = {"enabled", "device", "place_route", "cache_dir"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"synth: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    enabled = raw.get("enabled", False)
    check(isinstance(enabled, bool), "synth.enabled", "true or false", enabled)
    if not enabled:
        return None
    device = get_device(str(raw.get("device", "ecp5-85k")), "synth.device")
    place_route = raw.get("place_route", True)
    check(isinstance(place_route, bool), "synth.place_route", "true or false", place_route)
    synth_tools(place_route and device.place_route)
    cache = raw.get("cache_dir")
    return SynthSettings(device.name, place_route,
                         Path(str(cache)) if cache else default_cache_dir())


def apply_quant_bits(cfg: DictConfig) -> DictConfig:
    """``quant.bits=B``: B-bit weights in the compressed model *and* the engine's weight memory
    (with products and accumulators widened to keep products exact), as a designer sweeping
    "weight bits" means it. Returns a copy; ``cfg`` is left alone."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    bits = out.get("quant", {}).get("bits")
    if bits is None:
        return out
    check(isinstance(bits, int) and 2 <= bits <= 24, "quant.bits", "an integer in [2, 24]", bits)
    with open_dict(out):
        out.compress.quant.weights.bits = bits
        out.hw.weight_bits = bits
        out.hw.product_bits = max(out.hw.product_bits, bits + out.hw.activation_bits)
        out.hw.accumulator_bits = max(out.hw.accumulator_bits, out.hw.product_bits)
    return out


def validate_report_config(cfg: DictConfig) -> ReportJob:
    """Check every key and file of a config (after :func:`apply_quant_bits`) before any
    work; errors name the key or the file."""
    unknown = set(cfg.keys()) - TOP_LEVEL_KEYS
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {sorted(unknown)}; allowed: "
                          f"{sorted(TOP_LEVEL_KEYS)}")
    if not cfg.models:
        raise ConfigError("models: name at least one model, e.g. "
                          "models.lstm=exp/synthetic_lstm/model.ckpt")
    models = {}
    for name, path in cfg.models.items():
        p = Path(str(path))
        if p.suffix not in MODEL_SUFFIXES:
            raise ConfigError(f"models.{name}: {p}: expected a checkpoint (.ckpt, asr-train) "
                              "or a compressed model (.model, asr-compress)")
        if not p.is_file():
            raise ConfigError(f"models.{name}: {p}: no such file")
        models[str(name)] = p
    decoders = list(cfg.decoders)
    for d in decoders:
        check(d in DECODERS, "decoders", f"a list from {DECODERS}", decoders)
    check(len(decoders) > 0, "decoders", "at least one decoder", decoders)
    if cfg.lm is not None:
        if not Path(cfg.lm).is_file():
            raise ConfigError(f"lm: {cfg.lm}: no such file (asr-lm build writes one)")
        check("beam" in decoders, "lm", "set only with the beam decoder in decoders", cfg.lm)
    check(cfg.beam_width >= 1, "beam_width", ">= 1", cfg.beam_width)
    check(cfg.max_utterances >= 0, "max_utterances", ">= 0", cfg.max_utterances)
    data = structured_config(DataConfig, cfg.data, "data")
    if data.test_manifest is None or not Path(data.test_manifest).is_file():
        raise ManifestError(f"data.test_manifest: {data.test_manifest}: no such manifest "
                            "(prepare the data first)")
    hw = engine_from_dict(OmegaConf.to_container(cfg.hw), "hw")
    compress = structured_config(CompressConfig, cfg.compress, "compress")
    finetune = structured_config(FinetuneConfig, cfg.finetune, "finetune")
    calibration = structured_config(CalibrationConfig, cfg.calibration, "calibration")
    if finetune.max_epochs > 0:
        check_trainer_args(OmegaConf.to_container(cfg.trainer))
        if not Path(data.train_manifest).is_file():
            raise ManifestError(f"data.train_manifest: {data.train_manifest}: no such manifest "
                                "(fine-tuning reads it)")
    synth = synth_settings(OmegaConf.to_container(cfg.synth) if cfg.get("synth") else None)
    return ReportJob(hw, compress, data, models, decoders, cfg.lm, int(cfg.beam_width),
                     int(cfg.max_utterances), finetune, calibration, synth)
