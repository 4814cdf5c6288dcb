"""English transcript normalization shared by training, LM estimation and scoring.

The output alphabet is exactly the vocabulary's: lower-case a-z, the apostrophe and single
spaces. Numbers become words with num2words (cardinals, ordinals, decimals, years, percentages),
so "In 1984, 3.5% of the 2nd group" becomes
"in nineteen eighty four three point five percent of the second group".
"""

from __future__ import annotations

import re
import unicodedata

from num2words import num2words

# Typographic apostrophes and quotes folded to ASCII before anything else.
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'",
                              "\u201c": '"', "\u201d": '"'})
_SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "@": " at ", "=": " equals "}
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_DECIMAL = re.compile(r"\b(\d+)\.(\d+)\b")
_THOUSANDS = re.compile(r"\b(\d{1,3}(?:,\d{3})+)\b")
_NUMBER = re.compile(r"\d+")
_MONEY = re.compile(r"\$(\d+)(?:\.(\d{2}))?")
_NOT_ALLOWED = re.compile(r"[^a-z' ]+")


def _words(text: str) -> str:
    # num2words writes "twenty-one" and "one hundred and five": hyphens become spaces later.
    return f" {text} "


def _cardinal(match: re.Match[str]) -> str:
    digits = match.group(0)
    value = int(digits)
    # Four-digit numbers from 1100 to 2099 (not multiples of 100 after 2000) read as years.
    if len(digits) == 4 and 1100 <= value <= 2099 and not (2000 <= value <= 2009):
        return _words(num2words(value, to="year"))
    if len(digits) > 1 and digits.startswith("0"):
        # Leading zeros ("007", phone or PIN numbers) are read digit by digit.
        return _words(" ".join(num2words(int(d)) for d in digits))
    return _words(num2words(value))


def _money(match: re.Match[str]) -> str:
    dollars = int(match.group(1))
    text = f"{num2words(dollars)} dollar{'s' if dollars != 1 else ''}"
    if match.group(2) and int(match.group(2)):
        cents = int(match.group(2))
        text += f" and {num2words(cents)} cent{'s' if cents != 1 else ''}"
    return _words(text)


def expand_numbers(text: str) -> str:
    """Spell out the numbers in ``text`` (money, ordinals, decimals, grouped thousands, years)."""
    text = _MONEY.sub(_money, text)
    text = _THOUSANDS.sub(lambda m: m.group(1).replace(",", ""), text)
    text = _ORDINAL.sub(lambda m: _words(num2words(int(m.group(1)), to="ordinal")), text)
    text = _DECIMAL.sub(
        lambda m: _words(f"{num2words(int(m.group(1)))} point "
                         + " ".join(num2words(int(d)) for d in m.group(2))),
        text,
    )
    return _NUMBER.sub(_cardinal, text)


def normalize_text(text: str) -> str:
    """Normalize English text to the vocabulary's alphabet.

    Lower-cases, folds accents to ASCII, spells out numbers and symbols, keeps apostrophes
    inside words ("don't", "james'") and drops every other character, then collapses spaces.

    Example:
        >>> normalize_text("Dr. Smith's 2nd visit cost $3.50!")
        "dr smith's second visit cost three dollars and fifty cents"
    """
    text = text.translate(_APOSTROPHES)
    # Non-ASCII punctuation, symbols and spaces (dashes, guillemets) separate words.
    text = "".join(" " if ord(c) > 127 and unicodedata.category(c)[0] in "PSZ" else c
                   for c in text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    for symbol, spoken in _SYMBOLS.items():
        text = text.replace(symbol, spoken)
    text = expand_numbers(text).lower()
    text = text.replace("-", " ")
    text = _NOT_ALLOWED.sub(" ", text)
    return " ".join(w for w in map(_clean_apostrophes, text.split()) if w)


def _clean_apostrophes(word: str) -> str:
    # Inside a word an apostrophe is a letter (don't); at the start it is a quote mark; at the
    # end it is kept only as a plural possessive (dogs'), otherwise it closed a quotation.
    word = re.sub(r"'{2,}", "'", word).lstrip("'")
    if word.endswith("'") and not word.endswith("s'"):
        word = word.rstrip("'")
    return word
