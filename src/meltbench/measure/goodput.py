"""Goodput: the completed requests per second that met every service-level objective.

Follows vLLM's ``vllm/benchmarks/serve.py`` (``calculate_metrics`` with
``goodput_config_dict``, after DistServe, https://arxiv.org/abs/2401.09670): a request
is good when it completed and every SLO given holds: ``ttft <= slo``, ``tpot <= slo``,
``e2el <= slo`` (vLLM: ``all(s >= r ...)``); a request with at most one output token has
no TPOT and vLLM counts it as 0 for goodput (it meets any TPOT SLO); goodput = good
requests / the benchmark's duration, req/s. vLLM's SLO names are ``ttft``, ``tpot``,
``e2el``; here they carry their unit, ``ttft_ms``, ``tpot_ms``, ``e2e_ms`` (the metrics
of :mod:`meltbench.measure.requests`).

Ours, not vLLM's (which has no ITL objective): ``itl_ms`` holds when every inter-token
(inter-chunk, over HTTP) gap of the request is ``<= slo``; a request without gaps meets
it. Also ours: a completed request whose TTFT or E2E is unknown (None) does not meet an
SLO on that metric, and ``slo_attainment`` = good / all requests, failed ones included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from meltbench.errors import UsageError

__all__ = ["SLO_METRICS", "goodput", "meets_slo", "parse_slo"]

#: the metrics an SLO may bound, all in ms
SLO_METRICS = frozenset({"ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"})
_EXAMPLE = "e.g. --slo ttft_ms=500,tpot_ms=50"
_VLLM_NAMES = {"ttft": "ttft_ms", "tpot": "tpot_ms", "itl": "itl_ms", "e2el": "e2e_ms"}


def parse_slo(text: str) -> dict[str, float]:
    """SLOs from ``METRIC=MS`` pairs separated by commas (``ttft_ms=500,tpot_ms=50``).

    Args:
        text: the pairs; spaces around names and values are ignored, as is an empty
            item (a trailing comma).

    Returns:
        ``{metric: ms}``, metrics from :data:`SLO_METRICS`.

    Raises:
        UsageError: one line: an empty string, a pair without ``=``, an unknown metric
            (the known ones named), a metric given twice, a value that is not a number
            or is not > 0.
    """
    known = ", ".join(sorted(SLO_METRICS))
    slo: dict[str, float] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise UsageError(f"--slo: {item.strip()!r} has no '='; write METRIC=MS, {_EXAMPLE}")
        name, _, value = (part.strip() for part in item.partition("="))
        if name not in SLO_METRICS:
            hint = f" (did you mean {_VLLM_NAMES[name]}?)" if name in _VLLM_NAMES else ""
            raise UsageError(f"--slo: unknown metric {name!r}{hint}; known: {known}")
        if name in slo:
            raise UsageError(f"--slo: {name} is given twice; give each metric once")
        try:
            ms = float(value)
        except ValueError:
            raise UsageError(
                f"--slo: {name}={value!r} is not a number of milliseconds; {_EXAMPLE}"
            ) from None
        if not ms > 0:
            raise UsageError(f"--slo: {name} must be > 0 ms, got {value}")
        slo[name] = ms
    if not slo:
        raise UsageError(f"--slo is empty; give METRIC=MS pairs ({known}), {_EXAMPLE}")
    return slo


def meets_slo(
    request_metrics: dict[str, float | list[float] | None], slo: dict[str, float]
) -> bool:
    """Whether one request met every SLO (see the module docstring for each metric).

    Args:
        request_metrics: the request's metrics (:func:`meltbench.measure.requests.
            request_metrics`): ``ttft_ms``, ``tpot_ms``, ``e2e_ms`` in ms or None,
            ``itl_ms`` a list of ms; an ``ok`` key that is false marks a failed request.
        slo: ``{metric: ms}`` (:func:`parse_slo`); empty: every completed request is good.

    Returns:
        False for a failed request; else True when every SLO holds.

    Raises:
        ValueError: an SLO metric not in :data:`SLO_METRICS`.
    """
    if "ok" in request_metrics and not request_metrics["ok"]:
        return False
    for name, bound in slo.items():
        if name not in SLO_METRICS:
            raise ValueError(
                f"unknown SLO metric {name!r}; known: {', '.join(sorted(SLO_METRICS))}"
            )
        value = request_metrics.get(name)
        if name == "itl_ms":
            gaps = value if isinstance(value, list | tuple) else ([] if value is None else [value])
            if any(not float(g) <= bound for g in gaps):
                return False
        elif name == "tpot_ms":
            # vLLM: a request of <= 1 output token has TPOT 0 for goodput
            if value is not None and not float(value) <= bound:  # type: ignore[arg-type]
                return False
        elif value is None or not float(value) <= bound:  # type: ignore[arg-type]
            return False
    return True


def goodput(
    requests: Sequence[dict], slo: dict[str, float], duration_s: float
) -> dict[str, float | int]:
    """Goodput and SLO attainment of a run's requests.

    Args:
        requests: one dict a request: ``ok`` (False: failed; absent: completed) and its
            metrics as in :func:`meets_slo`.
        slo: ``{metric: ms}``.
        duration_s: the run's span, s (vLLM's benchmark duration), > 0.

    Returns:
        ``good_requests``, ``completed_requests``, ``failed_requests`` (counts),
        ``goodput_rps`` = good / duration_s (vLLM's request goodput, req/s),
        ``slo_attainment`` = good / all requests, failed included (0.0 for none).

    Raises:
        ValueError: ``duration_s`` not > 0, an unknown SLO metric.
    """
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(f"duration_s must be a finite number > 0, got {duration_s}")
    completed = sum(1 for r in requests if r.get("ok", True))
    good = sum(1 for r in requests if r.get("ok", True) and meets_slo(r, slo))
    return {
        "good_requests": good,
        "completed_requests": completed,
        "failed_requests": len(requests) - completed,
        "goodput_rps": good / duration_s,
        "slo_attainment": good / len(requests) if requests else 0.0,
    }
