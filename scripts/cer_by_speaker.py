"""CER and WER per speaker from a manifest and an ``asr-eval`` errors file.

    python scripts/cer_by_speaker.py data/speechocean762/dev.jsonl \
        exp/speechocean762_lstm_pretrained/eval_dev/errors_greedy.txt \
        --spk2age ../shared/data/speechocean762/train/spk2age

The errors file lists only utterances with an error (id line, then REF/HYP lines); every other
utterance of the manifest was recognized exactly.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict

import jiwer

from asr.data.manifest import read_manifest


def hypotheses(errors_file: str) -> dict[str, str]:
    hyps, utt = {}, None
    for line in open(errors_file, encoding="utf-8"):
        if re.fullmatch(r"\S+", line.strip()) and not line.startswith(("REF:", "HYP:")):
            utt = line.strip()
        elif line.startswith("HYP:") and utt is not None:
            # jiwer pads with spaces and marks deletions with '*' runs
            hyps[utt] = " ".join(w for w in line[4:].split() if set(w) != {"*"})
            utt = None
    return hyps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("manifest")
    parser.add_argument("errors_file")
    parser.add_argument("--spk2age", help="Kaldi spk2age file: adds an age column")
    args = parser.parse_args()
    ages = {}
    if args.spk2age:
        ages = dict(line.split()[:2] for line in open(args.spk2age) if line.strip())
    hyps = hypotheses(args.errors_file)
    refs_of, hyps_of = defaultdict(list), defaultdict(list)
    for utt in read_manifest(args.manifest):
        refs_of[utt.speaker].append(utt.text)
        hyps_of[utt.speaker].append(hyps.get(utt.utt_id, utt.text))
    print("speaker\tage\tutterances\tCER %\tWER %")
    for spk in sorted(refs_of, key=lambda s: (int(ages.get(s, 0)), s)):
        cer = 100 * jiwer.cer(refs_of[spk], hyps_of[spk])
        wer = 100 * jiwer.wer(refs_of[spk], hyps_of[spk])
        print(f"{spk}\t{ages.get(spk, '-')}\t{len(refs_of[spk])}\t{cer:.1f}\t{wer:.1f}")
    refs = [r for s in refs_of for r in refs_of[s]]
    hyp = [h for s in refs_of for h in hyps_of[s]]
    cer, wer = 100 * jiwer.cer(refs, hyp), 100 * jiwer.wer(refs, hyp)
    print(f"all\t-\t{len(refs)}\t{cer:.1f}\t{wer:.1f}")  # equals asr-eval's figures


if __name__ == "__main__":
    main()
