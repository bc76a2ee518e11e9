"""Arrival times of server load, as vLLM's benchmarks/serve.py get_request draws them."""

from __future__ import annotations

import itertools
import math
import statistics

import pytest

from meltbench.errors import UsageError
from meltbench.workloads.arrivals import arrival_times


def gaps(times: list[float]) -> list[float]:
    return [times[0]] + [b - a for a, b in itertools.pairwise(times)]


def test_seeded_values():
    # one run of random.Random(0).gammavariate, rescaled so the last is at n / rate = 1.5 s
    assert arrival_times(3, 2.0, seed=0) == [0.7296594981383896, 1.285992014361681, 1.5]
    assert arrival_times(5, 2.0, seed=0)[:3] == [
        0.9609488938889204, 1.6936291611412164, 1.9754739635555258]  # fmt: skip
    assert arrival_times(3, 1.0, burstiness=0.5, seed=42) == [
        0.840986371163072, 0.9965704938946661, 3.0]  # fmt: skip
    assert arrival_times(3, 2.0, seed=0) == arrival_times(3, 2.0, seed=0)
    assert arrival_times(3, 2.0, seed=1) != arrival_times(3, 2.0, seed=0)


def test_the_first_request_waits_one_gap_and_the_last_is_at_n_over_rate():
    times = arrival_times(10, 4.0, seed=3)
    assert times[0] > 0.0
    assert times == sorted(times)
    assert times[-1] == pytest.approx(2.5, rel=1e-12)


@pytest.mark.parametrize(("burstiness", "tolerance"), [(0.25, 0.05), (1.0, 0.03), (4.0, 0.03)])
def test_gamma_gaps_statistics(burstiness, tolerance):
    n, rate = 20000, 5.0
    g = gaps(arrival_times(n, rate, burstiness=burstiness, seed=0))
    mean = statistics.fmean(g)
    assert mean == pytest.approx(1 / rate, rel=0.03)
    cv = statistics.pstdev(g) / mean
    assert cv == pytest.approx(1 / math.sqrt(burstiness), rel=tolerance)


def test_poisson_gaps_are_exponential():
    # the median of an exponential gap is ln 2 / rate (the rescaling moves it < 1%)
    g = gaps(arrival_times(20000, 2.0, seed=0))
    assert statistics.median(g) == pytest.approx(math.log(2) / 2.0, rel=0.03)


def test_infinite_rate_and_burstiness_and_no_requests():
    assert arrival_times(3, math.inf) == [0.0, 0.0, 0.0]
    assert arrival_times(3, 2.0, burstiness=math.inf) == [0.5, 1.0, 1.5]
    assert arrival_times(0, 2.0) == []


@pytest.mark.parametrize(
    ("args", "kwargs", "phrase"),
    [
        ((-1, 1.0), {}, "the number of requests must be >= 0, got -1"),
        ((3, 0.0), {}, "--request-rate must be > 0 requests/s, got 0.0"),
        ((3, -2.0), {}, "--request-rate must be > 0 requests/s, got -2.0"),
        ((3, math.nan), {}, "--request-rate must be > 0 requests/s, got nan"),
        (
            (3, 1.0),
            {"burstiness": 0.0},
            "--burstiness must be > 0 (1 is a Poisson process), got 0.0",
        ),
    ],
)
def test_bad_arguments(args, kwargs, phrase):
    with pytest.raises(UsageError) as err:
        arrival_times(*args, **kwargs)
    assert str(err.value) == phrase
