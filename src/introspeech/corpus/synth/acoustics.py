"""Acoustic realism for synthesized speech: speed, rooms, noise, band limits and codecs.

Synthesizers speak in an anechoic, noiseless, full-band room; real recordings do not. Each
training utterance can pass through a seeded chain of effects (each applied with its own
probability), and its phone and word timings follow the audio:

- speed perturbation (Ko et al. 2015): resampling by a factor in [0.9, 1.1]; times scale by 1/factor;
- silence around the speech (0–0.8 s before and after), as in recordings of single words and
  prompts; times shift by the leading silence;
- a room: an image-source impulse response of a random shoebox room (pyroomacoustics), RT60
  0.15–0.7 s; the direct path's delay is removed so the timings stay;
- additive noise at a random SNR (5–30 dB): white, pink or brown noise, or babble made of the
  utterance itself reversed and shifted;
- a channel: telephone band (8 kHz, optionally μ-law), G.722 wideband (PyAV's codec), a random
  low-pass, or none; and a random gain.

What was applied is returned as a record and stored in the manifest (``augment``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import fftconvolve

from ...audio import SAMPLE_RATE, resample

CHANNELS = ("telephone", "mulaw", "g722", "lowpass")
EFFECTS = ("speed", "pad", "room", "noise", "channel", "gain")
"""The effects of the chain, in the order they are applied (`Acoustics.only` picks some)."""
G722_DELAY = 22  # samples at 16 kHz between G.722's input and its decoded output (measured, tested)


@dataclass(frozen=True)
class Acoustics:
    """Probabilities of each effect (0 turns it off)."""

    speed: float = 0.5
    pad: float = 0.35
    room: float = 0.4
    noise: float = 0.5
    channel: float = 0.5
    gain_db: float = 10.0  # random gain in [-gain_db, +gain_db]

    @classmethod
    def only(cls, effects: tuple[str, ...] | list[str]) -> Acoustics:
        """The default chain with every effect not named in ``effects`` (of `EFFECTS`) turned off:
        each effect alone, as an ablation measures it."""
        unknown = [e for e in effects if e not in EFFECTS]
        if unknown:
            raise ValueError(f"unknown effect {', '.join(map(repr, unknown))}; the effects are {', '.join(EFFECTS)}")
        return dataclasses.replace(cls(), **{"gain_db" if e == "gain" else e: 0.0 for e in EFFECTS if e not in effects})


@lru_cache(maxsize=64)
def room_impulse(seed: int) -> tuple[np.ndarray, int]:
    """The impulse response of a seeded random shoebox room (unit peak) and the index of its
    direct path."""
    import pyroomacoustics as pra

    rng = np.random.default_rng(seed)
    dims = rng.uniform([3.0, 3.0, 2.4], [9.0, 7.0, 3.6])
    rt60 = float(rng.uniform(0.15, 0.7))
    e_abs, order = pra.inverse_sabine(rt60, dims)
    room = pra.ShoeBox(dims, fs=SAMPLE_RATE, materials=pra.Material(e_abs), max_order=min(order, 60))
    margin = 0.4
    src = rng.uniform(margin, dims - margin)
    mic = rng.uniform(margin, dims - margin)
    room.add_source(src)
    room.add_microphone(mic)
    room.compute_rir()
    h = np.asarray(room.rir[0][0], dtype=np.float64)
    peak = int(np.argmax(np.abs(h)))
    start = max(peak - 8, 0)  # keep a few samples before the direct path (its fractional-delay filter)
    h = h[start:]
    return (h / np.abs(h).max()).astype(np.float32), peak - start


def _colored(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if kind == "white":
        return white
    spec = np.fft.rfft(white)
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    spec /= f ** (0.5 if kind == "pink" else 1.0)
    return np.fft.irfft(spec, n)


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` cut or zero-padded to ``n`` samples (resampling there and back may round the length)."""
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))


def _codec(wave: np.ndarray, codec: str) -> np.ndarray:
    """Encode and decode with PyAV (``g722`` at 16 kHz, ``pcm_mulaw`` at 8 kHz)."""
    import av

    rate = 16000 if codec == "g722" else 8000
    x = wave if rate == SAMPLE_RATE else resample(wave, SAMPLE_RATE, rate)
    pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16)
    enc = av.CodecContext.create(codec, "w")
    enc.sample_rate, enc.layout, enc.format = rate, "mono", "s16"
    frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
    frame.sample_rate = rate
    packets = list(enc.encode(frame)) + list(enc.encode(None))
    dec = av.CodecContext.create(codec, "r")
    dec.sample_rate, dec.layout = rate, "mono"
    out = [f.to_ndarray().reshape(-1) for p in packets for f in dec.decode(p)]
    y = np.concatenate(out).astype(np.float32) / 32768.0 if out else np.zeros(0, np.float32)
    y = y[G722_DELAY if codec == "g722" else 0:]  # the QMF filter bank's delay, so timings stay
    y = _fit(y, len(x))
    return y if rate == SAMPLE_RATE else _fit(resample(y, rate, SAMPLE_RATE), len(wave))


def _lowpass(wave: np.ndarray, cutoff: float) -> np.ndarray:
    spec = np.fft.rfft(wave)
    f = np.fft.rfftfreq(len(wave), 1.0 / SAMPLE_RATE)
    spec *= 1.0 / (1.0 + (f / cutoff) ** 8)
    return np.fft.irfft(spec, len(wave)).astype(np.float32)


def apply(wave: np.ndarray, seed: int, settings: Acoustics = Acoustics()) -> tuple[np.ndarray, float, float, dict]:
    """The wave after a seeded chain of effects, the factor its timings scale by, the seconds they
    shift by after scaling (t → t · scale + shift), and a record of the effects."""
    rng = np.random.default_rng(seed)
    rec: dict = {}
    x = wave.astype(np.float32)
    scale = 1.0
    if rng.random() < settings.speed:
        factor = float(rng.uniform(0.9, 1.1))
        x = resample(x, int(round(SAMPLE_RATE * factor)), SAMPLE_RATE)  # played faster by `factor`
        scale = len(x) / len(wave)
        rec["speed"] = round(factor, 4)
    shift = 0.0
    if rng.random() < settings.pad:
        lead, trail = (int(v * SAMPLE_RATE) for v in rng.uniform(0.0, 0.8, 2))
        x = np.concatenate([np.zeros(lead, np.float32), x, np.zeros(trail, np.float32)])
        shift = lead / SAMPLE_RATE
        rec["pad_s"] = [round(lead / SAMPLE_RATE, 3), round(trail / SAMPLE_RATE, 3)]
    if rng.random() < settings.room:
        rir_seed = int(rng.integers(0, 48))
        h, lead = room_impulse(rir_seed)
        y = fftconvolve(x, h)[lead: lead + len(x)]
        x = (y / (np.abs(y).max() + 1e-9) * (np.abs(x).max() + 1e-9)).astype(np.float32)
        rec["room"] = rir_seed
    if rng.random() < settings.noise:
        kind = str(rng.choice(["white", "pink", "brown", "babble"]))
        snr = float(rng.uniform(5.0, 30.0))
        if kind == "babble":
            noise = np.roll(x[::-1], int(rng.integers(0, max(len(x), 1)))).astype(np.float64)
            noise += np.roll(x, int(rng.integers(0, max(len(x), 1))))
        else:
            noise = _colored(len(x), kind, rng)
        p_sig = float(np.mean(x.astype(np.float64) ** 2)) + 1e-12
        p_noise = float(np.mean(noise ** 2)) + 1e-12
        x = (x + noise * np.sqrt(p_sig / p_noise / 10 ** (snr / 10))).astype(np.float32)
        rec["noise"] = kind
        rec["snr_db"] = round(snr, 1)
    if rng.random() < settings.channel:
        channel = str(rng.choice(CHANNELS))
        if channel == "telephone":
            x = _fit(resample(resample(x, SAMPLE_RATE, 8000), 8000, SAMPLE_RATE), len(x))
        elif channel == "mulaw":
            x = _codec(x, "pcm_mulaw")
        elif channel == "g722":
            x = _codec(x, "g722")
        else:
            cutoff = float(rng.uniform(3000.0, 7000.0))
            x = _lowpass(x, cutoff)
            rec["cutoff_hz"] = round(cutoff)
        rec["channel"] = channel
    gain = float(rng.uniform(-settings.gain_db, settings.gain_db)) if settings.gain_db else 0.0
    peak = float(np.abs(x).max()) + 1e-9
    x = x * min(10 ** (gain / 20), 0.99 / peak)
    rec["gain_db"] = round(gain, 1)
    return x.astype(np.float32), scale, shift, rec
