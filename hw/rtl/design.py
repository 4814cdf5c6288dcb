"""The sources of a design to synthesize: its files, its top module and the folder its ``$readmemh``
images are read from; either a folder of generated RTL (``asr-hw rtl``) or files given by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asr.config_errors import ConfigError

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


def generate_design(artifact: str, engine: str, overrides: list[str], out_dir: Path,
                    top: str | None = None) -> RtlSources:
    """Write the engine's RTL for ``artifact`` into ``out_dir`` (what ``asr-hw rtl`` writes)
    and return it as a design; the testbench stays out of it."""
    from asr.compress.artifact import read_artifact
    from hw.config import load_engine
    from hw.rtl.generate import write_rtl

    out_dir.mkdir(parents=True, exist_ok=True)
    write_rtl(read_artifact(artifact), load_engine(engine, overrides), out_dir)
    return RtlSources.from_folder(out_dir, top)
