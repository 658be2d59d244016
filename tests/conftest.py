"""Shared fixtures: tiny audio files and a small synthesized corpus, made by the tests themselves."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("OMP_NUM_THREADS", "2")


def tone(seconds: float = 0.5, sr: int = 16000, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.fixture
def wav_factory(tmp_path: Path):
    def make(name: str = "a.wav", seconds: float = 0.5, sr: int = 16000, channels: int = 1, fmt: str = "WAV") -> Path:
        p = tmp_path / name
        sf.write(p, tone(seconds, sr, channels=channels), sr, format=fmt)
        return p

    return make


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """About 1,000 synthesized utterances (all three synthesizers), made once per test session."""
    from introspeech.corpus.synth.driver import synthesize

    out = tmp_path_factory.mktemp("corpus")
    synthesize(out, hours=0.75, seed=7, workers=2)
    return out
