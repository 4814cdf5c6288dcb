import pytest

from asr.metrics import error_rates


def test_wer_and_cer_counts():
    r = error_rates(["the cat sat", "a b"], ["the hat sat down", "a b"])
    # one substitution and one insertion over five reference words
    assert (r.substitutions, r.deletions, r.insertions, r.ref_words) == (1, 0, 1, 5)
    assert r.wer == pytest.approx(2 / 5)
    # characters: c->h and " down" inserted (5 chars) over 11 + 3 reference characters
    assert r.cer == pytest.approx(6 / 14)


def test_empty_hypothesis_is_all_deletions():
    r = error_rates(["one two three"], [""])
    assert r.deletions == 3 and r.wer == 1.0


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        error_rates(["a", "b"], ["a"])
