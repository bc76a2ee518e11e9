"""``meltbench compare``: two result sets, point by point, with a significance test.

Usable as a CI gate: the exit code is 1 when any compared metric regressed
(significantly *and* beyond the threshold), 0 otherwise, 2 on bad input.

Selection. BASE and CANDIDATE are each a run id, a sweep id (unique prefixes accepted) or
the path of a results database (all its ``ok`` runs). ``--db`` names the database that
ids are looked up in, for both sides; ``--base-db`` / ``--candidate-db`` override it per
side, so two databases (e.g. two machines, two commits) can be compared.

Matching. A *point* is a set of runs with the same identity: model (GGUF name, else its
path, else the spec's reference), quant, weights, engine, dtype, device, threads and test
label (``pp512+tg128@d4096`` carries n_prompt, n_gen and n_depth). Runs of one side with
the same identity are pooled (their raw samples concatenated: repeated runs of the same
configuration are more samples of it). Base and candidate points are matched on the
identity; points present on one side only are listed, not compared. Two ways to compare
points that differ on purpose:

- ``--force``: both sides have exactly one point (e.g. one run each): compare them
  whatever their identity; the fields that differ are printed (threads 2 vs 1,
  Q4_K_M vs Q4_0, ...).
- ``--ignore FIELD`` (repeatable): leave FIELD out of the identity, so whole sweeps can
  be matched across it (e.g. ``--ignore quant``); refused if that makes two points of
  one side indistinguishable.

If no point matches, the command fails with exit code 2 and says which fields differ,
rather than passing a CI gate that compared nothing.

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

Unit of replication. Every statistic above treats the *repetition* (one request) as one
sample. A per-token metric (``itl_ms``: one value per token gap) contributes one value
per repetition, the median of that repetition's gaps: gaps within a request share its
state (the machine's load, the frequency, the cache) and are not independent, and
pooling them (n = 155 for 5 x 31) gave a CI that excluded 1 in 35% of simulated
same-distribution comparisons with a 5% per-repetition effect, against 4% with per-
repetition medians (``tests/unit/test_compare_calibration.py``). Its ``n_base`` /
``n_candidate`` therefore count repetitions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from meltbench import metrics as metrics_catalogue
from meltbench.errors import UsageError
from meltbench.measure.stats import percentile
from meltbench.results.identity import POINT_FIELDS, describe
from meltbench.results.location import add_db_option

if TYPE_CHECKING:  # only for annotations: keeps `meltbench --help` free of pydantic
    from meltbench.results.schema import RunResult

__all__ = [
    "DEFAULT_METRICS",
    "IDENTITY_FIELDS",
    "Comparison",
    "MannWhitneyResult",
    "MetricComparison",
    "Point",
    "PointComparison",
    "PointMatch",
    "Selection",
    "add_compare_arguments",
    "bootstrap_ratio_ci",
    "compare_command",
    "compare_metric",
    "compare_results",
    "group_points",
    "load_selection",
    "mann_whitney_u",
    "match_points",
    "metric_direction",
    "point_identity",
    "point_label",
    "render_markdown",
    "render_table",
    "replicates",
    "summary_line",
    "verdict",
]

DEFAULT_METRICS = ("prefill_tps", "decode_tps", "ttft_ms", "itl_ms", "e2e_ms", "peak_rss_bytes")
IDENTITY_FIELDS = POINT_FIELDS
FORMATS = ("table", "json", "md")
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
MIN_SAMPLES = 3
EXACT_MAX_N = 20

Verdict = Literal[
    "improved", "regressed", "within threshold", "no significant change", "too few samples"
]


# --------------------------------------------------------------------------- statistics


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


def _midranks(values: Sequence[float]) -> list[float]:
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
    ranks = _midranks(pooled)
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


# --------------------------------------------------------------------------- matching


def point_identity(result: RunResult) -> dict[str, Any]:
    """The identity of the point a run measures: :meth:`RunResult.identity` restricted to
    :data:`IDENTITY_FIELDS` (model, quant, weights, engine, dtype, device, threads, test).
    Timestamps, machine and seed are not part of it."""
    return result.identity().fields(IDENTITY_FIELDS)


def point_label(identity: dict[str, Any]) -> str:
    """Short display name: ``Gemma 3 270m Q4_K_M llama.cpp t2 pp64+tg16`` (None fields
    and default weights omitted; :func:`meltbench.results.identity.describe`)."""
    return describe(identity)


@dataclass
class Point:
    """Runs of one side sharing an identity (their samples are pooled).

    Attributes:
        identity: see :func:`point_identity`.
        runs: the runs, in the order given.
    """

    identity: dict[str, Any]
    runs: list[RunResult] = field(default_factory=list)

    @property
    def label(self) -> str:
        """Display name (:func:`point_label`)."""
        return point_label(self.identity)

    @property
    def run_ids(self) -> list[str]:
        """The run ids."""
        return [r.run_id for r in self.runs]

    def samples(self, metric: str) -> list[float]:
        """One value per repetition of ``metric`` over every run of the point (empty if
        none): :func:`replicates` of each run, concatenated."""
        out: list[float] = []
        for r in self.runs:
            out.extend(replicates(r, metric))
        return out


def _per_token(metric: str) -> bool:
    try:
        return metrics_catalogue.lookup(metric).per == "token"
    except KeyError:
        return False


def _itl_groups_from_repetitions(result: RunResult, n: int) -> tuple[int, ...] | None:
    """Gap counts per timed repetition, for results saved before ``Summary.groups``."""
    sizes = tuple(
        len(rep.token_ns) - 1
        for rep in result.repetitions
        if rep.kind == "timed" and len(rep.token_ns) > 1
    )
    return sizes if sizes and sum(sizes) == n else None


def replicates(result: RunResult, metric: str) -> list[float]:
    """The samples of ``metric`` in one run, one per unit of replication (a repetition).

    A per-repetition metric gives its raw samples; a per-token one (its summary has
    ``groups``, e.g. ``itl_ms``) gives the median of each repetition's samples. A result
    saved before summaries had ``groups`` gets them from its timed repetitions' token
    counts (the same order the gaps were pooled in); if those do not add up, its pooled
    samples are used as they are. Empty when the run lacks the metric.
    """
    summary = result.metrics.get(metric)
    if summary is None:
        return []
    if summary.groups is None and _per_token(metric):
        groups = _itl_groups_from_repetitions(result, summary.n)
        if groups is not None:
            summary = dataclasses.replace(summary, groups=groups)
    return summary.per_group_medians()


def _key(identity: dict[str, Any], ignore: Iterable[str] = ()) -> tuple[tuple[str, str], ...]:
    skip = set(ignore)
    return tuple(
        (f, json.dumps(identity.get(f), sort_keys=True)) for f in IDENTITY_FIELDS if f not in skip
    )


def group_points(results: Iterable[RunResult]) -> list[Point]:
    """Group runs by identity (first appearance order); each group is one point."""
    points: dict[tuple[tuple[str, str], ...], Point] = {}
    for r in results:
        ident = point_identity(r)
        points.setdefault(_key(ident), Point(ident)).runs.append(r)
    return list(points.values())


@dataclass
class PointMatch:
    """Base and candidate points paired by identity.

    Attributes:
        pairs: (base, candidate) points to compare.
        only_base, only_candidate: points of one side with no partner (listed only).
        forced: with ``force``, the fields that differ: name -> (base, candidate);
            None when matching was by identity.
    """

    pairs: list[tuple[Point, Point]]
    only_base: list[Point]
    only_candidate: list[Point]
    forced: dict[str, tuple[Any, Any]] | None = None


def _differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {f: (a.get(f), b.get(f)) for f in IDENTITY_FIELDS if a.get(f) != b.get(f)}


def _show(value: Any) -> str:
    return "-" if value is None else str(value)


def _fmt_values(values: Iterable[Any]) -> str:
    return ", ".join(sorted({_show(v) for v in values}))


def match_points(
    base: Sequence[Point],
    candidate: Sequence[Point],
    force: bool = False,
    ignore: Sequence[str] = (),
) -> PointMatch:
    """Pair base and candidate points by identity.

    Args:
        base, candidate: points of each side (:func:`group_points`).
        force: pair the single base point with the single candidate point whatever
            their identities (the differing fields are returned in ``forced``).
        ignore: identity fields left out of the matching (see :data:`IDENTITY_FIELDS`).

    Raises:
        UsageError: ``force`` with more than one point on a side; an unknown ``ignore``
            field; ``ignore`` making two points of one side indistinguishable; or no
            point matching at all (the message names the fields that differ and the
            option that would match them).
    """
    unknown = [f for f in ignore if f not in IDENTITY_FIELDS]
    if unknown:
        raise UsageError(
            f"--ignore {unknown[0]}: not an identity field; use one of "
            + ", ".join(IDENTITY_FIELDS)
        )
    if force:
        if len(base) != 1 or len(candidate) != 1:
            raise UsageError(
                f"--force compares one point with one point, but BASE has {len(base)} and "
                f"CANDIDATE {len(candidate)}; select single runs, or use --ignore FIELD "
                "to match sets that differ in FIELD"
            )
        b, c = base[0], candidate[0]
        return PointMatch([(b, c)], [], [], forced=_differences(b.identity, c.identity))
    sides = []
    for name, points in (("BASE", base), ("CANDIDATE", candidate)):
        keyed: dict[tuple[tuple[str, str], ...], Point] = {}
        for p in points:
            k = _key(p.identity, ignore)
            if k in keyed:
                raise UsageError(
                    f"with --ignore {','.join(ignore)}, {name} has two points that only "
                    f"differ in it: {keyed[k].label} and {p.label}; select fewer runs"
                )
            keyed[k] = p
        sides.append(keyed)
    by_base, by_cand = sides
    pairs = [(p, by_cand[k]) for k, p in by_base.items() if k in by_cand]
    only_base = [p for k, p in by_base.items() if k not in by_cand]
    only_cand = [p for k, p in by_cand.items() if k not in by_base]
    if not pairs:
        raise UsageError(_no_match_message(base, candidate, ignore))
    return PointMatch(pairs, only_base, only_cand)


def _no_match_message(
    base: Sequence[Point], candidate: Sequence[Point], ignore: Sequence[str]
) -> str:
    """Why nothing matched: the fields whose values never meet (disjoint on the two
    sides), else every field whose values differ, and the option to use."""

    def values(points: Sequence[Point], f: str) -> set[str]:
        return {json.dumps(p.identity.get(f), sort_keys=True) for p in points}

    fields = [f for f in IDENTITY_FIELDS if f not in ignore]
    disjoint = [f for f in fields if not values(base, f) & values(candidate, f)]
    shown = disjoint or [f for f in fields if values(base, f) != values(candidate, f)]
    diff = "; ".join(
        f"{f}: base {_fmt_values(p.identity.get(f) for p in base)}, "
        f"candidate {_fmt_values(p.identity.get(f) for p in candidate)}"
        for f in shown
    )
    if len(base) == 1 and len(candidate) == 1:
        hint = "pass --force to compare these two points anyway"
    elif len(disjoint) == 1:
        hint = f"pass --ignore {disjoint[0]} to match across it"
    else:
        hint = "pass --ignore FIELD for each field that differs on purpose"
    return f"no point of BASE matches a point of CANDIDATE ({diff or 'identities differ'}); {hint}"


# --------------------------------------------------------------------------- comparison


@dataclass
class Selection:
    """One side of a comparison.

    Attributes:
        selector: what the user typed (run id, sweep id, or database path).
        kind: ``run``, ``sweep`` or ``database``.
        db: the database it was read from.
        results: the ``ok`` runs selected.
        failed_skipped: runs of the sweep or database left out because they failed.
    """

    selector: str
    kind: Literal["run", "sweep", "database"]
    db: str | None
    results: list[RunResult]
    failed_skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (run ids, not the runs)."""
        return {
            "selector": self.selector,
            "kind": self.kind,
            "db": self.db,
            "runs": [r.run_id for r in self.results],
            "failed_skipped": self.failed_skipped,
        }


@dataclass
class PointComparison:
    """The metrics of one matched pair of points."""

    base: Point
    candidate: Point
    metrics: list[MetricComparison]

    @property
    def label(self) -> str:
        """Display name; for points that differ (``--force``, ``--ignore``) the common
        fields then the differences: ``Gemma 3 270m ... pp64+tg16 (threads 2 → 1)``."""
        diff = _differences(self.base.identity, self.candidate.identity)
        if not diff:
            return self.base.label
        common = {k: v for k, v in self.base.identity.items() if k not in diff}
        changes = ", ".join(f"{f} {_show(b)} → {_show(c)}" for f, (b, c) in diff.items())
        return f"{point_label(common)} ({changes})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "point": self.base.identity,
            "candidate_point": self.candidate.identity,
            "label": self.label,
            "base_runs": self.base.run_ids,
            "candidate_runs": self.candidate.run_ids,
            "metrics": [m.to_dict() for m in self.metrics],
        }


@dataclass
class Comparison:
    """Everything ``meltbench compare`` reports.

    Attributes:
        points: matched points with their metric comparisons.
        only_base, only_candidate: unmatched points (listed, not compared).
        forced: fields that differ between the two forced points, or None.
        threshold, seed: as given.
        ignore: identity fields left out of the matching.
    """

    points: list[PointComparison]
    only_base: list[Point]
    only_candidate: list[Point]
    forced: dict[str, tuple[Any, Any]] | None
    threshold: float
    seed: int
    ignore: list[str] = field(default_factory=list)

    def count(self, verdict_name: str) -> int:
        """How many (point, metric) comparisons have this verdict."""
        return sum(m.verdict == verdict_name for p in self.points for m in p.metrics)

    @property
    def exit_code(self) -> int:
        """1 if any metric regressed, else 0."""
        return 1 if self.count("regressed") else 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (without the selections; :func:`compare_command` adds them)."""
        return {
            "threshold": self.threshold,
            "confidence": CONFIDENCE,
            "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
            "seed": self.seed,
            "ignore": self.ignore,
            "forced": None
            if self.forced is None
            else {f: {"base": b, "candidate": c} for f, (b, c) in self.forced.items()},
            "points": [p.to_dict() for p in self.points],
            "only_in_base": [{"point": p.identity, "runs": p.run_ids} for p in self.only_base],
            "only_in_candidate": [
                {"point": p.identity, "runs": p.run_ids} for p in self.only_candidate
            ],
            "summary": {
                "regressed": self.count("regressed"),
                "improved": self.count("improved"),
                "unchanged": self.count("no significant change") + self.count("within threshold"),
                "too_few_samples": self.count("too few samples"),
                "only_in_base": len(self.only_base),
                "only_in_candidate": len(self.only_candidate),
                "text": summary_line(self),
            },
            "exit_code": self.exit_code,
        }


def compare_results(
    base: Sequence[RunResult],
    candidate: Sequence[RunResult],
    metrics: Sequence[str] | None = None,
    threshold: float = 0.05,
    seed: int = 0,
    force: bool = False,
    ignore: Sequence[str] = (),
) -> Comparison:
    """Compare two sets of runs point by point (pure: no database, no output).

    Args:
        base, candidate: runs of each side (non-empty).
        metrics: metric names to compare; default :data:`DEFAULT_METRICS`. A metric is
            compared on a point when both sides have samples of it.
        threshold: relative change that counts, in [0, 1).
        seed: bootstrap seed.
        force, ignore: see :func:`match_points`.

    Raises:
        UsageError: an empty side, a bad threshold, a metric with unknown direction, an
            explicitly asked metric measured on no matched point, or a matching error.
    """
    if not base or not candidate:
        raise UsageError(f"{'BASE' if not base else 'CANDIDATE'} has no ok runs to compare")
    if not (0.0 <= threshold < 1.0) or math.isnan(threshold):
        raise UsageError(f"--threshold must be in [0, 1), e.g. 0.05 for 5% (got {threshold})")
    names = list(metrics) if metrics else list(DEFAULT_METRICS)
    for name in names:
        try:
            metric_direction(name)
        except ValueError as exc:
            raise UsageError(f"--metrics: {exc}") from None
    match = match_points(group_points(base), group_points(candidate), force, ignore)
    compared = []
    for b, c in match.pairs:
        rows = []
        for name in names:
            sb, sc = b.samples(name), c.samples(name)
            if sb and sc:
                rows.append(compare_metric(name, sb, sc, threshold, seed))
        compared.append(PointComparison(b, c, rows))
    if metrics:
        seen = {m.metric for p in compared for m in p.metrics}
        missing = [n for n in names if n not in seen]
        if missing:
            raise UsageError(
                f"--metrics: {missing[0]} has no samples on both sides of any matched point"
            )
    return Comparison(
        compared, match.only_base, match.only_candidate, match.forced, threshold, seed, list(ignore)
    )


# --------------------------------------------------------------------------- output


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def summary_line(comparison: Comparison) -> str:
    """One line: ``2 regressions, 1 improvement, 9 unchanged; 1 point only in base``."""
    c = comparison
    parts = [
        _plural(c.count("regressed"), "regression"),
        _plural(c.count("improved"), "improvement"),
        f"{c.count('no significant change') + c.count('within threshold')} unchanged",
    ]
    few = c.count("too few samples")
    if few:
        parts.append(f"{few} with too few samples")
    text = ", ".join(parts)
    tails = []
    if c.only_base:
        tails.append(_plural(len(c.only_base), "point") + " only in base")
    if c.only_candidate:
        tails.append(_plural(len(c.only_candidate), "point") + " only in candidate")
    return text + ("; " + ", ".join(tails) if tails else "")


def _fmt_value(metric: str, value: float) -> str:
    if metric.endswith("_bytes"):
        from meltbench.results.tables import format_bytes

        return format_bytes(value)
    return f"{value:.2f}"


def _cells(m: MetricComparison) -> list[str]:
    ratio = "-" if m.ratio is None else f"{m.ratio:.3f}"
    ci = "-" if m.ci_low is None or m.ci_high is None else f"[{m.ci_low:.3f}, {m.ci_high:.3f}]"
    if m.p_value is None:
        p = "-"
    elif m.p_value < 0.001:
        p = "<0.001"
    else:
        p = f"{m.p_value:.3f}"
    arrow = "↑" if m.direction > 0 else "↓"
    return [
        f"{m.metric} {arrow}",
        f"{_fmt_value(m.metric, m.base_median)} (n={m.n_base})",
        f"{_fmt_value(m.metric, m.candidate_median)} (n={m.n_candidate})",
        ratio,
        ci,
        p,
        m.verdict,
    ]


_COLUMNS = ("point", "metric", "base median", "candidate median", "ratio", "95% CI", "p", "verdict")


def _forced_text(forced: dict[str, tuple[Any, Any]]) -> str:
    if not forced:
        return "forced comparison: the two points have the same identity"
    diffs = ", ".join(f"{f} {_show(b)} vs {_show(c)}" for f, (b, c) in forced.items())
    return f"warning: forced comparison of points that differ in {diffs} (base vs candidate)"


def _unmatched_lines(comparison: Comparison) -> list[str]:
    lines = []
    for side, points in (("base", comparison.only_base), ("candidate", comparison.only_candidate)):
        for p in points:
            runs = ", ".join(r[:8] for r in p.run_ids)
            lines.append(f"only in {side} (not compared): {p.label} (run {runs})")
    return lines


def render_table(comparison: Comparison, console: Any) -> None:
    """Print the comparison as a rich table on ``console`` (a ``rich.console.Console``):
    regressions in bold red, improvements in green; then the unmatched points and the
    summary line."""
    from rich.table import Table
    from rich.text import Text

    if comparison.forced is not None:
        console.print(Text(_forced_text(comparison.forced), style="yellow"))
    table = Table(header_style="bold")
    for col in _COLUMNS:
        table.add_column(col, justify="right" if col in ("ratio", "p") else "left")
    styles = {"regressed": "bold red", "improved": "green"}
    for i, pc in enumerate(comparison.points):
        if i:
            table.add_section()
        for j, m in enumerate(pc.metrics):
            label = pc.label if j == 0 else ""
            table.add_row(label, *_cells(m), style=styles.get(m.verdict))
        if not pc.metrics:
            table.add_row(pc.label, "(no metric with samples on both sides)")
    console.print(table)
    for line in _unmatched_lines(comparison):
        console.print(line, highlight=False)
    style = "bold red" if comparison.exit_code else "bold"
    console.print(Text(summary_line(comparison), style=style))


def render_markdown(comparison: Comparison) -> str:
    """The comparison as GitHub Markdown: a table (regressions in bold), the unmatched
    points, the summary line."""

    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = []
    if comparison.forced is not None:
        lines += [f"> {_forced_text(comparison.forced)}", ""]
    lines.append("| " + " | ".join(_COLUMNS) + " |")
    lines.append("| " + " | ".join("---" for _ in _COLUMNS) + " |")
    for pc in comparison.points:
        for m in pc.metrics:
            cells = [pc.label, *_cells(m)]
            if m.verdict == "regressed":
                cells[-1] = f"**{cells[-1]}**"
            lines.append("| " + " | ".join(esc(c) for c in cells) + " |")
    unmatched = _unmatched_lines(comparison)
    if unmatched:
        lines.append("")
        lines += [f"- {esc(line)}" for line in unmatched]
    lines += ["", summary_line(comparison)]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- command


def _ok_runs(results: Iterable[RunResult]) -> tuple[list[RunResult], int]:
    ok, failed = [], 0
    for r in results:
        if r.ok:
            ok.append(r)
        else:
            failed += 1
    return ok, failed


def load_selection(selector: str, db: str | Path | None, side: str = "BASE") -> Selection:
    """Resolve one side: a database file path, else a run id or a sweep id (unique
    prefixes) in ``db``.

    Args:
        selector: what the user typed.
        db: database that ids are looked up in (default ``$MELTBENCH_DB`` or
            ``./meltbench.db``).
        side: ``BASE`` or ``CANDIDATE``, for messages.

    Raises:
        UsageError: no such database, run or sweep; an ambiguous prefix (also across runs
            and sweeps); a failed run; or no ok run in the sweep or database.
    """
    from meltbench.results.location import default_db_path
    from meltbench.results.store import ResultStore

    if not selector:
        raise UsageError(f"{side} is empty; give a run id, a sweep id or a database file")
    path = Path(selector).expanduser()
    if path.is_file():
        with ResultStore(path, readonly=True) as store:
            results, failed = _ok_runs(store.iter_results())
        if not results:
            raise UsageError(f"{side}: database {path} has no ok runs")
        return Selection(selector, "database", str(path), results, failed)
    if path.suffix == ".db" or "/" in selector or "\\" in selector:
        raise UsageError(f"{side}: no database file at {path}")
    db_path = Path(db) if db is not None else default_db_path()
    with ResultStore(db_path, readonly=True) as store:
        runs = [r["run_id"] for r in store.list_runs() if r["run_id"].startswith(selector)]
        sweeps = [s["sweep_id"] for s in store.list_sweeps() if s["sweep_id"].startswith(selector)]
        found = [("run", i) for i in runs] + [("sweep", i) for i in sweeps]
        if not found:
            raise UsageError(
                f"{side}: no run or sweep with id {selector!r} in {db_path}; see meltbench "
                "results list and meltbench sweep --list, or give a database file"
            )
        if len(found) > 1:
            what = ", ".join(f"{k} {i[:12]}" for k, i in found[:3])
            raise UsageError(f"{side}: id prefix {selector!r} is ambiguous ({what}); give more")
        kind, full = found[0]
        if kind == "run":
            result = store.get(full)
            if not result.ok:
                raise UsageError(
                    f"{side}: run {full[:8]} failed ({result.failure}); pick an ok run"
                )
            return Selection(selector, "run", str(db_path), [result])
        results, failed = _ok_runs(store.sweep_results(full))
    if not results:
        raise UsageError(f"{side}: sweep {full[:8]} has no ok runs in {db_path}")
    return Selection(selector, "sweep", str(db_path), results, failed)


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments of ``meltbench compare`` on ``parser`` (the subparser).

    Namespace fields: base, candidate (str); db, base_db, candidate_db (str or None);
    threshold (float, 0.05); metrics (list of str or None); format (table, json, md);
    seed (int, 0); force (bool); ignore (list of str or None).
    """
    parser.add_argument("base", help="BASE: run id, sweep id (unique prefix), or database file")
    parser.add_argument("candidate", help="CANDIDATE: run id, sweep id, or database file")
    add_db_option(parser, help="database of the ids (default: $MELTBENCH_DB or ./meltbench.db)")
    parser.add_argument("--base-db", help="database of BASE (overrides --db)")
    parser.add_argument("--candidate-db", help="database of CANDIDATE (overrides --db)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.05,
        help="smallest relative change that counts as a regression (default: 0.05 = 5%%)",
    )
    parser.add_argument(
        "--metrics",
        type=lambda s: [m for m in s.split(",") if m],
        help="comma-separated metrics (default: " + ",".join(DEFAULT_METRICS) + ")",
    )
    parser.add_argument("-f", "--format", choices=FORMATS, default="table", help="output format")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="compare one point with one point even if their identities differ "
        "(e.g. threads 1 vs 2, Q4_0 vs Q4_K_M); the differing fields are printed",
    )
    parser.add_argument(
        "--ignore",
        action="append",
        metavar="FIELD",
        help="leave an identity field out of the matching, repeatable: "
        + ", ".join(IDENTITY_FIELDS),
    )


def compare_command(args: argparse.Namespace, console: Any) -> int:
    """Run ``meltbench compare``: select, match, compare, print.

    Args:
        args: namespace of :func:`add_compare_arguments` (``force`` and ``ignore`` may be
            absent: default off).
        console: ``rich.console.Console`` for the table; json and md are written to
            ``console.file``.

    Returns:
        1 if any metric regressed (significant and beyond the threshold), else 0.

    Raises:
        UsageError: bad input (exit code 2 in the CLI), one line.
    """
    fmt = getattr(args, "format", "table") or "table"
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    threshold = getattr(args, "threshold", 0.05)
    threshold = 0.05 if threshold is None else float(threshold)
    db = getattr(args, "db", None)
    base_db = getattr(args, "base_db", None) or db
    cand_db = getattr(args, "candidate_db", None) or db
    ignore_arg = getattr(args, "ignore", None) or []
    ignore = [f for item in ignore_arg for f in str(item).split(",") if f]
    seed = getattr(args, "seed", 0)
    base = load_selection(args.base, base_db, "BASE")
    cand = load_selection(args.candidate, cand_db, "CANDIDATE")
    comparison = compare_results(
        base.results,
        cand.results,
        metrics=getattr(args, "metrics", None),
        threshold=threshold,
        seed=0 if seed is None else int(seed),
        force=bool(getattr(args, "force", False)),
        ignore=ignore,
    )
    if fmt == "json":
        doc = {"base": base.to_dict(), "candidate": cand.to_dict(), **comparison.to_dict()}
        out = getattr(console, "file", None) or sys.stdout
        out.write(json.dumps(doc, indent=2) + "\n")
    elif fmt == "md":
        out = getattr(console, "file", None) or sys.stdout
        out.write(render_markdown(comparison))
    else:
        render_table(comparison, console)
    return comparison.exit_code
