"""The report's figures (PNG, matplotlib Agg): WER against density and bit width, energy against
WER with the Pareto front, per-layer SQNR and per-PE utilization; with delta models, their
threshold sweep against temporal sparsity and latency against WER beside the other engines.
Each function returns the
file it wrote, or None when the rows hold nothing to plot."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen

from hw.report.files import write_if_changed  # noqa: E402

MARKERS = "osD^vP*X"
SQNR_CAP_DB = 120.0  # exact layers (infinite SQNR) are drawn at the cap


def _save(fig, path: Path) -> Path:
    """Render the PNG; the file is rewritten only when its bytes change."""
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    write_if_changed(path, png.getvalue())
    return path


def _styles(rows: list[dict]) -> tuple[dict[str, str], dict[str, str]]:
    models = sorted({r["model"] for r in rows})
    engines = sorted({r["engine"] for r in rows if r["engine"]})
    colors = {m: f"C{i % 10}" for i, m in enumerate(models)}
    markers = {e: MARKERS[i % len(MARKERS)] for i, e in enumerate(engines)}
    return colors, markers


def wer_against(rows: list[dict], key: str, xlabel: str, path: Path, decoder: str) -> Path | None:
    """Engine WER against ``key`` (``density`` or ``weight_bits``) per model and engine, with
    each model's float WER as a dashed line."""
    engine = [r for r in rows if r["kind"] == "engine" and r["decoder"] == decoder]
    if not engine:
        return None
    colors, markers = _styles(engine)
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for (model, eng) in sorted({(r["model"], r["engine"]) for r in engine}):
        pts = sorted((r[key] * (100 if key == "density" else 1), 100 * r["wer"])
                     for r in engine if r["model"] == model and r["engine"] == eng)
        ax.plot(*zip(*pts), marker=markers[eng], color=colors[model], linestyle="-",
                label=f"{model} on {eng}")
    for model in colors:
        flt = [r for r in rows if r["kind"] == "float" and r["model"] == model
               and r["decoder"] == decoder]
        if flt:
            ax.axhline(100 * flt[0]["wer"], color=colors[model], linestyle="--", linewidth=1,
                       label=f"{model} float")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"WER % ({decoder})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (both minimized)."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 <= y) and (x2 < x or y2 < y)
                        for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i])


def energy_against_wer(rows: list[dict], path: Path, decoder: str,
                       key: str = "uj_per_audio_second",
                       xlabel: str = "energy per second of audio (uJ, log)") -> Path | None:
    """Energy per second of audio (or ``key``) against WER for every engine row; the Pareto
    front marked."""
    engine = [r for r in rows if r["kind"] == "engine" and r["decoder"] == decoder]
    if not engine:
        return None
    colors, markers = _styles(engine)
    pts = [(r[key], 100 * r["wer"]) for r in engine]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for r, (x, y) in zip(engine, pts):
        ax.scatter(x, y, color=colors[r["model"]], marker=markers[r["engine"]], zorder=3)
    front = pareto_front(pts)
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], color="black",
            linestyle=":", drawstyle="steps-post", label="Pareto front", zorder=2)
    ax.scatter([pts[i][0] for i in front], [pts[i][1] for i in front], s=160,
               facecolors="none", edgecolors="black", zorder=4)
    for model, c in colors.items():
        ax.scatter([], [], color=c, label=model)
    for eng, m in markers.items():
        ax.scatter([], [], color="grey", marker=m, label=eng)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"WER % ({decoder})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _delta_rows(rows: list[dict], decoder: str) -> list[dict]:
    """Engine rows of delta models (those with a measured temporal sparsity)."""
    return [r for r in rows if r["kind"] == "engine" and r["decoder"] == decoder
            and r.get("temporal_sparsity") is not None]


def delta_sweep(rows: list[dict], path: Path, decoder: str) -> Path | None:
    """Delta engine rows (a sweep of the thresholds, ``hw.theta_x``/``hw.theta_h``): WER, mean
    and p99 latency per frame, and energy per second of audio against temporal sparsity."""
    delta = _delta_rows(rows, decoder)
    if not delta:
        return None
    colors, markers = _styles(delta)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for (model, eng) in sorted({(r["model"], r["engine"]) for r in delta}):
        pts = sorted((100 * r["temporal_sparsity"], r) for r in delta
                     if r["model"] == model and r["engine"] == eng)
        x = [p for p, _ in pts]
        style = {"color": colors[model], "marker": markers[eng]}
        axes[0].plot(x, [100 * r["wer"] for _, r in pts], **style, label=f"{model} on {eng}")
        axes[1].plot(x, [r["latency_per_frame_us"] for _, r in pts], **style,
                     label=f"{model} on {eng}: mean")
        axes[1].plot(x, [r["latency_p99_us"] for _, r in pts], **style, linestyle="--",
                     label=f"{model} on {eng}: p99")
        axes[2].plot(x, [r["uj_per_audio_second"] for _, r in pts], **style)
    for ax, label in zip(axes, (f"WER % ({decoder})", "latency per frame (us)",
                                "energy per second of audio (uJ)")):
        ax.set_xlabel("temporal sparsity % (zero deltas)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    return _save(fig, path)


def layer_sqnr(series: list[tuple[str, str, list[dict]]], path: Path) -> Path | None:
    """Per-layer SQNR of the engine against the float graph: one panel per model (its own
    layers), one line per engine point. ``series``: ``(model, label, layers)``."""
    series = [s for s in series if s[2]]
    if not series:
        return None
    models = list(dict.fromkeys(m for m, _, _ in series))
    fig, axes = plt.subplots(len(models), 1, figsize=(7.5, 3.2 * len(models) + 0.4),
                             squeeze=False)
    for ax, model in zip(axes[:, 0], models):
        mine = [(label, layers) for m, label, layers in series if m == model]
        for i, (label, layers) in enumerate(mine):
            y = [SQNR_CAP_DB if v["sqnr_db"] is None else min(SQNR_CAP_DB, v["sqnr_db"])
                 for v in layers]
            ax.plot(range(len(y)), y, marker=MARKERS[i % len(MARKERS)], label=label)
        names = [v["layer"] for v in mine[0][1]]
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
        ax.set_title(model, fontsize=9)
        ax.set_ylabel("SQNR dB (engine vs float)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def pe_utilization(series: list[tuple[str, list[float]]], path: Path) -> Path | None:
    """Fraction of a frame's cycles each PE spends multiplying, one panel per (model,
    engine)."""
    series = [s for s in series if s[1]]
    if not series:
        return None
    fig, axes = plt.subplots(len(series), 1, figsize=(7.5, 1.9 * len(series) + 0.6),
                             squeeze=False)
    for ax, (label, util) in zip(axes[:, 0], series):
        ax.bar(range(len(util)), [100 * u for u in util], color="#4477aa", width=0.85)
        mean = 100 * sum(util) / len(util)
        ax.axhline(mean, color="black", linestyle="--", linewidth=1)
        ax.set_title(f"{label}: mean {mean:.1f}%, max/mean "
                     f"{max(util) / max(1e-12, sum(util) / len(util)):.3f}", fontsize=9)
        ax.set_ylabel("busy %")
        ax.set_ylim(0, 100)
    axes[-1, 0].set_xlabel("PE")
    return _save(fig, path)


def all_plots(rows: list[dict], points: list[dict[str, Any]], out: Path, decoder: str
              ) -> list[tuple[str, str]]:
    """Write every figure under ``out``; returns ``(file name, caption)`` of those written."""
    firsts = first_per_model_engine(points)
    made = [
        (wer_against(rows, "density", "density % (kept weights)", out / "wer_vs_density.png",
                     decoder), "Engine WER against weight density"),
        (wer_against(rows, "weight_bits", "weight bits", out / "wer_vs_bits.png", decoder),
         "Engine WER against weight bit width"),
        (energy_against_wer(rows, out / "energy_vs_wer.png", decoder),
         "Energy per second of audio against WER (circled: the Pareto front)"),
        (delta_sweep(rows, out / "delta_sweep.png", decoder),
         "Delta engine: WER, mean and p99 latency per frame, and energy against temporal "
         "sparsity (the thresholds swept)"),
        (energy_against_wer(rows, out / "latency_vs_wer.png", decoder, "latency_per_frame_us",
                            "mean latency per frame (us, log)")
         if _delta_rows(rows, decoder) else None,
         "Mean latency per frame against WER, delta and the other engines on the same axes "
         "(circled: the Pareto front)"),
        (layer_sqnr([(m, f"{m} on {p['hw']} ({p['compress']})", d["layers"])
                     for p, m, d in firsts], out / "layer_sqnr.png"),
         "Per-layer SQNR of the engine's fixed point against the float graph"),
        (pe_utilization([(f"{m} on {p['hw']}", d["pe_utilization"]) for p, m, d in firsts],
                        out / "pe_utilization.png"),
         "Per-PE utilization (busy cycles over the frame's cycles)"),
    ]
    return [(path.name, caption) for path, caption in made if path is not None]


def first_per_model_engine(points: list[dict[str, Any]]) -> list[tuple[dict, str, dict]]:
    """``(point, model, details)`` of the first point of every (model, engine) pair."""
    seen, out = set(), []
    for p in points:
        for model, details in p.get("models", {}).items():
            if (model, p["hw"]) not in seen:
                seen.add((model, p["hw"]))
                out.append((p, model, details))
    return out
