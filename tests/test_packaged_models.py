"""Models that learned from real speech, read from their wheels, against the wheels' own runtimes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

hama = pytest.importorskip("hama", reason="hama's wheel is an extra: pip install '.[real]'")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime comes with hama's extra")


def _fp32_session(path):
    """The wheel's float16 graph with every float16 tensor and cast turned float32 (same ops)."""
    import onnx
    from onnx import TensorProto, numpy_helper

    m = onnx.load(str(path))
    for i, init in enumerate(m.graph.initializer):
        if init.data_type == TensorProto.FLOAT16:
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32),
                                                                    init.name))
    for n in m.graph.node:
        for a in n.attribute:
            if n.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT16:
                a.i = TensorProto.FLOAT
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT16:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float32), a.t.name))
    return ort.InferenceSession(m.SerializeToString())


def test_hama_module_equals_onnxruntime_on_the_same_float32_graph():
    import copy

    from introspeech.audio import load_audio
    from introspeech.corpus.load import load_corpus
    from introspeech.models.hama import BLANK_BIAS, GELU, asset, load_hama, tokens

    model = load_hama()
    exact = copy.deepcopy(model)  # GELU with the exact √2 instead of the graph's float16 one
    for name, m in list(exact.named_modules()):
        if isinstance(m, GELU):
            parent, _, leaf = name.rpartition(".")
            setattr(exact.get_submodule(parent) if parent else exact, leaf, torch.nn.GELU())
    exact_gap = 0.0
    session = _fp32_session(asset("asr_waveform_fp16.onnx"))
    vocab = tokens()
    assert len(vocab) == 191 and vocab[-1] == "<blank>" and vocab[-2] == "<wb>"
    runtime = hama.ASRModel()  # hama's own runtime (the float16 graph), for the greedy phonemes
    for utt in load_corpus(None)["test"][:6]:
        wave = load_audio(utt.audio_path, 16000).astype(np.float32)
        want, _ = session.run(None, {"waveform": wave[None], "waveform_lengths": np.array([len(wave)], dtype=np.int64)})
        with torch.no_grad():
            got = torch.log_softmax(model(torch.from_numpy(wave)[None, None]), 1).transpose(1, 2).numpy()
        with torch.no_grad():
            other = torch.log_softmax(exact(torch.from_numpy(wave)[None, None]), 1).transpose(1, 2).numpy()
        exact_gap = max(exact_gap, float(np.abs(other - want).max()))
        assert got.shape == want.shape
        assert float(np.abs(np.exp(got) - np.exp(want)).max()) < 1e-3  # posteriors
        assert float(np.abs(got - want).max()) < 5e-3  # log-probabilities, tails included
        best = got[0].copy()
        best[:, -1] += BLANK_BIAS
        path, prev = [], -1
        for s in best.argmax(1):
            if s != prev and s != 190:
                path.append(int(s))
            prev = s
        assert path == runtime.transcribe_waveform(wave, 16000).token_ids
    assert exact_gap > 2e-2  # the graph's rounded √2 matters: the network amplifies it


def test_a_damaged_or_missing_hama_model_is_a_one_line_error(tmp_path):
    from introspeech.errors import InputError
    from introspeech.models.hama import asset, load_hama

    bad = tmp_path / "asr.onnx"
    bad.write_bytes(asset("asr_waveform_fp16.onnx").read_bytes()[:100_000])
    with pytest.raises(InputError, match=r"asr.onnx.*not a readable ONNX model.*pip install 'hama==1.3.10'"):
        load_hama(bad)
    other = tmp_path / "other.onnx"
    other.write_bytes(asset("encoder.onnx").read_bytes())  # another graph of the same wheel
    with pytest.raises(InputError, match=r"not the graph of hama 1.3.10"):
        load_hama(other)


def test_transcribe_and_layers_by_name_reproduce_hamas_runtime(monkeypatch):
    import json

    from typer.testing import CliRunner

    from introspeech.cli import app
    from introspeech.corpus.load import load_corpus

    runner = CliRunner()
    res = runner.invoke(app, ["models", "--json"])
    assert res.exit_code == 0 and {"name": "hama", "installed": True} .items() <= json.loads(res.output)[0].items()
    utts = load_corpus(None)["test"][:4]
    res = runner.invoke(app, ["transcribe", "--model", "hama", *[str(u.audio_path) for u in utts]])
    assert res.exit_code == 0, res.output
    runtime = hama.ASRModel()
    from introspeech.audio import load_audio

    for line, u in zip(res.output.strip().splitlines(), utts):
        want = runtime.transcribe_waveform(load_audio(u.audio_path, 16000), 16000).word_phoneme_text
        assert line.split("\t")[1] == want
    res = runner.invoke(app, ["layers", "--model", "hama", "--json"])
    rows = json.loads(res.output)["layers"]
    assert rows[0] == {"name": "front", "path": "front", "channels": 80, "rf": 400, "stride": 160, "offset": -200,
                       "time_axis": -1, "local": True}
    assert [r["stride"] for r in rows[2:]] == [320] * (len(rows) - 2) and not rows[-1]["local"]


def test_whisper_from_the_ctranslate2_file_decodes_as_ctranslate2():
    """Greedy text of our module (openai-whisper's decoding) equals CTranslate2's own runtime on the
    same log-Mel features."""
    whisper = pytest.importorskip("whisper", reason="openai-whisper is an extra: pip install --no-deps openai-whisper")
    ctranslate2 = pytest.importorskip("ctranslate2", reason="CTranslate2 comes with faster-whisper")
    from whisper.tokenizer import get_tokenizer

    from introspeech.audio import load_audio
    from introspeech.corpus.load import load_corpus
    from introspeech.models.whisper import load_whisper, model_file

    model = load_whisper()
    runtime = ctranslate2.models.Whisper(str(model_file().parent), device="cpu", compute_type="float32")
    tok = get_tokenizer(multilingual=False)
    prompt = list(tok.sot_sequence_including_notimestamps)
    for utt in load_corpus(None)["test"][:5]:
        audio = torch.from_numpy(load_audio(utt.audio_path, 16000).astype(np.float32))
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio))
        ours = whisper.decode(model, mel, whisper.DecodingOptions(language="en", without_timestamps=True, fp16=False))
        out = runtime.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy()[None])), [prompt],
                               beam_size=1, max_length=224, suppress_blank=True, suppress_tokens=[-1])
        assert ours.text.strip() == tok.decode([t for t in out[0].sequences_ids[0] if t < tok.eot]).strip()
        assert ours.text.strip()


def test_a_truncated_whisper_file_is_a_one_line_error(tmp_path):
    pytest.importorskip("whisper", reason="openai-whisper is an extra")
    from introspeech.errors import InputError
    from introspeech.models.whisper import load_whisper, model_file

    bad = tmp_path / "model.bin"
    bad.write_bytes(model_file().read_bytes()[:5_000_000])
    with pytest.raises(InputError, match=r"model.bin.*truncated CTranslate2 file"):
        load_whisper(bad)
    bad.write_bytes(b"\x09\x00\x00\x00" + model_file().read_bytes()[4:1000])
    with pytest.raises(InputError, match=r"format version 9 is not read here"):
        load_whisper(bad)


def test_transcribe_by_name_with_whisper_and_its_errors(tmp_path):
    pytest.importorskip("whisper", reason="openai-whisper is an extra")
    import whisper
    from typer.testing import CliRunner

    from introspeech.audio import load_audio
    from introspeech.cli import app
    from introspeech.corpus.load import load_corpus
    from introspeech.models.whisper import load_whisper

    runner = CliRunner()
    utts = load_corpus(None)["test"][:3]
    res = runner.invoke(app, ["transcribe", "--model", "whisper-tiny.en", *[str(u.audio_path) for u in utts]])
    assert res.exit_code == 0, res.output
    model = load_whisper()
    for line, u in zip(res.output.strip().splitlines(), utts):
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(load_audio(u.audio_path, 16000))))
        want = whisper.decode(model, mel, whisper.DecodingOptions(language="en", without_timestamps=True, fp16=False))
        assert line.split("\t")[1] == want.text.strip()
    res = runner.invoke(app, ["layers", "--model", "whisper-tiny.en"])
    assert res.exit_code == 0, res.output
    assert "blocks.3" in res.output and "not local" in res.output  # attention blocks see the whole input
    res = runner.invoke(app, ["transcribe", "--model", "whisper-tiny.en", "--lm", "x.arpa", str(utts[0].audio_path)])
    assert res.exit_code == 2 and "--lm" in res.output
    res = runner.invoke(app, ["patterns", "--model", "whisper-tiny.en", "--out", str(tmp_path / "p")])
    assert res.exit_code == 2 and "not per-frame symbols" in res.output
    res = runner.invoke(app, ["sanity", "--model", "whisper-tiny.en", "--out", str(tmp_path / "s"), "--no-image"])
    assert res.exit_code == 2 and "--random-label-steps 0" in res.output  # no training recipe for a packaged model
    res = runner.invoke(app, ["featvis", "--model", "whisper-tiny.en", "--objective", "letter:s", "--out",
                              str(tmp_path / "f")])
    assert res.exit_code == 2 and "needs an output over symbols" in res.output


def test_naps_of_hama_by_name(tmp_path):
    import json

    from typer.testing import CliRunner

    from introspeech.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["naps", "--model", "hama", "--out", str(tmp_path / "x"), "--splits", "test"])
    assert res.exit_code == 2 and "--letters-from prediction" in res.output  # phonemes cannot be force-aligned
    res = runner.invoke(app, ["naps", "--model", "hama", "--groups", "phonemes", "--splits", "test",
                              "--out", str(tmp_path / "naps")])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "naps" / "summary.json").read_text())
    assert summary["utterances"] > 100 and "attn_layers.0" in summary["layers"] and "front" in summary["layers"]


def test_arpabet_and_ipa_map_both_ways_and_a_perfect_path_has_no_phone_error():
    import jiwer

    from introspeech.models.description import Output
    from introspeech.models.hama import tokens
    from introspeech.text import ARPABET, ARPABET_TO_IPA, IPA_TO_ARPABET

    vocab = tokens()
    assert all(IPA_TO_ARPABET[ARPABET_TO_IPA[p]] == p for p in ARPABET)
    assert all(ARPABET_TO_IPA[p] in vocab for p in ARPABET)  # hama can emit every English phone
    out = Output("ctc", vocab, len(vocab) - 1, spaced=True, boundary="<wb>")
    ref = ["DH", "AH", "K", "AE", "T", "S", "AE", "T"]
    path = []
    for k, p in enumerate(ref):  # each phone held two frames, blanks between, a word boundary after "the"
        path += [vocab.index(ARPABET_TO_IPA[p])] * 2 + [len(vocab) - 1]
        if k == 1:
            path += [vocab.index("<wb>")]
    scores = np.full((len(vocab), len(path)), -5.0)
    scores[path, np.arange(len(path))] = 5.0
    assert out.decode(scores) == "ð ʌ | k æ t s æ t"
    assert out.phones(scores) == ref and jiwer.wer(" ".join(ref), " ".join(out.phones(scores))) == 0.0


def test_evaluate_hama_gives_phone_error_rates(tmp_path):
    import json

    from typer.testing import CliRunner

    from introspeech.cli import app

    res = CliRunner().invoke(app, ["evaluate", "--model", "hama", "--splits", "heldout", "--json",
                                   "--out", str(tmp_path / "e.json")])
    assert res.exit_code == 0, res.output
    m = json.loads(res.output.strip().splitlines()[-1])["splits"]["heldout"]
    assert m["utterances"] > 50 and 0.0 < m["per"] < 0.7
    rows = json.loads((tmp_path / "e.json").read_text())["utterances"]["heldout"]
    assert all(set(r["reference"].split()) <= set(__import__("introspeech.text").text.ARPABET) for r in rows)


def _real_clips(n: int = 6):
    from introspeech.corpus.realspeech import clips

    found, _ = clips()
    if not found:
        pytest.skip("no real-speech package is installed (scripts/setup-system.sh installs them)")
    step = max(1, len(found) // n)
    return [c for c in found[::step] if len(c.wave()) < 30 * 16000][:n]


def test_both_models_reproduce_their_runtimes_on_real_speech():
    from introspeech.models.hama import BLANK_BIAS, load_hama

    model, runtime = load_hama(), hama.ASRModel()
    for clip in _real_clips():
        wave = clip.wave().astype(np.float32)
        with torch.no_grad():
            s = model(torch.from_numpy(wave)[None, None])[0].numpy()
        s[-1] += BLANK_BIAS
        best, path, prev = s.argmax(0), [], -1
        for k in best:
            if k != prev and k != 190:
                path.append(int(k))
            prev = k
        assert path == runtime.transcribe_waveform(wave, 16000).token_ids, clip.id
    whisper = pytest.importorskip("whisper", reason="openai-whisper is an extra")
    ctranslate2 = pytest.importorskip("ctranslate2", reason="CTranslate2 comes with the test extra")
    from whisper.tokenizer import get_tokenizer

    from introspeech.models.whisper import load_whisper, model_file

    model = load_whisper()
    ct = ctranslate2.models.Whisper(str(model_file().parent), device="cpu", compute_type="float32")
    tok = get_tokenizer(multilingual=False)
    for clip in _real_clips(4):
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(clip.wave().astype(np.float32))))
        ours = whisper.decode(model, mel, whisper.DecodingOptions(language="en", without_timestamps=True, fp16=False))
        out = ct.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy()[None])),
                          [list(tok.sot_sequence_including_notimestamps)], beam_size=1, max_length=224,
                          suppress_blank=True, suppress_tokens=[-1])
        assert ours.text.strip() == tok.decode([t for t in out[0].sequences_ids[0] if t < tok.eot]).strip(), clip.id


def test_whisper_naps_leave_the_padding_to_30_s_out():
    """Windowed NAPs of Whisper's encoder, written out from the captured layer: only the frames of
    speech (the first ``frames_of(samples)`` of 1500) enter any sum."""
    pytest.importorskip("whisper", reason="openai-whisper is an extra")
    from introspeech.corpus.load import builtin_corpus, load_corpus, utterance_features
    from introspeech.models.packaged import describe_packaged
    from introspeech.models.whisper_frontend import frames_of
    from introspeech.profiles.engine import profile_corpus
    from introspeech.profiles.labels import layer_frame, phone_table
    from introspeech.profiles.settings import ProfileSettings

    desc = describe_packaged("whisper-tiny.en")
    utt = load_corpus(builtin_corpus())["test"][0]
    half = 4
    acc = profile_corpus(desc, desc.features, [utt], ProfileSettings(groups=("phonemes",), relevance="",
                                                                        nap_window=half)).arrays
    wave = utterance_features(utt, desc.features)
    captured = {}
    block = dict(desc.module.named_modules())["encoder.blocks.3"]
    handle = block.register_forward_hook(lambda m, i, o: captured.setdefault("a", o[0].detach().double()))
    try:
        with torch.no_grad():
            desc.module(torch.as_tensor(wave)[None])
    finally:
        handle.remove()
    n = frames_of(wave.shape[-1])
    assert 0 < n < 1500 and captured["a"].shape[0] == 1500
    a = captured["a"][:n].numpy()
    geo = desc.layer("encoder.blocks.3").geometry
    starts, ends, idx = phone_table(utt.phones)
    wsum, wcount = np.zeros((40, 2 * half + 1, 384)), np.zeros((40, 2 * half + 1))
    for s, e, g in zip(starts, ends, idx):
        if g < 0:
            continue
        c = int(layer_frame(geo, 0.5 * (s + e) * 16000))
        for k in range(-half, half + 1):
            if 0 <= c + k < n:
                wsum[g, k + half] += a[c + k]
                wcount[g, k + half] += 1
    assert wcount.sum() > 0 and (wcount[:, -1] < wcount[:, half]).any()  # the last windows were cut at speech's end
    np.testing.assert_array_equal(acc["wnap/encoder.blocks.3/phonemes/count"], wcount)
    np.testing.assert_allclose(acc["wnap/encoder.blocks.3/phonemes/sum"], wsum, rtol=1e-4, atol=1e-3)


def test_whisper_token_maps_in_one_pass_equal_one_token_at_a_time():
    """Every teacher-forced token of Whisper explained through one shared encoder pass equals
    `attribute` called per token: the gradient through the waveform front end (the third token
    pulled back alone: vmap has no batching rule for CPU flash attention), AttnLRP on the log-Mel;
    the waveform front end refuses LRP (its floor has no rule) with an error naming it."""
    pytest.importorskip("whisper", reason="openai-whisper is an extra")
    from whisper.tokenizer import get_tokenizer

    from introspeech.attribution import attribute
    from introspeech.attribution.frames import attribute_frames
    from introspeech.attribution.operations import UnsupportedOperation
    from introspeech.attribution.outputs import Scores
    from introspeech.corpus.load import builtin_corpus, load_corpus, utterance_features
    from introspeech.models.packaged import HAMA_FEATURES
    from introspeech.models.whisper import load_whisper
    from introspeech.models.whisper_frontend import WhisperFrontEnd, WhisperTokens

    utt = load_corpus(builtin_corpus())["test"][0]
    wave = torch.as_tensor(utterance_features(utt, HAMA_FEATURES))[None]
    tok = get_tokenizer(False)
    seq = [*tok.sot_sequence_including_notimestamps, *tok.encode(" " + utt.text)]
    tokens, targets = torch.tensor([seq[:-1]]), torch.tensor(seq[1:])
    whisper = load_whisper()
    picked = [2, 4, len(targets) - 1]  # a first chunk of two probes vmap; CPU attention has no batching rule
    model = Scores(WhisperTokens(whisper).eval(), time_axis=1, args=(tokens,))
    maps = attribute_frames(model, wave, picked, targets, "gradient", chunk=2)
    for row, t in enumerate(picked):
        ref = attribute(model, wave, (int(targets[t]), t), "gradient")[0]
        torch.testing.assert_close(maps[row], ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
    with torch.no_grad():
        mel = WhisperFrontEnd()(wave)
    mel_model = Scores(WhisperTokens(whisper, mel=True).eval(), time_axis=1, args=(tokens,))
    lrp = attribute_frames(mel_model, mel, picked[:1], targets, "lrp", chunk=1, attention="attnlrp")
    ref = attribute(mel_model, mel, (int(targets[picked[0]]), picked[0]), "lrp", attention="attnlrp")[0]
    torch.testing.assert_close(lrp[0], ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))
    with pytest.raises(UnsupportedOperation, match="amax"):
        attribute(model, wave, (int(targets[2]), 2), "lrp")
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in whisper.modules())


def test_representations_sample_whispers_frames_of_speech_without_letters():
    pytest.importorskip("whisper", reason="openai-whisper is an extra")
    from introspeech.corpus.load import builtin_corpus, load_corpus
    from introspeech.models.packaged import describe_packaged
    from introspeech.representations.sampling import sample_frames

    desc = describe_packaged("whisper-tiny.en")
    utts = load_corpus(builtin_corpus())["test"][:2]
    frames = sample_frames(desc, utts, per_utterance=30, seed=0)
    assert (frames.letters == -1).all() and (frames.phones >= 0).all()  # no letters: Whisper does not spell them
    assert set(frames.layers) == {layer.name for layer in desc.layers}
    assert all(v.shape == (frames.phones.size, layer.channels) for layer, v in zip(desc.layers, frames.layers.values()))


def test_hamas_explained_units_are_the_corpus_phones_aligned_where_they_are_spoken():
    """Explanations of a phoneme recognizer target the alignment's phones (ARPAbet → IPA), each at
    the frame its forced alignment puts it: within a frame or two of the phone's timing."""
    import dataclasses

    from introspeech.corpus.load import load_corpus, load_features
    from introspeech.errors import InputError
    from introspeech.explanations.run import phoneme_units
    from introspeech.models.packaged import describe_packaged
    from introspeech.text import ARPABET_TO_IPA, SILENCE

    desc = describe_packaged("hama")
    hop = 16000 / desc.output_geometry.stride if desc.output_geometry else 50.0
    for u, f in load_features(load_corpus(None)["test"][:3], desc.features):
        with torch.no_grad():
            scores = desc.module(torch.as_tensor(f, dtype=torch.float32).unsqueeze(0))[0].double()
        units = phoneme_units(desc, scores, u, desc.features.frame_rate)
        phones = [p for p in u.phones if p.label != SILENCE]
        assert [desc.output.alphabet[c.symbol] for c in units] == [ARPABET_TO_IPA[p.label] for p in phones]
        err = [abs((c.frame + 0.5) / hop - 0.5 * (p.start + p.end)) for c, p in zip(units, phones)]
        assert np.median(err) < 0.05, err
        assert all(c.phone == (int(np.floor(p.start * 16000)), int(np.ceil(p.end * 16000))) for c, p in zip(units, phones))
    with pytest.raises(InputError, match="no phone timings"):
        phoneme_units(desc, scores, dataclasses.replace(u, phones=[]), desc.features.frame_rate)


def test_feature_visualization_of_a_waveform_model_is_its_own_audio(tmp_path):
    """hama reads samples: the optimized input is written as the WAV itself (no Mel inversion)."""
    import soundfile as sf

    from introspeech.corpus.load import load_corpus
    from introspeech.featvis.run import SpeechData, run_featvis
    from introspeech.models.packaged import describe_packaged

    desc = describe_packaged("hama")
    data = SpeechData(desc.features, load_corpus(None)["test"][:4], window=4000, n_windows=8)
    res = run_featvis(desc, data, ["letter:s@5"], tmp_path, params=("direct",), steps=2)
    row = res["objectives"]["letter 's'@5"]["direct"]
    x = np.load(tmp_path / f"{row['file']}.npy")
    wav, sr = sf.read(tmp_path / f"{row['file']}.wav")
    assert sr == 16000 and x.shape == (1, res["frames"]) and wav.shape == (res["frames"],)
    np.testing.assert_allclose(wav, np.clip(x[0], -1, 1), atol=1 / 2**15)
    with torch.no_grad():  # letter:s names hama's own IPA token s, not the built-in alphabet's s
        score = desc.module(torch.from_numpy(x).unsqueeze(0))[0, desc.output.alphabet.index("s"), 5]
    assert float(score) == pytest.approx(row["objective"], abs=1e-3)
    with pytest.raises(ValueError, match="unknown letter 'q'"):
        run_featvis(desc, data, ["letter:q"], tmp_path, params=("direct",), steps=1)


def test_demo_by_name_on_hama_and_a_named_error_for_whisper(tmp_path):
    from typer.testing import CliRunner

    from introspeech.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["demo", "--model", "hama", "--out", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "d" / "index.html").read_text()
    assert "A model that learned from real speech" in html and "model: hama" in html
    res = runner.invoke(app, ["demo", "--model", "whisper-tiny.en", "--out", str(tmp_path / "w")])
    assert res.exit_code == 2 and "runs hama" in res.output


def test_whisper_explanations_are_of_its_tokens_over_the_log_mel_of_speech(tmp_path):
    """Whisper's encoder is explained on its teacher-forced tokens: the model on the log-Mel frames of
    speech (padding held) gives exactly the decoder's scores of the whole 30 s window; the units
    spell the transcript at the decoder rows that score them, each with the span of its words; the
    command writes the table for tokens."""
    pytest.importorskip("whisper", reason="openai-whisper is an extra")
    import json

    from typer.testing import CliRunner

    from introspeech.cli import app
    from introspeech.corpus.load import load_corpus, utterance_features
    from introspeech.explanations.tokens import MEL_RATE, TokenUnits
    from introspeech.models.packaged import describe_packaged
    from introspeech.models.whisper_text import english_tokenizer

    desc = describe_packaged("whisper-tiny.en")
    u = load_corpus(None)["test"][1]
    x = torch.as_tensor(utterance_features(u, desc.features)).float()[None]
    units = TokenUnits(desc)
    model, mel, letters = units(u, x)
    assert mel.shape == (1, 80, -(-x.shape[-1] // 160))
    tok = english_tokenizer()
    with torch.no_grad():
        full = units.scorer(x, model.tokens)  # (1, tokens, vocab) over the whole window
        np.testing.assert_array_equal(model(mel)[0].numpy(), full[0].T.numpy())
    assert tok.decode([c.symbol for c in letters]) == " " + " ".join(w.label for w in u.words if w.label.strip())
    assert [int(model.tokens[0, c.frame + 1]) for c in letters] == [c.symbol for c in letters]
    first = next(w for w in u.words if w.label.strip())
    assert letters[0].word == (int(first.start * MEL_RATE), int(np.ceil(first.end * MEL_RATE)))
    assert all(c.phone is None and c.word[0] < c.word[1] <= mel.shape[-1] + 1 for c in letters)
    res = CliRunner().invoke(app, ["explanations", "--model", "whisper-tiny.en", "--out", str(tmp_path / "e"),
                                   "--utterances", "1", "--letters", "2", "--steps", "2", "--methods", "gradient",
                                   "--no-digits"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    row = summary["methods"]["gradient"]
    assert summary["units"] == "tokens" and row["letters"] == 2 and 0 < row["word_share"] <= 1
    assert row["phone_share"] is None and 0 <= row["deletion_auc"] <= 1


def test_whisper_sanity_randomizes_its_decoder_and_encoder_blocks_on_token_maps():
    """The sanity case of Whisper: each example is its transcript's middle token on the log-Mel of
    speech; the bound model equals the decoder's scores of the whole window; the maps of the trained
    model are attribute() on that model, and randomizing the decoder's last blocks changes them."""
    pytest.importorskip("whisper", reason="openai-whisper is an extra")
    from introspeech.attribution import attribute
    from introspeech.corpus.load import load_corpus, utterance_features
    from introspeech.models.packaged import describe_packaged
    from introspeech.models.whisper_text import english_tokenizer
    from introspeech.sanity.check import run_case
    from introspeech.sanity.tokens import whisper_case

    desc = describe_packaged("whisper-tiny.en")
    u = load_corpus(None)["test"][2]
    case = whisper_case(desc, [u])
    assert case.layers[0] == "encoder.conv1" and case.layers[-1] == "decoder.ln"
    (sym, row), mel = case.targets[0], case.inputs[0]
    model = case.bind(case.model, 0)
    tokens = model.tokens[0, len(english_tokenizer().sot_sequence_including_notimestamps):].tolist()
    assert english_tokenizer().decode(tokens).strip() == " ".join(w.label for w in u.words if w.label.strip())
    assert sym == tokens[len(tokens) // 2] and int(model.tokens[0, row + 1]) == sym
    x = torch.as_tensor(utterance_features(u, desc.features)).float()[None]
    with torch.no_grad():
        np.testing.assert_array_equal(model(mel)[0].numpy(), case.model(desc.module.front(x), model.tokens)[0].T.numpy())
    case.layers = ["decoder.blocks.3", "decoder.ln"]
    out = run_case(case, ["gradient"], independent_too=False)["gradient"]
    want = attribute(model, mel, (sym, row), "gradient")[0].detach().double().numpy()
    np.testing.assert_allclose(out["examples"]["trained"], want, rtol=1e-5, atol=1e-9)
    assert [c["layer"] for c in out["cascading"]] == ["decoder.ln", "decoder.blocks.3"]
    assert out["cascading"][-1]["spearman_abs"]["mean"] < 0.99
