"""Atomic file writes: a file is either its old contents or its new ones, never a torn mix.

Each write goes to a temporary file in the target's own folder (so the final rename never
crosses a filesystem), is flushed and fsynced, then renamed over the target with
:func:`os.replace`, and the folder is fsynced so the rename itself survives a power cut. A
process killed mid-write leaves the previous file as it was (and a hidden
``.<name>.<pid>.*.tmp`` beside it, which no reader looks at and the next write removes).

    write_text(run_dir / "metrics.json", json.dumps(metrics))
    with replacing(path) as tmp:          # for writers that want a path (torch.save)
        torch.save(state, tmp)
    with atomic_open(path) as f:          # for writers that stream into a file object
        for line in lines:
            f.write(line)
    with replacing_dir(out_dir, "manifest.json") as tmp:   # a folder, replaced as one
        write_images(tmp)
"""

from __future__ import annotations

import glob
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be
    opened (not POSIX)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder; the rename still happened
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an error the file
    written there is fsynced and renamed over ``path``. On an error ``path`` is untouched and
    the temporary file removed. Creates ``path``'s folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL on a random name (not mkstemp, whose files are 0600): the file gets the mode a
    # plain open() would give it.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    _remove_stale_temps(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, another user's
        return True
    return True


def _remove_stale_temps(path: Path) -> None:
    """Remove the temporary files of ``path`` left by writers that were killed: a killed
    checkpoint write would otherwise leave its size on disk for good."""
    for leftover, kind in _dead_leftovers(path):
        if kind == "tmp" and leftover.is_file():
            leftover.unlink(missing_ok=True)


# what a writer of <name> leaves beside it: .<name>.<pid>.<8 hex>.tmp (a file, or the folder of
# replacing_dir) and replacing_dir's .<name>.<pid>.<8 hex>.old
_LEFTOVER = r"\.{name}\.(\d+)\.[0-9a-f]{{8}}\.(tmp|old)"


def _dead_leftovers(path: Path) -> Iterator[tuple[Path, str]]:
    """``(leftover, "tmp" or "old")`` of the writers of ``path`` that no longer run (their
    PID is in the name); matched by the exact name, so a sibling such as ``run.99999`` is
    not taken for one. Nothing where ``os.kill(pid, 0)`` is no liveness probe (not POSIX)."""
    if os.name != "posix":
        return
    pattern = re.compile(_LEFTOVER.format(name=re.escape(path.name)))
    for leftover in sorted(path.parent.glob(f".{glob.escape(path.name)}.*.*")):
        match = pattern.fullmatch(leftover.name)
        if match and int(match[1]) != os.getpid() and not _alive(int(match[1])):
            yield leftover, match[2]


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8"
                ) -> Iterator[IO[Any]]:
    """``open(path, mode)`` whose contents replace ``path`` only once the block completes.
    ``mode`` is ``"w"`` or ``"wb"``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', not {mode!r}")
    with replacing(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Atomically replace ``path`` with ``text``."""
    with atomic_open(path, "w", encoding) as f:
        f.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically replace ``path`` with ``data``."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


@contextmanager
def replacing_dir(path: str | Path, marker: str) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; when the block ends without an error
    the folder replaces ``path`` whole: a reader sees the old folder or the new one, never a
    mix of their files. On an error ``path`` is untouched and the temporary folder removed.

    Replacing deletes what the old folder held, so ``path`` must be new, empty, or hold
    ``marker`` (a file the block writes: a folder this writer made); anything else, and the
    working folder or one above it, is refused with a :class:`FileExistsError`.

    POSIX cannot swap two folders in one rename, so the old folder is first renamed aside to
    ``.<name>.<pid>.old``; a kill between the two renames leaves it there, and the next
    ``replacing_dir`` of ``path`` moves it back before it starts."""
    path = Path(path)
    _check_replaceable(path, marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    _recover_dir(path)
    stem = f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    tmp, old = path.parent / f"{stem}.tmp", path.parent / f"{stem}.old"
    tmp.mkdir()
    try:
        yield tmp
        for root, _, files in os.walk(tmp):
            for name in files:
                _fsync_file(Path(root) / name)
            fsync_dir(root)
        if path.exists():
            os.rename(path, old)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            os.rename(old, path)
        raise
    fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)


def _check_replaceable(path: Path, marker: str) -> None:
    here = Path.cwd().resolve()
    if path.resolve() == here or path.resolve() in here.parents:
        raise FileExistsError(f"{path}: the working folder or one above it cannot be an output "
                              "folder (it is replaced whole): give a new or empty folder")
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path}: is a file; the output must be a folder (new or empty)")
    if path.is_dir() and any(path.iterdir()) and not (path / marker).is_file():
        raise FileExistsError(
            f"{path}: holds files that this command did not write (no {marker}); it replaces "
            "its output folder whole, so give it a new or empty folder")


def _recover_dir(path: Path) -> None:
    """Undo what killed :func:`replacing_dir` calls of ``path`` left: put an old folder back
    where ``path`` is missing, and remove dead writers' temporary and old folders."""
    for leftover, kind in _dead_leftovers(path):
        if not leftover.is_dir():
            continue
        if kind == "old" and not path.exists():
            os.rename(leftover, path)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def copy_file(src: str | Path, dst: str | Path) -> Path:
    """Atomically replace ``dst`` with a copy of ``src``'s contents."""
    with replacing(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)
