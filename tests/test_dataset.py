import pytest
import torch
from conftest import tone, write

import asr.data.dataset as dataset_mod
from asr.data.datamodule import CTCDataModule, fits_ctc
from asr.data.dataset import BucketBatchSampler, CTCDataset, FeatureCache, collate_ctc
from asr.data.manifest import Utterance, write_manifest
from asr.features import AugmentConfig, FeatureConfig
from asr.text import CharVocab


@pytest.fixture
def utterances(tmp_path):
    utts = []
    for i, seconds in enumerate([0.5, 1.0, 1.5, 0.7, 2.0, 0.6]):
        path = write(tmp_path / "audio" / f"u{i}.wav", tone(seconds, 16000, 300 + 50 * i, seed=i),
                     16000)
        utts.append(Utterance(str(path), seconds, "ab c" * (i + 1), f"s{i % 2}", f"u{i}"))
    return utts


def test_items_and_collate(utterances):
    ds = CTCDataset(utterances, CharVocab(), FeatureConfig(kind="fbank"))
    item = ds[1]
    assert item["features"].shape == (ds.num_frames(1), 80) == (101, 80)
    assert item["tokens"].tolist() == CharVocab().encode("ab cab c")
    batch = collate_ctc([ds[0], ds[4]])
    assert batch["features"].shape == (2, 201, 80)
    assert batch["feature_lengths"].tolist() == [51, 201]
    assert batch["tokens"].shape == (2, 20) and batch["token_lengths"].tolist() == [4, 20]
    assert batch["tokens"][0, 4:].eq(0).all()
    assert batch["utt_ids"] == ["u0", "u4"]


def test_feature_cache_reuses_and_invalidates(utterances, tmp_path, monkeypatch):
    cfg = FeatureConfig()
    ds = CTCDataset(utterances, CharVocab(), cfg, cache_dir=tmp_path / "cache")
    first = ds[2]["features"]
    calls = []
    real_load = dataset_mod.load_audio
    monkeypatch.setattr(dataset_mod, "load_audio", lambda *a, **k: calls.append(a) or
                        real_load(*a, **k))
    second = CTCDataset(utterances, CharVocab(), cfg, cache_dir=tmp_path / "cache")[2]["features"]
    assert calls == [] and second.equal(first)
    # another feature config gets its own cache folder
    CTCDataset(utterances, CharVocab(), FeatureConfig(n_mfcc=13),
               cache_dir=tmp_path / "cache")[2]
    assert len(calls) == 1
    assert len(list((tmp_path / "cache").iterdir())) == 2
    # an edited audio file is recomputed
    write(utterances[2].audio_filepath, tone(1.5, 16000, 999), 16000)
    third = CTCDataset(utterances, CharVocab(), cfg, cache_dir=tmp_path / "cache")[2]["features"]
    assert len(calls) == 2 and not third.equal(first)


def test_truncated_cache_entry_is_recomputed(utterances, tmp_path):
    cache = FeatureCache(tmp_path / "c", FeatureConfig())
    ds = CTCDataset(utterances, CharVocab(), FeatureConfig(), cache_dir=tmp_path / "c")
    good = ds[0]["features"]
    path = cache.path(utterances[0].audio_filepath, 1.0)
    path.write_bytes(path.read_bytes()[:50])
    assert ds[0]["features"].equal(good)


def test_augmentation_only_changes_training_items(utterances, tmp_path):
    aug = AugmentConfig(speed_factors=[0.9, 1.1], time_masks=2, time_width=5, freq_masks=1)
    ds = CTCDataset(utterances, CharVocab(), FeatureConfig(), aug, cache_dir=tmp_path / "c")
    torch.manual_seed(0)
    lengths = {ds[4]["features"].shape[0] for _ in range(12)}
    assert lengths == {ds.num_frames(4, 0.9), ds.num_frames(4, 1.1)}
    plain = CTCDataset(utterances, CharVocab(), FeatureConfig())
    assert plain.augment is None and plain[4]["features"].shape[0] == plain.num_frames(4)


def test_bucket_sampler_covers_everything_within_budget():
    durations = [0.5 + (i * 37 % 100) / 10 for i in range(200)]
    sampler = BucketBatchSampler(durations, max_seconds=30.0, max_batch_size=16, seed=1)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(200))
    for b in batches:
        assert len(b) <= 16
        assert len(b) == 1 or max(durations[i] for i in b) * len(b) <= 30.0
    sampler.set_epoch(1)
    assert list(sampler) != batches
    assert len(sampler) == len(batches)
    ordered = list(BucketBatchSampler(durations, 30.0, 16, shuffle=False))
    assert ordered == list(BucketBatchSampler(durations, 30.0, 16, shuffle=False))


def test_bucket_sampler_shards_for_ddp():
    durations = [1.0] * 50
    shards = [list(BucketBatchSampler(durations, 4.0, 64, seed=0, num_replicas=3, rank=r))
              for r in range(3)]
    assert len({len(s) for s in shards}) == 1
    seen = [i for s in shards for b in s for i in b]
    assert set(seen) == set(range(50))


def test_fits_ctc_counts_repeats(utterances):
    short = Utterance(utterances[0].audio_filepath, 0.5, "a" * 30, "s", "x")
    ds = CTCDataset([short, utterances[0]], CharVocab(), FeatureConfig(kind="fbank", stack=3,
                                                                       subsample=3))
    assert ds.num_frames(0) == 17
    assert not fits_ctc(ds, 0) and fits_ctc(ds, 1)


def test_datamodule_batches(utterances, tmp_path):
    write_manifest(tmp_path / "train.jsonl", utterances[:4])
    write_manifest(tmp_path / "val.jsonl", utterances[4:])
    dm = CTCDataModule(tmp_path / "train.jsonl", tmp_path / "val.jsonl",
                       features={"kind": "fbank", "n_mels": 40},
                       augment={"time_masks": 1}, batch={"max_seconds": 3.0, "num_workers": 0},
                       cache_dir=tmp_path / "cache")
    dm.setup("fit")
    train = list(dm.train_dataloader())
    assert sum(len(b["utt_ids"]) for b in train) == 4
    assert all(b["features"].shape[-1] == 40 for b in train)
    val = list(dm.val_dataloader())
    assert [u for b in val for u in b["utt_ids"]] == ["u5", "u4"]  # sorted by duration
    assert dm.dropped == {"train": 0, "val": 0}
    with pytest.raises(ValueError, match="data.test_manifest is not set"):
        dm.test_dataloader()


def test_datamodule_drops_utterances_ctc_cannot_align(utterances, tmp_path):
    too_long = Utterance(utterances[0].audio_filepath, 0.5, "a" * 80, "s9", "long")
    write_manifest(tmp_path / "train.jsonl", [too_long, *utterances[:3]])
    write_manifest(tmp_path / "val.jsonl", utterances[3:])
    dm = CTCDataModule(tmp_path / "train.jsonl", tmp_path / "val.jsonl",
                       batch={"num_workers": 0})
    dm.setup("fit")
    train = dm.datasets["train"]
    assert dm.dropped["train"] == 1
    assert [u.utt_id for u in train.utterances] == ["u0", "u1", "u2"]
    assert [t.tolist() for t in train.tokens] == [CharVocab().encode(u.text)
                                                  for u in utterances[:3]]
