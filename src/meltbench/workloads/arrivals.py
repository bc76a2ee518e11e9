"""Request arrival times of a server-load run, as vLLM's benchmark draws them.

Follows ``get_request`` of vLLM's ``vllm/benchmarks/serve.py`` (``vllm bench serve``
``--request-rate``/``--burstiness``): the gap before each request is drawn from a gamma
distribution of shape ``burstiness`` and scale ``1 / (rate * burstiness)`` (mean
``1 / rate``; ``burstiness = 1`` is a Poisson process, exponential gaps; below 1
burstier, above 1 more even); the send time of request ``i`` is the sum of the gaps up
to and including its own, so the first request too waits one gap; then, as vLLM does
without a ramp-up, every time is rescaled so that the last request is sent at exactly
``n / rate`` s (vLLM: "to close the gap for stabilizing the throughput data from
different random seeds"). ``rate = inf`` sends everything at 0; ``burstiness = inf``
gives even gaps of ``1 / rate``.

The one difference: vLLM draws from numpy's global generator (``np.random.gamma``,
seeded by ``--seed``); this draws from ``random.Random(seed).gammavariate``, so the
times are reproducible from the seed alone but not the same numbers as vLLM's.
"""

from __future__ import annotations

import math
import random

from meltbench.errors import UsageError

__all__ = ["arrival_times"]


def arrival_times(n: int, rate: float, *, burstiness: float = 1.0, seed: int = 0) -> list[float]:
    """Send times of ``n`` requests at ``rate`` requests/s.

    Args:
        n: requests, >= 0.
        rate: mean arrivals per second, > 0; ``math.inf``: all at once.
        burstiness: shape of the gamma-distributed gaps, > 0 (1: Poisson; the gaps'
            coefficient of variation is ``1 / sqrt(burstiness)``); ``math.inf``: even
            gaps.
        seed: seed of the draw (the same seed, the same times).

    Returns:
        ``n`` offsets from the start of the run, s, non-decreasing; the first is one
        (rescaled) gap after 0, the last exactly ``n / rate`` (see the module docstring);
        all 0.0 for an infinite rate.

    Raises:
        UsageError: ``n < 0``, ``rate <= 0`` or NaN, ``burstiness <= 0`` or NaN.
    """
    if n < 0:
        raise UsageError(f"the number of requests must be >= 0, got {n}")
    if not rate > 0:
        raise UsageError(f"--request-rate must be > 0 requests/s, got {rate}")
    if not burstiness > 0:
        raise UsageError(f"--burstiness must be > 0 (1 is a Poisson process), got {burstiness}")
    if n == 0:
        return []
    if math.isinf(rate):
        return [0.0] * n
    rng = random.Random(seed)
    times: list[float] = []
    total = 0.0
    for _ in range(n):
        if math.isinf(burstiness):
            gap = 1.0 / rate
        else:
            gap = rng.gammavariate(burstiness, 1.0 / (rate * burstiness))
        total += gap
        times.append(total)
    if times[-1] != 0:
        factor = (n / rate) / times[-1]
        times = [t * factor for t in times]
    return times
