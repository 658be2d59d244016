"""Real-speech corpus: transcript normalization, decoding the packages' formats, the forced aligner,
the test-only guard, and the build on a fake package tree."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from introspeech.audio import load_audio
from introspeech.corpus import realspeech
from introspeech.corpus.forced_alignment import Aligner, boundary_agreement
from introspeech.corpus.load import builtin_corpus, load_corpus
from introspeech.corpus.realspeech import normalize_spoken
from introspeech.corpus.utterance import Segment


@pytest.mark.parametrize("raw, text", [
    ("Please press 1 to mute, # to exit.", "please press one to mute pound to exit"),
    ("Press * to toggle pause", "press star to toggle pause"),
    ("[ascending tones]", ""),
    ("at [@]", "at"),
    ("3D audio enabled", "three d audio enabled"),
    ("fourtieth", "fortieth"),
    ("the 21st caller", "the twenty first caller"),
    ("Call-Forward on No Answer.", "call forward on no answer"),
    ("exclaimation-point [!]", "exclamation point"),
])
def test_spoken_normalization(raw: str, text: str) -> None:
    norm = normalize_spoken(raw)
    assert norm.text == text
    assert bool(norm.changes) == (raw.lower().replace("-", " ").strip(".") != text)


def test_g722_decoding_round_trip(tmp_path: Path) -> None:
    """A wave encoded to raw G.722 with PyAV decodes (through the corpus' reader) to the same wave."""
    from introspeech.corpus.synth.acoustics import _codec

    wave = load_audio(next((builtin_corpus() / "audio" / "test").glob("*.flac")))
    import av

    path = tmp_path / "x.g722"
    with av.open(str(path), "w", format="g722") as out:
        stream = out.add_stream("g722", rate=16000, layout="mono")
        pcm = (np.clip(wave, -1, 1) * 32767).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = 16000
        for p in stream.encode(frame):
            out.mux(p)
        for p in stream.encode(None):
            out.mux(p)
    back = realspeech._g722(path)
    n = min(len(back), len(wave))
    assert abs(len(back) - len(wave)) < 400
    lag = int(np.argmax(np.correlate(back[:n], wave[:n], "full"))) - (n - 1)
    shifted = np.roll(back[:n], -lag)
    assert np.corrcoef(shifted, wave[:n])[0, 1] > 0.9
    for codec in ("g722", "pcm_mulaw"):  # the training channels keep the timing (no delay) and the wave
        assert np.corrcoef(_codec(wave, codec), wave)[0, 1] > 0.99


@pytest.fixture(scope="module")
def aligner() -> Aligner:
    return Aligner()


def test_forced_alignment_against_exact_timings(aligner: Aligner) -> None:
    """On synthetic speech with exact timings, pocketsphinx puts most boundaries within 50 ms."""
    utts = [u for u in load_corpus(builtin_corpus())["test"] if u.phones][:6]
    shares = []
    for u in utts:
        words, phones = aligner.align(load_audio(u.audio_path), u.text)
        assert [w.label for w in words] == u.text.split()
        assert phones[0].start == 0.0 and abs(phones[-1].end - u.duration) < 0.02
        assert all(a.end == pytest.approx(b.start) for a, b in zip(phones, phones[1:]))
        for w, ref in zip(words, u.words):
            assert abs((w.start + w.end) / 2 - (ref.start + ref.end) / 2) < 0.25
        shares.append(boundary_agreement(u.phones, phones)["within_50ms"])
    assert np.mean(shares) > 0.7


def test_forced_alignment_names_unknown_words(aligner: Aligner, monkeypatch) -> None:
    """A word outside both dictionaries takes espeak-ng's pronunciation; without espeak-ng it is named."""
    from introspeech.corpus import forced_alignment

    assert forced_alignment.espeak_pronunciation("unmute") == ["AH", "N", "M", "Y", "UW", "T"]
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(ValueError, match="qzxvbn"):
        aligner.align(np.zeros(16000, np.float32), "hello qzxvbn")
    with pytest.raises(ValueError, match="aligner"):  # silence cannot hold the words: an error, not a guess
        aligner.align(np.zeros(1600, np.float32), "hello there my friend")


def test_boundary_agreement_reference() -> None:
    exact = [Segment(0, 0.1, "sil"), Segment(0.1, 0.3, "AH"), Segment(0.3, 0.5, "B")]
    forced = [Segment(0, 0.115, "sil"), Segment(0.115, 0.36, "AH"), Segment(0.36, 0.5, "B")]
    assert boundary_agreement(exact, forced) == {"within_20ms": 0.5, "within_50ms": 0.5}


def _fake_packages(tmp_path: Path, monkeypatch) -> None:
    """An Asterisk tree with two prompts (one a bracketed tone) and an ALSA folder, from synthetic audio."""
    src = [u for u in load_corpus(builtin_corpus())["test"]][:2]
    sounds = tmp_path / "asterisk"
    (sounds / "digits").mkdir(parents=True)
    wave = load_audio(src[0].audio_path)
    sf.write(sounds / "hello.wav", wave, 16000)
    sf.write(sounds / "digits" / "beep.wav", wave[:4000], 16000)
    text = tmp_path / "core-sounds-en.txt.gz"
    with gzip.open(text, "wt") as f:
        f.write(f"; header\nhello: {src[0].text.capitalize()}.\ndigits/beep: [a beep tone]\nmissing: Not recorded.\n")
    alsa = tmp_path / "alsa"
    alsa.mkdir()
    sf.write(alsa / "Front_Left.wav", load_audio(src[1].audio_path), 16000)
    sf.write(alsa / "Noise.wav", np.zeros(800, np.float32), 16000)
    monkeypatch.setattr(realspeech, "ASTERISK_SOUNDS", sounds)
    monkeypatch.setattr(realspeech, "ASTERISK_TEXT", text)
    monkeypatch.setattr(realspeech, "ALSA_SOUNDS", alsa)
    monkeypatch.setattr(realspeech, "POCKETSPHINX", tmp_path / "absent")
    return src


def test_build_on_fake_packages(tmp_path: Path, monkeypatch) -> None:
    src = _fake_packages(tmp_path, monkeypatch)
    summary = realspeech.build(tmp_path / "corpus")
    assert summary["test_only"] is True
    assert set(summary["splits"]) == {"asterisk_8k", "alsa"}
    assert "pocketsphinx" in summary["missing"] and "asterisk_g722" in summary["missing"]
    assert [d["id"] for d in summary["dropped"]] == ["asterisk_8k-digits_beep"]
    data = load_corpus(tmp_path / "corpus")
    (a,) = data["asterisk_8k"]
    assert a.text == src[0].text and a.extra["alignment"] == "forced" and a.phones
    assert a.extra["normalization"] == []
    (b,) = data["alsa"]
    assert b.text == "front left"
    on_disk = json.loads((tmp_path / "corpus" / "corpus.json").read_text())
    assert on_disk["splits"]["alsa"]["utterances"] == 1


def test_training_refuses_a_test_only_corpus(tmp_path: Path, monkeypatch) -> None:
    from introspeech.asr.train import TrainConfig, prepare

    _fake_packages(tmp_path, monkeypatch)
    realspeech.build(tmp_path / "corpus", align=False)
    (tmp_path / "corpus" / "train.jsonl").write_text((tmp_path / "corpus" / "alsa.jsonl").read_text())
    with pytest.raises(ValueError, match="test-only"):
        prepare(tmp_path / "corpus", TrainConfig())
    with pytest.raises(ValueError, match="test-only"):
        prepare(builtin_corpus(), TrainConfig(extra_train=[str(tmp_path / "corpus")], train_split="test"))


def test_report_section_measures_real_clips_or_says_how_to_get_them(tmp_path: Path, monkeypatch) -> None:
    from introspeech.asr.checkpoint import load_model
    from introspeech.asr.evaluate import error_rates, transcribe
    from introspeech.audio import features
    from introspeech.report.sections.realspeech import realspeech_section

    model, cfg, _ = load_model()
    src = _fake_packages(tmp_path, monkeypatch)
    section = realspeech_section(model, cfg, tmp_path / "report")
    want = error_rates([src[0].text], [transcribe(model, features(src[0].audio_path, cfg))])
    assert "asterisk_8k" in section.html and f"{100 * want['cer']:.1f}" in section.html
    assert section.files and all(p.is_file() for p in section.files)
    monkeypatch.setattr(realspeech, "ASTERISK_TEXT", tmp_path / "absent")
    monkeypatch.setattr(realspeech, "ALSA_SOUNDS", tmp_path / "absent")
    empty = realspeech_section(model, cfg, tmp_path / "report2")
    assert "apt-get install" in empty.html and not empty.files
