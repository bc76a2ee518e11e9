"""End to end on the real default model (Gemma 3 270M Q4_K_M) through llama.cpp.

Small workloads (pp64/tg16) keep each run to a few seconds on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys

import pytest

import meltbench
from meltbench.results.store import ResultStore

pytestmark = pytest.mark.integration

GEMMA_PARAMS = 268_098_176
GEMMA_BYTES = 253_113_024
SMALL = ["-p", "64", "-n", "16", "-r", "2", "--warmup", "1"]


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "meltbench.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def json_run(tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "runs.db"
    proc = cli("run", *SMALL, "--db", str(db), "--format", "json")
    return json.loads(proc.stdout), db, proc


def test_json_output_has_every_metric(json_run):
    data, _, _ = json_run
    assert data["status"] == "ok" and data["failure"] is None
    assert data["test"] == "pp64+tg16"
    m = data["metrics"]
    for name in (
        "load_ms",
        "ttft_ms",
        "prefill_tps",
        "decode_tps",
        "itl_ms",
        "tpot_ms",
        "e2e_ms",
        "peak_rss_bytes",
        "engine_prefill_tps",
        "engine_decode_tps",
    ):
        assert name in m, name
        for stat in (
            "n",
            "mean",
            "median",
            "stddev",
            "min",
            "max",
            "p90",
            "p99",
            "ci95_low",
            "ci95_high",
            "samples",
        ):
            assert stat in m[name]
        assert m[name]["min"] > 0
    assert m["ttft_ms"]["n"] == 2
    assert m["itl_ms"]["n"] == 2 * 15
    # 270M parameters at 4.5 bits need at least the file's weights resident
    assert m["peak_rss_bytes"]["max"] > 150 * 2**20
    assert data["model"]["quant"] == "Q4_K_M"
    assert data["model"]["n_params"] == GEMMA_PARAMS
    assert data["model"]["size_bytes"] == GEMMA_BYTES
    assert data["model"]["architecture"] == "gemma3"
    assert data["engine"]["name"] == "llama.cpp"
    assert data["engine"]["model_n_params"] == GEMMA_PARAMS
    assert "CPU" in data["engine"]["features"]
    env = data["environment"]
    for key in ("cpu_model", "cpu_count_logical", "ram_total_bytes", "kernel", "python"):
        assert env[key]
    assert env["libraries"]["llama-cpp-python"]
    assert data["cold"]["ttft_ms"] > 0


def test_metrics_are_consistent_with_raw_timestamps(json_run):
    data, _, _ = json_run
    timed = [r for r in data["repetitions"] if r["kind"] == "timed"]
    assert len(timed) == 2 and data["repetitions"][0]["kind"] == "warmup"
    for rep, decode, e2e, ttft in zip(
        timed,
        data["metrics"]["decode_tps"]["samples"],
        data["metrics"]["e2e_ms"]["samples"],
        data["metrics"]["ttft_ms"]["samples"],
        strict=True,
    ):
        stamps = rep["token_ns"]
        assert len(stamps) == len(rep["tokens"]) == 16
        assert stamps == sorted(stamps) and stamps[0] > rep["t_start_ns"]
        assert decode == pytest.approx(15 / ((stamps[-1] - stamps[0]) / 1e9))
        assert e2e >= ttft
        assert rep["counters"]["n_p_eval"] == 64 and rep["counters"]["n_eval"] == 15
    # greedy decoding of the same prompt gives the same tokens every repetition
    assert timed[0]["tokens"] == timed[1]["tokens"]


def test_run_is_in_the_database(json_run):
    data, db, proc = json_run
    assert data["run_id"] in proc.stderr
    conn = sqlite3.connect(db)
    status, test = conn.execute(
        "SELECT status, test FROM runs WHERE run_id = ?", (data["run_id"],)
    ).fetchone()
    assert (status, test) == ("ok", "pp64+tg16")
    with ResultStore(db, readonly=True) as store:
        stored = store.get(data["run_id"][:8])
    assert stored.to_json_dict() == data


def test_results_commands(json_run):
    data, db, _ = json_run
    listing = json.loads(cli("results", "list", "--db", str(db), "--format", "json").stdout)
    assert [r["run_id"] for r in listing] == [data["run_id"]]
    shown = cli("results", "show", data["run_id"][:10], "--db", str(db)).stdout
    assert "pp64" in shown and "tg16" in shown
    csv_text = cli("results", "export", "--db", str(db), "--format", "csv").stdout
    assert csv_text.splitlines()[0].startswith("run_id,status")
    assert len(csv_text.splitlines()) == 2
    md = cli("results", "export", data["run_id"], "--db", str(db), "--format", "md").stdout
    assert "| pp64 |" in md and "| tg16 |" in md


def test_our_rates_agree_with_llama_cpp_counters_within_3_percent():
    result = meltbench.run(n_prompt=128, n_gen=32, reps=3, warmup=1)
    assert result.ok, result.failure
    prefill, decode = result.fidelity["prefill_tps"], result.fidelity["decode_tps"]
    assert prefill == pytest.approx(1.0, abs=0.03), prefill
    assert decode == pytest.approx(1.0, abs=0.03), decode
    assert not [w for w in result.warnings if w["code"] == "engine_disagreement"]


def test_table_output_llama_bench_style(tmp_path):
    out = cli("run", *SMALL, "--db", str(tmp_path / "t.db")).stdout
    for header in (
        "model",
        "size",
        "params",
        "engine",
        "threads",
        "test",
        "t/s",
        "TTFT ms",
        "ITL p50 ms",
        "ITL p99 ms",
        "peak RSS",
    ):
        assert header in out
    assert "pp64" in out and "tg16" in out and "Q4_K_M" in out and "±" in out


def test_depth_fills_the_cache_before_the_timed_request():
    result = meltbench.run(n_prompt=32, n_gen=8, n_depth=64, reps=1, warmup=0)
    assert result.ok, result.failure
    assert result.test == "pp32+tg8@d64"
    rep = result.repetitions[0]
    assert rep.depth_fill_ns and rep.depth_fill_ns > 0
    # the engine counted only the timed prompt, not the depth fill
    assert rep.counters["n_p_eval"] == 32


def test_killed_worker_is_stored_as_failed_and_keeps_completed_reps(tmp_path):
    db = tmp_path / "k.db"
    state = {}

    def on_event(event):
        if event["event"] == "hello":
            state["pid"] = event["pid"]
        if event["event"] == "rep" and event["index"] == 1:
            os.kill(state["pid"], signal.SIGKILL)

    result = meltbench.run(n_prompt=16, n_gen=64, reps=20, warmup=1, db=db, on_event=on_event)
    assert result.status == "failed"
    assert "SIGKILL" in result.failure and "out of memory" in result.failure
    assert len(result.repetitions) == 2  # warmup + first timed rep, nothing lost
    assert result.metrics["decode_tps"].n == 1
    with ResultStore(db, readonly=True) as store:
        rows = store.list_runs()
    assert [(r["status"], r["failure"]) for r in rows] == [("failed", result.failure)]


def test_timeout_is_a_failed_run_with_exit_code_1(tmp_path):
    db = tmp_path / "t.db"
    proc = cli(
        "run",
        "-p",
        "16",
        "-n",
        "4000",
        "-c",
        "4096",
        "-r",
        "50",
        "--timeout",
        "3",
        "--db",
        str(db),
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    conn = sqlite3.connect(db)
    status, failure = conn.execute("SELECT status, failure FROM runs").fetchone()
    assert status == "failed" and failure.startswith("timed out after 3 s")
