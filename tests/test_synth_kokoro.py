"""Kokoro's neural voices: timings that cover the audio, blends, held-out voices, resumable runs."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from introspeech.audio import SAMPLE_RATE
from introspeech.corpus import read_manifest
from introspeech.corpus.synth.base import Voice
from introspeech.corpus.synth.driver import plan, synthesize
from introspeech.text import cmu_dictionary

kv = pytest.importorskip("introspeech.corpus.synth.kokoro_voice")
try:
    kv.check_installed()
except RuntimeError as e:  # pragma: no cover - CI installs Kokoro (make env)
    pytest.skip(f"Kokoro is not installed: {e}", allow_module_level=True)

SENTS = [f"{a} {b} the {c}" for a in ("she", "we", "they") for b in ("saw", "heard", "fetched")
         for c in ("cat", "ship", "bridge", "measure")]


@pytest.mark.parametrize("speed", [0.85, 1.0, 1.2])
def test_token_durations_cover_the_audio_exactly(speed: float) -> None:
    audio, aligns = kv.speak("the black cat sat on the mat", "af_heart", speed)
    assert sum(n for _, n in aligns) == audio.size
    assert aligns[0][0] == aligns[-1][0] == "_" and all(n % kv.FRAME == 0 for _, n in aligns)
    assert "".join(s for s, _ in aligns[1:-1]).split(" ")[1] == "blˈæk"


def test_kokoro_phones_follow_the_dictionary() -> None:
    text = "how big is that part compared to the whole"
    r = kv.Kokoro().render(text, Voice("kokoro", "am_adam", (("speed", 1.0),)))
    duration = len(r.wave) / SAMPLE_RATE
    assert [w.label for w in r.words] == text.split()
    assert r.phones[0].start == 0.0 and r.phones[-1].end == pytest.approx(duration)
    assert all(a.end == pytest.approx(b.start) for a, b in zip(r.phones, r.phones[1:]))
    cmu = cmu_dictionary()
    spoken = [[p.label for p in r.phones if p.start >= w.start - 1e-9 and p.end <= w.end + 1e-9] for w in r.words]
    assert sum(s in cmu[w.label] for s, w in zip(spoken, r.words)) >= 8
    # a space inside a phrase is the transition into the next word, not a pause
    assert "sil" not in {p.label for p in r.phones if r.words[0].start < p.start < r.words[-1].end}


def test_a_blend_is_the_weighted_sum_of_the_two_style_tables() -> None:
    path = kv.voices_dir()
    a = np.fromfile(path / "af_heart.bin", np.float32).reshape(510, 1, 256)
    b = np.fromfile(path / "af_nicole.bin", np.float32).reshape(510, 1, 256)
    np.testing.assert_allclose(kv.style_table("af_heart*0.40+af_nicole*0.60"), 0.4 * a + 0.6 * b, rtol=1e-6)
    made = kv.blends(6, 3, kv.training_voices())
    assert len(made) == 6 and len(set(made)) == 6 and made == kv.blends(6, 3, kv.training_voices())
    for blend in made:
        (x, wx), (y, wy) = (p.split("*") for p in blend.split("+"))
        assert x[1] == y[1] and float(wx) + float(wy) == pytest.approx(1.0)
        assert x not in kv.HELDOUT and y not in kv.HELDOUT


def test_plan_holds_voices_out_and_half_are_female() -> None:
    voices = kv.training_voices() + tuple(kv.blends(8, 0, kv.training_voices()))
    jobs = plan(3.0, seed=1, kokoro=voices)
    by_split = {s: [j for j in jobs if j.split == s] for s in ("train", "valid", "test", "heldout")}
    assert {j.voice.name for j in by_split["heldout"]} == set(kv.HELDOUT)
    trained = {j.voice.name for s in ("train", "valid", "test") for j in by_split[s]}
    assert not trained & set(kv.HELDOUT) and len(trained) >= 20
    female = Counter(kv.is_female(j.voice.name) for j in by_split["train"])
    assert female[True] >= female[False]
    held_text = {j.text for s in ("valid", "test", "heldout") for j in by_split[s]}
    assert not {j.text for j in by_split["train"]} & held_text


def test_unknown_or_held_out_voices_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown Kokoro voice"):
        kv.training_voices(("af_heart", "zz_nobody"))
    with pytest.raises(ValueError, match="af_sarah held out"):
        kv.training_voices(("af_heart", "af_sarah"))


def test_missing_voices_and_damaged_model_are_named(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("INTROSPEECH_KOKORO_VOICES", str(tmp_path))
    with pytest.raises(RuntimeError, match="fetch-kokoro-voices.sh"):
        kv.voices_dir()
    monkeypatch.delenv("INTROSPEECH_KOKORO_VOICES")
    monkeypatch.setattr(kv, "MODEL_BYTES", kv.MODEL_BYTES + 1)
    with pytest.raises(RuntimeError, match="damaged or of another version"):
        kv.check_installed()


def test_kokoro_corpus_resumes_what_is_missing(tmp_path) -> None:
    out = tmp_path / "k"
    first = synthesize(out, 0.012, seed=2, workers=1, sentences=SENTS, kokoro=True, blends=2)
    assert first["failed"] == 0, first["errors"]
    assert set(first["speakers"]["heldout"]) <= {f"kokoro:{v}" for v in kv.HELDOUT}
    manifests = {s: (out / f"{s}.jsonl").read_text() for s in ("train", "valid", "test", "heldout")}
    lost = read_manifest(out / "train.jsonl")[1]
    lost.audio_path.unlink()
    again = synthesize(out, 0.012, seed=2, workers=1, sentences=SENTS, kokoro=True, blends=2, resume=True)
    assert again["resumed"] == sum(first["utterances"].values()) - 1
    assert {s: (out / f"{s}.jsonl").read_text() for s in manifests} == manifests
    with pytest.raises(ValueError, match="seed=2"):
        synthesize(out, 0.012, seed=3, workers=1, sentences=SENTS, kokoro=True, blends=2, resume=True)
    summary = json.loads((out / "corpus.json").read_text())
    assert summary["kokoro"][-2:] == kv.blends(2, 2, kv.training_voices())


@pytest.mark.parametrize("args,named", [(["--kokoro", "--voices", "af_heart,zz_nobody"], "--voices"),
                                        (["--voices", "af_heart"], "--voices"),
                                        (["--kokoro", "--piper"], "--piper")])
def test_cli_errors_name_the_argument(tmp_path, args, named) -> None:
    from typer.testing import CliRunner

    from introspeech.cli import app

    res = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "x"), *args])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and named in res.output
