"""compress=spartus: column-balanced pruning (CBTD's end state) over PEs, its gradual schedule,
CBTD's targeted dropout schedule, its bad inputs, and compressed delta LSTMs through the
artifact file."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from asr.compress.artifact import (
    ArtifactError,
    build_artifact,
    payload_digest,
    read_artifact,
    save_artifact,
)
from asr.compress.callback import CompressionCallback
from asr.compress.config import compress_preset, validate_against_model
from asr.compress.pruning import column_balanced_prune, prune_model
from asr.compress.targeted_dropout import candidates, dropout_mask
from asr.config_errors import ConfigError
from asr.models import DeltaLSTMCTC
from asr.models.acoustic import GraphModel
from asr.models.graph import DeltaLSTMOp, graph_parameters


def per_pe_column_counts(mask: torch.Tensor, num_pes: int) -> torch.Tensor:
    """Kept weights of every (PE, column): rows go to PEs round-robin."""
    rows, cols = mask.shape
    return mask.view(rows // num_pes, num_pes, cols).sum(dim=0)


def test_every_column_of_every_pe_keeps_the_same_largest_weights():
    torch.manual_seed(0)
    w = torch.randn(64, 20)
    mask = column_balanced_prune(w, 0.25, num_pes=4)   # 16 local rows, gamma 0.75: keep 4
    counts = per_pe_column_counts(mask, 4)
    assert counts.shape == (4, 20) and bool((counts == 4).all())
    assert int(mask.sum()) == 64 * 20 // 4
    for pe in range(4):
        share = w[pe::4].abs()                        # PE pe's rows
        kept = mask[pe::4]
        for col in range(20):
            top = set(share[:, col].topk(4).indices.tolist())
            assert set(kept[:, col].nonzero()[:, 0].tolist()) == top


@pytest.mark.parametrize(("rows", "num_pes", "density", "keep"), [
    (1024, 64, 0.06, 1),    # Spartus: 16 local rows, floor(16 * 0.94) = 15 dropped
    (512, 64, 0.06, 1),     # 8 local rows: floor(7.52) = 7 dropped
    (1024, 8, 0.06, 8),     # 128 local rows: floor(120.32) = 120 dropped
    (256, 8, 0.5, 16),
    (100, 1, 0.07, 7),      # 1 - 0.07 = 0.9299999999999999: still 93 dropped
])
def test_exact_sparsity(rows, num_pes, density, keep):
    w = torch.randn(rows, 9)
    mask = column_balanced_prune(w, density, num_pes)
    local = rows // num_pes
    assert keep == local - math.floor(local * (1 - density) + 1e-9)
    assert bool((per_pe_column_counts(mask, num_pes) == keep).all())
    assert int(mask.sum()) == keep * num_pes * 9


def test_the_preset_and_its_gradual_schedule_stay_balanced():
    cfg = compress_preset("spartus", "compress.prune.num_pes=8")
    assert (cfg.prune.method, cfg.prune.density, cfg.quant.weights.bits) == \
        ("column_balanced", 0.06, 8)
    assert compress_preset("spartus").prune.num_pes == 64
    torch.manual_seed(0)
    model = DeltaLSTMCTC(16, 12, hidden_size=128, proj_size=64, num_layers=1)
    views = model.matrices()
    densities = validate_against_model(cfg, views, model.model_type)
    assert densities["output"] == 1.0 and densities["layers.0.W_ix"] == 0.06
    callback = CompressionCallback(cfg, densities)
    callback.total_steps = 100
    kept = []
    for step in (0, 10, 30, 50, 90):
        callback.update_masks(views, step)
        mask = callback.masks.get("layers.0.W_ir")
        if step == 0:
            assert mask is None   # AGP starts dense
            continue
        counts = per_pe_column_counts(mask, 8)
        assert bool((counts == counts[0, 0]).all()), step
        kept.append(int(counts[0, 0]))
    # 16 local rows: the balanced count falls to 16 - floor(16 * 0.94) = 1 and stays there
    assert kept == sorted(kept, reverse=True) and kept[0] > 1 and kept[-2:] == [1, 1]


def test_bad_gamma_and_pe_count_name_the_key():
    with pytest.raises(ConfigError, match=r"compress\.prune\.density: expected in \(0, 1\] "
                                          r"\(1 - gamma, .*gamma in \[0, 1\)\), got 0\.0"):
        compress_preset("spartus", "compress.prune.density=0.0")
    with pytest.raises(ConfigError, match=r"compress\.prune\.density: .*got 1\.5"):
        column_balanced_prune(torch.randn(8, 4), 1.5, 2, prefix="compress.prune")
    cfg = compress_preset("spartus", "compress.prune.num_pes=48")
    model = DeltaLSTMCTC(16, 12, hidden_size=128, proj_size=64, num_layers=1)
    with pytest.raises(ConfigError, match=r"compress\.prune\.num_pes: expected a divisor of "
                                          r"every pruned matrix's row count .*128.*got 48"):
        validate_against_model(cfg, model.matrices(), model.model_type)
    with pytest.raises(ConfigError, match=r"prune\.num_pes: expected a divisor of the row "
                                          r"count 64.*got 3"):
        column_balanced_prune(torch.randn(64, 4), 0.5, 3)


def compressed_delta(tmp_path):
    torch.manual_seed(0)
    model = DeltaLSTMCTC(16, 12, hidden_size=64, proj_size=32, num_layers=2, theta_x=0.25,
                         theta_h=0.125)
    cfg = compress_preset("spartus", "compress.prune.num_pes=4")
    views = model.matrices()
    densities = validate_against_model(cfg, views, model.model_type)
    masks = prune_model(views, densities, cfg.prune)
    calibration = [torch.randn(20, 16) for _ in range(2)]
    art = build_artifact(model, masks, densities, cfg, calibration)
    art = dataclasses.replace(art, vocab_tokens=[str(i) for i in range(12)])
    return art, masks, save_artifact(tmp_path / "delta.model", art)


def test_a_compressed_delta_model_survives_the_file(tmp_path):
    art, masks, path = compressed_delta(tmp_path)
    loaded = read_artifact(path)
    assert loaded.model_type == "delta_lstm"
    before = {k: getattr(op, a) for k, _, op, a in graph_parameters(art.graph)}
    after = {k: getattr(op, a) for k, _, op, a in graph_parameters(loaded.graph)}
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    for name, mask in masks.items():
        assert torch.equal(loaded.matrices[name].mask, mask.bool()), name
        assert bool((per_pe_column_counts(loaded.matrices[name].mask, 4) == 1).all()), name
    ops = [op for op in loaded.graph.ops if op.name.startswith("layers.")]
    assert [type(op) for op in ops] == [DeltaLSTMOp, DeltaLSTMOp]
    assert all((op.theta_x, op.theta_h) == (0.25, 0.125) for op in ops)
    # the loaded graph runs as a delta network and counts its zero deltas
    runner = GraphModel(loaded.graph)
    x = torch.randn(1, 30, 16)
    torch.testing.assert_close(runner(x), GraphModel(art.graph)(x))
    assert set(runner.sparsity) == {"layers.0.dx", "layers.0.dh", "layers.1.dx",
                                    "layers.1.dh"}


@pytest.mark.parametrize(("value", "shown"), [(-0.5, "-0.5"), ("0.1", "'0.1'"), (True, "True")])
def test_a_bad_threshold_in_the_file_is_named(tmp_path, value, shown):
    _, _, path = compressed_delta(tmp_path)
    data = torch.load(path, weights_only=True)
    data["payload"]["graph"]["ops"][1]["theta_h"] = value
    data["sha256"] = payload_digest({"payload": data["payload"], "blob": data["blob"]})
    torch.save(data, path)
    with pytest.raises(ArtifactError, match=rf"delta\.model: graph\.ops\[layers\.1\]\.theta_h.*"
                                            rf"expected a threshold >= 0, got {shown}"):
        read_artifact(path)


# -- CBTD: column-balanced targeted dropout (compress.schedule.kind=targeted_dropout) ---------

def cbtd_preset(*overrides: str):
    return compress_preset("spartus", "compress.schedule.kind=targeted_dropout", *overrides)


def test_cbtd_candidates_are_the_smallest_weights_of_every_pe_column():
    torch.manual_seed(0)
    w = torch.randn(64, 20)
    cfg = cbtd_preset("compress.prune.num_pes=4").prune
    cand = candidates(w, 0.25, cfg)            # 16 local rows, gamma 0.75: 12 candidates each
    assert bool((per_pe_column_counts(cand, 4) == 12).all())
    for pe in range(4):
        share = w[pe::4].abs()
        for col in range(20):
            smallest = set(share[:, col].topk(12, largest=False).indices.tolist())
            assert set(cand[pe::4][:, col].nonzero()[:, 0].tolist()) == smallest
    assert candidates(w, 1.0, cfg) is None     # a dense matrix has none


def test_cbtd_drop_probability_alpha():
    torch.manual_seed(0)
    w = torch.randn(256, 64)
    cand = candidates(w, 0.125, cbtd_preset("compress.prune.num_pes=8").prune)
    assert bool(dropout_mask(cand, 0.0).all())                    # alpha 0: nothing dropped
    end = dropout_mask(cand, 1.0)                                 # alpha 1: the balanced mask
    assert torch.equal(end, column_balanced_prune(w, 0.125, 8))
    assert bool((per_pe_column_counts(end, 8) == 4).all())
    for alpha in (0.2, 0.5, 0.9):
        mask = dropout_mask(cand, alpha, torch.Generator().manual_seed(1))
        assert bool(mask[~cand].all())                            # only candidates go
        dropped = (~mask[cand]).float().mean().item()             # 14,336 candidates
        assert abs(dropped - alpha) < 0.015, (alpha, dropped)
        again = dropout_mask(cand, alpha, torch.Generator().manual_seed(1))
        assert torch.equal(mask, again)                           # seeded: the same draw
    assert not torch.equal(dropout_mask(cand, 0.5, torch.Generator().manual_seed(2)),
                           dropout_mask(cand, 0.5, torch.Generator().manual_seed(3)))


def test_cbtd_schedule_drops_for_one_step_then_fixes_the_balanced_mask():
    from types import SimpleNamespace

    cfg = cbtd_preset("compress.prune.num_pes=8", "compress.prune.density=0.25",
                      "compress.schedule.begin=0.2", "compress.schedule.end=0.6")
    assert cfg.schedule.kind == "targeted_dropout"
    torch.manual_seed(0)
    module = SimpleNamespace(model=DeltaLSTMCTC(16, 12, hidden_size=64, proj_size=32,
                                                num_layers=1))
    views = module.model.matrices()
    densities = validate_against_model(cfg, views, module.model.model_type)
    trainer = SimpleNamespace(global_step=0, estimated_stepping_batches=50,
                              sanity_checking=False)
    cb = CompressionCallback(cfg, densities, seed=0)
    cb.on_fit_start(trainer, module)
    assert cb.settle_step == 30          # alpha reaches 1 at 0.6 of 50 steps (QAT from 0.5)
    name = "layers.0.W_ir"               # 64 rows over 8 PEs: 8 local rows, 6 candidates
    for step in range(50):
        trainer.global_step = step
        alpha = 1.0 if step >= 30 else max((step / 50 - 0.2) / 0.4, 0.0)
        before = views[name].detach().clone()
        cb.on_train_batch_start(trainer, module, None, step)
        assert cb.transient == (0.0 < alpha < 1.0), step   # a draw, for this step only
        applied = views[name].detach().clone()
        cand = candidates(before, 0.25, cfg.prune)
        if alpha == 0.0:
            assert bool((applied != 0).all())
        else:
            assert bool((applied[~cand] != 0).all())         # only candidates are dropped
            dropped = (applied[cand] == 0).float().mean().item()
            assert abs(dropped - alpha) < 0.06, (step, alpha, dropped)
        cb.on_before_optimizer_step(trainer, module, None)
        with torch.no_grad():
            views[name].add_(0.001)                          # an optimizer step
        cb.on_train_batch_end(trainer, module, None, None, step)
        if alpha < 1.0:                                      # a draw zeroes nothing for good
            assert bool((views[name] != 0).all()), step
        else:
            assert torch.equal(views[name] != 0, cb.masks[name]), step
            counts = per_pe_column_counts(cb.masks[name], 8)
            assert bool((counts == 2).all())                 # 8 - floor(8 * 0.75)
        if step == 20:                                       # alpha 0.5: validation sees the
            cb.on_validation_start(trainer, module)          # end state, not the draw
            shown = views[name] != 0
            cb.on_validation_end(trainer, module)
            assert torch.equal(shown, column_balanced_prune(views[name], 0.25, 8))
    state = cb.state_dict()
    assert state["progress"] == 1.0 and not cb.transient
    restored = CompressionCallback(cfg, densities, seed=5)
    restored.load_state_dict(state)
    assert restored.progress == 1.0 and not restored.transient
    assert torch.equal(restored.generator.get_state(), cb.generator.get_state())


@pytest.mark.parametrize(("overrides", "message"), [
    (("compress.schedule.kind=cbtd",),
     "compress.schedule.kind: expected one of ('one_shot', 'agp', 'dsd', 'targeted_dropout'), "
     "got 'cbtd'"),
    (("compress.schedule.kind=targeted_dropout", "compress.schedule.begin=0.7"),
     "compress.schedule.begin/end: expected 0 <= begin <= end <= 1, got (0.7, 0.5)"),
    (("compress.schedule.kind=targeted_dropout", "compress.prune.method=none"),
     "compress.prune.method: expected one of ['magnitude', 'block', 'bank_balanced', "
     "'load_balanced', 'column_balanced'] with compress.schedule.kind=targeted_dropout "
     "(column_balanced: CBTD), got 'none'"),
    (("compress.schedule.kind=targeted_dropout", "compress.prune.density=1.2"),
     "compress.prune.density: expected in (0, 1] (1 - gamma, CBTD's target sparsity gamma in "
     "[0, 1)), got 1.2"),
])
def test_bad_cbtd_keys_name_the_key_the_allowed_values_and_the_value(overrides, message):
    with pytest.raises(ConfigError) as err:
        compress_preset("spartus", *overrides)
    assert str(err.value) == message


@pytest.mark.parametrize("accelerator", [
    "cpu",
    # the draws are made on the CPU and the masks live beside GPU weights
    pytest.param("gpu", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                 reason="needs a CUDA GPU")),
])
def test_cbtd_finetuning_end_to_end_leaves_a_column_balanced_artifact(tone_model,
                                                                      tone_manifests,
                                                                      tmp_path, accelerator):
    from test_compress import compose_compress, tone_data

    from asr.compress.app import compress
    from asr.compress.artifact import read_artifact

    out = tmp_path / "cbtd.model"
    # the tone model's LSTM matrices have 48 and 24 rows: 8 PEs hold 6 and 3 local rows
    summary = compress(compose_compress(
        f"model={tone_model}", "compress=spartus", "compress.schedule.kind=targeted_dropout",
        "compress.prune.num_pes=8", "compress.prune.density=0.34", "finetune.max_epochs=2",
        "finetune.lr=3e-3", f"trainer.accelerator={accelerator}", "trainer.precision=32-true",
        f"out={out}", *tone_data(tone_manifests)))
    art = read_artifact(out)
    assert art.config["compress"]["schedule"]["kind"] == "targeted_dropout"
    pruned = [n for n, e in art.matrices.items() if e.target_density < 1.0]
    assert pruned
    for name in pruned:
        mask = art.matrices[name].mask
        mask = mask.reshape(mask.shape[0], -1)
        local = mask.shape[0] // 8
        keep = local - math.floor(local * 0.66 + 1e-9)
        assert bool((per_pe_column_counts(mask, 8) == keep).all()), name
    assert summary["finetune"]["checkpoint"] != "last"       # a settled epoch was kept
    assert summary["dev"]["compressed"]["cer"] < 0.6
