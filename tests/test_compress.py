"""Compression: schedules, config validation, the fine-tuning callback, the artifact and
asr-compress end to end on the tiny tone model."""

import csv
import json
import re
from pathlib import Path

import pytest
import torch
from conftest import run_ddp_on_two_cpus
from hydra import compose, initialize_config_dir

from asr.cli.decode import main as decode_main
from asr.compress.accounting import matrix_storage, totals
from asr.compress.app import compress
from asr.compress.artifact import (
    Artifact,
    ArtifactError,
    CodeFormat,
    CSCStorage,
    FracPartition,
    MatrixEntry,
    PackedInts,
    load_compressed,
    read_artifact,
    storage_object,
)
from asr.compress.config import (
    CompressConfig,
    NumberFormatConfig,
    PruneConfig,
    QuantConfig,
    ScheduleConfig,
    StorageConfig,
    layer_type,
    validate_against_model,
)
from asr.compress.fixed_point import FixedPointFormat
from asr.compress.schedule import agp_progress, prune_progress
from asr.config_errors import ConfigError
from asr.features.config import AugmentConfig
from asr.models import LSTMCTC, WaveNetCTC
from asr.models.acoustic import GraphModel
from asr.models.graph import run_graph
from asr.train.checkpoint import CheckpointError, load_checkpoint

REPO = Path(__file__).resolve().parents[1]


def compose_compress(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf" / "asr_compress"),
                               version_base="1.3"):
        return compose(config_name="asr_compress", overrides=list(overrides))


def checkpoint_epoch(name: str) -> int:
    """The epoch of a best checkpoint's name (best-epoch03-val_wer0.2500.ckpt: no '=')."""
    found = re.fullmatch(r"best-epoch(\d{2,})-val_wer\d+\.\d{4}(-v\d+)?\.ckpt", name)
    assert found, name
    return int(found[1])


def tone_data(root) -> list[str]:
    return ["data=synthetic", f"data.train_manifest={root}/train.jsonl",
            f"data.val_manifest={root}/dev.jsonl", "data.test_manifest=null",
            "data.cache_dir=null", "data.batch.num_workers=0", "data.batch.max_batch_size=4",
            "data.augment.speed_factors=[1.0]", "data.augment.freq_masks=0",
            "data.augment.time_masks=0", "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false", "trainer.log_every_n_steps=1"]


def test_schedules():
    assert agp_progress(0.0) == 0.0 and agp_progress(1.0) == 1.0
    assert agp_progress(0.5) == pytest.approx(0.875)          # 1 - (1 - p)^3
    agp = ScheduleConfig(kind="agp", begin=0.0, end=0.5, frequency=10)
    assert prune_progress(agp, 0, 100) == 0.0
    assert prune_progress(agp, 19, 100) == pytest.approx(agp_progress(10 / 50))  # held
    assert prune_progress(agp, 60, 100) == 1.0
    dsd = ScheduleConfig(kind="dsd", cycles=1, final_sparse=True)
    assert [prune_progress(dsd, s, 90) for s in (0, 29, 30, 59, 60, 89)] == [1, 1, 0, 0, 1, 1]
    assert prune_progress(ScheduleConfig(kind="one_shot"), 0, 0) == 1.0


@pytest.mark.parametrize("schedule, qat, settled", [
    (ScheduleConfig(kind="agp", begin=0.0, end=0.5, frequency=10, qat_begin=0.7), True, 70),
    (ScheduleConfig(kind="agp", begin=0.0, end=0.5, frequency=10, qat_begin=0.7), False, 50),
    (ScheduleConfig(kind="agp", begin=0.0, end=0.45, frequency=10, qat_begin=0.0), True, 50),
    # DSD's first sparse phase has the final progress, not the final masks
    (ScheduleConfig(kind="dsd", cycles=1, final_sparse=True, qat_begin=0.0), True, 67),
    (ScheduleConfig(kind="dsd", cycles=1, final_sparse=False, qat_begin=0.0), True, 50),
    (ScheduleConfig(kind="one_shot", qat_begin=0.0), True, 0),
])
def test_first_settled_step(schedule, qat, settled):
    from asr.compress.callback import CompressionCallback

    cfg = CompressConfig(prune=PruneConfig("magnitude", 0.5), schedule=schedule)
    cb = CompressionCallback(cfg, {}, qat=qat)
    cb.total_steps = 100
    assert cb.first_settled_step() == settled


def test_layer_types_and_invalid_combinations_fail_naming_the_key():
    lstm = LSTMCTC(80, 29, hidden_size=64, proj_size=32, num_layers=1)
    mats = lstm.matrices()
    assert {layer_type(n, "lstm") for n in mats} == {"input", "recurrent", "projection",
                                                    "output"}
    bbs = CompressConfig(prune=PruneConfig("bank_balanced", 0.25, {"output": 1.0},
                                           bank_size=24), storage=StorageConfig("csb", 5))
    with pytest.raises(ConfigError, match=r"compress\.prune\.bank_size.*layers\.0\.W_ix"):
        validate_against_model(bbs, mats, "lstm")
    narrow = CompressConfig(prune=PruneConfig("bank_balanced", 0.25, {"output": 1.0},
                                              bank_size=16), storage=StorageConfig("csb", 3))
    with pytest.raises(ConfigError, match=r"compress\.storage\.index_bits"):
        validate_against_model(narrow, mats, "lstm")
    ese = CompressConfig(prune=PruneConfig("load_balanced", 0.1, num_pes=32))
    with pytest.raises(ConfigError, match=r"compress\.prune\.num_pes.*output"):
        validate_against_model(ese, mats, "lstm")                # 29 output rows
    with pytest.raises(ConfigError, match=r"compress\.prune\.max_zero_run"):
        PruneConfig("magnitude", 0.1, max_zero_run=15)           # padding-free: load_balanced
    with pytest.raises(ConfigError, match=r"compress\.quant\.weights\.bits"):
        QuantConfig(weights=NumberFormatConfig(bits=0))
    with pytest.raises(ConfigError, match=r"compress\.prune\.targets"):
        validate_against_model(CompressConfig(prune=PruneConfig(
            "magnitude", 0.5, {"W_typo": 0.1})), mats, "lstm")
    wavenet = WaveNetCTC(20, 29, channels=16, blocks=1, dilations=(1, 2), kernel=3)
    assert {layer_type(n, "wavenet") for n in wavenet.matrices()} == {"conv", "output"}


def test_wavenet_matrices_are_views_of_the_model():
    model = WaveNetCTC(20, 29, channels=16, blocks=1, dilations=(1, 2), kernel=3)
    views = model.matrices()
    assert views["block_0_2.conv_gate"].shape == (16, 48)
    with torch.no_grad():
        views["block_0_2.conv_gate"].zero_()
    assert model.block_0_2.conv_gate.conv.weight.abs().sum() == 0
    assert set(views) == set(model.export().matrices())


def _check_artifact(path: Path, density: float, method: str) -> Artifact:
    art = read_artifact(path)
    for name, entry in art.matrices.items():
        q = entry.quantized()
        store = storage_object(entry)
        if entry.target_density < 1.0:
            mask = entry.mask.reshape(entry.shape[0], -1)
            if method == "load_balanced":   # every PE keeps the same count
                per_pe = mask.view(-1, 8, mask.shape[1]).sum(dim=(0, 2))
                assert len(set(per_pe.tolist())) == 1, name
            if method == "bank_balanced":
                banks = mask.view(mask.shape[0], -1, 8).sum(dim=2)
                assert len(set(banks.flatten().tolist())) == 1, name
            assert abs(mask.float().mean().item() - density) < 0.05, name
            assert torch.equal(store.to_dense(), q.codes.reshape(mask.shape)), name
    return art


def test_asr_compress_post_training_writes_a_decodable_artifact(tone_model, tone_manifests,
                                                               tmp_path, capsys):
    out = tmp_path / "ese.model"
    summary = compress(compose_compress(
        f"model={tone_model}", "compress=ese", "compress.prune.num_pes=8", f"out={out}",
        *tone_data(tone_manifests)))
    art = _check_artifact(out, 0.11, "load_balanced")
    assert art.compress.name == "ese" and art.config["compress"]["name"] == "ese"
    assert art.activations["input"].format.bits == 16
    assert summary["storage"]["ratio"] > 4
    assert (tmp_path / "ese.storage.md").read_text().startswith("| matrix |")
    assert (tmp_path / "ese.config.yaml").is_file()
    # asr-decode reads the artifact like a checkpoint
    wav = tone_manifests / "audio" / "u1_0.wav"
    assert decode_main([str(out), str(wav)]) == 0
    assert str(wav) in capsys.readouterr().out
    assert "compressed" in summary["dev"]


def test_uncompressed_artifact_computes_what_the_float_model_computes(tone_model, tmp_path):
    out = tmp_path / "none.model"
    compress(compose_compress(f"model={tone_model}", "compress=none", f"out={out}"))
    model = load_checkpoint(tone_model).model
    comp = load_compressed(out)
    x = torch.randn(2, 30, model.input_dim)
    lengths = torch.tensor([30, 21])
    with torch.no_grad():
        ref = model(x, lengths)
        got = comp.model(x, lengths)
    assert torch.allclose(ref[0], got[0], atol=1e-4)
    assert torch.allclose(ref[1, :21], got[1, :21], atol=1e-4)
    assert isinstance(comp.model, GraphModel)


def test_quantized_graph_holds_the_dequantized_integers(tone_model, tmp_path):
    out = tmp_path / "bbs.model"
    compress(compose_compress(f"model={tone_model}", "compress=bbs", "compress.prune.bank_size=8",
                              "compress.prune.density=0.25", f"out={out}"))
    art = _check_artifact(out, 0.25, "bank_balanced")
    graph = load_compressed(out).model.graph
    mats = graph.matrices()
    for name, entry in art.matrices.items():
        q = entry.quantized()
        value = q.codes.double() * torch.pow(2.0, -q.frac.double())
        assert torch.equal(mats[name].double(), value), name
        assert storage_object(entry) is None or entry.storage_format == "csb"
    # the 16-bit weights of the logits' matrix differ from float by at most half a step
    x = torch.randn(12, graph.input_dim)
    assert run_graph(graph, x).shape == (12, graph.vocab_size)


def test_finetuning_keeps_exact_structure_and_resumable_masks(tone_model, tone_manifests,
                                                             tmp_path):
    out = tmp_path / "dc.model"
    # data.augment asks for masks the tone model never trained with (the last override wins):
    # fine-tuning keeps to the checkpoint's own augmentation (none) unless finetune.augment=data
    summary = compress(compose_compress(
        f"model={tone_model}", "compress=deep_compression", "compress.prune.density=0.3",
        "compress.schedule.frequency=2", "finetune.max_epochs=4", "finetune.lr=3e-3",
        f"out={out}", *tone_data(tone_manifests), "data.augment.freq_masks=2"))
    art = read_artifact(out)
    # 12 steps an epoch: AGP ends and QAT begins at step 24, so only epochs 2 and 3 (validated
    # after steps 35 and 47) hold the final masks; the kept one is the better of the two.
    with open(tmp_path / "dc.finetune" / "logs" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    val = {int(r["epoch"]): float(r["val_wer"]) for r in rows if r["val_wer"]}
    kept = summary["finetune"]
    assert kept["keep"] == "best" and kept["epochs"] == 4 and len(val) == 4
    assert kept["val_wer"] == pytest.approx(min(val[2], val[3]))
    epoch = checkpoint_epoch(kept["checkpoint"])
    assert epoch in (2, 3) and val[epoch] == min(val[2], val[3])
    # fine-tuning checkpoints carry asr-train's hyper-parameters: load_checkpoint reads them
    weights = load_checkpoint(tmp_path / "dc.finetune" / "checkpoints" / kept["checkpoint"]
                              ).model.matrices()
    for name, entry in art.matrices.items():
        q = entry.quantized()
        assert q.kind == "codebook" and q.codebook.numel() == 32
        if entry.target_density < 1.0:
            assert abs(entry.mask.float().mean().item() - 0.3) < 0.02, name
            assert bool((q.codes[~entry.mask] == -1).all())
            # the kept epoch's weights were trained under the artifact's masks
            assert torch.equal(weights[name] != 0, entry.mask), name
    ckpt = torch.load(tmp_path / "dc.finetune" / "checkpoints" / "last.ckpt",
                      weights_only=False)
    state = next(v for k, v in ckpt["callbacks"].items() if "CompressionCallback" in k)
    assert state["progress"] == 1.0 and len(state["masks"]) == len(art.matrices) - 1
    trained_with = load_checkpoint(tone_model).train_augment
    assert trained_with["freq_masks"] == 0 and trained_with["speed_factors"] == [1.0]
    assert ckpt["datamodule_hyper_parameters"]["augment"] == trained_with == kept["augment"]
    t = summary["storage"]
    assert t["huffman_bytes"] < t["bytes"]
    assert summary["dev"]["compressed"]["cer"] < 0.5      # still recognizes the tones


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("preset", ["ese", "deep_compression"])
def test_finetuning_on_a_gpu(tone_model, tone_manifests, tmp_path, preset):
    # Lightning moves the module back to the CPU before on_fit_end; masks made on the GPU,
    # k-means codes and the artifact must follow (the CPU-only suite cannot see this).
    # 8 PEs: the tone model's LSTM matrices have 48 and 24 rows.
    out = tmp_path / f"{preset}.model"
    compress(compose_compress(
        f"model={tone_model}", f"compress={preset}", "compress.prune.density=0.3",
        "compress.prune.num_pes=8", "compress.schedule.frequency=2", "finetune.max_epochs=2",
        "trainer.accelerator=gpu", "trainer.precision=32-true", f"out={out}",
        *tone_data(tone_manifests)))
    for name, entry in read_artifact(out).matrices.items():
        if entry.target_density < 1.0:
            assert abs(entry.mask.float().mean().item() - 0.3) < 0.02, name


def test_finetuning_augmentation_follows_the_checkpoint_unless_told(tone_model, tone_manifests,
                                                                   tmp_path, caplog):
    from asr.compress.app import validate_compress_config

    def job(model, *extra):
        return validate_compress_config(compose_compress(
            f"model={model}", "out=x.model", "compress=deep_compression",
            *tone_data(tone_manifests), *extra))

    masks_asked = ("finetune.max_epochs=1", "data.augment.freq_masks=2")
    assert job(tone_model, *masks_asked).augment == AugmentConfig(
        **load_checkpoint(tone_model).train_augment)
    assert job(tone_model, *masks_asked).augment.freq_masks == 0
    assert job(tone_model, *masks_asked, "finetune.augment=data").augment.freq_masks == 2
    assert job(tone_model).augment is None          # no fine-tuning
    with pytest.raises(ConfigError, match="finetune.augment"):
        job(tone_model, *masks_asked, "finetune.augment=checkpoint")
    # a checkpoint that does not say falls back to data.augment, with a warning
    ckpt = torch.load(tone_model, weights_only=False)
    older = tmp_path / "older" / "model.ckpt"   # no asr-train config.yaml beside it either
    older.parent.mkdir()
    del ckpt["datamodule_hyper_parameters"]
    torch.save(ckpt, older)
    assert job(older, *masks_asked).augment.freq_masks == 2
    assert "records no training augmentation" in caplog.text
    ckpt["datamodule_hyper_parameters"] = {"augment": {"freq_masks": -1}}
    torch.save(ckpt, older)
    with pytest.raises(CheckpointError, match="older/model.ckpt: its recorded training augm"):
        job(older, "finetune.max_epochs=1")


def test_finetuning_under_ddp_on_two_cpu_processes(tone_model, tone_manifests, tmp_path):
    # Lightning relaunches asr-compress per rank; the ranks prune identical (all-reduced)
    # weights, and rank 0 alone builds, evaluates and writes the artifact.
    out = tmp_path / "ese.model"
    overrides = [f"model={tone_model}", "compress=ese", "compress.prune.density=0.3",
                 "compress.prune.num_pes=8", "compress.schedule.frequency=2",
                 "finetune.max_epochs=2", f"out={out}", *tone_data(tone_manifests)]
    done = run_ddp_on_two_cpus("asr-compress", overrides, tmp_path)
    assert done.stdout.count("asr-compress: wrote") == 1
    summary = json.loads((tmp_path / "ese.metrics.json").read_text())
    assert summary["finetune"]["epochs"] == 2 and "dev" in summary
    for name, entry in read_artifact(out).matrices.items():
        if entry.target_density < 1.0:
            assert abs(entry.mask.float().mean().item() - 0.3) < 0.02, name


def test_frame_kl_is_the_kl_divergence_over_valid_frames():
    from asr.compress.distill import frame_kl

    torch.manual_seed(0)
    teacher, student = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    lengths = torch.tensor([5, 3])
    for temperature in (1.0, 2.0):
        t = (teacher / temperature).log_softmax(-1)
        s = (student / temperature).log_softmax(-1)
        frames = [torch.nn.functional.kl_div(s[b, i], t[b, i], log_target=True,
                                             reduction="sum")
                  for b in range(2) for i in range(int(lengths[b]))]
        expected = torch.stack(frames).mean() * temperature ** 2
        assert frame_kl(teacher, student, lengths, temperature) == pytest.approx(
            expected.item(), rel=1e-5)
    assert frame_kl(teacher, teacher, lengths).item() == pytest.approx(0.0, abs=1e-6)
    padded = student.clone()
    padded[1, 3:] = 100.0                                     # past utterance 1's end
    assert torch.equal(frame_kl(teacher, padded, lengths), frame_kl(teacher, student, lengths))


def test_distilled_finetuning_adds_the_teachers_kl_and_keeps_it_out_of_checkpoints(
        tone_model, tone_manifests, tmp_path):
    out = tmp_path / "ese.model"
    compress(compose_compress(
        f"model={tone_model}", "compress=ese", "compress.prune.density=0.3",
        "compress.prune.num_pes=8", "compress.schedule.frequency=2", "finetune.max_epochs=2",
        "finetune.lr=3e-3", "finetune.distill_weight=0.5", "finetune.distill_temperature=2",
        f"out={out}", *tone_data(tone_manifests)))
    with open(tmp_path / "ese.finetune" / "logs" / "metrics.csv") as f:
        steps = [{k: float(v) for k, v in r.items() if v} for r in csv.DictReader(f)
                 if r["train_kd_loss"]]
    # step 0 trains the unpruned, unquantized copy (AGP starts at density 1, dropout 0):
    # it still computes what the teacher computes; pruning then pulls the two apart
    assert steps[0]["step"] == 0 and steps[0]["train_kd_loss"] < 1e-6
    assert max(r["train_kd_loss"] for r in steps) > 1e-3
    for r in steps:
        assert r["train_loss"] == pytest.approx(r["train_ctc_loss"] + 0.5 * r["train_kd_loss"],
                                                rel=1e-5)
    ckpt = torch.load(tmp_path / "ese.finetune" / "checkpoints" / "last.ckpt",
                      weights_only=False)
    assert all(k.startswith("model.") for k in ckpt["state_dict"])
    for name, entry in read_artifact(out).matrices.items():
        if entry.target_density < 1.0:
            assert abs(entry.mask.float().mean().item() - 0.3) < 0.02, name


def test_storage_accounting_counts_entries_pointers_and_codebooks():
    def packed(*values):
        return PackedInts.encode(torch.tensor(values))

    fmt = CodeFormat("fixed", 12, FixedPointFormat(12, 0), FracPartition("tensor", 1, packed(0)))
    # entries (5, 0), (0, 15: padding), (7, 0), (1, 2); values are the real entries' codes
    storage = CSCStorage((8, 4), 2, 4, packed(5, 7, 1), packed(0, 15, 0, 2),
                         PackedInts.encode(torch.tensor([[1, 0, 2, 0], [0, 1, 0, 0]])),
                         packed(1), 0)
    entry = MatrixEntry((8, 4), "input", 0.5, 3, True, fmt, storage)
    assert torch.equal(storage.matrix().values, torch.tensor([5, 0, 7, 1]))
    row = matrix_storage("w", entry)
    # 4 entries of 12 + 4 bits; pointers: 2 PEs x 5 pointers x 2 bits (largest PE holds 3)
    assert row.entries == 4 and row.pointer_bits == 20
    assert row.bytes == (4 * 16 + 20 + 7) // 8 and row.entry_bytes == 8
    assert totals([row])["ratio"] == pytest.approx(4 * 32 / row.bytes)


def test_corrupt_or_foreign_files_are_named(tmp_path, tone_model):
    bad = tmp_path / "x.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(ArtifactError, match="x.model"):
        read_artifact(bad)
    with pytest.raises(ConfigError, match="out"):
        compress(compose_compress(f"model={tone_model}", f"out={tmp_path}/a.bin"))
    with pytest.raises(ConfigError, match="finetune.max_epochs"):
        compress(compose_compress(f"model={tone_model}", f"out={tmp_path}/a.model",
                                  "finetune.max_epochs=1"))
    with pytest.raises(ConfigError, match="finetune.keep"):
        compress(compose_compress(f"model={tone_model}", f"out={tmp_path}/a.model",
                                  "finetune.keep=middle"))
    with pytest.raises(ConfigError, match="finetune.weight_decay"):
        compress(compose_compress(f"model={tone_model}", f"out={tmp_path}/a.model",
                                  "finetune.weight_decay=-0.1"))
    for key, value in (("distill_weight", -1), ("distill_temperature", 0),
                       ("average_best", 0)):
        with pytest.raises(ConfigError, match=f"finetune.{key}"):
            compress(compose_compress(f"model={tone_model}", f"out={tmp_path}/a.model",
                                      f"finetune.{key}={value}"))

    with pytest.raises(ConfigError, match="finetune.average_best"):
        compress(compose_compress(f"model={tone_model}", f"out={tmp_path}/a.model",
                                  "finetune.keep=last", "finetune.average_best=3"))


def test_finetuning_averages_the_best_settled_epochs(tone_model, tone_manifests, tmp_path):
    out = tmp_path / "ese.model"
    summary = compress(compose_compress(
        f"model={tone_model}", "compress=ese", "compress.prune.density=0.3",
        "compress.prune.num_pes=8", "compress.schedule.frequency=2", "finetune.max_epochs=4",
        "finetune.lr=3e-3", "finetune.average_best=3", f"out={out}",
        *tone_data(tone_manifests)))
    kept, ckpts = summary["finetune"], tmp_path / "ese.finetune" / "checkpoints"
    # Only epochs 2 and 3 hold the final masks (see above): an average of those two.
    best = sorted(ckpts.glob("best-*.ckpt"))
    assert [checkpoint_epoch(p.name) for p in best] == [2, 3]
    assert kept["averaged_checkpoints"] == 2
    use_average = kept["averaged_val_wer"] <= kept["val_wer"]
    assert (kept["checkpoint"] == "average-2best.ckpt") == use_average

    a, b = (load_checkpoint(p).model.matrices() for p in best)
    mean = load_checkpoint(ckpts / "average-2best.ckpt").model.matrices()
    chosen = load_checkpoint(ckpts / kept["checkpoint"]).model.matrices()
    art = read_artifact(out)
    for name, entry in art.matrices.items():
        torch.testing.assert_close(mean[name], (a[name] + b[name]) / 2)
        # the artifact's 12-bit weights are the kept checkpoint's, rounded to nearest
        q = entry.quantized()
        step = torch.pow(2.0, -q.frac.double())
        error = q.codes.double() * step - chosen[name].double()
        assert bool((error.abs() <= step / 2 + 1e-12).all()), name
        if entry.target_density < 1.0:
            # epochs under the same masks average into the same structure
            assert torch.equal(mean[name] != 0, entry.mask), name
            assert torch.equal(a[name] != 0, entry.mask), name
    assert summary["dev"]["compressed"]["cer"] < 0.5


def test_sweep_table_tabulates_wer_against_density(tone_model, tone_manifests, tmp_path):
    from asr.compress.sweep_table import load_points, markdown_table

    for method in ("magnitude", "block"):
        for density in (1.0, 0.25):
            compress(compose_compress(
                f"model={tone_model}", "compress=none", f"compress.prune.method={method}",
                f"compress.prune.density={density}", "+compress.prune.targets.output=1.0",
                f"out={tmp_path}/{method}_{density}.model", *tone_data(tone_manifests)))
    points = load_points(f"{tmp_path}/*.model")
    assert len(points) == 4
    table = markdown_table(points, "compress.prune.method", "compress.prune.density")
    lines = table.splitlines()
    assert lines[2] == "| compress.prune.method \\ compress.prune.density | 1.0 | 0.25 |"
    assert lines[4].startswith("| block | ") and lines[5].startswith("| magnitude | ")
    # at density 1.0 every method is the float model
    float_wer = points[0][1]["dev"]["float"]["wer"]
    assert f"{100 * float_wer:.2f} (100.0%)" in lines[4]


def test_callback_dsd_phases_ste_and_masks_with_a_stub_trainer():
    from types import SimpleNamespace

    from asr.compress.callback import CompressionCallback

    cfg = CompressConfig(prune=PruneConfig("magnitude", 0.5, {"output": 1.0}),
                         quant=QuantConfig(weights=NumberFormatConfig("fixed", 6)),
                         storage=StorageConfig("dense"),
                         schedule=ScheduleConfig(kind="dsd", cycles=1, final_sparse=True))
    torch.manual_seed(0)
    module = SimpleNamespace(model=LSTMCTC(16, 29, hidden_size=16, proj_size=8, num_layers=1))
    views = module.model.matrices()
    densities = validate_against_model(cfg, views, "lstm")
    trainer = SimpleNamespace(global_step=0, estimated_stepping_batches=30,
                              sanity_checking=False)
    cb = CompressionCallback(cfg, densities)
    cb.on_fit_start(trainer, module)
    name = "layers.0.W_ir"
    for step in range(30):
        trainer.global_step = step
        sparse = step < 10 or step >= 20
        cb.on_train_batch_start(trainer, module, None, step)
        applied = views[name].detach().clone()
        density = (applied != 0).float().mean().item()
        if sparse:
            assert density == pytest.approx(0.5, abs=0.01)
        elif step > 10:     # dense again: pruned weights restart from zero and then grow
            assert density > 0.9
        # the forward pass sees 6-bit values: at most 64 distinct ones, on one power-of-two grid
        assert len(torch.unique(applied)) <= 64
        # 6-bit DFP: frac = 4 - floor(log2(max)); one bit finer covers a max rounded upwards
        grid = 2.0 ** (5 - torch.floor(torch.log2(applied.abs().max())))
        assert torch.equal(applied * grid, torch.round(applied * grid))
        cb.on_before_optimizer_step(trainer, module, None)
        latent = views[name].detach().clone()
        assert not torch.equal(latent, applied)   # the optimizer steps from the float latent
        with torch.no_grad():
            views[name].add_(0.01)                        # an optimizer step
        cb.on_train_batch_end(trainer, module, None, None, step)
        if sparse:
            assert torch.equal(views[name] == 0, ~cb.masks[name])
        else:
            assert name not in cb.masks                    # DSD's dense phase: no mask
    state = cb.state_dict()
    assert state["progress"] == 1.0 and name in state["masks"]
