"""The synthetic corpus: alignments that are right (not only well-formed), complete phone mapping,
held-out voices, determinism."""

import hashlib
import json
from collections import defaultdict

import numpy as np
import pytest

from introspeech.audio import PRESETS, load_audio, log_mel
from introspeech.corpus import read_manifest
from introspeech.corpus.synth.base import UnmappedPhoneError, build_segments
from introspeech.corpus.synth.driver import SPLITS, heldout_overlap, synthesize
from introspeech.corpus.synth.espeak import ESPEAK_TABLE
from introspeech.text import ARPABET, SILENCE


@pytest.fixture(scope="module")
def summary(small_corpus):
    return json.loads((small_corpus / "corpus.json").read_text())


@pytest.fixture(scope="module")
def utts(small_corpus):
    return [u for s in SPLITS for u in read_manifest(small_corpus / f"{s}.jsonl")]


def test_thousand_utterances_all_synthesizers_no_failures(summary, utts):
    assert len(utts) >= 1000
    assert summary["failed"] == 0, summary["errors"]
    synths = {u.extra["synth"] for u in utts}
    assert synths == {"espeak", "flite", "festival"}


def test_every_synth_phone_maps_to_arpabet(utts):
    labels = {p.label for u in utts for p in u.phones}
    assert labels <= set(ARPABET) | {SILENCE}
    assert len(labels) >= 38  # nearly the whole inventory occurs in 1,000 utterances


def test_unmapped_phone_is_an_error():
    with pytest.raises(UnmappedPhoneError, match="espeak phone 'Q~'"):
        build_segments([(0.0, "Q~", 0)], ESPEAK_TABLE, "espeak", 0.5, ["x"])


def test_aligned_phones_agree_with_cmudict_for_most_words(summary):
    # report: the rate is written to corpus.json (pronunciation variants of accents lower it)
    assert summary["cmudict_agreement"] > 0.75


def test_phones_contiguous_monotone_and_cover_each_word(utts):
    for u in utts:
        assert u.phones[0].start == pytest.approx(0, abs=1e-4)
        assert u.phones[-1].end == pytest.approx(u.duration, abs=1e-3)
        for a, b in zip(u.phones, u.phones[1:]):
            assert b.start == pytest.approx(a.end, abs=1e-4) and b.end > b.start
        assert [w.label for w in u.words] == u.text.split()
        for a, b in zip(u.words, u.words[1:]):
            assert b.start >= a.end - 1e-4
        for w in u.words:
            inside = [p for p in u.phones if p.start >= w.start - 1e-4 and p.end <= w.end + 1e-4]
            assert inside and inside[0].start == pytest.approx(w.start, abs=1e-4)
            assert inside[-1].end == pytest.approx(w.end, abs=1e-4)
            assert all(p.label != SILENCE for p in inside)
        u.check_alignment()


def test_timings_are_physically_right(utts):
    """Silence frames are quiet; S/SH/Z/F frames carry more high-band energy than vowel frames —
    per synthesizer, so no back end can hide a shift behind another."""
    cfg = PRESETS["default"]
    stats = defaultdict(lambda: defaultdict(list))
    vowels = {"AA", "AE", "AH", "AO", "EH", "IH", "IY", "UW", "EY", "OW", "AY"}
    for u in utts[::3]:
        m = log_mel(load_audio(u.audio_path), cfg)
        energy = np.log(np.exp(m).sum(0))
        high = m[30:].mean(0) - m[:15].mean(0)
        for p in u.phones:
            a, b = int(round(p.start * 100)) + 1, int(round(p.end * 100)) - 1  # inner frames only
            if b <= a:
                continue
            cls = "sil" if p.label == SILENCE else "fric" if p.label in {"S", "SH", "Z", "F"} else \
                "vowel" if p.label in vowels else None
            if cls:
                stats[u.extra["synth"]][cls + "_energy"].append(energy[a:b].mean())
                stats[u.extra["synth"]][cls + "_high"].append(high[a:b].mean())
    for synth, s in stats.items():
        mean = {k: float(np.mean(v)) for k, v in s.items()}
        assert mean["sil_energy"] < mean["vowel_energy"] - 4, (synth, mean)
        assert mean["sil_energy"] < mean["fric_energy"] - 2, (synth, mean)
        assert mean["fric_high"] > mean["vowel_high"] + 4, (synth, mean)


def test_heldout_voices_never_train_and_cover_each_synth(summary):
    assert not heldout_overlap(summary)
    held = {s.split(":")[0] for s in summary["speakers"]["heldout"]}
    assert held == {"espeak", "flite", "festival"}


def test_sentences_split_by_sentence(utts):
    by = defaultdict(set)
    for u in utts:
        by[u.extra["split"]].add(u.text)
    assert not by["train"] & by["test"] and not by["train"] & by["valid"] and not by["test"] & by["valid"]
    assert not by["heldout"] & (by["train"] | by["valid"])  # held-out voices read test sentences


def test_same_seed_same_corpus(tmp_path):
    sents = ["the cat sat on the mat", "a quick brown fox jumps", "she sells sea shells", "good afternoon madam",
             "out of the blue", "it is raining again", "we love our dog", "time flies like an arrow",
             "they went home early", "the music was too loud", "he is destined to be famous",
             "the boards fit neatly", "come back tomorrow", "open the window please", "read the book",
             "the sun is hot", "this is not a drill", "try again later", "the river runs deep", "a nice line of shoes",
             "my friend likes tea", "the train is late", "bring your own lunch", "keep it simple"]
    digests = []
    for run in ("a", "b"):
        synthesize(tmp_path / run, hours=0.02, seed=3, workers=2, sentences=sents)
        h = hashlib.sha256()
        for split in SPLITS:
            h.update((tmp_path / run / f"{split}.jsonl").read_bytes().replace(str(tmp_path / run).encode(), b""))
            for f in sorted((tmp_path / run / "audio" / split).glob("*.flac")):
                h.update(f.read_bytes())
        digests.append(h.hexdigest())
    assert digests[0] == digests[1]


def test_an_interrupted_run_keeps_its_manifests_and_resumes(tmp_path):
    sents = [f"{a} {b} the {c}" for a in ("she", "we", "they") for b in ("saw", "heard", "fetched")
             for c in ("cat", "ship", "bridge", "measure")]
    out = tmp_path / "c"

    def stop(done, total):
        raise KeyboardInterrupt

    first = synthesize(out, 0.03, seed=4, workers=1, sentences=sents, progress=stop)
    kept = sum(first["utterances"].values())
    assert not first["complete"] and 0 < kept
    assert sum(len(read_manifest(out / f"{s}.jsonl")) for s in SPLITS) == kept
    again = synthesize(out, 0.03, seed=4, workers=1, sentences=sents, resume=True)
    assert again["complete"] and again["resumed"] == kept and again["failed"] == 0
    synthesize(tmp_path / "w", 0.03, seed=4, workers=1, sentences=sents)
    for s in SPLITS:
        assert [(u.id, u.text, u.duration) for u in read_manifest(out / f"{s}.jsonl")] == \
               [(u.id, u.text, u.duration) for u in read_manifest(tmp_path / "w" / f"{s}.jsonl")]


def test_parts_partition_the_training_utterances_of_one_plan(tmp_path):
    sents = [f"{a} {b} the {c}" for a in ("she", "we", "they") for b in ("saw", "heard", "fetched")
             for c in ("cat", "ship", "bridge", "measure")]
    whole = tmp_path / "whole"
    synthesize(whole, 0.03, seed=4, workers=1, sentences=sents)
    rows = {s: [(u.id, u.text, u.duration) for u in read_manifest(whole / f"{s}.jsonl")] for s in SPLITS}
    out = tmp_path / "parts"  # one folder, the parts one after another (as across machines)
    train = []
    for i in range(3):
        summary = synthesize(out, 0.03, seed=4, workers=1, sentences=sents, part=(i, 3), resume=i > 0)
        assert summary["complete"] and summary["part"] == [i, 3]
        got = {s: [(u.id, u.text, u.duration) for u in read_manifest(out / f"{s}.jsonl")] for s in SPLITS}
        assert all(got[s] == (rows[s] if i == 2 else []) for s in SPLITS if s != "train")  # the last: evaluation
        assert got["train"]
        train += got["train"]
    assert train == rows["train"]  # consecutive, disjoint, together the whole
    with pytest.raises(ValueError, match="part 3 of 3"):
        synthesize(out, 0.03, seed=4, workers=1, sentences=sents, part=(3, 3))
