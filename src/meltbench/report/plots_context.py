"""Figures along context length: tok/s and peak memory against prompt or KV length."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from meltbench.report.figure_base import (
    _MARKERS,
    _MIB,
    ReportFigure,
    _axis_label,
    _context_curves,
    _Curve,
    _curve_labels,
    _fit_note,
    _footnote,
    _log_x,
    _maybe_log_y,
    _mean_ci,
    _new_figure,
    _outside_legend,
    _peak,
    _text,
)
from meltbench.results.schema import RunResult

# ---------------------------------------------------------------------------------------
# Figures


def context_throughput_figure(
    results: Sequence[RunResult], analysis: Mapping[str, Any] | None = None
) -> ReportFigure | None:
    """Prefill and decode tok/s against prompt or context length.

    Args:
        results: runs, any mix; only ``ok`` runs are drawn.
        analysis: a sweep's stored analysis (``{"scaling": [...]}``); when a curve has a
            power-law fit there, its exponent and verdict are added to the legend.

    Returns:
        Figure ``tps-vs-context``: two panels (prefill, decode), x = tokens on a log2
        axis, y = tok/s (mean with the 95% confidence interval of the mean as error bars,
        Student's t, ``meltbench.measure.stats``); or None when no configuration has ok
        runs at >= 2 lengths.
    """
    curves = _context_curves(results, include_failed=False)
    if not curves:
        return None
    shared, labels = _curve_labels(curves)
    ncols = 1 if len(curves) <= 4 else 2
    cv = _new_figure(10.0, 4.2 + 0.22 * math.ceil(len(curves) / ncols))
    axes = cv.main.subplots(1, 2)
    shown: list[str] = []
    all_x: list[float] = []
    panels = (("prefill_tps", "prefill tok/s"), ("decode_tps", "decode tok/s"))
    for ax, (metric, ylabel) in zip(axes, panels, strict=True):
        ys_all: list[float] = []
        for i, (curve, label) in enumerate(zip(curves, labels, strict=True)):
            xs, ys, lo, hi = [], [], [], []
            for x, run in curve.points:
                mc = _mean_ci(run.metrics.get(metric))
                if mc is None:
                    continue
                xs.append(x)
                ys.append(mc[0])
                lo.append(mc[1])
                hi.append(mc[2])
                if run.run_id not in shown:
                    shown.append(run.run_id)
            if not xs:
                continue
            all_x.extend(xs)
            ys_all.extend(ys)
            colour = f"C{i % 10}"
            ax.errorbar(
                xs,
                ys,
                yerr=[lo, hi],
                fmt=_MARKERS[i % len(_MARKERS)],
                color=colour,
                capsize=3,
                markersize=5,
                label=label + _fit_note(analysis, curve, "decode_tps")
                if metric == "decode_tps"
                else None,
            )
            line_x, line_y = _per_x_mean(xs, ys)
            ax.plot(line_x, line_y, "-", color=colour, linewidth=1.2, alpha=0.8)
        _log_x(ax, all_x)
        _maybe_log_y(ax, ys_all)
        ax.set_xlabel(_axis_label(curves))
        ax.set_ylabel(f"{ylabel} (mean, 95% CI)")
        ax.set_title(ylabel.split()[0] + " speed", fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    if not shown:
        return None
    _outside_legend(cv.main, axes[1], ncols)
    cv.main.suptitle(_text("Throughput vs context" + (f" — {shared}" if shared else ""), 100))
    _footnote(cv, shown)
    return ReportFigure(
        id="tps-vs-context",
        title="Prefill and decode speed vs context",
        caption=(
            "Prefill and decode tokens per second against "
            + _axis_label(curves)
            + " (log scale), one line per configuration; markers are the mean over the "
            "timed repetitions, error bars its 95% confidence interval (Student's t), "
            "lines join the means. "
            + (f"All curves: {shared}. " if shared else "")
            + (
                "Legend: power-law exponent b of decode tok/s from the sweep analysis. "
                if analysis and analysis.get("scaling")
                else ""
            )
        ).strip(),
        run_ids=tuple(shown),
        figure=cv.fig,
    )


def _per_x_mean(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    """Mean y at each distinct x, x ascending (the line through repeated points)."""
    acc: dict[float, list[float]] = {}
    for x, y in zip(xs, ys, strict=True):
        acc.setdefault(x, []).append(y)
    keys = sorted(acc)
    return keys, [sum(acc[k]) / len(acc[k]) for k in keys]


def context_memory_figure(results: Sequence[RunResult]) -> ReportFigure | None:
    """Peak resident memory against prompt or context length.

    Args:
        results: runs, any mix. Failed runs with a recorded peak (e.g. out of memory at
            a long prompt) are drawn as crosses on their configuration's curve.

    Returns:
        Figure ``memory-vs-context``: y = peak RSS in MiB (``memory["peak_rss_bytes"]``:
        the larger of the kernel high-water mark and the sampled peak, see
        ``meltbench.sensors.memory``), x = tokens on a log2 axis; or None when no
        configuration has a peak at >= 2 lengths.
    """
    curves = []
    for c in _context_curves(results, include_failed=True):
        pts = [(x, r) for x, r in c.points if _peak(r) is not None]
        if len({x for x, _ in pts}) >= 2:
            curves.append(_Curve(c.group, c.axis, pts))
    if not curves:
        return None
    shared, labels = _curve_labels(curves)
    ncols = 1 if len(curves) <= 4 else 2
    cv = _new_figure(8.0, 4.4 + 0.22 * math.ceil(len(curves) / ncols))
    ax = cv.main.subplots()
    shown: list[str] = []
    all_x: list[float] = []
    any_failed = False
    for i, (curve, label) in enumerate(zip(curves, labels, strict=True)):
        colour = f"C{i % 10}"
        ok = [(x, _peak(r) / _MIB) for x, r in curve.points if r.ok]
        bad = [(x, _peak(r) / _MIB) for x, r in curve.points if not r.ok]
        for _, r in curve.points:
            if r.run_id not in shown:
                shown.append(r.run_id)
        all_x.extend(x for x, _ in curve.points)
        marker = _MARKERS[i % len(_MARKERS)]
        if ok:
            lx, ly = _per_x_mean([x for x, _ in ok], [y for _, y in ok])
            ax.plot(lx, ly, "-", color=colour, alpha=0.8)
            ax.plot([x for x, _ in ok], [y for _, y in ok], marker, color=colour, label=label)
        if bad:
            any_failed = True
            ax.plot(
                [x for x, _ in bad],
                [y for _, y in bad],
                "x",
                color=colour,
                markersize=9,
                markeredgewidth=2,
                label=None if ok else label,
            )
    if any_failed:
        ax.plot([], [], "x", color="black", markeredgewidth=2, label="failed run (peak so far)")
    _log_x(ax, all_x)
    ax.set_xlabel(_axis_label(curves))
    ax.set_ylabel("peak RSS (MiB)")
    ax.grid(True, alpha=0.3)
    _outside_legend(cv.main, ax, ncols)
    cv.main.suptitle(_text("Peak memory vs context" + (f" — {shared}" if shared else ""), 100))
    _footnote(cv, shown)
    return ReportFigure(
        id="memory-vs-context",
        title="Peak memory vs context",
        caption=(
            "Peak resident memory (RSS, MiB) of the worker process against "
            + _axis_label(curves)
            + " (log scale), one line per configuration."
            + (
                " Crosses: failed runs, at the peak they reached before failing."
                if any_failed
                else ""
            )
            + (f" All curves: {shared}." if shared else "")
        ),
        run_ids=tuple(shown),
        figure=cv.fig,
    )
