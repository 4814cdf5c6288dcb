"""The sources of a design to synthesize: its files, its top module and the folder its ``$readmemh``
images are read from; either a folder of generated RTL (``asr-hw rtl``) or files given by hand.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from asr.config_errors import ConfigError
from hw.rtl.tools import ToolError

# Simulation-only files that a folder of RTL may hold beside the design.
_TESTBENCH = ("tb.*", "tb_*", "*_tb.*", "*_tb_*", "testbench*", "harness*")


@dataclass(frozen=True)
class RtlSources:
    sources: tuple[Path, ...]
    top: str | None          # None: Yosys picks the module nobody instantiates
    include_dir: Path

    @classmethod
    def from_files(cls, sources: list[str], top: str | None,
                   include_dir: str | None = None) -> RtlSources:
        paths = tuple(Path(s) for s in sources)
        return cls(paths, top, Path(include_dir) if include_dir else paths[0].parent)

    @classmethod
    def from_folder(cls, folder: Path, top: str | None = None) -> RtlSources:
        """Every .sv/.v file in ``folder`` but testbenches; hex images are read from there."""
        files = sorted(p for p in folder.iterdir() if p.suffix in (".sv", ".v")
                       and not any(p.match(t) for t in _TESTBENCH))
        if not files:
            raise ConfigError(f"{folder}: no .sv or .v files to synthesize")
        return cls(tuple(files), top, folder)


def generator_available() -> bool:
    return importlib.util.find_spec("hw.rtl.generate") is not None


def generate_design(artifact: str, engine: str, overrides: list[str], out_dir: Path,
                    top: str | None = None) -> RtlSources:
    """Write the engine's RTL for ``artifact`` into ``out_dir`` with ``asr-hw rtl`` and return
    it as a design. Runs the command in a child process: its interface
    (``asr-hw rtl ARTIFACT OUT_DIR --engine E --set K=V``) is the contract relied on here."""
    if not generator_available():
        raise ToolError("the RTL generator (hw.rtl.generate, `asr-hw rtl`) is not in this "
                        "build; synthesize given files with --sources FILE.sv... --top NAME")
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "hw.cli", "rtl", artifact, str(out_dir), "--engine", engine]
    if overrides:
        cmd += ["--set", *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        last = lines[-1].removeprefix("asr-hw rtl: error: ") if lines else "(no output)"
        raise ToolError(f"asr-hw rtl failed (exit {proc.returncode}): {last}")
    return RtlSources.from_folder(out_dir, top)
