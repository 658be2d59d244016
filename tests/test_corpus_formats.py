import json

import numpy as np
import pytest
import soundfile as sf

from introspeech.audio import PRESETS
from introspeech.corpus import Segment, Utterance, read_librispeech, read_manifest, read_textgrid, write_manifest
from introspeech.corpus.load import load_corpus, load_features
from introspeech.errors import InputError


def _utts(tmp_path):
    return [
        Utterance("u1", tmp_path / "a.flac", "hello world", "spk1", 1.25,
                  [Segment(0.1, 0.5, "hello"), Segment(0.6, 1.2, "world")],
                  [Segment(0.0, 0.1, "sil"), Segment(0.1, 0.3, "HH"), Segment(0.3, 0.5, "OW")],
                  extra={"voice": "x", "prosody": {"rate": 1.0}}),
        Utterance("u2", tmp_path / "sub" / "b.wav", "no alignment", duration=0.5),
    ]


def test_manifest_round_trip_is_identical(tmp_path):
    path = tmp_path / "m.jsonl"
    write_manifest(path, _utts(tmp_path))
    first = path.read_text()
    back = read_manifest(path)
    assert back == _utts(tmp_path)
    write_manifest(path, back)
    assert path.read_text() == first
    obj = json.loads(first.splitlines()[0])
    assert obj["audio_filepath"] == "a.flac" and obj["duration"] == 1.25  # NeMo keys, relative path


def test_malformed_jsonl_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"audio_filepath": "a.wav", "text": "ok"}\n{"audio_filepath": "b.wav", "text": \n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: malformed JSON"):
        read_manifest(path)
    path.write_text('{"text": "no audio"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:1: .*audio_filepath"):
        read_manifest(path)


def test_alignment_past_end_of_audio_is_reported(tmp_path):
    u = Utterance("u", tmp_path / "a.wav", "hi", duration=1.0, words=[Segment(0.0, 1.5, "hi")])
    with pytest.raises(InputError, match=r"a.wav: .*words alignment ends at 1.500 s, after the audio"):
        u.check_alignment()
    u.words = [Segment(0.5, 0.7, "a"), Segment(0.2, 0.4, "b")]
    with pytest.raises(InputError, match="not monotone"):
        u.check_alignment()


def test_librispeech_layout_and_textgrid(tmp_path):
    import textgrid

    root = tmp_path / "LibriSpeech" / "dev"
    chap = root / "84" / "121123"
    chap.mkdir(parents=True)
    (chap / "84-121123.trans.txt").write_text("84-121123-0000 GO DO YOU HEAR\n84-121123-0001 BUT IN LESS\n")
    for uid in ("84-121123-0000", "84-121123-0001"):
        sf.write(chap / f"{uid}.flac", np.zeros(16000, np.float32), 16000)
    tg = textgrid.TextGrid(minTime=0, maxTime=1.0)
    words = textgrid.IntervalTier(name="words", minTime=0, maxTime=1.0)
    words.add(0.0, 0.2, "")
    words.add(0.2, 0.5, "go")
    words.add(0.5, 1.0, "do")
    phones = textgrid.IntervalTier(name="phones", minTime=0, maxTime=1.0)
    for a, b, p in [(0.0, 0.2, ""), (0.2, 0.35, "G"), (0.35, 0.5, "OW1"), (0.5, 0.7, "D"), (0.7, 1.0, "UW1")]:
        phones.add(a, b, p)
    tg.append(words)
    tg.append(phones)
    tgdir = tmp_path / "aligned" / "84"
    tgdir.mkdir(parents=True)
    tg.write(str(tgdir / "84-121123-0000.TextGrid"))

    utts = read_librispeech(root, textgrids=tmp_path / "aligned")
    assert [u.id for u in utts] == ["84-121123-0000", "84-121123-0001"]
    assert utts[0].text == "GO DO YOU HEAR" and utts[0].speaker == "84"
    assert utts[0].audio_path == chap / "84-121123-0000.flac"
    assert utts[0].words == [Segment(0.2, 0.5, "go"), Segment(0.5, 1.0, "do")]
    assert [p.label for p in utts[0].phones] == ["sil", "G", "OW", "D", "UW"]
    assert utts[1].words is None
    assert load_corpus(root)["all"][0].id == "84-121123-0000"

    bad = tmp_path / "bad.TextGrid"
    bad.write_text("not a textgrid")
    with pytest.raises(InputError, match="bad.TextGrid"):
        read_textgrid(bad)


def test_empty_transcript_in_librispeech_is_named(tmp_path):
    chap = tmp_path / "1" / "2"
    chap.mkdir(parents=True)
    (chap / "1-2.trans.txt").write_text("1-2-0000 \n")
    with pytest.raises(InputError, match=r"1-2.trans.txt:1: utterance 1-2-0000 has an empty transcript"):
        read_librispeech(tmp_path)


def test_batch_feature_loading_continues_and_counts_failures(tmp_path, wav_factory):
    good = wav_factory("good.wav", seconds=0.3)
    stereo = wav_factory("stereo44.wav", seconds=0.3, sr=44100, channels=2)
    (tmp_path / "junk.wav").write_text("junk")
    utts = [Utterance("g", good, "a"), Utterance("m", tmp_path / "missing.wav", "b"),
            Utterance("j", tmp_path / "junk.wav", "c"), Utterance("s", stereo, "d")]
    errors = []
    got = load_features(utts, PRESETS["default"], on_error=lambda u, e: errors.append(str(e)))
    assert [u.id for u, _ in got] == ["g", "s"]
    assert len(errors) == 2 and "missing.wav" in errors[0] and "junk.wav" in errors[1]
    assert got[1][1].shape == (40, 31)
