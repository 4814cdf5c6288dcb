"""Audio files -> hypotheses: a trained model, its front end and a CTC decoder, in batches.

Files longer than ``long_file_seconds`` are decoded alone and in chunks, with bounded memory
(:mod:`asr.decode.chunked`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import soundfile as sf
import torch

from asr.audio import AudioError, AudioStream, load_audio
from asr.config_errors import check
from asr.decode.beam import BeamConfig, BeamSearchDecoder
from asr.decode.chunked import ChunkedFeatures, chunked_logits
from asr.decode.greedy import greedy_hypotheses
from asr.decode.hypothesis import Hypothesis
from asr.decode.options import DECODERS
from asr.features.extract import FeatureExtractor
from asr.metrics import ErrorRates, error_rates
from asr.models.acoustic import AcousticModel

Decoder = Callable[[torch.Tensor, torch.Tensor], list[Hypothesis]]
__all__ = ["DECODERS", "Decoded", "Decoder", "Posteriors", "Recognizer", "greedy_error_rates",
           "make_decoder"]

# Files above this many seconds are decoded in chunks (an hour whole takes about 3 GB).
LONG_FILE_SECONDS = 60.0
CHUNK_SECONDS = 60.0
# Context of each window for models that cannot carry state exactly (asr.decode.chunked).
CONTEXT_SECONDS = 4.0


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
        long_file_seconds: files longer than this are decoded alone, in chunks of
            ``chunk_seconds`` (None: every file whole).
        chunk_seconds: audio per chunk of a long file.
        context_seconds: context of each chunk for models that run in overlapping windows
            with no finite receptive field (a bidirectional LSTM, a compressed LSTM graph).
    """

    def __init__(self, model: AcousticModel, batch_size: int = 16, device: str = "cpu",
                 long_file_seconds: float | None = LONG_FILE_SECONDS,
                 chunk_seconds: float = CHUNK_SECONDS, context_seconds: float = CONTEXT_SECONDS):
        check(long_file_seconds is None or long_file_seconds > 0, "long_file_seconds",
              "> 0 or None", long_file_seconds)
        check(chunk_seconds > 0, "chunk_seconds", "> 0", chunk_seconds)
        check(context_seconds >= 0, "context_seconds", ">= 0", context_seconds)
        self.model = model
        self.model.model.to(device).eval()
        self.extractor = FeatureExtractor(self.model.features)
        self.batch_size = batch_size
        self.device = device
        self.long_file_seconds = long_file_seconds
        shift = self.model.features.frame_shift
        self.chunk_frames = max(1, round(chunk_seconds / shift))
        self.context_frames = round(context_seconds / shift)

    def is_long(self, path: str) -> bool:
        """Whether ``path`` is decoded in chunks (by its header; unreadable files are not:
        reading them whole reports why)."""
        if self.long_file_seconds is None:
            return False
        try:
            return sf.info(str(path)).duration > self.long_file_seconds
        except (sf.LibsndfileError, RuntimeError, TypeError, OSError):
            return False

    def posteriors(self, paths: Sequence[str],
                   failures: list[tuple[str, str]] | None = None) -> Iterator[Posteriors]:
        """Model outputs batch by batch, in the order of ``paths`` (a long file is a batch of
        its own); unreadable files go to ``failures`` (path, reason) and are skipped, or
        raise :class:`AudioError` when ``failures`` is None."""
        pending: list[str] = []
        for path in paths:
            if self.is_long(path):
                if pending:
                    yield from self._batch(pending, failures)
                    pending = []
                yield from self._long_file(path, failures)
                continue
            pending.append(path)
            if len(pending) == self.batch_size:
                yield from self._batch(pending, failures)
                pending = []
        if pending:
            yield from self._batch(pending, failures)

    def _batch(self, paths: list[str], failures: list[tuple[str, str]] | None
               ) -> Iterator[Posteriors]:
        rate = self.model.features.sample_rate
        t0 = time.perf_counter()
        feats, kept, durations = [], [], []
        for path in paths:
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
            return
        lengths = torch.tensor([f.shape[0] for f in feats])
        batch = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True).to(self.device)
        with torch.inference_mode():
            logits = self.model.model(batch, lengths.to(self.device)).float().cpu()
        out_lengths = self.model.model.output_lengths(lengths)
        yield Posteriors(kept, logits, out_lengths, durations, time.perf_counter() - t0)

    def _long_file(self, path: str, failures: list[tuple[str, str]] | None
                   ) -> Iterator[Posteriors]:
        t0 = time.perf_counter()
        rate = self.model.features.sample_rate
        try:
            stream = AudioStream(path, rate)
            front = ChunkedFeatures(self.extractor, stream,
                                    self.chunk_frames * self.model.features.subsample)
            logits = chunked_logits(self.model.model, front, self.chunk_frames,
                                    self.context_frames, self.device)
        except AudioError as err:
            if failures is None:
                raise
            failures.append((str(path), str(err)))
            return
        lengths = self.model.model.output_lengths(torch.tensor([front.model_frames]))
        yield Posteriors([str(path)], logits, lengths, [stream.num_samples / rate],
                         time.perf_counter() - t0)

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
