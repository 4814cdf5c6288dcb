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
    with pytest.raises(SynthError, match="synth.num_voices \\+ extra_train_voices: 5000 requested"):
        synthesize_corpus(tmp_path / "x", SynthConfig(num_voices=5000))


def test_a_rerun_with_other_inputs_remakes_the_audio_it_changes(tmp_path, capsys):
    """synth.json records what every file was made from: a rerun with another text or seed
    re-makes the files whose plan changed (naming what changed), so no old audio stays under a
    new transcript; a rerun with the same inputs re-makes nothing."""
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    one.write_text("a b c\nd e f\ng h i\n")
    two.write_text("one two three\nfour five six\nseven eight nine\n")
    cfg = SynthConfig(num_utts=6, num_voices=3, test_voices=1, dev_voices=0, text_holdout=0,
                      seed=0, workers=1)
    out = tmp_path / "corpus"

    def audio_by_text(result):
        return {u.utt_id: (u.text, load_audio(u.audio_filepath))
                for utts in result.splits.values() for u in utts}

    first = synthesize_corpus(out, cfg, one)
    assert first.remade == 0 and first.changed == []
    state = json.loads((out / "synth.json").read_text())
    assert len(state["files"]) == 6 and len(state["inputs_sha256"]) == 64
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("audio/*/*.flac")}
    again = synthesize_corpus(out, cfg, one)
    assert again.remade == 0 and {p: p.stat().st_mtime_ns for p in mtimes} == mtimes

    other_text = synthesize_corpus(out, cfg, two)
    assert other_text.remade == 6
    assert any(c.startswith("the text") for c in other_text.changed), other_text.changed
    fresh = audio_by_text(synthesize_corpus(tmp_path / "fresh", cfg, two))
    for utt_id, (text, wav) in audio_by_text(other_text).items():
        assert fresh[utt_id][0] == text and fresh[utt_id][1].equal(wav), utt_id

    other_seed = synthesize_corpus(out, SynthConfig(**{**cfg.__dict__, "seed": 1}), two)
    assert "seed 0 -> 1" in other_seed.changed and other_seed.remade > 0
    assert "workers" not in " ".join(other_seed.changed)
    # audio of unknown origin (no record: an older asr-data, a copied folder) is re-made
    (out / "synth.json").unlink()
    unknown = synthesize_corpus(out, SynthConfig(**{**cfg.__dict__, "seed": 1}), two)
    assert unknown.remade == 6 and "no readable synth.json" in unknown.changed[0]
    # files no longer planned go: no audio lies around that no manifest lists
    fewer = synthesize_corpus(out, SynthConfig(**{**cfg.__dict__, "seed": 1, "num_utts": 4}), two)
    assert fewer.remade == 2 and fewer.changed == ["num_utts 6 -> 4"]
    assert len(list(out.glob("audio/*/*.flac"))) == 4
    # the command says so
    from asr.cli.data import main
    assert main(["synth", "--text", str(two), "--out", str(out), "--num-utts", "6",
                 "--num-voices", "3", "--test-voices", "1", "--dev-voices", "0",
                 "--text-holdout", "0", "--seed", "0", "--workers", "1"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "made from other inputs before (num_utts 4 -> 6; seed 1 -> 0)" in said, said


def test_extra_training_voices_leave_the_held_out_voices_unchanged(tmp_path):
    voices = [f"espeak:v{i:03d}" for i in range(200)]
    base = SynthConfig(num_utts=300, seed=3)
    more = SynthConfig(num_utts=300, seed=3, extra_train_voices=40)
    _, split = plan_corpus(["one two", "three four", "five six"], voices, base, tmp_path)
    jobs, split_more = plan_corpus(["one two", "three four", "five six"], voices, more, tmp_path)
    assert split_more["test"] == split["test"] and split_more["dev"] == split["dev"]
    assert set(split["train"]) < set(split_more["train"])
    assert len(split_more["train"]) == len(split["train"]) + 40
    # every extra voice speaks, and only in the training split
    extra = set(split_more["train"]) - set(split["train"])
    spoken = {j.voice for j in jobs if j.split == "train"}
    assert extra <= spoken and not extra & {j.voice for j in jobs if j.split != "train"}


def test_extra_test_utterances_add_to_the_test_split_and_change_nothing_else(tmp_path):
    voices = [f"espeak:v{i:03d}" for i in range(100)]
    text = [f"{a} {b}" for a in ("one", "two", "three", "four") for b in ("five", "six", "oh")]
    base = SynthConfig(num_utts=300, seed=3)
    more = SynthConfig(num_utts=300, seed=3, extra_test_utts=120)
    jobs, split = plan_corpus(text, voices, base, tmp_path)
    jobs_more, split_more = plan_corpus(text, voices, more, tmp_path)
    assert split_more == split
    assert jobs_more[:300] == jobs                       # the first utterances stay the same
    extra = jobs_more[300:]
    assert len(extra) == 120 and {j.split for j in extra} == {"test"}
    assert {j.voice for j in extra} == set(split["test"])   # every test voice, no other
    # the test split's own sentences: none that training hears
    assert not {j.text for j in extra} & {j.text for j in jobs if j.split == "train"}
    with pytest.raises(ValueError, match="synth.extra_test_utts"):
        SynthConfig(extra_test_utts=-1)
