"""Report section: the recognizer on the sample utterance (transcript, letter posteriors) and
its error rates per split."""

from __future__ import annotations

from pathlib import Path

import torch

from ...asr.beam import BeamDecoder
from ...asr.decode import greedy_runs
from ...asr.evaluate import evaluate_decoders, scores
from ...audio import FeatureConfig
from ...corpus.load import utterance_features
from ...corpus.utterance import Utterance
from ...models.description import ModelDescription, describe
from ...text import SYMBOLS, normalize_text
from ..figures import posteriors
from ..html import Section, fragment

TEMPLATE = """
<p>Model: preset <code>{{ preset }}</code>, {{ "{:,}".format(n_params) }} parameters, receptive field
{{ rf }} input frames ({{ "%.2f"|format(rf_s) }} s), one output frame per {{ stride }} input frames.
{{ training }}</p>
<table><tr><th>split</th><th>utterances</th><th>CER %</th><th>WER %</th>
{% if lm_metrics %}<th>CER % with the word LM</th><th>WER % with the word LM</th>{% endif %}</tr>
{% for name, m in metrics.items() %}<tr><td>{{ name }}</td><td>{{ m.utterances }}</td>
<td>{{ "%.2f"|format(100 * m.cer) }}</td><td>{{ "%.2f"|format(100 * m.wer) }}</td>
{% if lm_metrics %}<td>{{ "%.2f"|format(100 * lm_metrics[name].cer) }}</td>
<td>{{ "%.2f"|format(100 * lm_metrics[name].wer) }}</td>{% endif %}</tr>{% endfor %}</table>
{% if lm_metrics %}<p>Greedy CTC decoding, and a CTC prefix beam search (beam {{ beam.beam }}) fused with a word
trigram model of WordNet's definitions (weight {{ beam.alpha }}, word bonus {{ beam.beta }}; <code>introspeech
lm</code>, <code>evaluate --lm</code>). The language model has never seen the corpus' sentences.</p>{% endif %}
<p>Sample utterance <code>{{ utt.id }}</code>:<br>reference: <q>{{ ref }}</q><br>transcript: <q>{{ hyp }}</q>
{% if lm_hyp is not none %}<br>with the word LM: <q>{{ lm_hyp }}</q>{% endif %}</p>
<figure><img src="{{ image }}" alt="letter posteriors over time">
<figcaption>Per-frame letter posteriors (softmax of the output scores); red letters mark where the
greedy CTC path emits each letter.</figcaption></figure>
"""


def asr_section(desc: ModelDescription, cfg: FeatureConfig, meta: dict, splits: dict[str, list[Utterance]],
                sample: Utterance, out_dir: Path, max_per_split: int = 0,
                metrics: dict | None = None, on_error=lambda u, e: None,
                beam: BeamDecoder | None = None) -> tuple[Section, dict]:
    """Error rates per split (``metrics`` if already measured) and the sample's posteriors; returns
    the section and the metrics. ``on_error(utterance, error)`` hears of the utterances skipped
    (None: the first one raises). With ``beam`` (a model of the built-in alphabet), the error
    rates and the sample's transcript of that beam search too."""
    out_dir = Path(out_dir)
    model = desc.module if isinstance(desc, ModelDescription) else desc
    desc = desc if isinstance(desc, ModelDescription) else describe(model, features=cfg)
    g = desc.output_geometry
    if beam is not None and desc.output.alphabet != SYMBOLS:
        raise ValueError("the beam search reads the built-in alphabet; this model has its own")
    wanted = ({} if metrics is not None else {"greedy": None}) | ({"lm": beam} if beam is not None else {})
    measured = {name: evaluate_decoders(model, cfg, utts[: max_per_split or None], wanted, on_error=on_error)
                for name, utts in splits.items()} if wanted else {}
    if metrics is None:
        metrics = {name: m["greedy"][0] for name, m in measured.items()}
    lm_metrics = None if beam is None else {name: m["lm"][0] for name, m in measured.items()}
    s = scores(model, utterance_features(sample, cfg))
    lp = torch.log_softmax(s.double(), 0).numpy()
    lm_hyp = None if beam is None else beam.decode(lp.T)
    frame_s = g.stride / cfg.frame_rate
    out = desc.output
    emitted = [(int(a), out.decode([k])) for k, a, _ in zip(*greedy_runs(s.argmax(0).numpy(), out.blank))]
    hyp = out.decode(s.argmax(0).numpy())
    image = posteriors(lp, list(out.alphabet), frame_s, out_dir / "assets" / f"{sample.id}_posteriors.png",
                       title=f"{sample.id}: {hyp}",
                       letters=[((a + 0.5) * frame_s, c) for a, c in emitted if c.strip()])
    hist = meta.get("state", {}).get("history", [])
    training = (f"Trained {hist[-1]['epoch']} epochs on {meta.get('corpus', {}).get('train_hours', '?')} h "
                f"(best validation CER {100 * meta['state']['best_cer']:.2f} %)." if hist else "")
    html = fragment(TEMPLATE, preset=(desc.config or {}).get("preset", desc.name),
                    n_params=sum(p.numel() for p in model.parameters()),
                    rf=g.rf, rf_s=g.rf / cfg.frame_rate, stride=g.stride, training=training, metrics=metrics,
                    utt=sample, ref=normalize_text(sample.text).text, hyp=hyp, lm_metrics=lm_metrics, lm_hyp=lm_hyp,
                    beam=beam.settings if beam is not None else None,
                    image=image.relative_to(out_dir).as_posix())
    return Section("Speech recognizer", html, [image]), metrics
