"""``asr-decode``: transcribe audio files with a trained (or compressed) model.

    asr-decode MODEL AUDIO... [--decoder greedy|beam] [--lm LM] [--words FILE] [--json]

AUDIO is files, folders (searched recursively), globs or a JSON-lines manifest. Prints
``path<TAB>text`` per file, or with ``--json`` one object per file. Unreadable files are
listed at the end and make the exit status 1; the others are still decoded.
"""

from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm

from asr.cli.loading import load_model
from asr.config_errors import ConfigError
from asr.console import add_version, quiet_broken_pipe
from asr.data.manifest import ManifestError
from asr.decode.inputs import expand_inputs
from asr.decode.options import add_decoder_args, beam_settings, read_words, report_failures
from asr.decode.recognizer import DECODERS, Recognizer, make_decoder
from asr.train.checkpoint import CheckpointError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr-decode", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version(parser)
    parser.add_argument("model", help="model.ckpt from asr-train (or a compressed model)")
    parser.add_argument("audio", nargs="+", help="audio files, folders, globs or manifests")
    parser.add_argument("--decoder", choices=DECODERS, default="greedy")
    parser.add_argument("--json", action="store_true", help="one JSON object per file")
    add_decoder_args(parser)
    return parser


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        beam, lm = beam_settings(args)
        decoder_kind = "beam" if (lm or args.words) and args.decoder == "greedy" else args.decoder
        recognizer = Recognizer(load_model(args.model), args.batch_size, args.device)
        decoder = make_decoder(decoder_kind, recognizer.model, beam, lm, read_words(args.words))
    except (ConfigError, CheckpointError, ValueError, OSError) as err:
        print(f"asr-decode: error: {err}", file=sys.stderr)
        return 2
    failures: list[tuple[str, str]] = []
    try:
        paths = expand_inputs(args.audio, failures)
    except ManifestError as err:
        print(f"asr-decode: error: {err}", file=sys.stderr)
        return 2
    if not paths:
        failures = failures or [(" ".join(args.audio), "no audio files found")]
        return report_failures("asr-decode", failures)
    bar = tqdm(total=len(paths), unit="file", disable=len(paths) < 20, file=sys.stderr)
    for post in recognizer.posteriors(paths, failures):
        for d in recognizer.decode(post, decoder):
            if args.json:
                record = {"path": d.path, **d.hypothesis.to_dict(),
                          "duration": round(d.duration, 3),
                          "decode_seconds": round(d.seconds, 4)}
                print(json.dumps(record), flush=True)
            else:
                print(f"{d.path}\t{d.hypothesis.text}", flush=True)
        bar.update(len(post.paths))
    bar.update(bar.total - bar.n)
    bar.close()
    return report_failures("asr-decode", failures)


if __name__ == "__main__":
    sys.exit(main())
