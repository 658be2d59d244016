"""Audio loading and log-Mel features, configured by one small serializable `FeatureConfig`.

The config travels with every model and result (it is stored in checkpoints and result files),
and `FeatureConfig.check_compatible` refuses to mix features made with different settings.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes model input: log-Mel spectrogram, then z-normalization.

    ``normalize``: ``"utterance"`` (each Mel bin to zero mean / unit variance over the utterance),
    ``"corpus"`` (fixed ``mean``/``std`` per bin, e.g. from training data) or ``"none"``.
    ``kind="waveform"``: the samples themselves, ``(1, samples)``, normalized the same way, for
    models with their own front end (wav2vec 2.0); one frame per sample (``n_mels=1``, hop of one
    sample).
    """

    sample_rate: int = SAMPLE_RATE
    n_mels: int = 40
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    fmin: float = 20.0
    fmax: float = 8000.0
    log_offset: float = 1e-6
    normalize: str = "utterance"
    mean: tuple[float, ...] | None = field(default=None, compare=True)
    std: tuple[float, ...] | None = field(default=None, compare=True)
    kind: str = "logmel"

    def __post_init__(self) -> None:
        if self.kind not in ("logmel", "waveform"):
            raise ValueError(f"kind must be 'logmel' or 'waveform', not {self.kind!r}")
        if self.kind == "waveform" and (self.n_mels != 1 or self.hop_length != 1):
            raise ValueError("waveform input has n_mels=1 and a hop of one sample (hop_ms = 1000 / sample_rate)")
        if self.normalize not in ("utterance", "corpus", "none"):
            raise ValueError(f"normalize must be 'utterance', 'corpus' or 'none', not {self.normalize!r}")
        if self.normalize == "corpus" and (self.mean is None or self.std is None):
            raise ValueError("normalize='corpus' needs mean and std per Mel bin")
        if self.win_length > self.n_fft:
            raise ValueError(f"window of {self.win_length} samples exceeds n_fft={self.n_fft}")

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def frame_rate(self) -> float:
        """Feature frames per second."""
        return self.sample_rate / self.hop_length

    def n_frames(self, n_samples: int) -> int:
        """Number of feature frames for a signal of ``n_samples`` (centered frames; samples for waveforms)."""
        return n_samples if self.kind == "waveform" else 1 + n_samples // self.hop_length

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FeatureConfig:
        d = dict(d)
        for k in ("mean", "std"):
            if d.get(k) is not None:
                d[k] = tuple(float(v) for v in d[k])
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown feature settings {sorted(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def check_compatible(self, other: FeatureConfig, what: str = "features") -> None:
        """Raise if ``other`` would produce different features (names the differing fields)."""
        diff = [f.name for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(other, f.name)]
        if diff:
            raise ValueError(f"{what} were made with different feature settings: {', '.join(diff)}")


PRESETS: dict[str, FeatureConfig] = {
    "default": FeatureConfig(),
    # the samples themselves, for models with their own front end (wav2vec 2.0, hama)
    "waveform": FeatureConfig(n_mels=1, hop_ms=1000 / SAMPLE_RATE, kind="waveform"),
    # speechless / the slides: 128 Mel bands at an 8 ms hop (20 ms window).
    "paper": FeatureConfig(n_mels=128, win_ms=20.0, hop_ms=8.0),
}


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read any soundfile-readable file as mono float32 at ``sample_rate`` (soxr resampling).

    Raises `InputError` naming the file for a missing, unreadable, truncated or empty file.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "audio file not found")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise InputError(path, f"not a readable audio file ({e})") from None
    if data.shape[0] == 0:
        raise InputError(path, "zero-length audio")
    bad = ~np.isfinite(data)
    if bad.any():
        raise InputError(path, f"{int(bad.sum())} samples are NaN or infinite (first at {np.argwhere(bad)[0][0] / sr:.3f} s)")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return resample(wave, sr, sample_rate)


def resample(wave: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling with soxr (high quality, far faster than FFT resampling)."""
    if orig_sr == target_sr:
        return np.ascontiguousarray(wave, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(wave, dtype=np.float32), orig_sr, target_sr, quality="HQ").astype(np.float32)


@functools.lru_cache(maxsize=8)
def _mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _blas():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def mel_power(wave: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Mel power spectrogram ``(n_mels, frames)`` with centered, Hann-windowed frames.

    The Mel projection runs on one BLAS thread: a multi-threaded product sums in a thread-dependent
    order, and features must be the same bits in every process (in-process and Dask runs agree)."""
    import librosa

    spec = librosa.stft(np.asarray(wave, dtype=np.float32), n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                        win_length=cfg.win_length, window="hann", center=True, pad_mode="constant")
    with _blas().limit(limits=1, user_api="blas"):
        return _mel_basis(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax) @ (np.abs(spec) ** 2)


def log_mel(wave: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Natural-log Mel power spectrogram, ``(n_mels, frames)`` float32, before normalization."""
    return np.log(mel_power(wave, cfg) + cfg.log_offset).astype(np.float32)


def normalize(logmel: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Apply the config's z-normalization to a log-Mel spectrogram ``(n_mels, frames)``."""
    if cfg.normalize == "none":
        return logmel
    if cfg.normalize == "corpus":
        mean = np.asarray(cfg.mean, dtype=np.float32)[:, None]
        std = np.asarray(cfg.std, dtype=np.float32)[:, None]
    else:
        mean = logmel.mean(axis=1, keepdims=True)
        std = logmel.std(axis=1, keepdims=True)
    return ((logmel - mean) / np.maximum(std, 1e-5)).astype(np.float32)


def features(source: str | Path | np.ndarray, cfg: FeatureConfig = PRESETS["default"]) -> np.ndarray:
    """Model input for a file or a 16 kHz waveform: z-normalized log-Mel ``(n_mels, frames)`` (or
    the normalized samples ``(1, samples)`` for ``kind="waveform"``)."""
    wave = source if isinstance(source, np.ndarray) else load_audio(source, cfg.sample_rate)
    if wave.size == 0:
        raise InputError("<waveform>", "zero-length audio")
    if not np.isfinite(wave).all():
        raise InputError("<waveform>", "samples are NaN or infinite")
    if cfg.kind == "waveform":
        return normalize(np.asarray(wave, dtype=np.float32)[None, :], cfg)
    return normalize(log_mel(wave, cfg), cfg)


def corpus_stats(logmels) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-bin mean and std over many log-Mel spectrograms (for ``normalize='corpus'``)."""
    n = 0
    s = s2 = None
    for m in logmels:
        m64 = m.astype(np.float64)
        s = m64.sum(1) if s is None else s + m64.sum(1)
        s2 = (m64**2).sum(1) if s2 is None else s2 + (m64**2).sum(1)
        n += m.shape[1]
    if not n:
        raise ValueError("no frames to compute statistics from")
    mean = s / n
    std = np.sqrt(np.maximum(s2 / n - mean**2, 1e-12))
    return tuple(mean.tolist()), tuple(std.tolist())


def mel_to_audio(logmel: np.ndarray, cfg: FeatureConfig, n_iter: int = 32, seed: int = 0) -> np.ndarray:
    """Invert an (un-normalized) log-Mel spectrogram to a waveform with Griffin-Lim (librosa)."""
    import librosa

    power = np.maximum(np.exp(np.asarray(logmel, dtype=np.float64)) - cfg.log_offset, 0.0).astype(np.float32)
    magnitude = librosa.feature.inverse.mel_to_stft(power, sr=cfg.sample_rate, n_fft=cfg.n_fft, power=2.0,
                                                    fmin=cfg.fmin, fmax=cfg.fmax)
    return librosa.griffinlim(magnitude, n_iter=n_iter, hop_length=cfg.hop_length, win_length=cfg.win_length,
                              window="hann", center=True, pad_mode="constant", random_state=seed).astype(np.float32)
