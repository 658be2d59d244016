"""All output frames of a model without locality (attention, global pooling, squeeze-excitation):
one shared forward pass, then batched backward passes.

Every output frame of such a model may depend on every input frame, so each needs a backward pass
of its own; the forward pass, though, is the same for all of them. For a method whose backward is
linear in the output gradient (the gradient family, LRP with any composite and attention rules,
rule-based deep Taylor), each point of the method's `methods.Plan` is run forward once, with the
rules' hooks, and the graph is kept; the one-hot output gradients of ``chunk`` frames at a time
are then pulled back together (the backward pass vectorized over frames: ``torch.func.vmap`` of
the pull-back for the plain gradient, ``torch.autograd.grad(..., is_grads_batched=True)`` through
the rules' autograd functions). Where functorch has no batching rule for some backward formula
(PyTorch's CPU flash attention), it would run the rows one by one with overhead, so after a
first chunk of two the plain gradient pulls frames back one at a time through the same shared
graph (the rules' batched pull-back stays faster even there). The result equals `attribute` called frame by frame; memory grows
with ``chunk``, not with the number of frames. A sequence-to-sequence model explained through
`outputs.Scores` (decoder teacher-forced) gets every decoded token's map this way.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn

from . import methods as m
from .hooks import forward_graph


def batched_frames(model: nn.Module, x: torch.Tensor, todo: list[int], cls: torch.Tensor, plan: m.Plan,
                   chunk: int = 16, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Dense maps ``(len(todo), *x.shape[1:])`` of frames ``todo`` (classes ``cls[t]``) of a
    ``(1, C, T)``-output model, for one utterance ``x``."""
    x0 = plan.points[0].input
    result = torch.zeros(len(todo), *x0.shape[1:], dtype=x.dtype, device=x.device)
    per = max(1, plan.rows or len(plan.points))
    frames = torch.as_tensor(todo, dtype=torch.long, device=x.device)
    classes = cls.to(x.device)[frames] if len(todo) else frames
    chunk = max(1, chunk)
    fallback = None  # plain gradient: whether functorch lacks a batching rule (then frames go one by one)
    done, total = 0, len(todo) * ((len(plan.points) + per - 1) // per)
    for k0 in range(0, len(plan.points), per):
        points = plan.points[k0:k0 + per]
        inp = torch.cat([p.input for p in points]) if len(points) > 1 else points[0].input
        if plan.backward.plain:  # the plain gradient: functorch's vmap batches more backward formulas than autograd's
            out, pull = torch.func.vjp(model, inp.detach())
            vectorized = torch.func.vmap(pull)
        else:
            xin, out = forward_graph(model, inp, plan.backward)
        if out.dim() != 3:
            raise ValueError(f"attribute_frames needs (batch, classes, frames) outputs, the model gives "
                             f"{tuple(out.shape)}")
        value = out.detach()
        c0 = 0
        while c0 < len(todo):
            probe = plan.backward.plain and fallback is None  # a first small chunk: does vmap batch?
            n = min(2 if probe else chunk, len(todo) - c0)
            rows = torch.arange(n, device=x.device)
            grads = torch.zeros(n, *out.shape, dtype=out.dtype, device=out.device)
            grads[rows, :, classes[c0:c0 + n], frames[c0:c0 + n]] = 1.0
            if plan.backward.relevance:
                grads = grads * value
            if not plan.backward.plain:  # through the rules' functions: batched (faster even where vmap loops)
                (g,) = torch.autograd.grad(out, xin, grads, retain_graph=True, is_grads_batched=True)
            elif fallback is None:  # the first chunk tells whether vmap batches every backward formula
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    g = vectorized(grads)[0].detach()
                fallback = any("batching rule" in str(w.message) for w in caught)
            elif fallback:  # vmap would loop over the rows anyway, with overhead (CPU flash attention)
                g = torch.stack([pull(row)[0] for row in grads]).detach()
            else:
                g = vectorized(grads)[0].detach()
            g = g.reshape(n, len(points), *x0.shape[1:])
            for j, p in enumerate(points):
                term = g[:, j] * p.multiplier if p.multiplier is not None else g[:, j]
                result[c0:c0 + n] += term * p.weight if p.weight != 1.0 else term
            done += n
            c0 += n
            if progress:
                progress(done, total)
        del out
    if plan.post is not None:
        result = plan.post * result
    return plan.finish(result) if plan.finish is not None else result
