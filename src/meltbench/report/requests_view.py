"""The terminal view of a request run: the per-group, per-turn table (conversations by
turn, documents by task and length, the app) and the load, goodput and app lines."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from meltbench.results.schema import RunResult

__all__ = ["GROUP_COLUMNS", "group_rows", "print_request_run"]

#: (header, metric, statistic, format) of the per-group table
GROUP_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("input tok", "input_tokens", "median", ".0f"),
    ("cached tok", "cached_tokens", "median", ".0f"),
    ("output tok", "output_tokens", "median", ".0f"),
    ("TTFT p50 ms", "ttft_ms", "median", ".1f"),
    ("TTFT p90 ms", "ttft_ms", "p90", ".1f"),
    ("prefill tok/s", "prefill_tps", "median", ".1f"),
    ("decode tok/s", "decode_tps", "median", ".2f"),
    ("TPOT ms", "tpot_ms", "median", ".1f"),
    ("ITL p99 ms", "itl_ms", "p99", ".1f"),
    ("e2e p50 ms", "e2e_ms", "median", ".0f"),
    ("app e2e ms", "app_e2e_ms", "median", ".0f"),
)


def group_rows(result: RunResult) -> tuple[list[str], list[list[str]]]:
    """``(headers, rows)`` of the per-group table; columns nobody measured are left out."""
    section = result.requests or {}
    groups: list[dict[str, Any]] = section.get("groups") or []
    used = [c for c in GROUP_COLUMNS if any(isinstance(g.get(c[1]), dict) for g in groups)]
    headers = ["group", "turn", "n", "failed", *(c[0] for c in used)]
    rows = []
    for g in groups:
        row = [str(g.get("group")), str(int(g.get("turn") or 0) + 1), str(g.get("n", 0))]
        row.append(str(g.get("failed", 0)))
        for _, metric, stat, fmt in used:
            summary = g.get(metric)
            value = summary.get(stat) if isinstance(summary, dict) else None
            row.append("-" if value is None else format(value, fmt))
        rows.append(row)
    return headers, rows


def _median(result: RunResult, name: str) -> float | None:
    return result.median(name)


def print_request_run(result: RunResult, console: Console) -> None:
    """The whole view of a request run (the table, then one line per fact)."""
    from meltbench.report.terminal import print_warnings
    from meltbench.results.tables import format_bytes

    section = result.requests or {}
    workload = section.get("workload") or {}
    headers, rows = group_rows(result)
    table = Table(show_edge=True, header_style="bold", title=result.test)
    for h in headers:
        table.add_column(h, justify="left" if h == "group" else "right")
    for row in rows:
        table.add_row(*(Text(c) for c in row))
    console.print(table)
    lines = []
    counts = section.get("counts") or {}
    reuse = "on" if workload.get("prefix_reuse") else "off"
    if (section.get("template") or {}).get("source") == "server":
        reuse = "the server's prompt cache"
    lines.append(
        f"{workload.get('kind')} {workload.get('name')}@{workload.get('version')}: "
        f"{workload.get('sessions')} sessions, {workload.get('turns')} turns, output "
        f"{workload.get('output')}, prefix reuse {reuse}; {counts.get('ok', 0)} of "
        f"{counts.get('requests', 0)} requests ok"
    )
    template = section.get("template") or {}
    if template.get("source"):
        lines.append(f"chat template: {template['source']}")
    load = section.get("load") or {}
    if load.get("request_throughput_rps") is not None:
        rate = load.get("request_rate")
        arrivals = (
            "all at once" if rate is None else f"{rate:g}/s (burstiness {load['burstiness']:g})"
        )
        lines.append(
            f"load: concurrency {load.get('concurrency')}, arrivals {arrivals}; "
            f"{load['request_throughput_rps']:.3f} req/s, output {load['output_tps']:.1f} tok/s, "
            f"{load.get('failed', 0)} failed, over {load['duration_s']:.1f} s"
        )
    good = load.get("goodput")
    if good:
        slo = ", ".join(f"{k} <= {v:g}" for k, v in (load.get("slo") or {}).items())
        lines.append(
            f"goodput: {good['goodput_rps']:.3f} req/s; {good['slo_attainment']:.1%} of "
            f"requests met every SLO ({slo})"
        )
    app = section.get("app")
    if app:
        acc = app.get("accuracy")
        lines.append(
            f"app: {app['parsed']} of {app['requests']} answers parsed as JSON"
            + ("" if acc is None else f", {app['correct']} of {app['judged']} right ({acc:.0%})")
        )
    peak = (result.memory or {}).get("peak_rss_bytes")
    if peak:
        lines.append(f"peak RSS {format_bytes(peak)}")
    load_ms = _median(result, "load_ms")
    if load_ms is not None:
        lines.append(f"load_ms: {load_ms:.1f} ms")
    for line in lines:
        console.print(line, highlight=False, markup=False)
    print_warnings(result, console)
