"""The delta LSTM model: its forward against the graph's float runner, threshold annealing,
temporal-sparsity counts, init_from an LSTM checkpoint and its bad inputs."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import compose_train, tiny_overrides

from asr.cli.evaluate import main as eval_main
from asr.config_errors import ConfigError
from asr.models import LSTMCTC, DeltaLSTMCTC, run_graph
from asr.models.delta_lstm import input_deltas, temporal_sparsity
from asr.models.graph import DeltaLSTMOp, threshold_delta
from asr.text.vocab import CharVocab
from asr.train.config import validate_train_config
from asr.train.module import CTCModule, build_model


def small_delta(theta_x: float = 0.3, theta_h: float = 0.1, **kwargs) -> DeltaLSTMCTC:
    torch.manual_seed(0)
    model = DeltaLSTMCTC(12, 7, hidden_size=24, proj_size=10, num_layers=2, theta_x=theta_x,
                         theta_h=theta_h, **kwargs).double().eval()
    with torch.no_grad():   # larger weights than the init: outputs that cross theta_h often
        for p in model.parameters():
            p.mul_(3)
    return model


def test_forward_in_eval_mode_is_the_exported_graph_with_its_thresholds():
    model = small_delta()
    x = torch.randn(1, 40, 12, dtype=torch.float64)
    graph = model.export()
    layers = [op for op in graph.ops if op.name.startswith("layers.")]
    assert graph.model_type == "delta_lstm"
    assert all(type(op) is DeltaLSTMOp and (op.theta_x, op.theta_h) == (0.3, 0.1)
               for op in layers) and len(layers) == 2
    assert set(graph.matrices()) == set(model.matrices())   # LSTMCTC's names
    counts: dict[str, list[int]] = {}
    expected = run_graph(graph, x[0], sparsity=counts)
    got = model(x, torch.tensor([40]))[0]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
    # the model counts the same zero deltas as the float runner, and some are zero, some not
    assert model.sparsity == counts
    assert all(0 < zeros < total for zeros, total in counts.values())
    # ... and the thresholds matter: the plain LSTM's output differs
    lstm = LSTMCTC(12, 7, hidden_size=24, proj_size=10, num_layers=2).double().eval()
    lstm.load_state_dict(model.state_dict())
    assert (lstm(x)[0] - got).abs().max() > 1e-3


def test_zero_thresholds_are_exactly_the_lstm():
    model = small_delta(0.0, 0.0)
    lstm = LSTMCTC(12, 7, hidden_size=24, proj_size=10, num_layers=2).double().eval()
    lstm.load_state_dict(model.state_dict())
    x = torch.randn(2, 30, 12, dtype=torch.float64)
    torch.testing.assert_close(model(x), lstm(x), rtol=0, atol=1e-10)


def test_padded_batch_matches_each_utterance_and_counts_only_real_frames():
    model = small_delta()
    x = torch.randn(2, 25, 12, dtype=torch.float64)
    lengths = torch.tensor([25, 14])
    batched = model(x, lengths)
    model.reset_sparsity()
    alone = model(x[1:, :14], torch.tensor([14]))
    torch.testing.assert_close(batched[1, :14], alone[0], rtol=0, atol=1e-12)
    assert model.sparsity["layers.0.dx"][1] == 14 * 12
    assert model.sparsity["layers.1.dh"][1] == 14 * 10


def test_input_deltas_follow_the_memory_equations():
    torch.manual_seed(1)
    x = torch.randn(3, 20, 5, dtype=torch.float64).cumsum(1) * 0.3
    got = input_deltas(x, 0.25)
    for b in range(3):
        memory = torch.zeros(5, dtype=torch.float64)
        for t in range(20):
            delta, memory = threshold_delta(x[b, t], memory, 0.25)
            torch.testing.assert_close(got[b, t], delta, rtol=0, atol=1e-12)
    assert 0.2 < float((got == 0).double().mean()) < 0.9


def test_gradients_flow_through_the_sent_deltas():
    model = small_delta().train()
    x = torch.randn(2, 15, 12, dtype=torch.float64, requires_grad=True)
    model(x).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert model.sparsity == {}   # training forwards count nothing


def test_thresholds_anneal_linearly_from_zero_while_training(monkeypatch):
    model = small_delta(0.4, 0.2, anneal_steps=100).train()
    assert model.thresholds() == (0.0, 0.0)
    model.anneal(25)
    assert model.thresholds() == pytest.approx((0.1, 0.05))
    model.anneal(250)
    assert model.thresholds() == (0.4, 0.2)
    model.anneal(0)
    assert model.eval().thresholds() == (0.4, 0.2)   # evaluation uses the configured values
    assert small_delta(0.4, 0.2).train().thresholds() == (0.4, 0.2)  # anneal_steps=0
    # the Lightning module sets them from the trainer's optimizer step before every batch
    module = CTCModule({"_target_": "asr.models.DeltaLSTMCTC", "hidden_size": 8,
                        "proj_size": 4, "num_layers": 1, "theta_x": 0.4, "theta_h": 0.2,
                        "anneal_steps": 100}, {"kind": "fbank", "n_mels": 8, "n_mfcc": 8},
                       CharVocab().tokens, {})
    monkeypatch.setattr(CTCModule, "global_step", property(lambda self: 75))
    module.on_train_batch_start({}, 0)
    assert module.model.train().thresholds() == pytest.approx((0.3, 0.15))


def test_temporal_sparsity_per_layer_and_overall():
    counts = {"layers.0.dx": [30, 40], "layers.0.dh": [5, 20], "layers.1.dx": [10, 20],
              "layers.1.dh": [20, 20]}
    out = temporal_sparsity(counts)
    assert out["layers.0"] == pytest.approx({"dx": 0.75, "dh": 0.25, "all": 35 / 60})
    assert out["layers.1"] == pytest.approx({"dx": 0.5, "dh": 1.0, "all": 0.75})
    assert out["overall"] == pytest.approx({"dx": 40 / 60, "dh": 25 / 40, "all": 65 / 100})


@pytest.mark.parametrize("key", ["theta_x", "theta_h"])
def test_a_negative_threshold_is_refused_naming_the_key(key):
    config = {"_target_": "asr.models.DeltaLSTMCTC", "hidden_size": 8, "proj_size": 4,
              key: -0.05}
    with pytest.raises(ConfigError, match=rf"model\.{key}: expected a threshold >= 0, got "
                                          r"-0\.05"):
        build_model(config, 10, 5)


def test_presets_compose():
    cfg = compose_train("model=delta_lstm")
    model = build_model(dict(cfg.model), 240, 30)
    assert type(model) is DeltaLSTMCTC
    assert (model.hidden_size, model.proj_size, len(model.layers)) == (256, 128, 2)
    ese = build_model(dict(compose_train("model=delta_lstm_ese").model), 153, 30)
    assert (ese.hidden_size, ese.proj_size) == (1024, 512)
    demo = compose_train("experiment=demo_delta_lstm")
    assert (demo.model.theta_x, demo.model.theta_h) == (0.5, 0.2)
    assert demo.init_from == "exp/demo_lstm/model.ckpt"
    fsdd = compose_train("experiment=fsdd_delta_lstm")
    assert fsdd.model._target_ == "asr.models.DeltaLSTMCTC" and fsdd.data.name == "fsdd"


def test_init_from_an_lstm_checkpoint(tone_manifests, tone_model, tmp_path):
    overrides = [o if o != "model=lstm_small" else "model=delta_lstm"
                 for o in tiny_overrides(tone_manifests, tmp_path / "delta")]
    cfg = compose_train(*overrides, f"init_from={tone_model}", "model.theta_x=0.2")
    spec = validate_train_config(cfg)
    model = build_model(spec.model, spec.features.dim, len(CharVocab()))
    model.load_state_dict(spec.init_state)   # what asr-train does: the names match
    lstm = torch.load(tone_model, weights_only=True)["state_dict"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, lstm[f"model.{key}"]), key
    assert type(model) is DeltaLSTMCTC and model.theta_x == 0.2


def test_asr_eval_prints_the_temporal_sparsity_of_delta_models_only(tone_model, tone_manifests,
                                                                     tmp_path, capsys):
    # the tone LSTM's weights run as a delta LSTM: its checkpoint with the delta model config
    ckpt = torch.load(tone_model, weights_only=True)
    ckpt["hyper_parameters"]["model"] = {**ckpt["hyper_parameters"]["model"],
                                         "_target_": "asr.models.DeltaLSTMCTC",
                                         "theta_x": 0.5, "theta_h": 0.1}
    ckpt["hyper_parameters"]["model"].pop("bidirectional", None)
    delta = tmp_path / "delta.ckpt"
    torch.save(ckpt, delta)
    dev = str(tone_manifests / "dev.jsonl")
    for model, out in ((tone_model, tmp_path / "lstm"), (delta, tmp_path / "delta")):
        assert eval_main([str(model), dev, "--decoder", "greedy", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("temporal sparsity") == 1 and "hidden dh %" in printed
    assert "temporal_sparsity" not in json.loads((tmp_path / "lstm" / "eval.json").read_text())
    fractions = json.loads((tmp_path / "delta" / "eval.json").read_text())["temporal_sparsity"]
    assert set(fractions) == {"layers.0", "overall"}
    assert 0 < fractions["overall"]["all"] < 1
    assert fractions["overall"] == fractions["layers.0"]   # one layer
    row = next(line for line in printed.splitlines() if "overall" in line)
    assert f"{100 * fractions['overall']['all']:.1f}" in row
