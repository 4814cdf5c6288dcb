"""The report's resources section: each point's engine, generated as RTL for each model
(``asr-hw rtl``) and synthesized (``hw.rtl.synth``; cached, so a rerun does not redo it), and a
table of its FPGA use beside the device's capacity. Where place and route ran, the latency per
frame is given again at the routed Fmax, beside the figure at the preset's clock (the cycle
count is the same; only the clock differs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asr.compress.artifact import read_artifact
from hw.config import EngineConfig
from hw.integer_model import compile_model
from hw.report.config import SynthSettings
from hw.rtl.design import generate_design
from hw.rtl.devices import get_device
from hw.rtl.synth import synthesize


def synthesize_engine(artifact: Path, cfg: EngineConfig, settings: SynthSettings,
                      folder: Path) -> dict[str, Any]:
    """Generate the RTL of engine ``cfg`` for ``artifact`` under ``folder`` and synthesize
    it; the result as a dict (``SynthResult.as_dict``)."""
    design = generate_design(compile_model(read_artifact(artifact), cfg), folder / "rtl")
    result = synthesize(design.sources, get_device(settings.device), top=design.top,
                        include_dir=design.include_dir, place_route=settings.place_route,
                        target_mhz=float(cfg.clock_mhz), cache_dir=settings.cache_dir,
                        clock=design.clock)
    return result.as_dict()


RESOURCE_COLUMNS = ("model", "engine", "device", "LUT", "FF", "DSP", "BRAM", "fits",
                    "Fmax MHz", "preset MHz", "us/frame at preset clock", "us/frame at Fmax")


def _use(res: dict[str, Any]) -> str:
    return f"{res['used']:g} / {res['available']:,} ({res['percent']:.1f}%)"


def resources_table(points: list[dict[str, Any]], rows: list[dict[str, Any]]
                    ) -> tuple[list[str], list[list[str]]]:
    """One row per point and model that was synthesized: used / available (%) of each
    resource, whether it fits, and the latency per frame at the preset's clock and at Fmax."""
    latency = {(r["point"], r["model"]): r["latency_per_frame_us"] for r in rows
               if r["kind"] == "engine" and r.get("latency_per_frame_us") is not None}
    out = []
    for p in points:
        clock = (p.get("config") or {}).get("hw", {}).get("clock_mhz")
        for model, details in p.get("models", {}).items():
            s = details.get("synth")
            if not s:
                continue
            us = latency.get((p["id"], model))
            fmax = s.get("fmax_mhz")
            at_fmax = us * clock / fmax if us is not None and clock and fmax else None
            res = s["resources"]
            out.append([model, p["hw"], s["device"] + (" (Yosys estimate)" if s["estimate"]
                                                       else ""),
                        *(f"{_use(res[k])} {res[k]['label']}" for k in
                          ("lut", "ff", "dsp", "bram")),
                        "yes" if s["fits"] else "no",
                        f"{fmax:.1f}" if fmax else "", f"{clock:g}" if clock else "",
                        f"{us:.2f}" if us is not None else "",
                        f"{at_fmax:.2f}" if at_fmax is not None else ""])
    return list(RESOURCE_COLUMNS), out
