"""CTC beam search through flashlight-text's C++ lexicon decoder, with KenLM built in.

The same search as ``torchaudio.models.decoder.ctc_decoder`` (which wraps it), called directly so
that the lexicon and token list are built in memory from the model's :class:`CharVocab` and the
LM's vocabulary. Needs the optional ``flashlight-text`` wheel (``pip install '.[lm]'``).

Words are spelled from the vocabulary's characters and end with its space token, the lexicon
decoder's word boundary ("silence"); one extra frame where only the space token is possible is
appended to every utterance, so that its last word ends like the others. Unlike pyctcdecode's
``beam`` decoder, the search is closed-vocabulary: only words of the LM (or of ``words``) are
output. Scores follow pyctcdecode's: ``alpha * ln P(word | history) + beta`` per word, so tuned
alpha/beta values mean the same for both decoders (flashlight's ``lm_weight`` is ``alpha * ln 10``
because KenLM scores in log10).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from asr.config_errors import ConfigError
from asr.decode.beam import BeamConfig
from asr.decode.hypothesis import Hypothesis, WordTiming, words_from_frames
from asr.lm.arpa import ArpaError
from asr.lm.kneser_ney import BOS, EOS, UNK
from asr.text.vocab import CharVocab

INSTALL_HINT = ("--decoder flashlight needs the flashlight-text package: "
                "pip install 'asr-fpga[lm]' (or pip install flashlight-text)")
# Log-probability of the tokens other than space on the appended end-of-utterance frame.
_IMPOSSIBLE = -1.0e9


def _flashlight():
    """flashlight-text's decoder and dictionary modules, or a ConfigError naming the extra."""
    try:
        from flashlight.lib.text import decoder, dictionary
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return decoder, dictionary


def arpa_words(path: str | Path) -> list[str]:
    """The words of an ARPA file's unigram section (without ``<s>``, ``</s>``, ``<unk>``)."""
    path = Path(path)
    if not path.is_file():
        raise ArpaError(f"{path}: no such language model file")
    words, in_unigrams = [], False
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line == "\\1-grams:":
                in_unigrams = True
            elif in_unigrams and line.startswith("\\"):
                break
            elif in_unigrams and line:
                fields = line.split()
                if len(fields) >= 2 and fields[1] not in (BOS, EOS, UNK):
                    words.append(fields[1])
    if not words:
        raise ArpaError(f"{path}: no unigrams")
    return words


class FlashlightDecoder:
    """CTC beam search over a model's frame posteriors with flashlight-text's decoders.

    With an LM or a word list, the lexicon decoder (words of the LM, or ``words``, spelled in
    the vocabulary's characters); with neither, the lexicon-free decoder (a plain token beam).

    Args:
        vocab: the model's vocabulary (blank, space, characters).
        cfg: :class:`BeamConfig`: ``beam_width``, ``beam_prune_logp`` (the beam threshold),
            ``alpha``, ``beta``; hotwords are pyctcdecode's only.
        lm_path: ARPA word n-gram model, or None.
        words: closed vocabulary (a word list), or None.
        frame_shift: seconds per model output frame (for word timings).
        log_add: merge hypotheses that reach the same state by adding their probabilities
            (as pyctcdecode does) instead of keeping the best.
    """

    def __init__(self, vocab: CharVocab, cfg: BeamConfig | None = None,
                 lm_path: str | None = None, words: Sequence[str] | None = None,
                 frame_shift: float = 0.01, log_add: bool = True):
        fl, fl_dict = _flashlight()
        self.vocab = vocab
        self.cfg = cfg = cfg or BeamConfig()
        self.frame_shift = frame_shift
        if cfg.hotwords:
            raise ConfigError("--hotwords needs --decoder beam (pyctcdecode)")
        if " " not in vocab.tokens:
            raise ConfigError(f"--decoder flashlight needs a space token in the vocabulary "
                              f"(word boundaries); {vocab!r} has none")
        self.space = vocab.tokens.index(" ")
        blank = vocab.blank_id
        n_tokens = len(vocab)
        threshold = -cfg.beam_prune_logp
        lm_weight = cfg.alpha * math.log(10)
        self.lexicon = lm_path is not None or words is not None
        if not self.lexicon:
            opts = fl.LexiconFreeDecoderOptions(
                beam_size=cfg.beam_width, beam_size_token=n_tokens, beam_threshold=threshold,
                lm_weight=0.0, sil_score=0.0, log_add=log_add,
                criterion_type=fl.CriterionType.CTC)
            self.lm = fl.ZeroLM()
            self.decoder = fl.LexiconFreeDecoder(opts, self.lm, self.space, blank, [])
            return
        spelled = sorted(set(words if words is not None else arpa_words(lm_path)))
        index = {t: i for i, t in enumerate(vocab.tokens)}
        spellable = [w for w in spelled if all(c in index and c != " " for c in w)]
        if not spellable:
            raise ConfigError(f"decoder: no word of {lm_path or 'the word list'} can be spelled "
                              f"in the model's vocabulary")
        self.words = [*spellable, UNK]
        word_dict = fl_dict.Dictionary(self.words)
        self.lm = _kenlm(lm_path, word_dict) if lm_path is not None else fl.ZeroLM()
        trie = fl.Trie(n_tokens, self.space)
        start = self.lm.start(False)
        for i, word in enumerate(spellable):
            _, score = self.lm.score(start, i)
            trie.insert([index[c] for c in word] + [self.space], i, score)
        trie.smear(fl.SmearingMode.MAX)
        opts = fl.LexiconDecoderOptions(
            beam_size=cfg.beam_width, beam_size_token=n_tokens, beam_threshold=threshold,
            lm_weight=lm_weight if lm_path is not None else 0.0, word_score=cfg.beta,
            unk_score=-math.inf, sil_score=0.0, log_add=log_add,
            criterion_type=fl.CriterionType.CTC)
        self.trie = trie  # the decoder holds references only: keep the objects alive
        self.decoder = fl.LexiconDecoder(opts, trie, self.lm, self.space, blank,
                                         len(spellable), [], False)

    def decode_log_probs(self, log_probs: np.ndarray) -> Hypothesis:
        """Decode one utterance's ``(frames, vocab)`` natural-log posteriors."""
        frames = len(log_probs)
        if self.lexicon:  # the end-of-utterance word boundary
            end = np.full((1, log_probs.shape[1]), _IMPOSSIBLE, dtype=np.float32)
            end[0, self.space] = 0.0
            log_probs = np.concatenate([log_probs, end])
        emissions = np.ascontiguousarray(log_probs, dtype=np.float32)
        results = self.decoder.decode(emissions.ctypes.data, len(emissions), emissions.shape[1])
        if not results:
            return Hypothesis("", [], 0.0)
        # tokens[0] is the start state; tokens[1 + t] is frame t's token
        path = list(results[0].tokens)[1:frames + 1]
        words = self._words(path)
        scores = np.array([r.score for r in results])
        confidence = float(1.0 / np.exp(scores - scores.max()).sum())
        return Hypothesis(" ".join(w.word for w in words), words, confidence)

    def _words(self, path: list[int]) -> list[WordTiming]:
        blank, tokens = self.vocab.blank_id, self.vocab.tokens
        chars, prev = [], blank
        for t, token in enumerate(path):
            if token != blank and token != prev:
                chars.append((tokens[token], t))
            prev = token
        return words_from_frames(chars, self.frame_shift)

    def decode(self, logits: torch.Tensor, lengths: torch.Tensor) -> list[Hypothesis]:
        """Decode a batch of ``(batch, time, vocab)`` scores (log-softmax is applied)."""
        log_probs = logits.float().log_softmax(-1).cpu().numpy()
        return [self.decode_log_probs(lp[:n]) for lp, n in zip(log_probs, lengths.tolist())]


def _kenlm(lm_path: str, word_dict):
    """flashlight-text's built-in KenLM over ``lm_path`` (ARPA or binary), its word indices
    those of ``word_dict``."""
    try:
        from flashlight.lib.text.decoder.kenlm import KenLM
    except ImportError as err:
        raise ConfigError(f"{INSTALL_HINT}; this flashlight-text has no KenLM ({err})") from None
    if not Path(lm_path).is_file():
        raise ArpaError(f"{lm_path}: no such language model file")
    return KenLM(str(lm_path), word_dict)
