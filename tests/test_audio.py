import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import tone, write

from asr.audio import AudioError, audio_info, load_audio, read_audio, write_audio


def peak_hz(wav: torch.Tensor, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wav.numpy()))
    return float(np.argmax(spectrum) * sample_rate / len(wav))


@pytest.mark.parametrize("suffix,subtype", [
    (".wav", "PCM_16"), (".wav", "PCM_24"), (".wav", "PCM_32"), (".wav", "FLOAT"),
    (".flac", "PCM_16"), (".ogg", "VORBIS"),
])
def test_formats_and_sample_types_read_as_float_mono(tmp_path, suffix, subtype):
    path = write(tmp_path / f"a{suffix}", tone(0.5, 16000, 440), 16000, subtype)
    wav = load_audio(path)
    assert wav.dtype == torch.float32 and wav.dim() == 1
    assert wav.shape[0] == 8000
    assert abs(peak_hz(wav, 16000) - 440) < 3
    assert 0.4 < float(wav.abs().max()) < 0.6  # integer PCM scaled to [-1, 1]


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampled_to_model_rate_keeps_pitch_and_duration(tmp_path, rate):
    import warnings

    import asr.audio

    asr.audio._WARNED_RATES.clear()
    path = write(tmp_path / "a.wav", tone(1.0, rate, 1000), rate)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        wav = load_audio(path, sample_rate=16000)
    # only audio below the model's rate is said to be missing its top band
    assert [type(w.message) for w in said] == ([asr.audio.AudioWarning] if rate < 16000 else [])
    assert abs(wav.shape[0] - 16000) <= 1
    assert abs(peak_hz(wav, 16000) - 1000) < 3


def test_keep_native_rate(tmp_path):
    path = write(tmp_path / "a.wav", tone(1.0, 8000), 8000)
    wav, sr = read_audio(path)
    assert sr == 8000 and wav.shape[0] == 8000
    assert load_audio(path, sample_rate=None).shape[0] == 8000


def test_stereo_is_averaged(tmp_path):
    left = tone(0.5, 16000, 440)
    stereo = np.stack([left, 0.5 * left], axis=1)
    path = write(tmp_path / "s.wav", stereo, 16000, "FLOAT")
    wav = load_audio(path)
    np.testing.assert_allclose(wav.numpy(), 0.75 * left, atol=1e-6)


def test_corrupt_file_names_the_file(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\x00\x01garbage" + bytes(range(200)))
    with pytest.raises(AudioError, match="corrupt.wav: unreadable audio"):
        load_audio(path)
    with pytest.raises(AudioError, match="unreadable"):
        audio_info(path)


def test_empty_missing_and_zero_sample_files(tmp_path):
    empty = tmp_path / "empty.flac"
    empty.touch()
    with pytest.raises(AudioError, match=r"empty.flac: empty file \(0 bytes\)"):
        load_audio(empty)
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "missing.wav")
    zero = write(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="zero.wav: no audio samples"):
        audio_info(zero)


def test_too_short_file(tmp_path):
    path = write(tmp_path / "short.wav", tone(0.01, 16000), 16000)
    with pytest.raises(AudioError, match=r"short.wav: too short: 0.010 s"):
        load_audio(path)
    assert load_audio(path, min_duration=0.005).shape[0] == 160


def test_non_finite_samples_are_refused(tmp_path):
    data = tone(0.2, 16000)
    data[10] = np.nan
    path = write(tmp_path / "nan.wav", data, 16000, "FLOAT")
    with pytest.raises(AudioError, match="non-finite"):
        load_audio(path)


def test_audio_info_reads_header(tmp_path):
    path = write(tmp_path / "a.flac", tone(1.5, 8000), 8000)
    info = audio_info(path)
    assert (info.sample_rate, info.frames, info.channels) == (8000, 12000, 1)
    assert info.duration == pytest.approx(1.5)


def test_write_audio_round_trip(tmp_path):
    wav = torch.from_numpy(tone(0.3, 16000))
    write_audio(tmp_path / "x" / "out.flac", wav, 16000)
    back = load_audio(tmp_path / "x" / "out.flac")
    assert torch.allclose(back, wav, atol=1 / 2**14)
    assert sf.info(str(tmp_path / "x" / "out.flac")).subtype == "PCM_16"
