"""Slow reference LRP written from the formulas of REFERENCES §2 with explicit z_ij.

Every Linear/Conv layer (with a following BatchNorm folded in by hand) is turned into a dense
matrix by evaluating it on basis vectors; relevance is then redistributed output by output with
explicit contributions z_ij. Nothing here shares code with introspeech.attribution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dense(layer: nn.Module, bn: nn.Module | None, in_shape: tuple[int, ...]):
    """(W, b) with layer(x).flatten() = W @ x.flatten() + b for one sample, BatchNorm folded."""
    n_in = 1
    for s in in_shape:
        n_in *= s
    with torch.no_grad():
        eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *in_shape)
        zero = torch.zeros(1, *in_shape, dtype=torch.float64)

        def lin(t):
            out = layer(t)
            if bn is not None:
                shape = (1, -1, *[1] * (out.dim() - 2))
                out = (out - bn.running_mean.reshape(shape)) / torch.sqrt(bn.running_var.reshape(shape) + bn.eps) \
                    * bn.weight.reshape(shape) + bn.bias.reshape(shape)
            return out

        b = lin(zero).flatten()
        w = (lin(eye).reshape(n_in, -1) - b).T  # (n_out, n_in)
    return w, b


def connectivity(layer: nn.Module, in_shape: tuple[int, ...]) -> torch.Tensor:
    """1 where output j sees input i (the layer with a kernel of ones), for the flat rule."""
    n_in = 1
    for s in in_shape:
        n_in *= s
    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *in_shape)
    ones = torch.ones_like(layer.weight)
    with torch.no_grad():
        if isinstance(layer, nn.Linear):
            out = F.linear(eye, ones)
        elif isinstance(layer, nn.Conv1d):
            out = F.conv1d(eye, ones, None, layer.stride, layer.padding, layer.dilation, layer.groups)
        else:
            out = F.conv2d(eye, ones, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    return (out.reshape(n_in, -1).T != 0).to(torch.float64)


def _stab(z, eps):
    return z + eps * torch.where(z >= 0, 1.0, -1.0)


def redistribute(rule: str, x, w, b, pattern, r_out, eps=1e-9, gamma=0.25, alpha=2.0, beta=1.0, low=None, high=None,
                 favour="output"):
    """R_i = Σ_j (z_ij / z_j) R_j with each rule's z_ij, by explicit loops over outputs j."""
    r_in = torch.zeros_like(x)
    xp, xn = x.clamp(min=0), x.clamp(max=0)
    for j in range(w.shape[0]):
        wj = w[j]
        wp, wn = wj.clamp(min=0), wj.clamp(max=0)
        if rule == "epsilon":
            z = x * wj
            r_in += z / _stab(z.sum() + b[j], eps) * r_out[j]
        elif rule == "gamma" and (favour == "positive" or (x * wj).sum() + b[j] >= 0):
            z = x * wj + gamma * (xp * wp + xn * wn)
            r_in += z / _stab(z.sum() + b[j] + gamma * b[j].clamp(min=0), eps) * r_out[j]
        elif rule == "gamma":  # a negative output: negative contributions amplified
            z = x * wj + gamma * (xp * wn + xn * wp)
            r_in += z / _stab(z.sum() + b[j] + gamma * b[j].clamp(max=0), eps) * r_out[j]
        elif rule == "alpha-beta":
            zp, zn = xp * wp + xn * wn, xp * wn + xn * wp
            r_in += (alpha * zp / _stab(zp.sum() + b[j].clamp(min=0), eps)
                     - beta * zn / _stab(zn.sum() + b[j].clamp(max=0), eps)) * r_out[j]
        elif rule == "zplus":
            z = xp * wp + xn * wn
            r_in += z / _stab(z.sum(), eps) * r_out[j]
        elif rule == "zbox":
            z = x * wj - low * wp - high * wn
            r_in += z / _stab(z.sum(), eps) * r_out[j]
        elif rule == "wsquare":
            z = wj * wj
            r_in += z / _stab(z.sum(), eps) * r_out[j]
        elif rule == "flat":
            z = pattern[j]
            r_in += z / _stab(z.sum(), eps) * r_out[j]
        else:
            raise ValueError(rule)
    return r_in


def reference_lrp(net: nn.Sequential, x: torch.Tensor, select: torch.Tensor, rules: list[str], **kw) -> torch.Tensor:
    """LRP of one input ``x`` (no batch dim) for the output selected by ``select`` (one-hot, like
    the output). ``rules`` names the rule of each Linear/Conv layer in order; ReLUs pass relevance."""
    layers = list(net)
    acts = [x.unsqueeze(0)]
    for m in layers:
        acts.append(m(acts[-1]))
    r = (acts[-1] * select.unsqueeze(0)).flatten()
    k = len([m for m in layers if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]) - 1
    i = len(layers) - 1
    while i >= 0:
        m = layers[i]
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            bn = layers[i + 1] if i + 1 < len(layers) and isinstance(layers[i + 1], (nn.BatchNorm1d, nn.BatchNorm2d)) \
                else None
            inp = acts[i][0]
            w, b = dense(m, bn, tuple(inp.shape))
            pat = connectivity(m, tuple(inp.shape))
            lo = kw.get("low")
            extra = {} if lo is None or rules[k] != "zbox" else {"low": torch.as_tensor(lo).expand_as(inp).flatten(),
                                           "high": torch.as_tensor(kw["high"]).expand_as(inp).flatten()}
            opts = {k2: v for k2, v in kw.items() if k2 not in ("low", "high")}
            r = redistribute(rules[k], inp.flatten(), w, b, pat, r, **opts, **extra)
            k -= 1
        elif isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)):
            inp = acts[i][0]
            w, b = dense(m, None, tuple(inp.shape))
            r = redistribute("epsilon", inp.flatten(), w, b, None, r, eps=1e-9)
        # ReLU, BatchNorm (folded above), Flatten: relevance passes unchanged
        i -= 1
    return r.reshape(x.shape)



def _linear_and_bn(layers, i):
    m = layers[i]
    bn = layers[i + 1] if i + 1 < len(layers) and isinstance(layers[i + 1], (nn.BatchNorm1d, nn.BatchNorm2d)) else None
    return m, bn


def _sequence(module: nn.Module) -> list[nn.Module]:
    return list(module) if isinstance(module, nn.Sequential) else [module]


def _back(layers: list[nn.Module], inp: torch.Tensor, r: torch.Tensor, rule: str, kw: dict) -> torch.Tensor:
    """Relevance ``r`` of the output of ``layers`` (run on ``inp``, batch of 1) at their input."""
    acts = [inp]
    with torch.no_grad():
        for m in layers:
            acts.append(m(acts[-1]))
    for i in range(len(layers) - 1, -1, -1):
        m, a = layers[i], acts[i]
        if hasattr(m, "main") and hasattr(m, "skip"):  # act(main(a) + skip(a)); the ReLU passes relevance
            with torch.no_grad():
                zm, zs = m.main(a).flatten(), m.skip(a).flatten()
            share = r / _stab(zm + zs, kw.get("eps_add", 1e-9))
            r = _back(_sequence(m.main), a, zm * share, rule, kw) + _back(_sequence(m.skip), a, zs * share, rule, kw)
        elif isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            _, bn = _linear_and_bn(layers, i)
            w, b = dense(m, bn, tuple(a[0].shape))
            opts = {k: v for k, v in kw.items() if k != "eps_add"}
            r = redistribute(rule, a[0].flatten(), w, b, connectivity(m, tuple(a[0].shape)), r, **opts)
        elif isinstance(m, (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
            w, b = dense(m, None, tuple(a[0].shape))
            r = redistribute("epsilon", a[0].flatten(), w, b, None, r, eps=1e-9)
        elif not isinstance(m, (nn.ReLU, nn.BatchNorm1d, nn.BatchNorm2d, nn.Flatten, nn.Identity, nn.Dropout)):
            raise TypeError(type(m).__name__)
    return r


def reference_graph_lrp(net: nn.Sequential, x: torch.Tensor, select: torch.Tensor, rule: str, **kw) -> torch.Tensor:
    """LRP with one rule for every Linear/Conv layer on a Sequential whose items may be residual
    blocks (modules with ``main``, ``skip`` and a ReLU ``act`` after their sum): at each addition,
    relevance is shared in proportion to the two branches' outputs (ε = ``eps_add``)."""
    with torch.no_grad():
        out = net(x.unsqueeze(0))[0]
    r = (out * select).flatten()
    return _back(list(net), x.unsqueeze(0), r, rule, kw).reshape(x.shape)


def select(net: nn.Module, x: torch.Tensor, target) -> torch.Tensor:
    """One-hot of ``target`` shaped like the output of ``net`` for one input ``x`` (no batch dim)."""
    with torch.no_grad():
        out = net(x.unsqueeze(0))[0]
    sel = torch.zeros_like(out)
    sel[target] = 1
    return sel
