"""Figures of stored runs for the HTML report and for papers (matplotlib, Agg, no pyplot).

Only the figures that the data support are made; each one says which runs it shows.

======================== ===============================================================
id                       what it shows
======================== ===============================================================
``tps-vs-context``       prefill and decode tok/s (mean, 95% CI error bars) against prompt
                         or context tokens, one line per configuration with >= 2 lengths
``latency-distributions`` TTFT and inter-token latency (ms) of each run, from raw samples:
                         box plots with every sample drawn on top
``memory-vs-context``    peak resident memory (MiB) against prompt or context tokens;
                         failed runs (e.g. out of memory) drawn as crosses
``quant-speed-size``     decode and prefill tok/s against model file size (MiB), one point
                         per quant type of one model and workload, with the speed/size
                         Pareto front (speed and size only)
``operator-breakdown``   milliseconds per operator category of each profiled run
                         (``--profile``), as stacked horizontal bars
``decode-roofline``      decode tok/s (median, 95% CI) against bytes read per decoded
                         token (weights + KV cache), under the memory-bandwidth roof
                         ``tok/s = bandwidth / bytes`` of each measured bandwidth; one
                         point per run, labelled by model, quant and depth
======================== ===============================================================

Energy, temperature and accuracy metrics are stored with the runs that measured them but
not plotted yet; :data:`NOT_PLOTTED` names them, and the HTML report says which runs
carry them.

Context curves group runs by their identity, as the sweep's scaling fits do
(:func:`meltbench.results.identity.context_curves`):
everything that must stay fixed along a curve (model, quant, weights, engine, dtype,
device, target, threads, ``n_gen``), then either a fixed ``n_depth`` with ``x = n_prompt``
or a fixed ``n_prompt`` with ``x = n_depth + n_prompt`` (the KV length at the end of
prefill), keeping curves with >= 2 distinct x values.

matplotlib is imported inside the functions only: ``import meltbench`` and the measuring
code never load it. Figures are ``matplotlib.figure.Figure`` objects with an Agg canvas,
not pyplot figures, so no global state (backend, open-figure registry) is touched.
"""

from __future__ import annotations

import io
import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meltbench.measure.profile import CATEGORIES
from meltbench.measure.stats import Summary
from meltbench.results.identity import ContextCurve, context_curves, identity_key
from meltbench.results.schema import RunResult

__all__ = [
    "NOT_PLOTTED",
    "PLOT_IDS",
    "PLOT_NEEDS",
    "ReportFigure",
    "build_figures",
    "context_memory_figure",
    "context_throughput_figure",
    "decode_roofline_figure",
    "latency_distribution_figure",
    "operator_breakdown_figure",
    "quantization_figure",
    "write_figures",
]

#: Every figure id, in report order.
PLOT_IDS = (
    "tps-vs-context",
    "latency-distributions",
    "memory-vs-context",
    "quant-speed-size",
    "operator-breakdown",
    "decode-roofline",
)

#: What each figure needs from the data (shown in the report when a figure is absent).
PLOT_NEEDS: dict[str, str] = {
    "tps-vs-context": "ok runs of one configuration at >= 2 prompt or context lengths",
    "latency-distributions": "ok runs with raw TTFT or inter-token latency samples",
    "memory-vs-context": "runs of one configuration at >= 2 prompt or context lengths "
    "with a peak RSS",
    "quant-speed-size": "ok runs of one model and workload in >= 2 quant types with "
    "known file sizes",
    "operator-breakdown": "runs with a profile (meltbench run --profile)",
    "decode-roofline": "ok runs of GGUF models with decode tok/s and a measured memory "
    "bandwidth (meltbench bandwidth)",
}

#: Quantities the report does not plot, keyed by name -> the metric names that show
#: whether any run measured them (the report says which runs did, and why others did not).
NOT_PLOTTED: dict[str, tuple[str, ...]] = {
    "energy and power": ("energy_j_decode", "j_per_token_decode", "avg_power_w"),
    "temperature and throttling": ("temp_max_c",),
    "accuracy": ("perplexity", "kl_mean_nats", "top1_agreement"),
}

_MIB = 1024.0**2
_LABEL_MAX = 60  # characters of one legend or axis label
_FOOT_WIDTH = 110  # characters per line of the run-id footnote
_DPI = 150
_BOX_LEGEND = "median (box: quartiles, whiskers: 1.5 IQR)"
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
#: Fixed colours per operator category (tab10 order), so two reports read the same.
_CATEGORY_COLOURS = {
    "gemm": "#1f77b4",
    "attention": "#ff7f0e",
    "ssm_scan": "#2ca02c",
    "norm": "#d62728",
    "activation": "#9467bd",
    "other": "#7f7f7f",
}


@dataclass
class ReportFigure:
    """One figure of the report.

    Attributes:
        id: stable identifier, one of :data:`PLOT_IDS` (also the HTML element id after
            ``plot-`` and the file name stem of :func:`write_figures`).
        title: one-line title (plain text, not escaped).
        caption: what is drawn, units and caveats (plain text, not escaped).
        run_ids: full ids of the runs drawn, in drawing order.
        figure: the ``matplotlib.figure.Figure`` (Agg canvas).
    """

    id: str
    title: str
    caption: str
    run_ids: tuple[str, ...]
    figure: Any = field(repr=False)

    @property
    def short_ids(self) -> list[str]:
        """The run ids shortened to 8 characters, as in ``meltbench results list``."""
        return [r[:8] for r in self.run_ids]

    def to_svg(self) -> bytes:
        """The figure as a standalone SVG document, UTF-8 bytes: text drawn as paths (no
        font needed), no metadata, no DOCTYPE and no comments (matplotlib writes each
        text, escaped, as a comment), so no run-provided string is left in it as text."""
        svg = _render(self.figure, "svg")
        svg = re.sub(rb"<!DOCTYPE[^>]*>\s*", b"", svg, count=1)
        return re.sub(rb"<!--.*?-->\s*", b"", svg, flags=re.DOTALL)

    def to_png(self, dpi: int = _DPI) -> bytes:
        """The figure as PNG bytes at ``dpi`` dots per inch."""
        return _render(self.figure, "png", dpi=dpi)


def _render(figure: Any, fmt: str, dpi: int = _DPI) -> bytes:
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "meltbench"}):
        # Metadata None drops the creator/date block and its RDF URLs.
        meta = {"Creator": None, "Date": None, "Format": None, "Type": None}
        if fmt == "png":
            meta = {"Software": None}
        figure.savefig(buf, format=fmt, dpi=dpi, metadata=meta)
    return buf.getvalue()


@dataclass
class _Canvas:
    """A figure, the subfigure drawn in, and the footnote subfigure under it."""

    fig: Any
    main: Any
    foot: Any
    grid: Any


def _new_figure(width: float, height: float) -> _Canvas:
    """An Agg-backed figure with constrained layout (no pyplot, no global backend); the
    footnote row under the drawing is sized by :func:`_footnote`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 1, height_ratios=[height, 0.01])
    return _Canvas(fig, fig.add_subfigure(grid[0]), fig.add_subfigure(grid[1]), grid)


def _text(value: object, limit: int = _LABEL_MAX) -> str:
    """A user-provided string made safe for matplotlib text: ``$`` would start mathtext
    (and raise on bad syntax), so it is escaped; long strings are shortened."""
    s = " ".join(str(value).split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("$", r"\$")


def _footnote(canvas: _Canvas, run_ids: Sequence[str]) -> None:
    """Write the short run ids under the drawing, growing the figure to make room."""
    ids = " ".join(r[:8] for r in run_ids)
    lines = textwrap.wrap(f"runs: {ids}", _FOOT_WIDTH) or ["runs: -"]
    height_in = canvas.fig.get_figheight()
    foot_in = 0.13 * len(lines) + 0.12
    canvas.fig.set_figheight(height_in + foot_in)
    canvas.grid.set_height_ratios([height_in, foot_in])
    canvas.foot.text(0.01, 0.5, "\n".join(lines), fontsize=7, color="#444444", va="center")


def _mean_ci(summary: Summary | None) -> tuple[float, float, float] | None:
    """(mean, distance down to ci95_low, distance up to ci95_high); 0 when no CI."""
    if summary is None or not math.isfinite(summary.mean):
        return None
    if summary.ci95_low is None or summary.ci95_high is None:
        return summary.mean, 0.0, 0.0
    return (
        summary.mean,
        max(0.0, summary.mean - summary.ci95_low),
        max(0.0, summary.ci95_high - summary.mean),
    )


# ---------------------------------------------------------------------------------------
# Grouping


def _quant_of(result: RunResult) -> str | None:
    """Quant type or dtype: the GGUF's, else the dtype asked for, else the engine's."""
    return (
        result.model.get("quant") or result.spec.engine.dtype or result.engine.get("dtype") or None
    )


_FIELD_LABELS = {
    "model": "{}",
    "quant": "{}",
    "weights": "{} weights",
    "engine": "{}",
    "dtype": "{}",
    "device": "{}",
    "target": "{}",
    "threads": "{} thr",
    "n_gen": "tg{}",
    "n_depth": "d{}",
    "n_prompt": "pp{}",
    "test": "{}",
}


#: (field, value) pairs left out of descriptions: the usual case goes without saying.
_SILENT = {("weights", "pretrained"), ("target", "local"), ("n_depth", 0)}


def _describe(group: Mapping[str, Any], keys: Sequence[str]) -> str:
    parts = []
    for k in keys:
        v = group.get(k)
        if v is None or (k, v) in _SILENT:
            continue
        parts.append(_FIELD_LABELS.get(k, k + "={}").format(v))
    return " · ".join(parts)


def _split_common(groups: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """Keys equal in every group (said once) and keys that differ (said per curve)."""
    keys = list(groups[0]) if groups else []
    common = [k for k in keys if all(g.get(k) == groups[0].get(k) for g in groups)]
    varying = [k for k in keys if k not in common]
    return common, varying


_Curve = ContextCurve

#: the quantization figure's groups: the identity without the quantization and dtype
_QUANT_STUDY_FIELDS = (
    "model",
    "weights",
    "engine",
    "device",
    "target",
    "threads",
    "n_prompt",
    "n_gen",
    "n_depth",
)


def _context_curves(results: Sequence[RunResult], *, include_failed: bool) -> list[_Curve]:
    """Context curves with >= 2 distinct x values (see the module docstring), points in
    x order (then start time)."""
    curves = []
    for curve in context_curves(results, include_failed=include_failed):
        if len({x for x, r in curve.points if r.ok or include_failed}) >= 2:
            curve.points.sort(key=lambda p: (p[0], p[1].started_at))
            curves.append(curve)
    return curves


def _fit_note(analysis: Mapping[str, Any] | None, curve: _Curve, metric: str) -> str:
    """`` (b=0.96, linear)`` from the sweep analysis' power-law fit of this curve, if any."""
    if not analysis:
        return ""
    keys = ("model", "quant", "engine", "dtype", "threads", "n_gen")
    fixed = "n_depth" if curve.axis == "n_prompt" else "n_prompt"
    for row in analysis.get("scaling") or []:
        group = row.get("group") or {}
        if row.get("metric") != metric or row.get("x") != curve.axis:
            continue
        if all(group.get(k) == curve.group.get(k) for k in (*keys, fixed)):
            try:
                note = f" (b={float(row['exponent']):.2f}, {row.get('verdict', '')})"
                return note.replace("$", r"\$")
            except (KeyError, TypeError, ValueError):
                return ""
    return ""


def _axis_label(curves: Sequence[_Curve]) -> str:
    axes = {c.axis for c in curves}
    if axes == {"n_prompt"}:
        return "prompt tokens (n_prompt)"
    if axes == {"context"}:
        return "context tokens (n_depth + n_prompt)"
    return "prompt tokens (n_prompt) or context tokens (n_depth + n_prompt)"


def _curve_labels(curves: Sequence[_Curve]) -> tuple[str, list[str]]:
    """The description shared by every curve, and each curve's own label."""
    groups = [{**c.group, "axis": c.axis} for c in curves]
    common, varying = _split_common(groups)
    shared = _describe(groups[0], [k for k in common if k != "axis"])
    labels = []
    for g in groups:
        own = _describe(g, [k for k in varying if k != "axis"])
        labels.append(_text(own or shared or "runs"))
    return shared, labels


def _log_x(ax: Any, xs: Sequence[float]) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(LogLocator(base=2))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    if xs:
        lo, hi = min(xs), max(xs)
        ax.set_xlim(lo / 1.3, hi * 1.3)


def _maybe_log_y(ax: Any, values: Sequence[float]) -> None:
    pos = [v for v in values if v > 0]
    if pos and max(pos) / min(pos) > 20:
        ax.set_yscale("log")


def _outside_legend(fig: Any, ax: Any, ncols: int = 1) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize=8)


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


def _peak(result: RunResult) -> float | None:
    value = result.memory.get("peak_rss_bytes")
    if value is None:
        value = result.median("peak_rss_bytes")
    return float(value) if value else None


def _run_label(result: RunResult, keys: Sequence[str], limit: int = 64) -> str:
    own = _describe(_run_fields(result), keys)
    return _text(f"{result.run_id[:8]} {own}".strip(), limit)


def _run_fields(result: RunResult) -> dict[str, Any]:
    ident = result.identity()
    return {
        "test": ident.test,
        "model": ident.model,
        "quant": _quant_of(result),
        "engine": ident.engine,
        "threads": ident.threads,
    }


def _run_labels(results: Sequence[RunResult], limit: int = 64) -> tuple[str, list[str]]:
    fields = [_run_fields(r) for r in results]
    common, varying = _split_common(fields)
    shared = _describe(fields[0], common) if fields else ""
    return shared, [_run_label(r, varying, limit) for r in results]


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


def _size_bytes(result: RunResult) -> float | None:
    value = result.model.get("size_bytes") or result.engine.get("model_size_bytes")
    return float(value) if value else None


def quantization_figure(results: Sequence[RunResult]) -> ReportFigure | None:
    """Speed against size of the quant types of one model (a speed/size Pareto view).

    Args:
        results: runs; ok runs with a file size and a quant type (GGUF quant, or dtype)
            are grouped by model, weights, engine, device, threads and workload; groups
            with >= 2 distinct quant types are drawn.

    Returns:
        Figure ``quant-speed-size``: two panels, decode and prefill tok/s (mean, 95% CI)
        against model file size in MiB, each point labelled with its quant type; the
        Pareto front (no other point of the group is both smaller and faster) is a dashed
        line. Accuracy is not measured yet (SPEC capability 7), which the caption says;
        or None when no group qualifies.
    """
    groups: dict[str, list[RunResult]] = {}
    for r in results:
        if not r.ok or _size_bytes(r) is None or _quant_of(r) is None:
            continue
        # one group per configuration except the quantization (what the figure varies)
        fields = r.identity().fields(_QUANT_STUDY_FIELDS)
        groups.setdefault(repr(identity_key(fields, fields)), []).append(r)
    chosen = [
        sorted(g, key=lambda r: (_size_bytes(r) or 0, r.started_at))
        for _, g in sorted(groups.items())
        if len({_quant_of(r) for r in g}) >= 2
    ]
    if not chosen:
        return None
    cv = _new_figure(10.0, 4.6 + 0.22 * len(chosen))
    axes = cv.main.subplots(1, 2)
    shown: list[str] = []
    labels = []
    for g in chosen:
        ident = g[0].identity()
        labels.append(
            _text(
                " · ".join(
                    str(x)
                    for x in (
                        ident.model,
                        ident.engine,
                        f"{ident.threads} thr",
                        ident.test,
                    )
                    if x is not None
                )
            )
        )
    for ax, (metric, name) in zip(
        axes, (("decode_tps", "decode tok/s"), ("prefill_tps", "prefill tok/s")), strict=True
    ):
        for i, (g, label) in enumerate(zip(chosen, labels, strict=True)):
            colour = f"C{i % 10}"
            pts = []
            for r in g:
                mc = _mean_ci(r.metrics.get(metric))
                if mc is None:
                    continue
                pts.append((_size_bytes(r) / _MIB, mc, _quant_of(r), r))
                if r.run_id not in shown:
                    shown.append(r.run_id)
            if not pts:
                continue
            ax.errorbar(
                [p[0] for p in pts],
                [p[1][0] for p in pts],
                yerr=[[p[1][1] for p in pts], [p[1][2] for p in pts]],
                fmt=_MARKERS[i % len(_MARKERS)],
                color=colour,
                capsize=3,
                label=label if metric == "decode_tps" else None,
            )
            span = (max(p[0] for p in pts) - min(p[0] for p in pts)) or 1.0
            for size, mc, quant, _ in pts:
                # Label below a point that has a close neighbour above it, else above.
                crowded = any(abs(q[0] - size) < 0.05 * span and q[1][0] > mc[0] for q in pts)
                ax.annotate(
                    _text(quant, 20),
                    (size, mc[0]),
                    textcoords="offset points",
                    xytext=(6, -12 if crowded else 5),
                    fontsize=8,
                )
            front = _pareto([(p[0], p[1][0]) for p in pts])
            ax.plot(
                [p[0] for p in front],
                [p[1] for p in front],
                "--o",
                color=colour,
                alpha=0.6,
                markersize=13,
                markerfacecolor="none",
                label="Pareto front (no point both smaller and faster)"
                if i == 0 and metric == "decode_tps"
                else None,
            )
        ax.set_xlabel("model file size (MiB)")
        ax.set_ylabel(f"{name} (mean, 95% CI)")
        ax.set_title(f"{name.split()[0]} speed vs size", fontsize=10)
        ax.grid(True, alpha=0.3)
    _outside_legend(cv.main, axes[0], 1 if len(chosen) <= 3 else 2)
    cv.main.suptitle("Quantization: speed vs size (accuracy not drawn)")
    _footnote(cv, shown)
    return ReportFigure(
        id="quant-speed-size",
        title="Quantization study: speed vs model size",
        caption=(
            "Decode and prefill tokens per second (mean, 95% CI) against model file size "
            "(MiB), one point per quant type, same model and workload per colour; the dashed "
            "line is the speed/size Pareto front. Accuracy is not drawn here: the smallest, "
            "fastest quant type is not necessarily usable; see meltbench quant-study for "
            "perplexity and KL divergence per type."
        ),
        run_ids=tuple(shown),
        figure=cv.fig,
    )


def _pareto(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points (size, speed) that no other point beats on both (smaller or equal size and
    higher speed), by size ascending."""
    front: list[tuple[float, float]] = []
    best = -math.inf
    for size, speed in sorted(points, key=lambda p: (p[0], -p[1])):
        if speed > best:
            front.append((size, speed))
            best = speed
    return front


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


def decode_roofline_figure(results: Sequence[RunResult]) -> ReportFigure | None:
    """Achieved decode speed under the memory-bandwidth bound (a roofline for decode).

    Args:
        results: runs; ok ones with ``decode_tps``, ``bytes_per_token`` and
            ``decode_bound_tps`` (:mod:`meltbench.measure.roofline`) are drawn.

    Returns:
        Figure ``decode-roofline``: log-log axes, x = bytes read per decoded token (MiB),
        y = decode tok/s; each distinct bandwidth is a roof line ``y = bandwidth / x``;
        each run a point (median, 95% CI bar) labelled with its efficiency; or None.
    """
    runs = [
        r
        for r in results
        if r.ok
        and r.metrics.get("decode_tps")
        and r.metrics.get("bytes_per_token")
        and r.metrics.get("decode_bound_tps")
    ]
    if not runs:
        return None
    fields = []
    for r in runs:
        depth = r.spec.workload.n_depth
        ident = r.identity()
        fields.append(
            {
                "model": ident.model,
                "quant": _quant_of(r),
                "engine": ident.engine,
                "threads": ident.threads,
                "depth": f"d{depth}",
            }
        )
    common, varying = _split_common(fields)
    shared = _describe(fields[0], common)
    cv = _new_figure(9.0, 4.8)
    ax = cv.main.subplots()
    xs = [r.metrics["bytes_per_token"].median / _MIB for r in runs]
    roofs = sorted({float((r.roofline or {}).get("bandwidth_bytes_per_s") or 0) for r in runs})
    lo, hi = min(xs) / 1.6, max(xs) * 1.6
    for k, bw in enumerate(b for b in roofs if b > 0):
        line_x = [lo, hi]
        ax.plot(
            line_x,
            [bw / (x * _MIB) for x in line_x],
            color="0.35",
            linestyle=("-", "--", ":", "-.")[k % 4],
            linewidth=1.2,
            label=f"roof: {bw / 1e9:.1f} GB/s",
        )
    for i, (r, x, f) in enumerate(zip(runs, xs, fields, strict=True)):
        m = r.metrics["decode_tps"]
        ci = _mean_ci(m)
        y = m.median
        err = None
        if ci is not None:
            err = [[max(y - ci[1], 0.0)], [max(ci[2] - y, 0.0)]]
        eff = r.metrics.get("decode_efficiency")
        label = _text(f"{r.run_id[:8]} {_describe(f, varying)}".strip(), 50)
        if eff is not None:
            label += f" ({eff.median:.0%} of roof)"
        ax.errorbar(
            [x],
            [y],
            yerr=err,
            marker=_MARKERS[i % len(_MARKERS)],
            linestyle="",
            capsize=3,
            color=f"C{i % 10}",
            label=label,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("bytes read per decoded token (MiB): weights + KV cache")
    ax.set_ylabel("decode tok/s")
    ax.grid(True, which="both", alpha=0.3)
    _outside_legend(cv.main, ax, 2)
    cv.main.suptitle(
        _text("Decode against the bandwidth roof" + (f" — {shared}" if shared else ""), 100)
    )
    run_ids = tuple(r.run_id for r in runs)
    _footnote(cv, run_ids)
    return ReportFigure(
        id="decode-roofline",
        title="Decode roofline",
        caption=(
            "Median decode tok/s (bars: 95% CI over repetitions) against the bytes read per "
            "decoded token: every weight once (the embedding table too when it is tied to "
            "the output layer), plus the KV cache attended at the mean decode position. "
            "Lines: the memory-bandwidth bound tok/s = bandwidth / bytes, with the read "
            "bandwidth measured on the target (meltbench bandwidth)."
            + (f" All runs: {shared}." if shared else "")
        ),
        run_ids=run_ids,
        figure=cv.fig,
    )


def build_figures(
    results: Sequence[RunResult], analysis: Mapping[str, Any] | None = None
) -> list[ReportFigure]:
    """Every figure the data support, in :data:`PLOT_IDS` order.

    Args:
        results: stored runs (any mix of models, engines, statuses).
        analysis: a sweep's analysis (``ResultStore.get_sweep(id)["analysis"]``:
            ``{"scaling": [...], "max_context": [...]}``), or None.

    Returns:
        Zero to six :class:`ReportFigure` (absent ids: see :data:`PLOT_NEEDS`). Energy,
        temperature and accuracy are not plotted yet (:data:`NOT_PLOTTED`).

    Raises:
        ImportError: matplotlib is not installed (``pip install 'meltbench[report]'``).
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("plots need matplotlib: pip install 'meltbench[report]'") from exc
    made = [
        context_throughput_figure(results, analysis),
        latency_distribution_figure(results),
        context_memory_figure(results),
        quantization_figure(results),
        operator_breakdown_figure(results),
        decode_roofline_figure(results),
    ]
    return [f for f in made if f is not None]


def write_figures(figures: Sequence[ReportFigure], directory: str | Path) -> list[Path]:
    """Write each figure as ``{id}.png`` (150 dpi) and ``{id}.svg`` (vector, for papers).

    Args:
        figures: from :func:`build_figures`.
        directory: created (with parents) if missing.

    Returns:
        The written paths, PNG then SVG of each figure in order.

    Raises:
        OSError: the directory cannot be created or a file cannot be written.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fig in figures:
        for suffix, data in ((".png", fig.to_png()), (".svg", fig.to_svg())):
            path = out / f"{fig.id}{suffix}"
            path.write_bytes(data)
            paths.append(path)
    return paths
