"""Do the units that NAPs single out matter? Mean ablations of ranked units, against random units,
with attribution patching beside every exact ablation.

For each layer, labelling (letters, phonemes) and group g present in both sets of utterances:

- units are ranked on one set (``rank``) by **NAP contrast** (the group's mean activation minus
  the mean over all frames, `profiles`) and by **latent relevance** (gradient × activation at the
  layer of the group's aligned log-posteriors, summed over its frames);
- on the other set (``measure``; other speakers by default) the top k units are set to their
  corpus mean at every frame (k = 1, 2, 4, …) and the **effect** is the drop of the group's
  log-posteriors at its aligned frames (`causal.targets`), per entry, in nats; the same drop on
  the other groups' entries gives the **selectivity** (effect − drop elsewhere);
- k random units of the same layer (``draws`` draws, shared by every group) give the random band
  and a permutation p (the share of draws whose group-averaged effect reaches the ranked one's);
- **attribution patching** estimates every one of these ablations to first order from one
  forward and one backward pass per group and utterance: drop ≈ −Σ_u Σ_t (m_u − a_u,t) ∂L_g/∂a_u,t
  / n_g, with L_g the sum of the group's log-posteriors; its agreement with the exact drops is a
  rank correlation.

The units are a layer's neurons, or the features of a sparse autoencoder of the layer
(`causal.basis`: a feature is set to its mean code, the SAE's reconstruction error kept).
Ablations run batched: the same utterance repeated, one set of units per batch element
(`interventions.mean_ablations`). Per-utterance sums are kept, so `summary` bootstraps intervals
over utterances.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..attribution.hooks import preserved
from ..corpus.load import load_features
from ..corpus.utterance import Utterance
from ..models.description import ModelDescription
from ..profiles import results as R
from ..profiles.engine import Accumulated
from ..profiles.settings import Layout
from .basis import Features, Neurons, feature_naps
from .sae import TopKSAE
from .targets import Targets, model_targets, token_scorer

RANKINGS = ("nap", "gradient")


@dataclass(frozen=True)
class AblationSettings:
    """What the sweep covers (see the module docstring)."""

    layers: tuple[str, ...] = ()  # () = every profiled layer
    kinds: tuple[str, ...] = ("letters", "phonemes")
    ks: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    draws: int = 8  # random unit sets per layer and k
    min_count: int = 10  # entries a group needs in each set
    batch: int = 64  # ablations per forward pass
    seed: int = 0


@dataclass
class Sweep:
    """Per-utterance sums of the measured set (``U`` utterances) for every layer ``L``, ranking
    ``2``, k ``K``, group ``G`` (groups of both kinds, named in ``groups``), draw ``D``."""

    layers: list[str]
    groups: list[tuple[str, str]]  # (kind, name)
    ks: list[int]
    units: dict  # (layer, ranking, kind, group index in its kind) -> ranked units (np.ndarray)
    count: np.ndarray  # (U, G) entries of each group
    kind_count: np.ndarray  # (U, G) entries of each group's kind
    target: np.ndarray  # (U, L, 2, K, G) summed drop of g's entries when g's units are ablated
    kind_all: np.ndarray  # (U, L, 2, K, G) summed drop of every entry of g's kind, same ablation
    random: np.ndarray  # (U, L, K, D, G) summed drop of g's entries, random units
    patched: np.ndarray  # (U, L, 2, K, G) attribution patching's estimate of ``target``
    utterances: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    basis: str = "neurons"  # or "features" (of SAEs)


def _capture(model, paths: list[str]):
    """Forward hooks keeping the outputs (in the graph) of the modules at ``paths``."""
    named = dict(model.named_modules())
    acts: dict[str, torch.Tensor] = {}
    handles = [named[p].register_forward_hook(lambda _m, _i, o, p=p: acts.__setitem__(p, o)) for p in paths]
    return acts, handles


def _channels_last(a: torch.Tensor, time_axis: int) -> torch.Tensor:
    """``(time, channels)`` of a batch-of-one layer output."""
    a = a[0]
    return a.transpose(0, 1) if time_axis == -1 else a


def gradient_sums(desc: ModelDescription, layout: Layout, t: Targets, layers: list[int], groups: list[tuple[str, int]],
                  bases: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per layer and group: Σ_t ∂L_g/∂u_t and Σ_t u_t·∂L_g/∂u_t over the units u of each layer's
    basis (neurons by default; each ``(L, G, W_max)``, zeros where a group has no entry here); L_g
    is the sum of the group's aligned log-posteriors."""
    model = desc.module
    paths = [layout.paths[i] for i in layers]
    bases = bases or [Neurons()] * len(layers)
    width = max(b.width(layout.channels[i]) for b, i in zip(bases, layers))
    codes: dict[int, torch.Tensor] = {}
    g_sum = np.zeros((len(layers), len(groups), width))
    ga_sum = np.zeros_like(g_sum)
    acts, handles = _capture(model, paths)
    try:
        with torch.enable_grad():
            picked = t.picked(model, t.x)[0]
            chosen = [acts[p] for p in paths]
            present = [j for j, (kind, g) in enumerate(groups) if bool(t.member(kind, g).any())]
            member = torch.stack([torch.from_numpy(t.member(*groups[j])).double() for j in present]) \
                if present else torch.zeros(0, len(picked), dtype=torch.float64)
            # L_g is linear in the entries: with fewer entries than groups, pull back each entry once
            rows = member if len(member) <= len(picked) else torch.eye(len(picked), dtype=torch.float64)
            row_g = [np.zeros((len(rows), bases[i].width(layout.channels[layers[i]]))) for i in range(len(chosen))]
            row_ga = [np.zeros_like(r) for r in row_g]
            for r, grads in enumerate(_pullbacks(picked, chosen, rows)):
                for i, (a, gr) in enumerate(zip(chosen, grads)):
                    axis = layout.time_axes[layers[i]]
                    n = _speech_frames(layout, layers[i], t)
                    if i not in codes:
                        codes[i] = bases[i].codes(_channels_last(a.detach(), axis)[:n].double())
                    u, g2 = codes[i], bases[i].pull(_channels_last(gr, axis)[:n].double())
                    row_g[i][r] = g2.sum(0).numpy()
                    row_ga[i][r] = (u * g2).sum(0).numpy()
            combine = member.numpy() if rows is not member else None
            for i in range(len(chosen)):
                w = row_g[i].shape[1]
                g_sum[i, present, :w] = row_g[i] if combine is None else combine @ row_g[i]
                ga_sum[i, present, :w] = row_ga[i] if combine is None else combine @ row_ga[i]
    finally:
        for h in handles:
            h.remove()
    return g_sum, ga_sum


def _pullbacks(picked: torch.Tensor, chosen: list[torch.Tensor], member: torch.Tensor, chunk: int = 8):
    """Per row of ``member`` (rows × entries), the gradients of Σ member·picked at ``chosen``, in
    order: ``chunk`` rows per batched backward pass where the model's operations allow it (vmap;
    chunks bound the memory of attention's batched gradients), else one pass per row (the same
    numbers)."""
    for a in range(0, len(member), chunk):
        rows = member[a:a + chunk].to(picked.dtype)
        try:
            batched = torch.autograd.grad(picked, chosen, grad_outputs=rows, retain_graph=True,
                                          is_grads_batched=True)
            yield from ([g[r] for g in batched] for r in range(len(rows)))
        except RuntimeError:  # an operation without a batching rule
            yield from (torch.autograd.grad((row * picked).sum(), chosen, retain_graph=True) for row in rows)


def _speech_frames(layout: Layout, i: int, t: Targets) -> int | None:
    """Frames of layer ``i`` that hold the utterance (None: all); a model that pads its input
    itself (Whisper's 30 s) has the rest, which no ablation touches and no gradient sum reads."""
    if t.speech_samples is None or layout.local:
        return None
    return layout.geometry[i].frames_within(t.speech_samples)


def _drops(desc: ModelDescription, t: Targets, base: torch.Tensor, path: str, time_axis: int, masks: torch.Tensor,
           mean: torch.Tensor, batch: int, basis=None, frames: int | None = None,
           broadcast: bool = False) -> torch.Tensor:
    """Drop of every entry's log-posterior ``(masks, entries)`` under each mask's mean ablation
    (of the first ``frames`` frames of the layer; all by default). ``broadcast``: the layers before
    the ablated one run once, on the input alone, and the ablated layer's output is copied once per
    mask (`_broadcast_agrees` checks that a model allows it); else the input is copied per mask."""
    out = []
    basis = basis or Neurons()
    for a in range(0, len(masks), batch):
        m = masks[a:a + batch]
        x = t.x if broadcast else t.x.expand(len(m), *t.x.shape[1:])
        with torch.no_grad(), basis.ablate(desc.module, path, m, mean, time_axis, frames, broadcast):
            picked = t.picked(desc.module, x, len(m))
        out.append(base[None] - picked)
    return torch.cat(out)


def _broadcast_agrees(desc: ModelDescription, t: Targets, base: torch.Tensor, path: str, time_axis: int,
                      masks: torch.Tensor, mean: torch.Tensor, basis, frames: int | None) -> bool:
    """Whether broadcast ablations of this layer give the plain ones' drops on a few masks (an
    operation that cannot mix a batch of one with a batch of many, or a result that differs, keeps
    the plain path)."""
    few = masks[:3]
    plain = _drops(desc, t, base, path, time_axis, few, mean, len(few), basis, frames)
    try:
        fast = _drops(desc, t, base, path, time_axis, few, mean, len(few), basis, frames, broadcast=True)
    except (RuntimeError, ValueError):
        return False
    return fast.shape == plain.shape and bool(torch.allclose(fast, plain, rtol=1e-4, atol=1e-4))


def rankings(desc: ModelDescription, layout: Layout, acc: Accumulated, rank_targets: list[Targets],
             layers: list[int], groups: list[tuple[str, int]], bases: list,
             feature_profiles: tuple[dict, dict] | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """Ranked units per (layer, ranking, kind, group) and each layer's mean-ablation value: for
    neurons the count-weighted mean of its phoneme NAPs (every frame of the alignment; letters
    without one), for SAE features their mean code (`basis.feature_naps`)."""
    means, units = {}, {}
    grads = None
    for t in rank_targets:
        _, ga = gradient_sums(desc, layout, t, layers, groups, bases)
        grads = ga if grads is None else grads + ga
    for li, i in enumerate(layers):
        name = layout.layers[i]
        width = bases[li].width(layout.channels[i])
        if isinstance(bases[li], Features):
            naps, mean_codes = feature_profiles
            means[name] = mean_codes[name]
            nap_of = {k: naps[(name, k)] for k in {k for k, _ in groups}}
        else:
            kind = "phonemes" if f"nap/{name}/phonemes/sum" in acc.arrays else "letters"
            nap, cnt = R.naps(acc, name, kind), acc.arrays[f"nap/{name}/{kind}/count"]
            ok = cnt > 0
            means[name] = (np.nan_to_num(nap[ok]) * cnt[ok, None]).sum(0) / cnt[ok].sum()
            nap_of = {k: R.naps(acc, name, k) for k in {k for k, _ in groups}}
        for j, (k, g) in enumerate(groups):
            contrast = nap_of[k][g] - means[name]
            units[(name, "nap", k, g)] = np.argsort(-np.nan_to_num(contrast, nan=-np.inf), kind="stable")
            units[(name, "gradient", k, g)] = np.argsort(-grads[li, j, :width], kind="stable")
    return units, means


def ablation_sweep(desc: ModelDescription, acc: Accumulated, rank: list[Utterance], measure: list[Utterance],
                   settings: AblationSettings = AblationSettings(),
                   progress: Callable[[str], None] | None = None, saes: dict[str, TopKSAE] | None = None) -> Sweep:
    """The sweep of the module docstring; ``acc``: NAPs of ``rank`` (`profiles.engine.profile_corpus`,
    both kinds). ``saes``: the units are these SAEs' features (`basis.Features`) in their layers
    (default: the layers' neurons). Unreadable utterances are skipped and listed in ``Sweep.errors``."""
    layout = acc.layout
    chosen = settings.layers or (tuple(saes) if saes else ())
    unknown = [n for n in chosen if n not in layout.layers or (saes is not None and n not in saes)]
    if unknown:
        raise ValueError(f"no profiled layer {unknown[0]!r}" + (" with an SAE" if saes is not None else "")
                         + f"; layers: {', '.join(saes if saes is not None else layout.layers)}")
    layers = [layout.layers.index(n) for n in chosen] if chosen else list(range(len(layout.layers)))
    bases = [Features(saes[layout.layers[i]]) if saes else Neurons() for i in layers]
    errors: list[str] = []
    scoring = token_scorer(desc)

    def targets(utts):
        got = []
        for u, f in load_features(utts, desc.features, on_error=lambda u, e: errors.append(f"{u.id}\t{e}")):
            try:
                got.append(model_targets(desc, layout, u, f, scoring))
            except Exception as e:  # noqa: BLE001 - listed, the sweep goes on
                errors.append(f"{u.id}\t{e}")
        return got
    with preserved(desc.module):
        rank_t, meas_t = targets(rank), targets(measure)
        if not rank_t or not meas_t:
            raise ValueError(f"no {'ranking' if not rank_t else 'measured'} utterance could be read "
                             f"({len(errors)} skipped)")
        groups = _groups(settings, layout, rank_t, meas_t)
        if not groups:
            raise ValueError(f"no {' or '.join(settings.kinds)} group has {settings.min_count} entries (--min-count) "
                             f"in both the {len(rank_t)} ranking and {len(meas_t)} measured utterances")
        if progress:
            progress(f"ranking units of {len(layers)} layers for {len(groups)} groups")
        profiles = feature_naps(desc, layout, rank, {layout.layers[i]: saes[layout.layers[i]] for i in layers},
                                settings.kinds) if saes else None
        units, means = rankings(desc, layout, acc, rank_t, layers, groups, bases, profiles)
        widths = [b.width(layout.channels[i]) for b, i in zip(bases, layers)]
        ks = [k for k in settings.ks if k <= max(widths)]  # a layer narrower than k has no cell for it (NaN)
        if not ks:
            raise ValueError(f"every k of --k {list(settings.ks)} exceeds the widest chosen layer ({max(widths)} units)")
        rng = np.random.default_rng(settings.seed)
        shape = (len(meas_t), len(layers), len(RANKINGS), len(ks), len(groups))
        sweep = Sweep([layout.layers[i] for i in layers], [(k, layout.groups(k)[g]) for k, g in groups], ks, units,
                      np.zeros((len(meas_t), len(groups))), np.zeros((len(meas_t), len(groups))), np.zeros(shape),
                      np.zeros(shape), np.zeros((len(meas_t), len(layers), len(ks), settings.draws, len(groups))),
                      np.zeros(shape), [t.utterance for t in meas_t], errors, bases[0].name)
        draws = {(i, k): [rng.choice(w, k, replace=False) for _ in range(settings.draws)]
                 for i, w in zip(layers, widths) for k in ks if k <= w}
        fast: dict[str, bool] = {}
        for u, t in enumerate(meas_t):
            if progress:
                progress(f"ablations of {t.utterance} ({u + 1}/{len(meas_t)})")
            _measure(desc, layout, t, u, layers, groups, ks, units, means, draws, settings, sweep, bases, fast)
    return sweep


def _groups(settings: AblationSettings, layout: Layout, rank_t: list[Targets],
            meas_t: list[Targets]) -> list[tuple[str, int]]:
    """(kind, group) with at least ``min_count`` entries in both sets."""
    out = []
    for kind in settings.kinds:
        n = len(layout.groups(kind))
        a = sum((t.counts(kind, n) for t in rank_t), np.zeros(n, dtype=np.int64))
        b = sum((t.counts(kind, n) for t in meas_t), np.zeros(n, dtype=np.int64))
        out += [(kind, g) for g in range(n) if a[g] >= settings.min_count and b[g] >= settings.min_count]
    return out


def _measure(desc, layout, t: Targets, u: int, layers, groups, ks, units, means, draws, settings, sweep: Sweep,
             bases: list, fast: dict[str, bool]) -> None:
    """One measured utterance's sums into ``sweep`` (index ``u``); ``fast``: per layer, whether its
    ablations broadcast (decided on the first utterance)."""
    member = np.stack([t.member(k, g) for k, g in groups])  # (G, entries)
    kinds = np.stack([t.labelled(k) for k, _ in groups])
    sweep.count[u] = member.sum(1)
    sweep.kind_count[u] = kinds.sum(1)
    with torch.no_grad():
        base = t.picked(desc.module, t.x)[0]
    g_sum, ga_sum = gradient_sums(desc, layout, t, layers, groups, bases)
    mem, kin = torch.from_numpy(member).double(), torch.from_numpy(kinds).double()
    for li, i in enumerate(layers):
        name, c = layout.layers[i], bases[li].width(layout.channels[i])
        m = torch.from_numpy(means[name])
        fit = [ki for ki, k in enumerate(ks) if k <= c]  # the others stay NaN for this layer
        combos = [(r, ki, j) for r in range(len(RANKINGS)) for ki in fit for j in range(len(groups))]
        masks = torch.zeros(len(combos) + len(fit) * settings.draws, c, dtype=torch.bool)
        for n, (r, ki, j) in enumerate(combos):
            kind, g = groups[j]
            masks[n, units[(name, RANKINGS[r], kind, g)][:ks[ki]]] = True
        for f, ki in enumerate(fit):
            for d, sel in enumerate(draws[(i, ks[ki])]):
                masks[len(combos) + f * settings.draws + d, sel] = True
        frames = _speech_frames(layout, i, t)
        if name not in fast:
            fast[name] = _broadcast_agrees(desc, t, base, layout.paths[i], layout.time_axes[i], masks, m, bases[li],
                                           frames)
        drops = _drops(desc, t, base, layout.paths[i], layout.time_axes[i], masks, m, settings.batch, bases[li],
                       frames, fast[name])
        ranked, rand = drops[:len(combos)], drops[len(combos):]
        for n, (r, ki, j) in enumerate(combos):
            sweep.target[u, li, r, ki, j] = float(ranked[n] @ mem[j])
            sweep.kind_all[u, li, r, ki, j] = float(ranked[n] @ kin[j])
            sel = masks[n].numpy()
            # first order: ΔL_g ≈ Σ_units (m_u ΣG_u − Σ a·G), the drop is its negative
            sweep.patched[u, li, r, ki, j] = -float((means[name][sel] * g_sum[li, j, :c][sel]).sum()
                                                    - ga_sum[li, j, :c][sel].sum())
        rest = [ki for ki in range(len(ks)) if ki not in fit]
        for arr in (sweep.target, sweep.kind_all, sweep.patched):
            arr[u, li, :, rest] = np.nan
        sweep.random[u, li, rest] = np.nan
        sweep.random[u, li, fit] = (rand @ mem.T).reshape(len(fit), settings.draws, len(groups)).numpy()
