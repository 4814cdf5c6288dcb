"""The report itself: one list of blocks (headings, paragraphs, tables, figures) rendered three
ways, ``report.md``, a self-contained ``report.html`` (figures embedded as data URIs, no network)
and ``report.json`` (every row and point, for scripts)."""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any

from asr.tables import markdown_table
from hw.report.files import GENERATED, write_if_changed
from hw.report.plots import all_plots, first_per_model_engine
from hw.report.resources import resources_table
from hw.timing import TIMING_COLUMNS, timing_record_cells

KIND_ORDER = {"float": 0, "quantized": 1, "engine": 2}
# (header, row key, format) of the summary table.
SUMMARY_COLUMNS = (
    ("model", "model", "{}"), ("kind", "kind", "{}"), ("engine", "engine", "{}"),
    ("compression", "compress", "{}"), ("decoder", "decoder", "{}"),
    ("density %", "density", "pct1"), ("weight bits", "weight_bits", "{}"),
    ("WER %", "wer", "pct2"), ("CER %", "cer", "pct2"), ("us/frame", "latency_per_frame_us",
                                                         "{:.2f}"),
    ("p99 us/frame", "latency_p99_us", "{:.2f}"), ("temporal sparsity %", "temporal_sparsity",
                                                   "pct1"),
    ("ms/utt", "latency_ms", "{:.3f}"), ("RTF", "rtf", "{:.2e}"),
    ("x real time", "throughput_x_realtime", "{:,.0f}"), ("GOP/s", "gops", "{:.1f}"),
    ("uJ/utt", "uj_per_utterance", "{:.1f}"), ("uJ/audio s", "uj_per_audio_second", "{:.1f}"),
    ("dynamic W", "dynamic_power_w", "{:.3f}"), ("static W", "static_power_w", "{:.3f}"),
    ("saturations", "saturations", "{:,}"), ("overflows", "accumulator_overflows", "{:,}"),
    ("storage KB", "storage_bytes", "kb"),
    ("vs float32", "compression_ratio", "{:.1f}x"))
# report.json's layout: rows and points with numbers as numbers (2: energy split into dynamic
# and per-channel static power, saturation and accumulator overflow counts, the timing table
# as records; 3: rows carry latency_p99_us and temporal_sparsity).
REPORT_SCHEMA_VERSION = 3


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return ""
    if fmt == "pct1":
        return f"{100 * value:.1f}"
    if fmt == "pct2":
        return f"{100 * value:.2f}"
    if fmt == "kb":
        return f"{value / 1024:.1f}"
    return fmt.format(value)


def report_rows(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every point's rows, reference rows once each (the float model is the same at every
    point; a quantized model is shared by the engines that run it), in report order."""
    seen, rows = set(), []
    for p in points:
        for r in p.get("rows", []):
            if r["kind"] == "float":
                key = ("float", r["model"], r["decoder"])
            elif r["kind"] == "quantized":
                key = ("quantized", r["model"], r["compress"], r["density"], r["weight_bits"],
                       r["storage_bytes"], r["decoder"])
            else:
                key = ("engine", r["point"], r["model"], r["decoder"])
            if key not in seen:
                seen.add(key)
                rows.append(r)
    return sorted(rows, key=lambda r: (r["model"], KIND_ORDER[r["kind"]], r["engine"] or "",
                                       r["compress"] or "", -r["density"], r["weight_bits"],
                                       r["decoder"]))


GLANCE_COLUMNS = ("model", "engine", "float WER %", "engine WER %", "density %",
                  "us/frame", "uJ/audio s", "vs float32")


def glance_table(rows: list[dict[str, Any]], decoder: str = "greedy"
                 ) -> tuple[list[str], list[list[str]]]:
    """The one table a newcomer needs: per model and engine, the float WER beside the engine's
    own, and what the engine costs (latency, energy, storage), for one decoder."""
    floats = {r["model"]: r for r in rows if r["kind"] == "float" and r["decoder"] == decoder}
    out = []
    for r in rows:
        if r["kind"] != "engine" or r["decoder"] != decoder:
            continue
        f = floats.get(r["model"])
        out.append([r["model"], f"{r['engine']} ({r['compress']})",
                    _cell(f["wer"], "pct2") if f else "", _cell(r["wer"], "pct2"),
                    _cell(r["density"], "pct1"), _cell(r["latency_per_frame_us"], "{:.2f}"),
                    _cell(r["uj_per_audio_second"], "{:.1f}"),
                    _cell(r["compression_ratio"], "{:.1f}x")])
    return list(GLANCE_COLUMNS), out


def _channels_note(rows: list[dict[str, Any]]) -> str:
    """Each engine's channel count, e.g. ``ese 32 channels, bbs 1 channel``."""
    chans = {r["engine"]: r.get("channels") for r in rows if r["kind"] == "engine"}
    return ", ".join(f"{e} {n} channel{'s' if n != 1 else ''}" for e, n in sorted(chans.items())
                     if n is not None) or "no engine rows"


def summary_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    return ([h for h, _, _ in SUMMARY_COLUMNS],
            # .get: points cached by an older version lack the newer columns
            [[_cell(r.get(k), f) for _, k, f in SUMMARY_COLUMNS] for r in rows])


def build_blocks(points: list[dict[str, Any]], rows: list[dict[str, Any]],
                 plots: list[tuple[str, str]], title: str, decoder: str = "greedy"
                 ) -> list[tuple]:
    """The report as blocks: ``("h1"|"h2"|"p"|"pre", text)``, ``("table", header, rows)``,
    ``("img", file, caption)``."""
    test = {p["config"]["data"].get("test_manifest") for p in points if "config" in p}
    engine_rows = [r for r in rows if r["kind"] == "engine"]
    blocks: list[tuple] = [
        ("h1", title),
        ("p", f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `asr-hw report` from "
              f"{len(points)} point(s) on {', '.join(sorted(map(str, test)))} "
              f"({max((r['utterances'] or 0) for r in rows) if rows else 0} utterances). "
              "WER/CER of engine rows come from the engine's bit-accurate integer outputs; "
              "latency, throughput and energy from its cycle-level timing and energy model, "
              "for one channel ('x real time' counts every channel). Power is split into the "
              "dynamic power of the work and the channel's share of the chip's static power "
              f"(static_w / channels: {_channels_note(rows)}). Saturations count the values "
              "the engine clipped into their format over the test set."),
    ]
    glance = glance_table(rows, decoder)
    if glance[1]:
        blocks += [("h2", "At a glance"),
                   ("p", f"Each model's float WER beside the engine's own ({decoder} decoding), "
                         "and what the engine costs; every figure is in the table below."),
                   ("table", *glance)]
    blocks += [
        ("h2", "Results"),
        ("table", *summary_table(rows)),
    ]
    resources = resources_table(points, rows)
    if resources[1]:
        blocks += [("h2", "FPGA resources"),
                   ("p", "Each engine's generated RTL synthesized with Yosys and, on ECP5, placed "
                         "and routed with nextpnr-ecp5: used / available (%) of each resource. "
                         "Xilinx counts are Yosys estimates (no open place and route). Where "
                         "place and route ran, the latency per frame is also given at the "
                         "routed Fmax, beside the figure at the preset's clock."),
                   ("table", *resources)]
    failed = [(p, f) for p in points for f in p.get("failures", [])]
    if failed:
        blocks += [("h2", "Failures"),
                   ("p", f"{len(failed)} failure(s); the other points and models finished."),
                   ("table", ["point", "model", "error"],
                    [[p["id"], f["model"] or "(whole point)", f["error"]] for p, f in failed])]
    if plots:
        blocks.append(("h2", "Figures"))
        blocks += [("img", name, caption) for name, caption in plots]
    if engine_rows:
        blocks.append(("h2", "Per-matrix latency of one frame (ESE's table)"))
        for p, model, details in first_per_model_engine(points):
            blocks += [("h3", f"{model} on {p['hw']} ({p['compress']}, point {p['id']})"),
                       ("table", list(TIMING_COLUMNS),
                        [timing_record_cells(r) for r in details["timing"]]),
                       ("p", f"{details['gops']:.1f} GOP/s ({details['gops_dense']:.1f} GOP/s "
                             "dense-equivalent) with every channel busy.")]
    blocks += [("h2", "Points"),
               ("table", ["point", "status", "seconds", "overrides"],
                [[p["id"], p["status"], str(p.get("seconds", "")),
                  " ".join(p.get("overrides", [])) or "(defaults)"] for p in points])]
    return blocks


def to_markdown(blocks: list[tuple]) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + b[1])
        elif kind == "p":
            out.append(b[1])
        elif kind == "pre":
            out.append("```\n" + b[1] + "\n```")
        elif kind == "table":
            out.append(markdown_table(b[1], [[c.replace("|", "\\|") for c in row]
                                             for row in b[2]]))
        elif kind == "img":
            out.append(f"![{b[2]}]({b[1]})\n\n*{b[2]}*")
    return "\n\n".join(out) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1400px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
figure{display:inline-block;margin:1em}figcaption{font-size:13px;color:#555}
code{background:#f4f4f4;padding:0 3px}"""
# Marks the document once every figure has decoded: a browser test reads these attributes.
_SCRIPT = """window.addEventListener('load',function(){var imgs=document.querySelectorAll(
'img.plot');var ok=0;imgs.forEach(function(i){if(i.complete&&i.naturalWidth>0){ok++;}});
document.body.setAttribute('data-plots',imgs.length);
document.body.setAttribute('data-plots-loaded',ok);});"""


def _inline(text: str) -> str:
    """Escape, then show `code` spans as <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def to_html(blocks: list[tuple], folder: Path) -> str:
    """A self-contained page: CSS and script inline, PNGs as base64 data URIs."""
    body = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{_inline(b[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline(b[1])}</p>")
        elif kind == "pre":
            body.append(f"<pre>{html.escape(b[1])}</pre>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b[1])
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row)
                           + "</tr>" for row in b[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode((folder / b[1]).read_bytes()).decode()
            body.append(f'<figure><img class="plot" alt="{html.escape(b[2])}" '
                        f'src="data:image/png;base64,{data}"><figcaption>'
                        f"{html.escape(b[2])}</figcaption></figure>")
    title = html.escape(blocks[0][1]) if blocks else "report"
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}"
            f"</title><style>{_CSS}</style><script>{_SCRIPT}</script></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report(points: list[dict[str, Any]], out: Path, title: str,
                 decoder: str = "greedy") -> tuple[list[dict[str, Any]], list[Path]]:
    """Write report.md/.html/.json and the PNGs under ``out`` (each only when its content
    changed); returns the rows and files."""
    out.mkdir(parents=True, exist_ok=True)
    rows = report_rows(points)
    plots = all_plots(rows, points, out, decoder)
    blocks = build_blocks(points, rows, plots, title, decoder)
    files = [out / "report.md", out / "report.html", out / "report.json"]
    # a report whose content is unchanged but for its "Generated" time is left as it is;
    # one that changed is written atomically (a kill leaves the previous report whole)
    write_if_changed(files[0], to_markdown(blocks), GENERATED)
    write_if_changed(files[1], to_html(blocks, out), GENERATED)
    write_if_changed(files[2], json.dumps({"schema_version": REPORT_SCHEMA_VERSION,
                                           "title": title, "rows": rows,
                                           "plots": [p for p, _ in plots], "points": points},
                                          indent=1))
    return rows, files + [out / name for name, _ in plots]
