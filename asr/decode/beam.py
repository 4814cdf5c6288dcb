"""CTC beam search through pyctcdecode, with an optional word n-gram LM and closed vocabulary.

The language model is an ARPA file. With the optional ``kenlm`` package (``pip install
'.[kenlm]'``) KenLM scores it; without it :class:`asr.lm.NgramLM` does, in pure Python, with the
same numbers. A closed vocabulary (``words``) limits hypotheses to a word list: partial words
outside it are pruned as they are spelled, which suits tasks like digit recognition.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyctcdecode.language_model
import torch
from pyctcdecode.alphabet import Alphabet
from pyctcdecode.constants import AVG_TOKEN_LEN, LOG_BASE_CHANGE_FACTOR
from pyctcdecode.decoder import BeamSearchDecoderCTC
from pyctcdecode.language_model import (
    AbstractLanguageModel,
    LanguageModel,
    load_unigram_set_from_arpa,
)

from asr.config_errors import check
from asr.decode.hypothesis import Hypothesis, WordTiming
from asr.lm.arpa import ArpaError, NgramLM
from asr.lm.kneser_ney import BOS, EOS
from asr.text.vocab import CharVocab

# Score offset of a word outside a closed vocabulary: large enough that it never wins.
CLOSED_VOCAB_OFFSET = -1000.0


@dataclass
class BeamConfig:
    """Beam search settings (``asr-decode``/``asr-eval`` flags, ``asr-lm tune`` output).

    Attributes:
        beam_width: beams kept per frame.
        beam_prune_logp: beams scoring this far (natural log) below the best are dropped.
        token_min_logp: tokens below this log posterior are not expanded (unless a frame's best).
        prune_history: merge beams that share recent history (faster, less diverse).
        alpha: language model weight; beta: word insertion bonus.
        unk_score_offset: log10 penalty of a word the LM (or word list) does not know.
        score_boundary: score sentence start and end with ``<s>``/``</s>``.
        hotwords: words or phrases to favour; hotword_weight: their bonus.
    """

    beam_width: int = 32
    beam_prune_logp: float = -10.0
    token_min_logp: float = -5.0
    prune_history: bool = False
    alpha: float = 0.5
    beta: float = 1.0
    unk_score_offset: float = -10.0
    score_boundary: bool = True
    hotwords: list[str] = field(default_factory=list)
    hotword_weight: float = 10.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, prefix: str = "beam") -> None:
        check(self.beam_width >= 1, f"{prefix}.beam_width", ">= 1", self.beam_width)
        check(self.beam_prune_logp < 0, f"{prefix}.beam_prune_logp", "< 0",
              self.beam_prune_logp)
        check(self.token_min_logp <= 0, f"{prefix}.token_min_logp", "<= 0", self.token_min_logp)
        check(self.alpha >= 0, f"{prefix}.alpha", ">= 0", self.alpha)
        check(self.unk_score_offset <= 0, f"{prefix}.unk_score_offset", "<= 0",
              self.unk_score_offset)


class NgramLanguageModel(AbstractLanguageModel):
    """pyctcdecode's language-model interface over :class:`NgramLM` (no KenLM needed).

    Scores follow pyctcdecode's own ``LanguageModel``: ``alpha * ln P(word | history) +
    beta`` per word, plus ``unk_score_offset`` (log10) for words outside ``unigrams``.
    """

    def __init__(self, lm: NgramLM, unigrams: Collection[str] | None = None,
                 alpha: float = 0.5, beta: float = 1.0, unk_score_offset: float = -10.0,
                 score_boundary: bool = True):
        self.lm = lm
        self.unigrams = set(unigrams) if unigrams is not None else lm.vocab - {BOS, EOS}
        self.prefixes = {w[:i] for w in self.unigrams for i in range(1, len(w) + 1)}
        self.alpha, self.beta = alpha, beta
        self.unk_score_offset = unk_score_offset
        self.score_boundary = score_boundary

    @property
    def order(self) -> int:
        return self.lm.order

    def get_start_state(self) -> tuple[str, ...]:
        return (BOS,) if self.score_boundary else ()

    def score_partial_token(self, partial_token: str) -> float:
        score = 0.0 if partial_token in self.prefixes else self.unk_score_offset
        if len(partial_token) > AVG_TOKEN_LEN:  # as pyctcdecode: long unknowns cost more
            score *= len(partial_token) / AVG_TOKEN_LEN
        return score

    def score(self, prev_state: tuple[str, ...], word: str, is_last_word: bool = False
              ) -> tuple[float, tuple[str, ...]]:
        log10p = self.lm.log10_prob(prev_state, word)
        if word not in self.unigrams:
            log10p += self.unk_score_offset
        state = (*prev_state, word)[-(self.order - 1):] if self.order > 1 else ()
        if is_last_word and self.score_boundary:
            log10p += self.lm.log10_prob(state, EOS)
        return self.alpha * log10p * LOG_BASE_CHANGE_FACTOR + self.beta, state

    def reset_params(self, **params: float) -> None:
        for key in ("alpha", "beta", "unk_score_offset"):
            if params.get(key) is not None:
                setattr(self, key, float(params[key]))


def uniform_word_lm(words: Collection[str]) -> NgramLM:
    """A unigram model giving every listed word (and the sentence end) the same probability."""
    vocab = sorted(set(words)) + [EOS]
    logp = -math.log10(len(vocab))
    return NgramLM([{}, {(w,): logp for w in vocab}], [{}, {}])


def _kenlm():
    """The optional kenlm module, when both it and pyctcdecode's use of it are available."""
    try:
        import kenlm
    except ImportError:
        return None
    return kenlm if hasattr(pyctcdecode.language_model, "kenlm") else None


def load_language_model(lm_path: str | None, words: Sequence[str] | None,
                        cfg: BeamConfig) -> AbstractLanguageModel | None:
    """The LM for pyctcdecode: KenLM when installed, else the pure-Python reader."""
    if lm_path is None and words is None:
        return None
    offset = CLOSED_VOCAB_OFFSET if words is not None else cfg.unk_score_offset
    if lm_path is None:
        return NgramLanguageModel(uniform_word_lm(words), words, cfg.alpha, cfg.beta, offset,
                                  cfg.score_boundary)
    kenlm = _kenlm()
    if kenlm is None:
        lm = NgramLM.from_arpa(lm_path)
        return NgramLanguageModel(lm, words, cfg.alpha, cfg.beta, offset, cfg.score_boundary)
    if not Path(lm_path).is_file():
        raise ArpaError(f"{lm_path}: no such language model file")
    unigrams = words if words is not None else load_unigram_set_from_arpa(lm_path)
    return LanguageModel(kenlm.Model(lm_path), unigrams, cfg.alpha, cfg.beta, offset,
                         cfg.score_boundary)


class BeamSearchDecoder:
    """CTC prefix beam search over a model's frame posteriors.

    Args:
        vocab: the model's vocabulary (blank, space, characters).
        cfg: :class:`BeamConfig`.
        lm_path: ARPA word n-gram model, or None.
        words: closed vocabulary (a word list), or None.
        frame_shift: seconds per model output frame (for word timings).
    """

    def __init__(self, vocab: CharVocab, cfg: BeamConfig | None = None,
                 lm_path: str | None = None, words: Sequence[str] | None = None,
                 frame_shift: float = 0.01):
        self.vocab = vocab
        self.cfg = cfg or BeamConfig()
        self.frame_shift = frame_shift
        self.language_model = load_language_model(lm_path, words, self.cfg)
        alphabet = Alphabet.build_alphabet(vocab.labels_for_ctcdecode())
        self.decoder = BeamSearchDecoderCTC(alphabet, self.language_model)

    def decode_log_probs(self, log_probs: np.ndarray) -> Hypothesis:
        """Decode one utterance's ``(frames, vocab)`` natural-log posteriors."""
        cfg = self.cfg
        beams = self.decoder.decode_beams(
            np.asarray(log_probs, dtype=np.float32), beam_width=cfg.beam_width,
            beam_prune_logp=cfg.beam_prune_logp, token_min_logp=cfg.token_min_logp,
            prune_history=cfg.prune_history, hotwords=cfg.hotwords or None,
            hotword_weight=cfg.hotword_weight)
        text, _, word_frames, _, _ = beams[0]
        scores = np.array([b[-1] for b in beams])
        confidence = float(1.0 / np.exp(scores - scores[0]).sum())
        words = [WordTiming(w, round(s * self.frame_shift, 3), round(e * self.frame_shift, 3))
                 for w, (s, e) in word_frames]
        return Hypothesis(" ".join(text.split()), words, confidence)

    def decode(self, logits: torch.Tensor, lengths: torch.Tensor) -> list[Hypothesis]:
        """Decode a batch of ``(batch, time, vocab)`` scores (log-softmax is applied)."""
        log_probs = logits.float().log_softmax(-1).cpu().numpy()
        return [self.decode_log_probs(lp[:n]) for lp, n in zip(log_probs, lengths.tolist())]
