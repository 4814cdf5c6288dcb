"""Bad or unlucky inputs, as a new user would try them: each gets a clear message that names
what is wrong and a non-zero exit, and nothing already done is lost.

Each row of ``CASES`` is one input: the command, how to build its arguments in a scratch
folder, the exit code expected and a fragment of the message expected on stderr (or in the
raised error, for the Hydra apps that are called as functions).

``ISSUE_CASES`` lists every bad or unlucky input of the "trust" issue, one row each, with the
tests that hold it (here or in other files); a test checks that each of those tests exists in
the default run, so the table cannot point at a test that was renamed, deleted or made slow.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import COLLECTED, REPO, compose_train, tiny_overrides, tone, write

from asr.cli.data import main as data_main
from asr.cli.decode import main as decode_main
from asr.cli.evaluate import main as eval_main
from asr.config_errors import ConfigError
from hw.cli import main as hw_main

BIN = Path(sys.executable).parent


def _truncated_wav(folder: Path) -> Path:
    full = write(folder / "full.wav", tone(1.0, 16000), 16000, "PCM_16")
    cut = folder / "cut.wav"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    return cut


def _inf_wav(folder: Path) -> Path:
    wav = tone(1.0, 16000)
    wav[100] = np.inf
    return write(folder / "inf.wav", wav, 16000, "FLOAT")


def _nan_corpus(folder: Path) -> Path:
    wav = tone(1.0, 16000).astype(np.float32)
    wav[100] = np.nan
    src = folder / "corpus"
    src.mkdir()
    sf.write(src / "u1.wav", wav, 16000, subtype="FLOAT")
    (src / "wav.scp").write_text("u1 u1.wav\n")
    (src / "text").write_text("u1 one\n")
    return src


def _truncated_corpus(folder: Path) -> Path:
    src = folder / "corpus"
    src.mkdir()
    shutil.move(_truncated_wav(folder), src / "u1.wav")
    (src / "wav.scp").write_text("u1 u1.wav\n")
    (src / "text").write_text("u1 one\n")
    return src


def _segments_corpus(folder: Path, segments: str) -> Path:
    """A Kaldi dir of one 1 s recording, ``rec1``, and the ``segments`` file given."""
    src = folder / "segmented"
    write(src / "rec1.wav", tone(1.0, 16000), 16000, "PCM_16")
    (src / "wav.scp").write_text("rec1 rec1.wav\n")
    (src / "text").write_text("u1 one\nu2 two\n")
    (src / "segments").write_text(segments)
    return src


def _segments_case(name: str, segments: str, message: str) -> Case:
    return Case(f"data import: segments with {name}", data_main,
                lambda d, m, c: ["import", str(_segments_corpus(d, segments)),
                                 "--out", str(d / "m.jsonl")], 2, message)


@dataclass
class Case:
    name: str
    main: Callable[[list[str]], int]
    args: Callable[[Path, Path, Path], list[str]]   # (scratch folder, model, corpus) -> argv
    code: int
    message: str


CASES = [
    Case("decode: --batch-size below 1", decode_main,
         lambda d, m, c: [str(m), str(c / "audio" / "u1_0.wav"), "--batch-size", "-1"],
         2, "--batch-size: expected an integer >= 1, got -1"),
    Case("decode: --batch-size not a number", decode_main,
         lambda d, m, c: [str(m), str(c / "audio" / "u1_0.wav"), "--batch-size", "many"],
         2, "--batch-size: expected an integer >= 1, got 'many'"),
    Case("decode: an empty folder", decode_main,
         lambda d, m, c: [str(m), str(d)], 1, "no audio files found"),
    Case("decode: a truncated WAV", decode_main,
         lambda d, m, c: [str(m), str(_truncated_wav(d))], 1,
         "cut.wav: truncated WAV: the header declares 32000 bytes of samples"),
    Case("decode: a WAV with an inf sample", decode_main,
         lambda d, m, c: [str(m), str(_inf_wav(d))], 1,
         "inf.wav: non-finite samples (NaN or inf)"),
    Case("eval: --batch-size 0", eval_main,
         lambda d, m, c: [str(m), str(c / "dev.jsonl"), "--batch-size", "0"],
         2, "--batch-size: expected an integer >= 1, got 0"),
    Case("hw run: --batch-size -3", hw_main,
         lambda d, m, c: ["run", str(m), str(c / "audio" / "u1_0.wav"), "--batch-size", "-3"],
         2, "--batch-size: expected an integer >= 1, got -3"),
    Case("hw: a typo in a --set key", hw_main,
         lambda d, m, c: ["timing", str(d / "x.model"), "--set", "clok_mhz=250"],
         2, "--set: unknown engine key 'clok_mhz'; did you mean clock_mhz?"),
    Case("hw: a --set without a value", hw_main,
         lambda d, m, c: ["timing", str(d / "x.model"), "--set", "num_pes"],
         2, "--set: expected KEY=VALUE (e.g. clock_mhz=250), got 'num_pes'"),
    Case("hw: a --set value of the wrong type", hw_main,
         lambda d, m, c: ["timing", str(d / "x.model"), "--set", "num_pes=abc"],
         2, "hw.num_pes: expected an integer, got 'abc'"),
    Case("hw: a --set boolean that is not one", hw_main,
         lambda d, m, c: ["timing", str(d / "x.model"), "--set", "saturate=maybe"],
         2, "hw.saturate: expected true or false, got 'maybe'"),
    Case("data import: a corpus whose only file has NaN samples", data_main,
         lambda d, m, c: ["import", str(_nan_corpus(d)), "--out", str(d / "m.jsonl")],
         1, "no usable utterances (1 skipped; first skipped: "),
    Case("data import: a corpus whose only file is a truncated WAV", data_main,
         lambda d, m, c: ["import", str(_truncated_corpus(d)), "--out", str(d / "m.jsonl")],
         1, "u1.wav: truncated WAV: the header declares 32000 bytes of samples"),
    _segments_case("an unknown recording id", "u1 rec9 0 0.5\n",
                   "segments:1: utterance 'u1': recording 'rec9' is not a key of "),
    _segments_case("start >= end", "u1 rec1 0.6 0.4\n",
                   "segments:1: utterance 'u1': start 0.6 s is not before end 0.4 s"),
    _segments_case("a start past the recording and end -1", "u1 rec1 1.5 -1\n",
                   "segments:1: utterance 'u1': start 1.5 s is not before the end of "
                   "recording 'rec1' (1 s)"),
    _segments_case("an end beyond the recording", "u1 rec1 0 0.5\nu2 rec1 0.5 1.02\n",
                   "segments:2: utterance 'u2': end 1.02 s is beyond the 1 s of recording "
                   "'rec1' ("),
    _segments_case("a time that is not a number", "u1 rec1 0 0.5s\n",
                   "segments:1: utterance 'u1': expected start >= 0 and end in seconds (end "
                   "-1: to the end of the recording), got '0' '0.5s'"),
    _segments_case("a duplicate utterance id", "u1 rec1 0 0.5\nu1 rec1 0.5 1\n",
                   "segments:2: utterance 'u1' is defined twice (first on line 1)"),
    _segments_case("a line of three fields", "u1 rec1 0.5\n",
                   "segments:1: expected '<utt-id> <recording-id> <start-seconds> "
                   "<end-seconds>', got 'u1 rec1 0.5'"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_a_clear_error(case, tone_model, tone_manifests, tmp_path, capsys):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    argv = case.args(scratch, tone_model, tone_manifests)
    try:
        code = case.main(argv)
    except SystemExit as exit_:     # argparse's own errors
        code = exit_.code
    captured = capsys.readouterr()
    assert code == case.code, captured.err
    assert case.message in captured.err


def test_import_of_nothing_writes_no_manifest(tmp_path, capsys):
    src = _nan_corpus(tmp_path)
    assert data_main(["import", str(src), "--out", str(tmp_path / "m.jsonl")]) == 1
    err = capsys.readouterr().err
    assert "non-finite samples" in err and not (tmp_path / "m.jsonl").exists()


@pytest.mark.parametrize("override,message", [
    ("optim.optimizer.lr=abc", "optim.optimizer.lr: expected a number, got 'abc'"),
    ("optim.optimizer.lr=-1", "optim.optimizer: Invalid learning rate: -1"),
    ("trainer.max_epochs=abc", "trainer.max_epochs: expected int, got 'abc'"),
    ("trainer.max_epochs=-5", "trainer.max_epochs: expected >= -1"),
    ("trainer.precision=99", "trainer: Precision 99 is invalid"),
    ("trainer.devices=0", "trainer: `Trainer(devices=0)` value is not a valid input"),
    ("trainer.gradient_clip_val=abc", "trainer.gradient_clip_val: expected int or float or None"),
    ("resume=maybe", "resume: expected true or false, got 'maybe'"),
    ("overwrite=1", "overwrite: expected true or false, got 1"),
    ("resume=true", "resume: true, but"),   # nothing to resume: no silent fresh start
])
def test_train_config_values_are_checked_before_any_data(override, message, tone_manifests,
                                                         tmp_path):
    from asr.train.app import train

    # no corpus at all: the config error must come first, before any data is looked for
    with pytest.raises(ConfigError, match=re.escape(message)):
        train(compose_train(*tiny_overrides(tmp_path / "no_corpus", tmp_path / "run",
                                            "trainer.max_epochs=1", override)))
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("command", ["asr-data", "asr-decode", "asr-eval", "asr-lm", "asr-hw"])
def test_every_argparse_command_has_a_version(command, capsys):
    main = {"asr-data": data_main, "asr-decode": decode_main, "asr-eval": eval_main,
            "asr-hw": hw_main}.get(command)
    if main is None:
        from asr.cli.lm import main
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{command} (asr-fpga ") and out.strip().endswith(")")


def test_eval_normalizes_references_like_training_transcripts(tone_model, tone_manifests,
                                                              tmp_path, capsys):
    manifest = tone_manifests / "dev.jsonl"
    shouted = tmp_path / "dev_upper.jsonl"
    lines = manifest.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for r in records:
        r["text"] = r["text"].upper() + "!"
    shouted.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert eval_main([str(tone_model), str(manifest), "--out", str(tmp_path / "a")]) == 0
    plain = json.loads((tmp_path / "a" / "eval.json").read_text())
    assert eval_main([str(tone_model), str(shouted), "--out", str(tmp_path / "b")]) == 0
    loud = json.loads((tmp_path / "b" / "eval.json").read_text())
    assert loud["decoders"]["greedy"]["wer"] == plain["decoders"]["greedy"]["wer"]
    assert f"{len(records)} of {len(records)} references normalized" in capsys.readouterr().err


def test_decode_into_a_closed_pipe_stops_quietly(tone_model, tone_manifests):
    wav = str(tone_manifests / "audio" / "u1_0.wav")
    proc = subprocess.run(f"'{BIN / 'asr-decode'}' '{tone_model}' {' '.join([wav] * 40)} "
                          "| head -1", shell=True, capture_output=True, text=True, timeout=300)
    assert proc.stdout.count("\n") == 1 and wav in proc.stdout
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_pe_count_that_does_not_divide_the_rows_is_an_error_not_a_dense_schedule():
    from test_hw import make_artifact, small_lstm

    from hw.config import load_engine
    from hw.integer_model import compile_model

    art = make_artifact(small_lstm(), "ese", "compress.prune.num_pes=8")
    compile_model(art, load_engine("ese", ["num_pes=8"]))          # 8 divides 32 rows: fine
    with pytest.raises(ConfigError, match=r"hw.num_pes: 7 does not divide the \d+ rows of "):
        compile_model(art, load_engine("ese", ["num_pes=7"]))


@pytest.fixture(scope="module")
def ese_model(tone_model, tone_manifests, tmp_path_factory) -> Path:
    """The tone model compressed with the ESE preset on 8 PEs."""
    from test_hw import compose_compress_app

    from asr.compress.app import compress

    out = tmp_path_factory.mktemp("ese") / "ese.model"
    compress(compose_compress_app(f"model={tone_model}", "compress=ese",
                                  "compress.prune.num_pes=8", f"out={out}",
                                  f"calibration.manifest={tone_manifests}/train.jsonl",
                                  "evaluate=false"))
    return out


@pytest.fixture(scope="module")
def flipped_artifact(ese_model, tmp_path_factory) -> Path:
    """The ESE tone model with one byte flipped in the middle of the file."""
    out = tmp_path_factory.mktemp("flipped") / "ese.model"
    shutil.copy(ese_model, out)
    # flip a byte inside the stored tensor data (the largest of torch's data/<n> records; for
    # a small model the pickle itself can be larger, and a flip there may only hit a memo
    # index), so that the file still unpickles and only the checksum can tell
    with zipfile.ZipFile(out) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename),
                   key=lambda i: i.file_size)
    data = bytearray(out.read_bytes())
    name_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.file_size // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("command", ["asr-decode", "asr-hw timing", "asr-hw run"])
def test_an_artifact_with_a_flipped_byte_is_refused(command, flipped_artifact, tone_manifests,
                                                   capsys):
    wav = str(tone_manifests / "audio" / "u1_0.wav")
    if command == "asr-decode":
        code = decode_main([str(flipped_artifact), wav])
    elif command == "asr-hw timing":
        code = hw_main(["timing", str(flipped_artifact), "--set", "num_pes=8"])
    else:
        code = hw_main(["run", str(flipped_artifact), wav, "--set", "num_pes=8"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{flipped_artifact}: checksum mismatch" in err


def test_hw_run_and_eval_print_overflow_and_saturation_counts(ese_model, tmp_path, capsys):
    # clicks drive activations past the range calibrated on the tone corpus (saturations), and
    # sums carried at 24 more fraction bits than their output overflow the 32-bit accumulator:
    # the text output, not only --json, says how often
    from asr.data.manifest import Utterance, write_manifest

    clicks = np.where(np.arange(16000) % 400 == 0, 0.99, 0.0).astype(np.float32)
    wav = str(write(tmp_path / "clicks.wav", clicks, 16000, "PCM_16"))
    narrow = ["--set", "num_pes=8", "guard_bits=24"]
    assert hw_main(["run", str(ese_model), wav, *narrow, "--json"]) == 0
    cost = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["hardware"]
    assert cost["saturations"] > 0 and cost["accumulator_overflows"] > 0
    assert hw_main(["run", str(ese_model), wav, *narrow]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.endswith(f"{cost['saturations']} saturations, "
                         f"{cost['accumulator_overflows']} accumulator overflows]"), line
    write_manifest(tmp_path / "clicks.jsonl", [Utterance(wav, 1.0, "a", "s", "clicks")])
    assert hw_main(["eval", str(ese_model), str(tmp_path / "clicks.jsonl"), *narrow]) == 0
    summary = capsys.readouterr().out.splitlines()[0]
    assert summary.endswith(f"; {cost['saturations']} saturations, "
                            f"{cost['accumulator_overflows']} accumulator overflows"), summary


# -- every input of the issue, one row each, and where it is tested ---------------------------

@dataclass(frozen=True)
class IssueCase:
    name: str
    issue: str                  # the issue's words for the input
    tests: tuple[str, ...]      # pytest node ids (from the repository root)


def _row(case_name: str) -> str:
    """The node id of the ``CASES`` row ``case_name``."""
    return f"tests/test_bad_inputs.py::test_bad_input_gets_a_clear_error[{case_name}]"


_HERE = "tests/test_bad_inputs.py::"
_CKPT = "tests/test_untrusted_checkpoint.py::"
_RUNS = "tests/test_interrupted_runs.py::"
_TRAIN_VALUES = _HERE + "test_train_config_values_are_checked_before_any_data"
_STARTUP = "tests/test_cli_startup.py::"
_ARGPARSE_COMMANDS = ("asr-data", "asr-decode", "asr-eval", "asr-hw", "asr-lm")
_HYDRA_COMMANDS = ("asr-compress", "asr-hw report", "asr-train")

ISSUE_CASES = [
    IssueCase("pickle checkpoint",
              "a `.ckpt` with a pickle payload ... through `asr-decode`, `asr-eval`, "
              "`asr-compress`, `init_from=` and resume",
              (_CKPT + "test_loading_refuses_the_payload_and_names_the_file",
               _CKPT + "test_decode_and_eval_refuse_it", _CKPT + "test_compress_refuses_it",
               _CKPT + "test_training_refuses_it_as_init_from_and_as_resume_point")),
    IssueCase("damaged checkpoint", "a checkpoint that is not one (What to build 1)",
              ("tests/test_train.py::test_load_checkpoint_errors",)),
    IssueCase("kill while a .model is written",
              "a kill during `save_artifact` destroys the previous good `.model`",
              (_RUNS + "test_a_sigkill_while_writing_keeps_the_previous_model",
               _RUNS + "test_an_interrupted_write_leaves_the_previous_file",
               "tests/test_artifact.py::test_writes_are_atomic")),
    IssueCase("two runs, one folder", "two runs with the same name write into one folder",
              (_RUNS + "test_train_and_compress_refuse_a_folder_in_use",
               _RUNS + "test_a_held_lock_stops_a_second_run_and_a_dead_holders_does_not")),
    IssueCase("synth rerun with other inputs",
              "`asr-data synth` run again with another seed or other text reuses the old audio",
              ("tests/test_synth.py::test_a_rerun_with_other_inputs_remakes_the_audio_it_changes",
               "tests/test_synth.py::test_other_seed_other_plan")),
    IssueCase("compress resume with another preset",
              "resuming ignores a changed compress preset",
              (_RUNS + "test_a_finished_finetuning_rebuilds_a_missing_model_and_refuses_another_"
                       "preset", _RUNS + "test_config_differences_name_the_keys")),
    IssueCase("train resume with another config",
              "resume checks that the run's saved config matches the current one (What to "
              "build 2)",
              (_RUNS + "test_train_resume_refuses_another_config_and_survives_a_moved_folder",)),
    IssueCase("resume of a finished fine-tune without its .model",
              "a resume after a finished fine-tune whose `.model` is missing crashes with a "
              "TypeError",
              (_RUNS + "test_a_finished_finetuning_rebuilds_a_missing_model_and_refuses_another_"
                       "preset",)),
    IssueCase("accumulator overflows and saturations",
              "`asr-hw run` hides accumulator overflows in its text output",
              (_HERE + "test_hw_run_and_eval_print_overflow_and_saturation_counts",)),
    IssueCase("unnormalized references", "`asr-eval` scores references without normalizing them",
              (_HERE + "test_eval_normalizes_references_like_training_transcripts",)),
    IssueCase("flipped bytes in an artifact", "an artifact with flipped bytes loads",
              (*(f"{_HERE}test_an_artifact_with_a_flipped_byte_is_refused[{c}]"
                 for c in ("asr-decode", "asr-hw timing", "asr-hw run")),
               "tests/test_artifact.py::test_a_damaged_file_fails_its_checksum")),
    IssueCase("num_pes not dividing the rows",
              "`num_pes` that does not divide the rows silently falls back to a dense schedule",
              (_HERE + "test_pe_count_that_does_not_divide_the_rows_is_an_error_not_a_dense_"
                       "schedule",)),
    IssueCase("resume=true with nothing to resume",
              "`resume=true` with no `last.ckpt` silently restarts from scratch",
              (f"{_TRAIN_VALUES}[resume=true-resume: true, but]",)),
    IssueCase("resume=maybe", "`resume=maybe` is taken as true",
              (f"{_TRAIN_VALUES}[resume=maybe-resume: expected true or false, got 'maybe']",
               f"{_TRAIN_VALUES}[overwrite=1-overwrite: expected true or false, got 1]")),
    IssueCase("--batch-size -1", "`--batch-size -1` decodes nothing",
              tuple(_row(n) for n in ("decode: --batch-size below 1",
                                      "decode: --batch-size not a number",
                                      "eval: --batch-size 0", "hw run: --batch-size -3"))),
    IssueCase("truncated WAV", "a truncated WAV is decoded without a word",
              (_row("decode: a truncated WAV"),
               _row("data import: a corpus whose only file is a truncated WAV"))),
    IssueCase("report with every point failed", "`asr-hw report` when every point failed",
              ("tests/test_report.py::test_a_sweep_whose_every_point_failed_exits_non_zero",)),
    IssueCase("decode of an empty folder", "`asr-decode` on an empty folder",
              (_row("decode: an empty folder"),)),
    IssueCase("import of 0 utterances", "an import of 0 utterances",
              (_row("data import: a corpus whose only file has NaN samples"),
               _HERE + "test_import_of_nothing_writes_no_manifest")),
    IssueCase("--set typos", "`--set` typos",
              tuple(_row(n) for n in ("hw: a typo in a --set key", "hw: a --set without a value",
                                      "hw: a --set value of the wrong type",
                                      "hw: a --set boolean that is not one"))),
    IssueCase("bad trainer.* and optim values",
              "bad `trainer.*` and `optim` values (the traceback comes only after the data "
              "set-up)",
              (f"{_TRAIN_VALUES}[optim.optimizer.lr=abc-optim.optimizer.lr: expected a number, "
               "got 'abc']",
               f"{_TRAIN_VALUES}[optim.optimizer.lr=-1-optim.optimizer: Invalid learning rate: "
               "-1]",
               f"{_TRAIN_VALUES}[trainer.max_epochs=abc-trainer.max_epochs: expected int, got "
               "'abc']",
               f"{_TRAIN_VALUES}[trainer.max_epochs=-5-trainer.max_epochs: expected >= -1]",
               f"{_TRAIN_VALUES}[trainer.precision=99-trainer: Precision 99 is invalid]",
               f"{_TRAIN_VALUES}[trainer.devices=0-trainer: `Trainer(devices=0)` value is not a "
               "valid input]",
               f"{_TRAIN_VALUES}[trainer.gradient_clip_val=abc-trainer.gradient_clip_val: "
               "expected int or float or None]",
               "tests/test_train.py::test_config_errors_name_the_key_before_data_is_read"
               "[+trainer.max_epoch=3-trainer.max_epoch: not an argument]",
               "tests/test_train.py::test_config_errors_name_the_key_before_data_is_read"
               "[optim.schedule=step-optim.schedule]")),
    IssueCase("NaN/inf audio", "NaN/inf audio, which passes import and crashes training",
              (_row("data import: a corpus whose only file has NaN samples"),
               _row("decode: a WAV with an inf sample"),
               "tests/test_audio.py::test_non_finite_samples_are_refused")),
    IssueCase("asr-decode | head", "`asr-decode | head`",
              (_HERE + "test_decode_into_a_closed_pipe_stops_quietly",)),
    IssueCase("a one-hour file", "a one-hour file takes 3 GB of memory to decode",
              ("tests/test_decode_chunked.py::test_a_long_file_decodes_the_same_in_chunks",
               "tests/test_decode_chunked.py::test_asr_decode_chunks_long_files_with_the_same_"
               "output")),
    IssueCase("Kaldi tables with tabs",
              "Kaldi `wav.scp` and `text` lines are split on a single space, so a tab breaks "
              "them",
              ("tests/test_importers.py::test_kaldi_tables_split_on_any_whitespace",
               "tests/test_importers.py::test_kaldi_malformed_table_names_file_and_line")),
    IssueCase("a Kaldi segments file", "Kaldi files (... `segments`) (What to build 4)",
              ("tests/test_importers.py::test_kaldi_segments_are_cut_into_their_own_files",
               "tests/test_importers.py::test_kaldi_segments_need_a_folder_for_the_cut_audio",
               *(_row(f"data import: segments with {n}")
                 for n in ("an unknown recording id", "start >= end",
                           "a start past the recording and end -1",
                           "an end beyond the recording", "a time that is not a number",
                           "a duplicate utterance id", "a line of three fields")))),
    IssueCase("an output torn by a failed write",
              "nothing good is lost: an ARPA model, a report figure, a plot, memory images, "
              "the skipped list or decoded hypotheses written in place",
              (_RUNS + "test_an_interrupted_arpa_build_keeps_the_previous_model",
               _RUNS + "test_a_failed_report_figure_keeps_the_previous_one",
               _RUNS + "test_a_failed_trace_plot_keeps_the_previous_one",
               _RUNS + "test_a_failed_memory_image_export_keeps_the_previous_images",
               _RUNS + "test_a_failed_skipped_list_keeps_the_previous_one",
               "tests/test_decode_outputs.py::"
               "test_an_interrupted_decode_keeps_the_previous_output_whole")),
    IssueCase("hypotheses in Kaldi text, .trn, CTM",
              "no full hypothesis output in the usual formats: Kaldi `text`, `.trn` for "
              "sclite, CTM",
              ("tests/test_decode_outputs.py::test_each_output_format_has_its_exact_shape",
               "tests/test_decode_outputs.py::test_ctm_of_several_words_follows_the_alignment"
               "[greedy]",
               "tests/test_decode_outputs.py::test_bad_output_flags_get_clear_errors")),
    IssueCase("an sclite .trn reference", "`asr-eval` accepts an sclite-style `.trn` reference "
              "(What to build 4)",
              ("tests/test_decode_outputs.py::test_eval_scores_against_sclite_references",
               "tests/test_decode_outputs.py::test_bad_references_get_clear_errors")),
    IssueCase("--version", "there is no `--version`",
              (*(f"{_HERE}test_every_argparse_command_has_a_version[{c}]"
                 for c in _ARGPARSE_COMMANDS),
               *(f"{_STARTUP}test_hydra_apps_have_a_version_in_process[{c}]"
                 for c in _HYDRA_COMMANDS))),
    IssueCase("--help speed", "`--help` takes 6-8 s",
              (*(f"{_STARTUP}test_argparse_commands_answer_without_torch[--help-{c}]"
                 for c in _ARGPARSE_COMMANDS),
               *(f"{_STARTUP}test_hydra_apps_answer_before_loading_lightning[--help-{c}]"
                 for c in _HYDRA_COMMANDS))),
    IssueCase("static power of a whole chip on one channel",
              "a whole chip's static power is charged to one channel",
              ("tests/test_energy.py::test_static_power_is_shared_by_the_channels",
               "tests/test_energy.py::test_summary_splits_power_into_dynamic_and_static")),
    IssueCase("saturation counts only in the JSON", "saturation counts appear only in the JSON",
              ("tests/test_energy.py::test_report_table_shows_dynamic_static_and_saturations",
               _HERE + "test_hw_run_and_eval_print_overflow_and_saturation_counts")),
    IssueCase("report JSON strings and no schema version",
              "timing rows are stored as strings in the JSON, and it has no schema version",
              ("tests/test_energy.py::test_timing_records_are_numbers_and_render_as_the_table",
               "tests/test_report.py::test_two_point_sweep_writes_every_format")),
]


def _collect(files: set[str]) -> set[str]:
    """The node ids of the default run (not slow) in ``files``, collected by a fresh pytest."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", *sorted(files)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {line for line in done.stdout.splitlines() if "::" in line}


def test_every_listed_bad_input_has_a_passing_test(request):
    names = [c.name for c in ISSUE_CASES]
    assert len(set(names)) == len(names) and all(c.tests for c in ISSUE_CASES)
    wanted = {t for c in ISSUE_CASES for t in c.tests}
    # this session's collection (all of it under `make test`); files it did not collect, or
    # collected only in part, are collected again by a fresh pytest with the default options
    seen = request.config.stash.get(COLLECTED, {})
    slow = sorted(t for t in wanted if seen.get(t))
    assert not slow, f"marked slow, so not in make test: {slow}"
    missing = {t for t in wanted if t not in seen}
    if missing:
        missing -= _collect({t.split("::", 1)[0] for t in missing})
    assert not missing, f"no such test in the default run: {sorted(missing)}"
