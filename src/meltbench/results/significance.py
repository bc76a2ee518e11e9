"""The statistics of ``meltbench compare``: ratio of medians, bootstrap CI, Mann-Whitney U,
verdict (pure Python).

Statistics, per matched point and metric (default metrics: ``prefill_tps``,
``decode_tps``, ``ttft_ms``, ``itl_ms``, ``e2e_ms``, ``peak_rss_bytes``, when both sides
have raw samples):

- ``ratio = median(candidate) / median(base)`` (medians as in
  :func:`meltbench.measure.stats.percentile`, Hyndman & Fan type 7).
- 95% confidence interval of the ratio by the percentile bootstrap: each side's raw
  samples are resampled with replacement, ``B = 2000`` times, with
  ``random.Random(seed)``; the interval is the 2.5th and 97.5th percentiles of the
  resampled ratios (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*,
  ch. 13).
- two-sided Mann-Whitney U test (Mann & Whitney 1947, *Ann. Math. Statist.* 18(1):50-60):
  exact p-value from the permutation distribution of the rank sum (midranks for ties,
  conditional on the tie pattern) when both samples have at most 20 values; else the
  normal approximation with tie correction and continuity correction (Lehmann 1975,
  *Nonparametrics*, ch. 1).
- verdict: higher is better for ``*_tps``; lower is better for ``*_ms``, ``*_bytes`` and
  energy/power/temperature metrics. ``regressed`` / ``improved`` when the CI excludes 1
  on the worse / better side **and** the ratio is beyond the threshold that way
  (default 5%: ratio < 0.95 or > 1.05); ``within threshold`` when the CI excludes 1 but
  the change is smaller than the threshold; ``no significant change`` when the CI
  contains 1; ``too few samples`` when a side has fewer than 3. The p-value is reported
  but does not gate: with 3 samples per side the smallest exact two-sided p is 0.1.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from meltbench import metrics as metrics_catalogue
from meltbench.measure.stats import percentile

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "CONFIDENCE",
    "MIN_SAMPLES",
    "MannWhitneyResult",
    "MetricComparison",
    "Verdict",
    "bootstrap_ratio_ci",
    "compare_metric",
    "mann_whitney_u",
    "metric_direction",
    "midranks",
    "verdict",
]

BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
MIN_SAMPLES = 3
EXACT_MAX_N = 20

Verdict = Literal[
    "improved", "regressed", "within threshold", "no significant change", "too few samples"
]


@dataclass(frozen=True)
class MannWhitneyResult:
    """A two-sided Mann-Whitney U test of x against y.

    Attributes:
        u: U statistic of x: the number of pairs (x_i, y_j) with x_i > y_j, ties counting
            1/2; in [0, len(x) * len(y)].
        p_value: two-sided p-value, in (0, 1].
        method: ``exact`` (permutation distribution of the rank sum) or ``normal``.
    """

    u: float
    p_value: float
    method: Literal["exact", "normal"]


def midranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..N of ``values``, tied values sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j + 2) / 2.0  # mean of ranks i+1 .. j+1
        i = j + 1
    return ranks


def _exact_rank_sum_tails(doubled_ranks: Sequence[int], n1: int, w2: int) -> tuple[float, float]:
    """P(W <= w) and P(W >= w) where W is the sum of ``n1`` ranks drawn without
    replacement from ``doubled_ranks`` (all subsets equally likely), everything doubled
    so that midranks are integers. Counts subsets by dynamic programming over the items:
    ``counts[k][s]`` = number of k-subsets of the items seen so far with doubled sum s.
    """
    counts: list[dict[int, int]] = [{0: 1}] + [{} for _ in range(n1)]
    for i, r in enumerate(doubled_ranks):
        for k in range(min(i + 1, n1), 0, -1):
            target = counts[k]
            for s, c in counts[k - 1].items():
                target[s + r] = target.get(s + r, 0) + c
    dist = counts[n1]
    total = sum(dist.values())
    low = sum(c for s, c in dist.items() if s <= w2)
    high = sum(c for s, c in dist.items() if s >= w2)
    return low / total, high / total


def mann_whitney_u(
    x: Sequence[float],
    y: Sequence[float],
    method: Literal["auto", "exact", "normal"] = "auto",
) -> MannWhitneyResult:
    """Two-sided Mann-Whitney U test (Wilcoxon rank-sum test) of samples x and y.

    Args:
        x, y: the two samples (any unit, the same for both), each non-empty.
        method: ``exact``: the permutation distribution of x's rank sum over all
            ``C(n, len(x))`` equally likely splits, with midranks for ties (so exact
            conditional on the tie pattern); two-sided p = min(1, 2 * min(P(W <= w),
            P(W >= w))) as in SciPy. ``normal``: z = (|U - n1 n2 / 2| - 1/2) / sigma with
            sigma^2 = n1 n2 / 12 * ((n + 1) - sum(t^3 - t) / (n (n - 1))) over tie groups
            of size t (tie and continuity corrections); p = erfc(z / sqrt 2); p = 1 when
            every value is tied. ``auto``: exact when both samples have at most 20
            values, else normal.

    Returns:
        :class:`MannWhitneyResult` with U of x (pairs x_i > y_j, ties 1/2).

    Raises:
        ValueError: an empty sample or an unknown method.

    Sources: Mann & Whitney (1947), Ann. Math. Statist. 18(1):50-60; tie correction:
    Lehmann (1975), Nonparametrics: Statistical Methods Based on Ranks, ch. 1. Checked
    against SciPy 1.17 (``mannwhitneyu`` asymptotic and exact, and an exhaustive
    permutation test for ties) on 300 random cases: equal to 1e-12.
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("Mann-Whitney U test needs two non-empty samples")
    if method not in ("auto", "exact", "normal"):
        raise ValueError(f"unknown method {method!r}; use auto, exact or normal")
    pooled = [float(v) for v in x] + [float(v) for v in y]
    ranks = midranks(pooled)
    rank_sum_x = math.fsum(ranks[:n1])
    u = rank_sum_x - n1 * (n1 + 1) / 2.0
    if method == "auto":
        method = "exact" if max(n1, n2) <= EXACT_MAX_N else "normal"
    if method == "exact":
        doubled = [round(2 * r) for r in ranks]
        low, high = _exact_rank_sum_tails(doubled, n1, round(2 * rank_sum_x))
        return MannWhitneyResult(u, min(1.0, 2.0 * min(low, high)), "exact")
    n = n1 + n2
    ties = {}
    for v in pooled:
        ties[v] = ties.get(v, 0) + 1
    tie_term = sum(t**3 - t for t in ties.values())
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return MannWhitneyResult(u, 1.0, "normal")
    z = max(0.0, abs(u - n1 * n2 / 2.0) - 0.5) / math.sqrt(var)
    return MannWhitneyResult(u, min(1.0, math.erfc(z / math.sqrt(2.0))), "normal")


def bootstrap_ratio_ci(
    base: Sequence[float],
    candidate: Sequence[float],
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile-bootstrap confidence interval of ``median(candidate) / median(base)``.

    Each of ``resamples`` replicates draws ``len(base)`` values from ``base`` and
    ``len(candidate)`` from ``candidate``, with replacement, using one
    ``random.Random(seed)`` (so the interval is a pure function of its arguments); the
    interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of
    the replicate ratios (type-7 interpolation). Replicates whose base median is 0 are
    skipped.

    Args:
        base, candidate: raw samples, same unit, each non-empty.
        resamples: number of bootstrap replicates B (>= 1).
        confidence: in (0, 1).
        seed: seed of the resampling.

    Returns:
        ``(low, high)``, dimensionless; None if every replicate had a base median of 0.

    Raises:
        ValueError: an empty sample, ``resamples < 1`` or ``confidence`` outside (0, 1).

    Source: Efron & Tibshirani (1993), An Introduction to the Bootstrap, ch. 13.
    """
    if not base or not candidate:
        raise ValueError("bootstrap needs two non-empty samples")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = random.Random(seed)
    b_vals, c_vals = [float(v) for v in base], [float(v) for v in candidate]
    nb, nc = len(b_vals), len(c_vals)
    ratios = []
    for _ in range(resamples):
        mb = percentile(rng.choices(b_vals, k=nb), 50.0)
        mc = percentile(rng.choices(c_vals, k=nc), 50.0)
        if mb != 0:
            ratios.append(mc / mb)
    if not ratios:
        return None
    alpha = (1.0 - confidence) / 2.0
    return percentile(ratios, 100.0 * alpha), percentile(ratios, 100.0 * (1.0 - alpha))


def metric_direction(name: str) -> Literal[1, -1]:
    """+1 if higher is better for metric ``name``, -1 if lower is better, from the metrics
    catalogue (:func:`meltbench.metrics.direction`; energy windows and ``_net`` resolve
    to their family).

    Raises:
        ValueError: a metric whose direction is unknown (e.g. ``cpu_freq_mhz_decode``), a
            standard error, or a name that is not a metric.
    """
    return metrics_catalogue.direction(name)


def verdict(
    ratio: float | None,
    ci: tuple[float, float] | None,
    direction: int,
    threshold: float,
    n_base: int,
    n_candidate: int,
) -> Verdict:
    """The verdict of one (point, metric) comparison.

    Args:
        ratio: median(candidate) / median(base), dimensionless (None if undefined).
        ci: its confidence interval (low, high), or None.
        direction: +1 higher is better, -1 lower is better.
        threshold: smallest relative change that counts, e.g. 0.05 for 5%.
        n_base, n_candidate: sample counts.

    Returns:
        ``too few samples`` (a side has < 3), ``regressed`` / ``improved`` (CI excludes 1
        and ``|ratio - 1| > threshold``, worse / better way), ``within threshold`` (CI
        excludes 1, smaller change), else ``no significant change``.
    """
    if min(n_base, n_candidate) < MIN_SAMPLES:
        return "too few samples"
    if ratio is None or ci is None:
        return "no significant change"
    low, high = ci
    if low <= 1.0 <= high:
        return "no significant change"
    if abs(ratio - 1.0) <= threshold + 1e-12:  # a ratio of exactly 0.95 is 5%, not more
        return "within threshold"
    better = (ratio > 1.0) == (direction > 0)
    ci_agrees = (low > 1.0) == (ratio > 1.0)  # the CI and the estimate point the same way
    if not ci_agrees:
        return "no significant change"
    return "improved" if better else "regressed"


@dataclass(frozen=True)
class MetricComparison:
    """One metric of one matched point.

    Attributes:
        metric: metric name (unit in the name).
        direction: +1 higher is better, -1 lower is better.
        n_base, n_candidate: number of samples (repetitions; see :func:`replicates`).
        base_median, candidate_median: in the metric's unit.
        ratio: candidate / base medians (None when the base median is 0).
        ci_low, ci_high: bootstrap 95% CI of the ratio (None with < 3 samples a side).
        u, p_value, p_method: Mann-Whitney U of the candidate, two-sided p, method
            (None with < 3 samples a side).
        verdict: see :func:`verdict`.
    """

    metric: str
    direction: int
    n_base: int
    n_candidate: int
    base_median: float
    candidate_median: float
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    u: float | None
    p_value: float | None
    p_method: str | None
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``direction`` as ``higher`` / ``lower`` (is better)."""
        return {
            "metric": self.metric,
            "direction": "higher" if self.direction > 0 else "lower",
            "n_base": self.n_base,
            "n_candidate": self.n_candidate,
            "base_median": self.base_median,
            "candidate_median": self.candidate_median,
            "ratio": self.ratio,
            "ci95_low": self.ci_low,
            "ci95_high": self.ci_high,
            "u": self.u,
            "p_value": self.p_value,
            "p_method": self.p_method,
            "verdict": self.verdict,
        }


def compare_metric(
    metric: str,
    base: Sequence[float],
    candidate: Sequence[float],
    threshold: float = 0.05,
    seed: int = 0,
) -> MetricComparison:
    """Compare the raw samples of one metric: ratio of medians, bootstrap CI, U test,
    verdict (see the module docstring).

    Args:
        metric: its name, which sets the direction (:func:`metric_direction`).
        base, candidate: raw samples in the metric's unit, each non-empty.
        threshold: relative change that counts (>= 0), e.g. 0.05.
        seed: seed of the bootstrap (the same seed for every metric and point, so each
            result does not depend on which others were computed).

    Raises:
        ValueError: unknown direction, or an empty sample.
    """
    direction = metric_direction(metric)
    if not base or not candidate:
        raise ValueError(f"{metric}: both sides need samples")
    mb, mc = percentile(base, 50.0), percentile(candidate, 50.0)
    ratio = mc / mb if mb != 0 else None
    ci: tuple[float, float] | None = None
    test: MannWhitneyResult | None = None
    if min(len(base), len(candidate)) >= MIN_SAMPLES:
        ci = bootstrap_ratio_ci(base, candidate, seed=seed)
        test = mann_whitney_u(candidate, base)
    return MetricComparison(
        metric=metric,
        direction=direction,
        n_base=len(base),
        n_candidate=len(candidate),
        base_median=mb,
        candidate_median=mc,
        ratio=ratio,
        ci_low=ci[0] if ci else None,
        ci_high=ci[1] if ci else None,
        u=test.u if test else None,
        p_value=test.p_value if test else None,
        p_method=test.method if test else None,
        verdict=verdict(ratio, ci, direction, threshold, len(base), len(candidate)),
    )
