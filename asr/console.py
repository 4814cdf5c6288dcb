"""What every console command shares: ``--version``, and a quiet exit into a closed pipe.

Light on purpose (the standard library alone at import): the commands import it before
anything else, and ``--help``/``--version`` should not wait for torch.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

DIST = "asr-fpga"
# 128 + SIGPIPE: what a shell reports for a command whose reader went away (`| head`).
BROKEN_PIPE_STATUS = 141


def package_version() -> str:
    try:
        return version(DIST)
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def version_line(prog: str) -> str:
    """What ``--version`` prints: ``asr-decode (asr-fpga 0.1.0)``."""
    return f"{prog} ({DIST} {package_version()})"


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=version_line("%(prog)s"))


def invoked_as(prog: str) -> bool:
    """Whether this process is the console command ``prog`` (``sys.argv[0]``'s name, less a
    Windows ``.exe``): module-level early exits act only then, not on an import elsewhere."""
    return bool(sys.argv) and Path(sys.argv[0]).stem == prog


def exit_on_version(prog: str, argv: Sequence[str] | None = None) -> None:
    """``--version`` of a Hydra app (Hydra has none): print :func:`version_line` and exit 0."""
    argv = sys.argv[1:] if argv is None else argv
    if "--version" in argv:
        print(version_line(prog))
        raise SystemExit(0)


def hydra_early_exit(prog: str, config_dir: str | Path, config_name: str,
                     argv: Sequence[str] | None = None) -> None:
    """Answer a Hydra app's ``--version`` and ``--help`` (``-h``, ``--hydra-help``) before its
    module loads torch and Lightning: the help is Hydra's own, composed from the app's config
    alone, so a stand-in task function gives the same text. Exits when it answers; returns
    otherwise. ``argv`` (default ``sys.argv[1:]``) replaces ``sys.argv[1:]``, which Hydra
    reads."""
    if argv is not None:
        sys.argv = [prog, *argv]
    exit_on_version(prog)
    if not {"--help", "-h", "--hydra-help"} & set(sys.argv[1:]):
        return
    import hydra

    @hydra.main(config_path=str(config_dir), config_name=config_name, version_base="1.3")
    def _help_only(cfg: object) -> None:   # never runs: Hydra prints the help and exits
        raise AssertionError("hydra_early_exit ran a task")

    quiet_broken_pipe(_help_only)()   # `asr-train --help | head` stops quietly


def quiet_broken_pipe(main: Callable[..., int]) -> Callable[..., int]:
    """``main`` that stops quietly when its reader closes the pipe (``asr-decode ... | head``)
    instead of printing a traceback."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except BrokenPipeError:
            # Python flushes stdout again at exit: point it at devnull so that flush is silent.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return BROKEN_PIPE_STATUS

    return wrapped


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_library_noise() -> None:
    """Keep the commands' output to what they say themselves: Lightning's advertisement for
    its cloud logger and a deprecation inside Lightning's own pytree helper are not actionable
    for a user of these commands. Warnings about the user's own data and config still show."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_DropTips())
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropTips())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
