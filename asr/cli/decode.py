"""``asr-decode``: transcribe audio files with a trained (or compressed) model.

    asr-decode MODEL AUDIO... [--decoder greedy|beam] [--lm LM] [--words FILE]
               [--output-format tsv|jsonl|kaldi|trn|ctm] [--output FILE]

AUDIO is files, folders (searched recursively), globs or a JSON-lines manifest. Prints
``path<TAB>text`` per file (``tsv``, the default), or:

  jsonl  one JSON object per file (text, word times, confidence; ``--json`` is the same)
  kaldi  ``utt_id text`` lines (a Kaldi text file)
  trn    ``text (utt_id)`` lines (sclite)
  ctm    ``utt_id 1 start duration word confidence``, a line per word (sclite), with word
         times from the CTC alignment

The utterance id is the manifest's utt_id for files listed in a manifest, else the file name
without its extension, with whitespace turned into ``_``; an id seen before gets ``-2``,
``-3``, ... (said on stderr). Files longer than ``--chunk-seconds`` are decoded in chunks of
that length, with bounded memory and the same transcript. Unreadable files are listed at
the end and make the exit status 1; the others are still decoded.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from asr.config_errors import ConfigError
from asr.console import add_version, quiet_broken_pipe
from asr.decode.formats import OUTPUT_FORMATS, format_hypothesis
from asr.decode.options import (
    DECODERS,
    add_decoder_args,
    beam_settings,
    non_negative_float,
    read_words,
    report_failures,
)

if TYPE_CHECKING:
    from asr.decode.inputs import AudioInput
    from asr.decode.recognizer import Decoder, Recognizer

# Heavy modules (torch, pyctcdecode, the model code) are imported in main(), after parsing:
# --help and bad flags answer at once.


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr-decode", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version(parser)
    parser.add_argument("model", help="model.ckpt from asr-train (or a compressed model)")
    parser.add_argument("audio", nargs="+", help="audio files, folders, globs or manifests")
    parser.add_argument("--decoder", choices=DECODERS, default="greedy")
    parser.add_argument("--output-format", choices=OUTPUT_FORMATS, default=None,
                        help="what is written per file (default tsv: path<TAB>text)")
    parser.add_argument("--json", action="store_true", help="the same as --output-format jsonl")
    parser.add_argument("--output", metavar="FILE", default=None,
                        help="write the output here (default: standard output)")
    parser.add_argument("--chunk-seconds", type=non_negative_float, default=60.0, metavar="S",
                        help="files longer than this are decoded in chunks of this length, "
                             "with bounded memory (default 60; 0 decodes every file whole)")
    add_decoder_args(parser)
    return parser


def output_format(args: argparse.Namespace) -> str:
    """``--output-format``, with ``--json`` as its ``jsonl`` alias."""
    if args.json and args.output_format not in (None, "jsonl"):
        raise ConfigError(f"--json: the same as --output-format jsonl, but --output-format is "
                          f"{args.output_format!r}; give one of them")
    return "jsonl" if args.json else (args.output_format or "tsv")


def check_output(path: str | None) -> None:
    """``--output``'s folder must exist and take a file: said before any decoding."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"--output: cannot write {path} (a folder)")
    if not target.parent.is_dir():
        raise ConfigError(f"--output: cannot write {path} (no folder {target.parent})")
    if not os.access(target.parent, os.W_OK):
        raise ConfigError(f"--output: cannot write {path} ({target.parent} is not writable)")


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from asr.cli.loading import load_model
    from asr.data.manifest import ManifestError
    from asr.decode.inputs import expand_audio_inputs, unique_ids
    from asr.decode.recognizer import Recognizer, make_decoder
    from asr.train.checkpoint import CheckpointError

    try:
        fmt = output_format(args)
        beam, lm = beam_settings(args)
        decoder_kind = "beam" if (lm or args.words) and args.decoder == "greedy" else args.decoder
        chunk = args.chunk_seconds or None
        recognizer = Recognizer(load_model(args.model), args.batch_size, args.device,
                                long_file_seconds=chunk, chunk_seconds=chunk or 60.0)
        decoder = make_decoder(decoder_kind, recognizer.model, beam, lm, read_words(args.words))
    except (ConfigError, CheckpointError, ValueError, OSError) as err:
        print(f"asr-decode: error: {err}", file=sys.stderr)
        return 2
    failures: list[tuple[str, str]] = []
    try:
        inputs = expand_audio_inputs(args.audio, failures)
    except ManifestError as err:
        print(f"asr-decode: error: {err}", file=sys.stderr)
        return 2
    if not inputs:
        failures = failures or [(" ".join(args.audio), "no audio files found")]
        return report_failures("asr-decode", failures)
    ids, renamed = unique_ids(inputs)
    if renamed:
        print(f"asr-decode: {renamed} utterance id(s) repeated an earlier one and were made "
              "unique with a -2, -3, ... suffix", file=sys.stderr)
    try:
        check_output(args.output)
    except ConfigError as err:
        print(f"asr-decode: error: {err}", file=sys.stderr)
        return 2
    if args.output is None:
        decode_to(sys.stdout, recognizer, decoder, inputs, ids, fmt, failures)
    else:
        # Lines go to a temporary file beside --output, which replaces it only once every
        # file is decoded: an interrupted run leaves the previous output whole.
        from asr import atomic

        try:
            with atomic.atomic_open(args.output) as out:
                decode_to(out, recognizer, decoder, inputs, ids, fmt, failures)
        except OSError as err:
            print(f"asr-decode: error: --output: cannot write {args.output} ({err})",
                  file=sys.stderr)
            return 1
    return report_failures("asr-decode", failures)


def decode_to(out: TextIO, recognizer: Recognizer, decoder: Decoder,
              inputs: list[AudioInput], ids: list[str], fmt: str,
              failures: list[tuple[str, str]]) -> None:
    """Decode ``inputs`` and write each file's lines to ``out`` as it is decoded."""
    from tqdm import tqdm

    paths = [a.path for a in inputs]
    # Results come in input order, less the unreadable files: walk the inputs alongside.
    next_input = 0
    with tqdm(total=len(paths), unit="file", disable=len(paths) < 20, file=sys.stderr) as bar:
        for post in recognizer.posteriors(paths, failures):
            for d in recognizer.decode(post, decoder):
                while paths[next_input] != d.path:
                    next_input += 1
                utt_id = ids[next_input]
                next_input += 1
                lines = format_hypothesis(fmt, d.path, utt_id, d.hypothesis, d.duration,
                                          d.seconds)
                if lines:
                    out.write("".join(line + "\n" for line in lines))
                    out.flush()
            bar.update(len(post.paths))
        bar.update(bar.total - bar.n)


if __name__ == "__main__":
    sys.exit(main())
