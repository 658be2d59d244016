"""Probes, CKA and their uncertainty on planted activations: a layer that is a function of the phone,
and a layer of noise."""

from __future__ import annotations

import numpy as np
import pytest

from introspeech.representations.measures import (
    control_labels,
    linear_cka,
    majority_rate,
    one_hot,
    probe_accuracy,
    rbf_cka,
    split_by_utterance,
)
from introspeech.representations.run import cka_score, probe_score
from introspeech.representations.uncertainty import bootstrap_interval, cka_bootstrap_interval, permutation_p


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(0)
    n_utt, per = 30, 40
    groups = np.repeat(np.arange(n_utt), per)
    labels = rng.choice(8, size=n_utt * per, p=[0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05])
    codes = rng.normal(size=(8, 12))
    phone_layer = codes[labels] + 0.05 * rng.normal(size=(labels.size, 12))
    noise_layer = rng.normal(size=(labels.size, 12))
    return phone_layer, noise_layer, labels, groups


def test_probes_reach_one_on_the_planted_layer_and_chance_on_noise(planted):
    phone_layer, noise_layer, labels, groups = planted
    train, test = split_by_utterance(groups)
    assert not set(groups[train]) & set(groups[test])
    assert probe_accuracy(phone_layer, labels, train, test) > 0.98
    chance = majority_rate(labels, train, test)
    assert abs(probe_accuracy(noise_layer, labels, train, test) - chance) < 0.08
    control = control_labels(labels)
    assert all(len(set(control[labels == v])) == 1 for v in np.unique(labels))  # one class per type
    assert abs(probe_accuracy(noise_layer, control, train, test) - majority_rate(control, train, test)) < 0.08


def test_cka_of_a_layer_with_itself_is_one_and_invariant_to_rotation_and_scale(planted):
    phone_layer, noise_layer, labels, _ = planted
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    assert linear_cka(phone_layer, phone_layer) == pytest.approx(1.0)
    assert linear_cka(phone_layer, 3.7 * phone_layer @ q) == pytest.approx(1.0)
    assert linear_cka(phone_layer, noise_layer) < 0.1
    assert linear_cka(phone_layer, one_hot(labels)) > 5 * linear_cka(noise_layer, one_hot(labels))
    sub = slice(0, 300)
    assert rbf_cka(phone_layer[sub], phone_layer[sub]) == pytest.approx(1.0)
    assert rbf_cka(phone_layer[sub], 2.0 * phone_layer[sub] @ q) == pytest.approx(1.0)


def test_bootstrap_covers_the_planted_value_and_permutations_separate_signal_from_noise(planted):
    phone_layer, noise_layer, labels, groups = planted
    lo, hi = bootstrap_interval(cka_score, phone_layer, labels, groups, samples=100)
    assert lo <= cka_score(phone_layer, labels, groups) <= hi and hi - lo < 0.2
    fast = cka_bootstrap_interval(phone_layer, labels, groups, samples=100)  # the same resamples, from sums
    assert fast == pytest.approx((lo, hi), rel=1e-9)
    assert permutation_p(cka_score, phone_layer, labels, groups, 49) == pytest.approx(1 / 50)
    assert permutation_p(cka_score, noise_layer, labels, groups, 49) > 0.05
    probe = probe_score()
    assert permutation_p(probe, phone_layer, labels, groups, 9) == pytest.approx(1 / 10)


def test_the_topographic_layout_puts_similar_channels_next_to_each_other():
    from introspeech.representations.topography import layout, neighbour_p, neighbour_score, smooth_map

    rng = np.random.default_rng(2)
    prototypes = rng.normal(size=(3, 10))  # three kinds of channel profile over 10 phonemes
    kinds = np.repeat(np.arange(3), 8)
    profiles = (prototypes[kinds] + 0.1 * rng.normal(size=(24, 10))).T  # (phonemes, channels)
    coords = layout(profiles)
    d = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert np.mean(kinds[d.argmin(1)] == kinds) == 1.0  # every channel's nearest neighbour is of its kind
    assert neighbour_score(profiles, coords) > 0.5
    assert neighbour_p(profiles, coords, permutations=49) == pytest.approx(1 / 50)
    img = smooth_map(coords, profiles[0])
    assert img.shape == (32, 32) and np.isfinite(img).all()


def test_the_representations_command_writes_summary_and_report(tmp_path):
    import json

    from typer.testing import CliRunner

    from introspeech.cli import app

    res = CliRunner().invoke(app, ["representations", "--out", str(tmp_path / "r"), "--per-utterance", "4",
                                   "--bootstrap", "5", "--permutations", "5", "--probe-permutations", "1",
                                   "--no-random-network"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    row = summary["layers"]["layer5"]
    for key in ("probe_phones", "control_phones", "selectivity_phones", "probe_letters", "cka_phones",
                "nap_silhouette", "ci", "p", "topography_score"):
        assert key in row, key
    assert 0 <= row["probe_phones"] <= 1 and row["random_init_probe_phones"] is None and summary["findings"]
    html = (tmp_path / "r" / "index.html").read_text()
    assert "Where phones live" in html and "topography.png" in html


def test_fast_paths_equal_their_plain_definitions(planted):
    """Every fast path of the analysis against the plain computation it replaces."""
    from scipy.spatial.distance import squareform
    from sklearn.metrics import silhouette_score

    from introspeech.representations.measures import cka_matrix
    from introspeech.representations.run import nap_silhouette, naps_silhouette, silhouette
    from introspeech.representations.topography import neighbour_p, neighbour_score
    from introspeech.representations.uncertainty import nap_bootstrap_interval

    phone_layer, noise_layer, labels, groups = planted
    views = [phone_layer, noise_layer, phone_layer[:, :5], one_hot(labels)]
    fast = cka_matrix(views)
    assert np.asarray(fast) == pytest.approx(np.array([[linear_cka(a, b) for b in views] for a in views]), rel=1e-12)
    rng = np.random.default_rng(3)
    for n_items, n_clusters in ((12, 3), (9, 5), (20, 2)):
        pts = rng.normal(size=(n_items, 4))
        d = squareform(np.linalg.norm(pts[:, None] - pts[None], axis=-1), checks=False)
        lab = list(rng.integers(0, n_clusters, n_items))
        lab[0] = n_clusters  # a singleton cluster
        assert silhouette(squareform(d), lab) == pytest.approx(silhouette_score(squareform(d), lab,
                                                                                metric="precomputed"), abs=1e-12)
    # NAP silhouette of phone classes (planted labels stand for phone groups with manner categories)
    from introspeech.profiles.labels import PHONEME_GROUPS
    from introspeech.text import CATEGORY

    by_manner: dict = {}
    for i, g in enumerate(PHONEME_GROUPS):
        if g in CATEGORY:
            by_manner.setdefault(CATEGORY[g], []).append(i)
    phones = [i for members in list(by_manner.values())[:3] for i in members[:3]][:8]  # three manners
    ph = np.asarray(phones)[labels]
    slow = bootstrap_interval(nap_silhouette, phone_layer, ph, groups, samples=30)
    quick = nap_bootstrap_interval(naps_silhouette, phone_layer, ph, groups, samples=30)
    assert np.isfinite(slow).all() and quick == pytest.approx(slow, rel=1e-9)
    # the permutation test of the layout against rescoring each permuted layout
    profiles = rng.normal(size=(6, 20))
    coords = rng.normal(size=(20, 2))
    gen = np.random.default_rng(0)
    obs = neighbour_score(profiles, coords)
    reached = sum(neighbour_score(profiles, coords[gen.permutation(20)]) >= obs for _ in range(39))
    assert neighbour_p(profiles, coords, permutations=39) == pytest.approx((1 + reached) / 40)


def test_a_compared_run_is_drawn_beside_and_a_missing_one_is_named(tmp_path):
    import json

    from typer.testing import CliRunner

    from introspeech.cli import app

    args = ["representations", "--per-utterance", "3", "--bootstrap", "3", "--permutations", "3",
            "--probe-permutations", "1", "--no-random-network"]
    first = CliRunner().invoke(app, args + ["--out", str(tmp_path / "a"), "--split", "heldout"])
    assert first.exit_code == 0, first.output
    res = CliRunner().invoke(app, args + ["--out", str(tmp_path / "b"), "--compare", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "b" / "index.html").read_text()
    other = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert other["findings"][0] in html  # the compared run's findings are stated beside this run's
    bad = CliRunner().invoke(app, args + ["--out", str(tmp_path / "c"), "--compare", str(tmp_path / "none")])
    assert bad.exit_code == 2 and "summary.json" in bad.output


def test_an_utterance_without_phones_is_skipped_by_the_random_baseline_too():
    import dataclasses

    from introspeech.asr.checkpoint import load_model
    from introspeech.corpus.load import load_corpus
    from introspeech.models.description import describe
    from introspeech.representations.run import analyse

    model, cfg, _ = load_model()
    utts = load_corpus()["test"][:5]
    utts[2] = dataclasses.replace(utts[2], phones=None)
    errors = []
    summary = analyse(describe(model, features=cfg), utts, per_utterance=4, bootstrap=2, permutations=2,
                      probe_permutations=1, random_baseline=True, on_error=lambda u, e: errors.append(u.id),
                      layers=["layer1", "output"])
    assert errors == [utts[2].id] and summary["utterances"] == 4
    assert list(summary["layers"]) == ["layer1", "output"]


def test_batched_permutations_equal_permutation_p(planted):
    from introspeech.profiles.labels import PHONEME_GROUPS
    from introspeech.representations.run import nap_silhouette, permutation_values
    from introspeech.text import CATEGORY

    phone_layer, noise_layer, labels, groups = planted
    phones = np.asarray([i for i, g in enumerate(PHONEME_GROUPS) if g in CATEGORY])[::3][:8]
    ph = phones[labels]
    for x in (phone_layer, noise_layer):
        obs = {"cka_phones": cka_score(x, ph, groups), "nap_silhouette": nap_silhouette(x, ph, groups)}
        fast = permutation_values(x, ph, 29, 3, obs)
        assert fast["cka_phones"] == permutation_p(cka_score, x, ph, groups, 29, 3, obs["cka_phones"])
        assert fast["nap_silhouette"] == permutation_p(nap_silhouette, x, ph, groups, 29, 3, obs["nap_silhouette"])
