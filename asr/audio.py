"""Audio input: any format soundfile reads, folded to mono float32 at the model's sample rate.

``torchaudio.load`` needs torchcodec and FFmpeg; soundfile (libsndfile) reads WAV, FLAC and OGG
with no further system dependency, so every reader in the project goes through here.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

# Anything shorter cannot fill one 25 ms analysis window plus a hop.
DEFAULT_MIN_DURATION = 0.05


class AudioWarning(UserWarning):
    """Audio that can be used, but not as the model was trained: said once per kind."""


_WARNED_RATES: set[tuple[int, int]] = set()


def warn_upsampling(path: str | Path, file_rate: int, sample_rate: int) -> None:
    """Audio below the model's rate is upsampled with an empty top band the model never heard
    in training (8 kHz telephone audio into a 16 kHz model): said once per pair of rates."""
    if file_rate >= sample_rate or (file_rate, sample_rate) in _WARNED_RATES:
        return
    _WARNED_RATES.add((file_rate, sample_rate))
    warnings.warn(AudioWarning(
        f"{path}: {file_rate} Hz audio upsampled to the model's {sample_rate} Hz; it holds "
        f"nothing above {file_rate // 2} Hz, so expect a higher error rate (said once for "
        f"every file at {file_rate} Hz)"), stacklevel=3)


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file (read without decoding the samples)."""

    path: str
    sample_rate: int
    frames: int
    channels: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path: str | Path, min_duration: float = DEFAULT_MIN_DURATION) -> AudioInfo:
    """Read an audio file's header; raise :class:`AudioError` if it is unusable.

    Args:
        path: file to inspect.
        min_duration: shortest acceptable duration in seconds (default 0.05).
    """
    path = _existing_file(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(path, f"unreadable audio ({err})") from err
    result = AudioInfo(str(path), int(info.samplerate), int(info.frames), int(info.channels),
                       info.format, info.subtype)
    _check_length(path, result.frames, result.sample_rate, min_duration)
    if "FLOAT" in result.subtype or "DOUBLE" in result.subtype:
        # Only floating-point samples can be NaN or inf: read those files through once, so
        # a bad file stops at import rather than as a NaN loss mid-training.
        read_audio(path, min_duration)
    return result


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "no such file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    _check_wav_complete(path)
    return path


def _check_wav_complete(path: Path) -> None:
    """A WAV whose data chunk is shorter than its header says was cut off (an interrupted
    copy or download). libsndfile reads what is there without a word, so the header is
    checked here. Streamed WAVs that declare an unknown length (0 or 0xFFFFFFFF) pass."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            declared = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                if declared in (0, 0xFFFFFFFF):
                    return
                present = size - pos - 8
                if present < declared:
                    raise AudioError(path, f"truncated WAV: the header declares {declared} "
                                           f"bytes of samples, the file holds {present}")
                return
            pos += 8 + declared + (declared & 1)


def _check_length(path: Path, frames: int, sample_rate: int, min_duration: float) -> None:
    if frames <= 0:
        raise AudioError(path, "no audio samples")
    if frames / sample_rate < min_duration:
        raise AudioError(
            path, f"too short: {frames / sample_rate:.3f} s < min_duration {min_duration} s"
        )


def load_audio(
    path: str | Path,
    sample_rate: int | None = 16000,
    min_duration: float = DEFAULT_MIN_DURATION,
) -> torch.Tensor:
    """Load an audio file as a mono float32 waveform in [-1, 1].

    Integer PCM is scaled by soundfile, channels are averaged, and the signal is resampled
    (torchaudio's band-limited sinc interpolation) when ``sample_rate`` differs from the file's.

    Args:
        path: WAV, FLAC, OGG or any other format libsndfile reads.
        sample_rate: rate of the returned signal; ``None`` keeps the file's rate.
        min_duration: files shorter than this (seconds) raise :class:`AudioError`.

    Returns:
        Tensor of shape ``(time,)``.

    Example:
        >>> wav = load_audio("speech.flac", sample_rate=16000)  # doctest: +SKIP
    """
    wav, sr = read_audio(path, min_duration)
    if sample_rate is not None and sr != sample_rate:
        warn_upsampling(path, sr, sample_rate)
        wav = AF.resample(wav, sr, sample_rate)
    return wav


def read_audio(path: str | Path, min_duration: float = DEFAULT_MIN_DURATION
               ) -> tuple[torch.Tensor, int]:
    """Load an audio file at its own rate: ``(mono float32 waveform, sample_rate)``."""
    path = _existing_file(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(path, f"unreadable audio ({err})") from err
    _check_length(path, data.shape[0], sr, min_duration)
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(mono).all():
        raise AudioError(path, "non-finite samples (NaN or inf)")
    return torch.from_numpy(np.ascontiguousarray(mono)), int(sr)


class AudioStream:
    """A long audio file read piece by piece: :meth:`read` returns samples ``start:stop`` of
    what :func:`load_audio` returns for the whole file (mono float32 at ``sample_rate``), while
    only that piece, plus a resampling margin, is held in memory.

    The header is checked as :func:`audio_info` checks it, but floating-point files are not
    read through up front: each piece is checked for NaN/inf as it is read.

    Resampling stays exact piece by piece: torchaudio's polyphase filter maps each block of
    ``orig/gcd`` input samples to ``new/gcd`` output samples, so a piece that starts on a block
    boundary, with a margin wider than the filter on both sides, gives the same samples as
    resampling the whole file.
    """

    def __init__(self, path: str | Path, sample_rate: int | None = 16000,
                 min_duration: float = DEFAULT_MIN_DURATION):
        self.path = _existing_file(path)
        try:
            info = sf.info(str(self.path))
        except (sf.LibsndfileError, RuntimeError, TypeError) as err:
            raise AudioError(self.path, f"unreadable audio ({err})") from err
        self.file_rate, self.file_frames = int(info.samplerate), int(info.frames)
        _check_length(self.path, self.file_frames, self.file_rate, min_duration)
        self.sample_rate = sample_rate or self.file_rate
        warn_upsampling(self.path, self.file_rate, self.sample_rate)
        gcd = math.gcd(self.file_rate, self.sample_rate)
        self._orig, self._new = self.file_rate // gcd, self.sample_rate // gcd
        # torchaudio's filter half-width (lowpass_filter_width=6, rolloff=0.99) in input
        # samples, rounded up to whole blocks plus one.
        width = math.ceil(6 * self._orig / (min(self._orig, self._new) * 0.99))
        self._margin = (math.ceil(width / self._orig) + 1) * self._orig
        self.num_samples = math.ceil(self._new * self.file_frames / self._orig)

    @property
    def duration(self) -> float:
        return self.file_frames / self.file_rate

    def _read_file(self, start: int, stop: int) -> torch.Tensor:
        try:
            with sf.SoundFile(str(self.path)) as f:
                f.seek(start)
                data = f.read(stop - start, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, TypeError) as err:
            raise AudioError(self.path, f"unreadable audio ({err})") from err
        mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
        if not np.isfinite(mono).all():
            raise AudioError(self.path, "non-finite samples (NaN or inf)")
        return torch.from_numpy(np.ascontiguousarray(mono))

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Samples ``start:stop`` (at ``sample_rate``, clipped to the file) as ``(time,)``."""
        start, stop = max(0, start), min(stop, self.num_samples)
        if stop <= start:
            return torch.zeros(0)
        if self._orig == self._new:
            return self._read_file(start, stop)
        first, last = start // self._new, -(-stop // self._new)   # output blocks
        in_start = max(0, first * self._orig - self._margin)
        in_stop = min(self.file_frames, last * self._orig + self._margin)
        wav = AF.resample(self._read_file(in_start, in_stop), self.file_rate, self.sample_rate)
        offset = in_start // self._orig * self._new
        return wav[start - offset:stop - offset]


def write_audio(path: str | Path, wav: torch.Tensor | np.ndarray, sample_rate: int) -> None:
    """Write a mono waveform; the format follows the suffix (.wav 16-bit PCM, .flac, .ogg)."""
    data = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    subtype = {".wav": "PCM_16", ".flac": "PCM_16", ".ogg": "VORBIS"}.get(path.suffix.lower())
    sf.write(str(path), np.clip(data, -1.0, 1.0), sample_rate, subtype=subtype)
