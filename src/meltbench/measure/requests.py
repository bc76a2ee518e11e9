"""Metrics of request workloads, from each request's timestamps and token counts.

A record (one per turn; :mod:`meltbench.harness.replay` on a local engine,
:mod:`meltbench.harness.http_load` against a server) holds ``t_start_ns`` (before the
chat template and tokenizer, or before the HTTP body is built), ``t_sent_ns`` (the prompt
handed to the engine / the request written), ``token_ns`` (each generated token locally;
each streamed chunk that carried text over HTTP), ``t_end_ns`` (the reply complete, as
text), and ``n_input``, ``n_cached``, ``n_output`` (the engine's tokenizer locally, the
server's ``usage`` over HTTP: never one chunk = one token).

Per request (definitions as in vLLM's ``benchmarks/serve.py`` ``calculate_metrics``):

- ``ttft_ms`` = first token (chunk) - ``t_sent``;
- ``e2e_ms`` = ``t_end`` - ``t_sent`` (vLLM's e2el);
- ``tpot_ms`` = (e2e - ttft) / (n_output - 1), for n_output >= 2;
- ``itl_ms``: the gaps between consecutive tokens (locally) or chunks (HTTP; a chunk may
  hold several tokens, so these are per chunk, as vLLM's);
- ``decode_tps`` = (n_output - 1) / (last token - first token);
- ``prefill_tps`` = (n_input - n_cached) / ttft (the tokens actually processed);
- ``prepare_ms`` = ``t_sent`` - ``t_start`` (template and tokenizer, or building the body);
- ``app_e2e_ms`` (the app): ``t_end`` - ``t_start`` plus the time to parse the answer.

Over a run: every metric summarized over the timed, successful requests; per group
(``summarise@1024``, ``conversation``) and turn index the same, for the tables; and the
load figures over the run's span (first ``t_start`` to last ``t_end``): request throughput,
output tokens/s, failed requests and, against SLOs, goodput
(:mod:`meltbench.measure.goodput`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from meltbench.measure.stats import Summary, summarize

__all__ = [
    "REQUEST_METRICS",
    "RequestAnalysis",
    "analyze_requests",
    "load_metrics",
    "request_metrics",
]

#: per-request metrics, in table order
REQUEST_METRICS = (
    "ttft_ms",
    "prefill_tps",
    "decode_tps",
    "tpot_ms",
    "itl_ms",
    "e2e_ms",
    "prepare_ms",
    "app_e2e_ms",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
)


def request_metrics(record: dict[str, Any]) -> dict[str, Any]:
    """The metrics of one successful request record (see the module docstring).

    Returns:
        ``{name: float | list[float] | None}`` for :data:`REQUEST_METRICS` (``itl_ms`` a
        list; ``app_e2e_ms`` only when the record has ``parse_ns``); None where the
        request does not define it (one output token: no decode rate).

    Raises:
        KeyError: a record without its timestamps.
    """
    t_sent, t_end = int(record["t_sent_ns"]), int(record["t_end_ns"])
    token_ns = [int(t) for t in record.get("token_ns") or ()]
    n_input = record.get("n_input")
    n_cached = record.get("n_cached") or 0
    n_output = record.get("n_output")
    if n_output is None and record.get("counts") == "engine":
        n_output = len(token_ns)
    ttft = (token_ns[0] - t_sent) / 1e6 if token_ns else None
    e2e = (t_end - t_sent) / 1e6
    out: dict[str, Any] = {name: None for name in REQUEST_METRICS}
    out.update(
        ttft_ms=ttft,
        e2e_ms=e2e,
        prepare_ms=(t_sent - int(record["t_start_ns"])) / 1e6,
        itl_ms=[(b - a) / 1e6 for a, b in itertools.pairwise(token_ns)],
        input_tokens=None if n_input is None else float(n_input),
        cached_tokens=None if record.get("n_cached") is None else float(n_cached),
        output_tokens=None if n_output is None else float(n_output),
    )
    if ttft is not None and ttft > 0 and n_input is not None and n_input - n_cached > 0:
        out["prefill_tps"] = (n_input - n_cached) / (ttft / 1e3)
    if n_output is not None and n_output >= 2 and ttft is not None:
        out["tpot_ms"] = (e2e - ttft) / (n_output - 1)
        span = token_ns[-1] - token_ns[0] if len(token_ns) >= 2 else 0
        if span > 0:
            out["decode_tps"] = (n_output - 1) / (span / 1e9)
    if record.get("parse_ns") is not None:
        out["app_e2e_ms"] = (t_end - int(record["t_start_ns"]) + int(record["parse_ns"])) / 1e6
    return out


def _summaries(rows: Sequence[dict[str, Any]]) -> dict[str, Summary]:
    out: dict[str, Summary] = {}
    for name in REQUEST_METRICS:
        if name == "itl_ms":
            lists = [r[name] for r in rows if r.get(name)]
            values = [v for gaps in lists for v in gaps]
            if values:
                out[name] = summarize(values, groups=[len(g) for g in lists])
            continue
        values = [r[name] for r in rows if r.get(name) is not None and math.isfinite(r[name])]
        if values:
            out[name] = summarize(values)
    return out


@dataclass
class RequestAnalysis:
    """What :func:`analyze_requests` found.

    Attributes:
        metrics: every metric over the timed, successful requests.
        groups: rows of the per-group table: ``{"group", "turn", "n", "failed",
            metric: Summary, ...}``, in first-seen order.
        per_request: each timed record's metrics (same order as the records).
        counts: ``requests``, ``ok``, ``failed``, ``warmup``.
        app: for the app workload: ``parsed`` and ``correct`` counts and rates.
    """

    metrics: dict[str, Summary] = field(default_factory=dict)
    groups: list[dict[str, Any]] = field(default_factory=list)
    per_request: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    app: dict[str, Any] | None = None


def analyze_requests(
    records: Sequence[dict[str, Any]],
    parse: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> RequestAnalysis:
    """Summarize request records (warmups left out of every figure).

    Args:
        records: the run's records, in order.
        parse: for the app: called on each successful timed record, returns
            ``{"parsed": bool, "correct": bool | None, ...}``; its run time is added to
            the record as ``parse_ns`` (so ``app_e2e_ms`` includes parsing), its answer
            as ``answer``.

    Raises:
        KeyError: a successful record without its timestamps.
    """
    import time

    timed = [r for r in records if r.get("kind", "timed") == "timed"]
    ok = [r for r in timed if r.get("ok")]
    app = None
    if parse is not None:
        parsed = correct = judged = 0
        for record in ok:
            t0 = time.perf_counter_ns()
            verdict = parse(record)
            record["parse_ns"] = time.perf_counter_ns() - t0
            record["answer"] = verdict
            parsed += bool(verdict.get("parsed"))
            if verdict.get("correct") is not None:
                judged += 1
                correct += bool(verdict["correct"])
        app = {
            "requests": len(ok),
            "parsed": parsed,
            "parse_rate": parsed / len(ok) if ok else None,
            "judged": judged,
            "correct": correct,
            "accuracy": correct / judged if judged else None,
        }
    rows = [request_metrics(r) for r in ok]
    analysis = RequestAnalysis(
        metrics=_summaries(rows),
        per_request=rows,
        counts={
            "requests": len(timed),
            "ok": len(ok),
            "failed": len(timed) - len(ok),
            "warmup": len(records) - len(timed),
        },
        app=app,
    )
    keys: list[tuple[str, int]] = []
    for r in timed:
        key = (str(r.get("group")), int(r.get("turn") or 0))
        if key not in keys:
            keys.append(key)
    for group, turn in keys:
        mine = [
            (r, m)
            for r, m in zip(ok, rows, strict=True)
            if r.get("group") == group and int(r.get("turn") or 0) == turn
        ]
        failed = sum(
            1
            for r in timed
            if not r.get("ok") and r.get("group") == group and int(r.get("turn") or 0) == turn
        )
        row: dict[str, Any] = {"group": group, "turn": turn, "n": len(mine), "failed": failed}
        row.update(_summaries([m for _, m in mine]))
        analysis.groups.append(row)
    return analysis


def load_metrics(records: Sequence[dict[str, Any]]) -> dict[str, float | int | None]:
    """Throughput of a run's timed requests over its span (first ``t_start_ns`` or
    scheduled time to last ``t_end_ns``), as vLLM's ``bench serve`` reports it.

    Returns:
        ``duration_s``, ``completed``, ``failed``, ``request_throughput_rps`` (completed
        / duration), ``output_tps`` (sum of n_output / duration), ``input_tps`` (sum of
        n_input / duration); None figures when nothing completed.
    """
    timed = [r for r in records if r.get("kind", "timed") == "timed"]
    ok = [r for r in timed if r.get("ok")]
    starts = [int(r["t_start_ns"]) for r in timed if r.get("t_start_ns") is not None]
    starts += [int(r["t_scheduled_ns"]) for r in timed if r.get("t_scheduled_ns") is not None]
    ends = [int(r["t_end_ns"]) for r in timed if r.get("t_end_ns") is not None]
    out: dict[str, float | int | None] = {
        "duration_s": None,
        "completed": len(ok),
        "failed": len(timed) - len(ok),
        "request_throughput_rps": None,
        "output_tps": None,
        "input_tps": None,
    }
    if not ok or not starts or not ends:
        return out
    duration = (max(ends) - min(starts)) / 1e9
    if duration <= 0:
        return out
    out["duration_s"] = duration
    out["request_throughput_rps"] = len(ok) / duration
    out["output_tps"] = sum(int(r.get("n_output") or 0) for r in ok) / duration
    out["input_tps"] = sum(int(r.get("n_input") or 0) for r in ok) / duration
    return out
