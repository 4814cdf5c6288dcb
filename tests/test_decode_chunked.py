"""Long files decoded in chunks: pieces of audio equal the whole file read at once, chunked
features and model outputs equal the whole-file ones, and transcripts do not change."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch

import asr.decode.recognizer as recognizer_module
from asr.audio import AudioStream, load_audio
from asr.cli.decode import main as decode_main
from asr.cli.loading import load_model
from asr.data.manifest import read_manifest
from asr.decode.chunked import STATE, WINDOWS, ChunkedFeatures, chunk_plan, chunked_logits
from asr.decode.recognizer import Recognizer, make_decoder
from asr.features import FeatureConfig, FeatureExtractor
from asr.metrics import error_rates
from asr.models.acoustic import GraphModel
from asr.models.lstm import LSTMCTC
from asr.models.wavenet import WaveNetCTC


@pytest.fixture(scope="module")
def noise_file(tmp_path_factory):
    """9 s of noise at 22.05 kHz (resampled on reading) with a quiet stretch and a stretch of
    digital silence (which the 80 dB floor clamps)."""
    rng = np.random.default_rng(0)
    x = (0.2 * rng.standard_normal(22050 * 9 + 123)).astype(np.float32)
    x[:22050] *= 0.001
    x[22050 * 3:22050 * 4] = 0.0
    path = tmp_path_factory.mktemp("noise") / "noise.wav"
    sf.write(path, x, 22050, subtype="FLOAT")
    return path


@pytest.mark.parametrize("rate,channels", [(16000, 1), (22050, 2), (44100, 1), (8000, 1)])
def test_audio_stream_pieces_equal_the_whole_file(tmp_path, rate, channels):
    rng = np.random.default_rng(rate)
    x = (0.3 * rng.standard_normal((rate * 3 + 77, channels))).astype(np.float32)
    sf.write(tmp_path / "a.wav", x, rate, subtype="FLOAT")
    whole = load_audio(tmp_path / "a.wav", 16000)
    stream = AudioStream(tmp_path / "a.wav", 16000)
    assert stream.num_samples == len(whole)
    for start, stop in [(0, 1000), (5000, 17000), (12345, 30001), (len(whole) - 3000,
                                                                     len(whole) + 50)]:
        piece = stream.read(start, stop)
        torch.testing.assert_close(piece, whole[start:stop], atol=1e-6, rtol=0)


FEATURES = [
    FeatureConfig(kind="fbank", n_mels=24, stack=2, subsample=2),
    FeatureConfig(kind="mfcc"),
    FeatureConfig(kind="fbank", n_mels=40, stack=16, subsample=4, tail_frames=5),
    FeatureConfig(kind="mfcc", normalize="global", global_mean=[0.0] * 20,
                  global_std=[2.0] * 20, stack=3, subsample=3),
    FeatureConfig(kind="fbank", normalize="none", stack=3, subsample=3),
]


@pytest.mark.parametrize("cfg", FEATURES, ids=lambda c: f"{c.kind}-{c.normalize}-{c.stack}")
def test_chunked_features_and_outputs_equal_the_whole_file(noise_file, cfg):
    torch.manual_seed(0)
    extractor = FeatureExtractor(cfg)
    whole = extractor(load_audio(noise_file, 16000))
    # small pieces, so that several meet the floor, the stacking and the tail
    front = ChunkedFeatures(extractor, AudioStream(noise_file, 16000), chunk_frames=137)
    assert front.model_frames == whole.shape[0]
    pieces = torch.cat([front.model_input(m, min(m + 50, front.model_frames))
                        for m in range(0, front.model_frames, 50)])
    torch.testing.assert_close(pieces, whole, atol=1e-4, rtol=1e-4)

    lstm = LSTMCTC(cfg.dim, 29, 32, 16, 2).eval()
    wavenet = WaveNetCTC(cfg.dim, 29, 16, 2, (1, 2, 4), 3).eval()
    exact = [lstm, wavenet, GraphModel(wavenet.export()).eval()]
    assert chunk_plan(lstm, 100) == (STATE, 0, 0)
    assert chunk_plan(wavenet, 100) == (WINDOWS, 14, 14)   # 2 x (1 + 2 + 4) x (3 - 1) / 2
    for model in exact:
        with torch.no_grad():
            expected = model(whole[None], torch.tensor([whole.shape[0]]))
        got = chunked_logits(model, front, chunk_frames=61, context_frames=100)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    # a bidirectional LSTM has no exact chunking: overlapping windows, same shape
    bidirectional = LSTMCTC(cfg.dim, 29, 32, 0, 1, bidirectional=True).eval()
    assert chunk_plan(bidirectional, 100) == (WINDOWS, 100, 100)
    assert chunked_logits(bidirectional, front, 61, 100).shape == expected.shape


@pytest.fixture(scope="module")
def three_minutes(tone_manifests, tmp_path_factory):
    """Three minutes of the dev utterances one after another (0.3 s apart), 16-bit WAV."""
    pieces = []
    for u in read_manifest(tone_manifests / "dev.jsonl"):
        pieces += [sf.read(u.audio_filepath, dtype="int16")[0], np.zeros(4800, np.int16)]
    block = np.concatenate(pieces)
    wav = np.tile(block, -(-180 * 16000 // len(block)))[:180 * 16000]
    path = tmp_path_factory.mktemp("long") / "three_minutes.wav"
    sf.write(path, wav, 16000, subtype="PCM_16")
    return path


def test_a_long_file_decodes_the_same_in_chunks(tone_model, three_minutes, monkeypatch):
    model = load_model(tone_model)
    decoder = make_decoder("greedy", model)
    (whole,) = list(Recognizer(model, long_file_seconds=None).posteriors([str(three_minutes)]))

    # the chunked path never reads the whole file: it fails if it tries, and no piece read is
    # longer than a chunk plus the STFT context
    def refuse(*args, **kwargs):
        raise AssertionError("the long file was read whole")

    longest = []
    read = AudioStream.read

    def recording_read(self, start, stop):
        longest.append(min(stop, self.num_samples) - max(start, 0))
        return read(self, start, stop)

    monkeypatch.setattr(recognizer_module, "load_audio", refuse)
    monkeypatch.setattr(AudioStream, "read", recording_read)
    chunked = Recognizer(model, long_file_seconds=60, chunk_seconds=20)
    (post,) = list(chunked.posteriors([str(three_minutes)]))
    assert max(longest) <= 20 * 16000 + 2 * 320 + 16000 * 0.02 * 2   # chunk, context, stack
    assert len(longest) >= 2 * 9     # the statistics pass and the model pass, 9 chunks each

    assert post.logits.shape == whole.logits.shape and post.durations == whole.durations
    torch.testing.assert_close(post.logits, whole.logits, atol=1e-4, rtol=1e-4)
    (a,), (b,) = decoder(whole.logits, whole.lengths), decoder(post.logits, post.lengths)
    assert b.text == a.text and len(a.text) > 100
    assert error_rates([a.text], [b.text]).wer == 0.0


def test_asr_decode_chunks_long_files_with_the_same_output(tone_model, three_minutes,
                                                           tone_manifests, capsys):
    short = str(tone_manifests / "audio" / "u1_0.wav")
    outputs = []
    for chunk in ("0", "25"):
        assert decode_main([str(tone_model), short, str(three_minutes), short,
                            "--chunk-seconds", chunk, "--output-format", "ctm"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    rows = [line.split() for line in outputs[1].splitlines() if "three_minutes" in line]
    starts = [float(r[2]) for r in rows]
    assert rows and starts == sorted(starts)
    assert all(0 <= float(r[2]) and float(r[2]) + float(r[3]) <= 180.0 for r in rows)


def test_a_compressed_lstm_graph_decodes_the_same_in_overlapping_windows(tone_model,
                                                                         three_minutes):
    # A graph's LSTM cannot carry its state between calls: each chunk runs with 4 s of left
    # context instead (approximate at the seams), which leaves the transcript unchanged.
    model = load_model(tone_model)
    graph = replace(model, model=GraphModel(model.model.export()).eval())
    decoder = make_decoder("greedy", graph)
    texts = []
    for recognizer in (Recognizer(graph, long_file_seconds=None),
                       Recognizer(graph, long_file_seconds=60, chunk_seconds=20,
                                  context_seconds=4)):
        (post,) = list(recognizer.posteriors([str(three_minutes)]))
        texts.append(decoder(post.logits, post.lengths)[0].text)
    assert texts[0] == texts[1] and len(texts[0]) > 100
