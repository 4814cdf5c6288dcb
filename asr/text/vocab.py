"""The CTC character vocabulary: blank, space, apostrophe and a-z (29 tokens)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from string import ascii_lowercase

BLANK = "<blank>"


class CharVocab:
    """Maps normalized text to token ids and back.

    Index 0 is the CTC blank; the default token list is ``[blank, " ", "'", a..z]``. The vocab
    is plain data (``tokens``) so that it travels inside checkpoints and compressed models.

    Example:
        >>> v = CharVocab()
        >>> v.decode(v.encode("it's ok"))
        "it's ok"
    """

    def __init__(self, tokens: Sequence[str] | None = None):
        tokens = list(tokens) if tokens is not None else [BLANK, " ", "'", *ascii_lowercase]
        if not tokens or tokens[0] != BLANK:
            raise ValueError(f"vocab.tokens[0] must be the blank {BLANK!r}, got {tokens[:1]}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocab.tokens has duplicate entries")
        bad = [t for t in tokens[1:] if len(t) != 1]
        if bad:
            raise ValueError(f"vocab.tokens must be single characters after the blank: {bad}")
        self.tokens = tokens
        self._index = {t: i for i, t in enumerate(tokens)}

    blank_id = 0

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharVocab) and other.tokens == self.tokens

    def __repr__(self) -> str:
        return f"CharVocab({len(self)} tokens)"

    def encode(self, text: str) -> list[int]:
        """Token ids of normalized ``text``; a character outside the vocab raises ValueError."""
        try:
            return [self._index[c] for c in text]
        except KeyError as err:
            raise ValueError(
                f"character {err.args[0]!r} of {text!r} is not in the vocabulary; "
                "normalize the text first (asr.text.normalize_text)"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids (blanks dropped, no CTC collapsing)."""
        return "".join(self.tokens[i] for i in ids if i != self.blank_id)

    def ctc_collapse(self, ids: Iterable[int]) -> str:
        """Text of a frame-level CTC path: merge repeats, then drop blanks."""
        out, prev = [], None
        for i in ids:
            if i != prev and i != self.blank_id:
                out.append(self.tokens[i])
            prev = i
        return "".join(out)

    def labels_for_ctcdecode(self) -> list[str]:
        """Labels in the form pyctcdecode expects (blank as the empty string)."""
        return ["", *self.tokens[1:]]
