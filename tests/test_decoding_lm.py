"""Word language model and CTC prefix beam search, against references written from the formulas:
Kneser-Ney recursion, brute-force sums over every CTC path, and torch's CTC loss."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from introspeech.asr.beam import BeamDecoder, BeamSettings
from introspeech.asr.lm import BOS, EOS, UNK, NgramLM
from introspeech.corpus.lm_text import wordnet_definitions, wordnet_headwords
from introspeech.errors import InputError
from introspeech.text import BLANK, LETTERS

WORDS = "a b ab ba c".split()


def _sentences(n: int = 300, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(1, 6))) for _ in range(n)]


def _kn_reference(sentences: list[str], order: int):
    """Interpolated Kneser-Ney straight from its definition (Chen & Goodman 1998, eq. 21)."""
    raw: list[Counter] = [Counter() for _ in range(order + 1)]
    for s in sentences:
        w = [BOS, *s.split(), EOS]
        for n in range(1, order + 1):
            for i in range(len(w) - n + 1):
                if w[i:i + n] != [BOS]:
                    raw[n][tuple(w[i:i + n])] += 1
    cnt: list[Counter] = [Counter() for _ in range(order + 1)]
    cnt[order] = raw[order]
    for n in range(1, order):
        for g in raw[n]:
            cnt[n][g] = raw[n][g] if g[0] == BOS else len({h for h in raw[n + 1] if h[1:] == g})
    disc = {}
    for n in range(1, order + 1):
        n1 = sum(c == 1 for c in cnt[n].values())
        n2 = sum(c == 2 for c in cnt[n].values())
        disc[n] = n1 / (n1 + 2 * n2) if n1 and n2 else 0.5

    def p(h: tuple[str, ...], w: str) -> float:
        n = len(h) + 1
        if n == 1:
            total, types = sum(cnt[1].values()), len(cnt[1])
            return (max(cnt[1].get((w,), 0) - disc[1], 0) + disc[1] * types / (types + 1)) / total
        following = {g: c for g, c in cnt[n].items() if g[:-1] == h}
        if not following:
            return p(h[1:], w)
        denom = sum(following.values())
        return (max(cnt[n].get((*h, w), 0) - disc[n], 0) / denom
                + disc[n] * len(following) / denom * p(h[1:], w))

    return p


@pytest.mark.parametrize("order", [1, 2, 3])
def test_kneser_ney_matches_its_definition(order: int) -> None:
    sents = _sentences()
    lm = NgramLM.estimate(sents, order=order, min_count=1)
    ref = _kn_reference(sents, order)
    hist = [h for h in itertools.product([BOS, *WORDS, "zz"], repeat=order - 1) if BOS not in h[1:]]
    for h in hist:
        for w in [*WORDS, EOS]:
            assert lm.logprob(h, w) == pytest.approx(math.log(ref(h, w)), abs=1e-9), (h, w)


@pytest.mark.parametrize("order, min_count", [(1, 1), (2, 1), (3, 1), (3, 2), (4, 3)])
def test_every_history_is_a_distribution(order: int, min_count: int, tmp_path: Path) -> None:
    """Also after pruning (backoff weights renormalized) and after an ARPA round trip."""
    lm = NgramLM.estimate(_sentences(), order=order, min_count=min_count)
    lm.write_arpa(tmp_path / "lm.arpa")
    back = NgramLM.read_arpa(tmp_path / "lm.arpa")
    outcomes = [*WORDS, EOS, UNK]
    for h in [(BOS,), (BOS, "a"), ("a", "b"), ("c", "c", "c"), ("zz",), ("ab", "zz", "ba")]:
        assert sum(math.exp(lm.logprob(h, w)) for w in outcomes) == pytest.approx(1.0, abs=1e-9)
        for w in outcomes:
            assert back.logprob(h, w) == pytest.approx(lm.logprob(h, w), abs=1e-5)
    if min_count > 1:
        assert len(lm.prob[-1]) < len(NgramLM.estimate(_sentences(), order=order).prob[-1])


def test_unknown_words_and_sentence_score() -> None:
    lm = NgramLM.estimate(_sentences(), order=2)
    assert lm.logprob((BOS,), "never-seen") == lm.logprob((BOS,), UNK)
    words = ["a", "b", "c"]
    expected = lm.logprob((BOS,), "a") + lm.logprob(("a",), "b") + lm.logprob(("b",), "c") + lm.logprob(("c",), EOS)
    assert lm.sentence_logprob(words) == pytest.approx(expected)


def test_bad_arpa_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such"):
        NgramLM.read_arpa(tmp_path / "missing.arpa")
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=1\n\n\\1-grams:\n-1.0 a b c d\n\\end\\\n")
    with pytest.raises(InputError, match="bad.arpa"):
        NgramLM.read_arpa(bad)
    (tmp_path / "text.arpa").write_text("hello\n")
    with pytest.raises(InputError, match="not an ARPA"):
        NgramLM.read_arpa(tmp_path / "text.arpa")
    (tmp_path / "empty.arpa").write_text("\\data\\\n\\end\\\n")
    with pytest.raises(InputError, match="no 1-grams"):
        NgramLM.read_arpa(tmp_path / "empty.arpa")


# --- beam search ------------------------------------------------------------------------------------

def _labelling(path) -> str:
    out, prev = [], None
    for s in path:
        if s != prev and s != BLANK:
            out.append(LETTERS[s])
        prev = s
    text = "".join(out).lstrip(" ")
    while "  " in text:
        text = text.replace("  ", " ")
    return text


def _brute_force(lp: np.ndarray, symbols: list[int]) -> dict[str, float]:
    """ln P of every labelling: the sum over all CTC paths that collapse to it."""
    total: dict[str, float] = defaultdict(lambda: -math.inf)
    for path in itertools.product(symbols, repeat=lp.shape[0]):
        label = _labelling(path)
        total[label] = float(np.logaddexp(total[label], sum(lp[t, s] for t, s in enumerate(path))))
    return total


def _random_log_probs(frames: int, symbols: list[int], seed: int, scale: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(frames, len(symbols))) * scale
    lp = np.full((frames, BLANK + 1), -np.inf)
    lp[:, symbols] = x - np.log(np.exp(x).sum(1, keepdims=True))
    return lp


EXHAUSTIVE = dict(beam=10**6, token_min_logp=-math.inf, prune_logp=-math.inf)


@pytest.mark.parametrize("seed", range(3))
def test_prefix_search_sums_every_path(seed: int) -> None:
    """Without a language model and without pruning, every hypothesis carries the exact CTC
    probability of its labelling and the best one is the most probable labelling."""
    symbols = [0, 1, LETTERS.index(" "), BLANK]
    lp = _random_log_probs(5, symbols, seed)
    truth = _brute_force(lp, symbols)
    found = BeamDecoder(None, BeamSettings(alpha=0, beta=0, unk_penalty=0, **EXHAUSTIVE)).search(lp)
    assert {t for t, _, _ in found} == set(truth)
    for text, ctc, fused in found:
        assert ctc == pytest.approx(truth[text], abs=1e-12) and fused == ctc
    assert found[0][0] == max(truth, key=truth.get)


@pytest.mark.parametrize("seed", range(3))
def test_fused_scores_match_their_definition(seed: int) -> None:
    symbols = [0, 1, LETTERS.index(" "), BLANK]
    lm = NgramLM.estimate(["a b", "ab a", "b b a", "a"], order=2)
    s = BeamSettings(alpha=0.7, beta=0.3, unk_penalty=-2.0, **EXHAUSTIVE)
    lp = _random_log_probs(5, symbols, seed)
    truth = _brute_force(lp, symbols)

    def fused(text: str) -> float:
        w = text.split()
        return (truth[text] + s.alpha * lm.sentence_logprob(w) + s.beta * len(w)
                + s.unk_penalty * sum(x not in lm.vocab for x in w))

    found = BeamDecoder(lm, s).search(lp)
    for text, _, score in found:
        assert score == pytest.approx(fused(text), abs=1e-12)
    assert found[0][0] == max(truth, key=fused)


def _torch_ctc(lp: np.ndarray, text: str) -> float:
    target = torch.tensor([[LETTERS.index(c) for c in text]])
    loss = torch.nn.functional.ctc_loss(torch.as_tensor(lp).unsqueeze(1), target, torch.tensor([lp.shape[0]]),
                                        torch.tensor([len(text)]), blank=BLANK, reduction="sum")
    return -float(loss)


def test_exhaustive_search_agrees_with_torch_ctc() -> None:
    """12 frames (too many paths to enumerate): every labelling's probability is torch's CTC."""
    lp = _random_log_probs(12, [0, 1, BLANK], 0)
    found = BeamDecoder(None, BeamSettings(alpha=0, beta=0, unk_penalty=0, **EXHAUSTIVE)).search(lp)
    assert len(found) > 500
    assert sum(math.exp(c) for _, c, _ in found) == pytest.approx(1.0)
    for text, ctc, _ in found[:50] + found[-50:]:
        assert ctc == pytest.approx(_torch_ctc(lp, text), abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_pruned_search_is_a_lower_bound(seed: int) -> None:
    """With the default pruning on 60 frames of every letter, a kept hypothesis sums part of its
    paths: never more than torch's CTC probability."""
    symbols = [i for i in range(BLANK + 1) if LETTERS[i:i + 1] != (" ",)]
    lp = _random_log_probs(60, symbols, seed, scale=4.0)
    found = BeamDecoder(None, BeamSettings(alpha=0, beta=0, unk_penalty=0)).search(lp)
    for text, ctc, _ in found[:10]:
        assert ctc <= _torch_ctc(lp, text) + 1e-9


def test_language_model_picks_the_known_word() -> None:
    """Two acoustically tied spellings: the model's word wins, and the unknown one without it."""
    lm = NgramLM.estimate(["cab", "a cab", "the cab"] * 5, order=2)
    lp = np.full((4, BLANK + 1), -np.inf)
    idx = {c: LETTERS.index(c) for c in "cabk"}
    lp[0, idx["c"]], lp[0, idx["k"]] = math.log(0.5), math.log(0.5)
    lp[1, idx["a"]] = 0.0
    lp[2, BLANK] = 0.0
    lp[3, idx["b"]] = 0.0
    assert BeamDecoder(lm, BeamSettings()).decode(lp) == "cab"
    assert BeamDecoder(lm, BeamSettings(alpha=0, beta=0, unk_penalty=0)).search(lp)[0][1] == pytest.approx(math.log(0.5))


def test_beam_rejects_other_alphabets() -> None:
    with pytest.raises(ValueError, match="built-in alphabet"):
        BeamDecoder().decode(np.zeros((3, 12)))
    with pytest.raises(ValueError, match="beam"):
        BeamSettings(beam=0)


def test_wordnet_text_leaves_out_usage_examples(tmp_path: Path) -> None:
    (tmp_path / "data.noun").write_text(
        "  1 licence header\n00001 03 n 01 cab 0 000 | a car for hire; a taxi; \"the cab was late\"; \"hail a cab\"\n")
    (tmp_path / "index.noun").write_text("  1 licence\nmail_box n 1 0\ncab n 1 0\n")
    assert list(wordnet_definitions(tmp_path)) == ["a car for hire", "a taxi"]
    assert list(wordnet_headwords(tmp_path)) == ["mail box", "cab"]


def test_evaluate_with_a_language_model_is_the_library_search(tmp_path: Path) -> None:
    """``evaluate --lm`` decodes each utterance exactly as `BeamDecoder` on its log-softmax scores,
    and records the decoder in its JSON; a missing file is a one-line error."""
    import json

    from typer.testing import CliRunner

    from introspeech.asr.checkpoint import load_model
    from introspeech.asr.evaluate import scores
    from introspeech.cli import app
    from introspeech.corpus.load import builtin_corpus, load_corpus, utterance_features

    utts = load_corpus(builtin_corpus())["heldout"][:6]
    lm = NgramLM.estimate([u.text.lower() for u in load_corpus(builtin_corpus())["test"]], order=2)
    lm.write_arpa(tmp_path / "lm.arpa")
    runner = CliRunner()
    out = tmp_path / "e.json"
    res = runner.invoke(app, ["evaluate", "--splits", "heldout", "--lm", str(tmp_path / "lm.arpa"), "--beam", "8",
                              "--lm-weight", "0.4", "--word-bonus", "1.5", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    saved = json.loads(out.read_text())
    assert saved["decoder"]["kind"] == "beam" and saved["decoder"]["alpha"] == 0.4 and saved["decoder"]["beam"] == 8
    net, cfg, _ = load_model()
    dec = BeamDecoder(NgramLM.read_arpa(tmp_path / "lm.arpa"), BeamSettings(beam=8, alpha=0.4, beta=1.5))
    rows = {r["id"]: r["hypothesis"] for r in saved["utterances"]["heldout"]}
    for u in utts:
        lp = torch.log_softmax(scores(net, utterance_features(u, cfg)).double(), 0).T.numpy()
        assert rows[u.id] == dec.decode(lp)
    res = runner.invoke(app, ["evaluate", "--splits", "heldout", "--lm", str(tmp_path / "no.arpa"), "--out", str(out)])
    assert res.exit_code != 0 and "no.arpa: no such language model file" in res.output
    assert "Traceback" not in res.output
    NgramLM.estimate(["PRESS ONE", "press two"], order=2).write_arpa(tmp_path / "upper.arpa")
    res = runner.invoke(app, ["evaluate", "--splits", "heldout", "--lm", str(tmp_path / "upper.arpa"), "--out", str(out)])
    assert res.exit_code != 0 and "upper.arpa" in res.output and "'ONE'" in res.output and "Traceback" not in res.output


def test_several_decoders_in_one_pass_equal_one_at_a_time() -> None:
    from introspeech.asr.checkpoint import load_model
    from introspeech.asr.evaluate import evaluate_decoders, evaluate_split
    from introspeech.corpus.load import builtin_corpus, load_corpus

    data = load_corpus(builtin_corpus())
    utts = data["heldout"][:5]
    lm = NgramLM.estimate([u.text.lower() for u in data["test"]], order=2)
    decoders = {"greedy": None, "lm": BeamDecoder(lm, BeamSettings(beam=8)),
                "ctc": BeamDecoder(None, BeamSettings(beam=4, alpha=0, beta=0, unk_penalty=0))}
    net, cfg, _ = load_model()
    together = evaluate_decoders(net, cfg, utts, decoders)
    for name, beam in decoders.items():
        assert together[name] == evaluate_split(net, cfg, utts, beam=beam)
