import re
from dataclasses import dataclass

import pytest
import torch

from asr.config_errors import ConfigError
from asr.models import LSTMCTC, WaveNetCTC, run_graph
from asr.models.graph import (
    GatedResidualOp,
    InferenceGraph,
    LSTMOp,
    graph_from_dict,
    graph_parameters,
    graph_to_dict,
)
from asr.models.ops import OPS, OpRegistry, UnregisteredOpError


def randomize_batch_norm(model: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def test_seed_wavenet_size_and_names():
    model = WaveNetCTC(20, 28)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(3.7e6, rel=0.02)
    names = dict(model.named_modules())
    for name in ("conv_in", "block_0_1.conv_filter", "block_0_1.conv_gate", "block_0_1.conv_out",
                 "block_2_16.conv_filter", "conv1", "conv2"):
        assert name in names
    assert names["block_1_8.conv_filter"].conv.dilation == (8,)
    assert names["block_1_8.conv_filter"].conv.kernel_size == (7,)
    assert len(model.layer_names) == 15


def test_wavenet_batched_equals_one_by_one():
    torch.manual_seed(0)
    model = WaveNetCTC(10, 29, channels=16, blocks=2, dilations=[1, 2, 4], kernel=5)
    randomize_batch_norm(model)
    model.eval()
    a, b = torch.randn(1, 30, 10), torch.randn(1, 17, 10)
    batch = torch.zeros(2, 30, 10)
    batch[0], batch[1, :17] = a[0], b[0]
    out = model(batch, torch.tensor([30, 17]))
    torch.testing.assert_close(out[0], model(a)[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1, :17], model(b)[0], atol=1e-5, rtol=1e-5)


def test_lstm_batched_equals_one_by_one():
    torch.manual_seed(0)
    model = LSTMCTC(12, 29, hidden_size=24, proj_size=8, num_layers=2).eval()
    a, b = torch.randn(1, 20, 12), torch.randn(1, 9, 12)
    batch = torch.zeros(2, 20, 12)
    batch[0], batch[1, :9] = a[0], b[0]
    out = model(batch, torch.tensor([20, 9]))
    torch.testing.assert_close(out[1, :9], model(b)[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[0], model(a)[0], atol=1e-5, rtol=1e-5)


def test_lstm_gate_matrices_are_ese_named_views():
    model = LSTMCTC(153, 29, hidden_size=64, proj_size=32, num_layers=2)
    mats = model.matrices()
    layer0 = [k for k in mats if k.startswith("layers.0.")]
    assert sorted(layer0) == sorted(f"layers.0.{n}" for n in (
        "W_ix", "W_fx", "W_cx", "W_ox", "W_ir", "W_fr", "W_cr", "W_or", "W_ym"))
    assert mats["layers.0.W_ix"].shape == (64, 153)
    assert mats["layers.0.W_or"].shape == (64, 32)
    assert mats["layers.0.W_ym"].shape == (32, 64)
    assert mats["layers.1.W_fx"].shape == (64, 32)
    # a view: pruning W_fr prunes the forget-gate rows of the fused recurrent weight
    with torch.no_grad():
        mats["layers.1.W_fr"].zero_()
    w_hh = model.layers[1].weight_hh_l0
    assert w_hh[64:128].eq(0).all() and w_hh[:64].ne(0).any() and w_hh[128:].ne(0).any()


@pytest.mark.parametrize("model", [
    WaveNetCTC(10, 29, channels=16, blocks=2, dilations=[1, 2, 4], kernel=5),
    LSTMCTC(12, 29, hidden_size=24, proj_size=8, num_layers=2),
    LSTMCTC(12, 29, hidden_size=16, proj_size=0, num_layers=1),
], ids=["wavenet", "lstmp", "lstm"])
def test_exported_graph_computes_the_model(model):
    torch.manual_seed(1)
    randomize_batch_norm(model, 1)
    model = model.double().eval()
    x = torch.randn(1, 25, model.input_dim, dtype=torch.float64)
    graph = model.export()
    assert graph.input_dim == model.input_dim and graph.vocab_size == 29
    torch.testing.assert_close(run_graph(graph, x[0]), model(x)[0].detach(), atol=1e-10,
                               rtol=1e-10)


def test_graph_contents():
    graph = WaveNetCTC(20, 29, channels=8, blocks=1, dilations=[1, 2], kernel=3).export()
    assert [op.name for op in graph.ops] == ["conv_in", "block_0_1", "block_0_2", "skip_sum",
                                             "conv1", "conv2"]
    block = graph.ops[1]
    assert isinstance(block, GatedResidualOp)
    assert (block.filter.activation, block.gate.activation, block.out.activation) == (
        "tanh", "sigmoid", "tanh")
    assert "block_0_2.conv_gate" in graph.matrices()
    lstm = LSTMCTC(12, 29, hidden_size=16, proj_size=8, num_layers=1).export()
    assert isinstance(lstm.ops[0], LSTMOp) and lstm.ops[0].W_ym.shape == (8, 16)
    assert len(lstm.matrices()) == 10  # 8 gate matrices, the projection, the output layer


def test_bidirectional_runs_but_does_not_export():
    model = LSTMCTC(12, 29, hidden_size=16, proj_size=8, num_layers=2, bidirectional=True)
    assert model(torch.randn(2, 7, 12)).shape == (2, 7, 29)
    assert "layers.0.W_ix_reverse" in model.matrices()
    with pytest.raises(ValueError, match="model.bidirectional"):
        model.export()


@pytest.mark.parametrize("make,key", [
    (lambda: WaveNetCTC(20, 29, kernel=4), "model.kernel"),
    (lambda: WaveNetCTC(20, 29, dilations=[]), "model.dilations"),
    (lambda: LSTMCTC(20, 29, hidden_size=64, proj_size=64), "model.proj_size"),
    (lambda: LSTMCTC(20, 29, num_layers=0), "model.num_layers"),
])
def test_impossible_sizes_name_the_key(make, key):
    with pytest.raises(ConfigError, match=key):
        make()


@dataclass
class DummyOp:
    """An op no backend knows (never declared)."""

    name: str = "dummy"


def test_op_kinds_are_declared_once_on_the_graph_dataclasses():
    assert OPS.kinds()[:6] == [
        "conv1d", "gated_residual", "skip_sum", "lstm", "delta_lstm", "linear"]
    assert OPS.op_class("lstm") is LSTMOp and OPS.kind_of(DummyOp()) is None
    graph = WaveNetCTC(20, 29, channels=8, blocks=1, dilations=[1, 2], kernel=3).export()
    assert [OPS.kind_of(op) for op in graph.ops] == [
        "conv1d", "gated_residual", "gated_residual", "skip_sum", "conv1d", "conv1d"]
    # nested ops serialize through the registry and come back the same
    again = graph_to_dict(graph_from_dict(graph_to_dict(graph)))
    assert again["ops"][1]["filter"]["op"] == "Conv1dOp"
    assert [k for k, *_ in graph_parameters(graph_from_dict(again))] == [
        k for k, *_ in graph_parameters(graph)]


def test_graph_parameters_walks_nested_ops_through_the_registry():
    graph = WaveNetCTC(20, 29, channels=8, blocks=1, dilations=[1], kernel=3).export()
    params = list(graph_parameters(graph))
    assert [(k, kind) for k, kind, _, _ in params[:4]] == [
        ("conv_in", "weight"), ("conv_in.bias", "bias"),
        ("block_0_1.conv_filter", "weight"), ("block_0_1.conv_filter.bias", "bias")]
    # the op given is the one that holds the tensor (the block's conv, not the block)
    assert params[2][2] is graph.ops[1].filter and params[2][3] == "weight"
    assert {k for k, kind, _, _ in params if kind == "weight"} == set(graph.matrices())


def test_an_unknown_op_names_the_backend_and_what_it_knows():
    graph = InferenceGraph("dummy", 4, 4, [DummyOp()])
    message = (f"float: no implementation for op kind 'DummyOp' (registered: "
               f"{', '.join(OPS.implemented('float'))}; DummyOp is not a declared op kind)")
    with pytest.raises(UnregisteredOpError, match=re.escape(message)):
        run_graph(graph, torch.zeros(3, 4))
    with pytest.raises(UnregisteredOpError, match="^parameters: no implementation for op kind"):
        list(graph_parameters(graph))
    with pytest.raises(UnregisteredOpError, match=re.escape("(registered: none;")):
        OPS.lookup("no-such-backend", DummyOp())


def test_a_backend_missing_a_kind_is_reported_and_refuses_the_op():
    reg = OpRegistry()

    @reg.declare_op("alpha")
    @dataclass
    class Alpha:
        pass

    @reg.declare_op("beta")
    @dataclass
    class Beta:
        pass

    class AlphaVariant(Alpha):   # an undeclared subclass runs as its declared parent
        pass

    @reg.register("full", "alpha")
    @reg.register("partial", "alpha")
    def run_alpha(op, x):
        return ("alpha", x)

    reg.register("full", "beta")(lambda op, x: ("beta", x))
    assert reg.kinds() == ["alpha", "beta"] and reg.backends() == ["full", "partial"]
    assert reg.missing() == {"partial": ["beta"]}
    assert reg.missing(["full", "rtl"]) == {"rtl": ["alpha", "beta"]}
    assert reg.dispatch("partial", Alpha(), 3) == ("alpha", 3)
    assert reg.dispatch("full", AlphaVariant(), 4) == ("alpha", 4)
    assert reg.dispatch("full", Beta(), 5) == ("beta", 5)
    with pytest.raises(UnregisteredOpError, match=re.escape(
            "partial: no implementation for op kind 'beta' (registered: alpha)")):
        reg.dispatch("partial", Beta(), 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("full", "alpha")(run_alpha)
    with pytest.raises(ValueError, match="'gamma': not declared"):
        reg.register("full", "gamma")(run_alpha)
    with pytest.raises(ValueError, match="already declared"):
        reg.declare_op("beta")(type("Other", (), {}))


def _lstm_weights(hidden: int = 8, inputs: int = 5, proj: int = 4) -> dict:
    g = torch.Generator().manual_seed(0)
    kw = {f"W_{k}x": torch.randn(hidden, inputs, generator=g) * 0.5 for k in "ifco"}
    kw |= {f"W_{k}r": torch.randn(hidden, proj, generator=g) * 0.5 for k in "ifco"}
    kw |= {f"b_{k}": torch.randn(hidden, generator=g) * 0.1 for k in "ifco"}
    kw["W_ym"] = torch.randn(proj, hidden, generator=g) * 0.5
    return kw


def test_delta_lstm_with_zero_thresholds_is_the_lstm():
    from asr.models.graph import DeltaLSTMOp, delta_lstm_layer, lstm_layer
    x = torch.randn(20, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    kw = _lstm_weights()
    sparsity: dict = {}
    delta = delta_lstm_layer(x, DeltaLSTMOp("l", **kw), sparsity=sparsity)
    torch.testing.assert_close(delta, lstm_layer(x, LSTMOp("l", **kw)), rtol=0, atol=1e-12)
    # only the first step's recurrent input (y_0 = 0 against y_hat = 0) sends nothing
    assert sparsity == {"l.dx": [0, 100], "l.dh": [4, 80]}


def test_delta_lstm_sends_only_changes_that_reach_the_threshold():
    from asr.models.graph import DeltaLSTMOp, delta_lstm_layer, threshold_delta
    delta, memory = threshold_delta(torch.tensor([0.05, 0.2, -0.3]), torch.zeros(3), 0.1)
    assert delta.tolist() == pytest.approx([0.0, 0.2, -0.3])
    assert memory.tolist() == pytest.approx([0.0, 0.2, -0.3])
    # the 0.05 change is remembered as not sent: a later 0.06 step crosses 0.1 from x_hat = 0
    delta, memory = threshold_delta(torch.tensor([0.11, 0.25, -0.3]), memory, 0.1)
    assert delta.tolist() == pytest.approx([0.11, 0.0, 0.0])
    # a constant input after the first step sends nothing, so the gates see frozen M
    x = torch.ones(6, 5, dtype=torch.float64)
    sparsity: dict = {}
    delta_lstm_layer(x, DeltaLSTMOp("l", **_lstm_weights(), theta_x=0.1, theta_h=0.1),
                     sparsity=sparsity)
    assert sparsity["l.dx"] == [25, 30]
