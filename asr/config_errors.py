"""Config validation that names the key, the allowed values and the value found."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """An invalid configuration value, raised before any work starts."""


def check(ok: bool, key: str, allowed: str, value: Any) -> None:
    """Raise :class:`ConfigError` naming ``key`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}: expected {allowed}, got {value!r}")
