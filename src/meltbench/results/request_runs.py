"""Assembling the result of a request workload (conversations, documents, the app, server
load): its ``metrics`` and its ``requests`` section, from the request records.

A local or SSH run's records come from the worker (:mod:`meltbench.harness.replay`); a
run against a server's from the HTTP client (:mod:`meltbench.harness.http_load`). Both
go through :func:`request_sections`, so their figures share one definition
(:mod:`meltbench.measure.requests`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from meltbench.measure.requests import analyze_requests, load_metrics
from meltbench.measure.stats import summarize
from meltbench.measure.warnings import BenchWarning

if TYPE_CHECKING:
    from meltbench.api import PreparedRun

__all__ = ["request_label", "request_sections"]


def request_label(prepared: PreparedRun) -> str:
    """The run's ``test``: ``kind:name@version``, plus ``c<N>`` and ``r<rate>`` under
    server load, ``-noreuse`` without prefix reuse."""
    assert prepared.requests is not None
    w = prepared.spec.workload
    label = prepared.requests.label
    if w.concurrency > 1 or w.request_rate is not None:
        label += f"@c{w.concurrency}"
        if w.request_rate is not None:
            label += f"r{w.request_rate:g}"
    if w.no_prefix_reuse:
        label += "-noreuse"
    return label


def request_sections(
    prepared: PreparedRun,
    records: Sequence[dict[str, Any]],
    template: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any], list[BenchWarning]]:
    """``(metrics, requests_section, warnings)`` of a request run.

    ``metrics`` holds the request metrics (:data:`meltbench.measure.requests.REQUEST_METRICS`)
    over the timed successful requests, and the run's ``request_throughput_rps``,
    ``output_tps``, ``failed_requests`` and, with SLOs, ``goodput_rps`` and
    ``slo_attainment``; the app adds ``app_parse_rate`` and ``app_accuracy``.
    """
    from meltbench.measure.goodput import goodput, parse_slo

    assert prepared.requests is not None
    requests = prepared.requests
    w = prepared.spec.workload
    parse = None
    if requests.kind == "app":
        from meltbench.workloads.app import parse_answer

        expected = {(s.id, i): t.expected for s in requests.sessions for i, t in enumerate(s.turns)}

        def parse(record: dict[str, Any]) -> dict[str, Any]:
            key = (str(record["session"]).split("#")[0], int(record["turn"]))
            want = expected.get((record["session"], int(record["turn"])), expected.get(key))
            return parse_answer(record.get("text") or "", want)

    records = [dict(r) for r in records]
    analysis = analyze_requests(records, parse)
    metrics: dict[str, Any] = dict(analysis.metrics)
    load = load_metrics(records)
    for name in ("request_throughput_rps", "output_tps"):
        if load.get(name) is not None:
            metrics[name] = summarize([float(load[name])])  # type: ignore[arg-type]
    metrics["failed_requests"] = summarize([float(analysis.counts["failed"])])
    slo = parse_slo(w.slo) if w.slo else None
    good = None
    if slo is not None:
        timed = [r for r in records if r.get("kind", "timed") == "timed"]
        rows = []
        it = iter(analysis.per_request)
        for r in timed:
            rows.append({"ok": True, **next(it)} if r.get("ok") else {"ok": False})
        good = goodput(rows, slo, float(load["duration_s"] or 0.0) or 1e-9)
        metrics["goodput_rps"] = summarize([float(good["goodput_rps"])])
        metrics["slo_attainment"] = summarize([float(good["slo_attainment"])])
    if analysis.app is not None:
        for key, name in (("parse_rate", "app_parse_rate"), ("accuracy", "app_accuracy")):
            if analysis.app.get(key) is not None:
                metrics[name] = summarize([float(analysis.app[key])])

    warnings: list[BenchWarning] = []
    if template and template.get("warning"):
        warnings.append(
            BenchWarning(
                "chat_template_fallback",
                str(template["warning"]),
                "give a model whose GGUF carries tokenizer.chat_template for its own",
                None,
            )
        )
    if analysis.counts["failed"]:
        first = next((r.get("error") for r in records if not r.get("ok") and r.get("error")), None)
        warnings.append(
            BenchWarning(
                "failed_requests",
                f"{analysis.counts['failed']} of {analysis.counts['requests']} requests "
                f"failed; first: {first}",
                "see requests.records for each error",
                None,
            )
        )
    if requests.output == "fixed":
        short = [
            r for r in records if r.get("ok") and r.get("kind", "timed") == "timed"
            and r.get("n_output") is not None and r["n_output"] < _max_tokens(requests, r)
        ]  # fmt: skip
        if short:
            warnings.append(
                BenchWarning(
                    "output_shorter_than_fixed",
                    f"{len(short)} requests stopped before max_tokens in fixed output mode "
                    "(the server ignored ignore_eos/min_tokens)",
                    "use --output-len natural, or a server that honours ignore_eos",
                    "output_tokens",
                )
            )
    section = {
        "workload": {
            "kind": requests.kind,
            "name": requests.name,
            "version": requests.version,
            "label": requests.label,
            "output": requests.output,
            "prefix_reuse": not w.no_prefix_reuse,
            "sessions": len(requests.sessions),
            "turns": requests.n_requests,
            "info": requests.info,
        },
        "template": template,
        "load": {
            "concurrency": w.concurrency,
            "request_rate": w.request_rate,
            "burstiness": w.burstiness,
            "duration_limit_s": w.duration_s,
            **load,
            "slo": slo,
            "goodput": good,
        },
        "counts": analysis.counts,
        "groups": [
            {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in row.items()}
            for row in analysis.groups
        ],
        "app": analysis.app,
        "records": records,
    }
    return metrics, section, warnings


def _max_tokens(requests: Any, record: dict[str, Any]) -> int:
    sid = str(record["session"]).split("#")[0]
    for s in requests.sessions:
        if s.id == sid and int(record["turn"]) < len(s.turns):
            return int(s.turns[int(record["turn"])].max_tokens)
    return 0
