"""What every console command shares: ``--version``, and a quiet exit into a closed pipe."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import warnings
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

DIST = "asr-fpga"
# 128 + SIGPIPE: what a shell reports for a command whose reader went away (`| head`).
BROKEN_PIPE_STATUS = 141


def package_version() -> str:
    try:
        return version(DIST)
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s ({DIST} {package_version()})")


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
