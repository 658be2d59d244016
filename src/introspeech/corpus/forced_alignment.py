"""Word and phone timings for real speech from a forced aligner (PyPI ``pocketsphinx`` 5.x).

pocketsphinx ships an en-us acoustic model and dictionary whose phones are ARPAbet without
stress, the set introspeech uses. Alignment runs in its two passes (words, then phones) at
100 frames per second. A word outside its dictionary takes its CMUdict pronunciation; a word in
neither is an error naming it. The timings are an aligner's estimate, not exact: manifests mark
them ``"alignment": "forced"``, and `boundary_agreement` measures the aligner against the
synthetic corpus' exact timings.
"""

from __future__ import annotations

import numpy as np

from ..audio import SAMPLE_RATE
from ..text import ARPABET, SILENCE, cmu_dictionary
from .utterance import Segment

FRAME_S = 0.01


def espeak_pronunciation(word: str) -> list[str]:
    """ARPAbet phones of a word outside the dictionaries, from espeak-ng's US English IPA
    (``[]`` when espeak-ng is absent or its output has a symbol without a mapping)."""
    import shutil
    import subprocess

    from .synth.ipa import IPA_TABLE

    if shutil.which("espeak-ng") is None:
        return []
    res = subprocess.run(["espeak-ng", "-q", "-v", "en-us", "--ipa", "--sep=_", word], capture_output=True, text=True)
    phones: list[str] = []
    for token in res.stdout.replace(" ", "_").strip().split("_"):
        core = "".join(c for c in token if IPA_TABLE.get(c) != ("",))
        if not core:
            continue
        if core in IPA_TABLE:
            phones += IPA_TABLE[core]
            continue
        for c in core:
            if c not in IPA_TABLE:
                return []
            phones += IPA_TABLE[c]
    return phones


class Aligner:
    """One pocketsphinx decoder, reused for every utterance."""

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as e:
            raise RuntimeError(f"the forced aligner needs PyPI pocketsphinx ({e}); pip install pocketsphinx") from None
        self.decoder = Decoder(samprate=SAMPLE_RATE, bestpath=False, loglevel="FATAL")

    def _known(self, word: str) -> None:
        if self.decoder.lookup_word(word) is not None:
            return
        prons = cmu_dictionary().get(word) or [espeak_pronunciation(word)]
        if not prons[0]:
            raise ValueError(f"the word {word!r} is in neither the aligner's dictionary nor CMUdict, "
                             "and espeak-ng gave no pronunciation")
        self.decoder.add_word(word, " ".join(prons[0]), True)

    def align(self, wave: np.ndarray, text: str) -> tuple[list[Segment], list[Segment]]:
        """Words and contiguous phones (``sil`` between words) of ``text`` spoken in ``wave`` (16 kHz)."""
        words = text.split()
        for w in set(words):
            self._known(w)
        pcm = (np.clip(wave, -1, 1) * 32767).astype("<i2").tobytes()
        d = self.decoder
        try:
            d.set_align_text(text)
            d.start_utt()
            d.process_raw(pcm, full_utt=True)
            d.end_utt()
            d.set_alignment()
            d.start_utt()
            d.process_raw(pcm, full_utt=True)
            d.end_utt()
            alignment = d.get_alignment()
        except RuntimeError as e:  # pocketsphinx found no path through the transcript
            raise ValueError(f"the aligner failed: {e}") from None
        if alignment is None:
            raise ValueError("the aligner found no alignment of the transcript")
        duration = len(wave) / SAMPLE_RATE
        out_words: list[Segment] = []
        phones: list[Segment] = []
        for entry in alignment:
            name = entry.name.split("(")[0]
            start, end = entry.start * FRAME_S, min((entry.start + entry.duration) * FRAME_S, duration)
            if name.startswith("<") or name.startswith("["):
                label = SILENCE
                if phones and phones[-1].label == SILENCE:
                    phones[-1] = Segment(phones[-1].start, end, SILENCE)
                else:
                    phones.append(Segment(start, end, label))
                continue
            out_words.append(Segment(start, end, name))
            for ph in entry:
                label = ph.name if ph.name in ARPABET else SILENCE
                phones.append(Segment(ph.start * FRAME_S, min((ph.start + ph.duration) * FRAME_S, duration), label))
        if [w.label for w in out_words] != words:
            raise ValueError(f"the aligner returned {len(out_words)} words for {len(words)}")
        if phones and phones[-1].end < duration - 1e-6:
            phones.append(Segment(phones[-1].end, duration, SILENCE))
        if phones and phones[0].start > 1e-6:
            phones.insert(0, Segment(0.0, phones[0].start, SILENCE))
        return out_words, phones


def boundary_agreement(exact: list[Segment], forced: list[Segment], tolerances: tuple[float, ...] = (0.02, 0.05)
                       ) -> dict[str, float]:
    """Share of the exact phone boundaries that have a forced-alignment boundary within each
    tolerance (the nearest one, whatever its phones: a boundary-detection recall)."""
    def boundaries(segs: list[Segment]) -> list[float]:
        return [s.start for s in segs[1:]]
    e = np.asarray(boundaries(exact))
    f = np.asarray(boundaries(forced))
    if len(e) == 0 or len(f) == 0:
        return {f"within_{int(t * 1000)}ms": float("nan") for t in tolerances}
    nearest = np.abs(e[:, None] - f[None, :]).min(axis=1)
    return {f"within_{int(t * 1000)}ms": float((nearest <= t).mean()) for t in tolerances}
