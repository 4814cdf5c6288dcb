"""One run at a time per output folder: an exclusive ``flock`` held for the whole run.

Two runs writing the same run folder (or the same ``.model``) would interleave checkpoints,
logs and metrics. The first takes an exclusive lock on a lock file and writes its PID, start
time and command into it; a second stops at once, naming the holder. The kernel releases the
lock when its process ends however it ends, so a lock file left behind by a killed run does
not block the next one.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from asr.config_errors import ConfigError

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)


class FolderInUseError(ConfigError):
    """Another live process holds the lock of the folder this run would write."""


def _holder(fd: int) -> dict:
    """What the lock's holder wrote into the lock file (empty if it has not written yet)."""
    try:
        return json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    if "pid" not in holder:
        return "another process"
    where = "" if holder.get("host") in (None, socket.gethostname()) else f" on {holder['host']}"
    started = f"started {holder['started']}" if holder.get("started") else ""
    command = holder.get("command")
    details = ", ".join(x for x in (started, command and f"`{command}`") if x)
    return f"PID {holder['pid']}{where}" + (f" ({details})" if details else "")


def _acquire(path: Path, label: str, hint: str) -> int | None:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise FolderInUseError(f"{label} is in use by {_describe(holder)}; wait for it or "
                                   f"{hint} (lock file {path})") from None
        except OSError as err:  # a filesystem without locks (some network mounts)
            os.close(fd)
            log.warning("%s: cannot lock %s (%s); not guarded against a concurrent run",
                        label, path, err)
            return None
        # The previous holder removes the file when it finishes; if it did so between our
        # open and our flock, we hold a lock on a file nobody else will open: start again.
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextmanager
def run_lock(lock_file: str | Path, label: str, hint: str, enabled: bool = True
             ) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` for the block (its folder is created).

    Raises :class:`FolderInUseError` ("<label> is in use by PID ...; wait for it or <hint>")
    at once when a live process holds it. ``enabled=False`` (DDP ranks other than 0, which run
    inside rank 0's lock) does nothing.
    """
    if not enabled or fcntl is None:
        yield
        return
    path = Path(lock_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path, label, hint)
    if fd is None:
        yield
        return
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        yield
    finally:
        # Unlinked while still locked, so no other process can be holding this inode.
        path.unlink(missing_ok=True)
        os.close(fd)
