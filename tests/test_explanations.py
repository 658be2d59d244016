"""Which explanation to trust: a planted detector's deletion curves, localization shares, the
letter-to-phone alignment and the verdict table on a tiny recognizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from introspeech.attribution import attribute
from introspeech.corpus.utterance import Segment
from introspeech.explanations.faithfulness import impute, letter_curves
from introspeech.explanations.localization import align_letters, chance_share, letter_spans, share
from introspeech.graph import FrameGeometry

BANDS, FRAMES = 16, 40


def _detector() -> nn.Module:
    """Class 1 at frame t sums bands 0–3 over frames t−4 … t+4; classes 0 and 2 are constant."""
    net = nn.Conv1d(BANDS, 3, 9, padding=4).double().eval()
    with torch.no_grad():
        net.weight.zero_()
        net.weight[1, :4] = 1.0
        net.bias.copy_(torch.tensor([2.0, -4.0, 0.0]))
    return net


def _planted() -> torch.Tensor:
    x = 0.05 * torch.randn(1, BANDS, FRAMES, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x[0, :4, 21:24] = 1.5  # the evidence for class 1 at frame 22, one patch of (4, 3)
    return x


GEO = FrameGeometry(9, 1, -4)


@pytest.mark.parametrize("method", ["gradient_x_input", "integrated_gradients", "occlusion", "segments"])
def test_faithful_methods_delete_the_planted_region_first_and_random_order_does_not(method):
    net, x = _detector(), _planted()
    opts = {"window": (4, 3)} if method == "occlusion" else ({"window": 3} if method == "segments" else {})
    rel = attribute(net, x, (1, 22), method, **opts)[0]
    cv = letter_curves(net, x, GEO, 1, 22, rel, steps=12, patch=(4, 3))
    assert cv.deletion[0] > 0.9 and cv.deletion[1] < 0.2  # the first patch removed is the planted one
    assert cv.insertion[1] > 0.9 > cv.insertion[0]
    drops = [(c.random[0] - c.random[1]) for c in (letter_curves(net, x, GEO, 1, 22, rel, 12, (4, 3), seed=s)
                                                   for s in range(24))]
    assert np.mean(drops) < 0.3 * (cv.deletion[0] - cv.deletion[1])
    assert cv.auc("deletion") < cv.auc("random") and cv.auc("road") < cv.auc("random")


def test_curves_are_refused_for_a_model_that_is_not_shift_equivariant():
    class Drift(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = _detector()

        def forward(self, inp):
            return self.inner(inp) + torch.arange(inp.shape[-1], dtype=inp.dtype)

    x = _planted()
    with pytest.raises(ValueError, match="not shift-equivariant"):
        letter_curves(Drift(), x, GEO, 1, 22, x[0], steps=4, patch=(4, 3))


def test_road_imputation_solves_the_neighbour_equations():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 9))
    removed = rng.random((6, 9)) < 0.4
    v = impute(x, removed, 0.0, rng)
    np.testing.assert_array_equal(v[~removed], x[~removed])
    for i, j in zip(*np.nonzero(removed)):
        nb = [(i + a, j + b, 1 / 6 if a == 0 or b == 0 else 1 / 12) for a in (-1, 0, 1) for b in (-1, 0, 1)
              if (a or b) and 0 <= i + a < 6 and 0 <= j + b < 9]
        assert v[i, j] == pytest.approx(sum(w * v[p, q] for p, q, w in nb) / sum(w for *_, w in nb), abs=1e-12)


def test_a_map_inside_the_phone_has_share_one_and_chance_follows_the_receptive_field():
    m = np.zeros((4, 50))
    m[:, 10:17] = 1.0
    assert share(m, 10, 17) == 1.0 and share(m, 0, 10) == 0.0
    assert share(m, 13, 50) == pytest.approx(4 / 7)
    assert chance_share((5, 25), 10, 15) == pytest.approx(0.25)


def test_letters_are_aligned_to_the_phones_they_spell():
    assert align_letters("ship", ["SH", "IH", "P"]) == [[0], [], [1], [2]]
    assert align_letters("box", ["B", "AA", "K", "S"]) == [[0], [1], [2, 3]]
    assert align_letters("make", ["M", "EY", "K"]) == [[0], [1], [2], []]
    words = [Segment(0.1, 0.4, "ship"), Segment(0.5, 0.8, "box")]
    phones = [Segment(0.1, 0.2, "SH"), Segment(0.2, 0.3, "IH"), Segment(0.3, 0.4, "P"), Segment(0.4, 0.5, "sil"),
              Segment(0.5, 0.6, "B"), Segment(0.6, 0.7, "AA"), Segment(0.7, 0.75, "K"), Segment(0.75, 0.8, "S")]
    spans = letter_spans(words, phones, "ship box")
    assert spans[1] == (0.1, 0.2, 0.1, 0.4)  # the h of "sh" lies in SH
    assert spans[4] is None and spans[7] == (0.7, 0.8, 0.5, 0.8)


def test_the_explanations_command_writes_the_verdict_table(tmp_path):
    import json

    from typer.testing import CliRunner

    from introspeech.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["explanations", "--out", str(tmp_path / "x"), "--sanity", str(tmp_path / "none")])
    assert res.exit_code == 2 and "no sanity summary here" in res.output
    sanity = tmp_path / "s"
    sanity.mkdir()
    (sanity / "summary.json").write_text(json.dumps({"speech": {"gradient": {"spearman_abs": 0.77}}}))
    res = runner.invoke(app, ["explanations", "--out", str(tmp_path / "x"), "--utterances", "2", "--letters", "3",
                              "--methods", "gradient,lrp_zplus,occlusion", "--steps", "4", "--sanity", str(sanity),
                              "--no-digits"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "x" / "summary.json").read_text())
    assert set(summary["methods"]) == {"gradient", "lrp_zplus", "occlusion"} and summary["letters"] == 6
    row = summary["methods"]["gradient"]
    assert row["sanity_spearman_abs"] == 0.77 and summary["methods"]["occlusion"]["sanity_spearman_abs"] is None
    for key in ("deletion_auc", "insertion_auc", "road", "phone_share", "word_share", "seconds_per_utterance"):
        assert 0 <= row[key] <= (1 if key != "seconds_per_utterance" else 60), key
    assert set(summary["chance"]) == {"deletion_auc", "phone_share", "word_share"}
    assert summary["best"]["deletion_auc"] in summary["methods"]
    assert "Which explanation to trust" in (tmp_path / "x" / "index.html").read_text()


class PlantedImage(nn.Module):
    """Class 1 = 8 × the sum of the top-left 2 × 2 pixels − 2; the other classes 0."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        nn.init.ones_(self.conv.weight)

    def forward(self, x):
        s = self.conv(x)[:, 0, :2, :2].sum((1, 2))
        return torch.stack([torch.zeros_like(s), 8 * s - 2, torch.zeros_like(s)], 1)


def test_image_faithfulness_deletes_the_planted_pixels_first():
    from introspeech.explanations.run import evaluate_image_explanations

    images = 0.05 * torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    images[:, :, :2, :2] = 0.5
    labels = torch.ones(6, dtype=torch.long)
    res = evaluate_image_explanations(PlantedImage().eval(), images, labels, "conv",
                                      ["gradient_x_input", "occlusion", "segments"], examples=4, steps=16)
    assert set(res["methods"]) == {"gradient_x_input", "occlusion"}  # segments are time spans, not pixels
    for row in res["methods"].values():
        assert row["examples"] == 4 and row["deletion_auc"] < 0.5 * res["chance"]["deletion_auc"]


def test_named_windows_on_a_waveform_count_samples_of_10_ms():
    from introspeech.explanations.run import waveform_windows

    assert waveform_windows({"window": (8, 10)}, 16000) == {"window": (1, 1600)}
    assert waveform_windows({"window": 10, "steps": 3}, 8000) == {"window": 800, "steps": 3}
    assert waveform_windows({"steps": 3}, 16000) == {"steps": 3}


def test_road_imputation_of_regions_without_kept_neighbours_is_defined():
    import warnings

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 40))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no singular-matrix warning, no NaN
        np.testing.assert_array_equal(impute(x, np.ones_like(x, dtype=bool), 0.0, rng), np.zeros_like(x))
        removed = np.zeros((1, 40), dtype=bool)
        removed[0, 10:30] = True
        v = impute(x, removed, 0.0, rng)
    np.testing.assert_array_equal(v[~removed], x[~removed])
    assert np.all(np.isfinite(v)) and np.all(np.diff(v[0, 9:31]) != 0)  # a harmonic ramp between kept ends
    grid = rng.standard_normal((3, 3))
    hole = np.ones((3, 3), dtype=bool)
    assert np.allclose(impute(grid, hole, 0.0, rng), 0.0)
