"""The hw engine: bit-exact against the per-MAC reference, timing against ESE and BBS, the
engine's WER against the artifact's quantized model, and the asr-hw commands."""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from asr.compress.app import compress
from asr.compress.artifact import (
    Artifact,
    build_artifact,
    compressed_acoustic_model,
    read_artifact,
)
from asr.compress.config import compress_preset, validate_against_model
from asr.compress.fixed_point import Rounding, narrow, shift_round
from asr.compress.pruning import prune_model
from asr.config_errors import ConfigError
from asr.data.manifest import read_manifest
from asr.decode.recognizer import greedy_error_rates
from asr.models import LSTMCTC, WaveNetCTC
from asr.models.graph import LSTMOp, run_graph
from asr.models.ops import OPS, UnregisteredOpError
from asr.train.config import CONF_DIR
from hw import lstm_cell
from hw.activation_unit import build_activation_unit
from hw.cli import main as hw_main
from hw.config import ActivationUnitConfig, load_engine
from hw.engine import activity, engine_acoustic_model
from hw.functional import Datapath, run_engine, run_engine_batch
from hw.integer_model import compile_model
from hw.lstm_cell import COMPILED, LayerKernels, ProjectionFormat
from hw.reference import fit_int, run_reference, shift_round_int
from hw.timing import column_broadcast_cycles, frame_timing
from hw.validation import (
    BBS_GOPS,
    ESE_GOPS,
    ESE_TABLE,
    ESE_TOTAL_US,
    LSTM_LAYER,
    ese_shaped_artifact,
)


def make_artifact(model, preset: str, *overrides: str, seed: int = 0) -> Artifact:
    torch.manual_seed(seed)
    cfg = compress_preset(preset, *overrides)
    views = model.matrices()
    densities = validate_against_model(cfg, views, model.model_type)
    masks = prune_model(views, densities, cfg.prune)
    calibration = [torch.randn(30, model.input_dim) * 2 for _ in range(2)]
    art = build_artifact(model, masks, densities, cfg, calibration)
    art.vocab_tokens = [str(i) for i in range(model.vocab_size)]
    return art


def small_lstm(seed: int = 0) -> LSTMCTC:
    torch.manual_seed(seed)
    m = LSTMCTC(16, 12, hidden_size=32, proj_size=16, num_layers=2).eval()
    m.input_dim = 16
    return m


def small_wavenet(seed: int = 0) -> WaveNetCTC:
    torch.manual_seed(seed)
    m = WaveNetCTC(16, 12, channels=16, blocks=1, dilations=(1, 2), kernel=3).eval()
    for mod in m.modules():   # non-trivial batch-norm statistics to fold
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
    m.input_dim = 16
    return m


# (compression preset and overrides, engine preset and overrides)
CASES = {
    "ese-csc-pwl": (("ese", "compress.prune.num_pes=4"), ("ese", "num_pes=4")),
    "bbs-csb-lut": (("bbs",), ("bbs", "num_pes=4", "macs_per_pe=2")),
    "codebook-eie": (("deep_compression",), ("eie_like", "num_pes=4")),
    "float-dense": (("none",), ("ese", "sparse_format=dense", "num_pes=2")),
    "row-dfp-floor-wrap": (("ese", "compress.prune.num_pes=4",
                            "compress.quant.weights.granularity=row"),
                           ("ese", "num_pes=4", "rounding=floor", "saturate=false",
                            "activation_bits=10", "accumulator_bits=24", "product_bits=22")),
    "bank-dfp-even-narrow": (("bbs", "compress.quant.weights.granularity=bank"),
                             ("bbs", "num_pes=4", "rounding=nearest_even",
                              "activation_bits=8", "activation_unit.entries=128",
                              "accumulator_bits=26", "product_bits=24",
                              "guard_bits=2")),
    "zero-rounding-narrow-acc": (("ese", "compress.prune.num_pes=4"),
                                 ("ese", "num_pes=4", "rounding=zero", "accumulator_bits=28",
                                  "activation_bits=12", "product_bits=24", "guard_bits=14")),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("model_type", ["lstm", "wavenet"])
def test_vectorized_engine_is_bit_exact_against_the_per_mac_reference(case, model_type):
    (cpreset, *cover), (epreset, *eover) = CASES[case]
    model = small_lstm() if model_type == "lstm" else small_wavenet()
    extra = ["+compress.prune.targets.conv_in=1.0"] if (
        model_type == "wavenet" and cpreset == "bbs") else []
    art = make_artifact(model, cpreset, *cover, *extra)
    em = compile_model(art, load_engine(epreset, eover))
    narrow_case = case in ("row-dfp-floor-wrap", "bank-dfp-even-narrow",
                           "zero-rounding-narrow-acc")
    # narrow cases get inputs far beyond the calibrated range, so that events happen
    feats = torch.randn(7, 16) * (12 if narrow_case else 3)
    fast = run_engine(em, feats)
    logits, frac, events = run_reference(em, feats)
    assert torch.equal(fast.logits, logits)
    assert fast.frac == frac
    assert fast.events == events
    if narrow_case:
        kinds = {k for counts in events.values() for k in counts}
        assert kinds & {"saturation", "wrap", "accumulator_overflow"}
    # side by side with shorter and longer utterances, each run equals its run alone
    others = [torch.randn(n, 16) * (12 if narrow_case else 3) for n in (3, 11, 7, 1)]
    batch = run_engine_batch(em, [feats, *others])
    for run, f in zip(batch, [feats, *others]):
        alone = run_engine(em, f)
        assert torch.equal(run.logits, alone.logits) and run.frac == alone.frac
        assert run.events == alone.events


# Engines for the compiled LSTM step: one format per row (ese's per-matrix formats), every
# rounding mode, saturating and wrapping; the narrow ones clip.
COMPILED_CASES = {
    "nearest": (),
    "floor-wrap": ("rounding=floor", "saturate=false", "activation_bits=10",
                   "accumulator_bits=24", "product_bits=22"),
    "even-narrow": ("rounding=nearest_even", "activation_bits=8", "accumulator_bits=26",
                    "product_bits=24", "guard_bits=2"),
    "zero-narrow-acc": ("rounding=zero", "accumulator_bits=28", "activation_bits=12",
                        "product_bits=24", "guard_bits=14"),
}


# The default case in the default run (it is the path of every layer of 512 cells or more);
# the clipping cases, each a compile of its own, in the slow run.
@pytest.mark.parametrize("case", [c if c == "nearest" else pytest.param(c, marks=pytest.mark.slow)
                                  for c in sorted(COMPILED_CASES)])
def test_compiled_lstm_steps_are_bit_exact_against_the_per_mac_reference(case):
    # Large layers step through torch.compile; forced here on the small LSTM (compiling takes
    # tens of seconds with an empty cache).
    COMPILED.clear()
    em = compile_model(make_artifact(small_lstm(), "ese", "compress.prune.num_pes=4"),
                       load_engine("ese", ["num_pes=4", *COMPILED_CASES[case]]))
    feats = [torch.randn(n, 16) * (3 if case == "nearest" else 12) for n in (7, 3, 11, 1)]
    assert run_engine_batch(em, feats[:1])[0].compiled_layers == [], "small layers step eagerly"
    batch = run_engine_batch(em, feats, compiled=True)
    assert len(COMPILED) == 2, "one compile per layer format"
    layers = [op.name for op in em.graph.ops if type(op) is LSTMOp]
    for run, f in zip(batch, feats):
        assert run.compiled_layers == layers and run.fallbacks == {}, "compiling failed"
        logits, frac, events = run_reference(em, f)
        alone = run_engine(em, f, compiled=True)
        assert alone.compiled_layers == layers
        assert torch.equal(run.logits, logits) and torch.equal(alone.logits, logits)
        assert run.frac == alone.frac == frac
        assert run.events == alone.events == events
    if case != "nearest":
        kinds = {k for run in batch for counts in run.events.values() for k in counts}
        assert kinds & {"saturation", "wrap", "accumulator_overflow"}


def test_compiled_layer_kernels_equal_the_eager_ones_for_any_rows_and_every_clip():
    # The kernels' own contract, on operands that overflow every narrowing: wrapped recurrent
    # and gate sums, wrapped projection sums, wrapping fits; one compile for every row count.
    em = compile_model(make_artifact(small_lstm(), "ese", "compress.prune.num_pes=4"),
                       load_engine("ese", ["num_pes=4", "saturate=false", "rounding=floor"]))
    dp = Datapath(em)
    f = dp.cell_formats(32, 13, 14, 20, shift_r=9, shift_x=-2, wrap_products=True,
                        wrap_gates=True)
    p = ProjectionFormat(16, 5, 16, False, Rounding.FLOOR, 32, True)
    units = em.units["sigmoid"], em.units["tanh"]
    compiled = LayerKernels(f, p, *units, compiled=True)
    eager = LayerKernels(f, p, *units, compiled=False)
    assert compiled.compiled is not None and eager.compiled is None
    gen = torch.Generator().manual_seed(0)
    for rows in (1, 2, 7):
        products = torch.randint(-2 ** 40, 2 ** 40, (rows, 128), generator=gen).double()
        inputs = torch.randint(-2 ** 31, 2 ** 31, (rows, 128), generator=gen)
        bias = torch.randint(-2 ** 20, 2 ** 20, (128,), generator=gen)
        c = torch.randint(-2 ** 15, 2 ** 15, (rows, 32), generator=gen)
        sums = torch.randint(-2 ** 40, 2 ** 40, (rows, 16), generator=gen).double()
        for got, want in ((compiled.step(products, inputs, bias, c),
                           eager.step(products, inputs, bias, c)),
                          (compiled.project(sums), eager.project(sums))):
            assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))
        counts = eager.step(products, inputs, bias, c)[3]   # both wraps before the cell
        assert (counts[:, :2] > 0).all() and (eager.project(sums)[2] > 0).all()


@pytest.mark.parametrize("where", ["compiling", "a compiled step"])
def test_a_failed_compiled_step_falls_back_to_eager_steps_and_the_run_says_so(where,
                                                                              monkeypatch):
    # (no C++ compiler here: compiling, or the compiled code, raises)
    def broken(*_):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(lstm_cell, "COMPILED", {})   # the real cache stays as it is
    if where == "compiling":
        monkeypatch.setattr(lstm_cell, "_exported", broken)
    else:
        monkeypatch.setattr(lstm_cell, "_compiled_kernels", lambda *_: (broken, broken))
    em = compile_model(make_artifact(small_lstm(), "ese", "compress.prune.num_pes=4"),
                       load_engine("ese", ["num_pes=4"]))
    feats = [torch.randn(n, 16) * 3 for n in (7, 3)]
    layers = [op.name for op in em.graph.ops if type(op) is LSTMOp]
    for _ in range(2):   # every run says so, not only the first
        runs = [*run_engine_batch(em, feats, compiled=True),
                run_engine(em, feats[0], compiled=True)]
        for run in runs:
            assert run.compiled_layers == []
            assert list(run.fallbacks) == layers
            assert all(v.startswith(f"{where} failed") and "no C++ compiler" in v
                       for v in run.fallbacks.values())
    # the same integers as eager steps, and a run that asks for none reports no failure
    eager = run_engine_batch(em, feats, compiled=False)
    assert all(run.fallbacks == {} and run.compiled_layers == [] for run in eager)
    for got, want in zip(runs, [*eager, eager[0]], strict=True):
        assert torch.equal(got.logits, want.logits) and got.events == want.events


def test_steps_with_shifts_of_31_bits_or_more_are_not_compiled():
    em = compile_model(make_artifact(small_lstm(), "ese", "compress.prune.num_pes=4"),
                       load_engine("ese", ["num_pes=4"]))
    formats = Datapath(em).cell_formats(1024, 12, 13, 20, shift_r=15, shift_x=8)
    assert formats.compilable
    assert not replace(formats, shift_r=31).compilable
    assert not replace(formats, frac=torch.tensor([20, 21])).compilable   # one per row


# Every backend that walks an inference graph, by its registry name (hw.export reads the
# compiled matrices and the datapath's trace; it does not walk ops).
BACKENDS = ("float", "parameters", "datapath", "reference", "timing", "activity")


def test_every_op_kind_has_an_implementation_in_every_backend():
    backends = sorted(set(BACKENDS) | set(OPS.backends()))
    gaps = OPS.missing(backends)
    assert not gaps, "\n".join(f"{backend}: no implementation for op kind(s) {', '.join(kinds)}"
                                for backend, kinds in gaps.items())
    assert set(OPS.kinds()) >= {"conv1d", "gated_residual", "skip_sum", "lstm", "linear"}


def test_engine_backends_refuse_an_op_they_do_not_know():
    @dataclass
    class DummyOp:
        name: str = "dummy"

    em = compile_model(make_artifact(small_lstm(), "ese", "compress.prune.num_pes=4"),
                       load_engine("ese", ["num_pes=4"]))
    feats = torch.randn(3, 16)
    run = run_engine(em, feats, trace=True)
    em.graph.ops.insert(0, DummyOp())
    for backend, call in (("datapath", lambda: run_engine(em, feats)),
                          ("reference", lambda: run_reference(em, feats)),
                          ("timing", lambda: frame_timing(em)),
                          ("activity", lambda: activity(em, run))):
        known = ", ".join(OPS.implemented(backend))
        with pytest.raises(UnregisteredOpError, match=re.escape(
                f"{backend}: no implementation for op kind 'DummyOp' (registered: {known}; "
                "DummyOp is not a declared op kind)")):
            call()


def test_stored_formats_are_what_the_engine_streams():
    art = make_artifact(small_lstm(), "ese", "compress.prune.num_pes=4")
    em = compile_model(art, load_engine("ese", ["num_pes=4"]))
    w = em.matrices["layers.0.W_ir"]
    assert w.storage is not None and w.storage.num_pes == 4
    # An engine with other PEs re-encodes for itself; the weights are the same integers.
    em8 = compile_model(art, load_engine("ese", ["num_pes=8"]))
    assert em8.matrices["layers.0.W_ir"].storage.num_pes == 8
    assert torch.equal(em8.matrices["layers.0.W_ir"].weights, w.weights)
    with pytest.raises(ConfigError, match="hw.weight_bits"):
        compile_model(art, load_engine("ese", ["num_pes=4", "weight_bits=8"]))
    with pytest.raises(ConfigError, match="hw.sparse_format"):
        compile_model(art, load_engine("bbs", ["num_pes=4"]))


def test_engine_tracks_the_float_graph_closely_at_16_bits():
    model = small_lstm()
    art = make_artifact(model, "ese", "compress.prune.num_pes=4")
    em = compile_model(art, load_engine("ese", ["num_pes=4"]))
    feats = torch.randn(20, 16) * 2
    ref = run_graph(em.graph, feats)
    out = run_engine(em, feats).logits_float()
    assert (ref - out).abs().max() < 0.02 * ref.abs().max()


@pytest.mark.parametrize("rounding", ["nearest", "nearest_even", "floor", "zero"])
def test_shift_round_and_narrow_match_the_scalar_definitions(rounding):
    rng = random.Random(1)
    values = [rng.randint(-5000, 5000) for _ in range(400)] + [-6, -5, -4, -3, -2, 2, 3, 5, 6]
    for shift in (0, 1, 2, 3, 7, -2):
        got = shift_round(torch.tensor(values), shift, rounding).tolist()
        assert got == [shift_round_int(v, shift, rounding) for v in values]
    # ties: 5/2 and -5/2, 3/2 and -3/2
    tie = shift_round(torch.tensor([5, -5, 3, -3]), 1, rounding).tolist()
    assert tie == {"nearest": [3, -2, 2, -1], "nearest_even": [2, -2, 2, -2],
                   "floor": [2, -3, 1, -2], "zero": [2, -2, 1, -1]}[rounding]
    q, n = narrow(torch.tensor([-200, -128, 127, 300]), 8, saturate=True)
    assert q.tolist() == [-128, -128, 127, 127] and n == 2
    q, n = narrow(torch.tensor([-200, 300]), 8, saturate=False)
    assert q.tolist() == [fit_int(-200, 8, False)[0], fit_int(300, 8, False)[0]] == [56, 44]


# Error bounds: a 2048-entry LUT over [-8, 8) holds each bin's centre, off by at most
# max|f'| * width / 2 = 1/256; 64 linear pieces are off by width**2 / 8 * max|f''| (0.77 for
# tanh) = 0.006; plus half an output LSB.
@pytest.mark.parametrize("kind,tol", [("lut", 4e-3), ("pwl", 6.5e-3)])
def test_activation_units_approximate_sigmoid_and_tanh(kind, tol):
    cfg = ActivationUnitConfig(kind=kind, entries=2048, segments=64, input_range=8.0)
    for fn, ref in (("sigmoid", torch.sigmoid), ("tanh", torch.tanh)):
        unit = build_activation_unit(fn, cfg, 16, "nearest")
        q = torch.arange(-(1 << 15), 1 << 15, 7)
        y = unit(q).double() * 2.0 ** -unit.out_frac
        assert (y - ref(q.double() * 2.0 ** -unit.in_frac)).abs().max() < tol


def test_column_broadcast_queue_absorbs_imbalance_up_to_its_depth():
    # PE0 works on columns 0-1, PE1 on columns 2-3 (4 cycles each); one column is broadcast
    # per cycle. Deep queue: PE1 starts column 2 at cycle 2 and ends at 10. Queue of one:
    # column 2 waits until every PE has started column 1 (PE0 at 4), column 3 until PE0 has
    # started column 2 (at 8): PE1 ends at 12.
    work = np.array([[4, 4, 0, 0], [0, 0, 4, 4]], dtype=float)
    cfg = load_engine("ese", ["num_pes=2", "activation_queue_depth=8"])
    deep, busy = column_broadcast_cycles(work, cfg)
    assert deep.tolist() == [10.0] and busy.tolist() == [[8.0, 8.0]]
    shallow, _ = column_broadcast_cycles(work, replace(cfg, activation_queue_depth=1))
    assert shallow.tolist() == [12.0]
    # zero inputs skipped (EIE): a frame whose only non-zero input is column 0 costs 4 cycles
    active = np.array([[True, False, False, False], [True, True, True, True]])
    cyc, _ = column_broadcast_cycles(work, cfg, active)
    assert cyc.tolist() == [4.0, 10.0]


def test_ese_preset_reproduces_ese_timing_table():
    preset = compress_preset("ese")
    frame = frame_timing(compile_model(ese_shaped_artifact(preset), load_engine("ese")),
                         include=LSTM_LAYER)
    assert preset == compress_preset("ese")   # the caller's config is left as given
    for m in frame.matrices:
        _, compute, total = ESE_TABLE[m.name.rsplit(".", 1)[1]]
        # padding-free load-balanced pattern, as ESE's byte column shows (2 bytes a weight)
        assert m.entries == m.useful_macs, m.name
        assert abs(m.compute_us - compute) <= 0.05 * compute, m.name
        assert abs(m.total_us - total) <= 0.10 * total, m.name
    assert abs(frame.latency_us - ESE_TOTAL_US) <= 0.2 * ESE_TOTAL_US
    assert abs(frame.gops() - ESE_GOPS) <= 0.15 * ESE_GOPS


def test_bbs_preset_reaches_bbs_throughput():
    frame = frame_timing(compile_model(ese_shaped_artifact(compress_preset("bbs")),
                                       load_engine("bbs")), include=LSTM_LAYER)
    assert abs(frame.gops() - BBS_GOPS) <= 0.15 * BBS_GOPS
    assert all(m.imbalance == 1.0 for m in frame.matrices)   # bank-balanced: no imbalance


def test_engine_wer_equals_the_quantized_model_when_configured_alike(tone_model,
                                                                      tone_manifests,
                                                                      tmp_path):
    out = tmp_path / "ese.model"
    compress(compose_compress_app(f"model={tone_model}", "compress=ese",
                                  "compress.prune.num_pes=8", f"out={out}",
                                  f"calibration.manifest={tone_manifests}/train.jsonl",
                                  "evaluate=false"))
    art = read_artifact(out)
    wide = load_engine("ese", ["num_pes=8", "activation_bits=24", "product_bits=40",
                               "accumulator_bits=52", "guard_bits=16",
                               "activation_unit.segments=4096"])
    engine = engine_acoustic_model(art, wide)
    quantized = compressed_acoustic_model(art)
    dev = read_manifest(tone_manifests / "dev.jsonl")
    e, q = greedy_error_rates(engine, dev), greedy_error_rates(quantized, dev)
    assert e.wer == q.wer and e.cer == q.cer
    assert q.cer < 0.5     # a model that recognizes something, so equality means something
    # the ESE preset itself (16-bit activations) stays close
    ese = greedy_error_rates(engine_acoustic_model(art, load_engine("ese", ["num_pes=8"])), dev)
    assert abs(ese.cer - q.cer) <= 0.05


def compose_compress_app(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR / "asr_compress"), version_base="1.3"):
        return compose(config_name="asr_compress", overrides=list(overrides))


def test_asr_hw_commands(tone_model, tone_manifests, tmp_path, capsys):
    out = tmp_path / "ese.model"
    compress(compose_compress_app(f"model={tone_model}", "compress=ese",
                                  "compress.prune.num_pes=8", f"out={out}",
                                  f"calibration.manifest={tone_manifests}/train.jsonl",
                                  "evaluate=false"))
    wav = tone_manifests / "audio" / "u1_0.wav"
    capsys.readouterr()
    assert hw_main(["run", str(out), str(wav), "--engine", "ese", "--set", "num_pes=8",
                    "--json"]) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    hwc = rec["hardware"]
    assert rec["path"] == str(wav) and hwc["latency_s"] > 0 and hwc["utterance_uj"] > 0
    assert hwc["frames"] > 0 and math.isclose(hwc["rtf"], hwc["latency_s"] / rec["duration"],
                                              rel_tol=1e-2)
    plot = tmp_path / "formats.png"
    assert hw_main(["trace", str(out), str(wav), "--set", "num_pes=8", "--formats", "2-6,4-12",
                    "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    assert "layers.0" in text and "4-12" in text and plot.stat().st_size > 1000
    assert hw_main(["timing", str(out), "--set", "num_pes=8", "--json"]) == 0
    timing = json.loads(capsys.readouterr().out)
    assert {m["name"] for m in timing["matrices"]} >= {"layers.0.W_ix", "output"}
    exp = tmp_path / "export"
    assert hw_main(["export", str(out), str(exp), "--set", "num_pes=8", "--audio",
                    str(wav)]) == 0
    manifest = json.loads((exp / "manifest.json").read_text())
    words = (exp / "weights" / "layers.0.W_ir.pe0.hex").read_text().split()
    meta = manifest["files"]["weights/layers.0.W_ir.pe0.hex"]
    assert len(words) == meta["entries"] and meta["word_bits"] == 16
    assert all(len(w) == 4 for w in words)
    assert len((exp / "tables" / "tanh.hex").read_text().split()) == 64 + 1   # pwl: 64 segments
    golden = (exp / "golden" / "output.hex").read_text().splitlines()
    assert len(golden) == 3
    assert hw_main(["run", str(out), str(wav), "--engine", "nope"]) == 2
    assert "unknown engine preset" in capsys.readouterr().err
    assert hw_main(["eval", str(out), str(tone_manifests / "dev.jsonl"), "--set", "num_pes=8",
                    "--json"]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["utterances"] == 12 and ev["simulation_x_realtime"] > 0
    assert math.isclose(ev["simulation_utterances_per_second"],
                        ev["utterances"] / ev["simulation_seconds"])
    assert math.isclose(ev["dynamic_power_w"] + ev["static_power_w"], ev["power_w"])
    assert hw_main(["eval", str(out), str(tone_manifests / "dev.jsonl"), "--set",
                    "num_pes=8"]) == 0
    assert "utterances/s" in capsys.readouterr().out
