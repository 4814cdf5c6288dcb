"""The engine as an acoustic model: bit-accurate logits plus modeled latency and energy.

:class:`EngineModule` plugs the engine into everything that takes an acoustic model
(``Recognizer``, the greedy and beam decoders, ``greedy_error_rates``): its forward runs each
utterance through :func:`~hw.functional.run_engine` and returns the integer logits as floats;
every utterance's frames, events and (for engines that skip zero activations) input activity
are kept, so :meth:`EngineModule.utterance_cost` can say what the hardware spent on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr.compress.artifact import Artifact, read_artifact
from asr.compress.fixed_point import FixedPointFormat
from asr.decode.recognizer import Decoded, Decoder, Posteriors, Recognizer
from asr.features.config import FeatureConfig
from asr.models.acoustic import AcousticModel, UtteranceModel
from asr.models.graph import Conv1dOp, DeltaLSTMOp, GatedResidualOp, LinearOp, LSTMOp, SkipSumOp
from asr.models.ops import dispatch, register
from asr.text.vocab import CharVocab
from hw.config import EngineConfig
from hw.energy import EnergyBreakdown, energy_summary, frame_energy
from hw.functional import EngineRun, im2col, run_engine, run_engine_batch
from hw.integer_model import EngineModel, compile_model
from hw.timing import FrameTiming, UtteranceTiming, cycle_distribution, frame_timing

ACTIVITY = "activity"

# The activity backend: ``impl(op, x, run, out)`` puts into ``out`` the non-zero-input mask
# of each matrix of ``op`` whose input is traced; ``x`` is the op's input codes (the previous
# op's traced output), ``run`` the traced run.


@register(ACTIVITY, "conv1d")
def _conv_activity(op: Conv1dOp, x: torch.Tensor, run: EngineRun,
                   out: dict[str, np.ndarray]) -> None:
    out[op.name] = (im2col(x, op.weight.shape[-1], op.dilation) != 0).numpy()


@register(ACTIVITY, "gated_residual")
def _gated_residual_activity(op: GatedResidualOp, x: torch.Tensor, run: EngineRun,
                             out: dict[str, np.ndarray]) -> None:
    # filter and gate read the block's input; ``out`` reads z, which is not traced
    for conv in (op.filter, op.gate):
        dispatch(ACTIVITY, conv, x, run, out)


@register(ACTIVITY, "skip_sum")
def _skip_sum_activity(op: SkipSumOp, x: torch.Tensor, run: EngineRun,
                       out: dict[str, np.ndarray]) -> None:
    """No matrix: nothing to record."""


@register(ACTIVITY, "lstm")
def _lstm_activity(op: LSTMOp, x: torch.Tensor, run: EngineRun,
                   out: dict[str, np.ndarray]) -> None:
    y = run.trace[op.name][0]
    y_prev = torch.cat([torch.zeros_like(y[:1]), y[:-1]])
    for g in "ifco":
        out[f"{op.name}.W_{g}x"] = (x != 0).numpy()
        out[f"{op.name}.W_{g}r"] = (y_prev != 0).numpy()


@register(ACTIVITY, "delta_lstm")
def _delta_lstm_activity(op: DeltaLSTMOp, x: torch.Tensor, run: EngineRun,
                         out: dict[str, np.ndarray]) -> None:
    """The non-zero deltas (``{name}.dx``, ``{name}.dh``: what a delta engine fetches) and,
    for the gate matrices, the non-zero memories ``x_hat``/``y_hat`` (what an engine without
    delta support multiplies), as the datapath traced them: wrapped into ``activation_bits``,
    they are not the deltas' running sum once a change has left the delta's range."""
    for key in ("dx", "dh"):
        out[f"{op.name}.{key}"] = (run.trace[f"{op.name}.{key}"][0] != 0).numpy()
    x_nz, y_nz = ((run.trace[f"{op.name}.{m}"][0] != 0).numpy() for m in ("x_hat", "y_hat"))
    for g in "ifco":
        out[f"{op.name}.W_{g}x"] = x_nz
        out[f"{op.name}.W_{g}r"] = y_nz


@register(ACTIVITY, "linear")
def _linear_activity(op: LinearOp, x: torch.Tensor, run: EngineRun,
                     out: dict[str, np.ndarray]) -> None:
    out[op.name] = (x != 0).numpy()


def activity(model: EngineModel, run: EngineRun) -> dict[str, np.ndarray]:
    """Non-zero inputs ``(frames, cols)`` of each matrix, from a traced run (for engines that
    skip zero activations). Inputs that are not traced (the projection's ``m``, a gated
    residual's ``z``) are taken as all active."""
    out: dict[str, np.ndarray] = {}
    prev = "input"
    for op in model.graph.ops:
        dispatch(ACTIVITY, op, run.trace[prev][0], run, out)
        prev = op.name
    return out


class EngineModule(UtteranceModel):
    """``(batch, time, input_dim)`` features -> the engine's logits, the batch's utterances
    side by side (:func:`~hw.functional.run_engine_batch`), or one at a time when the cost
    depends on the data (zero activations or deltas skipped: costs read every op's traced
    output); every utterance's run is kept in ``runs`` for :meth:`utterance_cost`."""

    def __init__(self, model: EngineModel):
        super().__init__(model.graph)
        self.engine = model
        self.runs: list[EngineRun] = []
        self._static: tuple[FrameTiming, EnergyBreakdown] | None = None

    def utterance_logits(self, features: torch.Tensor) -> torch.Tensor:
        run = run_engine(self.engine, features.cpu(), trace=self.engine.cfg.data_dependent)
        self.runs.append(run)
        return run.logits_float()

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> torch.Tensor:
        if self.engine.cfg.data_dependent:   # costs read every op's traced output
            return super().forward(features, lengths)
        lengths = lengths if lengths is not None else torch.full(
            (features.shape[0],), features.shape[1])
        runs = run_engine_batch(self.engine, [features[b, :n].cpu()
                                              for b, n in enumerate(lengths.tolist())])
        self.runs.extend(runs)
        out = features.new_zeros(features.shape[0], features.shape[1], self.graph.vocab_size)
        for b, run in enumerate(runs):
            out[b, :run.logits.shape[0]] = run.logits_float().to(out.dtype)
        return out

    def frame_cost(self, run: EngineRun | None = None) -> tuple[FrameTiming, EnergyBreakdown]:
        """Per-frame timing and energy: data-independent (computed once) unless zero
        activations or deltas are skipped, then from ``run``'s activity."""
        if self.engine.cfg.data_dependent and run is not None and run.trace:
            frame = frame_timing(self.engine, activity(self.engine, run))
            return frame, frame_energy(frame, self.engine.cfg)
        if self._static is None:
            frame = frame_timing(self.engine)
            self._static = frame, frame_energy(frame, self.engine.cfg)
        return self._static

    def utterance_cost(self, run: EngineRun, audio_seconds: float | None = None
                       ) -> dict[str, Any]:
        """Latency, throughput, energy and events of one utterance's run."""
        frame, frame_pj = self.frame_cost(run)
        frames = int(run.logits.shape[0])
        timing = UtteranceTiming(frames, frame, audio_seconds)
        energy = energy_summary(frame, frame_pj, frames, audio_seconds)
        saturations = sum(k.get("saturation", 0) + k.get("wrap", 0)
                          for k in run.events.values())
        overflows = sum(k.get("accumulator_overflow", 0) for k in run.events.values())
        cycles = frame.cycles_per_frame()
        if cycles.size != frames:   # one figure for every frame
            cycles = np.full(frames, float(cycles.mean()))
        return {**timing.as_dict(), **energy, "saturations": saturations,
                "accumulator_overflows": overflows, "frame_cycles": cycles.tolist(),
                "temporal_sparsity": temporal_sparsity(run)}


def posteriors_with_cost(model: AcousticModel, paths: list[str],
                         failures: list[tuple[str, str]], batch_size: int = 16
                         ) -> Iterator[tuple[Posteriors, list[dict[str, Any]]]]:
    """The engine's posteriors of ``paths`` batch by batch, each file with its modeled cost
    (so that several decoders can share one engine pass); unreadable files go to
    ``failures``."""
    recognizer = Recognizer(model, batch_size)
    module: EngineModule = model.model
    for post in recognizer.posteriors(paths, failures):
        runs = module.runs[-len(post.paths):]
        costs = [module.utterance_cost(run, seconds)
                 for run, seconds in zip(runs, post.durations)]
        module.runs.clear()
        yield post, costs


def decode_with_cost(model: AcousticModel, paths: list[str], decoder: Decoder,
                     failures: list[tuple[str, str]], batch_size: int = 16
                     ) -> Iterator[tuple[Decoded, dict[str, Any]]]:
    """Decode ``paths`` through an engine model (:func:`engine_acoustic_model`), each file with
    its modeled cost; unreadable files go to ``failures``."""
    for post, costs in posteriors_with_cost(model, paths, failures, batch_size):
        yield from zip(Recognizer.decode(post, decoder), costs)


def summarize_costs(costs: list[dict], audio_seconds: float, cfg: EngineConfig
                    ) -> dict[str, float]:
    """Per-utterance costs (:meth:`EngineModule.utterance_cost`) of a test set -> means over
    utterances and rates over the whole audio (what ``asr-hw eval`` and the report show)."""
    latency = sum(c["latency_s"] for c in costs)
    frames = sum(c["frames"] for c in costs)
    energy_uj = sum(c["utterance_uj"] for c in costs)
    dynamic_uj = sum(c["dynamic_uj"] for c in costs)
    static_uj = sum(c["static_uj"] for c in costs)
    return {"latency_per_frame_us": 1e6 * latency / frames,
            "latency_ms": 1e3 * latency / len(costs),
            "rtf": latency / audio_seconds,
            # audio seconds per second with every channel busy
            "throughput_x_realtime": cfg.channels * audio_seconds / latency,
            "gops": sum(c["gops"] * c["frames"] for c in costs) / frames,
            "uj_per_utterance": energy_uj / len(costs),
            "uj_per_audio_second": energy_uj / audio_seconds,
            "power_w": energy_uj * 1e-6 / latency,
            # one channel's power, split: what the work costs, and its share of static power
            "dynamic_power_w": dynamic_uj * 1e-6 / latency,
            "static_power_w": static_uj * 1e-6 / latency,
            "channels": cfg.channels,
            "saturations": sum(c["saturations"] for c in costs),
            "accumulator_overflows": sum(c["accumulator_overflows"] for c in costs),
            **_latency_distribution(costs, cfg),
            **_sparsity_summary(costs)}


def _sparsity_summary(costs: list[dict]) -> dict:
    """``temporal_sparsity``: the fraction of zero deltas over every delta layer (None for a
    model without one); ``temporal_sparsity_by_layer``: per ``{layer}.dx``/``.dh``."""
    by_layer = merge_sparsity([c.get("temporal_sparsity", {}) for c in costs])
    return {"temporal_sparsity": by_layer.get("overall"),
            "temporal_sparsity_by_layer": by_layer}


def _latency_distribution(costs: list[dict], cfg: EngineConfig) -> dict:
    """Cycles per frame over every frame of ``costs`` (a cost without per-frame figures has
    its mean for every frame), and its percentiles in us as flat keys for the report's rows."""
    cycles = np.concatenate([
        np.asarray(c["frame_cycles"]) if "frame_cycles" in c
        else np.full(c["frames"], c["latency_s"] * cfg.clock_hz / c["frames"]) for c in costs])
    dist = cycle_distribution(cycles, cfg.clock_hz)
    return {"cycles_per_frame": dist, "latency_p50_us": dist["p50_us"],
            "latency_p99_us": dist["p99_us"], "latency_max_us": dist["max_us"]}


def temporal_sparsity(run: EngineRun) -> dict[str, list[int]]:
    """``[zero deltas, all deltas]`` of every delta layer's input (``{name}.dx``) and hidden
    (``{name}.dh``) deltas in a traced run: the engine's temporal sparsity."""
    return {key: [int((codes == 0).sum()), codes.numel()]
            for key, (codes, _) in run.trace.items() if key.endswith((".dx", ".dh"))}


def merge_sparsity(counts: list[dict[str, list[int]]]) -> dict[str, float]:
    """Per-utterance delta counts -> the fraction of zero deltas per key and ``overall``."""
    total: dict[str, list[int]] = {}
    for c in counts:
        for key, (zero, n) in c.items():
            z, t = total.get(key, [0, 0])
            total[key] = [z + zero, t + n]
    if not total:
        return {}
    out = {key: z / t if t else 0.0 for key, (z, t) in total.items()}
    zeros, n = (sum(v[i] for v in total.values()) for i in (0, 1))
    out["overall"] = zeros / n if n else 0.0
    return out


def engine_acoustic_model(artifact: Artifact | str | Path, cfg: EngineConfig,
                          activation_format: FixedPointFormat | None = None) -> AcousticModel:
    """An :class:`~asr.models.acoustic.AcousticModel` whose forward is the engine."""
    data = read_artifact(artifact) if isinstance(artifact, str | Path) else artifact
    model = compile_model(data, cfg, activation_format)
    source = str(artifact) if isinstance(artifact, str | Path) else "<memory>"
    return AcousticModel(EngineModule(model).eval(), CharVocab(data.vocab_tokens),
                         FeatureConfig(**data.features), dict(data.model_config), source)
