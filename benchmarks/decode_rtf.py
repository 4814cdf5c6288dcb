"""Decoding speed: real-time factor of model forward + greedy, and + beam search with an LM.

RTF = processing seconds / audio seconds, over the utterances of a manifest, with audio reading
and features included (what ``asr-eval`` reports). Targets (issue 4), for the LSTM preset of
the speechocean762 recipe on the 2-core development machine: greedy <= 0.02, beam width 32
with a 3-gram LM <= 0.10.

    .venv/bin/python benchmarks/decode_rtf.py [--model exp/speechocean762_lstm/model.ckpt]
        [--data data/speechocean762/dev.jsonl] [--lm exp/lm/speechocean762_3gram.arpa]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import asr.decode.beam as beam_module
from asr.cli.loading import load_model
from asr.data.manifest import read_manifest
from asr.decode.beam import BeamConfig
from asr.decode.recognizer import Recognizer, make_decoder
from asr.lm.kneser_ney import build_arpa
from asr.metrics import error_rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="exp/speechocean762_lstm/model.ckpt")
    parser.add_argument("--data", default="data/speechocean762/dev.jsonl")
    parser.add_argument("--lm", default="exp/lm/speechocean762_3gram.arpa",
                        help="ARPA LM; built from the --data manifest's sibling train.jsonl "
                             "transcripts when missing")
    parser.add_argument("--max-utterances", type=int, default=100)
    parser.add_argument("--beam-width", type=int, default=32)
    parser.add_argument("--python-lm", action="store_true",
                        help="score the LM with the pure-Python reader even if kenlm is installed")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.python_lm:
        beam_module._kenlm = lambda: None
    lm_backend = "kenlm" if beam_module._kenlm() is not None else "python"
    for path in (args.model, args.data):
        if not Path(path).is_file():
            print(f"decode_rtf: {path}: missing (run recipes/speechocean762/run.sh first)",
                  file=sys.stderr)
            return 2
    lm = Path(args.lm)
    if not lm.is_file():
        train = read_manifest(Path(args.data).with_name("train.jsonl"))
        lm.parent.mkdir(parents=True, exist_ok=True)
        build_arpa([u.text.split() for u in train], 3, lm)
    utts = read_manifest(args.data)[:args.max_utterances]
    recognizer = Recognizer(load_model(args.model), batch_size=16)
    decoders = {"greedy": make_decoder("greedy", recognizer.model),
                f"beam{args.beam_width}+3gram({lm_backend})": make_decoder(
                    "beam", recognizer.model, BeamConfig(beam_width=args.beam_width), str(lm))}
    audio = sum(u.duration for u in utts)
    print(f"model {args.model} ({sum(p.numel() for p in recognizer.model.model.parameters()):,}"
          f" params), {len(utts)} utterances, {audio:.1f} s of audio, "
          f"{torch.get_num_threads()} threads")
    refs = [u.text for u in utts]
    targets = {"greedy": 0.02}
    for name, decoder in decoders.items():
        list(recognizer.posteriors([u.audio_filepath for u in utts[:4]]))  # warm-up
        t0 = time.perf_counter()
        hyps = []
        for post in recognizer.posteriors([u.audio_filepath for u in utts]):
            hyps += [d.hypothesis.text for d in recognizer.decode(post, decoder)]
        rtf = (time.perf_counter() - t0) / audio
        target = targets.get(name, 0.10)
        rates = error_rates(refs, hyps)
        print(f"{name:>24}: RTF {rtf:.4f} (target <= {target}: {rtf / target:.2f} of it) "
              f"WER {100 * rates.wer:.1f}% CER {100 * rates.cer:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
