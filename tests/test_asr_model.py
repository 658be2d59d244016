import pickle

import pytest
import torch

from introspeech.asr.checkpoint import load_model, save_checkpoint
from introspeech.asr.decode import forced_align, greedy_decode, greedy_path
from introspeech.asr.model import PRESETS, LayerSpec, ModelConfig, build_model, geometry, output_length
from introspeech.audio import PRESETS as FEATURES
from introspeech.errors import InputError
from introspeech.text import BLANK, encode


def _empirical_dependence(model, n_mels, length, frame):
    """Output frames (of the final layer) that change when one input frame is perturbed."""
    x = torch.randn(1, n_mels, length, dtype=torch.float64)
    base = model(x)
    x2 = x.clone()
    x2[0, :, frame] += 10.0
    diff = (model(x2) - base).abs().amax(dim=1)[0]
    return set(torch.nonzero(diff > 1e-9).flatten().tolist())


@pytest.mark.parametrize("preset", ["tiny", "default", "paper"])
def test_receptive_field_matches_perturbation(preset):
    cfg = PRESETS[preset]
    if preset == "paper":  # same layer geometry, fewer channels: the measurement is about geometry
        cfg = ModelConfig("paper", 8, tuple(LayerSpec(4, s.kernel, s.stride, s.dilation) for s in cfg.layers))
    torch.manual_seed(0)
    model = build_model(cfg).double().eval()
    with torch.no_grad():  # make every unit active-ish so perturbations propagate
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.bias.fill_(5.0)
    g = geometry(cfg)["output"]
    length = g.rf * 2 + 7
    n_out = output_length(cfg, length)
    assert n_out == model(torch.zeros(1, cfg.n_mels, length, dtype=torch.float64)).shape[2]
    for frame in (0, 1, length // 2, length - 1):
        expected = {t for t in range(n_out) if g.window(t)[0] <= frame < g.window(t)[1]}
        with torch.no_grad():
            got = _empirical_dependence(model, cfg.n_mels, length, frame)
        assert got == expected, (preset, frame)


def test_geometry_of_default_and_paper():
    g = geometry(PRESETS["default"])
    assert g["layer1"] == g["layer1"].__class__(11, 2, -5)
    assert g["output"].stride == 2 and g["output"].rf == 11 + 2 * (7 * 6 + 14)
    p = geometry(PRESETS["paper"])["output"]
    assert p.stride == 2 and p.rf == 48 + 2 * (7 * 6 + 31) == 194  # ≈1.55 s at 8 ms, as in REFERENCES §1


def test_default_preset_size_and_layer_names():
    model = build_model("default")
    n = sum(p.numel() for p in model.parameters())
    assert 2.2e6 < n < 2.6e6
    names = dict(model.named_modules())
    assert "layers.layer9.relu" in names and "layers.output" in names
    assert output_length(model.config, torch.tensor([100, 101])).tolist() == [50, 51]


def test_save_load_bit_identical_and_refusals(tmp_path):
    model = build_model("tiny", seed=1).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_()
    save_checkpoint(tmp_path / "m", model, FEATURES["default"], {"metrics": {"cer": 0.5}})
    loaded, cfg, meta = load_model(tmp_path / "m")
    assert cfg == FEATURES["default"] and meta["metrics"]["cer"] == 0.5
    x = torch.randn(2, 40, 77)
    assert torch.equal(model(x), loaded(x))
    with pytest.raises(InputError, match="preset 'tiny', expected 'default'"):
        load_model(tmp_path / "m", preset="default")
    # another alphabet
    js = (tmp_path / "m.json")
    js.write_text(js.read_text().replace('"<b>"', '"#"'))
    with pytest.raises(InputError, match="alphabet"):
        load_model(tmp_path / "m")


def test_pickle_checkpoint_is_refused_without_executing(tmp_path):
    save_checkpoint(tmp_path / "m", build_model("tiny"), FEATURES["default"])

    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    (tmp_path / "m.safetensors").write_bytes(pickle.dumps({"w": Boom()}))
    with pytest.raises(InputError, match="pickle|zip"):
        load_model(tmp_path / "m")
    assert not (tmp_path / "pwned").exists()
    torch.save({"w": torch.zeros(1)}, tmp_path / "m.safetensors")  # a torch zip-pickle
    with pytest.raises(InputError, match="pickle|zip"):
        load_model(tmp_path / "m")


def _scores_for(path: list[int], n_symbols: int = 29) -> torch.Tensor:
    s = torch.full((n_symbols, len(path)), -5.0)
    for t, c in enumerate(path):
        s[c, t] = 5.0
    return s


def test_greedy_decoding_collapses_repeats_and_blanks():
    b = BLANK
    path = [b, 7, 7, b, 4, 11, 11, b, 11, 14, b]
    scores = _scores_for(path)
    assert greedy_decode(scores.unsqueeze(0)) == ["hello"]
    emitted = greedy_path(scores)
    assert [(e.letter, e.start, e.end) for e in emitted] == [("h", 1, 2), ("e", 4, 4), ("l", 5, 6), ("l", 8, 8),
                                                              ("o", 9, 9)]


def test_forced_alignment_recovers_planted_path_and_checks_length():
    b = BLANK
    path = [b, b, 2, 2, b, 0, 0, 0, b, 19, b, 19, b]  # "catt" needs a blank between the t's
    lp = torch.log_softmax(_scores_for(path), dim=0)
    spans = forced_align(lp, "catt")
    assert [(s.letter, s.start, s.end) for s in spans] == [("c", 2, 3), ("a", 5, 7), ("t", 9, 9), ("t", 11, 11)]
    with pytest.raises(ValueError, match="needs 5 frames"):
        forced_align(lp[:, :4], "catt")
    assert encode("catt") == [s.symbol for s in spans]


def test_forced_alignment_is_the_best_path_by_brute_force():
    import itertools

    g = torch.Generator().manual_seed(0)
    for text in ("ab", "aa", "aba"):
        lp = torch.log_softmax(torch.randn(29, 7, generator=g) * 3, dim=0)
        syms = sorted(set(encode(text))) + [BLANK]
        best = -float("inf")
        for seq in itertools.product(syms, repeat=7):
            collapsed = [c for k, c in enumerate(seq) if c != BLANK and (k == 0 or seq[k - 1] != c)]
            if collapsed == encode(text):
                best = max(best, float(sum(lp[c, t] for t, c in enumerate(seq))))
        spans = forced_align(lp, text)
        labels = [BLANK] * 7
        for sp in spans:
            for t in range(sp.start, sp.end + 1):
                labels[t] = sp.symbol
        assert float(sum(lp[c, t] for t, c in enumerate(labels))) == pytest.approx(best, abs=1e-9)


def test_a_dot_in_a_checkpoint_name_is_part_of_the_name(tmp_path):
    """``run1.5`` and ``run1.6`` are two checkpoints, not both ``run1``; a named suffix is accepted."""
    a, b = build_model("tiny", seed=1).eval(), build_model("tiny", seed=2).eval()
    save_checkpoint(tmp_path / "run1.5", a, FEATURES["default"])
    save_checkpoint(tmp_path / "run1.6", b, FEATURES["default"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run1.5.json", "run1.5.safetensors", "run1.6.json",
                                                          "run1.6.safetensors"]
    x = torch.randn(1, 40, 50)
    for name, model in (("run1.5", a), ("run1.6", b), ("run1.5.safetensors", a), ("run1.6.json", b)):
        assert torch.equal(load_model(tmp_path / name)[0](x), model(x)), name


def test_interpolated_models_follow_the_formula_and_leave_both_models_alone():
    from introspeech.asr.interpolate import interpolate_models

    base, tuned = build_model("tiny", seed=1).eval(), build_model("tiny", seed=2).eval()
    with torch.no_grad():
        for m in tuned.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(7)
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in (base, tuned)]
    x = torch.randn(2, 40, 60)
    assert torch.equal(interpolate_models(base, tuned, 0.0)(x), base(x))
    assert torch.equal(interpolate_models(base, tuned, 1.0)(x), tuned(x))
    mid = interpolate_models(base, tuned, 0.3).state_dict()
    for k, v in base.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(mid[k], 0.7 * v + 0.3 * tuned.state_dict()[k])
        else:
            assert torch.equal(mid[k], tuned.state_dict()[k]), k
    for m, held in zip((base, tuned), before):
        for k, v in m.state_dict().items():
            assert torch.equal(v, held[k]), k
    other = build_model(ModelConfig("other", 40, (LayerSpec(8, 5, 2), LayerSpec(8, 1))))
    with pytest.raises(InputError, match="architecture"):
        interpolate_models(base, other, 0.5)


def test_ship_model_keeps_the_weights_and_extends_the_lineage(tmp_path, monkeypatch):
    """scripts/ship_model.py: the shipped checkpoint's weights are the candidate's, the lineage is
    the old one plus one entry (stages, the WiSE choice with its base named as the run before);
    another architecture is refused and nothing is written."""
    import importlib.util
    import json
    import sys
    from pathlib import Path

    from introspeech.asr.checkpoint import read_meta

    spec = importlib.util.spec_from_file_location("ship_model", Path(__file__).parents[1] / "scripts" / "ship_model.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    builtin = tmp_path / "pkg" / "default"
    save_checkpoint(builtin, build_model("tiny", seed=1), FEATURES["default"], {"lineage": [{"run": 1, "what": "x"}]})
    monkeypatch.setattr(ship, "builtin_model", lambda: builtin)
    stage = tmp_path / "stage"
    save_checkpoint(stage, build_model("tiny", seed=2), FEATURES["default"],
                    {"train": {"lr": 4e-4}, "state": {"epoch": 3, "best_cer": 0.11, "train_seconds": 60.0}})
    cand = tmp_path / "cand"
    save_checkpoint(cand, build_model("tiny", seed=3), FEATURES["default"],
                    {"train": {"lr": 4e-4}, "interpolation": {"base": str(builtin), "alpha": 0.8}})
    monkeypatch.setattr(sys, "argv", ["ship", "--model", str(cand), "--what", "w", "--command", "c", "--stage", str(stage)])
    ship.main()
    shipped, _, meta = load_model(builtin)
    for k, v in load_model(cand)[0].state_dict().items():
        assert torch.equal(shipped.state_dict()[k], v), k
    assert [e["run"] for e in meta["lineage"]] == [1, 2]
    entry = meta["lineage"][1]
    assert entry["stages"][0]["best_valid_cer"] == 0.11 and entry["stages"][0]["train"] == {"lr": 4e-4}
    assert entry["interpolation"] == {"base": "run 1 (the built-in model before this one)", "alpha": 0.8}
    before = json.dumps(read_meta(builtin))
    other = tmp_path / "other"
    save_checkpoint(other, build_model("default", seed=0), FEATURES["default"])
    monkeypatch.setattr(sys, "argv", ["ship", "--model", str(other), "--what", "w", "--command", "c"])
    with pytest.raises(SystemExit, match="another architecture"):
        ship.main()
    assert json.dumps(read_meta(builtin)) == before
