"""Figures of request workloads: TTFT and peak memory against document length (SlimLM's
trade-off), and goodput against request rate (server load)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from meltbench.report.figure_base import (
    _MARKERS,
    _MIB,
    ReportFigure,
    _footnote,
    _log_x,
    _new_figure,
    _outside_legend,
    _peak,
    _text,
)
from meltbench.results.schema import RunResult

__all__ = ["document_length_figure", "goodput_rate_figure"]


def _kind(result: RunResult) -> str | None:
    return ((result.requests or {}).get("workload") or {}).get("kind")


def _config(result: RunResult, drop: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    """What must stay fixed along one curve: the run's identity without ``drop``."""
    ident = result.identity()
    fields = {
        "model": ident.model,
        "engine": ident.engine,
        "threads": ident.threads,
        "endpoint": result.spec.engine.endpoint,
        "tasks": result.spec.workload.doc_tasks if _kind(result) == "document" else None,
        "output": result.spec.workload.output_mode,
        "concurrency": result.spec.workload.concurrency,
        "workload": (result.requests or {}).get("workload", {}).get("name"),
    }
    return tuple((k, v) for k, v in fields.items() if k not in drop and v is not None)


def _label(config: tuple[tuple[str, Any], ...]) -> str:
    return _text(" ".join(f"{v}" for k, v in config if k in ("model", "engine", "endpoint")))


def _curves(
    results: Sequence[RunResult], kind: str, x_of: Any, drop: Sequence[str]
) -> dict[tuple[tuple[str, Any], ...], list[tuple[float, RunResult]]]:
    curves: dict[tuple[tuple[str, Any], ...], list[tuple[float, RunResult]]] = {}
    for r in results:
        if _kind(r) != kind:
            continue
        x = x_of(r)
        if x is None:
            continue
        curves.setdefault(_config(r, drop), []).append((float(x), r))
    return {
        k: sorted(v, key=lambda p: p[0]) for k, v in curves.items() if len({x for x, _ in v}) >= 2
    }


def _finish(
    cv: Any, ylabels: dict[Any, str], xlabel: str, xs: list[float], shown: list[str], title: str
) -> None:
    """The two panels' shared log2 x axis, labels and grid; the legend beside the first
    panel, the title and the run-id footnote."""
    for ax, ylabel in ylabels.items():
        _log_x(ax, xs)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    _outside_legend(cv.main, next(iter(ylabels)), 1)
    cv.main.suptitle(title)
    _footnote(cv, shown)


def document_length_figure(results: Sequence[RunResult]) -> ReportFigure | None:
    """TTFT (median and p90 over the requests, ms) and peak RSS (MiB) against document
    length (tokens, log2 axis), one line per model and engine.

    Returns:
        Figure ``ttft-vs-document-length``, or None without a configuration measured at
        >= 2 document lengths.
    """
    curves = _curves(results, "document", lambda r: r.spec.workload.doc_tokens, ())
    if not curves:
        return None
    cv = _new_figure(9.0, 4.2)
    ax_t, ax_m = cv.main.subplots(1, 2)
    shown: list[str] = []
    xs_all: list[float] = []
    for i, (config, points) in enumerate(curves.items()):
        colour, marker, label = f"C{i % 10}", _MARKERS[i % len(_MARKERS)], _label(config)
        ok = [(x, r) for x, r in points if r.ok and r.metrics.get("ttft_ms") is not None]
        if ok:
            xs = [x for x, _ in ok]
            ax_t.plot(xs, [r.metrics["ttft_ms"].median for _, r in ok], "-" + marker,
                      color=colour, label=f"{label} p50")  # fmt: skip
            ax_t.plot(xs, [r.metrics["ttft_ms"].p90 for _, r in ok], ":", color=colour,
                      label=f"{label} p90")  # fmt: skip
        mem = [(x, _peak(r)) for x, r in points if _peak(r) is not None]
        if mem:
            ax_m.plot([x for x, _ in mem], [m / _MIB for _, m in mem], "-" + marker,
                      color=colour, label=label)  # fmt: skip
        xs_all += [x for x, _ in points]
        shown += [r.run_id for _, r in points if r.run_id not in shown]
    _finish(cv, {ax_t: "TTFT (ms)", ax_m: "peak RSS (MiB)"}, "document length (tokens)",
            xs_all, shown, "TTFT and memory vs document length")  # fmt: skip
    return ReportFigure(
        id="ttft-vs-document-length",
        title="TTFT and memory vs document length",
        caption=(
            "Document tasks (summarise, qa, suggest) over documents cut to exact token "
            "counts: time to first token (median solid, p90 dotted, ms) and the worker's "
            "peak resident memory (MiB) against document length, one line per model "
            "and engine (each length is its own run, its context sized to the document)."
        ),
        run_ids=tuple(shown),
        figure=cv.fig,
    )


def goodput_rate_figure(results: Sequence[RunResult]) -> ReportFigure | None:
    """Request throughput and goodput (req/s) and SLO attainment against the request
    rate (arrivals/s), one line per server, model and concurrency.

    Returns:
        Figure ``goodput-vs-request-rate``, or None without a configuration measured at
        >= 2 request rates.
    """
    curves = _curves(results, "app", lambda r: r.spec.workload.request_rate, ())
    for kind in ("conversation", "document"):
        curves.update(_curves(results, kind, lambda r: r.spec.workload.request_rate, ()))
    if not curves:
        return None
    cv = _new_figure(9.0, 4.2)
    ax_g, ax_s = cv.main.subplots(1, 2)
    shown: list[str] = []
    xs_all: list[float] = []
    for i, (config, points) in enumerate(curves.items()):
        colour, marker = f"C{i % 10}", _MARKERS[i % len(_MARKERS)]
        label = _label(config) + f" c{dict(config).get('concurrency')}"
        ok = [(x, r) for x, r in points if r.metrics.get("request_throughput_rps")]
        if ok:
            xs = [x for x, _ in ok]
            ax_g.plot(xs, [r.median("request_throughput_rps") for _, r in ok], ":" + marker,
                      color=colour, label=f"{label} throughput")  # fmt: skip
            good = [
                (x, r.median("goodput_rps")) for x, r in ok if r.median("goodput_rps") is not None
            ]
            if good:
                ax_g.plot([x for x, _ in good], [g for _, g in good], "-" + marker,
                          color=colour, label=f"{label} goodput")  # fmt: skip
            att = [
                (x, r.median("slo_attainment"))
                for x, r in ok
                if r.median("slo_attainment") is not None
            ]
            if att:
                ax_s.plot([x for x, _ in att], [100 * a for _, a in att], "-" + marker,
                          color=colour, label=label)  # fmt: skip
        xs_all += [x for x, _ in points]
        shown += [r.run_id for _, r in points if r.run_id not in shown]
    ax_s.set_ylim(0, 105)
    _finish(cv, {ax_g: "requests/s", ax_s: "requests meeting every SLO (%)"},
            "request rate (sessions/s)", xs_all, shown, "Goodput vs request rate")  # fmt: skip
    return ReportFigure(
        id="goodput-vs-request-rate",
        title="Goodput vs request rate",
        caption=(
            "Server load: completed requests/s (dotted) and goodput, requests/s meeting "
            "every --slo (solid, vLLM's definition), and the share of requests meeting "
            "them, against the Poisson (or gamma) arrival rate; one line per server, "
            "model and concurrency."
        ),
        run_ids=tuple(shown),
        figure=cv.fig,
    )
