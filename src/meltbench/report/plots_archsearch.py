"""The architecture search's figure: latency against parameters per target, measured and
predicted, with the Pareto fronts (:mod:`meltbench.archsearch`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from meltbench.report.figure_base import (
    _MIB,
    ReportFigure,
    _footnote,
    _new_figure,
    _outside_legend,
    _text,
)

__all__ = ["arch_pareto_figure"]

_PANELS = (("decode_ms", "decode ms/token"), ("prefill_ms", "prefill ms (per request)"),
           ("peak_rss_bytes", "peak RSS (MiB)"))  # fmt: skip


def _front_line(ax: Any, pts: Sequence[tuple[float, float]], colour: str, style: str,
                label: str | None) -> None:  # fmt: skip
    """The front's staircase: over ``(p[i-1], p[i]]`` the least cost of a model of at least
    that many parameters is ``c[i]`` (``where="pre"``)."""
    pts = sorted(pts)
    if len(pts) >= 2:
        ax.step([p[0] for p in pts], [p[1] for p in pts], where="pre", color=colour,
                linestyle=style, linewidth=1.1, alpha=0.8, label=label)  # fmt: skip


def arch_pareto_figure(analysis: Mapping[str, Any] | None) -> ReportFigure | None:
    """Latency (and memory) against exact parameter count, one colour per target.

    Args:
        analysis: a sweep analysis with ``arch_search`` (:func:`meltbench.archsearch.search.
            analysis_of`); other analyses give None.

    Returns:
        Figure ``arch-pareto``: panels decode ms/token, prefill ms and (when measured) peak
        RSS against millions of parameters; filled circles are measured candidates, crosses
        the latency model's predictions for every shape of the budget, the solid staircase
        the measured front, the dashed one the predicted front; or None.
    """
    search = (analysis or {}).get("arch_search")
    if not isinstance(search, Mapping) or not search.get("targets"):
        return None
    targets = search["targets"]
    panels = [
        p
        for p in _PANELS
        if p[0] != "peak_rss_bytes"
        or any("peak_rss_bytes" in c["measured"] for t in targets for c in t["candidates"])
    ]
    if not any(c["measured"] for t in targets for c in t["candidates"]):
        return None
    cv = _new_figure(4.2 * len(panels), 4.6)
    axes = cv.main.subplots(1, len(panels), squeeze=False)[0]
    run_ids: list[str] = []
    for ti, t in enumerate(targets):
        colour = f"C{ti % 10}"
        cands = {c["key"]: c for c in t["candidates"]}
        for c in t["candidates"]:
            run_ids.extend(c.get("run_ids") or [])
        for ax, (objective, _) in zip(axes, panels, strict=True):
            scale = 1 / _MIB if objective == "peak_rss_bytes" else 1.0
            measured = [(c["n_params"] / 1e6, c["measured"][objective] * scale)
                        for c in t["candidates"] if objective in c["measured"]]  # fmt: skip
            predicted = [(c["n_params"] / 1e6, c["predicted"][objective])
                         for c in t["candidates"]
                         if objective in c.get("predicted", {})]  # fmt: skip
            name = _text(t["target"], 30)
            if predicted:
                ax.plot(
                    [p[0] for p in predicted],
                    [p[1] for p in predicted],
                    "x",
                    color=colour,
                    alpha=0.45,
                    markersize=5,
                    label=f"{name}: predicted" if objective == "decode_ms" else None,
                )
            if measured:
                ax.plot([p[0] for p in measured], [p[1] for p in measured], "o", color=colour,
                        markersize=6, label=f"{name}: measured" if objective == "decode_ms"
                        else None)  # fmt: skip
            front = [(cands[k]["n_params"] / 1e6, cands[k]["measured"][objective] * scale)
                     for k in (t.get("fronts") or {}).get(objective, [])]  # fmt: skip
            _front_line(
                ax,
                front,
                colour,
                "-",
                f"{name}: measured front" if objective == "decode_ms" else None,
            )
            pfront = [(cands[k]["n_params"] / 1e6, cands[k]["predicted"][objective])
                      for k in (t.get("predicted_fronts") or {}).get(objective, [])]  # fmt: skip
            _front_line(
                ax,
                pfront,
                colour,
                "--",
                f"{name}: predicted front" if objective == "decode_ms" else None,
            )
    for ax, (_, ylabel) in zip(axes, panels, strict=True):
        ax.set_xlabel("parameters (M, exact)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    _outside_legend(cv.main, axes[0], min(4, 2 * len(targets)))
    cv.main.suptitle(
        _text(
            f"Architecture search {search.get('space', '')}: "
            f"{search.get('quant', '')} on {search.get('engine', '')}",
            100,
        )
    )
    _footnote(cv, run_ids)
    fits = []
    for t in targets:
        for phase, f in (t.get("fits") or {}).items():
            if f.get("cv_mape") is not None:
                fits.append(f"{t['target']} {phase}: held-out MAPE {f['cv_mape']:.1f}%")
    return ReportFigure(
        id="arch-pareto",
        title="Architecture search: latency against parameters",
        caption=(
            "Each circle is a random-weight candidate measured on the target (mean over the "
            "workload points of each point's median; decode = 1000 / decode tok/s, prefill "
            "= n_prompt / prefill tok/s); each cross is the fitted latency model's "
            "prediction for a shape of the budget, measured or not. Solid staircase: the "
            "measured Pareto front (no other candidate has more parameters and less cost); "
            "dashed: the predicted front. "
            + ("; ".join(fits) + "." if fits else "No held-out error (fewer than 3 candidates).")
        ),
        run_ids=tuple(dict.fromkeys(run_ids)),
        figure=cv.fig,
    )
