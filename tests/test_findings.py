"""`introspeech findings`: every fast statistic equals its plain computation on the same resamples,
the verdicts follow the intervals, and a resumed run reads back what it wrote."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from introspeech.findings.claims import verdicts
from introspeech.findings.frames import eta2_values, peak, silhouette_values
from introspeech.findings.patterns import PatternSums, statistics
from introspeech.profiles.labels import PHONEME_GROUPS
from introspeech.representations.run import naps_silhouette
from introspeech.representations.uncertainty import (
    bootstrap_interval,
    bootstrap_weights,
    mean_interval,
    permutation_p,
    shifted_interval,
)
from introspeech.text import PLACE, VOICING


@pytest.fixture(scope="module")
def planted():
    """Frames of 20 utterances whose activations code the phone's manner plus noise."""
    rng = np.random.default_rng(3)
    phones = [PHONEME_GROUPS.index(p) for p in ("AA", "IY", "UW", "P", "T", "K", "S", "Z", "F", "M", "N", "L")]
    n_utt, per = 20, 30
    groups = np.repeat(np.arange(n_utt), per)
    labels = rng.choice(phones, size=n_utt * per)
    codes = rng.normal(size=(len(PHONEME_GROUPS), 6))
    x = codes[labels] + 0.3 * rng.normal(size=(labels.size, 6))
    return x, labels, groups


def plain_boot(score, x, labels, groups, samples: int, seed: int) -> list[float]:
    """Resampled scores, utterances drawn as `bootstrap_interval` draws them, written out."""
    rng = np.random.default_rng(seed)
    ids = np.unique(groups)
    out = []
    for _ in range(samples):
        pick = rng.choice(ids, size=len(ids), replace=True)
        idx = np.concatenate([np.flatnonzero(groups == g) for g in pick])
        out.append(score(x[idx], labels[idx], np.repeat(np.arange(len(pick)), [np.sum(groups == g) for g in pick])))
    return out


def test_the_shifted_interval_is_the_percentile_interval_moved_by_the_resamples_bias():
    boot = np.random.default_rng(0).normal(1.0, 0.1, 500)
    lo, hi = shifted_interval(boot, 0.7)
    assert lo == pytest.approx(np.quantile(boot, 0.025) - (boot.mean() - 0.7))
    assert hi == pytest.approx(np.quantile(boot, 0.975) - (boot.mean() - 0.7)) and lo < 0.7 < hi
    assert shifted_interval(boot, boot.mean()) == pytest.approx((np.quantile(boot, 0.025), np.quantile(boot, 0.975)))


def plain_eta2(x: np.ndarray, labels: np.ndarray) -> float:
    """Between-group / total sum of squares, written out over frames."""
    grand = x.mean(0)
    sst = ((x - grand) ** 2).sum()
    ssb = sum((labels == g).sum() * ((x[labels == g].mean(0) - grand) ** 2).sum() for g in np.unique(labels))
    return float(ssb / sst)


def test_eta2_its_interval_and_p_equal_the_plain_computations(planted):
    x, labels, groups = planted
    got = eta2_values(x, labels, groups, bootstrap=30, permutations=19, seed=5)
    assert got["value"] == pytest.approx(plain_eta2(x, labels), rel=1e-9)
    score = lambda xx, ll, gg: plain_eta2(xx, ll)  # noqa: E731
    boot = plain_boot(score, x, labels, groups, 30, 5)
    assert list(bootstrap_interval(score, x, labels, groups, 30, seed=5)) == pytest.approx(
        list(np.quantile(boot, [0.025, 0.975])))  # the helper draws what the library draws
    assert got["ci"] == pytest.approx(list(shifted_interval(boot, got["value"])), rel=1e-9)
    assert got["ci"][0] < got["value"] < got["ci"][1]
    assert got["p"] == pytest.approx(permutation_p(score, x, labels, groups, 19, seed=5, observed=got["value"]))
    assert got["p"] == pytest.approx(1 / 20)  # the planted phones explain far more than any permutation


def test_silhouettes_by_place_and_voicing_leave_vowels_out_and_match_the_plain_scores(planted):
    x, labels, groups = planted
    got = silhouette_values(x, labels, groups, bootstrap=20, permutations=9, seed=1)
    classes, inverse = np.unique(labels, return_inverse=True)
    sums = np.stack([x[inverse == i].sum(0) for i in range(len(classes))])
    counts = np.bincount(inverse).astype(float)
    assert got["manner"]["value"] == pytest.approx(naps_silhouette(sums, counts, classes))
    consonants = np.array([PHONEME_GROUPS[c] in PLACE for c in classes])
    assert consonants.sum() < len(classes)  # the vowels are not in place's groups
    assert got["place"]["value"] == pytest.approx(naps_silhouette(sums[consonants], counts[consonants],
                                                                  classes[consonants], category=PLACE))
    assert got["voicing"]["value"] == pytest.approx(naps_silhouette(sums, counts, classes, category=VOICING))
    score = lambda xx, ll, gg: naps_silhouette(*_sums(xx, ll), category=PLACE)  # noqa: E731
    want = shifted_interval(plain_boot(score, x, labels, groups, 20, 1), got["place"]["value"])
    assert got["place"]["ci"] == pytest.approx(list(want))
    assert got["place"]["p"] == pytest.approx(permutation_p(score, x, labels, groups, 9, seed=1,
                                                            observed=got["place"]["value"]))


def _sums(x, labels):
    classes, inverse = np.unique(labels, return_inverse=True)
    return (np.stack([x[inverse == i].sum(0) for i in range(len(classes))]),
            np.bincount(inverse).astype(float), classes)


def test_the_peak_interval_follows_each_resample_s_own_peak():
    per_layer = {"a": {"value": 0.1, "boot": np.array([0.1, 0.5, 0.1, np.nan])},
                 "b": {"value": 0.3, "boot": np.array([0.3, 0.2, 0.4, 0.2])},
                 "c": {"value": np.nan, "boot": np.full(4, np.nan)}}
    got = peak(per_layer, {"a": 0.0, "b": 0.5, "c": 1.0})
    assert got["layer"] == "b" and got["depth"] == 0.5
    assert got["depth_ci"] == pytest.approx([np.quantile([0.5, 0, 0.5, 0.5], 0.025),
                                             np.quantile([0.5, 0, 0.5, 0.5], 0.975)])


def test_pattern_sums_fold_each_utterance_into_every_resample_by_its_multiplicity():
    rng = np.random.default_rng(0)
    n_utt, half, groups = 6, 2, 3
    w = bootstrap_weights(np.arange(n_utt), 5, seed=2)
    sums = PatternSums(["nominal"], groups, 2 * half + 1, 4, w)
    per_utt = []
    for u in range(n_utt):
        rows = rng.normal(size=(30, 4)).astype(np.float32)
        g, c = rng.integers(0, groups, 4), rng.integers(0, 30, 4)
        sums.add(u, "nominal", rows, g, c)
        alone = PatternSums(["nominal"], groups, 2 * half + 1, 4, w[:, :1] * 0)
        alone.add(0, "nominal", rows, g, c)
        per_utt.append((alone.sum["nominal"], alone.count["nominal"]))
        # a window written out: the rows around each centre, cut at the edges
        for k in range(4):
            lo = c[k] - half
            for j in range(2 * half + 1):
                if 0 <= lo + j < 30:
                    assert alone.count["nominal"][g[k], j] >= 1
    for b in range(5):
        want = sum(w[b, u] * per_utt[u][0] for u in range(n_utt))
        np.testing.assert_allclose(sums.boot_sum["nominal"][b], want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(sums.boot_count["nominal"][b], sum(w[b, u] * per_utt[u][1] for u in range(n_utt)))
    np.testing.assert_allclose(sums.sum["nominal"], sum(s for s, _ in per_utt))


def test_pattern_statistics_follow_their_definitions():
    rng = np.random.default_rng(1)
    total, count = rng.normal(size=(4, 3, 2)), rng.integers(1, 5, size=(4, 3)).astype(float)
    raw = total / count[..., None]
    grand = total.sum(0) / count.sum(0)[..., None]
    norm = (raw - grand)[[0, 2, 3]].reshape(3, -1)
    got = statistics(total, count, np.array([0, 2, 3]))
    cos = lambda m: np.mean([m[i] @ m[j] / np.linalg.norm(m[i]) / np.linalg.norm(m[j])  # noqa: E731
                             for i in range(3) for j in range(i + 1, 3)])
    assert got["normalized_cosine"] == pytest.approx(cos(norm))
    assert got["raw_cosine"] == pytest.approx(cos(raw[[0, 2, 3]].reshape(3, -1)))
    assert got["rms"] == pytest.approx(np.sqrt(np.mean(norm ** 2)))
    assert np.isnan(statistics(total, count, np.array([1]))["rms"])  # one group: nothing to compare


def test_mean_interval_resamples_utterances_not_units():
    values = [1.0, 3.0, np.nan, 5.0, 7.0, 2.0]
    owners = [0, 0, 1, 1, 2, 3]
    got = mean_interval(values, owners, bootstrap=40, seed=3)
    assert got["value"] == pytest.approx(np.mean([1, 3, 5, 7, 2]))
    v, o = np.array([1.0, 3.0, 5.0, 7.0, 2.0]), np.array([0, 0, 1, 2, 3])
    plain = plain_boot(lambda xx, ll, gg: float(ll.mean()), v[:, None], v, o, 40, 3)
    assert got["ci"] == pytest.approx(list(np.quantile(plain, [0.025, 0.975])))


def test_verdicts_follow_the_intervals():
    def frames(last_ci):
        f1 = {"l1": {"value": 0.1, "ci": [0.05, 0.15], "p": 0.01}, "l2": {"value": 0.4, "ci": last_ci, "p": 0.01}}
        empty = {"layer": None}
        return {"frames": {"layers": ["l1", "l2"], "units": "letters", "F1": f1, "depth": {"l1": 0.0, "l2": 1.0},
                           "F2": {"peaks": {"manner": empty}, "layers": {}},
                           "F7": {n: {"probe": {"value": v, "ci": [v, v], "p": 0.1}, "selectivity": 0.0,
                                      "cka": {"value": v, "ci": [v, v], "p": 0.1}} for n, v in (("l1", 0.2), ("l2", 0.3))}}}
    v = verdicts({"m": {"real": frames([0.3, 0.5]), "synthetic": frames([0.1, 0.5])}})
    assert v["F1"]["results"]["m"]["real"]["holds"] is True
    assert v["F1"]["results"]["m"]["synthetic"]["holds"] is False  # the last layer's interval overlaps the first's
    assert v["F2"]["results"]["m"]["real"] is None and v["F3"]["results"]["m"]["real"] is None
    assert v["F7"]["results"]["m"]["real"]["holds"] is False  # the probe peaks at the last layer


def test_findings_resume_reads_back_every_stage_and_new_settings_recompute(tmp_path):
    from introspeech.corpus.load import load_corpus
    from introspeech.findings.run import FindingsSettings, run_findings
    from introspeech.models.loading import load_description

    utts = load_corpus(None)["test"][:6]
    s = FindingsSettings(per_utterance=8, bootstrap=10, permutations=9)
    calls = []

    def load():
        calls.append(1)
        return load_description(None)
    first = run_findings({"builtin": load}, {"synthetic": utts}, tmp_path, s, ("frames", "patterns"))
    assert calls == [1]
    stage = tmp_path / "stages" / "builtin" / "synthetic" / "frames.json"
    stamp = stage.stat().st_mtime_ns
    again = run_findings({"builtin": load}, {"synthetic": utts}, tmp_path, s, ("frames", "patterns"), resume=True)
    assert stage.stat().st_mtime_ns == stamp  # nothing recomputed
    assert again["models"] == first["models"] and again["verdicts"] == first["verdicts"]
    fresh = run_findings({"builtin": load}, {"synthetic": utts}, tmp_path, s, ("frames", "patterns"))
    assert fresh["models"] == first["models"]  # seeded: a fresh run gives the same numbers
    other = FindingsSettings(per_utterance=6, bootstrap=10, permutations=9)
    run_findings({"builtin": load}, {"synthetic": utts}, tmp_path, other, ("frames",), resume=True)
    assert stage.stat().st_mtime_ns != stamp  # other settings: that stage ran again
    patterns = tmp_path / "stages" / "builtin" / "synthetic" / "patterns.json"
    stamp = patterns.stat().st_mtime_ns
    run_findings({"builtin": load}, {"synthetic": utts[:5]}, tmp_path, s, ("patterns",), resume=True)
    assert patterns.stat().st_mtime_ns != stamp  # other utterances under the same corpus name: ran again
    stamp = patterns.stat().st_mtime_ns
    changed = load_description(None)  # a replaced checkpoint under the same name: ran again, not read back
    with torch.no_grad():
        next(changed.module.parameters()).view(-1)[0] += 1e-3
    run_findings({"builtin": changed}, {"synthetic": utts[:5]}, tmp_path, s, ("patterns",), resume=True)
    assert patterns.stat().st_mtime_ns != stamp
    stamp = patterns.stat().st_mtime_ns
    run_findings({"builtin": changed}, {"synthetic": utts[:5]}, tmp_path, s, ("patterns",), resume=True)
    assert patterns.stat().st_mtime_ns == stamp
    fr = first["models"]["builtin"]["synthetic"]["frames"]
    assert fr["units"] == "letters" and fr["layers"][-1] == "output"
    for row in fr["F1"].values():
        assert row["ci"][0] <= row["ci"][1] and 0 < row["value"] < 1 and 0 < row["p"] <= 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["verdicts"]) == {"F1", "F2", "F3", "F4", "F5", "F6", "F7"}
    with pytest.raises(ValueError, match="unknown stage"):
        run_findings({"builtin": load}, {"synthetic": utts}, tmp_path, s, ("probes",))


def test_the_findings_command_names_a_missing_real_corpus(tmp_path):
    from typer.testing import CliRunner

    from introspeech.cli import app

    res = CliRunner().invoke(app, ["findings", "--out", str(tmp_path / "f"), "--corpus", str(tmp_path / "none")])
    assert res.exit_code != 0 and "introspeech realspeech" in res.output and "none" in res.output
    res = CliRunner().invoke(app, ["findings", "--out", str(tmp_path / "f"), "--corpora", "synthetic",
                                   "--stages", "probes"])
    assert res.exit_code == 2 and "unknown stage" in res.output


def test_cp_lrp_is_named_only_where_attention_is_and_differs_from_attnlrp_there():
    import torch
    from torch import nn

    from introspeech.attribution import Scores, attribute
    from introspeech.attribution.definitions import NAMED, has_attention, named_methods

    from .attention_nets import WhisperishEncoder, reference_any

    conv = nn.Sequential(nn.Conv1d(6, 4, 3), nn.ReLU(), nn.Conv1d(4, 3, 1))
    model = Scores(WhisperishEncoder().double().eval(), time_axis=1)
    assert has_attention(model) and not has_attention(conv)
    assert "cp_lrp" in named_methods(True) and "cp_lrp" not in named_methods(False)
    x = torch.randn(1, 6, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model(x)
    sel = torch.zeros_like(out)
    sel[0, 2, 3] = 1.0  # class 2 at frame 3
    got = {m: attribute(model, x, sel * out, NAMED[m][0], **NAMED[m][1], epsilon=1e-12)
           for m in ("lrp_epsilon", "cp_lrp")}
    torch.testing.assert_close(got["cp_lrp"], reference_any(model, x, sel, cp=True), atol=1e-10, rtol=1e-7)
    torch.testing.assert_close(got["lrp_epsilon"], reference_any(model, x, sel), atol=1e-10, rtol=1e-7)
    assert not torch.allclose(got["cp_lrp"], got["lrp_epsilon"], atol=1e-6)


def test_fully_randomized_is_the_cascade_s_last_step():
    import torch

    from introspeech.asr.checkpoint import load_model
    from introspeech.sanity.randomize import cascading, fully_randomized

    model, _, _ = load_model()
    *_, (_, last) = cascading(model, seed=3)
    full = fully_randomized(model, seed=3)
    for (name, a), (_, b) in zip(last.state_dict().items(), full.state_dict().items()):
        assert torch.equal(a, b), name
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), full.state_dict().values()))


def test_the_probe_p_tests_held_out_labels_against_the_fitted_probe(planted):
    from introspeech.findings.frames import probe_values

    x, labels, groups = planted
    got = probe_values(x, labels, groups, bootstrap=20, permutations=19, seed=0)
    assert got["probe"]["value"] > 0.9 and got["probe"]["p"] == pytest.approx(1 / 20)
    noise = np.random.default_rng(9).normal(size=x.shape)
    chance = probe_values(noise, labels, groups, bootstrap=20, permutations=19, seed=0)
    assert chance["probe"]["p"] > 0.05 and chance["probe"]["ci"][0] <= chance["majority"] + 0.1
    assert got["selectivity"] == pytest.approx(got["probe"]["value"] - got["control"])


def test_f1_scores_own_units_where_the_model_has_them_and_phones_without_silence_elsewhere():
    from introspeech.findings.frames import unit_labels
    from introspeech.representations.sampling import Frames
    from introspeech.text import SILENCE

    sil, aa = PHONEME_GROUPS.index(SILENCE), PHONEME_GROUPS.index("AA")
    frames = Frames({"l": np.zeros((4, 2))}, np.array([sil, aa, aa, sil]), np.array([-1, 3, 4, 5]), np.arange(4))
    keep, units, owners, kind = unit_labels(frames, "letters")
    assert kind == "letters" and units.tolist() == [3, 4, 5] and owners.tolist() == [1, 2, 3]
    assert unit_labels(frames, "tokens")[3] == "tokens" and unit_labels(frames, "tokens")[1].tolist() == [3, 4, 5]
    keep, units, owners, kind = unit_labels(frames, "phonemes")
    assert kind == "phonemes" and units.tolist() == [aa, aa] and keep.tolist() == [False, True, True, False]


def test_findings_patterns_equal_those_of_the_profile_engine():
    """F3/F4's own accumulation (bootstrap folding, pooled evidence) against `introspeech patterns`' sums."""
    from introspeech.corpus.load import load_corpus
    from introspeech.findings.patterns import pattern_measures
    from introspeech.findings.run import symbol_groups
    from introspeech.models.loading import load_description
    from introspeech.profiles.engine import profile_corpus
    from introspeech.profiles.settings import Layout, ProfileSettings

    desc = load_description(None)
    utts = load_corpus(None)["test"][:5]
    group_of, n_groups = symbol_groups(desc)
    assert n_groups == len(Layout.of(desc).letters)
    got = pattern_measures(desc, utts, ["gradient"], group_of, n_groups, half=10, bootstrap=4, min_count=3)
    acc = profile_corpus(desc, desc.features, utts, ProfileSettings(groups=("letters",), pattern_window=10,
                                                                     nap_window=0, relevance="gradient"))
    a = acc.arrays
    keep = np.flatnonzero(a["pattern/letters/nominal/count"][:, 10] >= 3)
    assert len(keep) >= 2 and got["groups"] == len(keep)
    nominal = statistics(a["pattern/letters/nominal/sum"], a["pattern/letters/nominal/count"], keep)
    aligned = statistics(a["pattern/letters/aligned/sum"], a["pattern/letters/aligned/count"], keep)
    assert got["F3"]["raw_cosine"]["value"] == pytest.approx(nominal["raw_cosine"], rel=1e-6)
    assert got["F3"]["normalized_cosine"]["value"] == pytest.approx(nominal["normalized_cosine"], rel=1e-6)
    assert got["F4"]["gradient"]["value"] == pytest.approx(aligned["rms"] / nominal["rms"], rel=1e-6)
