"""``compare`` is calibrated: on same-distribution runs it rarely reports a change.

Simulated runs like the real ones (5 timed repetitions of 31 token gaps each, the model of
a real decode: every repetition has its own speed, a log-normal effect of 5%, and every
gap its own jitter of 10% around it) are compared in pairs drawn from one distribution.
A calibrated test reports ``regressed`` / ``improved`` in at most 5% of them. Before the
repetition became the unit of replication, ``itl_ms`` pooled the 155 gaps as independent
samples: its CI excluded 1 in about 35% of these comparisons and 17% were called changed
(issue 20); the pooled check below keeps that finding measured.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from meltbench.measure.analysis import analyze_reps
from meltbench.results.compare import compare_metric, compare_results, replicates
from tests.helpers import make_result

TRIALS = 200
REPS, GAPS = 5, 31
REP_SD, GAP_SD = 0.05, 0.10


def _reps(rng: random.Random) -> list[dict]:
    """Repetition events of one simulated run (one warmup, REPS timed), in ns."""
    out = []
    t = 1_000_000_000
    for i in range(REPS + 1):
        speed = rng.lognormvariate(0.0, REP_SD)
        start = t
        token_ns = [start + 50_000_000]
        for _ in range(GAPS):
            token_ns.append(token_ns[-1] + int(20e6 * speed * rng.lognormvariate(0.0, GAP_SD)))
        out.append(
            {
                "index": i,
                "kind": "warmup" if i == 0 else "timed",
                "t_start_ns": start,
                "token_ns": token_ns,
                "tokens": [1] * len(token_ns),
                "counters": None,
                "depth_fill_ns": None,
            }
        )
        t = token_ns[-1] + 1_000_000
    return out


def _run(rng: random.Random):
    from meltbench.results.schema import Repetition

    reps = _reps(rng)
    analysis = analyze_reps(reps, 8)
    return make_result().model_copy(
        update={
            "metrics": analysis.metrics,
            "repetitions": [Repetition.model_validate(r) for r in reps],
        }
    )


@pytest.fixture(scope="module")
def pairs():
    rng = random.Random(20261203)
    return [(_run(rng), _run(rng)) for _ in range(TRIALS)]


def test_itl_uses_one_value_per_repetition(pairs):
    base, _ = pairs[0]
    assert base.metrics["itl_ms"].n == REPS * GAPS
    assert base.metrics["itl_ms"].groups == (GAPS,) * REPS
    assert len(replicates(base, "itl_ms")) == REPS
    # a result saved before summaries had groups gets them from its repetitions
    pooled = dataclasses.replace(base.metrics["itl_ms"], groups=None)
    old = base.model_copy(update={"metrics": {**base.metrics, "itl_ms": pooled}})
    assert replicates(old, "itl_ms") == replicates(base, "itl_ms")


def test_false_positive_rate_is_at_most_5_percent(pairs):
    flagged = {"itl_ms": 0, "e2e_ms": 0, "decode_tps": 0}
    for i, (base, cand) in enumerate(pairs):
        comparison = compare_results([base], [cand], metrics=list(flagged), seed=i)
        for m in comparison.points[0].metrics:
            assert m.n_base == REPS and m.n_candidate == REPS
            flagged[m.metric] += m.verdict in ("regressed", "improved")
    rates = {name: count / TRIALS for name, count in flagged.items()}
    assert all(rate <= 0.05 for rate in rates.values()), rates


def test_pooling_the_gaps_would_not_be_calibrated(pairs):
    # The old method, kept as a measured reason for the new one: gaps as independent
    # samples make the CI exclude 1 far more often than 5% of the time.
    excluded = 0
    for i, (base, cand) in enumerate(pairs[:100]):
        m = compare_metric(
            "itl_ms", base.metrics["itl_ms"].samples, cand.metrics["itl_ms"].samples, seed=i
        )
        excluded += not (m.ci_low <= 1.0 <= m.ci_high)
    assert excluded / 100 > 0.15
