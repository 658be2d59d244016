"""The main job: every capability on the built-in model and corpus, in one HTML report."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..asr.beam import BeamDecoder
from ..asr.checkpoint import load_model
from ..audio import PRESETS
from ..corpus.load import load_corpus, load_features
from ..errors import InputError, report_skipped
from ..models.description import ModelDescription, describe
from ..models.packaged import describe_packaged, is_packaged
from .html import Section, write_report
from .sections.asr import asr_section
from .sections.attribution import attribution_section, corpus_bounds
from .sections.corpus import corpus_section, sample_utterance
from .sections.profiles import naps_section, patterns_section


def sanity_demo(net, cfg, splits: dict, out: Path, log, on_error=None) -> tuple[Section, dict]:
    """Every method on 2 speech examples (a twin trained 20 steps on permuted transcripts) and on the
    digits CNN, cascading randomization (the CLI adds independent randomization); results in OUT/sanity."""
    from ..attribution.definitions import ATTENTION_VARIANTS
    from ..sanity.check import METHODS
    from ..sanity.run import run_sanity
    from .sections.sanity import sanity_section

    utts = splits.get("test") or next(iter(splits.values()))
    methods = [m for m in METHODS if m not in ATTENTION_VARIANTS]
    results, summary = run_sanity(net, cfg, utts, methods, out / "sanity", examples=2, random_label_steps=20,
                                  independent=False, image_epochs=12, on_error=on_error)
    return sanity_section(results, out, n_examples=2), summary


def digits_explanations(methods: list[str] | None = None, steps: int = 10, baseline: str = "mean",
                        sanity: dict | None = None, epochs: int = 25, examples: int = 8) -> dict:
    """Faithfulness of the methods on the sanity checks' digits CNN (trained here in seconds), for
    `introspeech explanations` and the demo."""
    from ..explanations.run import evaluate_image_explanations
    from ..sanity.digits import digits, train_digits

    xtr, ytr, xte, yte = digits(0)
    cnn = train_digits(xtr, ytr, epochs, 0).eval()
    return evaluate_image_explanations(cnn, xte, yte, "5", methods, examples, steps, baseline=baseline, sanity=sanity)


def explanations_demo(net, splits: dict, out: Path, sanity: dict, log) -> Section:
    """Every named method on 4 letters of 2 test utterances (the CLI runs any number); OUT/explanations."""
    from ..explanations.run import evaluate_explanations
    from .sections.explanations import explanations_section, findings

    utts = splits.get("test") or next(iter(splits.values()))
    utts = [utts[0], utts[len(utts) // 2]] if len(utts) > 1 else utts
    summary = evaluate_explanations(net, utts, letters_per_utterance=4, sanity=sanity)
    summary["digits"] = digits_explanations(sanity=sanity, epochs=12, examples=4)
    summary["findings"] = findings(summary)
    (out / "explanations").mkdir(parents=True, exist_ok=True)
    (out / "explanations" / "summary.json").write_text(json.dumps(summary, indent=1))
    return explanations_section(summary, out)


DEMO_NAP_LAYERS = ("layer1", "layer4", "layer7", "layer10", "output")


def profile_sections(net, cfg, meta: dict, splits: dict, out: Path, loader=None,
                     strict: bool = False) -> tuple[list[Section], object]:
    """Patterns and NAPs over the corpus' test split (or its first split); sums saved in OUT/profiles."""
    import torch

    from ..profiles import results
    from ..profiles.engine import profile_corpus
    from ..profiles.settings import ProfileSettings

    utts = splits.get("test") or next(iter(splits.values()))
    settings = ProfileSettings(threads=torch.get_num_threads())
    acc = profile_corpus(net, cfg, utts, settings, strict=strict, **({"loader": loader} if loader else {}))
    results.save(acc, out / "profiles", meta.get("model"))
    summary = results.summary(acc)
    (out / "profiles" / "summary.json").write_text(json.dumps(summary, indent=1))
    layers = [name for name in DEMO_NAP_LAYERS if name in acc.layout.layers] or list(acc.layout.layers)
    return [patterns_section(acc, out, summary), naps_section(acc, out, summary, layers=layers)], acc


DEMO_LETTERS = ("s", "a")


def featvis_demo(net, cfg, splits: dict, out: Path, acc, steps: int = 64) -> Section:
    """A prior trained on the corpus' windows (200 steps), then two letters × three parameterizations."""
    import numpy as np

    from ..featvis.prior import PriorConfig, sample_windows, train_prior
    from ..featvis.run import SpeechData, run_featvis
    from ..profiles import results as profile_results
    from .sections.featvis import featvis_section

    utts = splits.get("test") or next(iter(splits.values()))
    window = -(-net.output_geometry.rf // 4) * 4
    data = SpeechData(cfg, utts, window)
    prior, _ = train_prior(sample_windows(data.feats, window, 3000, 0), PriorConfig(cfg.n_mels, window), steps=200)
    folder = out / "featvis"
    res = run_featvis(net, data, [f"letter:{c}" for c in DEMO_LETTERS], folder, prior=prior, steps=steps)
    patterns = {}
    if "pattern/letters/aligned/sum" in acc.arrays:
        raw, _ = profile_results.patterns(acc, "letters", "aligned")
        names = acc.layout.groups("letters")
        patterns = {c: raw[names.index(c)] for c in DEMO_LETTERS if c in names and not np.isnan(raw[names.index(c)]).any()}
    return featvis_section(res, folder, out, patterns, data.audio, cfg.sample_rate, steps)


def representations_demo(net, splits: dict, out: Path, on_error=None) -> Section:
    """`introspeech representations` on the test split, small: 10 frames per utterance, four layers
    evenly spaced from the first to the output, 50 resamples, 49 permutations (4 for the probes),
    no random-network baseline; the command runs the full analysis."""
    from ..representations.run import analyse
    from .sections.representations import representations_section

    names = [layer.name for layer in net.layers]
    pick = [names[int(i)] for i in np.linspace(0, len(names) - 1, min(4, len(names))).round()]
    summary = analyse(net, splits.get("test") or next(iter(splits.values())), per_utterance=10, bootstrap=50,
                      permutations=49, probe_permutations=4, random_baseline=False, on_error=on_error,
                      layers=list(dict.fromkeys(pick)))
    maps = summary.pop("maps")
    return representations_section(summary, out, maps)


def word_lm_decoder(net, log) -> BeamDecoder | None:
    """The beam search with a word trigram model of WordNet's definitions (`introspeech lm`), for
    models of the built-in alphabet; None, and a note, when WordNet is missing."""
    from ..asr.lm import NgramLM
    from ..corpus.lm_text import lm_sentences
    from ..text import SYMBOLS

    if isinstance(net, ModelDescription) and net.output.alphabet != SYMBOLS:
        return None
    try:
        text = lm_sentences()
    except FileNotFoundError as e:
        log(f"{e}; the recognizer section decodes greedily only")
        return None
    return BeamDecoder(NgramLM.estimate(text, order=3, min_count=2))


def run_demo(out_dir: str | Path, corpus: str | Path | None = None, model: str | Path | ModelDescription | None = None,
             log: Callable[[str], None] = print, strict: bool = False) -> Path:
    """Build the report into ``out_dir``; returns the path of ``index.html``. ``model``: a checkpoint
    (default: the built-in model) or the description of any CTC model over the built-in alphabet.

    A bad utterance (unreadable audio, an empty transcript, an alignment of other audio) is left out
    of every section and listed with its reason in ``OUT/skipped.tsv``; ``strict``: it is fatal."""
    out = Path(out_dir)
    t0 = time.perf_counter()
    say = log
    log = lambda m: say(f"[{time.perf_counter() - t0:6.1f} s] {m}")  # noqa: E731
    splits = load_corpus(corpus)
    cfg = PRESETS["default"]
    if model is not None and not isinstance(model, ModelDescription) and is_packaged(model) \
            and not Path(model).exists():
        return _packaged_demo(out, str(model), splits, corpus, log, t0)
    try:
        if isinstance(model, ModelDescription):
            net, cfg, meta = model, model.features, {"model": {"factory": model.factory or model.name}}
        else:
            module, cfg, meta = load_model(model)
            net = describe(module, features=cfg, name=str(model or "built-in model"))
    except InputError as e:
        if model is not None:
            raise
        log(f"no built-in model yet ({e}); model sections skipped")
        net = None
    skipped: list[str] = []
    keep = None if strict else (lambda _u, e: skipped.append(str(e)))
    feats: dict = {}
    if net is not None:  # every utterance read once; the bad ones go no further
        for us in splits.values():
            feats.update((u.id, f) for u, f in load_features(us, cfg, on_error=keep))
        splits = {name: [u for u in us if u.id in feats] for name, us in splits.items()}
        if not any(splits.values()):
            raise InputError(corpus or "corpus", f"no utterance could be read ({len(skipped)} skipped)")
    sample = sample_utterance(splits)
    sections: list[Section] = []
    log("corpus statistics and sample alignment")
    sections.append(corpus_section(splits, out, cfg, sample))
    if net is not None:
        log("speech recognizer: error rates (greedy and with a word language model) and sample posteriors")
        sections.append(asr_section(net, cfg, meta, splits, sample, out, on_error=keep,
                                    beam=word_lm_decoder(net, log))[0])
        log("local introspection: every method, all frames at once")
        sections.append(attribution_section(net, cfg, sample, corpus_bounds(list(feats.values())), out))
        log("global introspection: letter patterns and neuron activation profiles")
        profile, acc = profile_sections(net, cfg, meta, splits, out, lambda u, _cfg: feats[u.id], strict)
        skipped += acc.errors
        sections += profile
        log("feature visualization: letters, regularized and with a learned prior, audible")
        sections.append(featvis_demo(net, cfg, splits, out, acc))
        log("sanity checks: parameter and data randomization, speech and digits")
        section, sanity = sanity_demo(net, cfg, splits, out, log, keep)
        sections.append(section)
        log("which explanation to trust: faithfulness and localization per method")
        sections.append(explanations_demo(net, splits, out, sanity, log))
        log("where phones live: probes, CKA, NAP silhouettes with intervals, topographic maps")
        sections.append(representations_demo(net, splits, out, keep))
        log("do the units matter? mean ablations of the units NAPs single out, against random units")
        from .sections.causal import causal_demo

        sections.append(causal_demo(net, acc, splits, out))
        log("sparse features: a TopK autoencoder of the last hidden layer")
        from .sections.causal import sae_demo

        sections.append(sae_demo(net, acc.layout, splits, out))
        log("real speech: packaged human recordings, never trained on")
        from .sections.realspeech import realspeech_section

        sections.append(realspeech_section(net, cfg, out))
        log("a model that learned from real speech: hama's phonemes, AttnLRP of every frame, NAPs")
        from .sections.real_model import real_model_section

        sections.append(real_model_section(out, splits.get("test", [])[:40]))
        log("findings: the seed's claims on the built-in model and the real-speech models, real clips")
        from .sections.findings import findings_demo

        sections.append(findings_demo(net, out, log=None))
    report_skipped(out, list(dict.fromkeys(skipped)), log)
    path = write_report(out, sections, subtitle=f"corpus: {corpus or 'built-in demo corpus'}; "
                                                f"built in {time.perf_counter() - t0:.1f} s")
    log(f"report written to {path}")
    return path


def _packaged_demo(out: Path, name: str, splits: dict, corpus, log: Callable[[str], None], t0: float) -> Path:
    """``demo --model hama``: the corpus and the section on a model that learned from real speech
    (its transcripts of real clips, every phoneme explained, its phoneme NAPs on the corpus). The
    other sections read letters of the built-in alphabet, which hama's phonemes are not."""
    from .sections.real_model import real_model_section

    if name != "hama":
        raise InputError("--model", f"the demo's real-model section runs hama; {name} runs by name in transcribe, "
                         "evaluate, layers, naps --groups phonemes, representations and sanity")
    describe_packaged(name)  # a missing wheel: the one-line error with the install command
    sample = sample_utterance(splits)
    log("corpus statistics and sample alignment")
    sections = [corpus_section(splits, out, PRESETS["default"], sample)]
    log("a model that learned from real speech: hama's phonemes, AttnLRP of every frame, NAPs")
    sections.append(real_model_section(out, splits.get("test", [])[:40]))
    path = write_report(out, sections, subtitle=f"model: {name} (the sections on letters need a recognizer over "
                        f"the built-in alphabet); corpus: {corpus or 'built-in demo corpus'}; "
                        f"built in {time.perf_counter() - t0:.1f} s")
    log(f"report written to {path}")
    return path
