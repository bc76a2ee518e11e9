"""What every report figure shares: the figure type, canvas and rendering, labels, footnotes,
context curves and run labels (matplotlib imported inside functions only)."""

from __future__ import annotations

import io
import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meltbench.measure.stats import Summary
from meltbench.results.identity import ContextCurve, context_curves
from meltbench.results.schema import RunResult

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
