"""The recipes' shell scripts, run end to end on miniature corpora in a copy of ``recipes/``
(so that their ``data/`` and ``exp/`` land in the test's folder, not in the checkout)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from conftest import REPO, tone_corpus

from asr.data.manifest import read_manifest

# A tiny LSTM that every preset's structure divides: 64 cells over ese's 32 PEs, inputs of
# 32 bands x 3 stacked frames = 96 and a 32-wide projection in bbs's banks of 16.
TINY_LSTM = ("trainer=cpu trainer.max_epochs=2 trainer.enable_progress_bar=false "
             "data.cache_dir=null data.batch.num_workers=0 data.batch.max_batch_size=8 "
             "data.augment.speed_factors=[1.0] features.n_mels=32 model=lstm_small "
             "model.hidden_size=64 model.proj_size=32 model.num_layers=1 average_best=1")
QUIET = "data.cache_dir=null data.batch.num_workers=0 trainer.enable_progress_bar=false"


def librispeech_tree(root: Path) -> dict[str, list[str]]:
    """A LibriSpeech-layout corpus (speaker/chapter/ folders, FLAC, ``*.trans.txt``) of tone
    'speech'; returns the utterance ids of each official part."""
    ids: dict[str, list[str]] = {}
    for seed, (part, speakers, per_chapter) in enumerate(
            [("train-clean-100", ["19", "26"], 12), ("dev-clean", ["84"], 4),
             ("test-clean", ["121"], 4)]):
        ids[part] = []
        for k, spk in enumerate(speakers):
            chapter = root / part / spk / "1000"
            chapter.mkdir(parents=True)
            lines = []
            for i, utt in enumerate(tone_corpus(chapter, per_chapter, 10 * seed + k)):
                utt_id = f"{spk}-1000-{i:04d}"
                wav = Path(utt.audio_filepath)
                data, sr = sf.read(wav)
                sf.write(chapter / f"{utt_id}.flac", data, sr)
                wav.unlink()
                lines.append(f"{utt_id} {utt.text.upper()}")
                ids[part].append(utt_id)
            (chapter / f"{spk}-1000.trans.txt").write_text("\n".join(lines) + "\n")
    return ids


def run_recipe(root: Path, script: str, *args: str, **env: str) -> str:
    done = subprocess.run(
        ["bash", str(root / "recipes" / script), *args], cwd=root, capture_output=True,
        text=True, timeout=600,
        env={**os.environ, "BIN": str(Path(sys.executable).parent), **env})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def test_librispeech_recipe_imports_trains_compresses_and_evaluates(tmp_path):
    shutil.copytree(REPO / "recipes", tmp_path / "recipes")
    ids = librispeech_tree(tmp_path / "LibriSpeech")

    run_recipe(tmp_path, "librispeech/run.sh", str(tmp_path / "LibriSpeech"),
               "--stop-stage", "1", TRAIN_ARGS=TINY_LSTM)
    for name, part in [("train", "train-clean-100"), ("dev", "dev-clean"),
                       ("test", "test-clean")]:
        utts = read_manifest(tmp_path / "data" / "librispeech" / f"{name}.jsonl")
        assert [u.utt_id for u in utts] == ids[part]
        assert {u.speaker for u in utts} == {i.split("-")[0] for i in ids[part]}
    run = tmp_path / "exp" / "librispeech_lstm"
    config = (run / "config.yaml").read_text()
    assert "hidden_size: 64" in config and "accelerator: cpu" in config  # TRAIN_ARGS applied
    metrics = json.loads((run / "metrics.json").read_text())
    assert "test_wer" in metrics

    # Stage 2 (the WaveNet) is skipped; stage 3 compresses what is there (post-training here).
    log = run_recipe(tmp_path, "librispeech/run.sh", "--stage", "3", COMPRESS_EPOCHS="0",
                     COMPRESS_ARGS=QUIET)
    assert "librispeech_wavenet/model.ckpt missing" in log
    for preset, density in (("ese", 0.11), ("bbs", 0.125)):
        storage = json.loads((run / f"{preset}.storage.json").read_text())
        pruned = [m for m in storage["matrices"] if m["name"] != "output"]
        assert pruned and all(m["density"] == pytest.approx(density, abs=0.02) for m in pruned)
    evals = {d: json.loads((run / d / "eval.json").read_text())["decoders"]
             for d in ("eval_test", "eval_test_ese", "eval_test_bbs")}
    assert all(set(e) == {"greedy", "beam"} for e in evals.values())
    assert all(e["greedy"]["utterances"] == len(ids["test-clean"]) for e in evals.values())
    # asr-eval's greedy WER of model.ckpt is asr-train's test figure for the same checkpoint
    assert evals["eval_test"]["greedy"]["wer"] == pytest.approx(metrics["test_wer"], abs=1e-6)
    assert evals["eval_test"]["greedy"]["cer"] == pytest.approx(metrics["test_cer"], abs=1e-6)
    # a finished stage is skipped, not redone
    assert "done earlier, skipping" in run_recipe(tmp_path, "librispeech/run.sh", "--stage", "3",
                                                  "--stop-stage", "3")
