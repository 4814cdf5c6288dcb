"""Float graph vs engine, layer by layer: SQNR, max error, saturations and first values."""

from __future__ import annotations

import torch

from asr.compress.artifact import Artifact
from asr.compress.fixed_point import FixedPointFormat
from asr.models.graph import run_graph
from hw.config import EngineConfig
from hw.functional import run_engine
from hw.integer_model import compile_model


def sqnr_db(ref: torch.Tensor, test: torch.Tensor) -> float:
    noise = float(((ref - test) ** 2).sum())
    signal = float((ref ** 2).sum())
    if noise == 0:
        return float("inf")
    return 10 * torch.log10(torch.tensor(signal / noise)).item() if signal > 0 else float("-inf")


def trace_layers(artifact: Artifact, cfg: EngineConfig, features: torch.Tensor, values: int = 4,
                 activation_format: FixedPointFormat | None = None) -> list[dict]:
    """Per op: SQNR (dB) and max error of the engine against the float graph, saturation and
    overflow counts, and the first values of both."""
    model = compile_model(artifact, cfg, activation_format)
    ref: dict[str, torch.Tensor] = {}
    run_graph(model.graph, features, outputs=ref)
    run = run_engine(model, features, trace=True)
    rows = []
    for name, (codes, frac) in run.trace.items():
        if name not in ref:   # inner signals without a float counterpart (a layer's deltas)
            continue
        fixed = codes.double() * 2.0 ** -frac
        flt = ref[name]
        sat = _layer_events(run.events, name, ("saturation", "wrap"))
        over = _layer_events(run.events, name, ("accumulator_overflow",))
        rows.append({"layer": name, "format": str(model.cfg.activation_format(frac))
                     if activation_format is None else activation_format.dashed(),
                     "sqnr_db": sqnr_db(flt, fixed),
                     "max_error": float((flt - fixed).abs().max()),
                     "saturations": sat, "overflows": over,
                     "float": [round(v, 4) for v in flt.flatten()[:values].tolist()],
                     "fixed": [round(v, 4) for v in fixed.flatten()[:values].tolist()]})
    return rows


def _layer_events(events: dict[str, dict[str, int]], name: str, kinds: tuple[str, ...]) -> int:
    """Events of ``kinds`` counted for op ``name`` and its inner stages (``name.*``)."""
    return sum(n for layer, counts in events.items()
               if layer == name or layer.startswith(name + ".")
               for kind, n in counts.items() if kind in kinds)
