"""First contact: one CLI test per kind of bad or unusual input. Each is a clear one-line error that
names the file or argument (exit status 2, no traceback), or is handled as documented (resampled,
mixed down, skipped and listed)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from introspeech.cli import app

runner = CliRunner()
SR = 16000


def _speech(seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.2 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def _write(tmp_path, name, data, sr=SR, **kw):
    path = tmp_path / name
    sf.write(path, data, sr, **kw)
    return path


def _bytes(path, data: bytes):
    path.write_bytes(data)
    return path


AUDIO_ERRORS = {
    "missing": (lambda p: p / "nothing.wav", "audio file not found"),
    "empty": (lambda p: _bytes(p / "empty.wav", b""), "not a readable audio file"),
    "truncated": (lambda p: _bytes(p / "cut.wav", _write(p, "full.wav", _speech()).read_bytes()[:30]),
                  "not a readable audio file"),
    "not-audio": (lambda p: _bytes(p / "notes.wav", b"hello"), "not a readable audio file"),
    "nan": (lambda p: _write(p, "nan.wav", np.where(np.arange(SR) == 5, np.nan, _speech()).astype(np.float32),
                             subtype="FLOAT"), "NaN or infinite"),
    "inf": (lambda p: _write(p, "inf.wav", np.where(np.arange(SR) == 5, np.inf, _speech()).astype(np.float32),
                             subtype="FLOAT"), "NaN or infinite"),
    "zero-length": (lambda p: _write(p, "zero.wav", np.zeros(0, dtype=np.float32)), "zero.wav"),
}


@pytest.mark.parametrize("kind", sorted(AUDIO_ERRORS))
def test_bad_audio_is_named_and_the_batch_goes_on(tmp_path, kind):
    make, message = AUDIO_ERRORS[kind]
    bad = make(tmp_path)
    good = _write(tmp_path, "good.wav", _speech())
    res = runner.invoke(app, ["transcribe", str(bad), str(good)])
    assert res.exit_code == 1, res.output  # one of two files failed
    assert message in res.output and str(bad.name) in res.output and "Traceback" not in res.output
    assert f"{good}\t" in res.output  # the good file was still transcribed


AUDIO_HANDLED = {
    "silent": lambda p: _write(p, "silent.wav", np.zeros(SR, dtype=np.float32)),
    "8kHz": lambda p: _write(p, "narrow.wav", _speech(sr=8000), sr=8000),
    "44.1kHz-stereo": lambda p: _write(p, "stereo.wav", np.stack([_speech(sr=44100)] * 2, 1), sr=44100),
    "24-bit": lambda p: _write(p, "deep.wav", _speech(), subtype="PCM_24"),
    "flac": lambda p: _write(p, "a.flac", _speech(), format="FLAC"),
}


@pytest.mark.parametrize("kind", sorted(AUDIO_HANDLED))
def test_unusual_audio_is_handled(tmp_path, kind):
    path = AUDIO_HANDLED[kind](tmp_path)
    res = runner.invoke(app, ["transcribe", str(path)])
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"{path}\t")


def _corpus(tmp_path, lines: list[str] | bytes) -> str:
    folder = tmp_path / "corpus"
    folder.mkdir()
    _write(folder, "a.wav", _speech())
    data = lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode()
    (folder / "test.jsonl").write_bytes(data)
    return str(folder)


def _line(**kw) -> str:
    return json.dumps({"id": "a", "audio_filepath": "a.wav", "text": "hello there", **kw})


MANIFEST_ERRORS = {
    "malformed-line": ([_line(), "{not json", _line(id="b")], "test.jsonl:2"),
    "wrong-field-type": ([_line(text=5)], "test.jsonl:1"),
    "missing-field": ([json.dumps({"id": "a", "audio_filepath": "a.wav"})], "test.jsonl:1"),
    "non-utf8": ((_line() + "\n").encode() + "é".encode("latin-1") + b"\n", "test.jsonl:2: not UTF-8"),
}


@pytest.mark.parametrize("kind", sorted(MANIFEST_ERRORS))
def test_bad_manifests_are_one_line_naming_file_and_line(tmp_path, kind):
    lines, message = MANIFEST_ERRORS[kind]
    res = runner.invoke(app, ["evaluate", "--corpus", _corpus(tmp_path, lines), "--out", str(tmp_path / "e.json")])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) <= 2


def test_unknown_characters_and_empty_transcripts(tmp_path):
    corpus = _corpus(tmp_path, [_line(text="Ünïcode ☃ 42%"), _line(id="b", text="")])
    res = runner.invoke(app, ["evaluate", "--corpus", corpus, "--out", str(tmp_path / "e" / "e.json"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["splits"]["test"]["utterances"] == 1
    assert "empty transcript" in (tmp_path / "e" / "skipped.tsv").read_text()


def _checkpoint_copy(tmp_path, name="m"):
    from introspeech.asr.checkpoint import builtin_model

    src = builtin_model()
    for suffix in (".safetensors", ".json"):
        (tmp_path / f"{name}{suffix}").write_bytes(src.with_suffix(suffix).read_bytes())
    return tmp_path / name


def test_a_pickle_is_refused_as_model_and_as_weights(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"weight": torch.zeros(2)}))
    res = runner.invoke(app, ["evaluate", "--model", str(path), "--out", str(tmp_path / "e.json")])
    assert res.exit_code == 2 and "checkpoint not found" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["layers", "--model-factory", "examples.quartznet:micro", "--weights", str(path)])
    assert res.exit_code == 2 and "pickles are refused" in res.output


def test_a_truncated_safetensors_checkpoint_is_named(tmp_path):
    base = _checkpoint_copy(tmp_path)
    st = base.with_suffix(".safetensors")
    st.write_bytes(st.read_bytes()[:1000])
    res = runner.invoke(app, ["evaluate", "--model", str(base), "--out", str(tmp_path / "e.json")])
    assert res.exit_code == 2, res.output
    assert "m.safetensors" in res.output and "Traceback" not in res.output


def test_a_checkpoint_of_another_architecture_is_named(tmp_path):
    base = _checkpoint_copy(tmp_path)
    meta = json.loads(base.with_suffix(".json").read_text())
    meta["model"]["layers"][0]["channels"] = 12
    base.with_suffix(".json").write_text(json.dumps(meta))
    res = runner.invoke(app, ["evaluate", "--model", str(base), "--out", str(tmp_path / "e.json")])
    assert res.exit_code == 2, res.output
    assert "weights do not fit" in res.output and "Traceback" not in res.output


def test_a_model_with_an_unsupported_layer_names_it(tmp_path, monkeypatch):
    (tmp_path / "odd_model.py").write_text(
        "import torch\nfrom torch import nn\n"
        "class Odd(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.conv = nn.Conv1d(40, 29, 3, padding=1)\n"
        "        self.rnn = nn.GRU(29, 29, batch_first=True)\n"
        "    def forward(self, x):\n        return self.rnn(self.conv(x).transpose(1, 2))[0].transpose(1, 2)\n"
        "def make():\n    return Odd()\n")
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["layers", "--model-factory", "odd_model:make"])
    assert res.exit_code == 2, res.output
    assert "module 'rnn' (GRU) gave no tensor" in res.output and "Traceback" not in res.output


def test_an_alignment_of_other_audio_is_skipped_and_named(tmp_path):
    """Phones that end after the audio (a TextGrid or manifest of another file): the utterance is
    skipped by the profiles with the reason, not labelled wrongly."""
    corpus = _corpus(tmp_path, [_line(phones=[[0.0, 0.5, "HH"], [0.5, 9.0, "AH"]])])
    res = runner.invoke(app, ["naps", "--corpus", corpus, "--out", str(tmp_path / "n"), "--window", "0"])
    assert res.exit_code == 2 and "no utterance could be profiled (1 skipped" in res.output  # it was the only one
    assert "phones alignment ends at 9.000 s, after the audio" in (tmp_path / "n" / "skipped.tsv").read_text()


def test_a_ten_minute_recording_is_transcribed_in_pieces(tmp_path, monkeypatch):
    from introspeech.asr import evaluate

    calls = []
    real = evaluate.run_in_pieces
    monkeypatch.setattr(evaluate, "run_in_pieces", lambda *a, **k: calls.append(a[1].shape[-1]) or real(*a, **k))
    path = _write(tmp_path, "long.flac", np.tile(_speech(2.0), 300), format="FLAC")
    res = runner.invoke(app, ["transcribe", str(path)])
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"{path}\t") and calls == [60001]  # 10 min of 10 ms frames, in pieces


def _librispeech(tmp_path, textgrid_seconds: dict[str, float]):
    import textgrid

    root = tmp_path / "libri" / "84" / "121"
    root.mkdir(parents=True)
    lines = []
    for uid, span in textgrid_seconds.items():
        _write(root, f"{uid}.flac", _speech(1.0), format="FLAC")
        lines.append(f"{uid} HELLO THERE")
        tg = textgrid.TextGrid(minTime=0, maxTime=span)
        words, phones = (textgrid.IntervalTier(name=n, minTime=0, maxTime=span) for n in ("words", "phones"))
        words.add(0.1, 0.5, "hello")
        words.add(0.5, 0.9, "there")
        for k, ph in enumerate(["HH", "AH0", "L", "OW1", "DH", "EH1", "R"]):
            phones.add(round(0.1 + k * 0.1, 3), round(0.2 + k * 0.1, 3), ph)
        tg.append(words)
        tg.append(phones)
        tg.write(str(root / f"{uid}.TextGrid"))
    (root / "84-121.trans.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "libri"


def test_a_textgrid_of_another_recording_is_skipped_and_named(tmp_path):
    corpus = _librispeech(tmp_path, {"84-121-0000": 1.0, "84-121-0001": 3.5})
    res = runner.invoke(app, ["naps", "--corpus", str(corpus), "--splits", "all", "--out", str(tmp_path / "n"),
                              "--window", "0", "--groups", "phonemes"])
    assert res.exit_code == 0, res.output
    skipped = (tmp_path / "n" / "skipped.tsv").read_text()
    assert "84-121-0001.TextGrid" in skipped and "spans 3.500 s but the audio lasts 1.0" in skipped
    assert "84-121-0000" not in skipped
    assert json.loads((tmp_path / "n" / "summary.json").read_text())["utterances"] == 1


def test_an_unknown_effect_is_named_before_any_synthesis(tmp_path):
    res = runner.invoke(app, ["synth", "--out", str(tmp_path / "c"), "--augment", "1", "--effects", "room,reverb"])
    assert res.exit_code != 0 and "--effects" in res.output and "'reverb'" in res.output
    assert not (tmp_path / "c").exists()
