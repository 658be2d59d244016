"""`introspeech synth`: a deterministic multi-synthesizer corpus with exact phone timings.

Layout of the output folder::

    corpus.json                 summary: hours, counts, voices per split, settings, checks
    {train,valid,test,heldout}.jsonl   manifests (audio path, text, duration, words, phones)
    audio/SPLIT/ID.flac         16 kHz mono FLAC
    features/SPLIT/ID.npy       log-Mel (before normalization, float16), see features/config.json

Splits are made by sentence (no sentence of valid/test is ever trained on); ``heldout`` uses test
sentences spoken by voices that never occur in training (some of each synthesizer).

Two training-only variants add what the standard corpus lacks: ``accented`` (festival's foreign
voices speaking English) and ``piper`` (a neural voice made from a real speaker's recordings).
``kokoro`` is a corpus of its own splits spoken by Kokoro-82M's English voices and seeded blends of
them; its ``heldout`` split is spoken by `kokoro_voice.HELDOUT` alone.

Each finished task is appended to ``progress.log`` at once; ``resume`` reads it back and renders
only what is missing, so a stop loses the tasks in flight and nothing else. An interrupted run
(Ctrl-C, SIGTERM) still writes the manifests and summary of what is done (``complete``: false):
a partial corpus can be trained on while the rest is made.
``augment`` passes that share of the training utterances through `acoustics` (speed, rooms,
noise, channels); valid, test and held-out audio stay clean.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...audio import PRESETS, SAMPLE_RATE, FeatureConfig, log_mel
from ...text import SILENCE, cmu_dictionary
from ..manifest import utterance_to_json
from ..utterance import Segment, Utterance
from .acoustics import EFFECTS, Acoustics
from .base import Rendered, Voice
from .sentences import sentence_pool

SPLITS = ("train", "valid", "test", "heldout")
SPLIT_SHARE = {"train": 0.90, "valid": 0.035, "test": 0.035, "heldout": 0.03}
SYNTH_SHARE = {"espeak": 0.5, "flite": 0.25, "festival": 0.25}
HELDOUT_FLITE = ("rms",)
HELDOUT_FESTIVAL = ("ked_diphone",)
FESTIVAL_BATCH = 24
KOKORO_FEMALE = 0.55  # share of Kokoro utterances spoken by female voices


@dataclass(frozen=True)
class Job:
    id: str
    split: str
    text: str
    voice: Voice
    augment: int | None = None  # seed of the acoustic effects, None: clean
    effects: tuple[str, ...] = EFFECTS  # which effects of the chain may apply (`Acoustics.only`)


def voice_inventory() -> dict[str, dict[str, list[str]]]:
    """Voice names per synthesizer, divided into training and held-out voices.

    Every 8th espeak variant (sorted by name) and one flite and one festival voice are held out.
    """
    from .cmu_voices import FESTIVAL_VOICES, FLITE_VOICES
    from .espeak import variants

    var = variants()
    held_var = var[3::8]
    return {
        "espeak": {"train": [v for v in var if v not in held_var], "heldout": held_var},
        "flite": {"train": [v for v in FLITE_VOICES if v not in HELDOUT_FLITE], "heldout": list(HELDOUT_FLITE)},
        "festival": {"train": [v for v in FESTIVAL_VOICES if v not in HELDOUT_FESTIVAL],
                     "heldout": list(HELDOUT_FESTIVAL)},
    }


def _random_voice(rng: random.Random, synth: str, names: list[str]) -> Voice:
    if synth == "piper":
        return Voice("piper", names[0], (("length", round(rng.uniform(0.8, 1.3), 3)),
                                         ("noise", round(rng.uniform(0.4, 0.9), 3)),
                                         ("noise_w", round(rng.uniform(0.5, 1.0), 3))))
    if synth == "kokoro":
        from .kokoro_voice import is_female

        female = [n for n in names if is_female(n)]
        male = [n for n in names if not is_female(n)]
        side = female if female and (not male or rng.random() < KOKORO_FEMALE) else male
        return Voice("kokoro", rng.choice(side), (("speed", round(rng.uniform(0.85, 1.2), 3)),))
    if synth == "accented":
        from .accented import ACCENTED_VOICES

        name = rng.choice(names)
        lo, hi = ACCENTED_VOICES[name][1]
        return Voice("festival", name, (("stretch", round(rng.uniform(0.85, 1.2), 3)), ("f0", float(rng.randint(lo, hi)))))
    if synth == "espeak":
        from .espeak import ACCENTS

        name = f"{rng.choice(ACCENTS)}+{rng.choice(names)}"
        params = (("rate", float(rng.randint(130, 210))), ("pitch", float(rng.randint(25, 75))),
                  ("range", float(rng.randint(25, 85))))
    else:
        name = rng.choice(names)
        params = (("stretch", round(rng.uniform(0.85, 1.2), 3)),)
        if name in ("kal16", "kal_diphone", "ked_diphone"):
            params += (("f0", float(rng.randint(85, 150))),)
    return Voice(synth, name, params)


def _estimate_seconds(text: str, voice: Voice) -> float:
    if voice.synth == "kokoro":
        return (1.0 + 0.053 * len(text)) / voice.param("speed", 1.0)  # fitted on a synthesized sample
    rate = voice.param("rate", 175.0) / 175.0 if voice.synth == "espeak" else 1.0 / voice.param("stretch", 1.0)
    return 0.3 + 0.051 * len(text) / rate  # fitted on a synthesized sample


def plan(hours: float, seed: int, sentences: list[str] | None = None, accented: bool = False,
         piper: bool = False, augment: float = 0.0, phrases: float = 0.0, effects: tuple[str, ...] = EFFECTS,
         kokoro: tuple[str, ...] = ()) -> list[Job]:
    """The deterministic list of utterances for ``hours`` of audio (estimated from text length).

    ``accented``: training utterances only (the same training sentences as the standard corpus of
    this seed), all spoken by the accented festival voices of `accented`. ``piper``: training
    utterances only, the training sentences taken from the end of the list, spoken by Piper's voice.
    ``augment``: the share of training utterances given acoustic effects, those of ``effects``
    (each with its probability in `Acoustics`; default: all of them). ``phrases``: the share of
    training utterances that say only one to three consecutive words of their sentence (isolated
    words and short prompts, as real recordings often are). ``kokoro``: the Kokoro voices (and
    blends) to train on; all four splits, the training sentences taken from a third of the way
    along the list, the held-out split spoken by `kokoro_voice.HELDOUT`."""
    rng = random.Random(seed)
    pool = list(sentences if sentences is not None else sentence_pool())
    rng.shuffle(pool)
    n_eval = max(8, int(0.03 * len(pool)))
    by_split = {"valid": pool[:n_eval], "test": pool[n_eval:2 * n_eval], "train": pool[2 * n_eval:]}
    by_split["heldout"] = by_split["test"][::-1]
    inv = voice_inventory()
    synths = list(SYNTH_SHARE)
    weights = [SYNTH_SHARE[s] for s in synths]
    if accented:
        from .accented import ACCENTED_VOICES

        inv = {"accented": {"train": sorted(ACCENTED_VOICES)}}
        synths, weights = ["accented"], [1.0]
    if piper:
        from .piper_voice import VOICE_NAME

        inv = {"piper": {"train": [VOICE_NAME]}}
        synths, weights = ["piper"], [1.0]
        by_split["train"] = by_split["train"][::-1]
    if kokoro:
        from .kokoro_voice import HELDOUT

        inv = {"kokoro": {"train": list(kokoro), "heldout": list(HELDOUT)}}
        synths, weights = ["kokoro"], [1.0]
        third = len(by_split["train"]) // 3
        by_split["train"] = by_split["train"][third:] + by_split["train"][:third]
    train_only = accented or piper
    jobs: list[Job] = []
    for split in (("train",) if train_only else SPLITS):
        budget = hours * 3600 * (1.0 if train_only else SPLIT_SHARE[split])
        side = "heldout" if split == "heldout" else "train"
        sents = by_split[split]
        total, k = 0.0, 0
        while total < budget or k < 4:
            text = sents[k % len(sents)]
            if phrases and split == "train" and rng.random() < phrases:  # no draw without phrases
                words = text.split()
                n = min(rng.randint(1, 3), len(words))
                first = rng.randrange(len(words) - n + 1)
                text = " ".join(words[first:first + n])
            synth = rng.choices(synths, weights)[0]
            voice = _random_voice(rng, synth, inv[synth][side])
            # no draw without effects, so a corpus without them is the one this seed always gave
            seed_fx = rng.randrange(2 ** 31) if augment and split == "train" and rng.random() < augment else None
            jobs.append(Job(f"{split}-{k:06d}", split, text, voice, seed_fx, tuple(effects)))
            total += _estimate_seconds(text, voice)
            k += 1
    return jobs


# -- workers -----------------------------------------------------------------------------------
_BACKENDS: dict = {}


def _init_worker() -> None:
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's stop handler is not the workers': terminate ends them


def _backend(synth: str):
    """The back end of a synthesizer, made on first use in each worker (Kokoro's model is large)."""
    if synth not in _BACKENDS:
        if synth in ("flite", "festival"):
            from .cmu_voices import Festival, Flite

            _BACKENDS[synth] = Flite() if synth == "flite" else Festival()
        elif synth == "espeak":
            from .espeak import Espeak

            _BACKENDS[synth] = Espeak()
        elif synth == "piper":
            from .piper_voice import Piper

            _BACKENDS[synth] = Piper()
        elif synth == "kokoro":
            from .kokoro_voice import Kokoro

            _BACKENDS[synth] = Kokoro()
        else:
            raise ValueError(f"unknown synthesizer {synth!r}")
    return _BACKENDS[synth]


def _render(jobs: list[Job]) -> list[Rendered | Exception]:
    if jobs[0].voice.synth == "festival":
        try:
            return _backend("festival").render_batch([(j.text, j.voice) for j in jobs])
        except Exception as e:  # fall back to one at a time to isolate the failure
            if len(jobs) == 1:
                return [e]
            return [r for j in jobs for r in _render([j])]
    out: list[Rendered | Exception] = []
    for j in jobs:
        try:
            out.append(_backend(j.voice.synth).render(j.text, j.voice))
        except Exception as e:
            out.append(e)
    return out


def _work(args: tuple[list[Job], str, dict]) -> list[dict]:
    import soundfile as sf

    jobs, out_dir, cfg_dict = args
    out = Path(out_dir)
    cfg = FeatureConfig.from_dict(cfg_dict)
    results = []
    for job, r in zip(jobs, _render(jobs)):
        if isinstance(r, Exception):
            results.append({"id": job.id, "error": f"{type(r).__name__}: {r}"})
            continue
        if len(r.words) != len(job.text.split()):
            results.append({"id": job.id, "error": f"{len(r.words)} word spans for {len(job.text.split())} words"})
            continue
        extra = {"voice": job.voice.name, "synth": job.voice.synth, "prosody": dict(job.voice.params),
                 "split": job.split}
        if job.augment is not None:
            r, extra["augment"] = _augmented(r, job.augment, job.effects)
        audio = out / "audio" / job.split / f"{job.id}.flac"
        sf.write(str(audio), np.clip(r.wave, -1, 1), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        np.save(out / "features" / job.split / f"{job.id}.npy", log_mel(r.wave, cfg).astype(np.float16))
        utt = Utterance(job.id, audio, job.text, job.voice.speaker, len(r.wave) / SAMPLE_RATE, r.words, r.phones,
                        extra=extra)
        results.append({"id": job.id, "record": utterance_to_json(utt, out), "raw_phones": r.raw_phones})
    return results


def _augmented(r: Rendered, seed: int, effects: tuple[str, ...] = EFFECTS) -> tuple[Rendered, dict]:
    """The rendered utterance through `acoustics.apply` (the chain of ``effects``), its timings
    scaled with the audio."""
    from .acoustics import apply

    wave, scale, shift, record = apply(r.wave, seed, Acoustics.only(effects))
    end = len(wave) / SAMPLE_RATE

    def moved(segs: list[Segment]) -> list[Segment]:
        return [Segment(min(s.start * scale + shift, end), min(s.end * scale + shift, end), s.label) for s in segs]

    return Rendered(wave, moved(r.words), _cover(moved(r.phones), end), r.raw_phones), record


def _cover(phones: list[Segment], end: float) -> list[Segment]:
    """Phones contiguous from 0 to ``end``: an edge silence stretched to the edge, else a new one."""
    if not phones:
        return phones
    out = list(phones)
    if out[0].start > 0:
        out[:1] = ([Segment(0.0, out[0].end, SILENCE)] if out[0].label == SILENCE
                   else [Segment(0.0, out[0].start, SILENCE), out[0]])
    if out[-1].end < end - 1e-6:
        out[-1:] = ([Segment(out[-1].start, end, SILENCE)] if out[-1].label == SILENCE
                    else [out[-1], Segment(out[-1].end, end, SILENCE)])
    return out


def _chunks(jobs: list[Job]) -> list[list[Job]]:
    """Tasks of one synthesizer each: festival in batches (one process per batch), others in 8s."""
    out: list[list[Job]] = []
    cur: dict[str, list[Job]] = {}
    for j in jobs:
        bucket = cur.setdefault(j.voice.synth, [])
        bucket.append(j)
        if len(bucket) >= (FESTIVAL_BATCH if j.voice.synth == "festival" else 8):
            out.append(cur.pop(j.voice.synth))
    out.extend(b for b in cur.values() if b)
    return out


def cmudict_agreement(records: list[dict]) -> float:
    """Share of words whose aligned phones equal one of their CMUdict pronunciations."""
    cmu = cmu_dictionary()
    hit = total = 0
    for rec in records:
        phones = rec["phones"]
        for ws, we, word in rec["words"]:
            seq = [p for s, e, p in phones if s >= ws - 1e-6 and e <= we + 1e-6 and p != "sil"]
            total += 1
            hit += seq in cmu.get(word, [])
    return hit / max(total, 1)


def synthesize(out_dir: str | Path, hours: float, seed: int = 0, workers: int | None = None,
               features: FeatureConfig = PRESETS["default"], sentences: list[str] | None = None,
               progress: Callable[[int, int], None] | None = None, accented: bool = False,
               piper: bool = False, augment: float = 0.0, phrases: float = 0.0,
               effects: tuple[str, ...] = EFFECTS, kokoro: bool = False, voices: tuple[str, ...] | None = None,
               blends: int = 0, resume: bool = False, part: tuple[int, int] = (0, 1)) -> dict:
    """Write a corpus of about ``hours`` of audio to ``out_dir``; returns its summary.

    ``accented`` / ``piper``: a training-only corpus of accented voices or of Piper's voice (see
    `plan`), to train beside the standard corpus of the same seed. ``kokoro``: a corpus of Kokoro's
    English ``voices`` (default: all but the held-out ones) and ``blends`` seeded blends of them.
    ``augment``: the share of training utterances given acoustic effects (`acoustics`;
    ``effects``: which); ``phrases``: see `plan`. ``resume``: keep what an earlier run with the same
    settings finished (``progress.log``) and render only the rest. ``part``: ``(i, n)`` renders the
    i-th of n consecutive slices of the training utterances (the last slice with every evaluation
    utterance), so a corpus too long for one machine is made and trained on slice by slice; the
    slices of one seed and settings partition the same plan, and a folder may hold several of them
    (its manifests list the slice asked for)."""
    out = Path(out_dir)
    i_part, n_parts = part
    if not (n_parts >= 1 and 0 <= i_part < n_parts):
        raise ValueError(f"part {i_part} of {n_parts}: need 0 <= part < parts")
    t0 = time.perf_counter()
    if accented:
        from .accented import check_installed

        check_installed()
    if sum((accented, piper, kokoro)) > 1:
        raise ValueError("choose one of accented, piper and kokoro")
    Acoustics.only(effects)  # an unknown effect is an error before any work
    speakers: tuple[str, ...] = ()
    if kokoro:
        from .kokoro_voice import blends as make_blends
        from .kokoro_voice import check_installed, training_voices

        check_installed()  # a missing model or voice is an error before any work
        chosen = training_voices(voices)
        speakers = chosen + tuple(make_blends(blends, seed, chosen))
    elif voices or blends:
        raise ValueError("voices and blends are options of the Kokoro corpus")
    settings = {"hours": hours, "seed": seed, "accented": accented, "piper": piper, "augment": augment,
                "phrases": phrases, "effects": list(effects), "kokoro": list(speakers),
                "features": features.to_dict(), "sentences": None if sentences is None else len(sentences)}
    if n_parts > 1:
        settings["part"] = [i_part, n_parts]
    settings = json.loads(json.dumps(settings))  # as stored: lists, not tuples
    jobs = plan(hours, seed, sentences, accented, piper, augment, phrases, effects, speakers)
    if n_parts > 1:
        train = [j for j in jobs if j.split == "train"]
        keep = {j.id for j in train[i_part * len(train) // n_parts:(i_part + 1) * len(train) // n_parts]}
        last = i_part == n_parts - 1  # the evaluation utterances come with the last slice, where training ends
        jobs = [j for j in jobs if j.id in keep or (last and j.split != "train")]
    splits = ("train",) if accented or piper else SPLITS
    for split in splits:
        (out / "audio" / split).mkdir(parents=True, exist_ok=True)
        (out / "features" / split).mkdir(parents=True, exist_ok=True)
    (out / "features" / "config.json").write_text(json.dumps(features.to_dict(), indent=1))
    records: dict[str, dict] = {}
    errors: dict[str, str] = {}
    raw_counts: Counter = Counter()
    log = out / "progress.log"
    if resume:
        _check_settings(out, settings)
        for r in _finished(log, out):
            records[r["id"]] = r["record"]
            raw_counts.update(r["raw_phones"])
    else:
        log.unlink(missing_ok=True)
    (out / "settings.json").write_text(json.dumps(settings, indent=1))
    todo = [j for j in jobs if j.id not in records]
    tasks = [(c, str(out), features.to_dict()) for c in _chunks(todo)]
    workers = workers or min(mp.cpu_count(), 8)
    done = len(jobs) - len(todo)
    ctx = mp.get_context("fork")
    stopped = False
    previous = signal.signal(signal.SIGTERM, _stop) if threading.current_thread() is threading.main_thread() else None
    try:
        with ctx.Pool(workers, initializer=_init_worker) as pool, log.open("a", encoding="utf-8") as journal:
            for res in pool.imap_unordered(_work, tasks):
                for r in res:
                    if "error" in r:
                        errors[r["id"]] = r["error"]
                    else:
                        records[r["id"]] = r["record"]
                        raw_counts.update(r["raw_phones"])
                        journal.write(json.dumps(r, ensure_ascii=False) + "\n")
                journal.flush()
                done += len(res)
                if progress:
                    progress(done, len(jobs))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the manifests hold what is done; --resume goes on
        stopped = True
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    by_split: dict[str, list[dict]] = {s: [] for s in splits}
    for job in jobs:  # plan order, so the manifests are deterministic
        if job.id in records:
            by_split[job.split].append(records[job.id])
    for split, recs in by_split.items():
        with (out / f"{split}.jsonl").open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
    wall = time.perf_counter() - t0
    audio_s = {s: sum(r["duration"] for r in recs) for s, recs in by_split.items()}
    rendered_s = sum(records[j.id]["duration"] for j in todo if j.id in records)
    summary = {
        "seed": seed, "hours_requested": hours, "accented": accented, "piper": piper, "kokoro": list(speakers),
        "augment": augment, "effects": list(effects) if augment else [], "phrases": phrases,
        "part": [i_part, n_parts], "hours": {s: round(v / 3600, 4) for s, v in audio_s.items()},
        "utterances": {s: len(v) for s, v in by_split.items()},
        "speakers": {s: sorted({r["speaker"] for r in v}) for s, v in by_split.items()},
        "synthesizers": {s: dict(Counter(r["synth"] for r in v)) for s, v in by_split.items()},
        "failed": len(errors), "errors": dict(list(errors.items())[:50]),
        "cmudict_agreement": round(cmudict_agreement([r for v in by_split.values() for r in v]), 4),
        "synth_phone_counts": dict(raw_counts.most_common()),
        "features": features.to_dict(), "workers": workers, "wall_seconds": round(wall, 2),
        "resumed": len(jobs) - len(todo), "audio_seconds_per_second": round(rendered_s / wall, 2),
        "complete": not stopped and all(j.id in records or j.id in errors for j in jobs),
    }
    (out / "corpus.json").write_text(json.dumps(summary, indent=1))
    return summary


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt


def _check_settings(out: Path, settings: dict) -> None:
    """An error naming the first setting that differs from the run being resumed."""
    path = out / "settings.json"
    if not path.is_file():
        return
    before = json.loads(path.read_text())
    for key, value in settings.items():
        if key != "part" and before.get(key) != value:  # parts are slices of one plan: any may follow any
            raise ValueError(f"{out} was made with {key}={before.get(key)!r}, not {value!r}: resume with the "
                             "same settings or write to another folder")


def _finished(log: Path, out: Path) -> list[dict]:
    """The utterances of ``progress.log`` whose audio and features are on disk (a torn last line
    and files lost since are skipped: they are rendered again)."""
    if not log.is_file():
        return []
    done = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        rec = r.get("record", {})
        split = rec.get("split", "")
        if (out / "audio" / split / f"{r['id']}.flac").is_file() and \
                (out / "features" / split / f"{r['id']}.npy").is_file():
            done.append(r)
    return done


def heldout_overlap(summary: dict) -> set[str]:
    """Speakers of the held-out split that also occur in training (must be empty)."""
    return set(summary["speakers"]["heldout"]) & set(summary["speakers"]["train"])

