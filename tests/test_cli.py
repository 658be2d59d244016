"""The command line: --help everywhere, defaults to the built-in model and corpus, clear errors."""

import json

import pytest
from typer.testing import CliRunner

from introspeech.asr.checkpoint import builtin_model
from introspeech.cli import app
from introspeech.corpus.load import builtin_corpus

runner = CliRunner()
COMMANDS = ["synth", "train", "pack", "transcribe", "evaluate", "patterns", "naps", "sanity", "explanations",
            "representations", "featvis", "demo", "findings"]
HAS_MODEL = builtin_model().with_suffix(".json").is_file()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    res = runner.invoke(app, [command, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


@pytest.mark.skipif(not HAS_MODEL, reason="no built-in model in this checkout")
def test_evaluate_json_on_builtin_defaults(tmp_path):
    res = runner.invoke(app, ["evaluate", "--json", "--splits", "heldout", "--out", str(tmp_path / "e.json")])
    assert res.exit_code == 0, res.output
    obj = json.loads(res.output.strip().splitlines()[-1])
    m = obj["splits"]["heldout"]
    assert m["utterances"] == 80 and 0 <= m["cer"] <= 1 and 0 <= m["wer"]
    assert json.loads((tmp_path / "e.json").read_text())["splits"] == obj["splits"]
    html = (tmp_path / "e" / "index.html").read_text()  # its own report: error rates and a sample's posteriors
    assert "<h2>Speech recognizer</h2>" in html and "heldout-000000_posteriors.png" in html


@pytest.mark.skipif(not HAS_MODEL, reason="no built-in model in this checkout")
def test_transcribe_reports_bad_files_and_continues(tmp_path):
    good = next((builtin_corpus() / "audio" / "test").glob("*.flac"))
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    res = runner.invoke(app, ["transcribe", str(good), str(bad)])
    assert res.exit_code == 1
    assert str(good) in res.output and "bad.wav" in res.output and "1 of 2 files failed" in res.output


def test_unknown_split_is_a_clear_error(tmp_path):
    if not HAS_MODEL:
        pytest.skip("no built-in model")
    res = runner.invoke(app, ["evaluate", "--splits", "nope", "--out", str(tmp_path / "e.json")])
    assert res.exit_code != 0 and "no split 'nope'" in res.output


@pytest.mark.skipif(not HAS_MODEL, reason="no built-in model in this checkout")
def test_featvis_writes_inputs_audio_and_a_prior_beside_the_model(tmp_path):
    import shutil

    import soundfile as sf

    model = tmp_path / "m"
    for ext in (".safetensors", ".json"):
        shutil.copy(builtin_model().with_suffix(ext), model.with_suffix(ext))
    res = runner.invoke(app, ["featvis", "train-prior", "--model", str(model), "--windows", "64", "--steps", "3"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m.prior.safetensors").is_file() and model.with_suffix(".safetensors").stat().st_size > 10**6
    out = tmp_path / "fv"
    res = runner.invoke(app, ["featvis", "--model", str(model), "--objective", "letter:s - letter:z", "--params",
                              "direct,prior", "--steps", "3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    row = results["objectives"]["letter 's'@31 - letter 'z'@31"]
    assert set(row) == {"direct", "prior"} and "prior_error_ratio" in row["prior"]
    wave, sr = sf.read(out / f"{row['direct']['file']}.wav")
    assert sr == 16000 and wave.size > 8000 and abs(wave).max() > 0
    res = runner.invoke(app, ["featvis", "--objective", "letters:s", "--params", "direct", "--out", str(out)])
    assert res.exit_code != 0 and "cannot read objective" in res.output


def test_pack_writes_the_builtin_split_readably(tmp_path):
    from introspeech.asr.packed import load_packed

    res = runner.invoke(app, ["pack", "--out", str(tmp_path), "--splits", "heldout"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1]) == {"heldout": 80}
    index, splits = load_packed(tmp_path, workers=1)
    assert len(splits["heldout"]) == 80 and index["step"] == 0.25
    res = runner.invoke(app, ["pack", "--out", str(tmp_path / "x"), "--splits", "nosuch"])
    assert res.exit_code != 0 and "nosuch" in (res.output + str(res.exception))


def test_a_users_model_through_transcribe_evaluate_and_naps(tmp_path, monkeypatch):
    """The unpadded Wav2Letter layout (random weights) from its factory: utterances shorter than its
    receptive field are skipped and named, everything else runs; naps writes the usual summary."""
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    own = ["--model-factory", "examples.wav2letter:micro"]
    res = runner.invoke(app, ["evaluate", *own, "--splits", "test", "--json", "--out", str(tmp_path / "e.json")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["splits"]["test"]["utterances"] > 100
    res = runner.invoke(app, ["naps", *own, "--out", str(tmp_path / "naps"), "--splits", "test", "--window", "2"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "naps" / "summary.json").read_text())
    builtin = runner.invoke(app, ["naps", "--out", str(tmp_path / "b"), "--splits", "test", "--window", "2"])
    assert builtin.exit_code == 0
    assert summary.keys() == json.loads((tmp_path / "b" / "summary.json").read_text()).keys()
    assert list(summary["layers"])[0] == "acoustic_model.1"


def _mixed_corpus(tmp_path):
    """The built-in test split's first 8 utterances plus a missing file, a NaN file and a text file."""
    import numpy as np
    import soundfile as sf

    from introspeech.corpus.load import load_corpus
    from introspeech.corpus.manifest import write_manifest

    good = load_corpus(None)["test"][:8]
    root = tmp_path / "mixed"
    (root / "audio").mkdir(parents=True)
    nan = np.zeros(16000, dtype=np.float32)
    nan[100] = np.nan
    sf.write(root / "audio" / "nan.wav", nan, 16000, subtype="FLOAT")
    (root / "audio" / "text.wav").write_text("not audio")
    import dataclasses

    bad = [dataclasses.replace(good[0], id=f"bad-{n}", audio_path=root / "audio" / n) for n in
           ("nan.wav", "text.wav", "missing.wav")]
    write_manifest(root / "test.jsonl", good + bad)
    return root


def test_batch_runs_skip_bad_files_list_them_and_strict_stops(tmp_path):
    corpus = _mixed_corpus(tmp_path)
    res = runner.invoke(app, ["evaluate", "--corpus", str(corpus), "--out", str(tmp_path / "e" / "e.json"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["splits"]["test"]["utterances"] == 8
    rows = (tmp_path / "e" / "skipped.tsv").read_text().splitlines()
    assert rows[0] == "file\treason" and len(rows) == 4
    assert any("NaN or infinite" in r for r in rows) and any("not found" in r for r in rows)
    res = runner.invoke(app, ["naps", "--corpus", str(corpus), "--out", str(tmp_path / "n"), "--window", "0"])
    assert res.exit_code == 0, res.output
    assert len((tmp_path / "n" / "skipped.tsv").read_text().splitlines()) == 4
    assert json.loads((tmp_path / "n" / "summary.json").read_text())["utterances"] == 8
    res = runner.invoke(app, ["naps", "--corpus", str(corpus), "--out", str(tmp_path / "s"), "--strict"])
    assert res.exit_code == 2 and "error:" in res.output


def test_sanity_and_demo_skip_bad_files_and_list_them(tmp_path):
    corpus = _mixed_corpus(tmp_path)
    res = runner.invoke(app, ["sanity", "--corpus", str(corpus), "--out", str(tmp_path / "s"), "--methods", "gradient",
                              "--examples", "2", "--random-label-steps", "2", "--no-image", "--no-independent"])
    assert res.exit_code == 0, res.output
    rows = (tmp_path / "s" / "skipped.tsv").read_text().splitlines()
    assert len(rows) == 4 and all(n in "".join(rows) for n in ("nan.wav", "text.wav", "missing.wav"))
    res = runner.invoke(app, ["sanity", "--corpus", str(corpus), "--out", str(tmp_path / "s2"), "--methods", "gradient",
                              "--examples", "2", "--random-label-steps", "2", "--no-image", "--strict"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    res = runner.invoke(app, ["demo", "--corpus", str(corpus), "--out", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    rows = (tmp_path / "d" / "skipped.tsv").read_text().splitlines()
    assert len(rows) == 4 and (tmp_path / "d" / "index.html").is_file()
