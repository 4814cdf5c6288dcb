"""Long files in bounded memory: a file's features and model outputs, a chunk at a time.

Decoding a file whole holds its waveform, its spectrogram and every layer's activations at
once (about 3 GB for an hour of 16 kHz audio). :func:`chunked_logits` computes the same
posteriors from pieces of the file:

* Features. A chunk of STFT frames is computed from its own samples plus half an FFT window
  on each side (read with :class:`~asr.audio.AudioStream`), so each frame sees exactly the
  samples it sees in the whole file. The front end also uses two whole-file statistics: the
  loudest value (the 80 dB floor of the log-mel or dB values) and, with ``normalize:
  utterance``, each dimension's mean and deviation. A first pass over the file keeps only
  these statistics (the pieces that reach below the floor, known at its end, are read again
  for their moments); the features are then computed again, chunk by chunk, for the model.
* Model. A unidirectional LSTM carries its state from chunk to chunk (exact, up to float
  rounding, like the features). A WaveNet, or a compressed WaveNet graph, sees each chunk with
  its receptive field of context on both sides (exact). Other models that can run in pieces (a
  bidirectional LSTM, a delta LSTM, a compressed LSTM graph) see overlapping windows with
  ``context_seconds`` of context (on both sides, or on the left for a causal model) and keep
  each window's centre: approximate only at the seams. Models that keep per-call state (the
  hardware engine's runs) get the chunked features whole.

Memory is then one chunk's working set plus the whole file's posteriors, which the decoders
need at once (frames x vocabulary floats: about 40 MB an hour at 100 frames/s).
"""

from __future__ import annotations

import torch
from torch import nn

from asr.audio import AudioStream
from asr.features.extract import _LOG_FLOOR, _TOP_DB_NATURAL, FeatureExtractor
from asr.models.acoustic import GraphModel
from asr.models.delta_lstm import DeltaLSTMCTC
from asr.models.graph import Conv1dOp, GatedResidualOp, LSTMOp
from asr.models.lstm import LSTMCTC
from asr.models.wavenet import WaveNetCTC

# Chunk plans: carry an LSTM's state, or run overlapping windows (exact when the context
# covers the receptive field).
STATE, WINDOWS = "state", "windows"


class ChunkedFeatures:
    """Exact features (:class:`FeatureExtractor`'s output) of any model-frame range of a long
    file, computed from a bounded piece of it.

    Args:
        extractor: the model's front end.
        stream: the file, read at the front end's sample rate.
        chunk_frames: STFT frames per piece in the statistics passes.
    """

    def __init__(self, extractor: FeatureExtractor, stream: AudioStream,
                 chunk_frames: int = 3000):
        self.extractor, self.cfg, self.stream = extractor, extractor.cfg, stream
        self.chunk_frames = chunk_frames
        hop, half_window = self.cfg.hop_length, self.cfg.n_fft // 2
        # context on each side of a piece, a whole number of hops so frames stay aligned
        self.pad = -(-half_window // hop) * hop
        self.frames = stream.num_samples // hop + 1          # STFT frames (center=True)
        self.total = self.frames + self.cfg.tail_frames      # with the tail of zeros
        self.model_frames = extractor.num_frames(stream.num_samples)
        self.floor: float | torch.Tensor | None = None
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        self._gather_statistics()

    # -- the front end, piece by piece -------------------------------------------------------
    def _raw(self, b0: int, b1: int) -> torch.Tensor:
        """STFT frames ``b0:b1`` as ``(frames, bands)`` log-mel (fbank) or dB (mfcc) values,
        before the whole-file floor."""
        hop = self.cfg.hop_length
        a = max(0, b0 * hop - self.pad)
        b = min(self.stream.num_samples, b1 * hop + self.pad)
        wav = self.stream.read(a, b).float()
        transform = self.extractor.transform
        if self.cfg.kind == "fbank":
            values = torch.log(transform(wav) + _LOG_FLOOR)
        else:
            mel = transform.MelSpectrogram(wav)
            if transform.log_mels:
                values = torch.log(mel + 1e-6)
            else:
                db = transform.amplitude_to_DB
                values = db.multiplier * torch.log10(torch.clamp(mel, min=db.amin))
                values -= db.multiplier * db.db_multiplier
        first = b0 - a // hop   # a piece's frame k is centred on sample a + k * hop
        return values.transpose(0, 1)[first:first + b1 - b0]

    def _finish(self, raw: torch.Tensor) -> torch.Tensor:
        """The floor (80 dB below the file's loudest value) and, for MFCCs, the DCT."""
        if self.floor is not None:
            raw = torch.max(raw, self.floor) if torch.is_tensor(self.floor) \
                else raw.clamp(min=self.floor)
        if self.cfg.kind == "mfcc":
            raw = torch.matmul(raw, self.extractor.transform.dct_mat)
        return raw

    def _uses_floor(self) -> bool:
        transform = self.extractor.transform
        if self.cfg.kind == "fbank":
            return True
        return not transform.log_mels and transform.amplitude_to_DB.top_db is not None

    def _pieces(self) -> list[tuple[int, int]]:
        return [(b0, min(self.frames, b0 + self.chunk_frames))
                for b0 in range(0, self.frames, self.chunk_frames)]

    def _gather_statistics(self) -> None:
        """The floor (the file's loudest value) and, with ``normalize: utterance``, the mean and
        deviation of the floored features. One pass reads the file for both; only the pieces
        that reach below the floor (found at the end of it) are read again for their moments.
        """
        uses_floor, moments = self._uses_floor(), self.cfg.normalize == "utterance"
        if not uses_floor and not moments:
            return
        peak, pieces = float("-inf"), []
        for b0, b1 in self._pieces():
            raw = self._raw(b0, b1)
            peak = max(peak, float(raw.max()))
            if moments:   # the moments as if nothing were floored, and the piece's lowest value
                n, mean, m2 = _moments(self._finish(raw))
                # kept as Python floats: small tensors kept alive between the pieces' large
                # allocations would pin the C heap (hundreds of MB an hour never given back)
                pieces.append((b0, b1, float(raw.min()), (n, mean.tolist(), m2.tolist())))
        if uses_floor:
            if self.cfg.kind == "fbank":
                self.floor = peak - _TOP_DB_NATURAL   # as FeatureExtractor: a Python float
            else:   # as torchaudio's AmplitudeToDB: max - top_db in float32
                top_db = self.extractor.transform.amplitude_to_DB.top_db
                self.floor = torch.tensor(peak, dtype=torch.float32) - top_db
        if not moments:
            return
        floor = float(self.floor) if self.floor is not None else float("-inf")
        total = None
        for b0, b1, low, (n, mean, m2) in pieces:
            if low < floor:
                stats = _moments(self._finish(self._raw(b0, b1)))
            else:
                stats = n, torch.tensor(mean, dtype=torch.float64), \
                    torch.tensor(m2, dtype=torch.float64)
            total = stats if total is None else _merge(total, stats)
        count, self.mean, m2 = total
        self.std = (m2 / count).sqrt()

    def _normalize(self, feats: torch.Tensor) -> torch.Tensor:
        if self.cfg.normalize == "utterance":
            return ((feats.double() - self.mean) / (self.std + 1e-5)).to(feats.dtype)
        if self.cfg.normalize == "global":
            return (feats - self.extractor.mean) / self.extractor.std
        return feats

    def base(self, b0: int, b1: int) -> torch.Tensor:
        """Normalized frames ``b0:b1`` before stacking; frames past the STFT's are the tail's
        zeros."""
        real = self._normalize(self._finish(self._raw(b0, min(b1, self.frames)))) \
            if b0 < self.frames else torch.zeros(0, self.cfg.base_dim)
        tail = max(0, b1 - max(b0, self.frames))
        return torch.cat([real, real.new_zeros(tail, self.cfg.base_dim)]) if tail else real

    def model_input(self, m0: int, m1: int) -> torch.Tensor:
        """Model frames ``m0:m1`` (stacked and subsampled), ``(m1 - m0, cfg.dim)``."""
        stack, sub = self.cfg.stack, self.cfg.subsample
        # model frame t holds frames t*sub .. t*sub+stack-1, the last frame repeated at the end
        index = (torch.arange(m0, m1)[:, None] * sub + torch.arange(stack)[None])
        index = index.clamp(max=self.total - 1)
        b0 = m0 * sub
        feats = self.base(b0, int(index.max()) + 1)
        return feats[index - b0].reshape(m1 - m0, -1)

    def all(self) -> torch.Tensor:
        """Every model frame at once (for models that cannot run in pieces)."""
        step = max(1, self.chunk_frames // self.cfg.subsample)
        return torch.cat([self.model_input(m0, min(self.model_frames, m0 + step))
                          for m0 in range(0, self.model_frames, step)])


Moments = tuple[int, torch.Tensor, torch.Tensor]   # count, mean, sum of squared deviations


def _moments(x: torch.Tensor) -> Moments:
    """Per-dimension moments of ``(frames, dim)`` in float64, as utterance_cmvn takes them."""
    x = x.double()
    mean = x.mean(0)
    return x.shape[0], mean, ((x - mean) ** 2).sum(0)


def _merge(a: Moments, b: Moments) -> Moments:
    """Moments of two pieces together (Chan et al.'s parallel update: no float64 precision is
    lost to a sum of squares)."""
    (na, ma, qa), (nb, mb, qb) = a, b
    n = na + nb
    delta = mb - ma
    return n, ma + delta * nb / n, qa + qb + delta ** 2 * na * nb / n


def _conv_radius(op: Conv1dOp) -> int:
    return (op.weight.shape[-1] - 1) // 2 * op.dilation


def chunk_plan(model: nn.Module, context_frames: int) -> tuple[str, int, int] | None:
    """How ``model`` runs in pieces: ``(STATE, 0, 0)`` (a unidirectional LSTM carries its
    state), ``(WINDOWS, left, right)`` (overlapping windows with that context in frames), or
    None (run it on the whole file)."""
    if isinstance(model, DeltaLSTMCTC):   # its nn.LSTM parameters run as a delta network
        return WINDOWS, context_frames, 0    # causal; the memories restart in each window
    if isinstance(model, LSTMCTC):
        return (WINDOWS, context_frames, context_frames) if model.bidirectional \
            else (STATE, 0, 0)
    if isinstance(model, WaveNetCTC):
        radius = sum(((conv.kernel_size[0] - 1) // 2) * conv.dilation[0]
                     for conv in (getattr(model, name).conv_filter.conv
                                  for name in model.layer_names))
        return WINDOWS, radius, radius
    if type(model) is GraphModel:   # not subclasses: the engine keeps one run per utterance
        if any(isinstance(op, LSTMOp) for op in model.graph.ops):
            return WINDOWS, context_frames, 0   # exported LSTMs are causal
        radius = 0
        for op in model.graph.ops:
            if isinstance(op, GatedResidualOp):
                radius += _conv_radius(op.filter)
            elif isinstance(op, Conv1dOp):
                radius += _conv_radius(op)
        return WINDOWS, radius, radius
    return None


def _lstm_chunk(model: LSTMCTC, x: torch.Tensor, state: list | None
                ) -> tuple[torch.Tensor, list]:
    """One chunk through a unidirectional :class:`LSTMCTC` (in eval mode: no dropout),
    starting from each layer's ``(h, c)`` in ``state``."""
    new_state = []
    for k, layer in enumerate(model.layers):
        x, hc = layer(x, state[k] if state is not None else None)
        new_state.append(hc)
    return model.output(x), new_state


@torch.inference_mode()
def chunked_logits(model: nn.Module, front: ChunkedFeatures, chunk_frames: int,
                   context_frames: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """``(1, frames, vocab)`` float32 logits of a long file, computed chunk by chunk (see the
    module docstring for which models are exact)."""
    total = front.model_frames
    plan = chunk_plan(model, context_frames)
    if plan is None:
        feats = front.all()[None].to(device)
        return model(feats, torch.tensor([total], device=device)).float().cpu()
    kind, left, right = plan
    out: torch.Tensor | None = None
    state = None
    for m0 in range(0, total, chunk_frames):
        m1 = min(total, m0 + chunk_frames)
        start, stop = max(0, m0 - left), min(total, m1 + right)
        x = front.model_input(start, stop)[None].to(device)
        if kind == STATE:
            logits, state = _lstm_chunk(model, x, state)
        else:
            logits = model(x, torch.tensor([stop - start], device=device))
        logits = logits[0, m0 - start:m1 - start].float().cpu()
        if out is None:
            out = torch.empty(total, logits.shape[-1])
        out[m0:m1] = logits
    return out[None]
