"""Latency metrics derived from raw per-token timestamps (pure code).

One request is recorded as a start timestamp and one timestamp per generated token,
all in nanoseconds from one monotonic clock on the device that runs the model
(``time.perf_counter_ns``). From those, with the definitions of :mod:`meltbench.metrics`:

- ``ttft_ms``     = first token - request start
- ``prefill_tps`` = n_prompt / prefill time, prefill time = request start until the
  first token's logits are available (for local engines this is the TTFT)
- ``decode_tps``  = (n_gen - 1) / (last token - first token)
- ``itl_ms``      = every gap between consecutive generated tokens
- ``tpot_ms``     = (e2e - ttft) / (n_gen - 1)
- ``e2e_ms``      = last token - request start

Metrics that need two or more tokens (``decode_tps``, ``tpot_ms``, ``itl_ms``) are
``None`` / empty for n_gen == 1, never a made-up 0.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["RequestMetrics", "request_metrics"]

_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class RequestMetrics:
    """Metrics of one request (one repetition). Units are in the names."""

    n_prompt: int
    n_gen: int
    ttft_ms: float
    prefill_tps: float
    decode_tps: float | None
    itl_ms: tuple[float, ...]
    tpot_ms: float | None
    e2e_ms: float


def request_metrics(t_start_ns: int, token_ns: Sequence[int], n_prompt: int) -> RequestMetrics:
    """Derive the request's latency metrics from its raw timestamps.

    Args:
        t_start_ns: request start (prompt submitted), ns.
        token_ns: time each generated token became available, ns, in generation order;
            at least one.
        n_prompt: number of prompt tokens processed in this request (>= 1).

    Raises:
        ValueError: with no tokens, n_prompt < 1, or timestamps that go backwards
            (a token before the start, or before the previous token) or a first token
            at the very start instant (zero prefill time).
    """
    if not token_ns:
        raise ValueError("a request needs at least one generated token timestamp")
    if n_prompt < 1:
        raise ValueError(f"n_prompt must be >= 1, got {n_prompt}")
    if token_ns[0] <= t_start_ns:
        raise ValueError("first token timestamp must be after the request start")
    itl_ns = [b - a for a, b in itertools.pairwise(token_ns)]
    if any(gap < 0 for gap in itl_ns):
        raise ValueError("token timestamps must not go backwards")
    n_gen = len(token_ns)
    ttft_ns = token_ns[0] - t_start_ns
    e2e_ns = token_ns[-1] - t_start_ns
    decode_tps: float | None = None
    tpot_ms: float | None = None
    if n_gen >= 2:
        decode_ns = token_ns[-1] - token_ns[0]
        decode_tps = (n_gen - 1) * _NS_PER_S / decode_ns if decode_ns > 0 else None
        tpot_ms = (e2e_ns - ttft_ns) / (n_gen - 1) / _NS_PER_MS
    return RequestMetrics(
        n_prompt=n_prompt,
        n_gen=n_gen,
        ttft_ms=ttft_ns / _NS_PER_MS,
        prefill_tps=n_prompt * _NS_PER_S / ttft_ns,
        decode_tps=decode_tps,
        itl_ms=tuple(gap / _NS_PER_MS for gap in itl_ns),
        tpot_ms=tpot_ms,
        e2e_ms=e2e_ns / _NS_PER_MS,
    )
