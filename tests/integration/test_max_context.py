"""Max context before out-of-memory, on the real default model (Gemma 3 270M Q4_K_M).

Where the memory goes (measured on this machine, llama-cpp-python 0.3.36 on llama.cpp's C
API, 2 threads): the worker needs about 0.7 GiB of address space for Python, numpy, the
mapped 241 MiB GGUF and thread stacks, plus llama.cpp's context, whose compute buffer is
reserved for min(n_ctx, n_batch) rows of n_vocab float32 logits: 1 MiB per token of
context up to n_batch = 512, plus the KV cache. So below 512 tokens the need grows by
about 1 MiB per token (``VmPeak`` of a bare engine process: 705 MiB at n_prompt 64,
1163 MiB at 512, the same at 640), and a cap of a little over 0.7 GiB leaves the boundary
in the middle of [64, 512]:

    RLIMIT_AS 720 MiB: n_prompt 203 runs, 204 fails; 724 MiB: 207 runs, 208 fails (n_gen 2,
    threads 2; the same in 2 repeats).

(Before meltbench went to the C API, llama-cpp-python's ``Llama`` class added a
512 x 262,144 float32 logits array, 512 MiB whatever the context: the same boundary took
a 1232 MiB cap.) The test cap, 724 MiB, puts the boundary at 207 (208 fails; found with
multiple_of 1), halfway between the multiples of 32 that the search probes here (192 runs,
224 fails), so the reruns at the boundary keep ~15 MiB of margin.
Above 512 tokens the need grows only with the KV cache (about 20 MiB per 1024 tokens), so a
cap finds a context boundary there only with much larger contexts (slow on 2 cores).

Six probes of at most 514 tokens of context and four reruns: about 30 s here.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from meltbench.api import run
from meltbench.results.store import ResultStore
from meltbench.sweep.search import context_probe, find_max_context, is_out_of_memory

pytestmark = pytest.mark.integration

MiB = 2**20
LIMIT = 724 * MiB
LO, HI, STEP = 64, 512, 32
BASE = {"n_gen": 2, "threads": 2}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    db = tmp_path_factory.mktemp("maxctx") / "runs.db"
    results = []
    probe = context_probe(
        BASE, memory_limit_bytes=LIMIT, timeout_s=300, db=db, on_result=results.append
    )
    search = find_max_context(probe, LO, HI, multiple_of=STEP, max_probes=8)
    return search, results, db


def rerun(n: int, limit: int):
    return run(n_prompt=n, ctx=n + 2, reps=1, warmup=0, memory_limit_bytes=limit, **BASE)


def test_search_converges_inside_the_bounds(searched):
    search, _, _ = searched
    assert search.converged
    assert search.largest_ok is not None and search.smallest_failed is not None
    assert LO <= search.largest_ok < search.smallest_failed <= HI
    assert search.smallest_failed - search.largest_ok == STEP
    assert len(search.probes) <= 8
    assert search.probes[0].n == HI and not search.probes[0].ok
    assert search.probes[1].n == LO and search.probes[1].ok
    assert all(p.n % STEP == 0 for p in search.probes)
    assert search.summary.startswith(
        f"largest n_prompt that runs: {search.largest_ok} ({search.smallest_failed} failed: "
    )
    assert search.summary.endswith(f", {len(search.probes)} probes")


def test_probes_below_the_boundary_ran_and_above_ran_out_of_memory(searched):
    search, results, _ = searched
    assert [r.spec.workload.n_prompt for r in results] == [p.n for p in search.probes]
    for probe, result in zip(search.probes, results, strict=True):
        spec = result.spec
        assert spec.memory_limit_bytes == LIMIT
        assert spec.engine.ctx == probe.n + 2 and result.settings["n_ctx"] == probe.n + 2
        assert (spec.workload.reps, spec.workload.warmup) == (1, 0)
        if probe.n <= search.largest_ok:
            assert probe.ok and result.ok, (probe, result.failure)
            assert len(result.repetitions) == 1
            assert len(result.repetitions[0].tokens) == 2
        else:
            assert probe.n >= search.smallest_failed
            assert not probe.ok and not result.ok
            assert probe.cause == result.failure
            assert is_out_of_memory(probe.cause), probe.cause


def test_boundary_is_consistent_with_the_limit(searched):
    search, _, _ = searched
    # Same cap: the boundary repeats.
    at_ok = rerun(search.largest_ok, LIMIT)
    assert at_ok.ok, at_ok.failure
    at_failed = rerun(search.smallest_failed, LIMIT)
    assert not at_failed.ok and is_out_of_memory(at_failed.failure), at_failed.failure
    # The cap, not something else, decides: STEP tokens of context cost between STEP and
    # 2 * STEP MiB here (1 MiB of output buffer per token, plus KV), so moving the cap by
    # 2 * STEP MiB moves the boundary past the other probe.
    more = rerun(search.smallest_failed, LIMIT + 2 * STEP * MiB)
    assert more.ok, more.failure
    less = rerun(search.largest_ok, LIMIT - 2 * STEP * MiB)
    assert not less.ok and is_out_of_memory(less.failure), less.failure


def test_every_probe_is_stored(searched):
    search, results, db = searched
    with closing(sqlite3.connect(db)) as conn:
        query = "SELECT run_id, status, failure, test FROM runs"
        rows = {run_id: rest for run_id, *rest in conn.execute(query)}
    assert set(rows) == {r.run_id for r in results}
    assert search.run_ids == [r.run_id for r in results]
    for probe, run_id in zip(search.probes, search.run_ids, strict=True):
        status, failure, test = rows[run_id]
        assert test == f"pp{probe.n}+tg2"
        assert status == ("ok" if probe.ok else "failed")
        assert failure == probe.cause
    store = ResultStore(db, readonly=True)
    try:
        failed = store.get(search.run_ids[0])
    finally:
        store.close()
    assert failed.status == "failed" and failed.spec.memory_limit_bytes == LIMIT
