"""Figures per run: TTFT / inter-token latency distributions, operator breakdown."""

from __future__ import annotations

from collections.abc import Sequence

from meltbench.measure.profile import CATEGORIES
from meltbench.report.figure_base import (
    _BOX_LEGEND,
    _CATEGORY_COLOURS,
    ReportFigure,
    _footnote,
    _new_figure,
    _outside_legend,
    _run_labels,
    _text,
)
from meltbench.results.schema import RunResult


def latency_distribution_figure(results: Sequence[RunResult]) -> ReportFigure | None:
    """TTFT and inter-token latency distributions of each run, from raw samples.

    Args:
        results: runs; those with ``ttft_ms`` or ``itl_ms`` samples are drawn.

    Returns:
        Figure ``latency-distributions``: two panels of horizontal box plots (median,
        quartiles, whiskers at 1.5 IQR), one row per run, x in ms (log scale when the
        values span more than 20x), every raw sample drawn as a dot; or None when no run
        has samples.
    """
    runs = [
        r
        for r in results
        if any(r.metrics.get(m) and r.metrics[m].samples for m in ("ttft_ms", "itl_ms"))
    ]
    if not runs:
        return None
    shared, labels = _run_labels(runs)
    cv = _new_figure(10.0, 1.9 + 0.28 * len(runs))
    axes = cv.main.subplots(1, 2, sharey=True)
    positions = list(range(1, len(runs) + 1))
    for ax, (metric, name) in zip(
        axes, (("ttft_ms", "TTFT"), ("itl_ms", "inter-token latency")), strict=True
    ):
        data, pos, values = [], [], []
        for p, run in zip(positions, runs, strict=True):
            s = run.metrics.get(metric)
            if s and s.samples:
                data.append(list(s.samples))
                pos.append(p)
                values.extend(s.samples)
        if data:
            ax.boxplot(
                data,
                positions=pos,
                orientation="horizontal",
                widths=0.6,
                showfliers=False,
                medianprops={"color": "C1", "linewidth": 1.5},
            )
            for p, samples in zip(pos, data, strict=True):
                n = len(samples)
                jitter = [p + 0.25 * ((k % 7) / 6 - 0.5) for k in range(n)]
                ax.scatter(samples, jitter, s=6, color="C0", alpha=0.45, linewidths=0)
            pos_values = [v for v in values if v > 0]
            if pos_values and max(pos_values) / min(pos_values) > 20:
                ax.set_xscale("log")
        ax.set_xlabel(f"{name} (ms)")
        ax.set_title(f"{name}, every sample", fontsize=10)
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].set_yticks(positions, labels, fontsize=7)
    axes[0].set_ylim(len(runs) + 0.6, 0.4)
    axes[0].set_ylabel("run")
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color="C1", linewidth=1.5, label=_BOX_LEGEND),
        Line2D([], [], marker="o", linestyle="", color="C0", alpha=0.6, label="raw sample"),
    ]
    cv.main.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8)
    cv.main.suptitle(_text("Latency distributions" + (f" — {shared}" if shared else ""), 100))
    run_ids = tuple(r.run_id for r in runs)
    _footnote(cv, run_ids)
    return ReportFigure(
        id="latency-distributions",
        title="TTFT and inter-token latency distributions",
        caption=(
            "Time to first token (one sample per timed repetition) and inter-token latency "
            "(every gap between consecutive tokens of every timed repetition), ms, per run. "
            "Boxes: quartiles and median; whiskers: 1.5 IQR; dots: every raw sample."
            + (f" All runs: {shared}." if shared else "")
        ),
        run_ids=run_ids,
        figure=cv.fig,
    )


def operator_breakdown_figure(results: Sequence[RunResult]) -> ReportFigure | None:
    """Time per operator category of each profiled run.

    Args:
        results: runs; those whose ``profile["categories_ms"]`` has a positive total
            are drawn.

    Returns:
        Figure ``operator-breakdown``: one horizontal bar per run, stacked by category
        (gemm, attention, ssm_scan, norm, activation, other, then any other key), in
        ms of the one profiled request (``meltbench.measure.profile``); or None.
    """
    runs = []
    for r in results:
        cats = (r.profile or {}).get("categories_ms") or {}
        try:
            total = sum(float(v) for v in cats.values())
        except (TypeError, ValueError):
            continue
        if total > 0:
            runs.append(r)
    if not runs:
        return None
    categories = list(CATEGORIES)
    for r in runs:
        for k in r.profile["categories_ms"]:  # type: ignore[index]
            if k not in categories:
                categories.append(str(k))
    shared, labels = _run_labels(runs)
    cv = _new_figure(9.0, 2.4 + 0.35 * len(runs))
    ax = cv.main.subplots()
    ys = list(range(len(runs)))
    left = [0.0] * len(runs)
    for j, cat in enumerate(categories):
        widths = [float(r.profile["categories_ms"].get(cat, 0.0)) for r in runs]  # type: ignore[index]
        if not any(widths):
            continue
        ax.barh(
            ys,
            widths,
            left=left,
            color=_CATEGORY_COLOURS.get(cat, f"C{(j + 3) % 10}"),
            label=_text(cat, 30),
            height=0.6,
        )
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_yticks(ys, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("time in the profiled request (ms)")
    ax.set_ylabel("run")
    ax.grid(True, axis="x", alpha=0.3)
    _outside_legend(cv.main, ax, min(6, len(categories)))
    cv.main.suptitle(_text("Time per operator category" + (f" — {shared}" if shared else ""), 100))
    run_ids = tuple(r.run_id for r in runs)
    _footnote(cv, run_ids)
    sources = sorted({str((r.profile or {}).get("source") or "engine profiler") for r in runs})
    return ReportFigure(
        id="operator-breakdown",
        title="Per-operator breakdown",
        caption=(
            "Milliseconds per operator category in one extra request run under the "
            "engine's profiler after the timed repetitions (profiler overhead included; "
            "the timed numbers are not affected). Source: " + ", ".join(sources) + "."
        ),
        run_ids=run_ids,
        figure=cv.fig,
    )
