"""The artifact file: bit packing, exact round trips (the rebuilt graph, the engine's integer
model), its size against the storage table, the checksum, atomic writes and validation."""

from __future__ import annotations

import dataclasses
import os
import stat

import pytest
import torch
from hydra import compose, initialize_config_dir
from test_hw import small_lstm, small_wavenet

from asr.compress.accounting import storage_table, totals
from asr.compress.app import compress
from asr.compress.artifact import (
    ARTIFACT_FORMAT,
    Artifact,
    ArtifactError,
    CSBStorage,
    CSCStorage,
    DenseCodes,
    FloatWeights,
    PackedInts,
    build_artifact,
    pack_bits,
    payload_digest,
    read_artifact,
    save_artifact,
    unpack_bits,
)
from asr.compress.config import compress_preset, validate_against_model
from asr.compress.pruning import prune_model
from asr.models import LSTMCTC
from asr.models.graph import graph_parameters
from asr.train.config import CONF_DIR
from hw.config import load_engine
from hw.integer_model import compile_model


def test_bit_packing_round_trips_at_every_width():
    g = torch.Generator().manual_seed(0)
    for bits in (1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 17, 31, 32, 33, 62, 63):
        for count in (1, 7, 8, 9, 1000):
            hi = 1 << min(bits, 62)
            values = torch.randint(0, hi, (count,), generator=g, dtype=torch.int64)
            if bits == 63:
                values[0] = (1 << 63) - 1
            data = pack_bits(values, bits)
            assert data.dtype == torch.uint8 and data.numel() == -(-count * bits // 8)
            assert torch.equal(unpack_bits(data, bits, count), values), (bits, count)
    # across the packer's chunks (2**18 values) at an odd width
    values = torch.randint(0, 8, (300_001,), generator=g)
    assert torch.equal(unpack_bits(pack_bits(values, 3), 3, values.numel()), values)
    assert pack_bits(torch.zeros(5, dtype=torch.int64), 0).numel() == 0
    with pytest.raises(ValueError):
        pack_bits(torch.tensor([4]), 2)
    with pytest.raises(ValueError):
        pack_bits(torch.tensor([-1]), 8)
    # signed tensors of any shape: the narrowest width for their range
    codes = torch.randint(-2048, 2048, (6, 5, 3), generator=g)
    p = PackedInts.encode(codes)
    assert p.bits <= 12 and p.shape == (6, 5, 3) and torch.equal(p.decode(), codes)
    const = PackedInts.encode(torch.full((4, 4), -3))
    assert const.bits == 0 and const.data.numel() == 0 and torch.equal(const.decode(),
                                                                       torch.full((4, 4), -3))
    assert PackedInts.encode(torch.zeros(0, 3, dtype=torch.int64)).decode().shape == (0, 3)


def make(model, preset: str, *overrides: str) -> tuple[Artifact, dict[str, torch.Tensor]]:
    cfg = compress_preset(preset, *overrides)
    views = model.matrices()
    densities = validate_against_model(cfg, views, model.model_type)
    masks = prune_model(views, densities, cfg.prune)
    torch.manual_seed(1)
    calibration = [torch.randn(20, 16) * 2 for _ in range(2)]
    art = build_artifact(model, masks, densities, cfg, calibration)
    return dataclasses.replace(art, vocab_tokens=[str(i) for i in range(12)]), masks


# (compress preset and overrides, engine preset and overrides): every storage, number format
# and partition granularity the artifact holds
PRESETS = {
    "ese": (("ese", "compress.prune.num_pes=4"), ("ese", "num_pes=4")),
    "bbs": (("bbs", "compress.prune.bank_size=8"), ("bbs", "num_pes=4")),
    "deep_compression": (("deep_compression",), ("eie_like", "num_pes=4")),
    "eie_like": (("eie_like", "compress.prune.num_pes=4"), ("eie_like", "num_pes=4")),
    "none": (("none",), ("ese", "sparse_format=dense", "num_pes=2")),
    # pruned float matrices: the mask from the zeros, and the kept exact zeros listed
    "none-pruned": (("none", "compress.prune.method=magnitude", "compress.prune.density=0.5"),
                    ("ese", "num_pes=2")),
    # 3-bit codes: many kept weights quantize to 0 (CSC holds them; dense lists them)
    "ese-3bit-row": (("ese", "compress.prune.num_pes=4", "compress.quant.weights.bits=3",
                      "compress.quant.weights.granularity=row"), ("ese", "num_pes=4")),
    "dense-pruned-3bit": (("ese", "compress.storage.format=dense", "compress.prune.num_pes=4",
                           "compress.quant.weights.bits=3"), ("ese", "num_pes=4")),
    "pe-granularity": (("ese", "compress.prune.num_pes=4", "compress.quant.weights.granularity=pe",
                        "compress.quant.biases.granularity=row"), ("ese", "num_pes=8")),
    "bank-granularity": (("bbs", "compress.prune.bank_size=8",
                          "compress.quant.weights.granularity=bank"), ("bbs", "num_pes=4")),
    "pow2": (("ese", "compress.prune.num_pes=4", "compress.quant.weights.kind=pow2",
              "compress.quant.weights.bits=5"), ("ese", "num_pes=4")),
    "flexpoint": (("ese", "compress.prune.num_pes=4", "compress.quant.weights.kind=flexpoint",
                   "compress.quant.biases.kind=none"), ("ese", "num_pes=4")),
}


def _params(art: Artifact) -> dict[str, torch.Tensor]:
    return {k: getattr(op, a) for k, _, op, a in graph_parameters(art.graph)}


def _same_storage(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if type(a) is not type(b):
        return False
    return all(torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y
               for x, y in zip(dataclasses.astuple(a), dataclasses.astuple(b), strict=True))


@pytest.mark.parametrize("case", sorted(PRESETS))
@pytest.mark.parametrize("model_type", ["lstm", "wavenet"])
def test_saved_artifact_rebuilds_exactly_what_build_artifact_computed(case, model_type,
                                                                      tmp_path):
    (cpreset, *cover), (epreset, *eover) = PRESETS[case]
    if model_type == "wavenet":
        model = small_wavenet()
        if cpreset == "bbs":
            cover = [*cover, "+compress.prune.targets.conv_in=1.0"]
    else:
        model = small_lstm()
    built, masks = make(model, cpreset, *cover)
    path = save_artifact(tmp_path / "m.model", built)
    loaded = read_artifact(path)
    assert loaded.graph_cache is None
    # the float runner's graph: exactly the tensors build_artifact computed, float64
    before, after = _params(built), _params(loaded)
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert after[key].dtype == torch.float64 and torch.equal(after[key], value), key
        assert after[key].shape == value.shape, key
    # ... and what the in-memory artifact's own entries decode to
    rebuilt = _params(dataclasses.replace(built, graph_cache=None))
    assert all(torch.equal(rebuilt[k], v) for k, v in before.items())
    g1, g2 = built.graph, loaded.graph
    assert [type(op) for op in g1.ops] == [type(op) for op in g2.ops]
    assert (g1.model_type, g1.input_dim, g1.vocab_size) == (g2.model_type, g2.input_dim,
                                                            g2.vocab_size)
    # masks and codes as built (no dense mask in the file: it is derived)
    for name, entry in loaded.matrices.items():
        mask = masks.get(name)
        if mask is None:
            assert entry.mask is None
        else:
            assert torch.equal(entry.mask, mask.reshape(entry.shape).bool()), name
        if entry.quant is not None:
            assert torch.equal(entry.codes, built.matrices[name].quantized().codes), name
        assert entry.nnz == built.matrices[name].nnz
    assert loaded.compress == built.compress and loaded.activations == built.activations
    # the engine's integer model is the same before and after the file
    engine = load_engine(epreset, eover)
    m1, m2 = compile_model(built, engine), compile_model(loaded, engine)
    for name, a in m1.matrices.items():
        b = m2.matrices[name]
        for f in ("codes", "frac", "weights", "decode", "align", "mask"):
            x, y = getattr(a, f), getattr(b, f)
            assert (x is None and y is None) or torch.equal(x, y), (name, f)
        assert (a.value_bits, a.index_bits, a.decode_offset, a.layer_type) == \
            (b.value_bits, b.index_bits, b.decode_offset, b.layer_type)
        assert _same_storage(a.storage, b.storage), name
    for key, (codes, frac) in m1.biases.items():
        assert torch.equal(codes, m2.biases[key][0]) and torch.equal(frac, m2.biases[key][1])
    assert m1.formats == m2.formats and m1.notes == m2.notes
    assert [r.bytes for r in storage_table(built)] == [r.bytes for r in storage_table(loaded)]


def test_the_file_stores_sparse_codes_and_nothing_dense(tmp_path):
    art, _ = make(small_lstm(), "ese", "compress.prune.num_pes=4")
    path = save_artifact(tmp_path / "m.model", art, source="model.ckpt",
                         metrics={"storage": {"bytes": 1}})
    assert read_artifact(path).source == "model.ckpt" and art.source == ""
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == ARTIFACT_FORMAT and raw["version"] == 2

    def walk(node, where=""):
        if isinstance(node, torch.Tensor):
            yield where, node
        elif isinstance(node, dict):
            for k, v in node.items():
                assert isinstance(k, str)
                yield from walk(v, f"{where}.{k}")
        elif isinstance(node, list | tuple):
            for i, v in enumerate(node):
                yield from walk(v, f"{where}[{i}]")
        else:
            assert node is None or isinstance(node, str | int | float | bool), (where, node)

    tensors = list(walk(raw))
    # one tensor: the blob every packed stream lies in; no float graph, no mask
    assert [w for w, _ in tensors] == [".blob"] and tensors[0][1].dtype == torch.uint8
    entry = raw["payload"]["matrices"]["layers.0.W_ir"]
    assert entry["storage"]["format"] == "csc" and "mask" not in entry
    lstm = raw["payload"]["graph"]["ops"][0]
    assert (lstm["W_ir"], lstm["b_i"]) == ("layers.0.W_ir", "layers.0.b_i")   # names, no weights
    loaded = read_artifact(path)
    stores = {type(e.storage) for e in loaded.matrices.values()}
    assert stores == {CSCStorage, DenseCodes}     # the output layer is left dense
    for e in loaded.matrices.values():
        if isinstance(e.storage, CSCStorage):
            assert e.storage.values.bits <= 12 and e.storage.rel_index.bits <= 4
    bbs, _ = make(small_lstm(), "bbs", "compress.prune.bank_size=8")
    assert {type(e.storage) for e in bbs.matrices.values()} == {CSBStorage, DenseCodes}
    flt, _ = make(small_lstm(), "none")
    assert {type(e.storage) for e in flt.matrices.values()} == {FloatWeights}
    assert all(e.storage.value.dtype == torch.float32 for e in flt.matrices.values())


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR / "asr_compress"), version_base="1.3"):
        return compose(config_name="asr_compress", overrides=list(overrides))


@pytest.mark.parametrize("preset", ["ese", "bbs", "deep_compression"])
def test_file_size_is_the_accounted_storage_plus_a_small_header(preset, tone_model, tmp_path):
    out = tmp_path / f"{preset}.model"
    extra = {"ese": ["compress.prune.num_pes=8"], "bbs": ["compress.prune.bank_size=8"],
             "deep_compression": []}[preset]
    summary = compress(_compose(f"model={tone_model}", f"compress={preset}", f"out={out}",
                                *extra))
    accounted = summary["storage"]["bytes"]
    size = out.stat().st_size
    assert summary["storage"]["file_bytes"] == size
    assert size <= 1.25 * accounted + 64 * 1024
    md = (tmp_path / f"{preset}.storage.md").read_text()
    assert f"file: {size} bytes on disk" in md and f"the {accounted} accounted bytes" in md


@pytest.mark.parametrize("preset", ["ese", "bbs"])
def test_file_size_on_the_demo_lstm_shape(preset, tmp_path):
    # the demo's lstm_small (240 inputs, 256 cells, projection 128, 2 layers: 0.7 M weights,
    # 2.8 MB in float32), random weights: the file is about the storage table's bytes
    torch.manual_seed(0)
    model = LSTMCTC(240, 13, hidden_size=256, proj_size=128, num_layers=2).eval()
    cfg = compress_preset(preset)
    views = model.matrices()
    densities = validate_against_model(cfg, views, "lstm")
    art = build_artifact(model, prune_model(views, densities, cfg.prune), densities, cfg)
    path = save_artifact(tmp_path / "big.model", art)
    t = totals(storage_table(art))
    size = path.stat().st_size
    assert size <= 1.25 * t["bytes"] + 64 * 1024
    assert size < t["float32_bytes"] / 10


def test_asr_compress_prints_accounted_and_file_bytes(tone_model, tmp_path, capsys):
    from asr.compress.app import _print_summary

    out = tmp_path / "ese.model"
    summary = compress(_compose(f"model={tone_model}", "compress=ese", f"out={out}",
                                "compress.prune.num_pes=8"))
    _print_summary(str(out), summary)
    text = capsys.readouterr().out
    assert f"{summary['storage']['bytes']} bytes accounted" in text
    assert f"{out.stat().st_size} bytes on disk" in text


def test_a_damaged_file_fails_its_checksum(tmp_path):
    art, _ = make(small_lstm(), "ese", "compress.prune.num_pes=4")
    path = save_artifact(tmp_path / "ese.model", art)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    bad = tmp_path / "flipped.model"
    bad.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"flipped\.model: checksum mismatch.*re-run "
                                            r"asr-compress"):
        read_artifact(bad)


def test_writes_are_atomic(tmp_path, monkeypatch):
    art, _ = make(small_lstm(), "ese", "compress.prune.num_pes=4")
    path = save_artifact(tmp_path / "ese.model", art)
    good = path.read_bytes()
    mode = stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask     # as open() would make it, not a private temp file

    def killed(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a file")
        raise KeyboardInterrupt   # killed while writing

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        save_artifact(path, art)
    assert path.read_bytes() == good and read_artifact(path).compress.name == "ese"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ese.model"]


def _rewrite(path, edit) -> None:
    """Change a saved artifact's payload and write it back with a valid checksum."""
    data = torch.load(path, weights_only=True)
    edit(data["payload"])
    data["sha256"] = payload_digest({"payload": data["payload"], "blob": data["blob"]})
    torch.save(data, path)


def test_loading_validates_every_field_and_names_it(tmp_path):
    art, _ = make(small_lstm(), "ese", "compress.prune.num_pes=4")
    cases = {
        "matrices.layers.0.W_ix.layer_type": (
            lambda p: p["matrices"]["layers.0.W_ix"].pop("layer_type"), "missing"),
        "compress.prune.bank_size": (
            lambda p: p["compress"]["prune"].pop("bank_size"), "missing"),
        "compress.prune.num_pes": (
            lambda p: p["compress"]["prune"].update(num_pes="32"), "expected int"),
        "matrices.output": (lambda p: p["matrices"].pop("output"), "missing"),
        "matrices.layers.1.W_ir.storage.num_pes": (
            lambda p: p["matrices"]["layers.1.W_ir"]["storage"].update(num_pes=5),
            "divisor"),
        "biases.layers.0.b_i.quant.format": (
            lambda p: p["biases"]["layers.0.b_i"]["quant"]["format"].update(rounding="up"),
            "rounding"),
        "graph.ops": (lambda p: p["graph"].update(ops=[{"op": "NoSuchOp"}]), "inference graph"),
    }
    for i, (field, (edit, problem)) in enumerate(cases.items()):
        path = save_artifact(tmp_path / f"a{i}.model", art)
        _rewrite(path, edit)
        with pytest.raises(ArtifactError, match=rf"a{i}\.model: {field}.*{problem}"):
            read_artifact(path)


def test_version_1_files_say_to_rerun_asr_compress(tmp_path):
    old = tmp_path / "old.model"
    torch.save({"format": ARTIFACT_FORMAT, "version": 1, "graph": {}, "matrices": {}}, old)
    with pytest.raises(ArtifactError, match=r"old\.model: a version 1 compressed model.*re-run "
                                            r"asr-compress"):
        read_artifact(old)
