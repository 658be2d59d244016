"""Running the accumulation over a corpus: in process or on Dask, resumable.

The corpus is cut into shards of ``shard_size`` utterances. Each shard is accumulated from zero in
utterance order, and shard results are merged in shard order, whichever engine computed them, so
``local`` and ``dask`` give bit-identical arrays. After each merged shard (at most every
``save_seconds``) the merged prefix is saved atomically to ``DIR/state``; ``resume`` continues
from there and gives the same arrays as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..audio import FeatureConfig
from ..corpus.load import utterance_features
from ..corpus.utterance import Utterance, fingerprint
from ..errors import InputError
from ..models.description import ModelDescription, describe
from ..models.identity import weights_fingerprint
from .accumulators import empty, merge, total
from .capture import Capture
from .collect import accumulate_utterance
from .settings import Layout, ProfileSettings

STATE_FORMAT = "introspeech-profiles-state/2"


@dataclass
class Accumulated:
    """Merged sums of a run, with what is needed to interpret them."""

    arrays: dict[str, np.ndarray]
    layout: Layout
    settings: ProfileSettings
    features: FeatureConfig
    errors: list[str] = field(default_factory=list)
    utterances: int = 0


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


Loader = Callable[[Utterance, FeatureConfig], np.ndarray]


def run_shard(model: nn.Module, features: FeatureConfig, layout: Layout, settings: ProfileSettings,
              utts: list[Utterance], loader: Loader = utterance_features,
              reuse: dict[str, np.ndarray] | None = None, strict: bool = False) -> tuple[dict[str, np.ndarray], list[str]]:
    """Accumulate one shard from zero; a bad utterance is reported and skipped. ``reuse``: the
    accumulators of an earlier shard, already merged, zeroed and filled again (fresh ones would
    pay a page fault per 4 KiB on their first write)."""
    if reuse is not None:
        for v in reuse.values():
            v.fill(0.0)
    acc = reuse if reuse is not None else empty(layout, settings)
    errors: list[str] = []
    was = model.training
    model.eval()
    try:
        with torch_threads(settings.threads), Capture(model, layout) as hooks:
            for u in utts:
                try:
                    feats = loader(u, features)
                    accumulate_utterance(acc, model, layout, settings, u, feats, features.frame_rate, hooks)
                except (InputError, ValueError) as e:
                    if strict:
                        raise
                    errors.append(f"{u.audio_path}: utterance {u.id}: {e}")
    finally:
        model.train(was)
    return acc, errors


_WORKER_MODELS: dict[str, nn.Module] = {}


def _remote_shard(token: str, model_bytes: bytes, *args) -> tuple[dict[str, np.ndarray], list[str]]:
    """`run_shard` on a Dask worker; the model is unpickled once per worker and run."""
    if token not in _WORKER_MODELS:
        _WORKER_MODELS.clear()
        _WORKER_MODELS[token] = pickle.loads(model_bytes)
    return run_shard(_WORKER_MODELS[token], *args)


class State:
    """The saved merged prefix of a run (``DIR/state/arrays.npz`` + ``progress.json``)."""

    def __init__(self, folder: Path | None, meta: dict):
        self.folder = folder
        self.meta = meta

    @property
    def _json(self) -> Path:
        return self.folder / "progress.json"

    def load(self) -> tuple[int, dict[str, np.ndarray] | None, list[str]]:
        if self.folder is None or not self._json.is_file():
            return 0, None, []
        saved = json.loads(self._json.read_text())
        for key in ("format", "settings", "model", "corpus", "shard_size", "layers", "features"):
            if saved.get(key) != self.meta[key]:
                what = ("the model's weights differ from the saved run's" if key == "model" else
                        f"{key} differs from this run ({saved.get(key)!r} vs {self.meta[key]!r})")
                raise InputError(self._json, f"cannot resume: {what}; use another --out or drop --resume")
        with np.load(self.folder / "arrays.npz") as z:
            arrays = {k: z[k] for k in z.files}
        return saved["next_shard"], arrays, saved["errors"]

    def save(self, next_shard: int, arrays: dict[str, np.ndarray], errors: list[str]) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / "arrays.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, self.folder / "arrays.npz")
        meta = {**self.meta, "next_shard": next_shard, "errors": errors}
        (self.folder / "progress.tmp.json").write_text(json.dumps(meta))
        os.replace(self.folder / "progress.tmp.json", self._json)


def profile_corpus(model: nn.Module | ModelDescription, features: FeatureConfig, utts: list[Utterance],
                   settings: ProfileSettings = ProfileSettings(), state_dir: str | Path | None = None,
                   resume: bool = False, engine: str = "local", workers: int = 2, scheduler: str | None = None,
                   shard_size: int = 64, save_seconds: float = 0.0, max_shards: int | None = None,
                   progress: Callable[[int, int], None] | None = None, loader: Loader = utterance_features,
                   strict: bool = False) -> Accumulated:
    """Accumulate NAPs and patterns over ``utts``; see the module docstring for engines and resume.

    ``loader(utterance, features)`` gives normalized features (default: cached or computed from the
    audio); on Dask it must be picklable.
    ``max_shards`` stops after that many shards of this call (a deterministic interruption).
    ``model``: a `ModelDescription` (any model), or a module (described by `models.describe`).
    ``strict``: the first bad utterance raises (default: it is skipped and listed in ``errors``)."""
    desc = model if isinstance(model, ModelDescription) else describe(model, features=features)
    model = desc.module
    if "letters" in settings.groups and desc.output.kind != "ctc":
        raise InputError(desc.name, f"letter profiles need a CTC output over letters; this model's output is "
                                    f"{desc.output.kind!r} (profile --groups phonemes)")
    if engine not in ("local", "dask"):
        raise ValueError(f"engine must be 'local' or 'dask', not {engine!r}")
    if shard_size < 1:
        raise ValueError("shard_size must be ≥ 1")
    layout = Layout.of(desc)
    if "letters" in settings.groups and settings.letters_from == "reference" and not desc.output.spells:
        raise InputError(desc.name, "its outputs are phonemes, which a transcript cannot be force-aligned to: profile "
                                    "its output symbols from its own predictions (--letters-from prediction) or "
                                    "phonemes only (--groups phonemes)")
    shards = [utts[i:i + shard_size] for i in range(0, len(utts), shard_size)]
    meta = {"format": STATE_FORMAT, "settings": settings.to_dict(), "model": weights_fingerprint(model),
            "corpus": fingerprint(utts),
            "shard_size": shard_size, "layers": list(layout.layers), "features": features.to_dict()}
    state = State(Path(state_dir) if state_dir is not None else None, meta)
    start, arrays, errors = state.load() if resume else (0, None, [])
    stop = len(shards) if max_shards is None else min(len(shards), start + max_shards)
    last_save = time.perf_counter()
    done = start
    if progress:
        progress(sum(len(s) for s in shards[:done]), len(utts))
    spare: list = []  # the local engine reuses merged shard accumulators
    for k, (part, errs) in _results(model, features, layout, settings, shards, start, stop, engine, workers, scheduler,
                                     loader, spare, strict):
        if arrays is None:
            arrays = part  # 0 + x == x: adopting the first shard is exact
        else:
            merge(arrays, part)
            spare.append(part)
        errors += errs
        done = k + 1
        if progress:
            progress(sum(len(s) for s in shards[:done]), len(utts))
        if time.perf_counter() - last_save > save_seconds or done == stop:
            state.save(done, arrays, errors)
            last_save = time.perf_counter()
    if arrays is None:  # no shard ran (empty corpus, or nothing left to resume)
        arrays = empty(layout, settings)
    return Accumulated(arrays, layout, settings, features, errors, total(arrays, "utterances"))


def local_cluster(workers: int):
    """A Dask cluster of ``workers`` single-threaded processes on this machine.

    Dask's nannies set ``MALLOC_TRIM_THRESHOLD_`` in their workers, and any such setting turns off
    glibc's adaptive mmap threshold: every activation of the forward pass is then a fresh mmap with
    its page faults, which made a worker 1.5–1.7× slower per utterance than this process. Here the
    variable is left unset (an existing cluster, ``--scheduler``, keeps its own configuration)."""
    import dask
    from dask.distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)


def _results(model, features, layout, settings, shards, start: int, stop: int, engine: str, workers: int,
             scheduler: str | None, loader: Loader, spare: list, strict: bool = False
             ) -> Iterator[tuple[int, tuple[dict, list[str]]]]:
    """Shard results in shard order; the local engine takes accumulators to reuse from ``spare``."""
    if engine == "local":
        for k in range(start, stop):
            yield k, run_shard(model, features, layout, settings, shards[k], loader, spare.pop() if spare else None,
                               strict)
        return
    from dask.distributed import Client, as_completed

    with contextlib.ExitStack() as stack:
        if scheduler:
            client = stack.enter_context(Client(scheduler))
        else:
            cluster = stack.enter_context(local_cluster(workers))
            client = stack.enter_context(Client(cluster))
        token = uuid.uuid4().hex[:12]
        # plain pickle bytes: dask's own torch serialization loses the modules' hook dictionaries
        remote = client.scatter(pickle.dumps(model), broadcast=True)

        def submit(k: int):
            return client.submit(_remote_shard, token, remote, features, layout, settings, shards[k], loader, None,
                                 strict, pure=False, key=f"introspeech-shard-{token}-{k}")

        n_workers = max(1, len(client.scheduler_info()["workers"]))
        window = 2 * n_workers  # shards in flight: memory stays bounded
        pending: dict[int, object] = {}
        ready: dict[int, tuple] = {}
        nxt = start
        futures = as_completed()
        emit = start
        while nxt < stop and nxt - emit < window:
            pending[nxt] = submit(nxt)
            futures.add(pending[nxt])
            nxt += 1
        for f in futures:
            k = int(f.key.split("-")[-1])
            ready[k] = f.result()
            del pending[k]
            f.release()
            while emit in ready:
                yield emit, ready.pop(emit)
                emit += 1
            while nxt < stop and nxt - emit < window:
                pending[nxt] = submit(nxt)
                futures.add(pending[nxt])
                nxt += 1
