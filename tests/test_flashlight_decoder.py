"""The flashlight-text beam search decoder (``--decoder flashlight``, the optional [lm] extra)."""

import json
import sys

import numpy as np
import pytest
import torch
from test_decode import DIGITS, VOCAB, posteriors, spell

from asr.cli.decode import main as decode_main
from asr.cli.evaluate import main as eval_main
from asr.config_errors import ConfigError
from asr.decode import BeamConfig, greedy_hypotheses
from asr.decode.recognizer import make_decoder
from asr.lm import build_arpa

NEEDS_FLASHLIGHT = "flashlight-text is the optional '.[lm]' extra: pip install '.[lm]'"


@pytest.fixture
def flashlight():
    pytest.importorskip("flashlight.lib.text", reason=NEEDS_FLASHLIGHT)
    from asr.decode.flashlight import FlashlightDecoder

    return FlashlightDecoder


def test_a_missing_flashlight_text_names_the_extra(monkeypatch, tone_model):
    monkeypatch.setitem(sys.modules, "flashlight", None)  # import flashlight... now fails
    from asr.cli.loading import load_model

    with pytest.raises(ConfigError, match=r"flashlight-text.*\[lm\]"):
        make_decoder("flashlight", load_model(tone_model), BeamConfig())


def test_without_an_lm_it_reads_the_best_path_with_word_times(flashlight):
    rng = np.random.default_rng(0)
    decoder = flashlight(VOCAB, BeamConfig(beam_width=8), frame_shift=0.02)
    for _ in range(10):
        text = " ".join("".join(rng.choice(list("abcdefgh"), rng.integers(1, 6)))
                        for _ in range(rng.integers(1, 4)))
        logits = posteriors([{"": 0.98}] * 2 + spell(text))
        lengths = torch.tensor([logits.shape[1]])
        (hyp,) = decoder.decode(logits, lengths)
        (greedy,) = greedy_hypotheses(logits, lengths, VOCAB, frame_shift=0.02)
        assert hyp.text == greedy.text == text
        # the same words and times (greedy also gives each word a confidence; flashlight not)
        assert [(w.word, w.start, w.end) for w in hyp.words] == \
            [(w.word, w.start, w.end) for w in greedy.words]
        assert 0.5 < hyp.confidence <= 1.0


def test_closed_vocabulary_turns_a_misspelling_into_a_listed_word(flashlight):
    frames = [{"z": 0.9}, {"e": 0.9}, {"": 0.55, "r": 0.45}, {"o": 0.9}]
    logits, lengths = posteriors(frames), torch.tensor([4])
    (hyp,) = flashlight(VOCAB, BeamConfig(), words=DIGITS).decode(logits, lengths)
    assert hyp.text == "zero"
    assert [(w.word, w.start, w.end) for w in hyp.words] == [("zero", 0.0, 0.04)]


@pytest.fixture
def red_cat(tmp_path):
    """An LM that prefers "the red cat", and posteriors where greedy reads "the rad cat"."""
    lm = tmp_path / "lm.arpa"
    build_arpa([["the", "red", "cat"]] * 30 + [["a", "rad", "idea"]], 3, lm)
    frames = spell("the ") + [{"r": 0.95}, {"a": 0.55, "e": 0.45}, {"d": 0.95}] + spell(" cat")
    return str(lm), posteriors(frames), torch.tensor([len(frames)])


def test_the_language_model_changes_an_ambiguous_word(flashlight, red_cat):
    lm, logits, lengths = red_cat
    (with_lm,) = flashlight(VOCAB, BeamConfig(alpha=1.0, beta=0.0), lm).decode(logits, lengths)
    assert with_lm.text == "the red cat"
    (no_weight,) = flashlight(VOCAB, BeamConfig(alpha=0.0, beta=0.0), lm).decode(logits, lengths)
    assert no_weight.text == "the rad cat"
    with pytest.raises(ConfigError, match="--hotwords needs --decoder beam"):
        flashlight(VOCAB, BeamConfig(hotwords=["red"]), lm)


def test_it_searches_as_torchaudios_ctc_decoder(flashlight, red_cat, tmp_path):
    """The same lexicon, LM and options through torchaudio's wrapper give the same words."""
    try:
        from torchaudio.models.decoder import ctc_decoder
    except (ImportError, RuntimeError) as err:
        pytest.skip(f"torchaudio's ctc_decoder is unavailable: {err}")
    lm, _, _ = red_cat
    words = ["a", "cat", "idea", "rad", "red", "the"]
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("".join(f"{w} {' '.join(w)} |\n" for w in words))
    tokens = ["-", "|", *VOCAB.tokens[2:]]  # torchaudio's files cannot hold blank and space
    cfg = BeamConfig(beam_width=16, alpha=0.8, beta=0.5)
    ours = flashlight(VOCAB, cfg, lm)
    theirs = ctc_decoder(str(lexicon), tokens, lm, beam_size=16, beam_threshold=10,
                         lm_weight=0.8 * np.log(10), word_score=0.5, log_add=True,
                         blank_token="-", sil_token="|")
    rng = np.random.default_rng(1)
    for _ in range(20):
        text = " ".join(rng.choice(words, rng.integers(1, 5)))
        frames = [{ch: rng.uniform(0.4, 0.95)} if ch != " " else {" ": 0.9} for ch in text]
        frames = [f for frame in frames for f in (frame, {"": 0.9})]
        logits = posteriors(frames) + torch.randn(1, len(frames), len(VOCAB))
        (hyp,) = ours.decode(logits, torch.tensor([len(frames)]))
        log_probs = logits[0].log_softmax(-1)
        end = torch.full((1, len(VOCAB)), -1e9)
        end[0, VOCAB.tokens.index(" ")] = 0.0  # the end-of-utterance boundary ours appends
        (best, *_), = theirs(torch.cat([log_probs, end])[None].contiguous())
        assert hyp.text.split() == best.words


def test_asr_eval_and_asr_decode_run_it(flashlight, tone_model, tone_manifests, tmp_path,
                                        capsys):
    words = tmp_path / "words.txt"
    dev = [json.loads(line) for line in open(tone_manifests / "dev.jsonl")]
    words.write_text("\n".join(sorted({u["text"] for u in dev})))
    out = tmp_path / "eval"
    assert eval_main([str(tone_model), str(tone_manifests / "dev.jsonl"), "--decoder",
                      "greedy,flashlight", "--words", str(words), "--out", str(out)]) == 0
    report = json.loads((out / "eval.json").read_text())
    greedy, fl = report["decoders"]["greedy"], report["decoders"]["flashlight"]
    assert fl["wer"] <= greedy["wer"]  # the word list can only remove non-words
    assert report["beam"]["beam_width"] == 32
    capsys.readouterr()
    assert decode_main([str(tone_model), dev[0]["audio_filepath"], "--decoder", "flashlight",
                        "--words", str(words), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["text"] in {u["text"] for u in dev}
    assert record["words"][0]["word"] == record["text"]
