"""``asr-eval``: WER/CER and real-time factor of one model under several decoders.

    asr-eval MODEL DATA [--decoder greedy,beam] [--lm LM] [--words FILE] [--out DIR]

DATA is a JSON-lines manifest or any corpus folder the importers read (Kaldi, LibriSpeech,
FSDD, audio with .txt transcripts). The model runs once per batch and every decoder decodes
the same posteriors. Writes ``DIR/eval.json`` and ``DIR/errors_<decoder>.txt`` (reference,
hypothesis and alignment of every utterance with an error); DIR defaults to
``<model folder>/eval_<data name>``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jiwer
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from asr.cli.loading import load_model
from asr.config_errors import ConfigError
from asr.console import add_version, quiet_broken_pipe
from asr.data.importers import CorpusFormatError, import_corpus
from asr.data.manifest import ManifestError, Utterance, read_manifest
from asr.decode.options import add_decoder_args, beam_settings, read_words, report_failures
from asr.decode.recognizer import DECODERS, Recognizer, make_decoder
from asr.metrics import error_rates
from asr.text.normalize import normalize_text
from asr.train.checkpoint import CheckpointError


def load_data(data: str) -> list[Utterance]:
    path = Path(data)
    if path.is_file():
        return read_manifest(path)
    return import_corpus(path).utterances


def write_errors(path: Path, refs: list[str], hyps: list[str], ids: list[str]) -> None:
    """Every utterance with an error: its id, then jiwer's alignment (REF/HYP/edit marks)."""
    blocks = []
    for utt, ref, hyp in zip(ids, refs, hyps):
        if ref == hyp:
            continue
        out = jiwer.process_words(ref or "<empty>", hyp or "<empty>")
        alignment = jiwer.visualize_alignment(out, show_measures=False).strip().splitlines()
        blocks.append("\n".join([f"{utt}", *alignment[1:]]))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")


def read_error_hypotheses(path: Path | str) -> dict[str, str]:
    """The hypotheses of a :func:`write_errors` file by utterance id (utterances absent from
    the file were recognized exactly)."""
    hyps: dict[str, str] = {}
    utt = None
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("HYP:") and utt is not None:
            # the alignment pads with spaces and marks deletions with runs of '*'
            hyps[utt] = " ".join(w for w in line[4:].split() if set(w) != {"*"})
        elif line and not line[0].isspace() and not line.startswith("REF:"):
            utt = line.strip()  # an id line; edit-mark lines start with spaces
    return hyps


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version(parser)
    parser.add_argument("model", help="model.ckpt from asr-train (or a compressed model)")
    parser.add_argument("data", help="manifest (.jsonl) or corpus folder")
    parser.add_argument("--decoder", default="greedy,beam",
                        help="comma-separated decoders to compare (default greedy,beam)")
    parser.add_argument("--out", help="output folder (default <model folder>/eval_<data>)")
    add_decoder_args(parser)
    return parser


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    kinds = [k.strip() for k in args.decoder.split(",") if k.strip()]
    try:
        bad = [k for k in kinds if k not in DECODERS]
        if bad or not kinds:
            raise ConfigError(f"--decoder: expected a list of {DECODERS}, got {args.decoder!r}")
        beam, lm = beam_settings(args)
        words = read_words(args.words)
        recognizer = Recognizer(load_model(args.model), args.batch_size, args.device)
        # greedy ignores --lm/--words; every other decoder gets them
        decoders = {k: make_decoder(k, recognizer.model, beam, *((lm, words) if k != "greedy"
                                                                  else (None, None)))
                    for k in kinds}
        utterances = load_data(args.data)
    except (ConfigError, CheckpointError, ManifestError, CorpusFormatError, ValueError,
            OSError) as err:
        print(f"asr-eval: error: {err}", file=sys.stderr)
        return 2
    if not utterances:
        print(f"asr-eval: error: {args.data}: no utterances", file=sys.stderr)
        return 2
    texts = {u.audio_filepath: u for u in utterances}
    failures: list[tuple[str, str]] = []
    hyps: dict[str, dict[str, str]] = {k: {} for k in kinds}
    seconds = dict.fromkeys(kinds, 0.0)
    audio_seconds = 0.0
    paths = [u.audio_filepath for u in utterances]
    with tqdm(total=len(paths), unit="utt", file=sys.stderr, disable=len(paths) < 20) as bar:
        for post in recognizer.posteriors(paths, failures):
            audio_seconds += sum(post.durations)
            for kind, decoder in decoders.items():
                for d in recognizer.decode(post, decoder):
                    hyps[kind][d.path] = d.hypothesis.text
                    seconds[kind] += d.seconds
            bar.update(len(post.paths))

    decoded = [p for p in paths if p in hyps[kinds[0]]]
    # References are scored as the model spells: normalized like training transcripts, so a
    # manifest or Kaldi text with capitals, digits or punctuation is not counted as errors.
    refs = [normalize_text(texts[p].text) for p in decoded]
    changed = sum(r != texts[p].text for r, p in zip(refs, decoded))
    if changed:
        print(f"asr-eval: {changed} of {len(refs)} references normalized (case, digits, "
              "punctuation) before scoring", file=sys.stderr)
    ids = [texts[p].utt_id or p for p in decoded]
    model_dir = Path(args.model).resolve().parent
    out = Path(args.out) if args.out else model_dir / f"eval_{Path(args.data).stem}"
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"model": str(args.model), "data": str(args.data),
                    "utterances": len(decoded), "audio_seconds": round(audio_seconds, 3),
                    "failures": [{"path": p, "reason": r} for p, r in failures],
                    "beam": vars(beam) if set(kinds) - {"greedy"} else None, "lm": lm,
                    "words": args.words, "decoders": {}}
    table = Table(title=f"{Path(args.model).name} on {args.data} ({len(decoded)} utterances)")
    for col in ("decoder", "WER %", "CER %", "sub", "del", "ins", "RTF"):
        table.add_column(col, justify="right" if col != "decoder" else "left")
    for kind in kinds:
        h = [hyps[kind][p] for p in decoded]
        rates = error_rates(refs, h)
        rtf = seconds[kind] / max(audio_seconds, 1e-9)
        report["decoders"][kind] = {**vars(rates), "rtf": rtf}
        write_errors(out / f"errors_{kind}.txt", refs, h, ids)
        table.add_row(kind, f"{100 * rates.wer:.2f}", f"{100 * rates.cer:.2f}",
                      str(rates.substitutions), str(rates.deletions), str(rates.insertions),
                      f"{rtf:.4f}")
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    Console().print(table)
    print(f"written: {out}/eval.json, errors_<decoder>.txt")
    return report_failures("asr-eval", failures)


if __name__ == "__main__":
    sys.exit(main())
