"""Bad or unlucky inputs, as a new user would try them: each gets a clear message that names
what is wrong and a non-zero exit, and nothing already done is lost.

Each row of ``CASES`` is one input: the command, how to build its arguments in a scratch
folder, the exit code expected and a fragment of the message expected on stderr (or in the
raised error, for the Hydra apps that are called as functions).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import compose_train, tiny_overrides, tone, write

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


def _nan_corpus(folder: Path) -> Path:
    wav = tone(1.0, 16000).astype(np.float32)
    wav[100] = np.nan
    src = folder / "corpus"
    src.mkdir()
    sf.write(src / "u1.wav", wav, 16000, subtype="FLOAT")
    (src / "wav.scp").write_text("u1 u1.wav\n")
    (src / "text").write_text("u1 one\n")
    return src


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
    import re

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
    import json

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
def flipped_artifact(tone_model, tone_manifests, tmp_path_factory) -> Path:
    """A compressed tone model with one byte flipped in the middle of the file."""
    from test_hw import compose_compress_app

    from asr.compress.app import compress

    out = tmp_path_factory.mktemp("flipped") / "ese.model"
    compress(compose_compress_app(f"model={tone_model}", "compress=ese",
                                  "compress.prune.num_pes=8", f"out={out}",
                                  f"calibration.manifest={tone_manifests}/train.jsonl",
                                  "evaluate=false"))
    import zipfile

    # flip a byte inside the stored tensor data (the largest record of torch's zip file), so
    # that the file still unpickles and only the checksum can tell
    with zipfile.ZipFile(out) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
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
