"""CER and WER per speaker from a manifest and an ``asr-eval`` errors file.

    python scripts/cer_by_speaker.py data/speechocean762/dev.jsonl \
        exp/speechocean762_lstm_pretrained/eval_dev/errors_greedy.txt \
        --spk2age ../shared/data/speechocean762/train/spk2age
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from asr.cli.evaluate import read_error_hypotheses
from asr.data.manifest import read_manifest
from asr.metrics import error_rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("manifest")
    parser.add_argument("errors_file")
    parser.add_argument("--spk2age", help="Kaldi spk2age file: adds an age column")
    args = parser.parse_args()
    ages = {}
    if args.spk2age:
        ages = dict(line.split()[:2] for line in open(args.spk2age) if line.strip())
    hyps = read_error_hypotheses(args.errors_file)
    refs_of, hyps_of = defaultdict(list), defaultdict(list)
    for utt in read_manifest(args.manifest):
        refs_of[utt.speaker].append(utt.text)
        hyps_of[utt.speaker].append(hyps.get(utt.utt_id, utt.text))  # absent = exact
    rows = [(spk, ages.get(spk, "-"), refs_of[spk], hyps_of[spk])
            for spk in sorted(refs_of, key=lambda s: (int(ages.get(s, 0)), s))]
    rows.append(("all", "-", [r for _, _, refs, _ in rows for r in refs],
                 [h for _, _, _, hs in rows for h in hs]))  # equals asr-eval's figures
    print("speaker\tage\tutterances\tCER %\tWER %")
    for spk, age, refs, hs in rows:
        rates = error_rates(refs, hs)
        print(f"{spk}\t{age}\t{len(refs)}\t{100 * rates.cer:.1f}\t{100 * rates.wer:.1f}")


if __name__ == "__main__":
    main()
