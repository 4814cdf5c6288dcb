"""Modified Kneser-Ney estimation, the ARPA writer/reader and asr-lm build."""

import math
import random

import pytest

from asr.cli.lm import main as lm_main
from asr.lm import ArpaError, NgramLM, build_arpa, estimate_kneser_ney
from asr.lm.kneser_ney import BOS, EOS

WORDS = "the cat sat on a mat dog ran to big red".split()


def corpus(n=300, seed=0):
    rng = random.Random(seed)
    return [[rng.choice(WORDS) for _ in range(rng.randint(1, 8))] for _ in range(n)]


@pytest.mark.parametrize("order", [2, 3, 4])
def test_every_conditional_distribution_sums_to_one(tmp_path, order):
    build_arpa(corpus(), order, tmp_path / "lm.arpa")
    lm = NgramLM.from_arpa(tmp_path / "lm.arpa")
    assert lm.order == order
    vocab = sorted(lm.vocab - {BOS})
    assert "<unk>" in vocab and EOS in vocab
    contexts = [(), (BOS,), (BOS, "the"), ("the", "cat"), ("red", "big", "dog"),
                ("mat", "zebra"), ("never", "seen")]
    for context in contexts:
        total = sum(10 ** lm.log10_prob(context, w) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-5), context


def test_kneser_ney_prefers_continuation_counts():
    # "francisco" is frequent but only ever follows "san": as a unigram (continuation
    # count 1) it must be less likely than "cat", which follows many words.
    sents = [["san", "francisco"]] * 20 + [[w, "cat"] for w in WORDS[:6]]
    model = estimate_kneser_ney(sents, 2)
    assert model.probs[1][("francisco",)] < model.probs[1][("cat",)]
    assert model.probs[2][("san", "francisco")] > 0.9
    d1, d2, d3 = model.discounts[2]
    assert 0 < d1 < 1 < d2 < 2 < d3 < 3 or (d1, d2, d3) == (0.5, 1.0, 1.5)


def test_arpa_header_counts_and_unknown_words(tmp_path):
    build_arpa(corpus(), 3, tmp_path / "lm.arpa")
    text = (tmp_path / "lm.arpa").read_text()
    lm = NgramLM.from_arpa(tmp_path / "lm.arpa")
    for n in (1, 2, 3):
        assert f"ngram {n}={len(lm.probs[n])}" in text
    assert lm.log10_prob((), "zebra") == lm.log10_prob((), "<unk>") < lm.log10_prob((), "the")
    assert lm.probs[1][(BOS,)] == -99


def test_kenlm_loads_the_file_and_agrees(tmp_path):
    kenlm = pytest.importorskip("kenlm", reason="kenlm is the optional '.[kenlm]' extra")
    build_arpa(corpus(), 3, tmp_path / "lm.arpa")
    ken = kenlm.Model(str(tmp_path / "lm.arpa"))
    ours = NgramLM.from_arpa(tmp_path / "lm.arpa")
    for words in corpus(20, seed=5) + [["zebra", "the", "cat"]]:
        assert ken.score(" ".join(words), bos=True, eos=True) == pytest.approx(
            ours.sentence_log10_prob(words), abs=1e-4)


def test_malformed_arpa_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\tthe\nnot-a-number cat\n\\end\\\n")
    with pytest.raises(ArpaError, match=r"bad.arpa:6: bad number"):
        NgramLM.from_arpa(bad)
    bad.write_text("hello\n")
    with pytest.raises(ArpaError, match="bad.arpa:1: not an ARPA line"):
        NgramLM.from_arpa(bad)
    with pytest.raises(ArpaError, match="no such language model"):
        NgramLM.from_arpa(tmp_path / "none.arpa")


def test_asr_lm_build_normalizes_text_like_transcripts(tmp_path, capsys):
    (tmp_path / "text.txt").write_text("The CAT sat on 2 mats.\nIt's 5 o'clock!\n\n")
    assert lm_main(["build", str(tmp_path / "text.txt"), "--order", "2",
                    "--out", str(tmp_path / "lm.arpa")]) == 0
    lm = NgramLM.from_arpa(tmp_path / "lm.arpa")
    assert {"the", "cat", "two", "mats", "it's", "five", "o'clock"} <= lm.vocab
    assert "2" not in lm.vocab and "CAT" not in lm.vocab
    assert math.isclose(sum(10 ** lm.log10_prob(("the",), w) for w in lm.vocab - {BOS}), 1.0,
                        abs_tol=1e-5)
    assert "2 sentences" in capsys.readouterr().out
    assert lm_main(["build", str(tmp_path / "text.txt"), "--order", "1",
                    "--out", str(tmp_path / "x.arpa")]) == 2
