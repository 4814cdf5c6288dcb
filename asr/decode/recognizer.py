"""Audio files -> hypotheses: a trained model, its front end and a CTC decoder, in batches."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import torch

from asr.audio import AudioError, load_audio
from asr.decode.beam import BeamConfig, BeamSearchDecoder
from asr.decode.greedy import greedy_hypotheses
from asr.decode.hypothesis import Hypothesis
from asr.features.extract import FeatureExtractor
from asr.metrics import ErrorRates, error_rates
from asr.models.acoustic import AcousticModel

Decoder = Callable[[torch.Tensor, torch.Tensor], list[Hypothesis]]
DECODERS = ("greedy", "beam", "flashlight")


@dataclass
class Posteriors:
    """Model outputs of a batch of files, with what it cost to get them."""

    paths: list[str]
    logits: torch.Tensor      # (batch, frames, vocab)
    lengths: torch.Tensor     # (batch,)
    durations: list[float]    # seconds of audio per file
    seconds: float            # wall time of reading, features and forward, for the batch


@dataclass
class Decoded:
    path: str
    hypothesis: Hypothesis
    duration: float
    seconds: float  # this file's share of the forward time plus its decoding time


def make_decoder(kind: str, model: AcousticModel, beam: BeamConfig | None = None,
                 lm: str | None = None, words: Sequence[str] | None = None) -> Decoder:
    """A decoder over ``model``'s outputs: ``greedy``, or ``beam`` (pyctcdecode) or
    ``flashlight`` (flashlight-text, the optional ``[lm]`` extra) with ``lm``/``words``."""
    frame_shift = model.features.frame_shift
    if kind == "greedy":
        if lm is not None or words is not None:
            raise ValueError("decoder: --lm and --words need --decoder beam")
        return partial(greedy_hypotheses, vocab=model.vocab, frame_shift=frame_shift)
    if kind == "beam":
        return BeamSearchDecoder(model.vocab, beam, lm, words, frame_shift).decode
    if kind == "flashlight":
        from asr.decode.flashlight import FlashlightDecoder
        return FlashlightDecoder(model.vocab, beam, lm, words, frame_shift).decode
    raise ValueError(f"decoder: expected one of {DECODERS}, got {kind!r}")


class Recognizer:
    """Runs an acoustic model on audio files in batches (any format and rate soundfile reads).

    Args:
        model: a loaded model (:func:`asr.cli.loading.load_model` reads any model file).
        batch_size: files per forward pass.
        device: torch device for the forward pass.
    """

    def __init__(self, model: AcousticModel, batch_size: int = 16, device: str = "cpu"):
        self.model = model
        self.model.model.to(device).eval()
        self.extractor = FeatureExtractor(self.model.features)
        self.batch_size = batch_size
        self.device = device

    def posteriors(self, paths: Sequence[str],
                   failures: list[tuple[str, str]] | None = None) -> Iterator[Posteriors]:
        """Model outputs batch by batch; unreadable files go to ``failures`` (path, reason)
        and are skipped, or raise :class:`AudioError` when ``failures`` is None."""
        rate = self.model.features.sample_rate
        for start in range(0, len(paths), self.batch_size):
            t0 = time.perf_counter()
            feats, kept, durations = [], [], []
            for path in paths[start:start + self.batch_size]:
                try:
                    wav = load_audio(path, rate)
                except AudioError as err:
                    if failures is None:
                        raise
                    failures.append((str(path), str(err)))
                    continue
                feats.append(self.extractor(wav))
                kept.append(str(path))
                durations.append(len(wav) / rate)
            if not kept:
                continue
            lengths = torch.tensor([f.shape[0] for f in feats])
            batch = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True).to(self.device)
            with torch.inference_mode():
                logits = self.model.model(batch, lengths.to(self.device)).float().cpu()
            out_lengths = self.model.model.output_lengths(lengths)
            yield Posteriors(kept, logits, out_lengths, durations, time.perf_counter() - t0)

    @staticmethod
    def decode(post: Posteriors, decoder: Decoder) -> list[Decoded]:
        """Decode one batch of posteriors; each file gets an equal share of the forward time."""
        t0 = time.perf_counter()
        hyps = decoder(post.logits, post.lengths)
        share = (post.seconds + time.perf_counter() - t0) / len(hyps)
        return [Decoded(p, h, d, share) for p, h, d in zip(post.paths, hyps, post.durations)]


def greedy_error_rates(model: AcousticModel, utterances: Sequence, batch_size: int = 16
                       ) -> ErrorRates:
    """Greedy-decoded WER/CER of ``model`` on manifest utterances (unreadable files skipped)."""
    recognizer = Recognizer(model, batch_size)
    decoder = make_decoder("greedy", recognizer.model)
    texts = {u.audio_filepath: u.text for u in utterances}
    refs, hyps = [], []
    for post in recognizer.posteriors(list(texts), failures=[]):
        for d in recognizer.decode(post, decoder):
            refs.append(texts[d.path])
            hyps.append(d.hypothesis.text)
    return error_rates(refs, hyps)
