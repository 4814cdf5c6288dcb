"""Training: configs compose and validate, tiny models learn, killed runs resume."""

import json
import re
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import (
    APP_GROUPS,
    REPO,
    compose_train,
    help_groups,
    run_ddp_on_two_cpus,
    tiny_overrides,
)
from hydra.core.singleton import Singleton

from asr.audio import load_audio
from asr.cli.evaluate import main as eval_main
from asr.config_errors import ConfigError
from asr.data.manifest import read_manifest
from asr.decode.greedy import greedy_decode
from asr.features import FeatureExtractor
from asr.text import CharVocab
from asr.train.app import train
from asr.train.checkpoint import CheckpointError, average_checkpoints, load_checkpoint
from asr.train.config import check_init_checkpoint, state_shapes, validate_train_config
from asr.train.module import warmup_decay

EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_preset_validates(experiment):
    # A fine-tuning preset's init_from names a checkpoint of another recipe, absent here.
    cfg = compose_train(f"experiment={experiment}", "init_from=null")
    spec = validate_train_config(cfg)
    assert cfg.name == experiment
    assert spec.data.train_manifest.startswith("data/")


@pytest.mark.parametrize("override,message", [
    ("model.hiden_size=3", "hiden_size"),
    ("+model.hiden_size=3", r"model.hiden_size: unknown argument of asr.models.LSTMCTC"),
    ("model.proj_size=999", "model.proj_size"),
    ("+trainer.max_epoch=3", "trainer.max_epoch: not an argument"),
    ("data.batch.max_seconds=-1", "data.batch.max_seconds"),
    ("+data.batch.size=3", "data.batch.size"),
    ("optim.schedule=step", "optim.schedule"),
    ("optim.optimizer._target_=torch.optim.Adamm", "optim.optimizer._target_: cannot import"),
    ("features.kind=plp", "features.kind"),
    ("+colour=red", r"unknown top-level key\(s\) \['colour'\]"),
    ("average_best=0", "average_best"),
])
def test_config_errors_name_the_key_before_data_is_read(tmp_path, override, message):
    # The manifests do not exist: a config error must be reported before they are looked at.
    base = [f"data.train_manifest={tmp_path}/none.jsonl", f"run_dir={tmp_path}/run"]
    try:
        cfg = compose_train(*base, override)
    except Exception as err:  # Hydra refuses unknown keys of struct configs itself
        assert message.split(":")[0].split(".")[-1] in str(err)
        return
    with pytest.raises(ConfigError, match=message):
        train(cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", APP_GROUPS)
def test_each_app_lists_only_its_own_config_groups(command, monkeypatch, capsys):
    # Each app has its own config root: asr-train's --help shows neither the other apps'
    # roots (asr_compress, asr_hw_report) nor their groups (compress, finetune, hw).
    from asr.compress.app import main as compress_main
    from asr.train.app import main as train_main
    from hw.report.app import main as report_main

    main = {"asr-train": train_main, "asr-compress": compress_main,
            "asr-hw report": lambda: report_main(["--help"])}[command]
    monkeypatch.setattr(sys, "argv", [command, "--help"])
    state = Singleton.get_state()   # the app leaves HydraConfig set: later tests run no app
    try:
        with pytest.raises(SystemExit) as done:
            main()
    finally:
        Singleton.set_state(state)
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{command} is powered by Hydra.")   # hydra.job.name / app_name
    assert help_groups(text) == APP_GROUPS[command]
    assert "asr_compress" not in text and "asr_hw_report" not in text


def test_greedy_decode_matches_per_utterance_collapse():
    vocab = CharVocab()
    torch.manual_seed(0)
    logits = torch.randn(3, 12, len(vocab)) * 3
    lengths = torch.tensor([12, 7, 1])
    texts = greedy_decode(logits, lengths, vocab)
    for i in range(3):
        path = logits[i, :lengths[i]].argmax(-1).tolist()
        assert texts[i] == " ".join(vocab.ctc_collapse(path).split())


def test_warmup_then_cosine_decay():
    assert warmup_decay(0, 10, 110, "cosine", 0.1) == pytest.approx(0.1)
    assert warmup_decay(9, 10, 110, "cosine", 0.1) == pytest.approx(1.0)
    assert warmup_decay(60, 10, 110, "cosine", 0.1) == pytest.approx(0.55)
    assert warmup_decay(110, 10, 110, "cosine", 0.1) == pytest.approx(0.1)
    assert warmup_decay(60, 10, 110, "linear", 0.0) == pytest.approx(0.5)
    assert warmup_decay(60, 10, 110, "constant", 0.0) == 1.0


def test_tiny_lstm_learns(tone_manifests, tmp_path):
    # freq_width reaches nothing with no masks: only to see the checkpoint record the config
    metrics = train(compose_train(*tiny_overrides(tone_manifests, tmp_path / "run",
                                                  "trainer.max_epochs=15", "average_best=3",
                                                  "data.augment.freq_width=5")))
    losses = [float(r["train_loss"]) for r in _csv(tmp_path / "run") if r.get("train_loss")]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert metrics["val_cer"] < 0.5  # each tone "word" is one word: CER shows progress first
    run = tmp_path / "run"
    for name in ("config.yaml", "model.ckpt", "metrics.json", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    assert "hidden_size: 48" in (run / "config.yaml").read_text()
    # the checkpoint alone rebuilds the model
    loaded = load_checkpoint(run / "model.ckpt")
    assert loaded.features.dim == 48 and loaded.vocab == CharVocab()
    assert loaded.model.hidden_size == 48 and not loaded.model.training
    # ... and says how it was trained (asr-compress fine-tunes with the same augmentation)
    recorded = torch.load(run / "model.ckpt", weights_only=False)["datamodule_hyper_parameters"]
    assert recorded["augment"] == loaded.train_augment == {
        "speed_factors": [1.0], "freq_masks": 0, "freq_width": 5, "time_masks": 0,
        "time_width": loaded.train_augment["time_width"], "time_ratio": 0.2}
    assert json.loads((run / "metrics.json").read_text())["best_val_wer"] == metrics[
        "best_val_wer"]
    # model.ckpt is the average of the 3 best when the dev set finds it no worse
    assert metrics["averaged_checkpoints"] == 3
    # the best checkpoints' names hold no '=': a path to one is a plain Hydra override value
    best = sorted((run / "checkpoints").glob("best-*.ckpt"))
    assert len(best) == 3, best
    for path in best:
        assert re.fullmatch(r"best-epoch\d{2}-val_wer\d\.\d{4}(-v\d+)?\.ckpt", path.name)
    assert compose_train(f"init_from={best[0]}").init_from == str(best[0])
    averaged = "averaged_from" in torch.load(run / "model.ckpt", weights_only=False)
    assert averaged == (metrics["averaged_val_wer"] <= metrics["best_val_wer"])


def test_average_checkpoints_means_float_tensors(tmp_path):
    paths = []
    for k in range(3):
        state = {"model.w": torch.full((2, 3), float(k)), "model.bn.num_batches_tracked":
                 torch.tensor(10 + k), "model.bn.running_mean": torch.tensor([k * 3.0])}
        paths.append(tmp_path / f"{k}.ckpt")
        torch.save({"state_dict": state, "optimizer_states": [1], "hyper_parameters": {}},
                   paths[-1])
    out = torch.load(average_checkpoints(paths, tmp_path / "avg.ckpt"), weights_only=False)
    assert torch.equal(out["state_dict"]["model.w"], torch.full((2, 3), 1.0))
    assert out["state_dict"]["model.bn.running_mean"].item() == 3.0
    assert out["state_dict"]["model.bn.num_batches_tracked"].item() == 10  # the first's
    assert "optimizer_states" not in out and len(out["averaged_from"]) == 3
    torch.save({"state_dict": {"model.v": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="other.ckpt: parameters differ"):
        average_checkpoints([paths[0], tmp_path / "other.ckpt"], tmp_path / "bad.ckpt")


def test_training_augment_of_older_checkpoints_comes_from_the_run_config(tone_model, tmp_path):
    ckpt = torch.load(tone_model, weights_only=False)
    del ckpt["datamodule_hyper_parameters"]   # as written before asr-train recorded it
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for path in (run / "model.ckpt", run / "checkpoints" / "best.ckpt"):
        torch.save(ckpt, path)
        assert load_checkpoint(path).train_augment is None      # nothing says
    (run / "config.yaml").write_text("data:\n  augment:\n    freq_masks: 2\n"
                                     "    speed_factors: [0.9, 1.0]\n")
    for path in (run / "model.ckpt", run / "checkpoints" / "best.ckpt"):
        assert load_checkpoint(path).train_augment == {"freq_masks": 2,
                                                       "speed_factors": [0.9, 1.0]}
    (run / "config.yaml").write_text("- not asr-train's config\n")
    assert load_checkpoint(run / "model.ckpt").train_augment is None


def test_killed_run_resumes_from_its_step(tone_manifests, tmp_path):
    run = tmp_path / "run"
    first = train(compose_train(*tiny_overrides(tone_manifests, run, "trainer.max_epochs=1")))
    steps_per_epoch = first["global_step"]
    assert steps_per_epoch > 2
    with pytest.raises(ConfigError, match="pass resume=true"):
        train(compose_train(*tiny_overrides(tone_manifests, run, "trainer.max_epochs=2")))
    before = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert before["global_step"] == steps_per_epoch
    resumed = train(compose_train(*tiny_overrides(tone_manifests, run, "trainer.max_epochs=2",
                                                  "resume=true")))
    assert resumed["global_step"] == 2 * steps_per_epoch
    # one continuous log: the rows before the kill are kept, and no step is trained twice
    steps = [int(r["step"]) for r in _csv(run) if r.get("train_loss")]
    assert sorted(steps) == steps and len(set(steps)) == len(steps)
    assert min(steps) < steps_per_epoch <= max(steps)
    assert len(steps) == 2 * steps_per_epoch  # log_every_n_steps=1
    fresh = train(compose_train(*tiny_overrides(tone_manifests, run, "trainer.max_epochs=1",
                                                "overwrite=true")))
    assert fresh["global_step"] == steps_per_epoch


def test_ddp_scores_the_whole_corpus_once(tone_manifests, tone_model, tmp_path):
    """``trainer=ddp`` on two CPU processes (gloo stands in for NCCL): Lightning relaunches
    asr-train per rank. The dev and test WER/CER are the corpus figures of all shards together
    (12 utterances in 3 batches: rank 1 repeats a batch), equal to a one-process asr-eval, not a
    mean of per-rank rates; rank 0 alone writes model.ckpt and metrics.json."""
    run = tmp_path / "ddp"
    dev = tone_manifests / "dev.jsonl"
    overrides = [o for o in tiny_overrides(tone_manifests, run) if "test_manifest" not in o]
    overrides += ["trainer.max_epochs=1", "average_best=1", f"init_from={tone_model}",
                  "optim.optimizer.lr=1e-5", f"data.test_manifest={dev}"]
    run_ddp_on_two_cpus("asr-train", overrides, tmp_path)
    assert (run / "asr-train.log").is_file()   # Hydra's job log is named after the command
    metrics = json.loads((run / "metrics.json").read_text())
    assert eval_main([str(run / "model.ckpt"), str(dev), "--decoder", "greedy",
                      "--out", str(tmp_path / "eval")]) == 0
    single = json.loads((tmp_path / "eval" / "eval.json").read_text())["decoders"]["greedy"]
    assert 0 < single["cer"] < 0.5  # a model that makes some errors, so a wrong count shows
    for stage in ("val", "test"):
        assert metrics[f"{stage}_wer"] == pytest.approx(single["wer"], abs=1e-6)
        assert metrics[f"{stage}_cer"] == pytest.approx(single["cer"], abs=1e-6)


def test_global_cmvn_is_estimated_once_and_travels_with_the_checkpoint(tone_manifests, tmp_path):
    run = tmp_path / "run"
    train(compose_train(*tiny_overrides(tone_manifests, run, "trainer.max_epochs=1",
                                        "features.normalize=global")))
    features = load_checkpoint(run / "model.ckpt").features
    assert features.normalize == "global" and len(features.global_mean) == features.base_dim
    # the mean of the normalized training features is near zero and their spread near one
    train_utts = read_manifest(tone_manifests / "train.jsonl")
    extractor = FeatureExtractor(replace(features, stack=1, subsample=1))
    feats = torch.cat([extractor(load_audio(u.audio_filepath, features.sample_rate))
                       for u in train_utts])
    assert feats.mean(0).abs().max() < 0.05 and (feats.std(0) - 1).abs().max() < 0.05
    assert "global_mean:" in (run / "config.yaml").read_text()
    with pytest.raises(ConfigError, match="features.global_mean"):
        FeatureExtractor(replace(features, global_mean=None))


def test_init_from_starts_from_the_checkpoint_weights(tone_manifests, tone_model, tmp_path):
    # lr 1e-9: an epoch leaves the weights where they started, so dev CER shows the start
    frozen = ("trainer.max_epochs=1", "optim.optimizer.lr=1e-9", "optim.warmup_steps=0")
    fresh = train(compose_train(*tiny_overrides(tone_manifests, tmp_path / "fresh", *frozen)))
    tuned = train(compose_train(*tiny_overrides(tone_manifests, tmp_path / "tuned", *frozen,
                                                f"init_from={tone_model}")))
    assert fresh["val_cer"] > 0.9 and tuned["val_cer"] < 0.5
    start = load_checkpoint(tone_model).model.state_dict()
    after = load_checkpoint(tmp_path / "tuned" / "model.ckpt").model.state_dict()
    assert all(torch.allclose(start[k].float(), after[k].float(), atol=1e-5) for k in start)
    assert f"init_from: {tone_model}" in (tmp_path / "tuned" / "config.yaml").read_text()


@pytest.mark.parametrize("override,message", [
    ("features.stack=3", r"trained on features.stack=2, this run has features.stack=3"),
    ("model.hidden_size=32", r"has no weight layers.0.weight_ih_l0 of shape"),
    ("model.dropout=0.3", None),  # shape-free settings may differ
])
def test_init_from_must_match_features_and_architecture(tone_manifests, tone_model, tmp_path,
                                                        override, message):
    cfg = compose_train(*tiny_overrides(tone_manifests, tmp_path / "run", override,
                                        f"init_from={tone_model}"))
    if message is None:
        assert validate_train_config(cfg).init_from == str(tone_model)
        return
    with pytest.raises(ConfigError, match="init_from: .*" + message):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_init_from_checkpoint_errors(tone_manifests, tone_model, tmp_path):
    # a run's model with fewer weights than the checkpoint (e.g. fewer layers)
    loaded = load_checkpoint(tone_model)
    shapes = state_shapes(loaded.model)
    dropped = sorted(shapes)[-1]
    with pytest.raises(ConfigError, match=re.escape(f"lacks ({dropped}, 1 in all)")):
        check_init_checkpoint(str(tone_model), loaded.features,
                              {k: v for k, v in shapes.items() if k != dropped})
    with pytest.raises(ConfigError, match="init_from: .*nope.ckpt: no such checkpoint"):
        validate_train_config(compose_train(*tiny_overrides(
            tone_manifests, tmp_path / "run", f"init_from={tmp_path}/nope.ckpt")))


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.ckpt")
    (tmp_path / "bad.ckpt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bad.ckpt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "bad.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not written by asr-train"):
        load_checkpoint(tmp_path / "other.ckpt")


def _csv(run_dir):
    import csv

    with open(run_dir / "logs" / "metrics.csv") as f:
        return list(csv.DictReader(f))
