"""``asr-eval``: WER/CER and real-time factor of one model under several decoders.

    asr-eval MODEL DATA [--ref REF] [--decoder greedy,beam] [--lm LM] [--words FILE]
             [--details] [--out DIR]

DATA is a JSON-lines manifest or any corpus folder the importers read (Kaldi, LibriSpeech,
FSDD, audio with .txt transcripts). With ``--ref``, the references come from REF instead: an
sclite transcript (``text (utt_id)`` lines; a ``.trn`` file, or any file whose every line
has that shape) or a Kaldi ``text`` file (``utt_id text`` lines), and DATA may also be a folder
of audio files, a glob or one file. Each audio file is matched to its reference by utterance
id: a manifest's or corpus's utt_id, else the file name without its extension.

The model runs once per batch and every decoder decodes the same posteriors. ``--details``
adds a table of WER, errors and words per speaker (when DATA names more than one speaker for
every utterance) or per utterance. Writes ``DIR/eval.json`` and ``DIR/errors_<decoder>.txt``
(reference, hypothesis and alignment of every utterance with an error); DIR defaults to
``<model folder>/eval_<data name>``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asr import atomic
from asr.config_errors import ConfigError
from asr.console import add_version, quiet_broken_pipe
from asr.decode.options import (
    DECODERS,
    add_decoder_args,
    beam_settings,
    read_words,
    report_failures,
)

if TYPE_CHECKING:
    from rich.table import Table

    from asr.data.manifest import Utterance
    from asr.decode.beam import BeamConfig
    from asr.decode.recognizer import Decoder, Recognizer

# Heavy modules (torch, jiwer, rich, the model code) are imported where they are used:
# --help and bad flags answer at once.

# sclite's transcript line: the words, then the utterance id in parentheses.
TRN_LINE = re.compile(r"^(?P<text>.*?)\s*\((?P<utt_id>[^()\s]+)\)\s*$")


def load_data(data: str) -> list[Utterance]:
    from asr.data.importers import import_corpus
    from asr.data.manifest import read_manifest

    path = Path(data)
    if path.is_file():
        return read_manifest(path)
    return import_corpus(path).utterances


def read_references(path: str | Path) -> tuple[dict[str, str], str]:
    """Reference transcripts by utterance id, and the format read (``trn`` or ``kaldi``).

    A ``.trn`` file, or one whose every non-empty line is ``text (utt_id)``, is read as sclite
    transcripts; anything else as a Kaldi ``text`` file (``utt_id text``)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"--ref: cannot read {path} ({err})") from None
    numbered = [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        raise ConfigError(f"--ref: {path} holds no references")
    trn = path.suffix.lower() == ".trn" or all(TRN_LINE.match(line) for _, line in numbered)
    refs: dict[str, str] = {}
    for n, line in numbered:
        if trn:
            match = TRN_LINE.match(line)
            if match is None:
                raise ConfigError(f"--ref: {path} line {n}: expected sclite's 'text (utt_id)', "
                                  f"got {line!r}")
            utt, text = match["utt_id"], match["text"]
        else:
            utt, *rest = line.split(maxsplit=1)
            text = rest[0] if rest else ""
        if utt in refs:
            raise ConfigError(f"--ref: {path} line {n}: utterance id {utt!r} appears twice")
        refs[utt] = " ".join(text.split())
    return refs, "trn" if trn else "kaldi"


def audio_of(data: str) -> list[Utterance]:
    """The utterances of DATA for ``--ref``: a manifest's or a corpus folder's (with their
    ids and speakers), else the audio files of a folder, a glob or a file (ids: file names
    without extension). Texts are left empty."""
    from asr.data.importers import CorpusFormatError, detect_format, import_corpus
    from asr.data.manifest import Utterance, read_manifest
    from asr.decode.inputs import AudioInput, base_id, expand_audio_inputs

    path = Path(data)
    utts: list[Utterance] | None = None
    if path.is_file() and path.suffix == ".jsonl":
        utts = read_manifest(path)
    elif path.is_dir():
        try:
            detect_format(path)
            utts = import_corpus(path).utterances
        except CorpusFormatError:
            pass   # a folder of audio files alone
    if utts is None:
        failures: list[tuple[str, str]] = []
        inputs = expand_audio_inputs([data], failures)
        if failures:
            raise ConfigError(f"DATA: {failures[0][0]}: {failures[0][1]}")
        utts = [Utterance(a.path, 0.0, "", utt_id=a.utt_id) for a in inputs]
    out = []
    seen: dict[str, str] = {}
    for u in utts:
        utt = base_id(AudioInput(u.audio_filepath, u.utt_id))
        if utt in seen:
            raise ConfigError(f"DATA: two files have the utterance id {utt!r} ({seen[utt]}, "
                              f"{u.audio_filepath}): --ref cannot tell their references apart")
        seen[utt] = u.audio_filepath
        out.append(Utterance(u.audio_filepath, u.duration, "", u.speaker, utt))
    return out


def with_references(utts: list[Utterance], ref: str) -> tuple[list[Utterance], str]:
    """``utts`` with their texts from ``--ref`` (every utterance must have one), and a note on
    the references that have no audio (empty when none)."""
    refs, fmt = read_references(ref)
    missing = [u.utt_id for u in utts if u.utt_id not in refs]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise ConfigError(f"--ref: {ref} ({fmt}) has no reference for {len(missing)} of the "
                          f"{len(utts)} utterance(s) of DATA: {shown} (an utterance's id is its "
                          "manifest or corpus utt_id, else its file name without extension)")
    for u in utts:
        u.text = refs[u.utt_id]
    unused = len(refs) - len({u.utt_id for u in utts})
    note = (f"asr-eval: {unused} of the {len(refs)} references in {ref} have no audio in DATA; "
            f"{len(utts)} utterance(s) scored") if unused else ""
    return utts, note


def write_errors(path: Path, refs: list[str], hyps: list[str], ids: list[str]) -> None:
    """Every utterance with an error: its id, then jiwer's alignment (REF/HYP/edit marks)."""
    import jiwer

    blocks = []
    for utt, ref, hyp in zip(ids, refs, hyps):
        if ref == hyp:
            continue
        out = jiwer.process_words(ref or "<empty>", hyp or "<empty>")
        alignment = jiwer.visualize_alignment(out, show_measures=False).strip().splitlines()
        blocks.append("\n".join([f"{utt}", *alignment[1:]]))
    atomic.write_text(path, "\n\n".join(blocks) + "\n")


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


def breakdown(keys: Sequence[str], refs: Sequence[str], hyps: dict[str, list[str]]
              ) -> list[dict[str, Any]]:
    """Per-group scores: for each distinct key (speaker or utterance, in first-seen order) its
    utterances, reference words and, per decoder, errors (substitutions + deletions +
    insertions) and WER."""
    from asr.metrics import error_rates

    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    rows = []
    for key, index in groups.items():
        row: dict[str, Any] = {"key": key, "utterances": len(index), "decoders": {}}
        for kind, h in hyps.items():
            rates = error_rates([refs[i] for i in index], [h[i] for i in index])
            row["words"] = rates.ref_words
            row["decoders"][kind] = {
                "errors": rates.substitutions + rates.deletions + rates.insertions,
                "wer": rates.wer}
        rows.append(row)
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version(parser)
    parser.add_argument("model", help="model.ckpt from asr-train (or a compressed model)")
    parser.add_argument("data", help="manifest (.jsonl) or corpus folder; with --ref also "
                                     "a folder of audio files, a glob or a file")
    parser.add_argument("--ref", metavar="REF",
                        help="references: sclite 'text (utt_id)' lines (.trn) or a Kaldi text "
                             "file, matched to DATA's audio by utterance id")
    parser.add_argument("--decoder", default="greedy,beam",
                        help="comma-separated decoders to compare (default greedy,beam)")
    parser.add_argument("--details", action="store_true",
                        help="also print WER, errors and words per speaker (or utterance)")
    parser.add_argument("--out", help="output folder (default <model folder>/eval_<data>)")
    add_decoder_args(parser)
    return parser


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from asr.cli.loading import load_model
    from asr.data.importers import CorpusFormatError
    from asr.data.manifest import ManifestError
    from asr.decode.recognizer import Recognizer, make_decoder
    from asr.train.checkpoint import CheckpointError

    kinds = [k.strip() for k in args.decoder.split(",") if k.strip()]
    note = ""
    try:
        bad = [k for k in kinds if k not in DECODERS]
        if bad or not kinds:
            raise ConfigError(f"--decoder: expected a list of {DECODERS}, got {args.decoder!r}")
        if args.ref:
            utterances, note = with_references(audio_of(args.data), args.ref)
        else:
            utterances = load_data(args.data)
        beam, lm = beam_settings(args)
        words = read_words(args.words)
        recognizer = Recognizer(load_model(args.model), args.batch_size, args.device)
        # greedy ignores --lm/--words; every other decoder gets them
        decoders = {k: make_decoder(k, recognizer.model, beam, *((lm, words) if k != "greedy"
                                                                  else (None, None)))
                    for k in kinds}
    except (ConfigError, CheckpointError, ManifestError, CorpusFormatError, ValueError,
            OSError) as err:
        print(f"asr-eval: error: {err}", file=sys.stderr)
        return 2
    if not utterances:
        print(f"asr-eval: error: {args.data}: no utterances", file=sys.stderr)
        return 2
    if note:
        print(note, file=sys.stderr)
    return evaluate(args, kinds, utterances, recognizer, decoders, beam, lm)


def evaluate(args: argparse.Namespace, kinds: list[str], utterances: list[Utterance],
             recognizer: Recognizer, decoders: dict[str, Decoder], beam: BeamConfig,
             lm: str | None) -> int:
    """Decode ``utterances`` once per batch with every decoder, score, print and write."""
    from rich.console import Console
    from rich.table import Table
    from tqdm import tqdm

    from asr.metrics import error_rates
    from asr.text.normalize import normalize_text

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
                    "references": str(args.ref) if args.ref else None,
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
    # piped into a file or a log, rich would assume 80 columns and squeeze the tables
    console = Console(width=None if sys.stdout.isatty() else 150)
    details = None
    if args.details and decoded:
        speakers = [texts[p].speaker for p in decoded]
        by = "speaker" if all(speakers) and len(set(speakers)) > 1 else "utterance"
        keys = speakers if by == "speaker" else ids
        rows = breakdown(keys, refs, {k: [hyps[k][p] for p in decoded] for k in kinds})
        report["details"] = {"by": by, "rows": rows}
        details = details_table(by, rows, kinds)
    sparsity = getattr(recognizer.model.model, "sparsity", None)
    sparsity_table = None
    if sparsity:   # a delta model: its measured temporal sparsity
        from asr.models.delta_lstm import temporal_sparsity

        report["temporal_sparsity"] = temporal_sparsity(sparsity)
        sparsity_table = temporal_sparsity_table(report["temporal_sparsity"])
    atomic.write_text(out / "eval.json", json.dumps(report, indent=2))
    console.print(table)
    if sparsity_table is not None:
        console.print(sparsity_table)
    if details is not None:
        console.print(details)
    print(f"written: {out}/eval.json, errors_<decoder>.txt")
    return report_failures("asr-eval", failures)


def temporal_sparsity_table(fractions: dict[str, dict[str, float]]) -> Table:
    """A delta model's zero deltas per layer and overall (columns a delta engine skips)."""
    from rich.table import Table

    table = Table(title="temporal sparsity (zero deltas)")
    for col in ("layer", "input dx %", "hidden dh %", "both %"):
        table.add_column(col, justify="right" if col != "layer" else "left")
    for layer, f in fractions.items():
        table.add_row(layer, f"{100 * f['dx']:.1f}", f"{100 * f['dh']:.1f}",
                      f"{100 * f['all']:.1f}")
    return table


def details_table(by: str, rows: list[dict[str, Any]], kinds: list[str]) -> Table:
    """The ``--details`` table: a row per speaker or utterance, WER and errors per decoder."""
    from rich.table import Table

    table = Table(title=f"per {by}")
    table.add_column(by)
    columns = (["utts"] if by == "speaker" else []) + ["words"]
    for kind in kinds:
        columns += [f"{kind} WER %", f"{kind} errors"]
    for col in columns:
        table.add_column(col, justify="right")
    for row in rows:
        cells = [row["key"]] + ([str(row["utterances"])] if by == "speaker" else [])
        cells.append(str(row["words"]))
        for kind in kinds:
            d = row["decoders"][kind]
            cells += [f"{100 * d['wer']:.2f}", str(d["errors"])]
        table.add_row(*cells)
    return table


if __name__ == "__main__":
    sys.exit(main())
