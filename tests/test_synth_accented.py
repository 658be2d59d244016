"""Accented voices (`synth --accented`): training sentences only, every accented voice, English
phone timings that are exact and physically right, and a clear error when a voice is missing."""

import json

import numpy as np
import pytest

from introspeech.audio import load_audio
from introspeech.corpus import read_manifest
from introspeech.corpus.synth import accented
from introspeech.corpus.synth.base import Voice
from introspeech.corpus.synth.cmu_voices import Festival
from introspeech.corpus.synth.driver import plan, synthesize
from introspeech.errors import InputError
from introspeech.text import ARPABET, SILENCE

from .test_synth import test_phones_contiguous_monotone_and_cover_each_word as check_contiguous
from .test_synth import test_timings_are_physically_right as check_physical

SENTS = [f"{a} {b} the {c}" for a in ("she", "we", "they", "you") for b in ("saw", "heard", "fetched")
         for c in ("cat", "ship", "bridge", "measure", "yacht")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("accented")
    summary = synthesize(out, hours=0.12, seed=5, workers=2, sentences=SENTS, accented=True)
    return out, summary, read_manifest(out / "train.jsonl")


def test_only_training_sentences_and_all_accented_voices(corpus):
    out, summary, utts = corpus
    assert summary["failed"] == 0, summary["errors"]
    assert sorted(p.stem for p in out.glob("*.jsonl")) == ["train"]
    standard = plan(1.0, seed=5, sentences=SENTS)
    train_texts = {j.text for j in standard if j.split == "train"}
    held = {j.text for j in standard if j.split != "train"}
    assert {u.text for u in utts} <= train_texts and not {u.text for u in utts} & held
    assert {u.speaker for u in utts} == {f"festival:{v}" for v in accented.ACCENTED_VOICES}


def test_english_phone_timings_exact_and_physical(corpus):
    _, _, utts = corpus
    assert {p.label for u in utts for p in u.phones} <= set(ARPABET) | {SILENCE}
    check_contiguous(utts)
    check_physical(utts)


def test_a_foreign_voice_speaks_and_follows_the_english_timings():
    text = "the rabbit ran over the snake"
    voices = [Voice("festival", "kal_diphone", (("f0", 110.0),)), Voice("festival", "czech_machac", (("f0", 110.0),)),
              Voice("festival", "lp_diphone", (("f0", 110.0),))]
    kal, czech, italian = Festival().render_batch([(text, v) for v in voices])
    # the English front end is the same, so the phone segments are identical ...
    # (all but the end of the final silence, which is the end of each waveform)
    def spans(r):
        return [(p.label, round(p.start, 4), round(p.end, 4)) for p in r.phones][:-1]

    assert spans(czech) == spans(kal) and spans(italian) == spans(kal)
    # ... the back end renders that duration, and the waveforms are other voices
    for r in (czech, italian):
        assert abs(len(r.wave) / 16000 - r.phones[-1].end) < 0.05
        n = min(len(r.wave), len(kal.wave))
        assert abs(np.corrcoef(r.wave[:n], kal.wave[:n])[0, 1]) < 0.5


def test_scheme_table_lists_every_radio_phone():
    radio = ["aa", "ae", "ah", "ao", "aw", "ax", "axr", "ay", "b", "ch", "d", "dh", "dx", "eh", "el", "em", "en",
             "er", "ey", "f", "g", "hh", "hv", "ih", "iy", "jh", "k", "l", "m", "n", "nx", "ng", "ow", "oy", "p",
             "r", "s", "sh", "t", "th", "uh", "uw", "v", "w", "y", "z", "zh", "pau", "h#", "brth"]
    for table, _ in accented.ACCENTED_VOICES.values():
        assert not set(radio) - set(table)
        assert all(1 <= len(v) <= 2 for v in table.values())
    assert accented.scheme_table({"ay": ("a", "i"), "b": ("b",)}) == "'((ay \"a\" \"i\") (b \"b\"))"


def test_missing_voice_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(accented.ACCENTED_VOICES, "no_such_voice", (accented.ITALIAN, (90, 100)))
    with pytest.raises(InputError, match="no_such_voice.*festvox-"):
        accented.check_installed()


def test_corpus_summary_says_accented(corpus):
    out, _, _ = corpus
    assert json.loads((out / "corpus.json").read_text())["accented"] is True
    assert load_audio(next((out / "audio" / "train").glob("*.flac"))).size > 0
