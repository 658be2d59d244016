"""Report section: corpus statistics and one aligned sample utterance with an audio player."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf

from ...audio import FeatureConfig, load_audio, log_mel
from ...corpus.utterance import Utterance
from ...text import SILENCE
from ..figures import spectrogram_with_alignment
from ..html import Section, fragment

TEMPLATE = """
<p>{{ n_utts }} utterances, {{ "%.2f"|format(hours) }} hours, {{ n_speakers }} voices.</p>
<table><tr><th>split</th><th>utterances</th><th>minutes</th><th>voices</th><th>synthesizers</th></tr>
{% for r in rows %}<tr><td>{{ r.split }}</td><td>{{ r.n }}</td><td>{{ "%.1f"|format(r.minutes) }}</td>
<td>{{ r.speakers }}</td><td>{{ r.synths }}</td></tr>{% endfor %}</table>
<p>Most frequent phones (aligned segments): {{ phones }}.</p>
<figure><img src="{{ image }}" alt="Mel spectrogram of {{ sample.id }} with word and phone boundaries">
<figcaption>{{ sample.id }} ({{ sample.speaker }}): “{{ sample.text }}”. Word boundaries in white (start solid,
end dashed), phone boundaries in blue, from the synthesizer's own timings.</figcaption></figure>
<audio controls preload="auto" src="{{ audio }}"></audio>
"""


def sample_utterance(splits: dict[str, list[Utterance]]) -> Utterance:
    """A deterministic, aligned, medium-length utterance (prefers the test split)."""
    for name in ("test", "heldout", *splits):
        cands = [u for u in splits.get(name, []) if u.words and u.phones and 2.0 <= (u.duration or 0) <= 4.5]
        if cands:
            return cands[0]
    return next(u for us in splits.values() for u in us)


def corpus_section(splits: dict[str, list[Utterance]], out_dir: Path, cfg: FeatureConfig,
                   sample: Utterance | None = None) -> Section:
    """Statistics per split and the sample utterance's spectrogram, alignment and audio."""
    out_dir = Path(out_dir)
    rows = []
    for name, utts in splits.items():
        rows.append({"split": name, "n": len(utts), "minutes": sum(u.duration or 0 for u in utts) / 60,
                     "speakers": len({u.speaker for u in utts}),
                     "synths": ", ".join(f"{k} {v}" for k, v in Counter(u.extra.get("synth", "?") for u in utts).items())})
    all_utts = [u for us in splits.values() for u in us]
    phones = Counter(p.label for u in all_utts for p in (u.phones or []) if p.label != SILENCE)
    sample = sample or sample_utterance(splits)
    wave = load_audio(sample.audio_path, cfg.sample_rate)
    assets = out_dir / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    audio = assets / f"{sample.id}.wav"
    sf.write(audio, np.clip(wave, -1, 1), cfg.sample_rate, subtype="PCM_16")
    image = spectrogram_with_alignment(log_mel(wave, cfg), cfg.frame_rate, sample.words, sample.phones,
                                       assets / f"{sample.id}_alignment.png", title=sample.text)
    html = fragment(TEMPLATE, n_utts=len(all_utts), hours=sum(r["minutes"] for r in rows) / 60,
                    n_speakers=len({u.speaker for u in all_utts}), rows=rows,
                    phones=", ".join(f"{p} {n}" for p, n in phones.most_common(12)), sample=sample,
                    image=image.relative_to(out_dir).as_posix(), audio=audio.relative_to(out_dir).as_posix())
    return Section("Corpus", html, [audio, image])
