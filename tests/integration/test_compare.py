"""``meltbench compare`` on real runs of the default model (Gemma 3 270M Q4_K_M, llama.cpp).

Small runs (pp64+tg16, 5 timed repetitions after 1 warmup): one with 1 thread, compared
with a stored copy of itself under another run id (same data -> no regression, exit 0),
and one with 2 threads as the base of a real slowdown (1 thread against 2 -> prefill and
decode regressed, exit code 1).

Two real runs of the same settings are not compared here: on a shared CI machine the
drift between processes reached x1.135 on e2e_ms (past any sane threshold), so a test
asserting "no regression" between them fails on noise; the threshold and interval logic
are tested on exact data in tests/unit.

A busy machine breaks the 2-thread run first: when another process holds a core,
llama.cpp's two threads wait for each other and single repetitions become up to 60x
slower (seen on this 2-core VM). Such a run is flagged ``high_variation``; it is measured
again (3 tries), and the slowdown test is skipped, saying so, if the machine never got
quiet. The statistics are right to call such data inconclusive.
"""

from __future__ import annotations

import argparse
import io
import json
import uuid

import pytest
from rich.console import Console

import meltbench
from meltbench.cli.compare import add_compare_arguments, compare_command
from meltbench.errors import UsageError
from meltbench.results.store import ResultStore

pytestmark = pytest.mark.integration

SMALL = {"n_prompt": 64, "n_gen": 16, "reps": 5, "warmup": 1, "timeout_s": 120}
TRIES = 3


def quiet_run(db, threads):
    """A run without ``high_variation`` (up to 3 tries), or the last noisy one, or None."""
    result = None
    for _ in range(TRIES):
        result = meltbench.run(threads=threads, db=db, **SMALL)
        if result.ok and not any(w["code"] == "high_variation" for w in result.warnings):
            return result, True
    return result, False


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    db = tmp_path_factory.mktemp("compare") / "runs.db"
    one, quiet_one = quiet_run(db, 1)
    two, quiet_two = quiet_run(db, 2)
    assert one.ok and two.ok
    # The same measurements stored again under a new id: what a rerun with no change is.
    copy = one.model_copy(update={"run_id": uuid.uuid4().hex})
    with ResultStore(db) as store:
        store.save(copy)
    return db, (one, quiet_one), copy, (two, quiet_two)


def compare(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    add_compare_arguments(parser)
    out = io.StringIO()
    code = compare_command(parser.parse_args(list(argv)), Console(file=out, width=250))
    return code, out.getvalue()


def _noise(result) -> str:
    return "; ".join(w["message"] for w in result.warnings if w["code"] == "high_variation")


def test_same_measurements_are_no_regression(runs):
    db, (one, _), copy, _ = runs
    code, out = compare(one.run_id[:8], copy.run_id[:8], "--db", str(db), "-f", "json")
    doc = json.loads(out)
    metrics = {m["metric"]: m for m in doc["points"][0]["metrics"]}
    assert code == 0 and doc["exit_code"] == 0
    assert set(metrics) == {
        "prefill_tps",
        "decode_tps",
        "ttft_ms",
        "itl_ms",
        "e2e_ms",
        "peak_rss_bytes",
    }
    for name in ("prefill_tps", "decode_tps", "ttft_ms", "itl_ms", "e2e_ms"):
        m = metrics[name]
        assert m["ratio"] == pytest.approx(1.0), m
        assert m["verdict"] not in ("regressed", "improved"), m
    assert metrics["peak_rss_bytes"]["verdict"] == "too few samples"  # one value per run


def test_one_thread_against_two_is_a_regression(runs):
    db, (one, _), _, (two, quiet) = runs
    if not quiet:
        pytest.skip(f"machine too busy for a stable 2-thread run: {_noise(two)}")
    code, out = compare(two.run_id, one.run_id, "--db", str(db), "--force", "-f", "json")
    doc = json.loads(out)
    assert code == 1 and doc["exit_code"] == 1
    assert doc["forced"] == {"threads": {"base": 2, "candidate": 1}}
    metrics = {m["metric"]: m for m in doc["points"][0]["metrics"]}
    for name in ("prefill_tps", "decode_tps"):
        m = metrics[name]
        assert m["verdict"] == "regressed", m
        assert m["ratio"] < 0.9 and m["ci95_high"] < 1.0
        assert m["p_method"] == "exact"
    # The table says the same, with the identity difference and the summary line.
    code, text = compare(two.run_id, one.run_id, "--db", str(db), "--force")
    assert code == 1
    assert "forced comparison of points that differ in threads 2 vs 1" in text
    assert "(threads 2 → 1)" in text and "regressions" in text


def test_without_force_the_identity_difference_is_an_error(runs):
    db, (one, _), _, (two, _) = runs
    with pytest.raises(UsageError, match=r"threads: base 2, candidate 1.*--force"):
        compare(two.run_id, one.run_id, "--db", str(db))
