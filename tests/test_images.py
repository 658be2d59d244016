"""Image models: class-conditional activation profiles (planted values recovered exactly, η² of a
class code is 1 and of noise near 0), and a small ResNet on the digits described, profiled and
explained (LRP through its in-place residual additions, the gradient against Captum)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from captum.attr import Saliency
from torch import nn

from introspeech.attribution import attribute
from introspeech.attribution.deltas import conservation
from introspeech.models.description import describe
from introspeech.profiles.images import class_profiles

ROOT = Path(__file__).resolve().parents[1]


class ClassCode(nn.Module):
    """Channel k of the output is 1 where the image's class (its mean × 10) is k, else 0."""

    def forward(self, x):
        cls = (x.flatten(1).mean(1) * 10).round().long()
        return nn.functional.one_hot(cls, 10).to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[2:])


class Noise(nn.Module):
    def forward(self, x):
        g = torch.Generator().manual_seed(int(x.shape[0]))
        return torch.rand(x.shape[0], 5, *x.shape[2:], generator=g, dtype=x.dtype)


class Planted(nn.Module):
    def __init__(self):
        super().__init__()
        self.code, self.noise, self.head = ClassCode(), Noise(), nn.Linear(10, 10, bias=False)
        nn.init.eye_(self.head.weight)

    def forward(self, x):
        self.noise(x)
        return self.head(self.code(x).mean((2, 3)))


def test_planted_class_profiles_are_exact():
    y = torch.arange(300) % 10
    x = (y.double() / 10)[:, None, None, None].expand(-1, 1, 4, 4).contiguous()
    desc = describe(Planted().double(), example=x[:1], layers=["code", "noise", "head"])
    prof = class_profiles(desc, x, y, batch=64)
    np.testing.assert_array_equal(prof.profiles("code"), np.eye(10))
    np.testing.assert_array_equal(prof.arrays["code"]["count"], np.full(10, 30))
    scores = prof.scores()
    assert abs(scores["code"]["classes_eta2"] - 1.0) < 1e-12
    assert scores["noise"]["classes_eta2"] < 0.1


def _resnet():
    sys.path.insert(0, str(ROOT))
    from examples.resnet_digits import resnet

    from introspeech.sanity.digits import digits, train_digits

    xtr, ytr, xte, yte = digits(0)
    return train_digits(xtr, ytr, 8, 0, make=resnet).double().eval(), xte.double(), yte


def test_resnet_on_digits_is_described_profiled_and_explained():
    model, x, y = _resnet()
    desc = describe(model, example=x[:1])
    assert [layer.path for layer in desc.layers] == ["stem", "layer1", "layer2", "fc"]
    assert desc.output.kind == "classes" and all(layer.geometry is None for layer in desc.layers)
    scores = class_profiles(desc, x, y).scores()
    assert scores["fc"]["classes_eta2"] > 0.5 and scores["fc"]["classes_eta2"] > scores["stem"]["classes_eta2"]
    # the gradient family through the in-place residual additions equals Captum; LRP conserves what biases leave
    torch.testing.assert_close(attribute(model, x[:4], y[:4], "gradient"),
                               Saliency(model).attribute(x[:4], target=y[:4], abs=False))
    maps, delta = attribute(model, x[:4], y[:4], "lrp", composite="epsilon", epsilon=1e-12,
                            return_convergence_delta=True)
    absorbed = sum(layer.bias + layer.stabilizer for layer in conservation(model, x[:4], y[:4], epsilon=1e-12))
    torch.testing.assert_close(delta, -absorbed, atol=1e-8, rtol=1e-6)


def test_naps_on_the_digits_from_the_cli(tmp_path, monkeypatch):
    from safetensors.torch import save_file
    from typer.testing import CliRunner

    from introspeech.cli import app

    model, _, _ = _resnet()
    save_file(model.float().state_dict(), str(tmp_path / "w.safetensors"))
    monkeypatch.chdir(ROOT)
    res = CliRunner().invoke(app, ["naps", "--model-factory", "examples.resnet_digits:resnet", "--weights",
                                   str(tmp_path / "w.safetensors"), "--corpus", "digits", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    import json

    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert list(summary["layers"]) == ["stem", "layer1", "layer2", "fc"] and summary["examples"] == 360
    assert summary["findings"]["best_layer_classes"] in summary["layers"]
    assert (tmp_path / "o" / "figures" / "classes_fc.png").is_file() and (tmp_path / "o" / "index.html").is_file()
    res = CliRunner().invoke(app, ["naps", "--corpus", "digits", "--out", str(tmp_path / "p")])
    assert res.exit_code == 2 and "give an image classifier with --model-factory" in res.output


def test_sanity_checks_on_a_users_image_model(tmp_path, monkeypatch):
    """The digits through --model-factory: the user's trained ResNet against its re-initialized copies
    and against its architecture trained on permuted labels."""
    from safetensors.torch import save_file
    from typer.testing import CliRunner

    from introspeech.cli import app

    model, _, _ = _resnet()
    save_file(model.float().state_dict(), str(tmp_path / "w.safetensors"))
    monkeypatch.chdir(ROOT)
    res = CliRunner().invoke(app, ["sanity", "--model-factory", "examples.resnet_digits:resnet", "--weights",
                                   str(tmp_path / "w.safetensors"), "--corpus", "digits", "--out", str(tmp_path / "s"),
                                   "--methods", "gradient,gradient_x_input,grad_cam", "--no-independent"])
    assert res.exit_code == 0, res.output
    import json

    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert set(summary["verdicts"]) == {"image"} and summary["verdicts"]["image"]["gradient"].startswith("passes")
    assert summary["image"]["gradient"]["spearman_abs"] < summary["image"]["gradient_x_input"]["spearman_abs"]
    assert "random_labels_test_accuracy" in summary["models"]["image"]
