"""Synthesis of SystemVerilog with the open flow: Yosys (``synth_ecp5`` / ``synth_xilinx``) and,
for ECP5 parts, nextpnr-ecp5 place and route, into one :class:`SynthResult` (used / available /
% of LUT, FF, DSP and block RAM, whether it fits, and the routed Fmax).

The input is generic: a list of source files, a top module (or Yosys' ``-auto-top``), top-level
parameter overrides, and the folder ``$readmemh`` paths are relative to. Results are cached under
``cache_dir/<key>/`` (the logs beside them), keyed by a hash of the sources, the memory images,
the device, the options and the tools' versions, so that a report does not redo them.

Counting: the numbers come from Yosys' ``stat -json``; on ECP5 after place and route they are
nextpnr's own (``--report``). Yosys' Xilinx counts are estimates (there is no open place and
route for Xilinx parts); its LUT counts differ from Vivado's more than its DSP and RAMB counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from asr import atomic
from asr.config_errors import ConfigError
from hw.rtl.devices import RESOURCES, Device
from hw.rtl.tools import ToolError, relative, run_tool, synth_tools

# Bumped when the scripts below change what a cached result would hold.
FLOW_VERSION = 1
# Files besides the sources whose contents a design reads ($readmemh images, includes).
DATA_SUFFIXES = (".hex", ".mem", ".memh", ".vh", ".svh")

# Yosys cells -> the resource they use. A CCU2C carry cell takes both LUT4s of a slice; a
# TRELLIS_DPR16X4 (16x4 distributed RAM) the four LUT4s of two slices.
_ECP5_CELLS = {"lut": {"LUT4": 1, "CCU2C": 2, "TRELLIS_DPR16X4": 4},
               "ff": {"TRELLIS_FF": 1},
               "dsp": {"MULT18X18D": 1},
               "bram": {"DP16KD": 1, "PDPW16KD": 1}}
# Xilinx LUT RAMs and shift registers are counted by the LUT6s they occupy; a RAMB18 is half a
# RAMB36.
_XILINX_CELLS = {
    "lut": {"LUT1": 1, "LUT2": 1, "LUT3": 1, "LUT4": 1, "LUT5": 1, "LUT6": 1, "LUT6_2": 1,
            "SRL16E": 1, "SRLC32E": 1, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2,
            "RAM256X1S": 4, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM32M": 4,
            "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8},
    "ff": {"FDRE": 1, "FDSE": 1, "FDCE": 1, "FDPE": 1, "LDCE": 1, "LDPE": 1},
    "dsp": {"DSP48E1": 1, "DSP48E2": 1},
    "bram": {"RAMB36E1": 1, "RAMB36E2": 1, "RAMB18E1": 0.5, "RAMB18E2": 0.5}}
# nextpnr-ecp5's utilisation entries for the four resources
_NEXTPNR_CELLS = {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "dsp": "MULT18X18D",
                  "bram": "DP16KD"}


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/asr-fpga/synth`` (``~/.cache/asr-fpga/synth``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "asr-fpga" / "synth"


@dataclass
class Resource:
    label: str
    used: float
    available: int

    @property
    def percent(self) -> float:
        return 100.0 * self.used / self.available

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "used": self.used, "available": self.available,
                "percent": round(self.percent, 2)}


@dataclass
class SynthResult:
    """What one synthesis (and place and route) found. ``estimate``: the counts are Yosys' (no
    place and route ran); ``fmax_mhz`` is None then. ``reason``: why it does not fit."""

    device: str
    part: str
    top: str
    fits: bool
    estimate: bool
    fmax_mhz: float | None
    target_mhz: float | None
    resources: dict[str, Resource]
    cells: dict[str, int]
    tools: dict[str, str]
    seconds: dict[str, float]
    log_dir: str
    reason: str | None = None
    cached: bool = False
    params: dict[str, int] = field(default_factory=dict)

    def used(self, name: str) -> float:
        return self.resources[name].used

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "resources"}
        out.update({name: self.resources[name].used for name in RESOURCES})
        out["resources"] = {name: r.as_dict() for name, r in self.resources.items()}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthResult:
        fields = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        fields["resources"] = {name: Resource(r["label"], r["used"], r["available"])
                               for name, r in d["resources"].items()}
        return cls(**fields)


def count_resources(cells: dict[str, int], device: Device) -> dict[str, float]:
    """LUT, FF, DSP and block RAM used by Yosys' cell counts ``cells`` on ``device``."""
    table = _ECP5_CELLS if device.family == "ecp5" else _XILINX_CELLS
    counts = {}
    for name in RESOURCES:
        total = sum(cells.get(cell, 0) * weight for cell, weight in table[name].items())
        counts[name] = int(total) if float(total).is_integer() else total
    return counts


def _digest_files(h: Any, files: Sequence[Path], root: Path | None = None) -> None:
    for f in files:
        h.update(str(f.relative_to(root) if root else f.name).encode())
        h.update(f.read_bytes())


def cache_key(sources: Sequence[Path], data_files: Sequence[Path], include_dir: Path,
              options: dict[str, Any]) -> str:
    """A hash of what the result depends on: the sources' and data files' names and contents
    (not their paths or times), and the options (device, top, parameters, tools...)."""
    h = hashlib.sha256(json.dumps({"flow": FLOW_VERSION, **options}, sort_keys=True).encode())
    _digest_files(h, sources)
    _digest_files(h, data_files, include_dir)
    return h.hexdigest()[:20]


def _check_inputs(sources: Sequence[Path], include_dir: Path, top: str | None,
                  params: dict[str, int]) -> None:
    if not sources:
        raise ConfigError("--sources: no SystemVerilog files to synthesize")
    for s in sources:
        if not s.is_file():
            raise ConfigError(f"--sources: {s}: no such file")
        if s.suffix not in (".sv", ".v"):
            raise ConfigError(f"--sources: {s}: expected a .sv or .v file")
    if not include_dir.is_dir():
        raise ConfigError(f"--include-dir: {include_dir}: no such folder")
    if params and not top:
        raise ConfigError("--param: top-level parameters need --top NAME")


def _yosys_script(device: Device, sources: Sequence[str], top: str | None,
                  params: dict[str, int], netlist: str | None, stat: str) -> str:
    chparam = "".join(f" -chparam {k} {v}" for k, v in sorted(params.items()))
    hierarchy = f"hierarchy -check -top {top}{chparam}" if top else "hierarchy -check -auto-top"
    write = f" -json {netlist}" if netlist else ""
    return "\n".join([f"read_verilog -sv {' '.join(sources)}", hierarchy,
                      *device.yosys_commands(write), f"tee -q -o {stat} stat -json", ""])


ROUTERS = ("router1", "router2")   # nextpnr's routers; router1 is its default


def check_nextpnr_options(router: str, threads: int) -> None:
    """Raise ConfigError naming ``--router`` or ``--threads`` when either is not allowed."""
    if router not in ROUTERS:
        raise ConfigError(f"--router: expected one of {list(ROUTERS)}, got {router!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"--threads: expected an integer >= 1, got {threads!r}")


def nextpnr_overflow(log: Path) -> str | None:
    """Why nextpnr could not place the design, when it ran out of a cell type (its log says
    ``no BELs remaining to implement cell type 'X'``), or None."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    for line in text.splitlines():
        m = re.search(r"no BELs remaining to implement cell type '(\w+)'", line)
        if m:
            return f"nextpnr ran out of {m.group(1)} cells"
    return None


def synthesize(sources: Sequence[Path], device: Device, *, top: str | None = None,
               include_dir: Path | None = None, params: dict[str, int] | None = None,
               place_route: bool = True, target_mhz: float | None = None,
               cache_dir: Path, force: bool = False, seed: int = 1,
               timeout: float | None = None, router: str = "router1",
               threads: int = 1, clock: str | None = None) -> SynthResult:
    """Synthesize ``sources`` for ``device`` (and, on ECP5 with ``place_route``, place and route
    them at ``target_mhz``); a cached result with the same key is returned as it stands unless
    ``force``. ``include_dir`` (default: the first source's folder) is where Yosys runs, so
    ``$readmemh("x.hex")`` finds ``include_dir/x.hex``. Raises ConfigError on bad input,
    ToolMissing / ToolError when a tool is missing or fails. ``router`` and ``threads`` are
    nextpnr's (``router1`` is its default; ``router2`` uses the threads). ``clock``: the top's
    clock input, placed on the device's clock pin (``Device.clock_site``)."""
    sources = [Path(s) for s in sources]
    params = dict(params or {})
    include_dir = Path(include_dir) if include_dir else (
        sources[0].parent if sources else Path("."))
    _check_inputs(sources, include_dir, top, params)
    check_nextpnr_options(router, threads)
    place_route = place_route and device.place_route
    yosys, nextpnr = synth_tools(place_route)
    data_files = sorted(p for p in include_dir.rglob("*") if p.suffix in DATA_SUFFIXES
                        and p.is_file())
    options = {"device": device.name, "synth": device.yosys_commands(), "top": top,
               "params": params,
               "place_route": place_route, "target_mhz": target_mhz if place_route else None,
               "seed": seed, "tools": [yosys.version, nextpnr.version if nextpnr else None],
               "nextpnr": list(device.nextpnr or ())}
    if place_route and (router, threads) != ("router1", 1):
        # only when set, so that results cached with nextpnr's defaults keep their keys
        options.update(router=router, threads=threads)
    pin = clock if place_route and device.clock_site else None
    if pin:
        options.update(clock=[pin, device.clock_site])
    key = cache_key(sources, data_files, include_dir, options)
    entry = Path(cache_dir) / f"{device.name}_{top or 'auto'}_{key}"
    result_path = entry / "result.json"
    if result_path.is_file() and not force:
        result = SynthResult.from_dict(json.loads(result_path.read_text()))
        result.cached = True
        return result
    entry.mkdir(parents=True, exist_ok=True)
    tools = {"yosys": yosys.version}
    seconds: dict[str, float] = {}

    rel = [relative(s, include_dir) for s in sources]
    netlist = entry / "netlist.json"
    script = entry / "synth.ys"
    script.write_text(_yosys_script(device, rel, top, params,
                                    relative(netlist, include_dir) if place_route else None,
                                    relative(entry / "stat.json", include_dir)))
    t0 = time.perf_counter()
    run_tool(yosys, ["-q", "-l", relative(entry / "yosys.log", include_dir),
                     "-s", relative(script, include_dir)], include_dir, entry / "yosys.log",
             timeout)
    seconds["yosys"] = round(time.perf_counter() - t0, 2)
    stat = json.loads((entry / "stat.json").read_text())
    cells, resources = stat_resources(stat, device)
    modules = [m.lstrip("\\") for m in stat.get("modules", {})]
    top_name = top or (modules[0] if len(modules) == 1 else "(auto)")
    over = [n for n in RESOURCES if resources[n].used > resources[n].available]
    reason = (f"Yosys' counts exceed the device: {', '.join(over)}" if over else None)
    fmax = None
    estimate = True
    if nextpnr is not None and not over:
        tools["nextpnr"] = nextpnr.version
        log = entry / "nextpnr.log"
        args = [*device.nextpnr, "--json", "netlist.json", "--report", "report.json",
                "--timing-allow-fail", "--seed", str(seed), "-q", "-l", "nextpnr.log"]
        if target_mhz:
            args += ["--freq", f"{target_mhz:g}"]
        args += ["--router", router, "--threads", str(threads)]
        if pin:
            (entry / "clock.lpf").write_text(
                f'LOCATE COMP "{pin}" SITE "{device.clock_site}";\n'
                f'IOBUF PORT "{pin}" IO_TYPE=LVCMOS33;\n')
            # the other ports stay where nextpnr places them
            args += ["--lpf", "clock.lpf", "--lpf-allow-unconstrained"]
        t0 = time.perf_counter()
        try:
            run_tool(nextpnr, args, entry, log, timeout)
        except ToolError:
            reason = nextpnr_overflow(log)
            if reason is None:
                raise
        seconds["nextpnr"] = round(time.perf_counter() - t0, 2)
        if reason is None:
            report = json.loads((entry / "report.json").read_text())
            util = report["utilization"]
            resources = {n: Resource(device.labels[n], util[c]["used"], util[c]["available"])
                         for n, c in _NEXTPNR_CELLS.items()}
            achieved = [c["achieved"] for c in report.get("fmax", {}).values()]
            fmax = round(min(achieved), 2) if achieved else None
            estimate = False
        netlist.unlink(missing_ok=True)   # large, and rebuilt from the cache key's inputs
    fits = reason is None and all(r.used <= r.available for r in resources.values())
    result = SynthResult(device=device.name, part=device.part, top=top_name, fits=fits,
                         estimate=estimate, fmax_mhz=fmax,
                         target_mhz=target_mhz if place_route else None,
                         resources=resources, cells=cells, tools=tools, seconds=seconds,
                         log_dir=str(entry), reason=reason, params=params)
    atomic.write_text(result_path, json.dumps(result.as_dict(), indent=1))
    return result


def stat_resources(stat: dict[str, Any], device: Device
                   ) -> tuple[dict[str, int], dict[str, Resource]]:
    """The cell counts of Yosys' ``stat -json`` output and the resources they use on
    ``device``."""
    cells = {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items()}
    counts = count_resources(cells, device)
    return cells, {n: Resource(device.labels[n], counts[n], device.capacity[n])
                   for n in RESOURCES}


def resource_rows(resources: dict[str, Resource]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (resource, primitive, used, available, %) for printing."""
    rows = [[name, r.label, f"{r.used:g}", f"{r.available:,}", f"{r.percent:.1f}"]
            for name, r in resources.items()]
    return ["resource", "primitive", "used", "available", "%"], rows
