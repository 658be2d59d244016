"""Corpus records and formats: JSONL manifests, LibriSpeech folders, MFA TextGrids."""

from .librispeech import read_librispeech, read_textgrid
from .manifest import iter_manifest, read_manifest, write_manifest
from .utterance import Segment, Utterance

__all__ = [
    "Segment", "Utterance", "iter_manifest", "read_manifest", "write_manifest",
    "read_librispeech", "read_textgrid",
]
