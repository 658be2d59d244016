"""Training: an honest smoke test (loss goes down) and exact resume."""

import pytest
import torch

from introspeech.asr.checkpoint import load_model, read_tensors
from introspeech.asr.train import TrainConfig, make_batches, prepare, train_arrays


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
