"""Accuracy core: row reduction, sliding-window perplexity, top-k KL, reference files.

Every expected number comes from a fake :class:`LogitsSource` whose next-token
distribution depends only on the previous token (a Markov chain with a hand-written
probability table), so each token's nll is ``-log P[prev][next]`` whatever the window.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from meltbench.accuracy import scoring
from meltbench.accuracy.base import LogitsSource, RowScores
from meltbench.accuracy.divergence import Comparison, compare, top1_agreement, topk_kl
from meltbench.accuracy.perplexity import (
    CorpusScores,
    WindowPlan,
    corpus_sha256,
    load_corpus,
    perplexity,
    plan_windows,
    score_corpus,
)
from meltbench.accuracy.reference import (
    FORMAT,
    Reference,
    check_compatible,
    load_reference,
    save_reference,
)
from meltbench.accuracy.scoring import reduce_rows
from meltbench.errors import UsageError

# P[prev][next]: rows sum to 1 exactly in binary-friendly or decimal fractions.
P = np.array(
    [
        [0.1, 0.2, 0.3, 0.25, 0.15],
        [0.5, 0.125, 0.125, 0.125, 0.125],
        [0.2, 0.2, 0.2, 0.2, 0.2],
        [0.05, 0.05, 0.1, 0.3, 0.5],
        [0.4, 0.3, 0.1, 0.1, 0.1],
    ]
)
V = P.shape[0]
BOS = 4
CORPUS = [1, 0, 3, 4, 4, 2, 0, 1, 3, 3, 2, 2, 0, 4, 1, 1, 0, 2, 3, 0, 4, 3, 1, 2, 4, 0, 0]


class MarkovSource(LogitsSource):
    """Logits ``log P[prev] + c(prev)`` (a shift per row, which softmax ignores)."""

    engine = "fake"

    def __init__(self, probs: np.ndarray = P, bos: int | None = BOS, n_ctx: int = 64) -> None:
        self.probs = probs
        self.bos = bos
        self.n_vocab = probs.shape[1]
        self.n_ctx = n_ctx
        self.calls: list[tuple[list[int], int]] = []

    def tokenize(self, text: str) -> list[int]:
        return [int(c) for c in text if c.isdigit()]

    def bos_token(self) -> int | None:
        return self.bos

    def score(
        self,
        tokens: Sequence[int],
        first: int,
        k: int,
        ref_ids: Any = None,
        *,
        keep_logprobs: bool = False,
        ref_full: Any = None,
    ) -> RowScores:
        tokens = list(tokens)
        if len(tokens) > self.n_ctx or not 0 <= first <= len(tokens) - 2:
            raise ValueError("bad window")
        self.calls.append((tokens, first))
        prev = np.array(tokens[first:-1])
        logits = np.log(self.probs[prev]) + 3.7 * prev[:, None]
        return reduce_rows(
            logits,
            np.array(tokens[first + 1 :]),
            k,
            ref_ids=ref_ids,
            keep_logprobs=keep_logprobs,
            ref_full=ref_full,
        )


def expected_nll(
    tokens: list[int], bos: int | None, ctx: int, stride: int
) -> tuple[list[int], list[float]]:
    """Scored positions and their nll by hand: ``-log P[prev][token]``, where ``prev`` is
    the previous corpus token, or BOS for the first token of a window (with stride == L
    a window's first token is scored, predicted from BOS alone; so is token 0)."""
    positions, nll = [], []
    for p in plan_windows(len(tokens), ctx, stride, bos is not None):
        for i in range(p.score_from, p.end):
            prev = bos if i == p.start else tokens[i - 1]
            positions.append(i)
            nll.append(-math.log(P[prev][tokens[i]]))
    return positions, nll


# --------------------------------------------------------------------------- reduce_rows


def test_reduce_rows_exact_nll_topk_and_ref_gather():
    logits = np.array([[1.0, 3.0, 2.0, 3.0]])
    lse = math.log(math.e + math.e**3 + math.e**2 + math.e**3)
    rows = reduce_rows(logits, np.array([2]), k=3, ref_ids=np.array([[2, 0]]))
    assert rows.nll.dtype == np.float64 and rows.nll[0] == pytest.approx(lse - 2.0, rel=1e-15)
    # ties (ids 1 and 3 both 3.0): lower id first
    assert rows.topk_ids.tolist() == [[1, 3, 2]] and rows.topk_ids.dtype == np.int32
    assert rows.topk_logprobs.dtype == np.float32
    np.testing.assert_allclose(rows.topk_logprobs[0], [3 - lse, 3 - lse, 2 - lse], rtol=1e-7)
    np.testing.assert_allclose(rows.ref_logprobs[0], [2 - lse, 1 - lse], rtol=1e-7)
    assert rows.ref_logprobs.dtype == np.float32 and len(rows) == 1


def test_reduce_rows_ties_across_the_kth_place_keep_lower_ids():
    logits = np.array([[0.0, 5.0, 5.0, 5.0, 5.0, 1.0], [2.0, 2.0, 2.0, 2.0, 2.0, 2.0]])
    rows = reduce_rows(logits, np.array([0, 0]), k=2)
    assert rows.topk_ids.tolist() == [[1, 2], [0, 1]]
    assert rows.ref_logprobs is None


def test_reduce_rows_k_is_clipped_to_the_vocabulary_and_float16_works():
    logits = np.array([[0.0, 1.0, 0.5]], dtype=np.float16)
    rows = reduce_rows(logits, np.array([1]), k=10)
    assert rows.topk_ids.tolist() == [[1, 2, 0]]
    assert np.exp(rows.topk_logprobs.astype(np.float64)).sum() == pytest.approx(1.0, abs=1e-6)


def test_reduce_rows_accepts_bfloat16():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    logits = np.array([[0.0, 1.0, 0.5]], dtype=ml_dtypes.bfloat16)
    rows = reduce_rows(logits, np.array([0]), k=2)
    lse = math.log(1 + math.e + math.exp(0.5))
    assert rows.topk_ids.tolist() == [[1, 2]]
    assert rows.nll[0] == pytest.approx(lse, rel=1e-12)


def test_reduce_rows_matches_a_sort_on_random_rows_with_small_chunks(monkeypatch):
    rng = np.random.default_rng(7)
    logits = rng.integers(-4, 4, size=(37, 23)).astype(np.float32)  # many ties
    nxt = rng.integers(0, 23, size=37)
    ref = rng.integers(0, 23, size=(37, 6))
    full = reduce_rows(logits, nxt, k=5, ref_ids=ref)
    monkeypatch.setattr(scoring, "_CHUNK_ELEMENTS", 50)  # 2 rows per chunk
    chunked = reduce_rows(logits, nxt, k=5, ref_ids=ref)
    x = logits.astype(np.float64)
    lse = np.log(np.exp(x).sum(axis=1))
    for r in range(37):
        order = sorted(range(23), key=lambda j, r=r: (-x[r, j], j))[:5]
        assert full.topk_ids[r].tolist() == order
    np.testing.assert_allclose(full.nll, lse - x[np.arange(37), nxt], rtol=1e-12)
    np.testing.assert_allclose(
        full.ref_logprobs, x[np.arange(37)[:, None], ref] - lse[:, None], rtol=1e-6
    )
    for name in ("nll", "topk_ids", "topk_logprobs", "ref_logprobs"):
        assert np.array_equal(getattr(full, name), getattr(chunked, name))


def test_reduce_rows_refuses_bad_input():
    with pytest.raises(ValueError, match="not finite"):
        reduce_rows(np.array([[0.0, np.nan]]), np.array([0]), k=1)
    with pytest.raises(ValueError, match="token ids"):
        reduce_rows(np.zeros((1, 3)), np.array([3]), k=1)
    with pytest.raises(ValueError, match="ref_ids"):
        reduce_rows(np.zeros((2, 3)), np.array([0, 1]), k=1, ref_ids=np.zeros((1, 2), int))
    with pytest.raises(ValueError, match="k must be"):
        reduce_rows(np.zeros((1, 3)), np.array([0]), k=0)


# --------------------------------------------------------------------------- windows


def hf_windows(n: int, max_length: int, stride: int) -> list[tuple[int, int, int]]:
    """The loop of https://huggingface.co/docs/transformers/perplexity, literally."""
    out = []
    prev_end_loc = 0
    for begin_loc in range(0, n, stride):
        end_loc = min(begin_loc + max_length, n)
        trg_len = end_loc - prev_end_loc
        out.append((begin_loc, end_loc, end_loc - trg_len))
        prev_end_loc = end_loc
        if end_loc == n:
            break
    return out


@pytest.mark.parametrize("bos", [True, False])
@pytest.mark.parametrize(
    ("n", "ctx", "stride"),
    [(10, 5, 2), (10, 5, 4), (11, 4, 3), (100, 17, 5), (7, 64, 32), (2, 2, 1), (33, 9, 8)],
)
def test_plan_windows_scores_every_token_exactly_once(n, ctx, stride, bos):
    if stride > ctx - 1:
        pytest.skip("invalid")
    plans = plan_windows(n, ctx, stride, bos)
    length = ctx - (1 if bos else 0)
    scored = [i for p in plans for i in range(p.score_from, p.end)]
    assert scored == list(range(0 if bos else 1, n))
    assert [p.start for p in plans] == [stride * w for w in range(len(plans))]
    assert plans[0].start == 0 and plans[0].score_from == (0 if bos else 1)
    assert plans[-1].end == n
    for p in plans:
        window_len = (1 if bos else 0) + p.end - p.start
        assert window_len <= ctx and p.end - p.start <= length
        assert 0 <= p.first(bos) <= window_len - 2
        assert p.n_scored == window_len - 1 - p.first(bos)
    # Same windows as Hugging Face's loop (which cannot score a window's first token).
    hf = hf_windows(n, length, stride)
    ours = [(p.start, p.end, p.score_from) for p in plans]
    if not bos:
        hf[0] = (hf[0][0], hf[0][1], 1)
    assert ours == hf


def test_plan_windows_by_hand():
    # ctx 5 with BOS: 4 corpus tokens per window; stride 2.
    assert plan_windows(10, 5, 2, True) == [
        WindowPlan(0, 4, 0),
        WindowPlan(2, 6, 4),
        WindowPlan(4, 8, 6),
        WindowPlan(6, 10, 8),
    ]
    # stride == L with BOS: disjoint windows, each one's first token predicted from BOS.
    plans = plan_windows(10, 5, 4, True)
    assert plans == [WindowPlan(0, 4, 0), WindowPlan(4, 8, 4), WindowPlan(8, 10, 8)]
    assert [p.first(True) for p in plans] == [0, 0, 0]
    # without BOS, ctx 4 holds 4 corpus tokens; stride 3 = ctx - 1 is the largest.
    plans = plan_windows(10, 4, 3, False)
    assert plans == [
        WindowPlan(0, 4, 1),
        WindowPlan(3, 7, 4),
        WindowPlan(6, 10, 7),
    ]
    assert [p.first(False) for p in plans] == [0, 0, 0]
    assert plan_windows(0, 4, 1, True) == [] and plan_windows(1, 4, 1, False) == []
    assert plan_windows(1, 4, 1, True) == [WindowPlan(0, 1, 0)]


def test_plan_windows_validates_its_options():
    with pytest.raises(ValueError, match="--ctx"):
        plan_windows(10, 1, 1, True)
    for stride in (0, 5):
        with pytest.raises(ValueError, match="--stride"):
            plan_windows(10, 5, stride, True)
    with pytest.raises(ValueError, match="--stride"):
        plan_windows(10, 5, 5, False)  # a window's first token has no predecessor


# --------------------------------------------------------------------------- perplexity


@pytest.mark.parametrize("bos", [BOS, None])
@pytest.mark.parametrize(("ctx", "stride"), [(4, 1), (4, 3), (8, 3), (64, 32), (2, 1)])
def test_score_corpus_equals_hand_computed_nll(bos, ctx, stride):
    source = MarkovSource(bos=bos)
    progress: list[tuple[int, int, int]] = []
    scores = score_corpus(
        source, CORPUS, ctx=ctx, stride=stride, k=3, on_window=lambda *a: progress.append(a)
    )
    positions, nll = expected_nll(CORPUS, bos, ctx, stride)
    assert positions == list(range(0 if bos is not None else 1, len(CORPUS)))
    assert scores.positions.tolist() == positions and scores.positions.dtype == np.int32
    np.testing.assert_allclose(scores.nll, nll, rtol=1e-12)
    assert scores.perplexity == pytest.approx(math.exp(sum(nll) / len(nll)), rel=1e-12)
    assert scores.n_scored == len(positions)
    assert scores.tokens.tolist() == CORPUS and scores.tokens.dtype == np.int32
    assert scores.topk_ids.shape == (len(positions), 3) and scores.ref_logprobs is None
    # windows sent to the source: [BOS] + tokens[start:end], first as documented
    plans = plan_windows(len(CORPUS), ctx, stride, bos is not None)
    head = [bos] if bos is not None else []
    assert source.calls == [
        (head + CORPUS[p.start : p.end], p.first(bos is not None)) for p in plans
    ]
    n = len(plans)
    assert progress[-1] == (n, n, len(positions)) and [p[0] for p in progress] == list(
        range(1, n + 1)
    )
    assert scores.meta == {
        "method": "hf-strided-sliding-window",
        "ctx": ctx,
        "stride": stride,
        "k": 3,
        "bos": bos is not None,
        "bos_token": bos,
        "n_windows": n,
        "n_vocab": V,
    }


def test_score_corpus_top1_is_the_argmax_of_the_previous_tokens_row():
    scores = score_corpus(MarkovSource(), CORPUS, ctx=6, stride=2, k=2)
    prevs = [BOS, *CORPUS[:-1]]
    for j, prev in enumerate(prevs):
        row = P[prev]
        best = sorted(range(V), key=lambda t, row=row: (-row[t], t))[:2]
        assert scores.topk_ids[j].tolist() == best


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    uniform = np.full((7, 7), 1.0 / 7)
    scores = score_corpus(
        MarkovSource(uniform, bos=0), [3, 1, 4, 1, 5, 6, 2, 6, 5], ctx=4, stride=2
    )
    assert scores.perplexity == pytest.approx(7.0, rel=1e-12)
    assert perplexity(np.full(1000, math.log(262144))) == pytest.approx(262144.0, rel=1e-12)
    with pytest.raises(ValueError):
        perplexity([])


def test_score_corpus_refuses_bad_options():
    with pytest.raises(UsageError, match="--stride"):
        score_corpus(MarkovSource(), CORPUS, ctx=4, stride=4)
    with pytest.raises(UsageError, match="--ctx"):
        score_corpus(MarkovSource(n_ctx=8), CORPUS, ctx=16, stride=4)
    with pytest.raises(UsageError, match="--corpus"):
        score_corpus(MarkovSource(bos=None), [3], ctx=4, stride=2)
    with pytest.raises(UsageError, match="tokenizer"):
        score_corpus(MarkovSource(), CORPUS, ctx=4, stride=2, ref_topk_ids=np.zeros((3, 2), int))


def test_load_corpus_and_its_hash(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("héllo world\n", encoding="utf-8")
    assert load_corpus(f) == "héllo world\n"
    assert load_corpus(f, max_chars=2) == "hé"
    assert corpus_sha256("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "latin1.txt").write_bytes("h\xe9".encode("latin-1"))
    cases = [
        (tmp_path / "missing.txt", "not found"),
        (tmp_path / "empty.txt", "empty"),
        (tmp_path / "latin1.txt", "UTF-8"),
        (tmp_path, "cannot read"),
    ]
    for path, what in cases:
        with pytest.raises(UsageError, match=what) as err:
            load_corpus(path)
        assert "--corpus" in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------- divergence


def kl_full(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    return float(np.sum(p[mask] * (np.log(p[mask]) - np.log(q[mask]))))


def coarse_inputs(p: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    ids = sorted(range(len(p)), key=lambda t: (-p[t], t))[:k]
    return np.log(p[ids])[None, :], np.log(q[ids])[None, :]


def test_topk_kl_of_identical_distributions_is_exactly_zero():
    rng = np.random.default_rng(1)
    lp = np.log(rng.dirichlet(np.ones(50), size=20))[:, :8].astype(np.float32)
    assert np.array_equal(topk_kl(lp, lp), np.zeros(20))


def test_topk_kl_by_hand_three_tokens_k2():
    # P = (0.5, 0.3, 0.2), Q = (0.25, 0.25, 0.5); the reference's top-2 = tokens 0, 1.
    # rest: p = 0.2, q = 1 - 0.25 - 0.25 = 0.5.
    # KL = 0.5 ln(0.5/0.25) + 0.3 ln(0.3/0.25) + 0.2 ln(0.2/0.5)
    #    = 0.5 ln 2 + 0.3 ln 1.2 + 0.2 ln 0.4
    #    = 0.346573590 + 0.054696467 - 0.183258146 = 0.218011911 nats
    expected = 0.5 * math.log(2) + 0.3 * math.log(1.2) + 0.2 * math.log(0.4)
    assert expected == pytest.approx(0.218011911, abs=1e-9)
    kl = topk_kl(np.log([[0.5, 0.3]]), np.log([[0.25, 0.25]]))
    assert kl.shape == (1,) and kl.dtype == np.float64
    assert kl[0] == pytest.approx(expected, rel=1e-12)
    # the rest bucket is one token here, so it is also the full KL
    assert kl[0] == pytest.approx(kl_full(np.array([0.5, 0.3, 0.2]), np.array([0.25, 0.25, 0.5])))


def test_topk_kl_equals_full_kl_when_k_is_the_vocabulary():
    rng = np.random.default_rng(2)
    for _ in range(20):
        p, q = rng.dirichlet(np.ones(12)), rng.dirichlet(np.ones(12))
        lp, lq = coarse_inputs(p, q, 12)
        assert topk_kl(lp, lq)[0] == pytest.approx(kl_full(p, q), rel=1e-10, abs=1e-12)


def test_topk_kl_is_a_lower_bound_of_full_kl_and_exact_when_p_lives_in_its_topk():
    rng = np.random.default_rng(3)
    for k in (1, 2, 5, 10):
        for _ in range(50):
            p = rng.dirichlet(np.full(40, 0.3))
            q = rng.dirichlet(np.full(40, 0.3))
            lp, lq = coarse_inputs(p, q, k)
            coarse = topk_kl(lp, lq)[0]
            assert 0.0 <= coarse <= kl_full(p, q) + 1e-12
    # all of the reference's mass in its top-3: coarse == full
    p = np.array([0.6, 0.3, 0.1, 0.0, 0.0])
    q = np.array([0.2, 0.2, 0.2, 0.2, 0.2])
    with np.errstate(divide="ignore"):
        lp, lq = coarse_inputs(p, q, 3)
    assert topk_kl(lp, lq)[0] == pytest.approx(kl_full(p, q), rel=1e-12)


def test_topk_kl_handles_zero_probabilities():
    # p_i = 0 contributes 0; q_i = 0 where p_i > 0 makes the KL infinite.
    kl = topk_kl(np.log([[1.0, 1e-300]]), np.log([[0.5, 0.5]]))
    assert kl[0] == pytest.approx(math.log(2), rel=1e-12)
    with np.errstate(divide="ignore"):
        assert topk_kl(np.log([[0.5]]), np.log([[0.0]]))[0] == math.inf
    with pytest.raises(ValueError):
        topk_kl(np.zeros((2, 3)), np.zeros((2, 2)))


def test_top1_agreement():
    assert top1_agreement([1, 2, 3, 4], [1, 0, 3, 0]) == 0.5
    with pytest.raises(ValueError):
        top1_agreement([], [])


def test_compare_a_source_with_itself():
    ref = Reference.from_scores(score_corpus(MarkovSource(), CORPUS, ctx=8, stride=4), {})
    cand = score_corpus(MarkovSource(), CORPUS, ctx=8, stride=4, ref_topk_ids=ref.topk_ids)
    c = compare(ref, cand)
    assert isinstance(c, Comparison)
    assert c.top1_agreement == 1.0 and c.ppl_ratio == 1.0 and c.kl_topk_bound_mean_nats == 0.0
    assert c.n_tokens == len(CORPUS) and c.k == V  # k = 32 clipped to the vocabulary
    # a saved reference gives only the bound: never under the KL's own name
    assert not c.kl_is_full and c.kl_mean_nats is None
    assert list(c.to_metrics()) == [
        "perplexity",
        "perplexity_ref",
        "ppl_ratio",
        "kl_topk_bound_mean_nats",
        "ref_topk_mass_mean",
        "top1_agreement",
    ]
    assert c.ref_topk_mass_mean == pytest.approx(1.0, abs=1e-6)  # k = V: all the mass


def test_lockstep_with_itself_is_zero_and_reports_the_full_kl():
    cand = score_corpus(MarkovSource(), CORPUS, ctx=8, stride=4, k=2, reference=MarkovSource())
    ref = Reference.from_scores(cand.reference_scores, {})
    c = compare(ref, cand)
    assert c.kl_is_full
    assert c.kl_max_nats == pytest.approx(0.0, abs=1e-7)  # float32 reference rows
    assert list(c.to_metrics()) == [
        "perplexity",
        "perplexity_ref",
        "ppl_ratio",
        "kl_mean_nats",
        "kl_median_nats",
        "kl_p99_nats",
        "kl_max_nats",
        "kl_topk_bound_mean_nats",
        "ref_topk_mass_mean",
        "top1_agreement",
    ]
    np.testing.assert_array_equal(cand.reference_scores.nll, cand.nll)


def test_compare_against_a_different_model_by_hand():
    # the candidate predicts uniformly: KL per position = sum_t P[prev][t] ln(5 P[prev][t])
    prevs = [BOS, *CORPUS[:-1]]
    kl = [kl_full(P[prev], np.full(V, 1.0 / V)) for prev in prevs]
    uniform = MarkovSource(np.full((V, V), 1.0 / V))
    # a saved reference with k = V: the bound is the full KL (nothing outside the top-k)
    ref = Reference.from_scores(score_corpus(MarkovSource(), CORPUS, ctx=8, stride=4, k=V), {})
    cand = score_corpus(uniform, CORPUS, ctx=8, stride=4, k=V, ref_topk_ids=ref.topk_ids)
    c = compare(ref, cand)
    assert c.kl_topk_bound_mean_nats == pytest.approx(sum(kl) / len(kl), rel=1e-6)
    assert c.ppl == pytest.approx(5.0, rel=1e-12)
    assert c.ppl_ratio == pytest.approx(5.0 / ref.perplexity, rel=1e-12)
    # uniform ties: argmax is token 0 for the candidate
    ref_top1 = [int(np.argmax(P[prev])) for prev in prevs]
    assert c.top1_agreement == pytest.approx(np.mean([t == 0 for t in ref_top1]))
    # lockstep with k = 2: the full KL exactly, and the top-2 bound strictly below it
    cand = score_corpus(uniform, CORPUS, ctx=8, stride=4, k=2, reference=MarkovSource())
    c = compare(Reference.from_scores(cand.reference_scores, {}), cand)
    assert c.kl_mean_nats == pytest.approx(sum(kl) / len(kl), rel=1e-6)
    assert c.kl_max_nats == pytest.approx(max(kl), rel=1e-6)
    assert c.kl_median_nats == pytest.approx(float(np.median(kl)), rel=1e-6)
    assert c.kl_p99_nats == pytest.approx(float(np.percentile(kl, 99)), rel=1e-6)
    assert 0 < c.kl_topk_bound_mean_nats < c.kl_mean_nats
    mass = [sorted(P[prev])[-2:] for prev in prevs]
    assert c.ref_topk_mass_mean == pytest.approx(np.mean([sum(m) for m in mass]), rel=1e-6)


def test_lockstep_refuses_another_vocabulary_or_bos():
    six = np.full((V, 6), 1.0 / 6)
    with pytest.raises(UsageError, match="vocabulary of 6 tokens"):
        score_corpus(MarkovSource(), CORPUS, ctx=8, stride=4, reference=MarkovSource(six))
    with pytest.raises(UsageError, match="BOS token is None"):
        score_corpus(MarkovSource(), CORPUS, ctx=8, stride=4, reference=MarkovSource(bos=None))
    with pytest.raises(ValueError, match="not both"):
        score_corpus(
            MarkovSource(), CORPUS, ctx=8, stride=4, ref_topk_ids=np.zeros((27, 2)),
            reference=MarkovSource(),
        )  # fmt: skip


def test_reduce_rows_full_logprobs_and_full_kl_by_hand():
    # P = (0.5, 0.3, 0.2), Q = (0.25, 0.25, 0.5): KL = 0.218011911 nats (above)
    lq = np.log([[0.25, 0.25, 0.5]]) + 1.5  # a shift: softmax ignores it
    rows = reduce_rows(lq, np.array([0]), k=1, ref_full=np.log([[0.5, 0.3, 0.2]]))
    expected = 0.5 * math.log(2) + 0.3 * math.log(1.2) + 0.2 * math.log(0.4)
    assert rows.kl.dtype == np.float64 and rows.kl[0] == pytest.approx(expected, rel=1e-12)
    assert rows.logprobs is None
    kept = reduce_rows(lq, np.array([0]), k=1, keep_logprobs=True)
    np.testing.assert_allclose(kept.logprobs, np.log([[0.25, 0.25, 0.5]]), rtol=1e-7)
    assert kept.logprobs.dtype == np.float32 and kept.kl is None
    # p = 0 terms are 0; q = 0 where p > 0 is infinite, as the definition says
    with np.errstate(divide="ignore"):
        zero_p = reduce_rows(lq, np.array([0]), k=1, ref_full=np.log([[1.0, 0.0, 0.0]]))
        assert zero_p.kl[0] == pytest.approx(math.log(4), rel=1e-12)
        inf_q = reduce_rows(
            np.log([[1.0, 0.0, 1.0]]), np.array([0]), k=1, ref_full=np.log([[0.5, 0.5, 0.0]])
        )
    assert inf_q.kl[0] == math.inf
    with pytest.raises(ValueError, match="ref_full must have shape"):
        reduce_rows(lq, np.array([0]), k=1, ref_full=np.zeros((1, 4)))


def test_compare_refuses_other_tokens_vocabularies_and_windows():
    ref = Reference.from_scores(score_corpus(MarkovSource(), CORPUS, ctx=8, stride=4), {})
    other = list(CORPUS)
    other[3] = 2
    cand = score_corpus(MarkovSource(), other, ctx=8, stride=4, ref_topk_ids=ref.topk_ids)
    with pytest.raises(UsageError) as err:
        compare(ref, cand)
    assert str(err.value) == (
        "the candidate tokenizes the corpus differently from the reference "
        f"(first difference at token 3: {CORPUS[3]} vs 2): KL and top-1 agreement need "
        "models with the same vocabulary and tokenizer"
    )
    cand = score_corpus(MarkovSource(), CORPUS, ctx=8, stride=4, ref_topk_ids=ref.topk_ids)
    cand.meta["n_vocab"] = 6
    with pytest.raises(UsageError, match="vocabulary of 6 tokens"):
        compare(ref, cand)
    no_bos = score_corpus(MarkovSource(bos=None), CORPUS, ctx=8, stride=4)
    with pytest.raises(UsageError, match="other positions"):
        compare(ref, CorpusScores(**{**no_bos.__dict__, "tokens": ref.tokens}))
    with pytest.raises(ValueError, match="ref_topk_ids"):
        compare(ref, score_corpus(MarkovSource(), CORPUS, ctx=8, stride=4))


# --------------------------------------------------------------------------- reference


def make_reference() -> Reference:
    scores = score_corpus(MarkovSource(), CORPUS, ctx=8, stride=4, k=3)
    meta = {
        "model": "fake.gguf",
        "engine": "fake",
        "corpus_sha256": corpus_sha256("x"),
        "corpus_chars": 1,
        "created_at": "2025-01-01T00:00:00+00:00",
    }
    return Reference.from_scores(scores, meta)


def test_reference_round_trip_is_exact(tmp_path):
    ref = make_reference()
    assert ref.meta["format"] == FORMAT and ref.meta["ctx"] == 8 and ref.meta["k"] == 3
    assert "meltbench_version" in ref.meta
    path = tmp_path / "sub" / "ref.npz"
    save_reference(ref, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["ref.npz"]  # no temp left
    back = load_reference(path)
    for name in ("tokens", "positions", "nll", "topk_ids", "topk_logprobs"):
        a, b = getattr(ref, name), getattr(back, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert back.meta == ref.meta and back.path == str(path)
    assert back.perplexity == ref.perplexity
    with np.load(path, allow_pickle=False) as npz:
        assert npz["meta"].dtype.kind == "U" and npz["meta"].ndim == 0


def write_npz(path, **arrays) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def valid_arrays(ref: Reference) -> dict[str, Any]:
    return {
        "tokens": ref.tokens,
        "positions": ref.positions,
        "nll": ref.nll,
        "topk_ids": ref.topk_ids,
        "topk_logprobs": ref.topk_logprobs,
        "meta": np.array(json.dumps(ref.meta)),
    }


def assert_refused(path, match: str) -> None:
    with pytest.raises(UsageError, match=match) as err:
        load_reference(path)
    assert "\n" not in str(err.value)


def test_load_reference_refuses_pickles_and_bad_files(tmp_path):
    ref = make_reference()
    arrays = valid_arrays(ref)
    write_npz(tmp_path / "obj.npz", **{**arrays, "tokens": np.array([1, "a"], dtype=object)})
    assert_refused(tmp_path / "obj.npz", "Python objects")
    write_npz(tmp_path / "objmeta.npz", **{**arrays, "meta": np.array(ref.meta, dtype=object)})
    assert_refused(tmp_path / "objmeta.npz", "Python objects")
    assert_refused(tmp_path / "missing.npz", "not found")
    (tmp_path / "garbage.npz").write_bytes(b"this is not a zip file at all\n" * 10)
    assert_refused(tmp_path / "garbage.npz", "not a reference .npz")
    np.save(tmp_path / "one.npy", np.arange(3))
    assert_refused(tmp_path / "one.npy", "single .npy")
    write_npz(tmp_path / "partial.npz", **{k: v for k, v in arrays.items() if k != "nll"})
    assert_refused(tmp_path / "partial.npz", "no nll")
    write_npz(tmp_path / "shape.npz", **{**arrays, "nll": ref.nll[:-1]})
    assert_refused(tmp_path / "shape.npz", "nll has shape")
    write_npz(tmp_path / "ids.npz", **{**arrays, "topk_ids": ref.topk_ids.astype(np.float32)})
    assert_refused(tmp_path / "ids.npz", "dtype")
    old = {**ref.meta, "format": "meltbench-reference/0"}
    write_npz(tmp_path / "old.npz", **{**arrays, "meta": np.array(json.dumps(old))})
    assert_refused(tmp_path / "old.npz", "recompute")
    write_npz(tmp_path / "badjson.npz", **{**arrays, "meta": np.array("{not json")})
    assert_refused(tmp_path / "badjson.npz", "JSON")


def test_load_reference_refuses_every_truncation_and_corruption(tmp_path):
    path = tmp_path / "ref.npz"
    save_reference(make_reference(), path)
    data = path.read_bytes()
    assert zipfile.is_zipfile(path)
    cut = tmp_path / "cut.npz"
    for n in sorted({0, 1, 10, 100, len(data) // 2, len(data) - 30, len(data) - 1}):
        cut.write_bytes(data[:n])
        with pytest.raises(UsageError):
            load_reference(cut)
    rng = np.random.default_rng(4)
    flipped = tmp_path / "flip.npz"
    for _ in range(30):
        buf = bytearray(data)
        i = int(rng.integers(0, len(buf)))
        buf[i] ^= 0xFF
        flipped.write_bytes(bytes(buf))
        try:
            load_reference(flipped)  # a flip in ignored zip metadata may go unnoticed
        except UsageError as exc:
            assert "\n" not in str(exc)


def test_save_reference_refuses_inconsistent_arrays(tmp_path):
    ref = make_reference()
    ref.nll = ref.nll[:-1]
    with pytest.raises(ValueError, match="inconsistent"):
        save_reference(ref, tmp_path / "r.npz")
    assert list(tmp_path.iterdir()) == []


def test_check_compatible_names_the_mismatch_and_the_fix():
    ref = make_reference()
    sha = ref.meta["corpus_sha256"]
    check_compatible(ref, n_vocab=V, ctx=8, stride=4, corpus_sha256=sha)
    check_compatible(ref, n_vocab=None, ctx=8, stride=4, corpus_sha256=None)
    with pytest.raises(UsageError, match=r"--ctx 8 --stride 4, not --ctx 16 --stride 4; pass"):
        check_compatible(ref, n_vocab=V, ctx=16, stride=4, corpus_sha256=sha)
    with pytest.raises(UsageError, match=r"--ctx 8 --stride 4, not --ctx 8 --stride 2"):
        check_compatible(ref, n_vocab=V, ctx=8, stride=2, corpus_sha256=sha)
    with pytest.raises(UsageError, match=r"another corpus text.*--max-chars"):
        check_compatible(ref, n_vocab=V, ctx=8, stride=4, corpus_sha256=corpus_sha256("y"))
    with pytest.raises(UsageError, match="vocabulary of 5 tokens and this model 6"):
        check_compatible(ref, n_vocab=6, ctx=8, stride=4, corpus_sha256=sha)
