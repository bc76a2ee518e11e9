"""From raw repetitions to summaries, the cold run, fidelity ratios and warnings (pure).

Input is the list of ``rep`` events a worker emitted (warmup and timed); nothing here
touches a clock, a process or a file, so every number can be checked exactly in tests.

- Per-request metrics (``ttft_ms``, ``prefill_tps``, ``decode_tps``, ``tpot_ms``,
  ``e2e_ms``) are summarized over the timed repetitions, one sample per repetition.
- ``itl_ms`` pools every inter-token gap of every timed repetition; its summary keeps
  how many gaps each repetition gave (``groups``), since the repetition, not the gap,
  is the unit of replication when two runs are compared.
- The engine's own rates are ``n_p_eval / t_p_eval`` and ``n_eval / t_eval`` per
  repetition (llama.cpp's perf context), summarized the same way; ``fidelity`` is the
  ratio of our median to the engine's median.
- ``sample_ms`` is the time to choose one token (the greedy argmax), per repetition
  ``t_sample_ms / n_sample`` from the engine's counters, where the engine reports them.
- ``cold`` holds the metrics of the very first request of the worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from meltbench.measure.stats import Summary, summarize
from meltbench.measure.timing import RequestMetrics, request_metrics
from meltbench.measure.warnings import BenchWarning, check_agreement, check_repetitions

__all__ = ["Analysis", "analyze_reps", "engine_rates"]

_PER_REQUEST = ("ttft_ms", "prefill_tps", "decode_tps", "tpot_ms", "e2e_ms")


@dataclass
class Analysis:
    """Derived numbers of one run (see module docstring)."""

    metrics: dict[str, Summary] = field(default_factory=dict)
    cold: dict[str, float | None] = field(default_factory=dict)
    fidelity: dict[str, float | None] = field(default_factory=dict)
    warnings: list[BenchWarning] = field(default_factory=list)


def engine_rates(counters: dict[str, float] | None) -> tuple[float | None, float | None]:
    """The engine's own (prefill tok/s, decode tok/s) from llama.cpp-style counters.

    Uses ``n_p_eval / (t_p_eval_ms / 1000)`` and ``n_eval / (t_eval_ms / 1000)``;
    each is None when its counter is missing or zero.
    """
    if not counters:
        return None, None

    def rate(n_key: str, t_key: str) -> float | None:
        n, t = counters.get(n_key), counters.get(t_key)
        return n * 1000.0 / t if n and t else None

    return rate("n_p_eval", "t_p_eval_ms"), rate("n_eval", "t_eval_ms")


def _metrics_of(rep: dict[str, Any], n_prompt: int) -> RequestMetrics:
    return request_metrics(rep["t_start_ns"], rep["token_ns"], n_prompt)


def _summaries(
    values: dict[str, list[float]], groups: dict[str, list[int]] | None = None
) -> dict[str, Summary]:
    groups = groups or {}
    return {name: summarize(vals, groups.get(name)) for name, vals in values.items() if vals}


def analyze_reps(
    reps: Sequence[dict[str, Any]],
    n_prompt: int,
    load_ns: int | None = None,
    peak_rss_bytes: int | None = None,
) -> Analysis:
    """Summaries, cold-run metrics, fidelity ratios and warnings of a run's repetitions.

    Args:
        reps: ``rep`` events (``kind``, ``t_start_ns``, ``token_ns``, ``counters``), in
            order; only ``kind == "timed"`` ones are summarized.
        n_prompt: prompt tokens per request.
        load_ns: model load time, ns (becomes ``load_ms``, n = 1).
        peak_rss_bytes: worker peak RSS, bytes (becomes ``peak_rss_bytes``, n = 1).

    Raises:
        ValueError: if a repetition's timestamps are inconsistent (see
            :func:`meltbench.measure.timing.request_metrics`).
    """
    result = Analysis()
    values: dict[str, list[float]] = {name: [] for name in _PER_REQUEST}
    values["itl_ms"] = []
    itl_groups: list[int] = []
    values["engine_prefill_tps"] = []
    values["engine_decode_tps"] = []
    values["sample_ms"] = []
    for rep in reps:
        if rep.get("kind") != "timed":
            continue
        m = _metrics_of(rep, n_prompt)
        for name in _PER_REQUEST:
            value = getattr(m, name)
            if value is not None:
                values[name].append(value)
        values["itl_ms"].extend(m.itl_ms)
        if m.itl_ms:
            itl_groups.append(len(m.itl_ms))
        eng_prefill, eng_decode = engine_rates(rep.get("counters"))
        if eng_prefill is not None:
            values["engine_prefill_tps"].append(eng_prefill)
        if eng_decode is not None:
            values["engine_decode_tps"].append(eng_decode)
        counters = rep.get("counters") or {}
        if counters.get("n_sample"):
            values["sample_ms"].append(counters["t_sample_ms"] / counters["n_sample"])
    if load_ns is not None:
        values["load_ms"] = [load_ns / 1e6]
    if peak_rss_bytes is not None:
        values["peak_rss_bytes"] = [float(peak_rss_bytes)]
    result.metrics = _summaries(values, {"itl_ms": itl_groups})

    if reps:
        first = _metrics_of(reps[0], n_prompt)
        result.cold = {name: getattr(first, name) for name in _PER_REQUEST}

    for ours, theirs in (
        ("prefill_tps", "engine_prefill_tps"),
        ("decode_tps", "engine_decode_tps"),
    ):
        a, b = result.metrics.get(ours), result.metrics.get(theirs)
        result.fidelity[ours] = a.median / b.median if a and b and b.median else None

    result.warnings = check_repetitions(result.metrics, values["e2e_ms"])
    result.warnings += check_agreement(result.fidelity)
    return result
