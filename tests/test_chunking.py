"""Long recordings in pieces: the same scores, maps, alignments and profiles as the whole run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from examples.quartznet import micro as quartznet_micro
from examples.wav2letter import micro as wav2letter_micro
from torch import nn

from introspeech.asr import decode
from introspeech.asr.evaluate import scores
from introspeech.asr.model import LayerSpec, ModelConfig, Wav2Letter, build_model
from introspeech.attribution.frames import attribute_frames
from introspeech.chunking import model_geometry, pieces, run_in_pieces
from introspeech.profiles.engine import profile_corpus
from introspeech.profiles.settings import ProfileSettings
from introspeech.text import BLANK, encode

from .profiles_toy import FEATURES, N_MELS, planted_corpus


def _models():
    torch.manual_seed(0)
    return {"wav2letter": build_model("tiny", seed=0), "quartznet": quartznet_micro(),
            "unpadded": wav2letter_micro()}


@pytest.mark.parametrize("name", ["wav2letter", "quartznet", "unpadded"])
def test_pieces_give_the_whole_runs_output(name):
    model = _models()[name].double().eval()
    x = torch.randn(1, 40, 1701, dtype=torch.float64)
    geo = model_geometry(model, x)
    with torch.no_grad():
        whole = model(x)
        for max_frames in (3 * geo.rf + 40, 700):
            assert len(pieces(x.shape[-1], [geo], max_frames)) > 1
            part = run_in_pieces(model, x, geo, max_frames)
            assert part.shape == whole.shape
            torch.testing.assert_close(part, whole, rtol=0, atol=1e-10)


def test_every_layer_frame_is_owned_once_and_exactly():
    model = build_model("tiny", seed=1).eval()
    x = torch.randn(1, 40, 999)
    geo = model_geometry(model, x)
    parts = pieces(999, [geo], 200)
    end, n_out = 0, model(x).shape[-1]
    for p in parts:
        n_local = model(x[..., p.start:p.stop]).shape[-1]
        a, b, _ = p.owned(geo, n_local)
        lo, hi = p.exact(geo, n_local)
        assert a == end and lo <= a and b <= hi
        end = b
    assert end == n_out


class PositionBias(nn.Module):
    """A convolution plus a bias that depends on the absolute frame: not shift-equivariant."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(40, 29, 3, padding=1)

    def forward(self, x):
        return self.conv(x) + torch.arange(x.shape[-1], dtype=x.dtype) * 1e-2


def test_a_model_that_is_not_shift_equivariant_is_refused_not_joined():
    model = PositionBias().eval()
    x = torch.randn(1, 40, 900)
    with torch.no_grad(), pytest.raises(ValueError, match="not shift-equivariant"):
        run_in_pieces(model, x, model_geometry(model, x), 200)


def test_too_short_pieces_are_an_error_naming_the_minimum():
    model = build_model("tiny", seed=0).eval()
    geo = model_geometry(model, torch.randn(1, 40, 100))
    with pytest.raises(ValueError, match="max_frames=10 is too short"):
        pieces(5000, [geo], 10)


def test_transcribe_scores_of_a_long_input_equal_the_whole_run():
    model = build_model("tiny", seed=2).double()
    feats = np.random.default_rng(0).standard_normal((40, 2500))
    torch.testing.assert_close(scores(model, feats, max_frames=600), scores(model, feats, max_frames=0),
                               rtol=0, atol=1e-10)


@pytest.mark.parametrize("method,engine,opts", [
    ("gradient", "cone", {}), ("gradient", "colour", {}), ("lrp", "auto", {"composite": "epsilon-gamma-box",
                                                                             "low": -3.0, "high": 3.0}),
    ("integrated_gradients", "cone", {"steps": 4}), ("smoothgrad", "colour", {"samples": 3}),
    ("deep_taylor", "loop", {"root": "search"}),
])
def test_maps_of_a_long_input_equal_the_whole_run(method, engine, opts):
    model = quartznet_micro().double().eval()
    x = torch.randn(1, 40, 1200, dtype=torch.float64).clamp(-3, 3)
    frames = [0, 3, 150, 299, 300, 301, 450, 599] if engine == "loop" else "all"
    whole = attribute_frames(model, x, frames, "predicted", method, engine=engine, max_frames=0, **opts)
    part = attribute_frames(model, x, frames, "predicted", method, engine=engine, max_frames=500, **opts)
    torch.testing.assert_close(part, whole, rtol=0, atol=1e-9)
    windows = attribute_frames(model, x, frames, "predicted", method, engine=engine, output="windows",
                               max_frames=500, **opts)
    torch.testing.assert_close(windows.dense(), whole, rtol=0, atol=1e-9)
    assert windows.maps.shape[-1] <= model_geometry(model, x).rf + 1


def test_windows_of_a_short_input_are_the_dense_maps_cut():
    model = build_model("tiny", seed=3).eval()
    x = torch.randn(1, 40, 300)
    for engine in ("cone", "colour", "loop"):
        dense = attribute_frames(model, x, "all", "predicted", "gradient_x_input", engine=engine)
        w = attribute_frames(model, x, "all", "predicted", "gradient_x_input", engine=engine, output="windows")
        torch.testing.assert_close(w.dense(), dense, rtol=0, atol=0)


def test_a_non_local_method_on_a_long_input_is_an_error():
    model = build_model("tiny", seed=0).eval()
    with pytest.raises(ValueError, match="grad_cam is not local"):
        attribute_frames(model, torch.randn(1, 40, 900), "all", "predicted", "grad_cam", layer="layers.layer2",
                         max_frames=300)


def test_blocked_viterbi_gives_the_same_path():
    rng = np.random.default_rng(0)
    for n_frames, n_letters in [(1, 1), (2, 1), (60, 12), (400, 120)]:
        lp = np.log(rng.dirichlet(np.full(29, 0.3), size=n_frames).T)
        lab = np.asarray(encode("".join(rng.choice(list("abcdefg"), n_letters))))
        ext = np.full(2 * lab.size + 1, BLANK)
        ext[1::2] = lab
        skip = np.zeros(ext.size, dtype=bool)
        skip[3::2] = ext[3::2] != ext[1:-2:2]
        for block in (1, 5, 17, 10_000):
            np.testing.assert_array_equal(decode.ctc_viterbi_blocks(lp, ext, skip, block),
                                          decode.ctc_viterbi(lp, ext, skip))


def test_profiles_of_long_utterances_equal_the_whole_run(tmp_path, monkeypatch):
    torch.manual_seed(0)
    cfg = ModelConfig("t", N_MELS, (LayerSpec(12, 5, 2), LayerSpec(12, 3, 1, 2), LayerSpec(16, 5)))
    model = Wav2Letter(cfg).eval()
    utts = planted_corpus(tmp_path, n=3, frames=900)
    monkeypatch.setattr(decode, "VITERBI_CELLS", 1000)  # the blocked Viterbi too
    base = dict(letters_from="reference", nap_window=3, pattern_window=4, relevance="gradient")
    whole = profile_corpus(model, FEATURES, utts, ProfileSettings(**base, max_frames=0), strict=True)
    part = profile_corpus(model, FEATURES, utts, ProfileSettings(**base, max_frames=200), strict=True)
    assert whole.arrays.keys() == part.arrays.keys()
    for k in whole.arrays:
        np.testing.assert_allclose(part.arrays[k], whole.arrays[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert whole.arrays["nap/layer1/phonemes/count"].sum() > 0
