"""Piper's neural voice (phone timings from its alignments) and the acoustic effects of training data."""

from __future__ import annotations

import numpy as np
import pytest

from introspeech.audio import SAMPLE_RATE, load_audio
from introspeech.corpus.load import builtin_corpus
from introspeech.corpus.synth import acoustics
from introspeech.corpus.synth.base import Rendered, Voice
from introspeech.corpus.synth.driver import _augmented, plan
from introspeech.corpus.synth.ipa import ipa_events
from introspeech.corpus.utterance import Segment
from introspeech.text import cmu_dictionary


def test_ipa_events_join_pairs_and_count_words() -> None:
    al = [("^", 100), ("ð", 200), ("ə", 100), (" ", 50), ("k", 100), ("ˈ", 10), ("e", 100), ("ɪ", 100),
          ("t", 100), (",", 40), (" ", 20), ("b", 50), ("$", 10)]
    ev = ipa_events(al, 1000)
    assert [(n, w) for _, n, w in ev] == [("^", -1), ("ð", 0), ("ə", 0), (" ", -1), ("k", 1), ("ˈ", 1), ("eɪ", 1),
                                          ("t", 1), (",", -1), (" ", -1), ("b", 2), ("$", -1)]
    # the space after a spoken phone is its transition into the next word (ə lasts 150 samples);
    # the space after a pause stays a pause
    assert [t for t, _, _ in ev] == [0.0, 0.1, 0.3, 0.45, 0.45, 0.55, 0.56, 0.76, 0.86, 0.9, 0.92, 0.97]


def test_piper_phones_follow_the_dictionary() -> None:
    pytest.importorskip("piper")
    from introspeech.corpus.synth.piper_voice import Piper

    text = "the black cat sat on the mat"
    r = Piper().render(text, Voice("piper", "joe", (("length", 1.0),)))
    duration = len(r.wave) / SAMPLE_RATE
    assert [w.label for w in r.words] == text.split()
    assert r.phones[0].start == 0.0 and r.phones[-1].end == pytest.approx(duration)
    assert all(a.end == pytest.approx(b.start) for a, b in zip(r.phones, r.phones[1:]))
    cmu = cmu_dictionary()
    same = sum([p.label for p in r.phones if p.start >= w.start - 1e-9 and p.end <= w.end + 1e-9 and p.label != "sil"]
               in cmu[w.label] for w in r.words)
    assert same >= 6


def _wave() -> np.ndarray:
    return load_audio(next((builtin_corpus() / "audio" / "test").glob("*.flac")))


def test_effects_are_seeded_and_timings_scale() -> None:
    x = _wave()
    every = acoustics.Acoustics(1, 1, 1, 1, 1)
    a, sa, ha, ra = acoustics.apply(x, 7, every)
    b, sb, hb, rb = acoustics.apply(x, 7, every)
    assert np.array_equal(a, b) and ra == rb and sa == sb and ha == hb
    lead, trail = ra["pad_s"]
    assert sa == pytest.approx(1 / ra["speed"], rel=1e-3)
    assert ha == pytest.approx(lead, abs=1e-3)
    assert len(a) / SAMPLE_RATE == pytest.approx(len(x) / SAMPLE_RATE * sa + lead + trail, abs=2e-3)
    c, _, _, rc = acoustics.apply(x, 8, every)
    assert rc != ra


def test_room_keeps_the_direct_path_in_place() -> None:
    """A click comes out of every room at its own time (then its echoes), so timings stay."""
    x = np.zeros(SAMPLE_RATE, np.float32)
    x[8000] = 0.5
    for seed in range(6):
        y, scale, _, rec = acoustics.apply(x, seed, acoustics.Acoustics(speed=0, pad=0, room=1, noise=0, channel=0,
                                                                         gain_db=0))
        assert "room" in rec and scale == 1.0 and len(y) == len(x)
        assert abs(int(np.argmax(np.abs(y))) - 8000) <= 1
        assert np.abs(y[:7990]).max() < 0.05 * np.abs(y).max()  # nothing arrives before the direct path
        assert np.abs(y[8100:]).max() > 0.01 * np.abs(y).max()  # and echoes follow


def test_noise_at_the_requested_snr() -> None:
    x = _wave()
    x = 0.2 * x / np.abs(x).max()  # room for the noise below full scale: no gain applied
    for seed in range(20):
        y, _, _, rec = acoustics.apply(x, seed, acoustics.Acoustics(speed=0, pad=0, room=0, noise=1, channel=0,
                                                                     gain_db=0))
        if rec["noise"] != "babble":
            break
    noise = y.astype(np.float64) - x
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise ** 2))
    assert snr == pytest.approx(rec["snr_db"], abs=0.3)


def test_augmented_timings_cover_the_new_audio() -> None:
    x = _wave()
    d = len(x) / SAMPLE_RATE
    r = Rendered(x, [Segment(0.1, d - 0.1, "w")], [Segment(0, 0.1, "sil"), Segment(0.1, d - 0.1, "AH"),
                                                 Segment(d - 0.1, d, "sil")])
    for seed in range(40):
        out, rec = _augmented(r, seed)
        new = len(out.wave) / SAMPLE_RATE
        scale = 1 / rec.get("speed", 1.0)
        lead = rec.get("pad_s", [0.0, 0.0])[0]
        assert out.phones[0].start == 0.0 and out.phones[-1].end == pytest.approx(new)
        assert all(p.end == pytest.approx(q.start) for p, q in zip(out.phones, out.phones[1:]))
        assert out.words[0].start == pytest.approx(0.1 * scale + lead, abs=1e-3)
        assert out.words[0].end == pytest.approx((d - 0.1) * scale + lead, abs=1e-3)
        assert "gain_db" in rec


def test_piper_plan_is_train_only_with_the_requested_effect_share() -> None:
    jobs = plan(0.5, 1, piper=True, augment=0.7)
    assert {j.split for j in jobs} == {"train"} and {j.voice.synth for j in jobs} == {"piper"}
    share = np.mean([j.augment is not None for j in jobs])
    assert 0.6 < share < 0.8
    clean = plan(0.2, 1, augment=0.5)
    assert all(j.augment is None for j in clean if j.split != "train")
    assert any(j.augment is not None for j in clean)
    short = plan(0.2, 1, phrases=0.5)
    lengths = [len(j.text.split()) for j in short if j.split == "train"]
    assert 0.35 < np.mean([n <= 3 for n in lengths]) < 0.75 and min(lengths) == 1
    a, b = ([j.text for j in p if j.split == "test"] for p in (short, clean))
    assert a[:min(len(a), len(b))] == b[:min(len(a), len(b))]  # whole sentences outside train


def test_only_the_chosen_effects_apply() -> None:
    """`Acoustics.only` keeps each named effect's probability and turns the others off, as the
    per-effect ablation needs; an unknown name is an error naming it."""
    x = _wave()
    keys = {"speed": {"speed"}, "pad": {"pad_s"}, "room": {"room"}, "noise": {"noise", "snr_db"},
            "channel": {"channel", "cutoff_hz"}}
    for effect, names in keys.items():
        settings = acoustics.Acoustics.only((effect,))
        assert getattr(settings, effect) == getattr(acoustics.Acoustics(), effect) and settings.gain_db == 0
        seen = set()
        for seed in range(12):
            y, scale, shift, rec = acoustics.apply(x, seed, settings)
            assert set(rec) - {"gain_db"} <= names and rec["gain_db"] == 0.0
            seen |= set(rec) - {"gain_db"}
            if effect not in ("speed", "pad"):
                assert scale == 1.0 and shift == 0.0 and len(y) == len(x)
        assert seen  # the effect did apply to some of the seeds
    assert acoustics.Acoustics.only(acoustics.EFFECTS) == acoustics.Acoustics()
    with pytest.raises(ValueError, match="'reverb'"):
        acoustics.Acoustics.only(("room", "reverb"))


def test_plan_carries_the_chosen_effects() -> None:
    from introspeech.corpus.synth.driver import plan

    jobs = plan(0.05, 3, ["one two three four", "five six seven eight"] * 20, augment=1.0, effects=("noise",))
    train = [j for j in jobs if j.split == "train"]
    assert train and all(j.augment is not None and j.effects == ("noise",) for j in train)
    assert all(j.augment is None for j in jobs if j.split != "train")
