"""A checkpoint with a pickle payload runs no code, whichever command is given it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import compose_train, tiny_overrides

from asr.cli.decode import main as decode_main
from asr.cli.evaluate import main as eval_main
from asr.train.checkpoint import CheckpointError, average_checkpoints, load_checkpoint


class _Payload:
    """Unpickling this creates ``marker``: what a hostile checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def hostile(tone_model, tmp_path) -> tuple[Path, Path]:
    """A real checkpoint of the tone model with a payload beside its weights."""
    marker = tmp_path / "pwned"
    ckpt = torch.load(tone_model, weights_only=True)
    ckpt["hyper_parameters"]["note"] = _Payload(marker)
    path = tmp_path / "shared.ckpt"
    torch.save(ckpt, path)
    assert not marker.exists()
    return path, marker


def test_loading_refuses_the_payload_and_names_the_file(hostile):
    path, marker = hostile
    with pytest.raises(CheckpointError, match=f"{path}: refused.*run code"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=str(path)):
        average_checkpoints([path, path], path.with_name("avg.ckpt"))
    assert not marker.exists()


def test_decode_and_eval_refuse_it(hostile, tone_manifests, capsys):
    path, marker = hostile
    wav = tone_manifests / "audio" / "u1_0.wav"
    assert decode_main([str(path), str(wav)]) != 0
    assert eval_main([str(path), str(tone_manifests / "dev.jsonl")]) != 0
    err = capsys.readouterr().err
    assert err.count(f"{path}: refused") == 2
    assert not marker.exists()


def test_compress_refuses_it(hostile, tone_manifests, tmp_path):
    from test_compress import compose_compress, tone_data

    from asr.compress.app import compress

    path, marker = hostile
    with pytest.raises(CheckpointError, match=f"{path}: refused"):
        compress(compose_compress(f"model={path}", "compress=ese", "compress.prune.num_pes=8",
                                  f"out={tmp_path / 'x.model'}", *tone_data(tone_manifests)))
    assert not marker.exists() and not (tmp_path / "x.model").exists()


def test_training_refuses_it_as_init_from_and_as_resume_point(hostile, tone_manifests,
                                                              tmp_path):
    from asr.config_errors import ConfigError
    from asr.train.app import train

    path, marker = hostile
    with pytest.raises((CheckpointError, ConfigError), match=f"{path}"):
        train(compose_train(*tiny_overrides(tone_manifests, tmp_path / "a",
                                            "trainer.max_epochs=1", f"init_from={path}")))
    run = tmp_path / "b"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(path, run / "checkpoints" / "last.ckpt")
    with pytest.raises(CheckpointError, match="last.ckpt: refused"):
        train(compose_train(*tiny_overrides(tone_manifests, run, "trainer.max_epochs=1",
                                            "resume=true")))
    assert not marker.exists()
