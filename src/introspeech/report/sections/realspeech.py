"""Report section: the recognizer on real human speech (Debian's packaged recordings, never trained
on): CER per source on a fixed sample of clips, one real utterance's posteriors and the all-frames
relevance of its emitted letters; where no package is installed, how to get them."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from ...asr.decode import greedy_path, greedy_runs
from ...asr.evaluate import error_rates, scores
from ...attribution.frames import FrameGeometry, attribute_frames
from ...audio import FeatureConfig, features
from ...corpus.realspeech import SOURCES, clips, install_hint, normalize_spoken
from ...models.description import ModelDescription, describe
from ..figures import posteriors, relevance_over_time
from ..html import Section, fragment

TEMPLATE = """
{% if not rows %}
<p>No real-speech package is installed, so this section is empty. Install them with
<code>{{ hint }}</code>, then build the full test corpus with <code>introspeech realspeech --out DIR</code>
and measure it with <code>introspeech evaluate --corpus DIR</code>.</p>
{% else %}
<p>Real human recordings shipped by Debian packages (never trained on), {{ per_source }} clips per source
spread over each source, transcripts in spoken form (numbers spelled, symbols read, bracketed
non-speech prompts dropped). The full corpus is <code>introspeech realspeech --out DIR</code>; its
numbers beside Whisper tiny.en come from <code>python benchmarks/real_speech.py</code>.</p>
<table><tr><th>source</th><th>speakers</th><th>clips</th><th>CER %</th><th>WER %</th></tr>
{% for r in rows %}<tr><td>{{ r.source }}</td><td>{{ r.speakers }}</td><td>{{ r.n }}</td>
<td>{{ "%.1f"|format(100 * r.cer) }}</td><td>{{ "%.1f"|format(100 * r.wer) }}</td></tr>{% endfor %}
<tr><td><b>all</b></td><td></td><td>{{ pooled.utterances }}</td><td><b>{{ "%.1f"|format(100 * pooled.cer) }}</b></td>
<td>{{ "%.1f"|format(100 * pooled.wer) }}</td></tr></table>
{% for why in missing %}<p class="note">{{ why }}</p>{% endfor %}
<p>Real utterance <code>{{ clip }}</code>:<br>reference: <q>{{ ref }}</q><br>transcript: <q>{{ hyp }}</q></p>
<figure><img src="{{ post }}" alt="letter posteriors of a real utterance"><figcaption>Letter posteriors;
red letters mark the greedy CTC path's emissions.</figcaption></figure>
<figure><img src="{{ rel }}" alt="relevance over time of a real utterance"><figcaption>All frames at once:
LRP-ε relevance of every emitted letter, summed over Mel bins.</figcaption></figure>
<audio controls src="{{ audio }}"></audio>
{% endif %}
"""


def realspeech_section(desc: ModelDescription, cfg: FeatureConfig, out_dir: Path, per_source: int = 24) -> Section:
    """CER per real-speech source on ``per_source`` evenly spread clips, and one clip explained."""
    import soundfile as sf

    out_dir = Path(out_dir)
    desc = desc if isinstance(desc, ModelDescription) else describe(desc, features=cfg)
    found, missing = clips()
    if not found:
        return Section("Real speech", fragment(TEMPLATE, rows=[], hint=install_hint()), [])
    model = desc.module
    out = desc.output
    rows, refs_all, hyps_all, sample = [], [], [], None
    for source in SOURCES:
        mine = [(c, t) for c in found if c.split == source and (t := normalize_spoken(c.text).text)]
        pick = [mine[int(i)] for i in np.unique(np.linspace(0, len(mine) - 1, min(per_source, len(mine))).round())]
        refs, hyps = [], []
        for c, text in pick:
            wave = c.wave()
            f = features(wave, cfg)
            s = scores(model, f)
            refs.append(text)
            hyps.append(out.decode(s.argmax(0).numpy()))
            if sample is None or ("librivox" in c.id and "librivox" not in sample[0].id):
                sample = (c, text, wave, f, s)  # a LibriVox reader where there is one: real read speech
        if refs:
            m = error_rates(refs, hyps)
            rows.append({"source": source, "speakers": SOURCES[source][2], "n": len(refs), **m})
            refs_all += refs
            hyps_all += hyps
    clip, ref, wave, f, s = sample
    assets = out_dir / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    audio = assets / f"real_{clip.id}.wav"
    sf.write(str(audio), wave, cfg.sample_rate)
    g = desc.output_geometry
    lp = torch.log_softmax(s.double(), 0).numpy()
    frame_s = g.stride / cfg.frame_rate
    emitted = [(int(a), out.decode([k])) for k, a, _ in zip(*greedy_runs(s.argmax(0).numpy(), out.blank))]
    hyp = out.decode(s.argmax(0).numpy())
    post = posteriors(lp, list(out.alphabet), frame_s, assets / f"real_{clip.id}_posteriors.png",
                      title=f"{clip.id}: {hyp}", letters=[((a + 0.5) * frame_s, ch) for a, ch in emitted if ch.strip()])
    net = copy.deepcopy(model).double().eval()  # the caller's model stays as it is
    x = torch.from_numpy(f).double().unsqueeze(0)
    with torch.no_grad():
        sd = net(x)[0]
    path = [e for e in greedy_path(sd) if e.letter != " "]
    maps = attribute_frames(net, x, [e.start for e in path], sd.argmax(0), "lrp", chunk=16, composite="epsilon",
                            geometry=FrameGeometry(g.rf, g.stride, g.offset))
    rel = relevance_over_time(maps.abs().sum(1).numpy(), [e.letter for e in path], x.shape[2] / cfg.frame_rate,
                              assets / f"real_{clip.id}_relevance.png", title="LRP-ε relevance, real speech")
    html = fragment(TEMPLATE, rows=rows, pooled=error_rates(refs_all, hyps_all), per_source=per_source,
                    missing=[f"{k}: {v}; {install_hint()}" for k, v in missing.items()], clip=clip.id,
                    ref=ref, hyp=hyp, post=post.relative_to(out_dir).as_posix(),
                    rel=rel.relative_to(out_dir).as_posix(), audio=audio.relative_to(out_dir).as_posix())
    return Section("Real speech", html, [post, rel, audio])
