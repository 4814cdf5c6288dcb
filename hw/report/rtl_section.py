"""The report's RTL section: the rows that ``asr-hw cosim --report`` and ``asr-hw synth
--report`` add to a report's markdown. Each row is keyed by its model, engine and check, and a
rerun replaces its own row, so the section holds one row per check. The section is kept between
two markers at the end of the file; the report itself is written atomically."""

from __future__ import annotations

from pathlib import Path

from asr import atomic
from asr.tables import markdown_table

BEGIN = "<!-- asr-hw rtl: begin -->"
END = "<!-- asr-hw rtl: end -->"
COLUMNS = ["model", "engine", "check", "result"]
TITLE = "## The engine as RTL (asr-hw cosim, asr-hw synth)"


def _rows(section: str) -> list[list[str]]:
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == len(COLUMNS) and cells != COLUMNS \
                and not set(cells[0]) <= {"-", ":"}:
            rows.append(cells)
    return rows


def add_rtl_row(report: Path, row: list[str]) -> None:
    """Put ``row`` (``COLUMNS``) into ``report``'s RTL section, replacing the row of the same
    model, engine and check; the section is created at the end of the file if missing."""
    report = Path(report)
    if not report.is_file():
        raise FileNotFoundError(f"--report {report}: no such report (run asr-hw report first)")
    text = report.read_text()
    head, rest = (text.split(BEGIN, 1) + [""])[:2]
    tail = rest.split(END, 1)[1] if END in rest else ""
    rows = [r for r in _rows(rest.split(END, 1)[0]) if r[:3] != row[:3]] + [row]
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    section = f"{BEGIN}\n{TITLE}\n\n{markdown_table(COLUMNS, rows)}\n{END}"
    atomic.write_text(report, head.rstrip("\n") + "\n\n" + section + "\n" + tail.lstrip("\n"))


def cosim_row(model: str, engine: str, results: list[dict]) -> list[str]:
    """The row of one model's co-simulation on one engine (``CosimResult.as_dict`` each)."""
    frames = sum(r["frames"] for r in results)
    exact = all(r["bit_exact"] for r in results)
    rtl = sum(r["rtl_cycles"] for r in results) / max(1, frames)
    mod = sum(r["model_cycles"] for r in results) / max(1, frames)
    speed = sum(r["sim_cycles"] for r in results) / max(1e-9, sum(r["sim_seconds"]
                                                                  for r in results))
    return [model, engine, "co-simulation (Verilator)",
            f"{len(results)} utterance(s), {frames} frames: "
            f"{'bit-exact' if exact else 'NOT bit-exact'}; RTL {rtl:,.1f} cycles a frame, "
            f"model {mod:,.1f} (RTL/model {rtl / max(1e-9, mod):.4f}); {speed:,.0f} "
            "simulated cycles/s"]


def synth_row(model: str, engine: str, out: dict) -> list[str]:
    """The row of one engine's synthesis (``asr-hw synth``'s JSON object)."""
    res = out["resources"]
    use = ", ".join(f"{res[k]['used']:,} {res[k]['label']} ({res[k]['percent']:.1f}%)"
                    for k in ("lut", "ff", "dsp", "bram"))
    check = (f"{out['device']}: Yosys counts (estimate)" if out["fmax_mhz"] is None else
             f"{out['device']}: placed and routed (nextpnr)")
    result = f"{'fits' if out['fits'] else 'does NOT fit'}: {use}"
    if out["fmax_mhz"] is not None:
        result += f"; Fmax {out['fmax_mhz']:g} MHz"
        if out.get("latency_per_frame_us_at_fmax"):
            result += f", {out['latency_per_frame_us_at_fmax']:,.1f} us a frame"
    return [model, engine, check, result]
