"""The delta engine: bit-exact against the per-MAC reference, the LSTM engine at zero
thresholds, column-skipping timing with per-frame cycles, the Spartus validation figures and
its bad inputs."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from asr.compress.app import compress
from asr.compress.artifact import save_artifact
from asr.config_errors import ConfigError
from asr.models.graph import run_graph
from hw.cli import main as hw_main
from hw.config import load_engine
from hw.energy import frame_energy
from hw.engine import EngineModule, activity, temporal_sparsity
from hw.export import export_engine
from hw.functional import run_engine
from hw.integer_model import compile_model
from hw.reference import run_reference
from hw.timing import delta_column_cycles, frame_timing, pe_column_work
from hw.validation import (
    SPARTUS_HIDDEN,
    SPARTUS_INPUTS,
    SPARTUS_LAYER,
    as_delta_artifact,
    cbtd_mask,
    delta_activity,
    spartus_layer_artifact,
)
from tests.test_hw import make_artifact, small_lstm

# The delta preset resized for the 32-unit test LSTM (12-bit weights as compress=ese stores
# them, so a wider product and accumulator).
SMALL = ["num_pes=4", "mac_arrays=2", "weight_bits=12", "product_bits=28",
         "accumulator_bits=32"]


def delta_artifact(theta_x: float, theta_h: float, seed: int = 0):
    art = make_artifact(small_lstm(seed), "ese", "compress.prune.num_pes=4")
    return as_delta_artifact(art, theta_x, theta_h)


# (thresholds, engine preset and overrides, feature scale)
CASES = {
    "delta-q8.8": ((0.05, 0.02), ("delta", *SMALL), 3),
    "delta-calibrated-formats": ((0.1, 0.05), ("delta", *SMALL, "activation_frac=null"), 3),
    # terms rounded into M every step (guard_bits 0), narrow widths, features far beyond the
    # calibrated range: saturated deltas, saturated gates and accumulator overflows
    "narrow-rounded-M": ((0.2, 0.01), ("delta", *SMALL, "activation_frac=null",
                                       "activation_bits=10", "activation_unit.entries=256",
                                       "guard_bits=0", "accumulator_bits=24",
                                       "product_bits=22"), 12),
    "floor-wrap": ((0.05, 0.05), ("delta", *SMALL, "activation_frac=null", "rounding=floor",
                                  "saturate=false", "activation_bits=10",
                                  "activation_unit.entries=256", "accumulator_bits=24",
                                  "product_bits=22"), 12),
    "ese-engine": ((0.05, 0.02), ("ese", "num_pes=4"), 3),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_delta_datapath_is_bit_exact_against_the_per_mac_reference(case):
    (tx, th), (preset, *over), scale = CASES[case]
    em = compile_model(delta_artifact(tx, th), load_engine(preset, over))
    torch.manual_seed(1)
    feats = torch.randn(9, 16) * scale
    fast = run_engine(em, feats, trace=True)
    logits, frac, events = run_reference(em, feats)
    assert torch.equal(fast.logits, logits)
    assert fast.frac == frac
    assert fast.events == events
    sparsity = temporal_sparsity(fast)
    assert set(sparsity) == {f"layers.{i}.{d}" for i in (0, 1) for d in ("dx", "dh")}
    zeros = sum(z for z, _ in sparsity.values())
    total = sum(n for _, n in sparsity.values())
    assert 0 < zeros < total       # some deltas sent, some skipped
    if scale > 3:
        kinds = {k for counts in events.values() for k in counts}
        assert kinds & {"saturation", "wrap", "accumulator_overflow"}
        assert any(k.endswith(".dx") and ("saturation" in v or "wrap" in v)
                   for k, v in events.items())


def test_zero_thresholds_give_the_lstm_engine_bit_for_bit():
    """With thresholds 0 every change is sent, x_hat = x and y_hat = y_{t-1}; when no delta
    saturates and no term is rounded into M (guard_bits reach every term's fraction), M_t is
    exactly the LSTM's accumulator, so the outputs are identical."""
    feats = torch.randn(9, 16) * 3
    lstm_art = make_artifact(small_lstm(), "ese", "compress.prune.num_pes=4")
    engine = load_engine("delta", [*SMALL, "activation_frac=null", "skip_zero_deltas=false",
                                   "guard_bits=12"])
    lstm = run_engine(compile_model(lstm_art, engine), feats)
    delta = run_engine(compile_model(delta_artifact(0.0, 0.0), engine), feats, trace=True)
    assert torch.equal(lstm.logits, delta.logits)
    assert not any(k.endswith((".dx", ".dh")) and "saturation" in v
                   for k, v in delta.events.items())


def test_engine_tracks_the_float_delta_graph():
    art = delta_artifact(0.05, 0.02)
    feats = torch.randn(9, 16) * 3
    em = compile_model(art, load_engine("delta", [*SMALL, "activation_frac=null"]))
    fixed = run_engine(em, feats).logits_float()
    ref = run_graph(art.graph, feats)
    assert float((fixed - ref).abs().max()) < 0.05 * float(ref.abs().max())


def test_delta_timing_fetches_only_non_zero_delta_columns():
    # balanced columns (4 cycles each) dealt in turn to 3 arrays
    per_col = np.full(10, 4.0)
    active = np.zeros((3, 10))
    active[0, :] = 1                  # 10 columns: 4, 3, 3 per array
    active[1, [2, 5]] = 1             # 2 columns
    assert delta_column_cycles(per_col, active, 3).tolist() == [16.0, 4.0, 0.0]
    em = compile_model(delta_artifact(0.05, 0.02), load_engine("delta", SMALL))
    run = run_engine(em, torch.randn(9, 16) * 3, trace=True)
    acts = activity(em, run)
    frame = frame_timing(em, acts)
    per_frame = frame.cycles_per_frame()
    assert per_frame.shape == (9,) and math.isclose(per_frame.mean(), frame.cycles)
    worst = frame_timing(em)                 # every delta non-zero
    assert worst.cycles_per_frame().shape == (1,) and worst.cycles >= per_frame.max()
    gates = next(m for m in frame.matrices if m.name == "layers.0.W_x|W_r")
    on = np.concatenate([acts["layers.0.dx"], acts["layers.0.dh"]], axis=1)
    # every fetched column costs its array the most entries any PE holds in it, at least 1
    work = sum(em.matrices[f"layers.0.W_{g}{s}"].storage.col_counts.numpy()
               for g in "ifco" for s in "x")
    assert gates.columns_read == pytest.approx(on.sum(axis=1).mean())
    assert gates.macs == round(float((on[:, :16] @ work.sum(axis=0)).mean()
                                     + (on[:, 16:] @ sum(
                                         em.matrices[f"layers.0.W_{g}r"].storage.col_counts
                                         .numpy() for g in "ifco").sum(axis=0)).mean()))
    # the ese engine runs the same delta model reading every column every frame
    ese = compile_model(delta_artifact(0.05, 0.02), load_engine("ese", ["num_pes=4"]))
    lstm = compile_model(make_artifact(small_lstm(), "ese", "compress.prune.num_pes=4"),
                         load_engine("ese", ["num_pes=4"]))
    assert frame_timing(ese).cycles == frame_timing(lstm).cycles


def test_a_delta_engine_deals_its_other_products_to_every_array():
    """The projection and the output layer take no deltas: their columns, every one sent, go
    to the MAC arrays in turn (each costing its array the most entries a PE holds in it), so
    two arrays take fewer cycles than one."""
    art = delta_artifact(0.05, 0.02)
    two = compile_model(art, load_engine("delta", SMALL))
    one = compile_model(art, load_engine("delta", [*SMALL, "mac_arrays=1"]))
    cfg = two.cfg
    for name in ("layers.0.W_ym", "layers.1.W_ym", "output"):
        mat = two.matrices[name]
        per_col = np.maximum(1.0, np.ceil(pe_column_work(mat, cfg) / cfg.macs_per_pe)
                             .max(axis=0))
        dealt = [per_col[a::cfg.mac_arrays].sum() for a in range(cfg.mac_arrays)]
        timed = next(m for m in frame_timing(two).matrices if m.name == name)
        assert timed.compute_cycles == max(dealt) + cfg.pipeline_depth
        alone = next(m for m in frame_timing(one).matrices if m.name == name)
        assert timed.compute_cycles < alone.compute_cycles
        assert timed.macs == pytest.approx(alone.macs)


def test_activity_of_a_delta_layer_is_its_memories_also_when_deltas_wrap(tmp_path):
    """An engine without delta support multiplies the memories ``x_hat``/``y_hat``; at zero
    thresholds every change is sent, so they are the input and the previous output, also
    when a change leaves the delta's range and wraps (a swing from +100 to -100 in 8 bits):
    the activity masks are the datapath's memories' non-zeros, not the deltas' running sum."""
    art = delta_artifact(0.0, 0.0)
    em = compile_model(art, load_engine("eie_like", ["num_pes=4", "saturate=false",
                                                     "activation_bits=8", "accumulator_bits=32",
                                                     "activation_unit.entries=256"]))
    codes = torch.tensor([100.0, -100.0, 0.0] * 3)[:, None].expand(9, 16).clone()
    codes[:, ::2] *= -1
    feats = codes * 2.0 ** -em.signal("input")
    run = run_engine(em, feats, trace=True)
    assert torch.equal(run.trace["input"][0], codes.long())
    assert run.events["layers.0.dx"]["wrap"] > 0
    acts = activity(em, run)
    for name in ("layers.0", "layers.1"):
        x = run.trace["input" if name == "layers.0" else "layers.0"][0]
        y = run.trace[name][0]
        y_prev = torch.cat([torch.zeros_like(y[:1]), y[:-1]])
        for g in "ifco":
            assert np.array_equal(acts[f"{name}.W_{g}x"], (x != 0).numpy())
            assert np.array_equal(acts[f"{name}.W_{g}r"], (y_prev != 0).numpy())
    assert frame_timing(em, acts).cycles < frame_timing(em).cycles   # zero inputs skipped
    # the memories are golden vectors beside the deltas, as 8-bit two's complement words
    export_engine(art, em.cfg, tmp_path, feats, frames=9)
    for key in ("x_hat", "y_hat"):
        rows = (tmp_path / "golden" / f"layers.0.{key}.hex").read_text().splitlines()
        words = torch.tensor([[int(w, 16) for w in r.split()] for r in rows])
        assert torch.equal(words - 256 * (words >= 128), run.trace[f"layers.0.{key}"][0])


def test_delta_activity_is_the_columns_the_reference_fetches(monkeypatch):
    """On the delta engine, the masks the timing reads (``{layer}.dx``/``.dh``) are the
    columns the per-MAC reference reads, frame by frame, also with wrapped deltas."""
    from hw.reference import ReferenceEngine

    em = compile_model(delta_artifact(0.05, 0.02),
                       load_engine("delta", [*SMALL, "saturate=false", "activation_bits=8",
                                             "activation_frac=null",
                                             "activation_unit.entries=256"]))
    codes = torch.tensor([100.0, -100.0, 0.0, 3.0] * 2)[:, None].expand(8, 16).clone()
    feats = codes * 2.0 ** -em.signal("input")
    fetched: dict[str, list[list[bool]]] = {}
    real = ReferenceEngine.column_products

    def column_products(self, mat, d, layer):
        fetched.setdefault(mat.name, []).append([v != 0 for v in d])
        return real(self, mat, d, layer)

    monkeypatch.setattr(ReferenceEngine, "column_products", column_products)
    run_reference(em, feats)
    run = run_engine(em, feats, trace=True)
    assert run.events["layers.0.dx"]["wrap"] > 0
    acts = activity(em, run)
    for name in ("layers.0", "layers.1"):
        for g in "ifco":
            assert np.array_equal(acts[f"{name}.dx"], np.array(fetched[f"{name}.W_{g}x"]))
            assert np.array_equal(acts[f"{name}.dh"], np.array(fetched[f"{name}.W_{g}r"]))
    assert 0 < acts["layers.1.dx"].sum() < acts["layers.1.dx"].size


def test_engine_module_reports_cycle_distribution_and_temporal_sparsity():
    em = compile_model(delta_artifact(0.05, 0.02), load_engine("delta", SMALL))
    module = EngineModule(em)
    module.utterance_logits(torch.randn(9, 16) * 3)
    run = module.runs[-1]
    cost = module.utterance_cost(run, 0.09)
    assert len(cost["frame_cycles"]) == 9
    assert cost["temporal_sparsity"] == temporal_sparsity(run)
    dx = run.trace["layers.0.dx"][0]
    assert cost["temporal_sparsity"]["layers.0.dx"] == [int((dx == 0).sum()), dx.numel()]


def spartus_cycles(hidden: int, num_pes: int, sparsities: tuple[float, ...]):
    cfg = load_engine("delta", [f"num_pes={num_pes}"])
    model = compile_model(spartus_layer_artifact(num_pes, hidden=hidden), cfg)
    frames = {s: frame_timing(model, delta_activity(SPARTUS_INPUTS, hidden, 4, s),
                              include=SPARTUS_LAYER) for s in sparsities}
    cols = SPARTUS_INPUTS + hidden
    overhead = cfg.pipeline_depth + hidden // cfg.elementwise_lanes + cfg.elementwise_depth
    for s, frame in frames.items():
        # 94% CBTD over 16 local rows keeps one weight per PE share of a gate column: 4 per
        # stacked column, so 4 cycles per fetched column, 8 columns at a time
        active = cols - round(SPARTUS_INPUTS * s) - round(hidden * s)
        assert frame.cycles == 4 * math.ceil(active / cfg.mac_arrays) + overhead
        assert frame.gops(True) == pytest.approx(2 * 4 * hidden * cols
                                                 / (frame.cycles / cfg.clock_mhz) / 1e3)
    return cfg, frames


def test_delta_preset_timing_on_a_column_balanced_layer():
    cfg, frames = spartus_cycles(256, 16, (0.0, 0.5, 0.9))
    # energy: the skipped columns' multiplies and weight reads are not spent
    dense, sparse = (frame_energy(frames[s], cfg) for s in (0.0, 0.9))
    dense_gates, sparse_gates = (frames[s].matrices[0] for s in (0.0, 0.9))
    # plus the cell's 3 multiplies per unit, 16 x 16 bits: each twice an 8 x 16-bit MAC
    assert sparse.mult_pj / dense.mult_pj == pytest.approx(
        (sparse_gates.macs + 3 * 256 * 2) / (dense_gates.macs + 3 * 256 * 2), rel=1e-6)
    assert sparse_gates.read_bytes == pytest.approx(0.1 * dense_gates.read_bytes, rel=0.02)
    assert sparse.dynamic_pj < 0.3 * dense.dynamic_pj


@pytest.mark.slow
def test_spartus_sized_layer_matches_the_published_step_time_at_70_percent():
    """The delta preset on a 1024-unit layer with 94% CBTD sparsity: 1.02 us per step at 70%
    temporal sparsity against Spartus's ~1 us (the figures of docs/delta-engine.md)."""
    cfg, frames = spartus_cycles(SPARTUS_HIDDEN, 64, (0.0, 0.7, 0.9))
    assert frames[0.7].latency_us == pytest.approx(1.02)
    assert frames[0.0].latency_us == pytest.approx(3.04)


def test_cbtd_mask_keeps_the_same_count_in_every_pe_column():
    mask = cbtd_mask(torch.randn(64, 10), 8, 0.75)
    per_pe = mask.reshape(8, 8, 10).sum(dim=0)      # [PE, column]
    assert bool((per_pe == 2).all())


def test_delta_engine_bad_inputs(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"hw\.theta_x: expected >= 0.*-0\.1"):
        load_engine("delta", ["theta_x=-0.1"])
    with pytest.raises(ConfigError, match=r"hw\.theta_h"):
        load_engine("delta", ["theta_h=-1"])
    with pytest.raises(ConfigError, match=r"hw\.mac_arrays"):
        load_engine("delta", ["mac_arrays=0"])
    with pytest.raises(ConfigError, match=r"hw\.sparse_format.*skip_zero_deltas"):
        load_engine("delta", ["sparse_format=csb"])
    with pytest.raises(ConfigError, match=r"hw\.num_pes: 5 does not divide the 32 rows"):
        compile_model(delta_artifact(0.1, 0.1), load_engine("delta", [*SMALL, "num_pes=5"]))
    lstm = make_artifact(small_lstm(), "ese", "compress.prune.num_pes=4")
    with pytest.raises(ConfigError, match=r"needs a delta model \(model=delta_lstm"):
        compile_model(lstm, load_engine("delta", SMALL))
    path = tmp_path / "lstm.model"
    save_artifact(path, lstm)
    assert hw_main(["timing", str(path), "--engine", "delta", "--set", *SMALL]) == 2
    assert "model=delta_lstm" in capsys.readouterr().err


def test_asr_hw_timing_prints_the_cycle_distribution(tmp_path, capsys):
    path = tmp_path / "delta.model"
    save_artifact(path, delta_artifact(0.05, 0.02))
    assert hw_main(["timing", str(path), "--engine", "delta", "--set", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "cycles per frame over 1 frame(s)" in out and "worst case" in out
    assert "layers.0.W_x|W_r" in out
    assert hw_main(["timing", str(path), "--engine", "delta", "--set", *SMALL, "--json"]) == 0
    dist = json.loads(capsys.readouterr().out)["cycles_per_frame"]
    assert dist["frames"] == 1 and dist["mean"] == dist["max"]


@pytest.fixture(scope="module")
def tone_delta_model(tone_model, tone_manifests, tmp_path_factory):
    """The tone LSTM compressed with compress=ese, its layers run as delta layers."""
    from asr.compress.artifact import read_artifact
    from tests.test_hw import compose_compress_app

    root = tmp_path_factory.mktemp("delta_model")
    lstm = root / "lstm.model"
    compress(compose_compress_app(f"model={tone_model}", "compress=ese",
                                  "compress.prune.num_pes=8", f"out={lstm}",
                                  f"calibration.manifest={tone_manifests}/train.jsonl",
                                  "evaluate=false"))
    delta = root / "delta.model"
    save_artifact(delta, as_delta_artifact(read_artifact(lstm), 0.1, 0.1))
    return delta


TONE = ["num_pes=8", "weight_bits=12", "product_bits=28", "accumulator_bits=32"]


def test_asr_hw_eval_and_timing_print_the_distribution_and_sparsity(tone_delta_model,
                                                                     tone_manifests, capsys):
    dev = str(tone_manifests / "dev.jsonl")
    args = ["--engine", "delta", "--set", *TONE]
    assert hw_main(["eval", str(tone_delta_model), dev, "--max-utterances", "3", *args]) == 0
    out = capsys.readouterr().out
    assert re.search(r"cycles per frame over \d+ frame\(s\): mean [\d.]+, p50 \d+, p99 \d+", out)
    assert re.search(r"temporal sparsity \(zero deltas\): layers\.0\.dx [\d.]+%.*overall", out)
    assert hw_main(["eval", str(tone_delta_model), dev, "--max-utterances", "3", *args,
                    "--json"]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    dist = ev["cycles_per_frame"]
    assert dist["p50"] <= dist["p99"] <= dist["max"] and dist["frames"] > 3
    assert 0 < ev["temporal_sparsity"] < 1
    wav = str(tone_manifests / "audio" / "u1_0.wav")
    assert hw_main(["timing", str(tone_delta_model), "--audio", wav, *args, "--json"]) == 0
    timed = json.loads(capsys.readouterr().out)["cycles_per_frame"]
    assert timed["frames"] > 1 and timed["mean"] <= dist["max"]


def test_report_sweeps_the_thresholds_of_a_delta_model(tone_delta_model, tone_manifests,
                                                       tmp_path):
    from tests.test_report import run_report, tiny_report_args

    delta = tone_delta_model
    out = tmp_path / "report"
    args = [a for a in tiny_report_args(delta, tone_manifests, out)
            if not a.startswith(("+models", "hw.num_pes"))]
    # compress=: the .model is compressed already (the default, compress=${hw}, needs a
    # preset named after the engine)
    proc = run_report("-m", "hw=delta", "compress=ese", "hw.theta_x=0.02,0.5",
                      f"+models.delta={delta}",
                      "hw.num_pes=8", "hw.weight_bits=12", "hw.product_bits=28",
                      "hw.accumulator_bits=32", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    rows = sorted((r for r in report["rows"] if r["kind"] == "engine"),
                  key=lambda r: r["temporal_sparsity"])
    assert len(rows) == 2 and all(r["engine"] == "delta" for r in rows)
    # a higher input threshold skips more deltas and so more columns
    assert rows[0]["temporal_sparsity"] < rows[1]["temporal_sparsity"]
    assert rows[1]["latency_per_frame_us"] < rows[0]["latency_per_frame_us"]
    for r in rows:
        assert r["latency_p99_us"] >= r["latency_per_frame_us"] > 0
    for name in ("delta_sweep.png", "latency_vs_wer.png"):
        assert (out / name).stat().st_size > 500
    assert "temporal sparsity %" in (out / "report.md").read_text()
