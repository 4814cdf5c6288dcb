"""The engine presets: the YAML files of the config tree's ``hw`` group. Kept free of torch, so
that ``asr-hw --help`` can list them without loading the engine."""

from __future__ import annotations

from asr import CONF_DIR

HW_CONF_DIR = CONF_DIR / "hw"      # shipped in the asr package (asr.CONF_DIR)


def preset_names() -> list[str]:
    return sorted(p.stem for p in HW_CONF_DIR.glob("*.yaml"))
