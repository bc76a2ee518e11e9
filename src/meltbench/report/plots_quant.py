"""The quantization figure: decode and prefill tok/s against file size, per quant type."""

from __future__ import annotations

import math
from collections.abc import Sequence

from meltbench.report.figure_base import (
    _MARKERS,
    _MIB,
    _QUANT_STUDY_FIELDS,
    ReportFigure,
    _footnote,
    _mean_ci,
    _new_figure,
    _outside_legend,
    _quant_of,
    _text,
)
from meltbench.results.identity import identity_key
from meltbench.results.schema import RunResult


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
        groups.setdefault(repr(identity_key(fields)), []).append(r)
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
