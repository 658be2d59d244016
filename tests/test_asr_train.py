"""Training: an honest smoke test (loss goes down) and exact resume."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from introspeech.asr.checkpoint import load_model, read_tensors, save_checkpoint
from introspeech.asr.model import build_model
from introspeech.asr.train import TrainConfig, feature_config_for, make_batches, prepare, train_arrays, vtlp_warp


@pytest.fixture(scope="module")
def tiny_data(small_corpus):
    cfg = TrainConfig(preset="tiny")
    data, valid, summary = prepare(small_corpus, cfg)
    return data[:48], valid[:6], summary


def test_batches_respect_frame_budget_and_cover_everything():
    lengths = [50, 300, 120, 80, 300, 10, 220]
    batches = make_batches(lengths, 400, torch.Generator().manual_seed(0))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert max(lengths[i] for i in b) * len(b) <= 400 or len(b) == 1


def test_training_reduces_ctc_loss(tiny_data, tmp_path):
    data, valid, summary = tiny_data
    cfg = TrainConfig(preset="tiny", epochs=6, batch_frames=3000, warmup_steps=5, lr=3e-3, specaugment=False)
    losses = []
    result = train_arrays(data, valid, summary, tmp_path, cfg, progress=lambda p: losses.append(p["loss"]))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    assert result["state"]["epoch"] == 6 and len(result["state"]["history"]) == 6
    model, _, meta = load_model(tmp_path / "model", preset="tiny")
    assert meta["state"]["best_cer"] == min(h["valid_cer"] for h in result["state"]["history"][: meta["state"]["epoch"]])


def test_resume_continues_exactly(tiny_data, tmp_path):
    data, valid, summary = tiny_data
    cfg = TrainConfig(preset="tiny", epochs=2, batch_frames=3000, warmup_steps=3, specaugment=True, seed=5)
    train_arrays(data, valid, summary, tmp_path / "full", cfg)
    first = train_arrays(data, valid, summary, tmp_path / "cut", cfg, max_steps=7)  # stops mid-epoch 1
    assert first["stopped_early"] and first["state"]["step"] == 7
    train_arrays(data, valid, summary, tmp_path / "cut", cfg, resume=True)
    a, b = read_tensors(tmp_path / "full" / "last"), read_tensors(tmp_path / "cut" / "last")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with pytest.raises(ValueError, match="training settings differ"):
        train_arrays(data, valid, summary, tmp_path / "cut", TrainConfig(preset="tiny", epochs=3), resume=True)


def test_vtlp_moves_spectral_peaks_with_the_warp_factor():
    feats = feature_config_for("default")
    x = torch.zeros(3, feats.n_mels, 4)
    x[:, 20] = 1.0  # one Mel band lit
    y = vtlp_warp(x, feats, None, 0.1, alpha=torch.tensor([0.9, 1.0, 1.1]))
    centre = (y[:, :, 0] * torch.arange(feats.n_mels)).sum(1) / y[:, :, 0].sum(1)
    assert centre[0] < 20 - 0.5 and centre[1] == pytest.approx(20) and centre[2] > 20 + 0.5
    torch.testing.assert_close(vtlp_warp(x, feats, torch.Generator().manual_seed(0), 0.0), x)
    a = vtlp_warp(x, feats, torch.Generator().manual_seed(3), 0.12)
    assert torch.equal(a, vtlp_warp(x, feats, torch.Generator().manual_seed(3), 0.12))  # seeded


def test_init_starts_from_the_given_checkpoint(tiny_data, tmp_path):
    data, valid, summary = tiny_data
    start = build_model("tiny", seed=11)
    save_checkpoint(tmp_path / "start", start, feature_config_for("tiny"))
    cfg = TrainConfig(preset="tiny", epochs=1, batch_frames=3000, lr=0.0, seed=0, init=str(tmp_path / "start"))
    train_arrays(data, [], summary, tmp_path / "run", cfg, max_steps=1)
    got = read_tensors(tmp_path / "run" / "last")
    for name, p in start.named_parameters():
        assert torch.equal(got[f"model.{name}"], p.detach()), name  # lr 0: still the initial weights
    fresh = dict(build_model("tiny", seed=0).named_parameters())
    assert any(not torch.equal(got[f"model.{n}"], fresh[n].detach()) for n in fresh)


def test_mel_scale_matches_librosa_slaney():
    import librosa
    import numpy as np

    from introspeech.asr.train import hz_to_mel, mel_to_hz

    hz = np.linspace(0, 8000, 801)
    np.testing.assert_allclose(hz_to_mel(torch.from_numpy(hz)).numpy(), librosa.hz_to_mel(hz), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(mel_to_hz(torch.from_numpy(librosa.hz_to_mel(hz))).numpy(), hz, atol=1e-6)


def test_spec_augment_masks_whole_bands_and_spans_within_their_bounds():
    from introspeech.asr.train import spec_augment

    x = torch.randn(6, 40, 200) + 5  # no natural zeros
    lengths = torch.tensor([200, 150, 100, 60, 30, 10])
    y = spec_augment(x, lengths, torch.Generator().manual_seed(1), freq_masks=2, freq_width=5, time_masks=2)
    assert torch.equal(y, spec_augment(x, lengths, torch.Generator().manual_seed(1), freq_masks=2, freq_width=5,
                                       time_masks=2))
    for b, n in enumerate(lengths.tolist()):
        z = y[b, :, :n] == 0
        bands = z.all(1)  # a masked band is zero over the whole utterance
        spans = z.all(0)  # a masked span is zero over all bands
        assert bands.sum() <= 2 * 5 and spans.sum() <= 2 * max(1, int(0.05 * n))
        assert torch.equal(z, bands[:, None] | spans[None, :])  # nothing else is touched
        assert torch.equal(y[b, :, n:], x[b, :, n:])  # padding is left alone


def test_packed_features_round_trip_within_half_a_step(small_corpus, tmp_path):
    import numpy as np

    from introspeech.asr.packed import load_packed, pack
    from introspeech.corpus.load import load_corpus, load_features
    from introspeech.text import normalize_text

    cfg = feature_config_for("tiny")
    pack(small_corpus, tmp_path, cfg, splits=("valid",), step=0.25, chunk=7, workers=1)
    _, got = load_packed(tmp_path, workers=1)
    ref = list(load_features([u for u in load_corpus(small_corpus)["valid"] if normalize_text(u.text).text], cfg))
    assert len(got["valid"]) == len(ref) > 7  # several chunks, in corpus order
    for (text, f), (u, r) in zip(got["valid"], ref):
        assert text == normalize_text(u.text).text and f.shape == r.shape
        assert np.abs(f - r).max() <= 0.125 + 1e-6


def test_extra_train_corpora_add_their_train_split(small_corpus, tmp_path):
    from introspeech.errors import InputError

    base = TrainConfig(preset="tiny", max_valid=4)
    rows = [json.loads(line) for line in (small_corpus / "train.jsonl").read_text().splitlines()[:5]]
    for r in rows:
        r["audio_filepath"] = str(small_corpus / r["audio_filepath"])
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data, valid, _ = prepare(small_corpus, base)
    more, valid2, summary = prepare(small_corpus, dataclasses.replace(base, extra_train=[str(extra)]))
    assert len(more) == len(data) + 5 and len(valid2) == len(valid)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(more[-5:], data[:5]))  # the same first utterances
    (extra / "train.jsonl").rename(extra / "other.jsonl")
    with pytest.raises((ValueError, InputError), match=str(extra)):
        prepare(small_corpus, dataclasses.replace(base, extra_train=[str(extra)]))


@pytest.mark.parametrize("factory", ["examples.quartznet:micro", "examples.wav2letter:micro"])
def test_training_a_users_model_from_its_factory(tiny_data, tmp_path, factory, monkeypatch):
    """A QuartzNet-like and an unpadded Wav2Letter: CTC lengths measured, loss goes down, the weights
    load back through --weights, and an interrupted run resumes exactly."""
    from pathlib import Path

    from introspeech.models.loading import load_description

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    data, valid, summary = tiny_data
    cfg = TrainConfig(factory=factory, epochs=4, batch_frames=3000, warmup_steps=5, lr=3e-3, specaugment=False)
    losses = []
    train_arrays(data, valid[:2], summary, tmp_path / "full", cfg, progress=lambda p: losses.append(p["loss"]))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    desc = load_description(factory=factory, weights=tmp_path / "full" / "model.safetensors")
    assert desc.layers[-1].channels == 29
    cut = dataclasses.replace(cfg, epochs=2)
    train_arrays(data, [], summary, tmp_path / "a", cut)
    train_arrays(data, [], summary, tmp_path / "b", cut, max_steps=5)
    train_arrays(data, [], summary, tmp_path / "b", cut, resume=True)
    from safetensors.torch import load_file

    a, b = load_file(str(tmp_path / "a" / "last.safetensors")), load_file(str(tmp_path / "b" / "last.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
