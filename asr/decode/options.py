"""Decoder options on the command line, shared by ``asr-decode``, ``asr-eval``, ``asr-lm tune``
and ``asr-hw``.

Light on purpose: the commands build their parsers from it, and ``--help`` should not wait
for torch or pyctcdecode (imported where a decoder is made)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from asr.config_errors import ConfigError

if TYPE_CHECKING:
    from asr.decode.beam import BeamConfig

DECODERS = ("greedy", "beam", "flashlight")


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (argparse names the flag and the value found)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0 (argparse names the flag and the value found)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def add_decoder_args(parser: argparse.ArgumentParser) -> None:
    """Model-running flags (``--batch-size``, ``--device``) and the beam search flags."""
    parser.add_argument("--batch-size", type=positive_int, default=16,
                        help="files per forward pass")
    parser.add_argument("--device", default="cpu", help="torch device of the forward pass")
    g = parser.add_argument_group("beam search")
    g.add_argument("--lm", help="word n-gram language model (ARPA, e.g. from asr-lm build)")
    g.add_argument("--words", help="closed vocabulary: a file with one word a line")
    g.add_argument("--lm-params", help="alpha/beta file written by asr-lm tune")
    g.add_argument("--beam-width", type=int, help="beams kept per frame (default 32)")
    g.add_argument("--alpha", type=float, help="LM weight (default 0.5, or --lm-params)")
    g.add_argument("--beta", type=float, help="word insertion bonus (default 1.0)")
    g.add_argument("--hotwords", nargs="+", default=None, help="words or phrases to favour")
    g.add_argument("--hotword-weight", type=float, help="bonus of a hotword (default 10)")
    g.add_argument("--token-min-logp", type=float,
                   help="tokens below this log posterior are not expanded (default -5)")
    g.add_argument("--beam-prune-logp", type=float,
                   help="drop beams this far below the best (default -10)")


def read_words(path: str | None) -> list[str] | None:
    """The closed vocabulary of ``--words``, normalized like training transcripts."""
    if path is None:
        return None
    from asr.text.normalize import normalize_text

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--words: {p}: no such file")
    words = sorted({w for line in p.read_text(encoding="utf-8").splitlines()
                    for w in normalize_text(line).split()})
    if not words:
        raise ConfigError(f"--words: {p} lists no words")
    return words


def beam_settings(args: argparse.Namespace) -> tuple[BeamConfig, str | None]:
    """The :class:`BeamConfig` of the flags (over a ``--lm-params`` file) and the LM path."""
    from asr.decode.beam import BeamConfig

    values: dict = {}
    lm = args.lm
    if args.lm_params:
        p = Path(args.lm_params)
        try:
            tuned = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"--lm-params: {p}: not a readable asr-lm tune file "
                              f"({err})") from None
        values.update({k: tuned[k] for k in ("alpha", "beta", "beam_width") if k in tuned})
        lm = lm or tuned.get("lm")
    names = {f.name for f in fields(BeamConfig)}
    for key, value in vars(args).items():
        if key in names and value is not None:
            values[key] = value
    return BeamConfig(**values), lm


def report_failures(prog: str, failures: list[tuple[str, str]]) -> int:
    """List the files that could not be decoded on stderr; the exit status (1 if any)."""
    if not failures:
        return 0
    print(f"{prog}: {len(failures)} file(s) not decoded:", file=sys.stderr)
    for path, reason in failures:
        print(f"  {path}: {reason}", file=sys.stderr)
    return 1
