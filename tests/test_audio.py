import json

import numpy as np
import pytest
import soundfile as sf

from introspeech.audio import PRESETS, FeatureConfig, corpus_stats, features, load_audio, log_mel, mel_to_audio
from introspeech.errors import InputError

from .conftest import tone


def test_feature_config_serializes_and_detects_mismatch():
    cfg = PRESETS["default"]
    again = FeatureConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg
    cfg.check_compatible(again)
    with pytest.raises(ValueError, match="n_mels"):
        cfg.check_compatible(PRESETS["paper"])
    assert PRESETS["paper"].n_mels == 128 and PRESETS["paper"].hop_length == 128
    assert cfg.hop_length == 160 and cfg.win_length == 400
    with pytest.raises(ValueError, match="normalize"):
        FeatureConfig(normalize="bogus")


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100])
def test_load_resamples_to_16k(wav_factory, sr):
    p = wav_factory(f"t{sr}.wav", seconds=0.5, sr=sr)
    x = load_audio(p)
    assert x.dtype == np.float32 and abs(len(x) - 8000) <= 1
    # the tone survives resampling: its spectrum peaks at 440 Hz
    spec = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spec) * 16000 / len(x) - 440) < 4


def test_stereo_is_mixed_to_mono(tmp_path):
    p = tmp_path / "st.wav"
    left, right = tone(0.25), -tone(0.25) * 0.5
    sf.write(p, np.stack([left, right], 1), 16000)
    np.testing.assert_allclose(load_audio(p), (left + right) / 2, atol=1e-4)


def test_bad_audio_errors_name_the_file(tmp_path, wav_factory):
    with pytest.raises(InputError, match="missing.wav.*not found"):
        load_audio(tmp_path / "missing.wav")
    txt = tmp_path / "notes.wav"
    txt.write_text("this is not audio")
    with pytest.raises(InputError, match="notes.wav.*not a readable audio"):
        load_audio(txt)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(InputError, match="empty.wav.*zero-length"):
        load_audio(empty)
    flac = wav_factory("full.flac", seconds=2.0, fmt="FLAC")
    cut = tmp_path / "cut.flac"
    cut.write_bytes(flac.read_bytes()[:200])
    with pytest.raises(InputError, match="cut.flac"):
        load_audio(cut)


def test_log_mel_shape_and_normalization():
    cfg = PRESETS["default"]
    x = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    m = log_mel(x, cfg)
    assert m.shape == (40, cfg.n_frames(16000)) == (40, 101)
    z = features(x, cfg)
    np.testing.assert_allclose(z.mean(1), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(1), 1, atol=1e-3)
    mean, std = corpus_stats([m, m + 1])
    cz = features(x, FeatureConfig(normalize="corpus", mean=mean, std=std))
    np.testing.assert_allclose(cz, (m - np.array(mean)[:, None]) / np.array(std)[:, None], atol=1e-4)


def test_mel_inversion_round_trip_is_close():
    cfg = PRESETS["default"]
    t = np.arange(16000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 300 * t) + 0.2 * np.sin(2 * np.pi * 1200 * t * (1 + t))).astype(np.float32)
    m = log_mel(x, cfg)
    y = mel_to_audio(m, cfg, n_iter=48)
    from introspeech.audio import mel_power

    a, b = mel_power(x, cfg), mel_power(y[: len(x)], cfg)
    n = min(a.shape[1], b.shape[1])
    convergence = np.linalg.norm(np.sqrt(a[:, :n]) - np.sqrt(b[:, :n])) / np.linalg.norm(np.sqrt(a[:, :n]))
    assert convergence < 0.35, convergence


def test_features_are_the_same_bits_whatever_the_blas_threads():
    """In-process runs (BLAS on every core) and Dask workers (one thread) must read the same features."""
    from threadpoolctl import threadpool_limits

    from introspeech.audio import features

    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(16000 * 8)).astype(np.float32)
    with threadpool_limits(limits=2, user_api="blas"):
        a = features(wave)
    with threadpool_limits(limits=1, user_api="blas"):
        b = features(wave)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_samples_are_a_clear_error_naming_the_file(tmp_path, value):
    import soundfile as sf

    from introspeech.audio import features
    from introspeech.errors import InputError

    wave = np.zeros(16000, dtype=np.float32)
    wave[8000] = value
    path = tmp_path / "bad.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    with pytest.raises(InputError, match=r"bad.wav: 1 samples are NaN or infinite \(first at 0.500 s\)"):
        features(path)
