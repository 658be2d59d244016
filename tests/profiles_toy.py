"""A recognizer with planted activations and a corpus of planted features, for the profile tests.

Input frame t carries a one-hot code of its phoneme group j (silence: all zero). ``layer1`` (kernel
1, no BatchNorm) copies the code and appends a planted vector P[:, j] ≥ 0, so the activation of a
frame is a known function of its group; the output layer scores letter ``LETTERS[j]`` (10) over
blank (1), so the greedy path spells one letter per phone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from introspeech.asr.model import LayerSpec, ModelConfig, Wav2Letter
from introspeech.audio import FeatureConfig
from introspeech.corpus.manifest import write_manifest
from introspeech.corpus.utterance import Segment, Utterance
from introspeech.text import BLANK, CATEGORY, LETTERS

PHONES = ["AA", "IY", "UW", "EH", "S", "SH", "F", "Z", "P", "T", "K", "M", "N"]
N_MELS = 16
N_PLANT = 6
FEATURES = FeatureConfig(n_mels=N_MELS, normalize="none")


def planted_vectors(seed: int = 0) -> np.ndarray:
    """``(N_PLANT, groups)``: a prototype per manner category plus a little noise, all ≥ 0."""
    rng = np.random.default_rng(seed)
    cats = sorted({CATEGORY[p] for p in PHONES})
    proto = {c: rng.uniform(0, 4, N_PLANT) for c in cats}
    return np.stack([proto[CATEGORY[p]] + rng.uniform(0, 0.3, N_PLANT) for p in PHONES], 1).astype(np.float32)


def planted_model(seed: int = 0) -> Wav2Letter:
    g = len(PHONES)
    cfg = ModelConfig("planted", N_MELS, (LayerSpec(N_MELS + N_PLANT, 1),), batchnorm=False)
    model = Wav2Letter(cfg).eval()
    w1 = np.zeros((N_MELS + N_PLANT, N_MELS), dtype=np.float32)
    w1[:N_MELS, :N_MELS] = np.eye(N_MELS)
    w1[N_MELS:, :g] = planted_vectors(seed)
    w2 = np.zeros((cfg.n_symbols, N_MELS + N_PLANT), dtype=np.float32)
    w2[np.arange(g), np.arange(g)] = 10.0
    b2 = np.zeros(cfg.n_symbols, dtype=np.float32)
    b2[BLANK] = 1.0
    with torch.no_grad():
        model.layers.layer1.conv.weight.copy_(torch.from_numpy(w1)[:, :, None])
        model.layers.layer1.conv.bias.zero_()
        model.layers.output.weight.copy_(torch.from_numpy(w2)[:, :, None])
        model.layers.output.bias.copy_(torch.from_numpy(b2))
    return model


def expected_nap(j: int, seed: int = 0) -> np.ndarray:
    """The planted layer-1 activation of group j."""
    code = np.zeros(N_MELS, dtype=np.float32)
    code[j] = 1
    return np.concatenate([code, planted_vectors(seed)[:, j]])


def planted_corpus(root: Path, n: int = 12, frames: int = 120, seed: int = 0) -> list[Utterance]:
    """Utterances of random phone runs (3–8 frames, silence between) with cached planted features."""
    rng = np.random.default_rng(seed)
    fr = FEATURES.frame_rate
    (root / "features" / "test").mkdir(parents=True, exist_ok=True)
    (root / "features" / "config.json").write_text(json.dumps(FEATURES.to_dict()))
    utts = []
    for i in range(n):
        x = np.zeros((N_MELS, frames), dtype=np.float32)
        phones, text, t = [], "", 2
        while t < frames - 10:
            j = int(rng.integers(len(PHONES)))
            d = int(rng.integers(3, 9))
            x[j, t:t + d] = 1
            phones.append(Segment((t - 0.5) / fr, (t + d - 0.5) / fr, PHONES[j]))
            text += LETTERS[j]
            t += d + int(rng.integers(2, 4))
        uid = f"u{i:03d}"
        np.save(root / "features" / "test" / f"{uid}.npy", x.astype(np.float16))
        utts.append(Utterance(uid, root / "audio" / "test" / f"{uid}.flac", text, phones=phones))
    write_manifest(root / "test.jsonl", utts)
    return utts
