"""Greedy and beam-search CTC decoding, closed vocabularies, LMs, asr-decode and asr-eval."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import LETTERS, tone_corpus

from asr.cli.decode import main as decode_main
from asr.cli.evaluate import main as eval_main
from asr.cli.evaluate import read_error_hypotheses, write_errors
from asr.cli.lm import main as lm_main
from asr.decode import BeamConfig, BeamSearchDecoder, greedy_decode, greedy_hypotheses
from asr.lm import build_arpa
from asr.metrics import error_rates
from asr.text import CharVocab

VOCAB = CharVocab()
DIGITS = "zero one two three four five six seven eight nine".split()


def posteriors(frames: list[dict[str, float]]) -> torch.Tensor:
    """(1, T, V) logits whose softmax puts the given probabilities on tokens ('' = blank)."""
    probs = np.full((len(frames), len(VOCAB)), 1e-6)
    for t, frame in enumerate(frames):
        for token, p in frame.items():
            probs[t, VOCAB.blank_id if token == "" else VOCAB.tokens.index(token)] = p
    return torch.tensor(np.log(probs / probs.sum(1, keepdims=True)))[None].float()


def spell(text: str) -> list[dict[str, float]]:
    """Peaked frames spelling ``text``: each character, then a blank."""
    return [f for ch in text for f in ({ch: 0.98}, {"": 0.98})]


def test_greedy_and_beam_agree_on_peaked_posteriors():
    rng = np.random.default_rng(0)
    beam = BeamSearchDecoder(VOCAB, BeamConfig(beam_width=8))
    for _ in range(10):
        text = " ".join("".join(rng.choice(list("abcdefgh"), rng.integers(1, 6)))
                        for _ in range(rng.integers(1, 4)))
        logits = posteriors(spell(text))
        lengths = torch.tensor([logits.shape[1]])
        assert greedy_decode(logits, lengths, VOCAB) == [text]
        (hyp,) = beam.decode(logits, lengths)
        assert hyp.text == text
        assert [w.word for w in hyp.words] == text.split()
        assert 0.5 < hyp.confidence <= 1.0


def test_greedy_hypotheses_give_word_times_and_confidence():
    logits = posteriors([{"": 0.98}] * 3 + spell("ab") + [{"": 0.98}] * 2 + spell("c"))
    (hyp,) = greedy_hypotheses(logits, torch.tensor([logits.shape[1]]), VOCAB, frame_shift=0.02)
    assert hyp.text == "abc" or hyp.text == "ab c"
    logits = posteriors([{"": 0.98}] * 3 + spell("ab") + [{" ": 0.98}] + spell("c"))
    (hyp,) = greedy_hypotheses(logits, torch.tensor([logits.shape[1]]), VOCAB, frame_shift=0.02)
    assert hyp.text == "ab c"
    assert [(w.word, w.start, w.end) for w in hyp.words] == [("ab", 0.06, 0.12),
                                                               ("c", 0.16, 0.18)]
    assert hyp.confidence > 0.99
    unsure = posteriors([{"a": 0.6, "": 0.4}, {"": 0.6, "b": 0.4}, {"b": 0.6, "": 0.4}])
    (hyp,) = greedy_hypotheses(unsure, torch.tensor([3]), VOCAB)
    assert hyp.text == "ab" and hyp.confidence == pytest.approx(0.6, abs=0.001)


def test_closed_vocabulary_turns_a_misspelling_into_a_listed_word():
    # greedy reads "zeo": the 'r' loses its frame to a blank by a small margin
    frames = [{"z": 0.9}, {"e": 0.9}, {"": 0.55, "r": 0.45}, {"o": 0.9}]
    logits, lengths = posteriors(frames), torch.tensor([4])
    assert greedy_decode(logits, lengths, VOCAB) == ["zeo"]
    (open_vocab,) = BeamSearchDecoder(VOCAB, BeamConfig()).decode(logits, lengths)
    assert open_vocab.text == "zeo"
    (closed,) = BeamSearchDecoder(VOCAB, BeamConfig(), words=DIGITS).decode(logits, lengths)
    assert closed.text == "zero"


@pytest.mark.parametrize("backend", ["python", "kenlm"])
def test_language_model_and_hotwords_change_an_ambiguous_word(tmp_path, monkeypatch, backend):
    if backend == "kenlm":
        pytest.importorskip("kenlm", reason="kenlm is the optional '.[kenlm]' extra")
    else:
        monkeypatch.setattr("asr.decode.beam._kenlm", lambda: None)
    build_arpa([["the", "red", "cat"]] * 30 + [["a", "rad", "idea"]], 3, tmp_path / "lm.arpa")
    frames = spell("the ") + [{"r": 0.95}, {"a": 0.55, "e": 0.45}, {"d": 0.95}] + spell(" cat")
    logits, lengths = posteriors(frames), torch.tensor([len(frames)])
    assert greedy_decode(logits, lengths, VOCAB) == ["the rad cat"]
    (with_lm,) = BeamSearchDecoder(VOCAB, BeamConfig(alpha=1.0, beta=0.0),
                                   lm_path=str(tmp_path / "lm.arpa")).decode(logits, lengths)
    assert with_lm.text == "the red cat"
    (no_weight,) = BeamSearchDecoder(VOCAB, BeamConfig(alpha=0.0, beta=0.0),
                                     lm_path=str(tmp_path / "lm.arpa")).decode(logits, lengths)
    assert no_weight.text == "the rad cat"
    (hot,) = BeamSearchDecoder(VOCAB, BeamConfig(hotwords=["red"])).decode(logits, lengths)
    assert hot.text == "the red cat"


def test_beam_config_errors_name_the_key():
    with pytest.raises(Exception, match="beam.beam_width"):
        BeamConfig(beam_width=0)
    with pytest.raises(Exception, match="beam.alpha"):
        BeamConfig(alpha=-1)


@pytest.fixture
def audio_files(tone_manifests, tmp_path):
    """The same tone utterance as WAV, FLAC and OGG (at 22.05 kHz), plus a corrupt file."""
    (utt,) = tone_corpus(tmp_path / "src", 1, seed=7)
    wav, sr = sf.read(utt.audio_filepath)
    files = {}
    for fmt, rate in (("wav", 16000), ("flac", 16000), ("ogg", 22050)):
        data = wav if rate == sr else np.interp(np.arange(0, len(wav), sr / rate),
                                                np.arange(len(wav)), wav)
        files[fmt] = tmp_path / "in" / f"utt.{fmt}"
        files[fmt].parent.mkdir(exist_ok=True)
        sf.write(files[fmt], data, rate)
    files["corrupt"] = tmp_path / "in" / "broken.wav"
    files["corrupt"].write_bytes(b"RIFF....WAVEfmt garbage")
    return utt.text, files


def test_asr_decode_reads_several_formats_and_reports_a_corrupt_file(
        tone_model, audio_files, capsys):
    text, files = audio_files
    rc = decode_main([str(tone_model), str(files["wav"]), str(files["flac"]),
                      str(files["corrupt"]), str(files["ogg"]), "--json"])
    captured = capsys.readouterr()
    assert rc == 1
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["path"] for r in records] == [str(files[k]) for k in ("wav", "flac", "ogg")]
    assert records[0]["text"] == records[1]["text"]  # lossless formats: the same posteriors
    for r in records:
        assert set(r) >= {"text", "words", "confidence", "duration", "decode_seconds"}
        assert r["duration"] == pytest.approx(len(text) * 0.16, abs=0.01)
        assert 0 <= r["confidence"] <= 1
    assert "1 file(s) not decoded" in captured.err and "broken.wav" in captured.err
    # folders and the plain text output
    assert decode_main([str(tone_model), str(files["wav"].parent)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("\t" in line for line in lines)


def test_asr_eval_compares_decoders_on_the_same_posteriors(tone_model, tone_manifests, tmp_path,
                                                           capsys):
    words = tmp_path / "words.txt"
    dev = [json.loads(line) for line in open(tone_manifests / "dev.jsonl")]
    words.write_text("\n".join(sorted({u["text"] for u in dev})))
    out = tmp_path / "eval"
    assert eval_main([str(tone_model), str(tone_manifests / "dev.jsonl"), "--decoder",
                      "greedy,beam", "--words", str(words), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "greedy" in printed and "beam" in printed and "RTF" in printed
    report = json.loads((out / "eval.json").read_text())
    assert report["utterances"] == len(dev)
    greedy, beam = report["decoders"]["greedy"], report["decoders"]["beam"]
    assert beam["wer"] <= greedy["wer"]  # the word list can only remove non-words
    assert 0 < greedy["rtf"] < 1
    # the error file lists exactly the utterances greedy got wrong
    assert decode_main([str(tone_model), str(tone_manifests / "dev.jsonl")]) == 0
    hyps = [line.split("\t")[1] for line in capsys.readouterr().out.splitlines()]
    refs = [u["text"] for u in dev]
    assert error_rates(refs, hyps).wer == pytest.approx(greedy["wer"])
    listed = (out / "errors_greedy.txt").read_text()
    assert sum(r != h for r, h in zip(refs, hyps)) == sum(
        u["utt_id"] in listed.split() for u in dev)


def test_asr_lm_tune_writes_params_that_decode_accepts(tone_model, tone_manifests, tmp_path,
                                                       capsys):
    lm, params = tmp_path / "lm.arpa", tmp_path / "params.json"
    assert lm_main(["build", str(tone_manifests / "train.jsonl"), "--order", "2",
                    "--out", str(lm)]) == 0
    assert lm_main(["tune", str(tone_model), str(tone_manifests / "dev.jsonl"), "--lm", str(lm),
                    "--grid", "2", "--beam-width", "4", "--out", str(params)]) == 0
    tuned = json.loads(params.read_text())
    assert len(tuned["search"]) == 4
    assert tuned["dev_wer"] == min(r["wer"] for r in tuned["search"])
    assert (tuned["alpha"], tuned["beta"]) in {(r["alpha"], r["beta"]) for r in tuned["search"]}
    capsys.readouterr()
    utt = json.loads(open(tone_manifests / "dev.jsonl").readline())
    assert decode_main([str(tone_model), utt["audio_filepath"], "--lm-params", str(params)]) == 0
    assert capsys.readouterr().out.startswith(utt["audio_filepath"] + "\t")


def test_tone_letters_cover_the_vocabulary():
    assert set(LETTERS) <= set(VOCAB.tokens)


def test_errors_file_reads_back_its_hypotheses(tmp_path):
    refs = ["a b c", "see the sheep", "one", "x"]
    hyps = ["a c", "sea the sheep too", "one", "s"]  # a deletion, an insertion, exact, 1 word
    write_errors(tmp_path / "errors.txt", refs, hyps, ["u1", "u2", "u3", "u4"])
    assert read_error_hypotheses(tmp_path / "errors.txt") == {
        "u1": "a c", "u2": "sea the sheep too", "u4": "s"}
