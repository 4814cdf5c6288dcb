"""Writing the report's files only when their content changes, so that a rerun over the same
points leaves report.md/.html/.json and the figures as they are (contents and times)."""

from __future__ import annotations

import re
from pathlib import Path

from asr import atomic

# The one line of report.md/.html that changes on every run; two reports that differ only there
# are the same report.
GENERATED = re.compile(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d ")


def write_if_changed(path: Path, data: bytes | str, ignore: re.Pattern | None = None) -> bool:
    """Write ``data`` to ``path`` unless the file holds it already (text where the ``ignore``
    pattern's matches are equal after blanking them); returns whether it wrote."""
    raw = data.encode() if isinstance(data, str) else data
    if path.is_file():
        old = path.read_bytes()
        if old == raw:
            return False
        if ignore is not None and isinstance(data, str):
            def blank(b: bytes) -> str:
                return ignore.sub("", b.decode(errors="replace"))
            if blank(old) == blank(raw):
                return False
    atomic.write_bytes(path, raw)
    return True
