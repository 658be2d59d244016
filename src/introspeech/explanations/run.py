"""Which explanation to trust: every named method on the same letters, one row of the verdict table each.

The letters are those of the reference transcripts, placed by CTC forced alignment, each explained
at the frame of its span where its score is highest; spaces are left out. Per method: the mean
deletion, insertion and ROAD areas (faithfulness.py), the mean share of |relevance| inside the
letter's phones and word (localization.py), the median time from the phone span's centre to the
input frame of largest Σ|relevance|, the sanity checks' Spearman |map| after full cascading
randomization when their summary is given, the mean rank agreement of the map's sums over the
`segments` method's fixed spans with leave-one-out's scores of those spans (when `segments` runs),
and the seconds the maps of one utterance took. ``per_unit`` keeps every explained unit's values.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from ..asr.decode import forced_align_arrays
from ..attribution import attribute
from ..attribution.definitions import NAMED, has_attention, named_methods
from ..attribution.definitions import method as method_record
from ..attribution.frames import attribute_frames
from ..corpus.load import utterance_features
from ..corpus.utterance import Utterance
from ..errors import InputError
from ..models.description import ModelDescription, default_cam_layer
from ..summaries import json_ready
from ..text import ARPABET_TO_IPA, SILENCE, normalize_text
from .faithfulness import Curves, image_curves, letter_curves
from .localization import chance_share, letter_spans, share
from .tokens import MEL_RATE, TokenUnits, explains_tokens
from .units import Letter, frame_span, spaced

LOWER_IS_BETTER = {"deletion_auc", "road", "sanity_spearman_abs"}
COLUMNS = ("sanity_spearman_abs", "deletion_auc", "insertion_auc", "road", "phone_share", "word_share",
           "shift_ms", "loo_agreement", "seconds_per_utterance")


def utterance_letters(desc: ModelDescription, x: torch.Tensor, utt: Utterance, frame_rate: float,
                      limit: int = 0) -> list[Letter]:
    """The reference units of an utterance (at most ``limit``, evenly spaced; 0: all): the letters of
    its transcript for a model that spells, the phones of its alignment (`phoneme_units`) for a
    phoneme recognizer."""
    out = desc.output
    with torch.no_grad():
        scores = desc.module(x)[0].double()
    if out.kind == "ctc" and out.spaced:
        letters = phoneme_units(desc, scores, utt, frame_rate)
    else:
        letters = _letter_units(desc, scores, utt, frame_rate)
    return spaced(letters, limit)


def _frames(span, i: int, j: int, frame_rate: float) -> tuple[int, int] | None:
    return frame_span(span[i], span[j], frame_rate) if span else None


def _letter_units(desc: ModelDescription, scores: torch.Tensor, utt: Utterance, frame_rate: float) -> list[Letter]:
    out = desc.output
    text = normalize_text(utt.text).text
    kept = [k for k, c in enumerate(text) if out.encode(c)]  # characters the alphabet spells
    sym, first, last = forced_align_arrays(scores.log_softmax(0).numpy(), [out.encode(text[k])[0] for k in kept],
                                           out.blank)
    spans = letter_spans(utt.words, utt.phones, text) if utt.words and utt.phones else [None] * len(text)
    letters = []
    for k, s, a, b in zip(kept, sym, first, last):
        if text[k] == " ":
            continue
        t = int(a + scores[int(s), a:b + 1].argmax())
        letters.append(Letter(utt.id, int(s), t, _frames(spans[k], 0, 1, frame_rate),
                              _frames(spans[k], 2, 3, frame_rate)))
    return letters


def phoneme_runs(desc: ModelDescription, scores: torch.Tensor, utt: Utterance
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list, list]:
    """A phoneme recognizer's own tokens for an utterance's phones, forced-aligned to its scores:
    each ARPAbet phone as the output's IPA token (`text.ARPABET_TO_IPA`), words separated by the
    output's boundary token, silences left out. Returns the aligned runs (symbol, first, last frame;
    boundaries included), and per phone (its index in the runs, the phone, its word's index) with
    the words. An utterance without phone timings is an error naming it."""
    out = desc.output
    if not utt.phones:
        raise InputError(utt.audio_path or utt.id, f"utterance {utt.id} has no phone timings: a phoneme "
                         "recognizer's units are explained against the corpus' phones")
    index = {tok: i for i, tok in enumerate(out.alphabet) if i != out.blank}
    words = [w for w in (utt.words or []) if w.label != SILENCE]

    def word_of(p) -> int:
        mid = 0.5 * (p.start + p.end)
        return next((k for k, w in enumerate(words) if w.start <= mid < w.end), -1)
    seq, units, prev_word = [], [], None
    for p in utt.phones:
        if p.label == SILENCE:
            continue
        tok = ARPABET_TO_IPA.get(p.label)
        if tok is None or tok not in index:
            raise ValueError(f"phone {p.label!r} of utterance {utt.id} has no token in {desc.name}'s output")
        w = word_of(p)
        if out.boundary in index and prev_word is not None and w != prev_word:
            seq.append(index[out.boundary])
        prev_word = w
        units.append((len(seq), p, w))
        seq.append(index[tok])
    sym, first, last = forced_align_arrays(scores.log_softmax(0).numpy(), seq, out.blank)
    return sym, first, last, units, words


def phoneme_units(desc: ModelDescription, scores: torch.Tensor, utt: Utterance, frame_rate: float) -> list[Letter]:
    """The phones of an utterance's alignment for a phoneme recognizer (`phoneme_runs`), each
    explained at the frame of its span where its score is highest, its phone span the phone's own
    timing, its word span the word's around its middle."""
    sym, first, last, units, words = phoneme_runs(desc, scores, utt)
    letters = []
    for k, p, w in units:
        s, a, b = int(sym[k]), int(first[k]), int(last[k])
        t = int(a + scores[s, a:b + 1].argmax())
        word = (words[w].start, words[w].end) if w >= 0 else None
        letters.append(Letter(utt.id, s, t, _frames((p.start, p.end), 0, 1, frame_rate),
                              _frames(word, 0, 1, frame_rate)))
    return letters


def _options(name: str, x: torch.Tensor, waveform_rate: int | None, cam_layer: str) -> tuple[str, dict]:
    method, opts = NAMED[name]
    if waveform_rate:
        opts = waveform_windows(opts, waveform_rate)
    low, high = x.min(-1, keepdim=True).values, x.max(-1, keepdim=True).values  # z^B bounds per band
    return method, method_record(method).with_context(opts, layer=cam_layer, low=low, high=high)


FRAME_S = 0.010
"""The named methods' windows (occlusion patches, segments) and the faithfulness patches count
10 ms frames of a log-Mel input; on a waveform model each such frame is ``sample_rate / 100``
samples."""


def waveform_windows(opts: dict, sample_rate: int) -> dict:
    """A named method's options for a waveform input ``(1, samples)``: time windows in samples of
    10 ms, the band extent 1."""
    hop = int(round(sample_rate * FRAME_S))
    opts = dict(opts)
    if isinstance(opts.get("window"), (tuple, list)):
        opts["window"] = (1, int(opts["window"][-1]) * hop)
    elif isinstance(opts.get("window"), int):
        opts["window"] = int(opts["window"]) * hop
    return opts


def evaluate_explanations(desc: ModelDescription, utts: list[Utterance], methods: list[str] | None = None,
                          letters_per_utterance: int = 0, steps: int = 10, patch: tuple[int, int] = (8, 4),
                          baseline: str = "mean", sanity: dict | None = None,
                          on_error: Callable[[Utterance, Exception], None] | None = None,
                          progress: Callable[[str], None] | None = None) -> dict:
    """The verdict table as `summary.json` holds it (see the module docstring); ``sanity``: the
    sanity checks' ``summary.json`` (its speech means give the sanity column)."""
    methods = methods or named_methods(has_attention(desc.module))
    unknown = [m for m in methods if m not in NAMED]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(NAMED)}")
    cfg, geo = desc.features, desc.output_geometry
    if not desc.layers[-1].local:  # attention or a global gate: every output frame reads all the input
        geo = None
    tokens = TokenUnits(desc) if explains_tokens(desc) else None
    # Whisper's tokens are explained over the log-Mel; a waveform model's windows count samples
    waveform_rate = cfg.sample_rate if cfg.kind == "waveform" and tokens is None else None
    frame_rate, cam_layer = MEL_RATE if tokens else cfg.frame_rate, default_cam_layer(desc)
    if waveform_rate:  # patches of 10 ms frames, in samples
        patch = (1, patch[-1] * int(round(cfg.sample_rate * FRAME_S)))
    cases = []
    for u in utts:
        try:
            feats = utterance_features(u, cfg)
            x = torch.as_tensor(feats, dtype=next(desc.module.parameters()).dtype).unsqueeze(0)
            if tokens:
                cases.append((u, *tokens(u, x, letters_per_utterance)))
            else:
                cases.append((u, desc.module, x, utterance_letters(desc, x, u, frame_rate, letters_per_utterance)))
        except (InputError, ValueError) as e:
            if on_error is None:
                raise
            on_error(u, e if isinstance(e, InputError) else InputError(u.audio_path or u.id, str(e)))
    rows: dict[str, dict] = {}
    curves: dict[str, list[Curves]] = {}
    chance = {"phone_share": [], "word_share": [], "deletion_auc": []}
    units: dict[str, dict[str, list]] = {}  # per method, per explained unit (NaN where it has no phone/word)
    span = _segment_window(waveform_rate)
    for name in methods:
        if progress:
            progress(f"explanations: {name}")
        got = {k: [] for k in ("deletion_auc", "insertion_auc", "road", "phone_share", "word_share", "shift_ms")}
        per = units[name] = {k: [] for k in ("utterance", "deletion_auc", "insertion_auc", "road", "phone_share",
                                             "word_share", "spans")}
        seconds, curves[name] = [], []
        for case_index, (_u, model, x, letters) in enumerate(cases):
            if not letters:
                continue
            method, opts = _options(name, x, waveform_rate, cam_layer)
            frames = [c.frame for c in letters]
            with torch.no_grad():
                whole = model(x)[0]
            cls = whole.argmax(0)
            for c in letters:
                cls[c.frame] = c.symbol
            t0 = time.perf_counter()
            maps = attribute_frames(model, x, frames, cls, method, max_frames=0, **opts)
            seconds.append(time.perf_counter() - t0)
            for k, (c, m) in enumerate(zip(letters, maps)):
                cv = letter_curves(model, x, geo, c.symbol, c.frame, m, steps, patch, baseline, seed=k, scores=whole)
                curves[name].append(cv)
                got["deletion_auc"].append(cv.auc("deletion"))
                got["insertion_auc"].append(cv.auc("insertion"))
                got["road"].append(cv.auc("road"))
                if name == methods[0]:
                    chance["deletion_auc"].append(cv.auc("random"))
                arr = m.detach().double().numpy()
                centre = c.phone or (c.word if tokens else None)  # a token's word: it has no phone
                if centre:
                    prof = np.abs(arr).reshape(-1, arr.shape[-1]).sum(0)
                    got["shift_ms"].append((int(prof.argmax()) - 0.5 * sum(centre)) * 1000 / frame_rate)
                if c.phone:
                    got["phone_share"].append(share(arr, *c.phone))
                    if name == methods[0]:
                        chance["phone_share"].append(chance_share(_window(geo, c.frame, x.shape[-1]), *c.phone))
                if c.word:
                    got["word_share"].append(share(arr, *c.word))
                    if name == methods[0]:
                        chance["word_share"].append(chance_share(_window(geo, c.frame, x.shape[-1]), *c.word))
                per["utterance"].append(case_index)
                for key in ("deletion_auc", "insertion_auc", "road"):
                    per[key].append(got[key][-1])
                per["phone_share"].append(got["phone_share"][-1] if c.phone else float("nan"))
                per["word_share"].append(got["word_share"][-1] if c.word else float("nan"))
                per["spans"].append(span_sums(arr, _window(geo, c.frame, x.shape[-1]), span))
        row = {k: _mean(v) for k, v in got.items() if k != "shift_ms"}
        row["shift_ms"] = float(np.median(got["shift_ms"])) if got["shift_ms"] else float("nan")
        row["seconds_per_utterance"] = _mean(seconds)
        row["sanity_spearman_abs"] = float((sanity or {}).get("speech", {}).get(name, {}).get("spearman_abs", np.nan))
        row["letters"] = len(got["deletion_auc"])
        rows[name] = row
    if "segments" in units:  # each map's span sums against leave-one-out's span scores (You et al. 2025)
        for name, per in units.items():
            per["loo_agreement"] = [rank_agreement(a, b) for a, b in zip(per["spans"], units["segments"]["spans"])]
            rows[name]["loo_agreement"] = _mean(per["loo_agreement"])
    for per in units.values():
        per.pop("spans")
    return json_ready({"methods": rows, "per_unit": units, "chance": {k: _mean(v) for k, v in chance.items()},
            "best": best(rows), "utterances": len(cases), "letters": sum(len(c[3]) for c in cases),
            "units": "tokens" if tokens else "phonemes" if desc.output.kind == "ctc" and desc.output.spaced else "letters",
            "settings": {"steps": steps, "patch": list(patch), "baseline": baseline,
                         "letters_per_utterance": letters_per_utterance}, "curves": _mean_curves(curves)})



def _segment_window(waveform_rate: int | None) -> int:
    """The `segments` method's fixed span in input positions (frames, or samples of a waveform)."""
    window = int(NAMED["segments"][1]["window"])
    return window * int(round(waveform_rate * FRAME_S)) if waveform_rate else window


def span_sums(relevance: np.ndarray, window: tuple[int, int], span: int) -> np.ndarray:
    """A map's signed relevance summed over every axis but time and then over the `segments` method's
    fixed spans (``span`` positions from 0) that lie in ``window`` (input positions)."""
    prof = relevance.reshape(-1, relevance.shape[-1]).sum(0)
    edges = np.arange(0, prof.size + span, span)
    sums = np.add.reduceat(prof, edges[edges < prof.size])
    first, last = window[0] // span, (window[1] - 1) // span
    return sums[first:last + 1]


def rank_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two span-score vectors (NaN when either is constant or too short)."""
    from scipy.stats import spearmanr

    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b)[0])


def _window(geo, frame: int, n: int) -> tuple[int, int]:
    return (0, n) if geo is None else geo.window(frame, n)


def _mean(values) -> float:
    v = [x for x in values if x == x]
    return float(np.mean(v)) if v else float("nan")


def _mean_curves(curves: dict[str, list[Curves]]) -> dict:
    out = {}
    for name, cs in curves.items():
        if cs:
            out[name] = {"fractions": cs[0].fractions.tolist(),
                         **{k: np.mean([getattr(c, k) for c in cs], 0).tolist()
                            for k in ("deletion", "insertion", "random", "road")}}
    return out


def best(rows: dict[str, dict]) -> dict[str, str]:
    """The best method per column (lowest where lower is better; not for time)."""
    out = {}
    for col in COLUMNS[:-1]:
        vals = {m: r[col] for m, r in rows.items() if r.get(col) is not None and r[col] == r[col]}
        if col == "shift_ms":
            vals = {m: abs(v) for m, v in vals.items()}
        if vals:
            pick = min if col in LOWER_IS_BETTER or col == "shift_ms" else max
            out[col] = pick(vals, key=vals.get)
    return out


def evaluate_image_explanations(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, cam_layer: str,
                                methods: list[str] | None = None, examples: int = 8, steps: int = 10,
                                patch: tuple[int, int] = (2, 2), baseline: str = "mean", sanity: dict | None = None) -> dict:
    """Faithfulness on an image classifier (localization does not apply): the first ``examples``
    correctly classified images ``(N, 1, H, W)``, each explained for its class."""
    methods = methods or named_methods(False)
    with torch.no_grad():
        right = (model(images).argmax(1) == labels).nonzero().flatten()[:examples]
    rows, chance = {}, []
    for name in methods:
        method, opts = NAMED[name]
        if method == "segments":  # time spans: not an image method
            continue
        opts = method_record(method).with_context({**opts, **({"window": (2, 2)} if method == "occlusion" else {})},
                                                  layer=cam_layer, low=images.min(), high=images.max())
        got: dict[str, list] = {"deletion_auc": [], "insertion_auc": [], "road": []}
        seconds = []
        for k, i in enumerate(right.tolist()):
            x, cls = images[i:i + 1], int(labels[i])
            t0 = time.perf_counter()
            rel = attribute(model, x, cls, method, **opts)[0]
            seconds.append(time.perf_counter() - t0)
            cv = image_curves(model, x, cls, rel, steps, patch, baseline, seed=k)
            got["deletion_auc"].append(cv.auc("deletion"))
            got["insertion_auc"].append(cv.auc("insertion"))
            got["road"].append(cv.auc("road"))
            if not rows:
                chance.append(cv.auc("random"))
        rows[name] = {**{k: _mean(v) for k, v in got.items()}, "seconds_per_example": _mean(seconds),
                      "examples": len(right),
                      "sanity_spearman_abs": float((sanity or {}).get("image", {}).get(name, {}).get("spearman_abs",
                                                                                                   np.nan))}
    return json_ready({"methods": rows, "chance": {"deletion_auc": _mean(chance)},
                    "best": {c: (min if c != "insertion_auc" else max)(rows, key=lambda m: rows[m][c])
                             for c in ("deletion_auc", "insertion_auc", "road") if rows},
                    "settings": {"steps": steps, "patch": list(patch), "baseline": baseline}})
