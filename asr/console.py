"""What every console command shares: ``--version``, and a quiet exit into a closed pipe."""

from __future__ import annotations

import argparse
import functools
import os
import sys
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
