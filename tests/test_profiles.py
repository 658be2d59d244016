"""Global introspection: planted NAPs, clustering, contrastive normalization, frame mapping,
resume after a kill, and Dask = in-process."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from introspeech.asr.checkpoint import save_checkpoint
from introspeech.asr.model import LayerSpec, ModelConfig, Wav2Letter, geometry
from introspeech.corpus.utterance import Segment
from introspeech.errors import InputError
from introspeech.profiles import results as R
from introspeech.profiles.cluster import cluster_quality, tree
from introspeech.profiles.engine import profile_corpus
from introspeech.profiles.labels import GROUPS, centres, map_phones, phone_index
from introspeech.profiles.settings import ProfileSettings
from introspeech.text import LETTERS

from .profiles_toy import FEATURES, PHONES, expected_nap, planted_corpus, planted_model

NAP_ONLY = ProfileSettings(relevance="", letters_from="prediction", nap_window=3, pattern_window=4)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    return planted_model(), planted_corpus(root), root


def test_planted_naps_are_recovered_exactly(toy):
    model, utts, _ = toy
    acc = profile_corpus(model, FEATURES, utts, NAP_ONLY, shard_size=5)
    assert acc.errors == [] and acc.utterances == len(utts)
    for kind, names in (("phonemes", PHONES), ("letters", LETTERS[:len(PHONES)])):
        nap = R.naps(acc, "layer1", kind)
        for j, name in enumerate(names):
            g = GROUPS[kind].index(name)
            if acc.arrays[f"nap/layer1/{kind}/count"][g]:
                np.testing.assert_allclose(nap[g], expected_nap(j), rtol=0, atol=1e-6)
        absent = [i for i, n in enumerate(GROUPS[kind]) if n not in names]
        assert np.isnan(nap[absent]).all()
    # windowed NAPs: the centre column is the planted vector, too
    w = R.naps(acc, "layer1", "phonemes", windowed=True)
    j = PHONES.index("S")
    np.testing.assert_allclose(w[GROUPS["phonemes"].index("S"), 3], expected_nap(j), atol=1e-6)


def test_reference_alignment_gives_the_same_profiles_as_the_prediction(toy):
    model, utts, _ = toy
    a = profile_corpus(model, FEATURES, utts, NAP_ONLY)
    b = profile_corpus(model, FEATURES, utts, ProfileSettings(**{**NAP_ONLY.__dict__, "letters_from": "reference"}))
    for k in a.arrays:
        np.testing.assert_array_equal(a.arrays[k], b.arrays[k], err_msg=k)


def test_clustering_recovers_the_planted_categories(toy):
    model, utts, _ = toy
    acc = profile_corpus(model, FEATURES, utts, NAP_ONLY)
    idx = R.present(acc, "phonemes")
    names = [GROUPS["phonemes"][i] for i in idx]
    planted = R.naps(acc, "layer1", "phonemes")[idx][:, -6:]  # the planted channels only
    q = cluster_quality(R.contrastive(planted), names, "phonemes")
    assert q["ari"] == pytest.approx(1.0) and q["silhouette"] > 0.7
    z, order = tree(R.contrastive(planted))
    assert sorted(order.tolist()) == list(range(len(idx)))
    # a shuffled assignment of categories is not recovered
    rng = np.random.default_rng(1)
    q2 = cluster_quality(R.contrastive(planted[rng.permutation(len(idx))]), names, "phonemes")
    assert q2["silhouette"] < q["silhouette"]


def test_contrastive_naps_sum_to_zero_over_groups():
    rng = np.random.default_rng(0)
    nap = rng.normal(size=(9, 5))
    nap[[2, 6]] = np.nan  # groups never seen
    c = R.contrastive(nap)
    ok = ~np.isnan(c).any(1)
    np.testing.assert_allclose(c[ok].sum(0), 0, atol=1e-12)
    counts = rng.integers(1, 50, 9).astype(float)
    cw = R.contrastive(nap, counts)
    np.testing.assert_allclose((cw[ok] * counts[ok, None]).sum(0), 0, atol=1e-9)


def test_separation_is_one_for_a_group_function_and_zero_for_noise(toy):
    model, utts, _ = toy
    acc = profile_corpus(model, FEATURES, utts, NAP_ONLY)
    assert R.separation(acc, "layer1", "phonemes") == pytest.approx(1.0)
    arrays = dict(acc.arrays)
    # identical means in every group: no variance is explained
    s, n = arrays["nap/layer1/phonemes/sum"], arrays["nap/layer1/phonemes/count"]
    arrays["nap/layer1/phonemes/sum"] = n[:, None] * (s.sum(0) / n.sum())[None]
    flat = R.Accumulated(arrays, acc.layout, acc.settings, acc.features)
    assert R.separation(flat, "layer1", "phonemes") == pytest.approx(0.0, abs=1e-12)


def _empirical_centre(model: Wav2Letter, layer: str, u: int, n_in: int) -> float:
    x = torch.ones(1, model.config.n_mels, n_in, requires_grad=True)
    acts = {}
    h = getattr(model.layers, layer).register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
    model(x)
    h.remove()
    acts["a"][0, :, u].sum().backward()
    hit = torch.nonzero(x.grad[0].abs().sum(0)).flatten()
    return (float(hit.min()) + float(hit.max())) / 2


@pytest.mark.parametrize("layers", [(LayerSpec(4, 5, 2), LayerSpec(4, 3)),
                                    (LayerSpec(4, 4, 2), LayerSpec(4, 2), LayerSpec(3, 3))])
def test_frames_to_phonemes_follow_the_receptive_field_geometry(layers):
    cfg = ModelConfig("geo", 3, layers, batchnorm=False)
    model = Wav2Letter(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    n_in, fr = 60, 100.0
    phones = [Segment(k * 0.05, (k + 1) * 0.05, PHONES[k % len(PHONES)]) for k in range(12)]
    geo = geometry(cfg)
    for layer in cfg.layer_names:
        n = int(model.layers[:cfg.layer_names.index(layer) + 1](torch.ones(1, 3, n_in)).shape[2])
        lab = map_phones(phones, geo[layer], n, fr)
        for u in range(3, n - 3):  # away from the zero-padded edges
            c = _empirical_centre(model, layer, u, n_in)
            assert centres(geo[layer], n)[u] == pytest.approx(c)
            want = next(phone_index(p.label) for p in phones if p.start <= c / fr < p.end)
            assert lab[u] == want


def test_resume_after_interruption_is_bit_identical(toy, tmp_path):
    model, utts, _ = toy
    full = profile_corpus(model, FEATURES, utts, NAP_ONLY, shard_size=3)
    part = profile_corpus(model, FEATURES, utts, NAP_ONLY, state_dir=tmp_path, shard_size=3, max_shards=2)
    assert part.utterances == 6
    rest = profile_corpus(model, FEATURES, utts, NAP_ONLY, state_dir=tmp_path, shard_size=3, resume=True)
    for k in full.arrays:
        np.testing.assert_array_equal(full.arrays[k], rest.arrays[k], err_msg=k)
    with pytest.raises(InputError, match="settings differs"):
        profile_corpus(model, FEATURES, utts, ProfileSettings(relevance=""), state_dir=tmp_path, shard_size=3, resume=True)
    other = copy.deepcopy(model)  # the same architecture, one weight changed: its sums must not be merged in
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 1e-3
    with pytest.raises(InputError, match="model's weights differ"):
        profile_corpus(other, FEATURES, utts, NAP_ONLY, state_dir=tmp_path, shard_size=3, resume=True)
    with pytest.raises(InputError, match="corpus differs"):
        profile_corpus(model, FEATURES, utts[:-1], NAP_ONLY, state_dir=tmp_path, shard_size=3, resume=True)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from introspeech.cli import app; app()", *args]


def test_killed_cli_run_resumes_to_the_same_result(tmp_path):
    model = planted_model()
    utts = planted_corpus(tmp_path / "corpus", n=300, frames=2000)
    ckpt = save_checkpoint(tmp_path / "model", model, FEATURES)
    common = ["naps", "--model", str(ckpt), "--corpus", str(tmp_path / "corpus"), "--save-every", "2",
              "--letters-from", "prediction"]
    subprocess.run(_cli(*common, "--out", str(tmp_path / "whole")), check=True, capture_output=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*common, "--out", str(out)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = out / "state" / "progress.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not progress.is_file():
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGSTOP)  # freeze it at once, then kill it: no clean shutdown
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = json.loads(progress.read_text())["next_shard"]
    assert 1 <= done < len(utts) // 2, "the run must be killed mid-way"
    assert not (out / "profiles.npz").exists()
    subprocess.run(_cli(*common, "--out", str(out), "--resume"), check=True, capture_output=True)
    with np.load(tmp_path / "whole" / "profiles.npz") as a, np.load(out / "profiles.npz") as b:
        assert a.files == b.files
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["layers"]) == {"layer1", "output"}
    assert set(summary["layers"]["layer1"]) >= {"letters", "phonemes"}


def test_dask_engine_equals_in_process(toy):
    pytest.importorskip("dask.distributed")
    model, utts, _ = toy
    settings = ProfileSettings(relevance="gradient", letters_from="reference", nap_window=3, pattern_window=4,
                               gradient_adjusted=True)
    local = profile_corpus(model, FEATURES, utts, settings, shard_size=2)
    dask = profile_corpus(model, FEATURES, utts, settings, shard_size=2, engine="dask", workers=2)
    assert local.arrays.keys() == dask.arrays.keys()
    for k in local.arrays:
        np.testing.assert_array_equal(local.arrays[k], dask.arrays[k], err_msg=k)
    # gradient-adjusted windows of a kernel-1 model are centred where the plain ones are
    np.testing.assert_array_equal(local.arrays["anap/layer1/letters/sum"], local.arrays["wnap/layer1/letters/sum"])


def test_save_load_round_trip_and_summary(toy, tmp_path):
    model, utts, _ = toy
    acc = profile_corpus(model, FEATURES, utts, ProfileSettings(letters_from="prediction", nap_window=3, pattern_window=4))
    R.save(acc, tmp_path, model.config.to_dict())
    back = R.load(tmp_path)
    assert back.settings == acc.settings and back.layout == acc.layout
    for k in acc.arrays:
        np.testing.assert_array_equal(acc.arrays[k], back.arrays[k])
    s = R.summary(back)
    assert s["layers"]["layer1"]["phonemes_eta2"] == pytest.approx(1.0)
    raw, norm = R.patterns(back, "letters", "aligned")
    present = R.present(back, "letters")
    grand = back.arrays["pattern/letters/aligned/sum"].sum(0) / back.arrays["pattern/letters/aligned/count"].sum(0)[:, None]
    np.testing.assert_allclose(norm[present] + grand.T[None], raw[present], atol=1e-12)
    meta = json.loads((tmp_path / "profiles.json").read_text())
    assert meta["axes"]["wnap/*/*/sum"] == ["group", "time", "channel"]


def test_frame_targets_list_every_window_position_by_frame():
    from introspeech.profiles.kernels import frame_targets

    rng = np.random.default_rng(0)
    groups, frames = rng.integers(0, 5, 30), rng.integers(-3, 40, 30)
    ptr, g, k = frame_targets(groups, frames, 4, 37)
    got = sorted((t, int(g[j]), int(k[j])) for t in range(37) for j in range(ptr[t], ptr[t + 1]))
    want = sorted((int(c) - 4 + o, int(gr), o) for gr, c in zip(groups, frames) for o in range(9) if 0 <= c - 4 + o < 37)
    assert got == want


def test_emission_frames_match_the_greedy_path_and_pick_each_runs_best_frame():
    from introspeech.asr.decode import greedy_runs
    from introspeech.profiles.alignment import emission_frames

    rng = np.random.default_rng(1)
    for _ in range(200):
        sc = np.round(rng.normal(size=(29, int(rng.integers(1, 60)))), 1).astype(np.float32)  # ties happen
        symbol, first, last = greedy_runs(sc.argmax(0))
        got_symbol, got_frame = emission_frames(sc)
        assert np.array_equal(got_symbol, symbol)
        for s, a, b, f in zip(symbol, first, last, got_frame):
            run = sc[s, a:b + 1]
            assert a <= f <= b and sc[s, f] == run.max() and f == a + int(np.argmax(run))  # earliest best


def test_forced_alignment_of_raw_scores_equals_that_of_log_probabilities():
    import torch

    from introspeech.asr.decode import forced_align_arrays

    rng = np.random.default_rng(2)
    for _ in range(20):
        sc = torch.from_numpy(rng.normal(size=(29, 80)) * 3)
        a = forced_align_arrays(torch.log_softmax(sc, 0), "the cat sat")
        b = forced_align_arrays(sc.numpy(), "the cat sat")
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_float32_scores_align_as_their_float64_conversion():
    """The compiled alignment reads float32 scores directly; the path is that of float64 scores."""
    from introspeech.asr import decode

    rng = np.random.default_rng(3)
    for trial in range(30):
        sc = (rng.normal(size=(29, 60)) * 3).astype(np.float32)
        text = "the cat sat" if trial % 2 else "a baa"
        a = decode.forced_align_arrays(sc, text)
        b = decode.forced_align_arrays(sc.astype(np.float64), text)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_relevance_alignment_reuses_the_profile_pass_and_gives_the_same_sums(toy, monkeypatch):
    """With relevance on, the profile pass is recorded once and the cone engine explains from that
    recording: one forward pass per utterance instead of two, and the very same sums."""
    from introspeech.attribution import cone
    from introspeech.profiles import collect

    model, utts, _ = toy
    settings = ProfileSettings(relevance="gradient", letters_from="reference", nap_window=3, pattern_window=4)
    calls = []
    real_record = cone.record
    monkeypatch.setattr(cone, "record", lambda *a: calls.append(1) or real_record(*a))
    monkeypatch.setattr(collect, "record", cone.record)
    shared = profile_corpus(model, FEATURES, utts, settings)
    assert len(calls) == len(utts)
    monkeypatch.setattr(collect, "_recorded_forward", lambda *a: None)  # the plain pass, then a recording of its own
    calls.clear()
    separate = profile_corpus(model, FEATURES, utts, settings)
    assert len(calls) == len(utts)
    assert shared.arrays.keys() == separate.arrays.keys() and shared.arrays["shift/hist"].sum() > 0
    for k in shared.arrays:
        np.testing.assert_array_equal(shared.arrays[k], separate.arrays[k], err_msg=k)


def test_a_reused_recording_serves_only_its_own_unchanged_input(toy):
    from introspeech.attribution import cone
    from introspeech.attribution.frames import attribute_frames

    model, _, _ = toy
    model.eval()
    x = torch.randn(1, FEATURES.n_mels, 30)
    y = x.clone() + 1.0
    fresh = attribute_frames(model, y, "all", method="gradient", engine="cone")
    with cone.reusing(model, x, cone.record(model, x)):
        other = attribute_frames(model, y, "all", method="gradient", engine="cone")  # another input: recorded afresh
        x.copy_(y)  # changed in place: the recording no longer describes it
        changed = attribute_frames(model, x, "all", method="gradient", engine="cone")
    torch.testing.assert_close(other, fresh, rtol=0, atol=0)
    torch.testing.assert_close(changed, fresh, rtol=0, atol=0)


def test_compiled_frame_labels_equal_their_definitions():
    """`map_letters` / `map_phone_table` (compiled loops) against the definitions written with
    `layer_frame` and `centres`: nearest output-frame centre, and the phone containing the centre."""
    from introspeech.graph import FrameGeometry
    from introspeech.profiles.collect import run_labels
    from introspeech.profiles.labels import layer_frame, map_letters, map_phone_table

    rng = np.random.default_rng(1)
    for trial in range(300):
        out_geo = FrameGeometry(int(rng.integers(1, 130)), int(rng.choice([1, 2, 4])), int(rng.integers(-10, 10)))
        geo = FrameGeometry(int(rng.integers(1, 130)), int(rng.choice([1, 2, 4])), int(rng.integers(-10, 10)))
        out_labels = rng.integers(-1, 28, int(rng.integers(0, 80)))
        n = int(rng.integers(0, 200))
        t = layer_frame(out_geo, centres(geo, n))
        ok = (t >= 0) & (t < out_labels.size)
        want = np.full(n, -1)
        want[ok] = out_labels[t[ok]]
        np.testing.assert_array_equal(map_letters(out_labels, out_geo, geo, n), want)
        k = int(rng.integers(0, 30))
        bounds = np.sort(rng.uniform(0, 5, 2 * k)).reshape(k, 2)
        if trial % 3 == 0 and k:
            bounds[:, 1] = np.r_[bounds[1:, 0], bounds[-1, 0] + 0.1]  # contiguous phones
        table = (bounds[:, 0].copy(), bounds[:, 1].copy(), rng.integers(-1, 40, k))
        rate = float(rng.choice([50.0, 100.0, 62.5]))
        secs = centres(geo, n) / rate
        j = np.searchsorted(table[0], secs, side="right") - 1
        inside = (j >= 0) & (secs < table[1][np.clip(j, 0, None)]) if k else np.zeros(n, bool)
        want = np.full(n, -1)
        want[inside] = table[2][j[inside]]
        np.testing.assert_array_equal(map_phone_table(table, geo, n, rate), want)
    # runs to frame labels: every frame of a run, nothing else
    lab = run_labels(np.array([3, 5]), np.array([1, 4]), np.array([2, 6]), 9)
    np.testing.assert_array_equal(lab, [-1, 3, 3, -1, 5, 5, 5, -1, -1])
