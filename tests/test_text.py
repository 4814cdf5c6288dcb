import pytest

from asr.text import CharVocab, normalize_text


@pytest.mark.parametrize("raw,expected", [
    ("WE CALL IT BEAR", "we call it bear"),
    ("Hello, World!  How are you?", "hello world how are you"),
    ("Don't stop; it's the dogs' bone.", "don't stop it's the dogs' bone"),
    ("\u2018Quoted\u2019 and \u201cdouble\u201d", "quoted and double"),
    ("I have 3 cats and 21 dogs", "i have three cats and twenty one dogs"),
    ("the 2nd and 23rd", "the second and twenty third"),
    ("pi is 3.14", "pi is three point one four"),
    ("in 1984 and 2008", "in nineteen eighty four and two thousand and eight"),
    ("1,000 people", "one thousand people"),
    ("50% off & free", "fifty percent off and free"),
    ("$3.50", "three dollars and fifty cents"),
    ("007", "zero zero seven"),
    ("caf\u00e9 na\u00efve", "cafe naive"),
    ("well\u2014then", "well then"),
    ("state-of-the-art", "state of the art"),
    ("'tis ''odd''", "tis odd"),
    ("   ", ""),
])
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_normalized_text_is_in_the_vocabulary():
    vocab = CharVocab()
    text = normalize_text("It's 5 o'clock: Zoë & J.R.R. paid $12.99 (20% off) in 1999!")
    assert vocab.decode(vocab.encode(text)) == text


def test_vocab_layout():
    vocab = CharVocab()
    assert len(vocab) == 29
    assert vocab.tokens[:3] == ["<blank>", " ", "'"]
    assert vocab.encode("ab z") == [3, 4, 1, 28]
    assert vocab.labels_for_ctcdecode()[0] == ""


def test_ctc_collapse_merges_repeats_then_drops_blanks():
    vocab = CharVocab()
    a, b, o = vocab.encode("a")[0], vocab.encode("b")[0], vocab.encode("o")[0]
    assert vocab.ctc_collapse([a, a, 0, a, b, b, 0, 0, o, o]) == "aabo"
    assert vocab.decode([a, a, 0, b]) == "aab"


def test_vocab_errors_name_the_problem():
    with pytest.raises(ValueError, match="'A' of 'A' is not in the vocabulary"):
        CharVocab().encode("A")
    with pytest.raises(ValueError, match="tokens\\[0\\] must be the blank"):
        CharVocab(["a", "b"])
    with pytest.raises(ValueError, match="duplicate"):
        CharVocab(["<blank>", "a", "a"])
