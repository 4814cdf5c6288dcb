"""The sources of a design to synthesize: its files, its top module and the folder its ``$readmemh``
images are read from; either a folder of generated RTL (``asr-hw rtl``) or files given by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from asr.config_errors import ConfigError
from hw.integer_model import EngineModel

# Simulation-only files that a folder of RTL may hold beside the design.
_TESTBENCH = ("tb.*", "tb_*", "*_tb.*", "*_tb_*", "testbench*", "harness*")


@dataclass(frozen=True)
class RtlSources:
    sources: tuple[Path, ...]
    top: str | None          # None: Yosys picks the module nobody instantiates
    include_dir: Path
    clock: str | None = None  # the top's clock input (placed on a clock pin), if known

    @classmethod
    def from_files(cls, sources: list[str], top: str | None,
                   include_dir: str | None = None, clock: str | None = None) -> RtlSources:
        paths = tuple(Path(s) for s in sources)
        return cls(paths, top, Path(include_dir) if include_dir else paths[0].parent, clock)

    @classmethod
    def from_folder(cls, folder: Path, top: str | None = None) -> RtlSources:
        """Every .sv/.v file in ``folder`` but testbenches; hex images are read from there."""
        files = sorted(p for p in folder.iterdir() if p.suffix in (".sv", ".v")
                       and not any(p.match(t) for t in _TESTBENCH))
        if not files:
            raise ConfigError(f"{folder}: no .sv or .v files to synthesize")
        return cls(tuple(files), top, folder)


def generate_design(model: EngineModel, out_dir: Path, top: str | None = None) -> RtlSources:
    """Write the RTL of ``model`` (an artifact compiled for its engine) into ``out_dir`` (what
    ``asr-hw rtl`` writes) and return it as a design; the testbench stays out of it."""
    from hw.rtl.generate import generate_rtl

    generate_rtl(model, out_dir)
    return replace(RtlSources.from_folder(out_dir, top), clock="clk")
