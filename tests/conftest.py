"""Shared fixtures: every test makes its own audio (generated signals, synthesized speech)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hydra import compose, initialize_config_dir

from asr.data.manifest import Utterance, write_manifest
from asr.train.config import TRAIN_CONF_DIR

REPO = Path(__file__).resolve().parents[1]
DDP_ON_TWO_CPUS = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                   "trainer.precision=32-true"]


# Every test collected in this session, before -m/-k deselect any: node id -> marked slow.
# The bad-input table checks its references against it (tests/test_bad_inputs.py).
COLLECTED = pytest.StashKey[dict[str, bool]]()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    config.stash[COLLECTED] = {i.nodeid: i.get_closest_marker("slow") is not None
                               for i in items}


def run_ddp_on_two_cpus(command: str, overrides: list[str], cwd: Path
                        ) -> subprocess.CompletedProcess:
    """Run console command ``command`` (asr-train, asr-compress) with DDP over two CPU
    processes (gloo stands in for NCCL). A subprocess because Lightning relaunches the command
    line once per rank; asserts it succeeded with both ranks."""
    done = subprocess.run([str(Path(sys.executable).parent / command), *overrides,
                           *DDP_ON_TWO_CPUS], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Starting with 2 processes" in done.stdout + done.stderr
    return done


def tone(seconds: float, sample_rate: int, freq: float = 440.0, amp: float = 0.5,
         seed: int | None = None) -> np.ndarray:
    """A sine (plus a little noise when ``seed`` is given), float32 mono."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = amp * np.sin(2 * np.pi * freq * t)
    if seed is not None:
        x += 0.01 * np.random.default_rng(seed).standard_normal(x.shape)
    return x.astype(np.float32)


def write(path: Path | str, data: np.ndarray, sample_rate: int, subtype: str | None = None
          ) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sample_rate, subtype=subtype)
    return path


@pytest.fixture
def make_wav(tmp_path):
    """``make_wav(name, seconds=1.0, sample_rate=16000, freq=440)`` -> path of a WAV tone."""

    def _make(name: str, seconds: float = 1.0, sample_rate: int = 16000, freq: float = 440.0,
              folder: Path | None = None) -> Path:
        return write((folder or tmp_path) / name, tone(seconds, sample_rate, freq, seed=1),
                     sample_rate)

    return _make


requires_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                     reason="espeak-ng is not installed (make test installs it)")


# A corpus of tone 'speech' and a tiny model that learns it: what training, decoding and
# compression tests run on.
LETTERS = {"a": 300.0, "b": 700.0, "c": 1200.0, "d": 2000.0}


# The config groups of each Hydra app: each has its own config root (conf/asr_train,
# conf/asr_compress, conf/asr_hw_report) and its --help lists these alone.
APP_GROUPS = {
    "asr-train": {"data", "experiment", "features", "model", "optim", "trainer"},
    "asr-compress": {"compress", "data", "finetune", "trainer"},
    "asr-hw report": {"compress", "data", "finetune", "hw", "trainer"},
}


def help_groups(text: str) -> set[str]:
    """The config groups a Hydra app's --help lists (its ``group: option, ...`` lines)."""
    section = text.split("== Configuration groups ==", 1)[1].split("== Config ==", 1)[0]
    return {line.split(":", 1)[0] for line in section.splitlines()[2:] if ":" in line}


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(TRAIN_CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def tone_corpus(folder, n: int, seed: int) -> list[Utterance]:
    """Utterances whose 'words' are letters spoken as tones: learnable in a few dozen steps."""
    rng = np.random.default_rng(seed)
    sr, utts = 16000, []
    for i in range(n):
        text = "".join(rng.choice(list(LETTERS), size=rng.integers(2, 5)))
        pieces = []
        for ch in text:
            t = np.arange(int(0.12 * sr)) / sr
            pieces += [0.5 * np.sin(2 * np.pi * LETTERS[ch] * t), np.zeros(int(0.04 * sr))]
        wav = np.concatenate(pieces).astype(np.float32)
        wav += 0.01 * rng.standard_normal(wav.shape).astype(np.float32)
        path = write(folder / f"u{seed}_{i}.wav", wav, sr)
        utts.append(Utterance(str(path), len(wav) / sr, text, "s", f"u{seed}_{i}"))
    return utts


@pytest.fixture(scope="session")
def tone_manifests(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    write_manifest(root / "train.jsonl", tone_corpus(root / "audio", 48, 0))
    write_manifest(root / "dev.jsonl", tone_corpus(root / "audio", 12, 1))
    return root


def tiny_overrides(root, run_dir, *extra: str) -> list[str]:
    return [
        f"data.train_manifest={root}/train.jsonl", f"data.val_manifest={root}/dev.jsonl",
        "data.test_manifest=null", "data.cache_dir=null", "data.batch.num_workers=0",
        "data.batch.max_batch_size=4", "data.augment.speed_factors=[1.0]",
        "data.augment.freq_masks=0", "data.augment.time_masks=0",
        "features=fbank", "features.n_mels=24", "features.stack=2", "features.subsample=2",
        "model=lstm_small", "model.hidden_size=48", "model.proj_size=24", "model.num_layers=1",
        "model.dropout=0.0", "optim.warmup_steps=5", "optim.optimizer.lr=0.005",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "trainer.log_every_n_steps=1",
        "checkpoint_every_n_steps=2", "early_stopping_patience=0", f"run_dir={run_dir}", *extra,
    ]


@pytest.fixture(scope="session")
def tone_model(tone_manifests, tmp_path_factory) -> Path:
    """model.ckpt of a tiny LSTM trained on the tone corpus (dev CER well below 50%)."""
    from asr.train.app import train

    run = tmp_path_factory.mktemp("tone_model")
    train(compose_train(*tiny_overrides(tone_manifests, run, "trainer.max_epochs=15")))
    return run / "model.ckpt"
