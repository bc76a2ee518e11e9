"""Context scaling of stored runs: power-law exponents per configuration and context axis.

The runs are grouped into context curves by their identity
(:func:`meltbench.results.identity.context_curves`, the same curves the report draws);
each curve is fitted with :func:`meltbench.measure.scaling.fit_power_law`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from meltbench.measure.scaling import fit_power_law, growth_verdict
from meltbench.results.identity import context_curves

if TYPE_CHECKING:
    from meltbench.results.schema import RunResult

__all__ = ["SCALING_METRICS", "context_scaling"]

#: Metrics fitted by :func:`context_scaling` (``ttft_ms`` stands for prefill time).
SCALING_METRICS = ("ttft_ms", "prefill_tps", "decode_tps", "peak_rss_bytes")

_MIN_DISTINCT_X = 3


def _fit_rows(
    group: dict[str, Any], axis: str, points: list[tuple[int, RunResult]]
) -> list[dict[str, Any]]:
    """One row per metric of :data:`SCALING_METRICS` that has >= 3 distinct x values."""
    rows = []
    for metric in SCALING_METRICS:
        xs: list[float] = []
        ys: list[float] = []
        for x, result in points:
            value = result.median(metric)
            if value is not None and math.isfinite(value) and value > 0:
                xs.append(float(x))
                ys.append(float(value))
        if len(set(xs)) < _MIN_DISTINCT_X:
            continue
        fit = fit_power_law(xs, ys)
        rows.append(
            {
                "group": dict(group),
                "x": axis,
                "metric": metric,
                "exponent": fit.exponent,
                "exponent_se": fit.exponent_se,
                "ci95_low": fit.ci95_low,
                "ci95_high": fit.ci95_high,
                "r_squared": fit.r_squared,
                "n": fit.n,
                "x_min": fit.x_min,
                "x_max": fit.x_max,
                "verdict": growth_verdict(fit),
            }
        )
    return rows


def context_scaling(results: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Power-law exponents of prefill time, decode and prefill tok/s and peak memory
    against context length, per model configuration.

    Only ``ok`` runs are used (failed runs mark the out-of-memory or timeout boundary,
    reported elsewhere). Runs are grouped by everything that must stay fixed along a
    context curve: model (name, path), quant, weights, engine, dtype, device, target,
    threads, ``n_gen``, and the context axis that is not varied:

    - runs with equal ``n_depth`` whose ``n_prompt`` takes >= 3 distinct values give a
      curve with ``x = "n_prompt"`` (x = prompt tokens); the group holds ``n_depth``;
    - runs with equal ``n_prompt`` whose ``n_depth`` takes >= 3 distinct values give a
      curve with ``x = "context"`` (x = ``n_depth + n_prompt`` tokens, the KV length at
      the end of prefill); the group holds ``n_prompt``.

    A grid that varies both yields both kinds of curve. Groups with fewer than 3 distinct
    x values are skipped. Each run contributes its median of each metric (repeated x
    values are separate points). For each metric of :data:`SCALING_METRICS` with >= 3
    distinct x values among runs that measured it (finite, > 0), one row is returned.

    Args:
        results: stored runs, any order, any mix of models and engines.

    Returns:
        JSON-ready rows, ordered by axis (``n_prompt`` curves first), group, metric:
        ``{"group": {field: value}, "x": "n_prompt" | "context", "metric", "exponent",
        "exponent_se", "ci95_low", "ci95_high", "r_squared", "n", "x_min", "x_max",
        "verdict"}`` (exponent dimensionless; x range in tokens; verdict from
        :func:`meltbench.measure.scaling.growth_verdict`). The exponent of a rate
        (``*_tps``) is minus the exponent of the time per token.
    """
    rows: list[dict[str, Any]] = []
    for curve in context_curves(results):
        if len({x for x, _ in curve.points}) < _MIN_DISTINCT_X:
            continue
        rows.extend(_fit_rows(curve.group, curve.axis, curve.points))
    return rows
