"""Interventions on activations: each edit against its definition, and the model left as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from introspeech.causal.interventions import Edit, intervene

from .nets import assert_same_state, model_state


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv1d(6, 4, 3, padding=1)).double().eval()


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_zero_mean_and_patch_equal_the_edited_forward_written_out():
    net = _net()
    x, y = torch.randn(2, 3, 10, dtype=torch.float64), torch.randn(2, 3, 10, dtype=torch.float64)
    h = torch.relu(net[0](x))
    with torch.no_grad():
        zeroed = h.clone()
        zeroed[:, [1, 3]] = 0
        means = torch.arange(6, dtype=torch.float64)
        meaned = h.clone()
        meaned[:, [0, 5]] = means[[0, 5], None]
        other = torch.relu(net[0](y))
        with intervene(net, [Edit("1", "zero", units=[1, 3])]):
            torch.testing.assert_close(net(x), net[2](zeroed))
        with intervene(net, [Edit("1", "mean", units=[0, 5], value=means)]):
            torch.testing.assert_close(net(x), net[2](meaned))
        with intervene(net, [Edit("1", "patch", value=other)]):  # every unit patched: the other input's output
            torch.testing.assert_close(net(x), net(y))
    assert _hooks(net) == 0


def test_steering_directions_add_and_project_out():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(2, 5, 7, generator=g, dtype=torch.float64)
    d = torch.randn(5, generator=g, dtype=torch.float64)
    out = Edit("x", "project_out", value=d).apply(a)
    unit = d / d.norm()
    assert float((out * unit[None, :, None]).sum(1).abs().max()) < 1e-12  # nothing left along d
    rest = a - (a * unit[None, :, None]).sum(1, keepdim=True) * unit[None, :, None]
    torch.testing.assert_close(out, rest)
    torch.testing.assert_close(Edit("x", "add", value=d, scale=2.0).apply(a), a + 2.0 * d[None, :, None])
    frames_first = a.transpose(1, 2).contiguous()  # (batch, time, channels)
    torch.testing.assert_close(Edit("x", "add", value=d, time_axis=1).apply(frames_first),
                               (a + d[None, :, None]).transpose(1, 2))


def test_a_layer_shaped_batch_time_channels_of_an_attention_model():
    from examples.conformer import conformer

    torch.manual_seed(0)
    net = conformer("tiny").double().eval()
    x, y = torch.randn(1, 40, 40, dtype=torch.float64), torch.randn(1, 40, 40, dtype=torch.float64)
    seen = {}
    handle = net.blocks[1].register_forward_hook(lambda m, i, o: seen.__setitem__("y", o))
    with torch.no_grad():
        want = net(y)
    handle.remove()
    state = model_state(net)
    with torch.no_grad(), intervene(net, [Edit("blocks.1", "patch", value=seen["y"], time_axis=1)]):
        torch.testing.assert_close(net(x), want)
    assert_same_state(state, model_state(net))
    assert _hooks(net) == 0


def test_errors_name_the_layer_and_hooks_go_also_after_an_exception():
    net = _net()
    x = torch.randn(1, 3, 10, dtype=torch.float64)
    state = model_state(net)
    with pytest.raises(ValueError, match="no module 'nope'"):
        with intervene(net, [Edit("nope", "zero")]):
            pass
    with pytest.raises(ValueError, match=r"edit of '1': units \[9\] outside its 6 channels"):
        with intervene(net, [Edit("1", "zero", units=[9])]):
            net(x)
    with pytest.raises(ValueError, match=r"edit of '1': patched value \(1, 6, 3\) for an output \(1, 6, 10\)"):
        with intervene(net, [Edit("1", "patch", value=torch.zeros(1, 6, 3))]):
            net(x)
    with pytest.raises(ValueError, match="kind must be one of"):
        Edit("1", "scramble")
    with pytest.raises(RuntimeError, match="inside"):
        with intervene(net, [Edit("1", "zero")]):
            raise RuntimeError("inside")
    assert _hooks(net) == 0
    assert_same_state(state, model_state(net))
