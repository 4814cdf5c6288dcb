import json
import time

import pytest
import soundfile as sf
from conftest import requires_espeak

from asr.audio import load_audio
from asr.config_errors import ConfigError
from asr.data.manifest import read_manifest
from asr.data.synth import (
    SynthConfig,
    SynthError,
    builtin_text,
    plan_corpus,
    read_sentences,
    synthesize_corpus,
)
from asr.text import CharVocab

pytestmark = requires_espeak


@pytest.fixture(scope="module")
def corpus_1000(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth1000")
    start = time.time()
    result = synthesize_corpus(out, SynthConfig(num_utts=1000, seed=7))
    return out, result, time.time() - start


def test_thousand_utterances_with_held_out_voices(corpus_1000):
    out, result, seconds = corpus_1000
    assert not result.failures
    splits = {name: read_manifest(out / f"{name}.jsonl") for name in ("train", "dev", "test")}
    assert sum(len(v) for v in splits.values()) == 1000
    voices = {name: {u.speaker for u in utts} for name, utts in splits.items()}
    assert voices["test"] == set(result.voices["test"]) and len(voices["test"]) == 8
    assert not voices["test"] & voices["train"]
    assert not voices["test"] & voices["dev"]
    assert not voices["dev"] & voices["train"]
    # held-out sentences: no test sentence is spoken in training
    train_text = {u.text for u in splits["train"]}
    assert not {u.text for u in splits["test"]} & train_text
    assert len(splits["test"]) > 100
    assert seconds < 300, f"1000 utterances took {seconds:.0f} s"
    meta = json.loads((out / "voices.json").read_text())
    assert meta["voices"]["test"] == result.voices["test"]


def test_audio_matches_its_manifest(corpus_1000):
    out, _, _ = corpus_1000
    vocab = CharVocab()
    for utt in read_manifest(out / "test.jsonl")[:20]:
        info = sf.info(utt.audio_filepath)
        assert info.samplerate == 16000 and info.channels == 1
        assert info.frames / 16000 == pytest.approx(utt.duration, abs=1e-3)
        assert vocab.decode(vocab.encode(utt.text)) == utt.text
        # speech takes time: at least 20 ms per character
        assert utt.duration > 0.02 * len(utt.text)


def test_same_seed_same_corpus_and_resume(tmp_path):
    cfg = SynthConfig(num_utts=24, num_voices=6, test_voices=2, dev_voices=1, seed=3, workers=1)
    a = synthesize_corpus(tmp_path / "a", cfg)
    b = synthesize_corpus(tmp_path / "b", SynthConfig(**{**cfg.__dict__, "workers": 2}))
    for split in ("train", "dev", "test"):
        ua, ub = a.splits[split], b.splits[split]
        assert [(u.text, u.speaker, u.extra) for u in ua] == [(u.text, u.speaker, u.extra)
                                                            for u in ub]
        for x, y in zip(ua, ub):
            assert load_audio(x.audio_filepath).equal(load_audio(y.audio_filepath))
    # a killed run: one file missing, one half-written; re-running restores both
    victims = [a.splits["train"][0].audio_filepath, a.splits["train"][1].audio_filepath]
    reference = [load_audio(v) for v in victims]
    (tmp_path / "a" / "audio" / "train" / victims[0].split("/")[-1]).unlink()
    with open(victims[1], "r+b") as f:
        f.truncate(100)
    again = synthesize_corpus(tmp_path / "a", cfg)
    assert [u.text for u in again.splits["train"]] == [u.text for u in a.splits["train"]]
    for v, ref in zip(victims, reference):
        assert load_audio(v).equal(ref)


def test_other_seed_other_plan(tmp_path):
    voices = [f"espeak:v{i}" for i in range(20)]
    cfg = SynthConfig(num_utts=50, num_voices=10, test_voices=2, dev_voices=1)
    plan_a, _ = plan_corpus(["a b", "c d", "e f"], voices, cfg, tmp_path)
    plan_b, _ = plan_corpus(["a b", "c d", "e f"], voices,
                            SynthConfig(**{**cfg.__dict__, "seed": 1}), tmp_path)
    assert [j.voice for j in plan_a] != [j.voice for j in plan_b]


def test_noise_at_snr(tmp_path):
    cfg = SynthConfig(num_utts=4, num_voices=3, test_voices=1, dev_voices=0, seed=0, workers=1)
    clean = synthesize_corpus(tmp_path / "clean", cfg)
    noisy = synthesize_corpus(tmp_path / "noisy", SynthConfig(**{**cfg.__dict__, "snr_db": 10}))
    c = load_audio(clean.splits["train"][0].audio_filepath)
    n = load_audio(noisy.splits["train"][0].audio_filepath)
    snr = 10 * (c.pow(2).mean() / (n - c).pow(2).mean()).log10()
    assert 8.5 < float(snr) < 11.5


def test_user_text_and_errors(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("Hello there.\nhello THERE\nGeneral Kenobi, 42!\n\n")
    assert read_sentences(text) == ["hello there", "general kenobi forty two"]
    text.write_text("only one\n")
    with pytest.raises(SynthError, match="needs at least 2 distinct sentences"):
        read_sentences(text)
    assert len(builtin_text()) == 420
    with pytest.raises(ConfigError, match="synth.num_voices"):
        SynthConfig(num_voices=5, test_voices=4, dev_voices=1)
    with pytest.raises(ConfigError, match="synth.engines"):
        synthesize_corpus(tmp_path / "x", SynthConfig(engines=["sam"]))
    with pytest.raises(SynthError, match="synth.num_voices: 5000 requested"):
        synthesize_corpus(tmp_path / "x", SynthConfig(num_voices=5000))
