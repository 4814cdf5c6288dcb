"""``asr-lm``: word n-gram language models for beam search.

    asr-lm build TEXT... --order N --out LM.arpa
    asr-lm tune MODEL DATA --lm LM.arpa [--grid 5 | --random 20] --out PARAMS.json

``build`` estimates a modified Kneser-Ney model from text files (one sentence a line) or
manifests (their transcripts), normalized exactly as training transcripts are. ``tune`` searches
alpha/beta on a dev set and writes a file that ``asr-decode``/``asr-eval --lm-params`` read.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from asr import atomic
from asr.config_errors import ConfigError
from asr.console import add_version, quiet_broken_pipe
from asr.data.manifest import ManifestError, read_manifest
from asr.decode.options import add_decoder_args, beam_settings, read_words
from asr.lm.arpa import ArpaError
from asr.lm.kneser_ney import build_arpa

# The model, decoder and scoring code (torch, pyctcdecode, jiwer) is imported where it is
# used: --help and `asr-lm build` do not wait for it.


def read_sentences(sources: list[str]) -> list[list[str]]:
    """Normalized word lists of text files (a sentence a line) and manifests (.jsonl)."""
    from asr.text.normalize import normalize_text

    sentences = []
    for source in sources:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"TEXT: {path}: no such file")
        if path.suffix == ".jsonl":
            lines = [u.text for u in read_manifest(path)]
        else:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        sentences += [words for line in lines if (words := normalize_text(line).split())]
    return sentences


def cmd_build(args: argparse.Namespace) -> int:
    if args.order < 2:
        raise ConfigError(f"--order: KenLM needs bigrams, so >= 2, got {args.order}")
    sentences = read_sentences(args.text)
    if not sentences:
        raise ConfigError(f"TEXT: {args.text} hold no words")
    t0 = time.perf_counter()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    model = build_arpa(sentences, args.order, args.out)
    sizes = ", ".join(f"{n}-grams {len(model.probs[n]):,}" for n in range(1, args.order + 1))
    print(f"{args.out}: order {args.order} modified Kneser-Ney from {len(sentences):,} "
          f"sentences ({sum(map(len, sentences)):,} words); {sizes}; "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


def _grid(args: argparse.Namespace) -> list[tuple[float, float]]:
    import numpy as np

    (a0, a1), (b0, b1) = args.alpha_range, args.beta_range
    if args.random:
        rng = random.Random(args.seed)
        return [(rng.uniform(a0, a1), rng.uniform(b0, b1)) for _ in range(args.random)]
    return [(float(a), float(b)) for a in np.linspace(a0, a1, args.grid)
            for b in np.linspace(b0, b1, args.grid)]


def cmd_tune(args: argparse.Namespace) -> int:
    from asr.cli.evaluate import load_data
    from asr.cli.loading import load_model
    from asr.decode.beam import BeamSearchDecoder
    from asr.decode.recognizer import Recognizer
    from asr.metrics import error_rates

    beam, lm = beam_settings(args)
    if lm is None:
        raise ConfigError("--lm: tune needs a language model")
    recognizer = Recognizer(load_model(args.model), args.batch_size, args.device)
    decoder = BeamSearchDecoder(recognizer.model.vocab, beam, lm, read_words(args.words),
                                recognizer.model.features.frame_shift)
    utterances = load_data(args.data)
    if args.max_utterances:
        utterances = utterances[:args.max_utterances]
    refs = {u.audio_filepath: u.text for u in utterances}
    # The acoustic model runs once; every (alpha, beta) decodes the same posteriors.
    batches = list(recognizer.posteriors(list(refs), failures=[]))
    results = []
    for alpha, beta in _grid(args):
        decoder.decoder.reset_params(alpha=alpha, beta=beta)
        hyps, ref_texts = [], []
        for post in batches:
            hyps += [h.text for h in decoder.decode(post.logits, post.lengths)]
            ref_texts += [refs[p] for p in post.paths]
        rates = error_rates(ref_texts, hyps)
        results.append({"alpha": alpha, "beta": beta, "wer": rates.wer, "cer": rates.cer})
        print(f"alpha {alpha:6.3f} beta {beta:6.3f}: WER {100 * rates.wer:6.2f}%  "
              f"CER {100 * rates.cer:6.2f}%", flush=True)
    best = min(results, key=lambda r: (r["wer"], r["cer"]))
    out = {"lm": str(lm), "alpha": best["alpha"], "beta": best["beta"],
           "beam_width": beam.beam_width, "dev_wer": best["wer"], "dev_cer": best["cer"],
           "data": str(args.data), "model": str(args.model), "search": results}
    atomic.write_text(args.out, json.dumps(out, indent=2))
    print(f"best: alpha {best['alpha']:.3f} beta {best['beta']:.3f} WER "
          f"{100 * best['wer']:.2f}% -> {args.out}")
    return 0


def _range(text: str) -> tuple[float, float]:
    lo, hi = (float(x) for x in text.split(","))
    return lo, hi


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr-lm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="estimate a modified Kneser-Ney ARPA model")
    b.add_argument("text", nargs="+", help="text files (a sentence a line) or manifests")
    b.add_argument("--order", type=int, default=3)
    b.add_argument("--out", required=True, help="output .arpa file")
    b.set_defaults(func=cmd_build)
    t = sub.add_parser("tune", help="search alpha/beta on a dev set")
    t.add_argument("model")
    t.add_argument("data", help="dev manifest or corpus folder")
    t.add_argument("--out", required=True, help="output JSON (for --lm-params)")
    t.add_argument("--alpha-range", type=_range, default=(0.0, 2.0), metavar="LO,HI")
    t.add_argument("--beta-range", type=_range, default=(-1.0, 3.0), metavar="LO,HI")
    t.add_argument("--grid", type=int, default=5, help="points per axis of the grid")
    t.add_argument("--random", type=int, default=0, help="random points instead of a grid")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--max-utterances", type=int, default=0, help="0 = all")
    add_decoder_args(t)
    t.set_defaults(func=cmd_tune)
    return parser


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # CheckpointError and CorpusFormatError are ValueErrors too; their modules load torch
    try:
        return args.func(args)
    except (ConfigError, ManifestError, ArpaError, ValueError, OSError) as err:
        print(f"asr-lm: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
