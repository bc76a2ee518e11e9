"""The figure of forward runs (``--task encode``/``classify``): latency and throughput
against batch size, one line per model, engine and shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from meltbench.report.figure_base import (
    _MARKERS,
    ReportFigure,
    _footnote,
    _log_x,
    _maybe_log_y,
    _new_figure,
    _outside_legend,
    _text,
)
from meltbench.results.schema import RunResult

__all__ = ["forward_batch_figure"]


def _curve_key(result: RunResult) -> tuple[Any, ...]:
    """What stays fixed along a curve: everything of the run's identity but the batch."""
    ident, w = result.identity(), result.spec.workload
    shape = f"s{w.seq_len}" if w.task == "encode" else f"r{w.resolution or 'default'}"
    return (ident.model, ident.engine, ident.threads, ident.target, w.task, shape)


def forward_batch_figure(results: Sequence[RunResult]) -> ReportFigure | None:
    """Latency per forward pass (median; the error bar spans the fastest pass to p90, ms)
    and throughput (items/s, median) against batch size
    (log2 axis), one line per model, engine, threads, target and shape.

    Returns:
        Figure ``latency-vs-batch``, or None without a forward configuration measured at
        >= 2 batch sizes.
    """
    curves: dict[tuple[Any, ...], list[RunResult]] = {}
    for r in results:
        if r.forward is not None and r.ok and r.metrics.get("latency_ms") is not None:
            curves.setdefault(_curve_key(r), []).append(r)
    curves = {
        k: sorted(v, key=lambda r: r.spec.workload.batch_size)
        for k, v in curves.items()
        if len({r.spec.workload.batch_size for r in v}) >= 2
    }
    if not curves:
        return None
    cv = _new_figure(9.0, 4.2)
    ax_l, ax_t = cv.main.subplots(1, 2)
    shown: list[str] = []
    xs_all: list[float] = []
    ys_all: list[float] = []
    for i, (key, runs) in enumerate(curves.items()):
        model, engine, threads, target, _task, shape = key
        colour, marker = f"C{i % 10}", _MARKERS[i % len(_MARKERS)]
        where = "" if target == "local" else f" @{target}"
        label = _text(f"{model} {engine} t{threads} {shape}{where}")
        xs = [float(r.spec.workload.batch_size) for r in runs]
        lat = [r.metrics["latency_ms"] for r in runs]
        med = [s.median for s in lat]
        low = [max(0.0, s.median - s.min) for s in lat]
        high = [max(0.0, (s.p90 if s.p90 is not None else s.max) - s.median) for s in lat]
        ax_l.errorbar(xs, med, yerr=[low, high], fmt="-" + marker, color=colour, capsize=3,
                      label=label)  # fmt: skip
        tput = [r.median("throughput_items_per_s") for r in runs]
        ax_t.plot(xs, tput, "-" + marker, color=colour, label=label)
        xs_all += xs
        ys_all += med
        shown += [r.run_id for r in runs if r.run_id not in shown]
    for ax, ylabel in ((ax_l, "latency per pass (ms)"), (ax_t, "items/s")):
        _log_x(ax, xs_all)
        ax.set_xlabel("batch size (items per pass)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    _maybe_log_y(ax_l, ys_all)
    _outside_legend(cv.main, ax_l, 1)
    cv.main.suptitle("Forward-pass latency and throughput vs batch size")
    _footnote(cv, shown)
    return ReportFigure(
        id="latency-vs-batch",
        title="Latency vs batch size",
        caption=(
            "Forward tasks (--task encode / classify): latency of one forward pass "
            "(median; the bar spans the fastest pass to p90, ms) and items (sequences or "
            "images) per second against batch size, one line per model, engine, threads "
            "and shape (s = sequence length, r = resolution). Every engine's outputs were "
            "checked against PyTorch eager's on the same weights and inputs (max |Δ| in "
            "the results table)."
        ),
        run_ids=tuple(shown),
        figure=cv.fig,
    )
