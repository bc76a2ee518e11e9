"""The max-context search (meltbench.sweep.search) with fake probes of known boundary.

Expected probe sequences are worked out by hand from the rules: hi first, then lo, then
midpoints sqrt(ok * bad) while bad > 2 * ok and (ok + bad) / 2 after, each rounded to the
nearest multiple of ``multiple_of`` (halves up) strictly between ok and bad.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from meltbench.errors import UsageError
from meltbench.sweep.search import (
    ContextSearch,
    Probe,
    context_probe,
    find_max_context,
    is_out_of_memory,
)
from tests.helpers import make_result


def fake(boundary: int, log: list[int] | None = None):
    """A probe that succeeds iff n <= boundary, recording what it was asked."""

    def probe(n: int) -> bool:
        if log is not None:
            log.append(n)
        return n <= boundary

    return probe


def test_exact_boundary_multiple_of_1():
    s = find_max_context(fake(5000), 1000, 8000)
    assert isinstance(s, ContextSearch)
    assert (s.largest_ok, s.smallest_failed, s.converged) == (5000, 5001, True)
    # 2828 = round(sqrt(1000 * 8000)), 4756 = round(sqrt(2828 * 8000)); then 8000 <= 2 * 4756,
    # so arithmetic: 6378 = (4756 + 8000) / 2, ...
    assert s.probes == [
        (8000, False, None),
        (1000, True, None),
        (2828, True, None),
        (4756, True, None),
        (6378, False, None),
        (5567, False, None),
        (5162, False, None),
        (4959, True, None),
        (5061, False, None),
        (5010, False, None),
        (4985, True, None),
        (4998, True, None),
        (5004, False, None),
        (5001, False, None),
        (5000, True, None),
    ]
    assert s.run_ids == [None] * 15
    assert s.summary == "largest n_prompt that runs: 5000 (5001 failed), 15 probes"


def test_multiple_of_rounds_every_probe_between_the_bounds():
    s = find_max_context(fake(5000), 512, 16384, multiple_of=256)
    # sqrt(512 * 16384) = 2896.3 -> 2816; sqrt(2816 * 16384) = 6792.4 -> 6912;
    # sqrt(2816 * 6912) = 4411.8 -> 4352; (4352 + 6912) / 2 = 5632; 4992 -> 5120; 4736 -> 4864
    assert [p.n for p in s.probes] == [16384, 512, 2816, 6912, 4352, 5632, 5120, 4864]
    assert [p.ok for p in s.probes] == [False, True, True, False, True, False, False, True]
    assert all(p.n % 256 == 0 for p in s.probes)
    assert (s.largest_ok, s.smallest_failed, s.converged) == (4864, 5120, True)
    assert s.multiple_of == 256
    assert s.summary == "largest n_prompt that runs: 4864 (5120 failed), 8 probes"


def test_bounds_that_are_not_multiples_are_tried_as_given():
    s = find_max_context(fake(700), 100, 1000, multiple_of=256)
    # lowest multiple above 100 is 256, highest below 1000 is 768
    assert [p.n for p in s.probes] == [1000, 100, 256, 512, 768]
    assert (s.largest_ok, s.smallest_failed, s.converged) == (512, 768, True)


def test_lo_failing_means_no_context_fits():
    log: list[int] = []
    s = find_max_context(fake(100, log), 512, 4096, max_probes=8)
    assert log == [4096, 512]
    assert s.largest_ok is None and s.smallest_failed == 512 and s.converged
    assert s.summary == "no context fits: 512 failed, 2 probes"


def test_hi_succeeding_stops_at_once():
    log: list[int] = []
    s = find_max_context(fake(10_000, log), 512, 4096)
    assert log == [4096]
    assert s.probes == [(4096, True, None)]
    assert (s.largest_ok, s.smallest_failed, s.converged) == (4096, None, True)
    assert s.summary == (
        "largest n_prompt that runs: >= 4096 (the upper bound tried; nothing failed), 1 probe"
    )


def test_lo_equal_hi():
    assert find_max_context(fake(10), 64, 64).summary == "no context fits: 64 failed, 1 probe"
    s = find_max_context(fake(64), 64, 64)
    assert (s.largest_ok, s.smallest_failed, s.converged) == (64, None, True)


def test_max_probes_cuts_the_search_short():
    log: list[int] = []
    s = find_max_context(fake(5000, log), 1000, 8000, max_probes=8)
    assert log == [8000, 1000, 2828, 4756, 6378, 5567, 5162, 4959]
    assert len(s.probes) == 8
    assert (s.largest_ok, s.smallest_failed, s.converged) == (4959, 5162, False)
    assert (
        s.summary
        == "largest n_prompt that runs: >= 4959 (5162 failed), not converged after 8 probes"
    )


def test_max_probes_1_with_hi_failing():
    s = find_max_context(fake(5000), 1000, 8000, max_probes=1)
    assert s.probes == [(8000, False, None)]
    assert (s.largest_ok, s.smallest_failed, s.converged) == (None, 8000, False)
    assert s.summary == "no n_prompt tried runs (8000 failed), not converged after 1 probe"


def test_run_results_give_causes_run_ids_and_the_summary():
    cause = "MemoryError: Unable to allocate 512. MiB for an array with shape (512, 262144)"
    results = {}

    def probe(n: int):
        result = make_result() if n <= 6144 else make_result("failed", failure=cause)
        results[n] = result
        return result

    s = find_max_context(probe, 2048, 8192, multiple_of=1024)
    # sqrt(2048 * 8192) = 4096; then (4096 + 8192) / 2 = 6144; then 7168
    assert [p.n for p in s.probes] == [8192, 2048, 4096, 6144, 7168]
    assert s.probes[0] == Probe(8192, False, cause)
    assert s.probes[3] == Probe(6144, True, None)
    assert s.run_ids == [results[n].run_id for n in (8192, 2048, 4096, 6144, 7168)]
    assert s.failure_cause == cause
    assert s.summary == f"largest n_prompt that runs: 6144 (7168 failed: {cause}), 5 probes"


def test_long_causes_are_cut_in_the_summary():
    cause = "worker exited with status 1; last stderr: " + "x" * 100
    s = find_max_context(lambda n: make_result("failed", failure=cause), 64, 128)
    assert s.summary == (
        "no context fits: 64 failed: worker exited with status 1; last stderr: "
        + "x" * 35  # the cause is cut to 77 characters + "..." (80)
        + "..., 2 probes"
    )


def test_bad_arguments():
    for lo, hi, kw in [
        (0, 10, {}),
        (10, 9, {}),
        (1, 10, {"multiple_of": 0}),
        (1, 10, {"max_probes": 0}),
    ]:
        with pytest.raises(ValueError):
            find_max_context(fake(5), lo, hi, **kw)


def test_probe_exceptions_propagate():
    def probe(n: int) -> bool:
        raise UsageError("engine 'nope' is not installed")

    with pytest.raises(UsageError, match="nope"):
        find_max_context(probe, 1, 10)


def test_is_out_of_memory():
    assert is_out_of_memory("MemoryError: Unable to allocate 512. MiB for an array")
    assert is_out_of_memory("ValueError: Failed to create llama_context")
    assert is_out_of_memory(
        "worker exited with status 1; last stderr: libgomp: Thread creation failed: "
        "Resource temporarily unavailable"
    )
    assert is_out_of_memory("worker killed by SIGKILL (probably out of memory; see dmesg)")
    assert is_out_of_memory("RuntimeError: CUDA out of memory. Tried to allocate 2 GiB")
    assert not is_out_of_memory("timed out after 60 s; raise --timeout or shorten the workload")
    assert not is_out_of_memory("worker crashed with SIGSEGV")
    assert not is_out_of_memory(None)
    assert not is_out_of_memory("")


def test_context_probe_builds_one_run_per_probe(monkeypatch):
    calls = []

    def fake_run(spec, *, db=None):
        calls.append((spec, db))
        return make_result()

    monkeypatch.setattr("meltbench.api.run", fake_run)
    seen = []
    probe = context_probe(
        {"n_gen": 4, "n_depth": 16, "threads": 2},
        memory_limit_bytes=3 * 2**30,
        timeout_s=60.0,
        db=Path("x.db"),
        on_result=seen.append,
    )
    result = probe(1000)
    spec, db = calls[0]
    assert db == Path("x.db")
    assert seen == [result]
    assert spec.workload.n_prompt == 1000
    assert spec.engine.ctx == 1020 and spec.n_ctx == 1020
    assert (spec.workload.reps, spec.workload.warmup) == (1, 0)
    assert spec.engine.threads == 2
    assert spec.memory_limit_bytes == 3 * 2**30 and spec.timeout_s == 60.0
    probe(64)
    assert calls[1][0].engine.ctx == 84


def test_context_probe_defaults_and_overrides(monkeypatch):
    specs = []
    monkeypatch.setattr("meltbench.api.run", lambda spec, *, db=None: specs.append(spec))
    context_probe({"reps": 3}, memory_limit_bytes=None, timeout_s=None, db=None)(256)
    spec = specs[0]
    assert spec.workload.reps == 3 and spec.workload.warmup == 0
    assert spec.engine.ctx == 256 + 128  # n_gen defaults to 128
    assert spec.memory_limit_bytes is None and spec.timeout_s is None


def test_context_probe_refuses_bad_options_at_once(monkeypatch):
    monkeypatch.setattr("meltbench.api.run", lambda *a, **k: pytest.fail("ran"))
    with pytest.raises(UsageError, match="sets n_prompt, ctx itself"):
        context_probe({"n_prompt": 5, "ctx": 9}, memory_limit_bytes=None, timeout_s=None, db=None)
    with pytest.raises(UsageError, match="unknown run option 'nope'"):
        context_probe({"nope": 1}, memory_limit_bytes=None, timeout_s=None, db=None)
    with pytest.raises(UsageError):
        context_probe({"n_gen": 0}, memory_limit_bytes=None, timeout_s=None, db=None)
