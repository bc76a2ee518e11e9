"""Bandwidth results: which figure a run uses, JSON round trip, the per-target cache."""

from __future__ import annotations

import pytest

from meltbench.measure.bandwidth import (
    KERNELS,
    BandwidthResult,
    cached_bandwidth,
    measure_bandwidth,
    store_bandwidth,
)


def result(**by_threads: float) -> BandwidthResult:
    return BandwidthResult(results={"read": {int(k[1:]): v for k, v in by_threads.items()}})


def test_best_at_thread_count():
    r = result(t1=10e9, t2=18e9, t4=20e9)
    assert r.best() == 20e9
    assert r.best("read", 2) == 18e9
    assert r.best("read", 3) == 18e9  # the largest measured count not above 3
    assert r.best("read", 8) == 20e9
    assert result(t2=18e9).best("read", 1) == 18e9  # nothing below: the smallest measured
    assert r.best("copy") is None


def test_round_trip_keeps_int_thread_counts():
    r = result(t1=1.5e9, t2=3e9)
    r.size_bytes, r.trials = 1024, 3
    back = BandwidthResult.from_dict(r.to_dict())
    assert back.results == {"read": {1: 1.5e9, 2: 3e9}}
    assert (back.size_bytes, back.trials) == (1024, 3)
    with pytest.raises(ValueError):
        BandwidthResult.from_dict({"size_bytes": 1})


def test_cache_per_target_and_merge(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cached_bandwidth("local") is None
    store_bandwidth("local", result(t1=10e9))
    store_bandwidth("local", result(t2=18e9))  # merged with the 1-thread figure
    store_bandwidth("ssh://pi@board", result(t4=4e9))
    assert cached_bandwidth("local").results == {"read": {1: 10e9, 2: 18e9}}
    assert cached_bandwidth("ssh://pi@board").best() == 4e9
    store_bandwidth("local", result(t2=17e9), merge=False)
    assert cached_bandwidth("local").results == {"read": {2: 17e9}}
    (tmp_path / "meltbench" / "bandwidth.json").write_text("{not json")
    assert cached_bandwidth("local") is None


def test_measure_small_arrays_counts_bytes_per_kernel():
    r = measure_bandwidth([1, 2], size_bytes=4 * 1024**2, trials=1)
    assert set(r.results) == set(KERNELS)
    assert all(set(by) == {1, 2} and min(by.values()) > 0 for by in r.results.values())
    assert r.size_bytes == 4 * 1024**2
    with pytest.raises(ValueError, match="unknown bandwidth kernel"):
        measure_bandwidth([1], size_bytes=1024, kernels=("write",))
    with pytest.raises(ValueError):
        measure_bandwidth([0], size_bytes=1024)
