"""``meltbench compare``: two result sets, point by point, with a significance test.

This module selects and matches the runs and holds the comparison; the statistics are
:mod:`meltbench.results.significance`, the tables :mod:`meltbench.report.compare_view`,
the command :mod:`meltbench.cli.compare`.

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

Statistics, per matched point and metric (:mod:`meltbench.results.significance`): the
ratio of medians, its 95% percentile-bootstrap interval, a two-sided Mann-Whitney U test,
and a verdict (regressed / improved when the interval excludes 1 and the change exceeds
the threshold in the metric's direction, from :mod:`meltbench.metrics`).

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

import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from meltbench import metrics as metrics_catalogue
from meltbench.errors import UsageError
from meltbench.results.identity import POINT_FIELDS, describe, identity_key
from meltbench.results.significance import (
    BOOTSTRAP_RESAMPLES,
    CONFIDENCE,
    MIN_SAMPLES,
    MannWhitneyResult,
    MetricComparison,
    Verdict,
    bootstrap_ratio_ci,
    compare_metric,
    mann_whitney_u,
    metric_direction,
    verdict,
)

if TYPE_CHECKING:  # only for annotations: keeps `meltbench --help` free of pydantic
    from meltbench.results.schema import RunResult

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "CONFIDENCE",
    "DEFAULT_METRICS",
    "IDENTITY_FIELDS",
    "MIN_SAMPLES",
    "Comparison",
    "MannWhitneyResult",
    "MetricComparison",
    "PointComparison",
    "PointMatch",
    "RunGroup",
    "Selection",
    "Verdict",
    "bootstrap_ratio_ci",
    "compare_metric",
    "compare_results",
    "group_points",
    "load_selection",
    "mann_whitney_u",
    "match_points",
    "metric_direction",
    "point_identity",
    "point_label",
    "replicates",
    "show_value",
    "summary_line",
    "verdict",
]

DEFAULT_METRICS = ("prefill_tps", "decode_tps", "ttft_ms", "itl_ms", "e2e_ms", "peak_rss_bytes")
IDENTITY_FIELDS = POINT_FIELDS
FORMATS = ("table", "json", "md")


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
class RunGroup:
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
    return identity_key(identity, [f for f in IDENTITY_FIELDS if f not in skip])


def group_points(results: Iterable[RunResult]) -> list[RunGroup]:
    """Group runs by identity (first appearance order); each group is one point."""
    points: dict[tuple[tuple[str, str], ...], RunGroup] = {}
    for r in results:
        ident = point_identity(r)
        points.setdefault(_key(ident), RunGroup(ident)).runs.append(r)
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

    pairs: list[tuple[RunGroup, RunGroup]]
    only_base: list[RunGroup]
    only_candidate: list[RunGroup]
    forced: dict[str, tuple[Any, Any]] | None = None


def _differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {f: (a.get(f), b.get(f)) for f in IDENTITY_FIELDS if a.get(f) != b.get(f)}


def show_value(value: Any) -> str:
    """An identity value as printed in messages and tables: ``-`` for None, else str."""
    return "-" if value is None else str(value)


def _fmt_values(values: Iterable[Any]) -> str:
    return ", ".join(sorted({show_value(v) for v in values}))


def match_points(
    base: Sequence[RunGroup],
    candidate: Sequence[RunGroup],
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
        keyed: dict[tuple[tuple[str, str], ...], RunGroup] = {}
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
    base: Sequence[RunGroup], candidate: Sequence[RunGroup], ignore: Sequence[str]
) -> str:
    """Why nothing matched: the fields whose values never meet (disjoint on the two
    sides), else every field whose values differ, and the option to use."""

    def values(points: Sequence[RunGroup], f: str) -> set[str]:
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

    base: RunGroup
    candidate: RunGroup
    metrics: list[MetricComparison]

    @property
    def label(self) -> str:
        """Display name; for points that differ (``--force``, ``--ignore``) the common
        fields then the differences: ``Gemma 3 270m ... pp64+tg16 (threads 2 → 1)``."""
        diff = _differences(self.base.identity, self.candidate.identity)
        if not diff:
            return self.base.label
        common = {k: v for k, v in self.base.identity.items() if k not in diff}
        changes = ", ".join(f"{f} {show_value(b)} → {show_value(c)}" for f, (b, c) in diff.items())
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
    only_base: list[RunGroup]
    only_candidate: list[RunGroup]
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


# --------------------------------------------------------------------------- selection


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
