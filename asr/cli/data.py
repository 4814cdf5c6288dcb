"""``asr-data``: make, import, split and describe corpora.

    asr-data synth [--text FILE] --out DIR [--num-utts N] [--seed S] [--snr DB] ...
    asr-data import SRC --out MANIFEST [--format kaldi|librispeech|fsdd|folder] [--segments-dir D]
    asr-data split MANIFEST --out-dir DIR [--dev 0.1] [--test 0.1] [--test-speakers a,b]
    asr-data split MANIFEST --out-dir DIR --test-where take=0-4 [--dev-where take=5-9]
    asr-data stats MANIFEST... [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from asr import atomic
from asr.config_errors import ConfigError
from asr.console import add_version, quiet_broken_pipe
from asr.data.manifest import ManifestError, read_manifest, write_manifest
from asr.data.split import parse_where, split_by_field, split_by_speaker
from asr.data.stats import corpus_stats

# asr.data.synth and asr.data.importers load torch (and tqdm is slow to import): they are
# imported by the subcommands that use them, so that --help answers at once.

# Tables stay readable when piped to a file or a log (rich assumes 80 columns there).
console = Console(width=None if sys.stdout.isatty() else 150)


def _pair(text: str) -> tuple[int, int]:
    low, _, high = text.partition(",")
    return int(low), int(high or low)


def cmd_synth(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from asr.data.synth import SynthConfig, synthesize_corpus

    cfg = SynthConfig(
        num_utts=args.num_utts, num_voices=args.num_voices, test_voices=args.test_voices,
        extra_train_voices=args.extra_train_voices,
        extra_test_utts=args.extra_test_utts,
        dev_voices=args.dev_voices, text_holdout=args.text_holdout, rate=args.rate,
        pitch=args.pitch, engines=args.engines.split(","), snr_db=args.snr,
        sample_rate=args.sample_rate, seed=args.seed, workers=args.workers,
    )
    start = time.time()
    result = synthesize_corpus(
        args.out, cfg, args.text,
        progress=lambda it, total: tqdm(it, total=total, desc="synthesizing", unit="utt"),
    )
    if result.remade:
        console.print(f"[yellow]{args.out}: made from other inputs before[/yellow] "
                      f"({'; '.join(result.changed) or 'files not in its plan'}): "
                      f"{result.remade} audio file(s) made from them were re-made or removed")
    counts = {k: len(v) for k, v in result.splits.items()}
    console.print(f"wrote {sum(counts.values())} utterances to {args.out} in "
                  f"{time.time() - start:.1f} s: {counts}; test voices: "
                  f"{', '.join(result.voices['test'])}")
    for utt_id, reason in result.failures:
        console.print(f"[red]failed[/red] {utt_id}: {reason}")
    return 1 if result.failures else 0


def cmd_import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from asr.data.importers import import_corpus

    segments_dir = args.segments_dir or args.out.with_name(args.out.stem + "_segments")
    result = import_corpus(
        args.src, args.format, args.min_duration,
        progress=lambda it: tqdm(it, desc=f"importing {args.src}", unit="file"),
        segments_dir=segments_dir,
    )
    for warning in result.warnings[:3]:
        console.print(f"[yellow]warning[/yellow] {escape(warning)}", soft_wrap=True)
    if len(result.warnings) > 3:
        console.print(f"[yellow]... and {len(result.warnings) - 3} more warnings[/yellow]")
    if not result.utterances:
        first = (f"; first skipped: {result.skipped[0][0]}: {result.skipped[0][1]}"
                 if result.skipped else "")
        print(f"asr-data import: error: {args.src}: no usable utterances "
              f"({len(result.skipped)} skipped{first}); {args.out} was not written",
              file=sys.stderr)
        return 1
    n = write_manifest(args.out, result.utterances)
    console.print(f"{args.src}: {result.format} corpus, {n} utterances, "
                  f"{result.hours:.3f} h -> {args.out}")
    if result.skipped:
        skipped_file = Path(str(args.out) + ".skipped.tsv")
        atomic.write_text(skipped_file, "".join(f"{p}\t{r}\n" for p, r in result.skipped))
        console.print(f"[yellow]skipped {len(result.skipped)}[/yellow] (listed in "
                      f"{skipped_file}); first: {result.skipped[0][0]}: {result.skipped[0][1]}")
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    utts = read_manifest(args.manifest)
    if args.test_where:
        field, test_values = parse_where(args.test_where)
        dev_field, dev_values = parse_where(args.dev_where) if args.dev_where else (field, [])
        if dev_field != field:
            raise ConfigError(f"--dev-where must name the same field as --test-where ({field})")
        splits = split_by_field(utts, field, test_values, dev_values)
    else:
        splits = split_by_speaker(
            utts, args.dev, args.test, args.seed,
            test_speakers=args.test_speakers.split(",") if args.test_speakers else None,
            dev_speakers=args.dev_speakers.split(",") if args.dev_speakers else None,
        )
    out = Path(args.out_dir)
    for name, part in splits.items():
        write_manifest(out / f"{name}.jsonl", part)
        speakers = len({u.speaker for u in part})
        console.print(f"{name}: {len(part)} utterances, {speakers} speakers -> "
                      f"{out / f'{name}.jsonl'}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from rich.table import Table

    rows = {str(m): corpus_stats(read_manifest(m)) for m in args.manifests}
    if args.json:
        print(json.dumps({k: v.to_dict() for k, v in rows.items()}, indent=2))
        return 0
    table = Table(title="corpus statistics")
    for col in ("manifest", "utts", "hours", "speakers", "words", "word types",
                "dur min/mean/max s", "characters"):
        table.add_column(col, justify="left" if col in ("manifest", "characters") else "right")
    for name, s in rows.items():
        table.add_row(name, str(s.utterances), f"{s.hours:.3f}", str(s.speakers), str(s.words),
                      str(s.word_types),
                      f"{s.duration_min:.2f}/{s.duration_mean:.2f}/{s.duration_max:.2f}",
                      "".join(s.characters).replace(" ", "␣"))
    console.print(table)
    return 0


def _synth_options(p: argparse.ArgumentParser) -> None:
    from asr.data.synth import ENGINES, SynthConfig

    p.add_argument("--text", type=Path, default=None,
                   help="sentences, one a line (default: the built-in text)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    d = SynthConfig()
    p.add_argument("--num-utts", type=int, default=d.num_utts)
    p.add_argument("--num-voices", type=int, default=d.num_voices)
    p.add_argument("--test-voices", type=int, default=d.test_voices,
                   help="voices held out for the test split")
    p.add_argument("--dev-voices", type=int, default=d.dev_voices)
    p.add_argument("--extra-train-voices", type=int, default=d.extra_train_voices,
                   help="more voices for training only; the held-out voices stay the same")
    p.add_argument("--extra-test-utts", type=int, default=d.extra_test_utts,
                   help="more utterances of the test voices, after the --num-utts: a larger "
                        "test set; the other splits stay the same")
    p.add_argument("--text-holdout", type=float, default=d.text_holdout,
                   help="fraction of sentences spoken only in the test split")
    p.add_argument("--rate", type=_pair, default=d.rate, help="words/minute range, e.g. 130,200")
    p.add_argument("--pitch", type=_pair, default=d.pitch, help="pitch range 0-99, e.g. 25,75")
    p.add_argument("--engines", default=",".join(d.engines),
                   help=f"comma-separated, from {sorted(ENGINES)}")
    p.add_argument("--snr", type=float, default=None, help="add white noise at this SNR (dB)")
    p.add_argument("--sample-rate", type=int, default=d.sample_rate)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--workers", type=int, default=0, help="0 = every core")


def _import_options(p: argparse.ArgumentParser) -> None:
    from asr.data.importers import LAYOUTS

    p.add_argument("src", type=Path)
    p.add_argument("--out", type=Path, required=True, help="manifest to write (.jsonl)")
    p.add_argument("--format", choices=sorted(LAYOUTS), default=None,
                   help="corpus layout (default: detected)")
    p.add_argument("--min-duration", type=float, default=0.05)
    p.add_argument("--segments-dir", type=Path, default=None,
                   help="where a Kaldi dir's segments are cut to, one WAV each "
                        "(default: MANIFEST's name with _segments, beside it)")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``command``: the subcommand about to run, when known. The options of
    ``synth`` and ``import`` (their defaults and choices come from modules that load torch)
    are added only when that subcommand runs, or when ``command`` is None (every option)."""
    parser = argparse.ArgumentParser(prog="asr-data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="synthesize a speech corpus with TTS voices")
    p.set_defaults(func=cmd_synth)
    if command in (None, "synth"):
        _synth_options(p)

    p = sub.add_parser("import", help="import a corpus folder into a manifest")
    p.set_defaults(func=cmd_import)
    if command in (None, "import"):
        _import_options(p)

    p = sub.add_parser("split", help="speaker-disjoint train/dev/test split of a manifest")
    p.add_argument("manifest", type=Path)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--dev", type=float, default=0.1, help="dev fraction of utterances")
    p.add_argument("--test", type=float, default=0.1, help="test fraction of utterances")
    p.add_argument("--test-speakers", default=None, help="comma-separated speakers for test")
    p.add_argument("--dev-speakers", default=None, help="comma-separated speakers for dev")
    p.add_argument("--test-where", default=None, metavar="FIELD=VALUES",
                   help="split by a field instead of by speaker, e.g. take=0-4 (FSDD)")
    p.add_argument("--dev-where", default=None, metavar="FIELD=VALUES")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("stats", help="hours, utterances, speakers, vocabulary, durations")
    p.add_argument("manifests", type=Path, nargs="+")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_stats)
    return parser


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # "" (no subcommand yet: --help, --version) builds neither synth's nor import's options
    command = next((a for a in argv if not a.startswith("-")), "")
    args = build_parser(command).parse_args(argv)
    from asr.data.importers import CorpusFormatError
    from asr.data.synth import SynthError

    try:
        return args.func(args)
    except (ConfigError, CorpusFormatError, ManifestError, SynthError) as err:
        print(f"asr-data {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
