"""Opening a corpus: a folder of split manifests, one manifest, or a LibriSpeech tree; features.

A corpus folder holds ``SPLIT.jsonl`` manifests (``introspeech synth`` writes train, valid, test
and heldout). Cached log-Mel features (``features/SPLIT/ID.npy`` with ``features/config.json``)
are used when their settings match; otherwise features are computed from the audio.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path

import numpy as np

from ..audio import FeatureConfig, features, normalize
from ..errors import InputError
from .librispeech import read_librispeech
from .manifest import read_manifest
from .utterance import Utterance


def builtin_corpus() -> Path:
    """Folder of the demo corpus shipped inside the package."""
    return Path(str(resources.files("introspeech") / "data" / "demo_corpus"))


def load_corpus(path: str | Path | None = None) -> dict[str, list[Utterance]]:
    """Utterances per split. ``None``: the built-in demo corpus; a ``.jsonl`` file: one split named
    after the file; a folder with ``*.jsonl``: one split per manifest; else a LibriSpeech tree (with
    the word and phone alignments of any ``ID.TextGrid`` inside it, e.g. Montreal Forced Aligner's)."""
    p = Path(path) if path is not None else builtin_corpus()
    if p.is_file():
        return {p.stem: read_manifest(p)}
    if not p.is_dir():
        raise InputError(p, "corpus not found (expected a folder of SPLIT.jsonl manifests, a .jsonl "
                            "manifest or a LibriSpeech folder)")
    manifests = sorted(p.glob("*.jsonl"))
    if manifests:
        return {m.stem: read_manifest(m) for m in manifests}
    utts = read_librispeech(p, textgrids=p if next(p.rglob("*.TextGrid"), None) else None)
    if not utts:
        raise InputError(p, "no *.jsonl manifests and no LibriSpeech *.trans.txt files in this folder")
    return {"all": utts}


def _cache_config(utt: Utterance) -> tuple[Path, FeatureConfig] | None:
    audio = Path(utt.audio_path)
    root = audio.parent.parent.parent  # CORPUS/audio/SPLIT/ID.flac
    cfg_path = root / "features" / "config.json"
    if not cfg_path.is_file():
        return None
    cached = root / "features" / audio.parent.name / f"{audio.stem}.npy"
    return cached, FeatureConfig.from_dict(json.loads(cfg_path.read_text()))


def utterance_features(utt: Utterance, cfg: FeatureConfig) -> np.ndarray:
    """Normalized features ``(n_mels, frames)`` of an utterance (cached log-Mel when compatible)."""
    cache = _cache_config(utt)
    if cache is not None and cache[0].is_file():
        path, cached_cfg = cache
        same = {k: v for k, v in cached_cfg.to_dict().items() if k not in ("normalize", "mean", "std")}
        want = {k: v for k, v in cfg.to_dict().items() if k not in ("normalize", "mean", "std")}
        if same == want:
            return normalize(np.load(path).astype(np.float32), cfg)
    return features(utt.audio_path, cfg)


def load_features(utts: Iterable[Utterance], cfg: FeatureConfig,
                  on_error: Callable[[Utterance, Exception], None] | None = None) -> list[tuple[Utterance, np.ndarray]]:
    """Features of many utterances; a bad file is reported through ``on_error`` and skipped
    (without ``on_error`` the error is raised)."""
    out = []
    for u in utts:
        try:
            out.append((u, utterance_features(u, cfg)))
        except InputError as e:
            if on_error is None:
                raise
            on_error(u, e)
    return out
