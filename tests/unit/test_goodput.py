"""Goodput against SLOs, as vLLM's benchmarks/serve.py counts it."""

from __future__ import annotations

import pytest

from meltbench.errors import UsageError
from meltbench.measure.goodput import SLO_METRICS, goodput, meets_slo, parse_slo


def test_parse_slo():
    assert parse_slo("ttft_ms=500,tpot_ms=50") == {"ttft_ms": 500.0, "tpot_ms": 50.0}
    assert parse_slo(" e2e_ms = 2000.5 , itl_ms=1e2, ") == {"e2e_ms": 2000.5, "itl_ms": 100.0}
    assert set(SLO_METRICS) == {"ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "--slo is empty; give METRIC=MS pairs (e2e_ms, itl_ms, tpot_ms, ttft_ms), "
             "e.g. --slo ttft_ms=500,tpot_ms=50"),
        (" , ", "--slo is empty; give METRIC=MS pairs (e2e_ms, itl_ms, tpot_ms, ttft_ms), "
                "e.g. --slo ttft_ms=500,tpot_ms=50"),
        ("ttft_ms=100,speed=3",
         "--slo: unknown metric 'speed'; known: e2e_ms, itl_ms, tpot_ms, ttft_ms"),
        ("ttft=100", "--slo: unknown metric 'ttft' (did you mean ttft_ms?); known: e2e_ms, "
                     "itl_ms, tpot_ms, ttft_ms"),
        ("ttft_ms500",
         "--slo: 'ttft_ms500' has no '='; write METRIC=MS, e.g. --slo ttft_ms=500,tpot_ms=50"),
        ("ttft_ms=fast", "--slo: ttft_ms='fast' is not a number of milliseconds; e.g. --slo "
                         "ttft_ms=500,tpot_ms=50"),
        ("ttft_ms=0", "--slo: ttft_ms must be > 0 ms, got 0"),
        ("tpot_ms=-5", "--slo: tpot_ms must be > 0 ms, got -5"),
        ("tpot_ms=nan", "--slo: tpot_ms must be > 0 ms, got nan"),
        ("ttft_ms=1,ttft_ms=2", "--slo: ttft_ms is given twice; give each metric once"),
    ],
)  # fmt: skip
def test_bad_slos_are_one_line_usage_errors(text, message):
    with pytest.raises(UsageError) as err:
        parse_slo(text)
    assert str(err.value) == message


GOOD = {"ok": True, "ttft_ms": 400.0, "tpot_ms": 40.0, "e2e_ms": 1000.0, "itl_ms": [30.0, 50.0]}
SLO = {"ttft_ms": 500.0, "tpot_ms": 50.0}


def test_meets_slo_every_metric():
    assert meets_slo(GOOD, SLO) is True
    assert meets_slo({**GOOD, "ttft_ms": 500.0}, SLO) is True  # <= holds at the bound
    assert meets_slo({**GOOD, "ttft_ms": 500.1}, SLO) is False
    assert meets_slo({**GOOD, "tpot_ms": 50.5}, SLO) is False
    assert meets_slo(GOOD, {"e2e_ms": 999.0}) is False
    assert meets_slo(GOOD, {"e2e_ms": 1000.0}) is True
    # ours: every inter-token gap within the bound
    assert meets_slo(GOOD, {"itl_ms": 50.0}) is True
    assert meets_slo(GOOD, {"itl_ms": 49.9}) is False
    assert meets_slo({**GOOD, "itl_ms": []}, {"itl_ms": 1.0}) is True
    assert meets_slo(GOOD, {}) is True


def test_meets_slo_missing_values_and_failures():
    # one output token: no TPOT, counted as 0 as vLLM does
    assert meets_slo({**GOOD, "tpot_ms": None}, SLO) is True
    # no first token: a TTFT SLO cannot hold
    assert meets_slo({**GOOD, "ttft_ms": None}, SLO) is False
    assert meets_slo({**GOOD, "ok": False}, SLO) is False
    assert meets_slo({"ok": False}, {}) is False
    with pytest.raises(ValueError, match="unknown SLO metric 'speed'"):
        meets_slo(GOOD, {"speed": 1.0})


def test_goodput_counts():
    requests = [
        GOOD,
        {**GOOD, "ttft_ms": 700.0},
        {**GOOD, "tpot_ms": None},
        {"ok": False},
        {"ttft_ms": 10.0, "tpot_ms": 1.0, "e2e_ms": 20.0, "itl_ms": []},  # no "ok": completed
    ]
    assert goodput(requests, SLO, 4.0) == {
        "good_requests": 3,
        "completed_requests": 4,
        "failed_requests": 1,
        "goodput_rps": 0.75,
        "slo_attainment": 0.6,
    }
    assert goodput([], SLO, 2.0) == {
        "good_requests": 0,
        "completed_requests": 0,
        "failed_requests": 0,
        "goodput_rps": 0.0,
        "slo_attainment": 0.0,
    }
    with pytest.raises(ValueError, match=r"duration_s must be a finite number > 0, got 0\.0"):
        goodput(requests, SLO, 0.0)
