import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_dir

from asr.config_errors import ConfigError
from asr.features import AugmentConfig, FeatureConfig, FeatureExtractor
from asr.features.functional import spec_augment, speed_perturb, stack_frames, utterance_cmvn


@pytest.mark.parametrize("kind,dim", [("mfcc", 20), ("fbank", 80)])
def test_shapes_and_frame_count(kind, dim):
    fe = FeatureExtractor(FeatureConfig(kind=kind))
    feats = fe(torch.randn(16000))
    assert feats.shape == (101, dim)  # centered frames: 1 + 16000 // 160
    assert fe.num_frames(16000) == 101
    assert torch.isfinite(feats).all()


def test_batched_equals_one_by_one():
    fe = FeatureExtractor(FeatureConfig(kind="fbank", stack=2, subsample=2))
    wavs = torch.randn(3, 8000)
    batched = fe(wavs)
    for i in range(3):
        torch.testing.assert_close(batched[i], fe(wavs[i]))


def test_utterance_normalization():
    feats = utterance_cmvn(torch.randn(200, 5) * 3 + 7)
    torch.testing.assert_close(feats.mean(0), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(feats.std(0, unbiased=False), torch.ones(5), atol=1e-3, rtol=0)


def test_stack_frames_layout_and_end_padding():
    feats = torch.arange(10.0).reshape(5, 2)  # frame t = [2t, 2t+1]
    out = stack_frames(feats, stack=3, subsample=2)
    assert out.shape == (3, 6)
    assert out[0].tolist() == [0, 1, 2, 3, 4, 5]
    assert out[1].tolist() == [4, 5, 6, 7, 8, 9]
    assert out[2].tolist() == [8, 9, 8, 9, 8, 9]  # last frame repeated
    assert stack_frames(feats, 1, 1) is feats


def test_stacked_config_dimensions():
    cfg = FeatureConfig(kind="fbank", stack=3, subsample=3)
    fe = FeatureExtractor(cfg)
    feats = fe(torch.randn(16000))
    assert feats.shape == (fe.num_frames(16000), 240) == (34, 240)
    assert cfg.frame_shift == pytest.approx(0.03)


def test_tail_frames_append_mean_frames_before_stacking():
    wav = torch.randn(16000)
    plain = FeatureExtractor(FeatureConfig(kind="fbank"))(wav)
    fe = FeatureExtractor(FeatureConfig(kind="fbank", tail_frames=5, stack=2, subsample=2))
    feats = fe(wav)
    assert feats.shape == (fe.num_frames(16000), 160) == (53, 160)  # (101 + 5) / 2
    torch.testing.assert_close(feats[:50, :80], plain[0:100:2])
    assert feats[51:].abs().max() == 0  # frames 102..105: appended zeros
    with pytest.raises(ConfigError, match="features.tail_frames"):
        FeatureConfig(tail_frames=-1)


def test_spec_augment_masks_within_bounds_and_keeps_input():
    feats = torch.ones(100, 20)
    gen = torch.Generator().manual_seed(0)
    out = spec_augment(feats, freq_masks=2, freq_width=5, time_masks=2, time_width=10,
                       generator=gen)
    assert feats.eq(1).all()
    zero_cols = (out == 0).all(0).sum().item()
    zero_rows = (out == 0).all(1).sum().item()
    assert 0 < zero_cols <= 10 and zero_rows <= 20
    assert spec_augment(feats, 0, 5, 0, 10).equal(feats)


def test_spec_augment_on_stacked_features_masks_whole_bands_and_input_frames():
    # The value of a column is its input frame's number: every stacked slot is traceable.
    time_in, bands, stack, sub = 40, 10, 4, 2
    plain = torch.arange(1, time_in + 1.0)[:, None].expand(time_in, bands)
    stacked = stack_frames(plain, stack, sub)
    gen = torch.Generator().manual_seed(3)
    out = spec_augment(stacked, freq_masks=1, freq_width=4, time_masks=1, time_width=3,
                       time_ratio=1.0, generator=gen, stack=stack, subsample=sub)
    hidden = (out == 0).reshape(-1, stack, bands)
    frame_of = stacked.reshape(-1, stack, bands)[..., 0]
    # A frequency mask hides its bands in every stacked slot, not a few stacked columns.
    hidden_bands = hidden.all(0).all(0)
    assert 1 <= hidden_bands.sum() <= 4
    # A time mask hides its input frames in every window that holds them, and no others.
    frame_hidden = hidden[..., ~hidden_bands].all(-1)
    hidden_frames = []
    for frame in range(1, time_in + 1):
        where = frame_hidden[frame_of == frame]
        assert where.all() or not where.any(), frame
        if where.all():
            hidden_frames.append(frame)
    assert 0 < len(hidden_frames) <= 3 * sub
    assert hidden_frames == list(range(hidden_frames[0], hidden_frames[-1] + 1))


def test_speed_perturb_changes_length():
    wav = torch.randn(16000)
    assert speed_perturb(wav, 16000, 1.1).shape[0] == pytest.approx(16000 / 1.1, abs=2)
    assert speed_perturb(wav, 16000, 0.9).shape[0] == pytest.approx(16000 / 0.9, abs=2)
    assert speed_perturb(wav, 16000, 1.0) is wav


@pytest.mark.parametrize("kwargs,key", [
    ({"kind": "plp"}, "features.kind"),
    ({"n_mfcc": 100}, "features.n_mfcc"),
    ({"hop_ms": 30.0}, "features.hop_ms"),
    ({"n_fft": 256}, "features.n_fft"),
    ({"stack": 0}, "features.stack"),
    ({"normalize": "speaker"}, "features.normalize"),
    ({"global_mean": [0.0] * 3}, "features.global_mean"),
    ({"global_std": [0.0] * 20}, "features.global_std"),
])
def test_invalid_feature_config_names_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        FeatureConfig(**kwargs)


def test_unknown_key_and_augment_validation():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['n_mfc'\]"):
        FeatureConfig.from_dict({"n_mfc": 13})
    with pytest.raises(ConfigError, match="augment.speed_factors"):
        AugmentConfig(speed_factors=[3.0])
    assert not AugmentConfig().enabled and AugmentConfig(time_masks=1).enabled


def test_cache_key_tracks_every_setting():
    assert FeatureConfig().cache_key() == FeatureConfig().cache_key()
    assert FeatureConfig().cache_key() != FeatureConfig(hop_ms=12.0).cache_key()


@pytest.mark.parametrize("name,dim", [("mfcc", 20), ("fbank", 80), ("fbank_stack3", 240)])
def test_hydra_feature_group_composes(name, dim):
    with initialize_config_dir(config_dir=str(REPO / "conf" / "features"), version_base="1.3"):
        cfg = compose(config_name=name)
    assert FeatureConfig.from_dict(dict(cfg)).dim == dim


def test_fbank_floor_keeps_silent_bands_constant():
    # Bands more than 80 dB below the loudest one sit at a floor, so per-utterance
    # normalization maps them to zeros instead of amplifying numerical noise to unit variance.
    t = torch.arange(16000) / 16000
    wav = 0.5 * torch.sin(2 * torch.pi * 440 * t) * (1 + 0.5 * torch.sin(2 * torch.pi * 3 * t))
    wav = wav * torch.hann_window(16000, periodic=False)  # no clicks at the edges
    feats = FeatureExtractor(FeatureConfig(kind="fbank"))(wav)
    assert feats[:, -20:].abs().max() < 1e-4
    raw = FeatureExtractor(FeatureConfig(kind="fbank", normalize="none"))(wav)
    assert raw.min() >= raw.max() - 80 / 10 * torch.log(torch.tensor(10.0)) - 1e-4
