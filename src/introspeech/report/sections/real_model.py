"""Report section: a model that learned from real speech (hama's phoneme recognizer, by name) on
a few of Debian's real recordings: its phoneme transcripts, one clip's posteriors, the AttnLRP
relevance of every emitted phoneme in one call, and phoneme NAPs of its layers; where the wheel is
absent, how to install it."""

from __future__ import annotations

from pathlib import Path

import torch

from ...asr.decode import greedy_runs
from ...attribution.frames import attribute_frames
from ...audio import features
from ...corpus.realspeech import SOURCES, clips, normalize_spoken
from ...models.packaged import PACKAGED, describe_packaged
from ...profiles import results as R
from ...profiles.engine import profile_corpus
from ...profiles.settings import ProfileSettings
from ..figures import posteriors, relevance_over_time
from ..html import Section, fragment
from .profiles import naps_section

TEMPLATE = """
{% if hint %}
<p>{{ hint }}</p>
{% else %}
<p>hama's phoneme recognizer (PyPI <code>hama==1.3.10</code>, Apache-2.0) was trained on real speech; introspeech reads
its weights from the wheel (<code>--model hama</code> on any command). Its transcripts are IPA phonemes, words
separated by <code>|</code>, on real recordings it never saw here:</p>
<table><tr><th>clip</th><th>reference</th><th>hama</th></tr>
{% for r in rows %}<tr><td>{{ r.id }}</td><td>{{ r.ref }}</td><td>{{ r.hyp }}</td></tr>{% endfor %}</table>
<figure><img src="{{ post }}" alt="phoneme posteriors"><figcaption>Posteriors of the tokens it emits in
<code>{{ clip }}</code> (red: the greedy path's emissions).</figcaption></figure>
<figure><img src="{{ rel }}" alt="AttnLRP relevance over time"><figcaption>All {{ n_emitted }} emitted phonemes
explained in one call (AttnLRP through its attention layers, squeeze-excitation and front end): |relevance| over
the waveform, summed per 10 ms. Every frame of this model sees the whole input, and the relevance of every phoneme
spreads over the whole clip: in each of its 11 blocks the uniform rule sends half of the relevance through the
squeeze-excitation gate, a mean over all frames.</figcaption></figure>
<audio controls src="{{ audio }}"></audio>
<p>Phoneme NAPs of its layers on {{ n_utts }} utterances of the demo corpus' test split
(<code>introspeech naps --model hama --groups phonemes</code> runs them on a whole corpus):</p>
{{ naps | safe }}
{% endif %}
"""


def _pick(found, per_source: int = 2):
    """A few sentences from each source: the clips of median transcript length."""
    picked = []
    for source in SOURCES:
        mine = sorted((c for c in found if c.split == source and len(normalize_spoken(c.text).text.split()) >= 3),
                      key=lambda c: len(c.text))
        picked += mine[len(mine) // 2:len(mine) // 2 + per_source]
    return picked


def real_model_section(out_dir: Path, utts: list, max_explained_s: float = 5.0) -> Section:
    """hama on real clips, one of them explained frame by frame, and its phoneme NAPs on ``utts``."""
    import soundfile as sf

    out_dir = Path(out_dir)
    entry = PACKAGED["hama"]
    found, _ = clips()
    if not entry.installed or not found:
        hint = (f"hama is not installed: {entry.install}" if not entry.installed else
                "No real-speech package is installed (see the section on real speech).")
        return Section("A model that learned from real speech", fragment(TEMPLATE, hint=hint), [])
    desc = describe_packaged("hama")
    model, out, cfg = desc.module, desc.output, desc.features
    rows, sample = [], None
    for c in _pick(found):
        wave = c.wave()
        x = torch.from_numpy(features(wave, cfg)).unsqueeze(0)
        with torch.no_grad():
            s = model(x)[0]
        rows.append({"id": c.id, "ref": normalize_spoken(c.text).text, "hyp": out.decode(s.numpy())})
        seconds = len(wave) / cfg.sample_rate
        if seconds <= max_explained_s and (sample is None or seconds > len(sample[1]) / cfg.sample_rate):
            sample = (c, wave, x, s)  # the longest clip within the budget of the all-frames explanation
    if sample is None:
        sample = (c, wave, x, s)
    clip, wave, x, s = sample
    assets = out_dir / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    audio = assets / f"hama_{clip.id}.wav"
    sf.write(str(audio), wave, cfg.sample_rate)
    best = out.greedy(s.numpy())
    sym, first, _ = greedy_runs(best, out.blank)
    frame_s = desc.output_geometry.stride / cfg.frame_rate
    shown = sorted(set(sym.tolist())) + [out.blank]
    lp = torch.log_softmax(s.double(), 0).numpy()[shown]
    names = [out.alphabet[i] if i != out.blank else "<b>" for i in shown]
    post = posteriors(lp, names, frame_s, assets / f"hama_{clip.id}_posteriors.png", title=f"{clip.id}: "
                      f"{out.decode(s.numpy())}", letters=[((a + 0.5) * frame_s, out.alphabet[k]) for k, a in
                                                             zip(sym, first)])
    maps = attribute_frames(model, x, [int(a) for a in first], torch.from_numpy(best), "lrp", chunk=16)
    hop = int(cfg.sample_rate / 100)
    per_10ms = maps[:, 0].abs()[:, : maps.shape[-1] // hop * hop].reshape(len(first), -1, hop).sum(-1)
    rel = relevance_over_time(per_10ms.numpy(), [out.alphabet[k] for k in sym], x.shape[-1] / cfg.sample_rate,
                              assets / f"hama_{clip.id}_relevance.png", title="hama, AttnLRP, real speech")
    acc = profile_corpus(desc, cfg, utts, ProfileSettings(groups=("phonemes",), relevance=""))
    summary = R.summary(acc)
    best_layer = summary["findings"].get("best_layer_phonemes")
    naps = naps_section(acc, out_dir / "hama", summary, layers=[best_layer] if best_layer else [])
    naps_html = str(naps.html).replace('src="figures/', 'src="hama/figures/')  # its figures beside the model's own
    html = fragment(TEMPLATE, hint="", rows=rows, clip=clip.id, post=post.relative_to(out_dir).as_posix(),
                    rel=rel.relative_to(out_dir).as_posix(), audio=audio.relative_to(out_dir).as_posix(),
                    n_emitted=len(first), n_utts=acc.utterances, naps=naps_html)
    return Section("A model that learned from real speech", html, [post, rel, audio, *naps.files])
