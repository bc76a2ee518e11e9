"""llama.cpp at its own defaults, the two timing modes, KV cache bytes and the roofline, on
the real default model (Gemma 3 270M Q4_K_M)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import meltbench
from meltbench.models.footprint import read_footprint
from meltbench.models.resolve import resolve_model

pytestmark = pytest.mark.integration


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "meltbench.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return proc


@pytest.fixture(scope="module")
def engine_run():
    return meltbench.run(n_prompt=64, n_gen=16, reps=2, warmup=1, timing="engine")


def test_context_takes_llama_cpp_defaults(engine_run):
    import llama_cpp

    params = engine_run.engine["params"]
    defaults = llama_cpp.llama_context_default_params()
    # not llama-cpp-python's Llama() defaults (flash attention off)
    assert params["flash_attn"] == "auto"
    assert defaults.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO
    assert params["flash_attn_used"] in (True, False)  # resolved by llama.cpp, as it logged
    assert params["swa_full"] is bool(defaults.swa_full)
    assert params["type_k"] == params["type_v"] == "f16"
    assert params["n_threads"] == engine_run.settings["threads"]
    assert params["no_perf"] is False  # meltbench reads the perf counters
    assert params["timing"] == "engine"


def test_engine_timing_reports_sampling_cost_and_agrees_with_counters(engine_run):
    assert engine_run.ok, engine_run.failure
    sample = engine_run.metrics["sample_ms"]
    assert sample.n == 2 and 0 < sample.median < 50
    # tokens are synthetic inputs, not the model's choices, and still exactly n_gen of them
    assert all(len(r.tokens) == 16 for r in engine_run.repetitions)
    assert 0.97 <= engine_run.fidelity["decode_tps"] <= 1.03
    assert 0.97 <= engine_run.fidelity["prefill_tps"] <= 1.03


def test_kv_cache_engine_figure_matches_the_formula(engine_run):
    mem = engine_run.memory
    assert mem["kv_cache_source"] == "engine"
    # llama.cpp prints MiB with 2 decimals: +-5 KiB per cache (2 caches for Gemma 3)
    assert abs(mem["kv_cache_bytes_engine"] - mem["kv_cache_bytes_formula"]) <= 2 * 5243
    assert engine_run.metrics["kv_cache_bytes"].median == mem["kv_cache_bytes_engine"]
    n_ctx = engine_run.engine["params"]["n_ctx"]
    # Gemma 3 270M: 18 layers x 1 KV head x 256 x (K + V) x f16 = 18 KiB per cell
    assert mem["kv_cache_bytes_formula"] == n_ctx * 18 * 1024


def test_roofline_of_the_run(engine_run):
    fp = read_footprint(resolve_model("gemma3-270m-q4_k_m").path)
    roof = engine_run.roofline
    assert roof["tied_embeddings"] is True  # Gemma: the embedding table is the output layer
    assert roof["weights_bytes_per_token"] == fp.weights_bytes
    bpt = engine_run.metrics["bytes_per_token"].median
    assert bpt == fp.weights_bytes + roof["kv_bytes_per_token"]
    bound = engine_run.metrics["decode_bound_tps"].median
    assert bound == pytest.approx(roof["bandwidth_bytes_per_s"] / bpt)
    eff = engine_run.metrics["decode_efficiency"]
    assert eff.n == 2
    assert eff.median == pytest.approx(engine_run.metrics["decode_tps"].median / bound)


def test_generation_timing_measures_the_argmax(tmp_path):
    db = tmp_path / "runs.db"
    proc = cli("run", "-p", "32", "-n", "8", "-r", "2", "--db", str(db), "-f", "json")
    data = json.loads(proc.stdout)
    assert data["spec"]["workload"]["timing"] == "generation"
    counters = data["repetitions"][-1]["counters"]
    assert counters["n_sample"] == 8  # one argmax per generated token
    assert data["metrics"]["sample_ms"]["median"] > 0
    shown = cli("results", "show", data["run_id"][:8], "--db", str(db))
    text = shown.stdout + shown.stderr
    for fragment in ("timing: generation", "flash_attn auto ->", "KV cache", "decode eff"):
        assert fragment in text, text


def test_bandwidth_command_is_plausible_and_becomes_the_roof(tmp_path):
    import os

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}  # leave the user's cache alone
    proc = cli("bandwidth", "--threads", "1", "--trials", "2", "-f", "json", env=env)
    data = json.loads(proc.stdout)
    read = data["results"]["read"]["1"]
    assert read > 1e9, read  # any machine that runs a model streams > 1 GB/s
    assert data["size_bytes"] >= 256 * 1024**2
    proc = cli("run", "-p", "16", "-n", "4", "-r", "1", "-t", "1", "--no-db", "-f", "json", env=env)
    roof = json.loads(proc.stdout)["roofline"]
    assert roof["bandwidth_bytes_per_s"] == read and roof["bandwidth"]["threads"] == 1
