"""Attention models written as users write them (random weights), and an independent reference
of AttnLRP / CP-LRP in gradient×input form (Arras et al. 2025; LXT's "efficient" rules).

The reference runs each model's forward again, by hand, with the rules built into the forward
pass: an elementwise nonlinearity f becomes x·(f(x)/x) held (its local derivative is f(x)/x, so
relevance passes unchanged), normalizations divide by a held standard deviation, a product of two
input-dependent factors a·b is ½(a·b̄ + ā·b) (bars: held), softmax is differentiated (AttnLRP) or
held (CP-LRP); then relevance = x ⊙ ∂(selected scores)/∂x. With ε → 0 this equals LRP-ε with these
rules. Nothing here shares code with introspeech.attribution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from examples.conformer import ConformerCTC
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten


# -- the models --------------------------------------------------------------------------------
class WhisperishAttention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d, bias=False), nn.Linear(d, d)
        self.out = nn.Linear(d, d)

    def forward(self, x, explicit: bool):
        b, t, d = x.shape
        q, k, v = (p(x).view(b, t, self.heads, -1).permute(0, 2, 1, 3) for p in (self.query, self.key, self.value))
        if explicit:
            w = F.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads), dim=-1)
            a = w @ v
        else:
            a = F.scaled_dot_product_attention(q, k, v)
        return self.out(a.permute(0, 2, 1, 3).flatten(start_dim=2))


class WhisperishBlock(nn.Module):
    def __init__(self, d: int, heads: int, explicit: bool):
        super().__init__()
        self.explicit = explicit
        self.attn_ln, self.attn = nn.LayerNorm(d), WhisperishAttention(d, heads)
        self.mlp_ln, self.mlp = nn.LayerNorm(d), nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x):
        x = x + self.attn(self.attn_ln(x), self.explicit)
        return x + self.mlp(self.mlp_ln(x))


class WhisperishEncoder(nn.Module):
    """(B, n_mels, T) → (B, T/2, classes): Conv1d + GELU front end, learned positions, explicit
    q/k/v attention (softmax written out, or ``F.scaled_dot_product_attention``), GELU MLP, a
    final LayerNorm and a linear head; frames first in the output, as transformers give them."""

    def __init__(self, n_mels: int = 6, d: int = 8, heads: int = 2, layers: int = 2, classes: int = 5,
                 n_ctx: int = 16, explicit: bool = True):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv1d(n_mels, d, 3, padding=1), nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.positions = nn.Parameter(torch.randn(n_ctx, d) * 0.5)
        self.blocks = nn.ModuleList([WhisperishBlock(d, heads, explicit) for _ in range(layers)])
        self.ln_post, self.head = nn.LayerNorm(d), nn.Linear(d, classes)

    def forward(self, x):
        x = F.gelu(self.conv1(x))
        x = F.gelu(self.conv2(x)).permute(0, 2, 1)
        x = x + self.positions[: x.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_post(x))


def randomize(model: nn.Module, seed: int = 0, bias_free: bool = False) -> nn.Module:
    """Weights and BatchNorm statistics away from their defaults (as after training), float64, eval."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") and bias_free:
                p.zero_()
            elif name.endswith("bias") or "norm" in name and p.dim() == 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if "norm" in name and "weight" in name else 0))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(max(1, p[0].numel())))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.copy_(0 if bias_free else torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.double().eval()


# -- the reference ---------------------------------------------------------------------------------
class Rules:
    """The gradient×input form of each rule; ``cp``: attention weights held (CP-LRP)."""

    def __init__(self, cp: bool = False):
        self.cp = cp

    @staticmethod
    def nonlinear(f, x):
        y = f(x)
        ratio = torch.where(x != 0, y / torch.where(x != 0, x, torch.ones_like(x)), torch.zeros_like(x))
        return x * ratio.detach()

    @staticmethod
    def product(a, b):
        return 0.5 * (a * b.detach()) + 0.5 * (a.detach() * b)

    @staticmethod
    def bilinear(a, b):
        return 0.5 * (a @ b.detach()) + 0.5 * (a.detach() @ b)

    def softmax(self, s):
        w = torch.softmax(s, -1)
        return w.detach() if self.cp else w

    def attention(self, q, k, v, scale):
        w = self.softmax(self.bilinear(q, k.transpose(-1, -2)) * scale)
        return w @ v if self.cp else self.bilinear(w, v)

    @staticmethod
    def layer_norm(m: nn.LayerNorm, x):
        sigma = torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + m.eps).detach()
        return (x - x.mean(-1, keepdim=True)) / sigma * m.weight + m.bias

    @staticmethod
    def batch_norm(m: nn.BatchNorm1d, x):
        shape = (1, -1, 1)
        return (x - m.running_mean.reshape(shape)) / torch.sqrt(m.running_var.reshape(shape) + m.eps) \
            * m.weight.reshape(shape) + m.bias.reshape(shape)

    def mha(self, m: nn.MultiheadAttention, x):
        b, t, d = x.shape
        h = m.num_heads
        qkv = F.linear(x, m.in_proj_weight, m.in_proj_bias)
        q, k, v = (z.reshape(b, t, h, d // h).transpose(1, 2) for z in qkv.chunk(3, -1))
        a = self.attention(q, k, v, 1 / math.sqrt(d // h)).transpose(1, 2).reshape(b, t, d)
        return F.linear(a, m.out_proj.weight, m.out_proj.bias)


def conformer_forward(model: ConformerCTC, x, r: Rules):
    sub = model.subsample
    y = r.nonlinear(torch.relu, sub[0](x))
    y = r.nonlinear(torch.relu, sub[2](y)).transpose(1, 2)

    def ff(m, z):
        return z + 0.5 * m.down(r.nonlinear(F.silu, m.up(r.layer_norm(m.norm, z))))

    for blk in model.blocks:
        y = ff(blk.ff1, y)
        y = y + r.mha(blk.attn, r.layer_norm(blk.attn_norm, y))
        c = blk.conv
        z = r.layer_norm(c.norm, y).transpose(1, 2)
        a, g = c.pw1(z).chunk(2, 1)
        z = r.product(a, r.nonlinear(torch.sigmoid, g))
        z = r.nonlinear(F.silu, r.batch_norm(c.bn, c.dw(z)))
        gate = r.nonlinear(torch.sigmoid, c.se_up(r.nonlinear(F.silu, c.se_down(z.mean(-1)))))
        z = c.pw2(r.product(z, gate.unsqueeze(-1)))
        y = y + z.transpose(1, 2)
        y = r.layer_norm(blk.out_norm, ff(blk.ff2, y))
    return model.head(y).transpose(1, 2)


def whisperish_forward(model: WhisperishEncoder, x, r: Rules):
    y = r.nonlinear(F.gelu, model.conv1(x))
    y = r.nonlinear(F.gelu, model.conv2(y)).permute(0, 2, 1)
    y = y + model.positions[: y.shape[1]]
    for blk in model.blocks:
        at = blk.attn
        z = r.layer_norm(blk.attn_ln, y)
        b, t, d = z.shape
        q, k, v = (p(z).view(b, t, at.heads, -1).permute(0, 2, 1, 3) for p in (at.query, at.key, at.value))
        a = r.attention(q, k, v, 1 / math.sqrt(d // at.heads))
        y = y + at.out(a.permute(0, 2, 1, 3).flatten(start_dim=2))
        m = blk.mlp
        y = y + m[2](r.nonlinear(F.gelu, m[0](r.layer_norm(blk.mlp_ln, y))))
    return model.head(r.layer_norm(model.ln_post, y))


def reference(forward, model, x: torch.Tensor, selector: torch.Tensor, cp: bool = False) -> torch.Tensor:
    """Relevance of ``x`` for the scores ``selector`` picks (shaped like the output)."""
    x = x.detach().clone().requires_grad_(True)
    out = forward(model, x, Rules(cp))
    (g,) = torch.autograd.grad((out * selector).sum(), x)
    return (x * g).detach()


class GradientForm(TorchFunctionMode):
    """The same reference for any model (a Hugging Face one): the rules applied to the operations
    its modules call, for a model whose parameters do not require grad (so that ``requires_grad``
    marks what depends on the input)."""

    NONLINEAR = {"gelu", "silu", "sigmoid", "tanh", "relu"}

    def __init__(self, cp: bool = False):
        super().__init__()
        self.cp = cp

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        live = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor) and a.requires_grad]
        if not live:
            return func(*args, **kwargs)
        if name in self.NONLINEAR:
            return Rules.nonlinear(lambda t: func(t, *args[1:], **kwargs), args[0])
        if name == "layer_norm":
            x, shape = args[0], tuple(args[1])
            w, b = (args[2] if len(args) > 2 else kwargs.get("weight")), (args[3] if len(args) > 3 else kwargs.get("bias"))
            eps = args[4] if len(args) > 4 else kwargs.get("eps", 1e-5)
            dims = tuple(range(-len(shape), 0))
            sigma = torch.sqrt(x.var(dims, unbiased=False, keepdim=True) + eps).detach()
            return (x - x.mean(dims, keepdim=True)) / sigma * w + b
        if name == "group_norm":
            names = ("input", "num_groups", "weight", "bias", "eps")
            call = {**dict(zip(names, args)), **kwargs}
            x, groups, w, b, eps = (call.get(n) for n in names)
            eps = 1e-5 if eps is None else eps
            n, c = x.shape[:2]
            xg = x.reshape(n, groups, -1)
            sigma = torch.sqrt(xg.var(-1, unbiased=False, keepdim=True) + eps).detach()
            y = ((xg - xg.mean(-1, keepdim=True)) / sigma).reshape(x.shape)
            shape = (1, c) + (1,) * (x.dim() - 2)
            return y * w.reshape(shape) + b.reshape(shape)
        both = len(args) >= 2 and all(isinstance(a, torch.Tensor) and a.requires_grad for a in args[:2])
        if name in ("mul", "__mul__", "__rmul__") and both:
            return Rules.product(args[0], args[1])
        if name in ("matmul", "__matmul__", "bmm") and both:
            return Rules.bilinear(args[0], args[1])
        if name == "softmax" and self.cp:
            return func(*args, **kwargs).detach()
        if name in ("scaled_dot_product_attention", "multi_head_attention_forward"):
            raise NotImplementedError("the reference runs attention written out (eager)")
        return func(*args, **kwargs)


def reference_any(model, x: torch.Tensor, selector: torch.Tensor, cp: bool = False) -> torch.Tensor:
    """`reference` through `GradientForm` on a copy of ``model`` whose parameters are frozen."""
    import copy

    frozen = copy.deepcopy(model).requires_grad_(False)
    x = x.detach().clone().requires_grad_(True)
    with GradientForm(cp):
        out = frozen(x)
    (g,) = torch.autograd.grad((out * selector).sum(), x)
    return (x * g).detach()


def whisperish() -> nn.Module:
    """For ``--model-factory tests.attention_nets:whisperish``: the Whisper-like encoder over the
    built-in 40 Mel bands and 29 letters, frames first (wrapped as `Scores`)."""
    from introspeech.attribution import Scores

    torch.manual_seed(0)
    return Scores(WhisperishEncoder(n_mels=40, d=16, heads=2, layers=2, classes=29, n_ctx=2048, explicit=False),
                  time_axis=1)
