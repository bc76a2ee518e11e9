"""Request workloads against a real OpenAI-compatible server (llama-cpp-python's
``python -m llama_cpp.server`` on loopback, Gemma 3 270M): the app at concurrency 1 and 4
with Poisson arrivals and goodput, a conversation on the server's own history, and a
server failure recorded as data. Token counts are the server's usage."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
import urllib.request

import pytest

import meltbench
from meltbench.harness.http_load import replay_http
from meltbench.workloads.base import RequestSet, Session, Turn
from tests.integration.test_engine_openai import free_port, gemma_path, stop

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("srv") / "server.log"
    port = free_port()
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", gemma_path(),
        "--model_alias", "gemma", "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "2048", "--n_threads", "2", "--verbose", "False", "--logits_all", "False",
        # by default llama-cpp-python ends a stream when the next request arrives (seen
        # here: at concurrency 4, empty streams); queue them instead, as servers do
        "--interrupt_requests", "False",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2):
                break
        except OSError:
            time.sleep(0.25)
    yield url
    stop(proc)


def timed(result) -> list[dict]:
    return [r for r in result.requests["records"] if r["kind"] == "timed"]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_the_app_against_the_server(server, concurrency, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = meltbench.run(engine="openai", endpoint=server, model="gemma", workload="app",
                           n_gen=16, concurrency=concurrency, request_rate=8.0,
                           slo="ttft_ms=60000,tpot_ms=5000", sensors=())  # fmt: skip
    assert result.ok, result.failure
    records = timed(result)
    assert len(records) == result.requests["workload"]["sessions"] == 6
    for r in records:
        # llama-cpp-python streams chat without usage: the reply is counted by the
        # server's /extras/tokenize, the prompt (templated by the server) is unknown
        assert r["ok"], r["error"]
        assert r["counts"] == "server-tokenizer" and r["n_input"] is None
        assert 0 <= r["n_output"] <= 16  # natural output: an immediate end of turn is 0
        assert r["token_ns"] == sorted(r["token_ns"])
        assert all(r["t_sent_ns"] < t <= r["t_end_ns"] for t in r["token_ns"])
        assert r["t_start_ns"] >= r["t_scheduled_ns"]  # never before its Poisson arrival
    load = result.requests["load"]
    assert load["concurrency"] == concurrency and load["completed"] == 6
    # generous SLOs: every request is good, goodput = throughput
    assert load["goodput"]["good_requests"] == 6 and load["goodput"]["slo_attainment"] == 1.0
    assert result.metrics["goodput_rps"].median == pytest.approx(load["request_throughput_rps"])
    assert result.requests["app"]["requests"] == 6
    assert result.test.endswith(f"@c{concurrency}r8")
    if concurrency == 4:  # sessions overlapped in time (the server may still serialize them)
        spans = sorted((r["t_start_ns"], r["t_end_ns"]) for r in records)
        assert any(b[0] < a[1] for a, b in itertools.pairwise(spans))


def test_a_conversation_keeps_the_servers_replies_as_history(server):
    requests = RequestSet(kind="conversation", name="t", output="natural", sessions=(
        Session(id="a", group="conversation", turns=(Turn("Name a colour.", 8),
                                                     Turn("Another one?", 8))),
    ))  # fmt: skip
    sent = []
    records = replay_http(requests, endpoint=server, model=None, on_record=sent.append)
    assert [r["turn"] for r in records] == [0, 1] and all(r["ok"] for r in records)
    assert sent == records  # on_record saw each, in completion order
    assert records[1]["t_start_ns"] >= records[0]["t_end_ns"]  # turns go in order
    assert records[1]["t_scheduled_ns"] is None


def test_a_dead_server_is_recorded_as_failed_requests(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    db = tmp_path / "runs.db"
    result = meltbench.run(engine="openai", endpoint=url, model="gemma", workload="app",
                           n_gen=8, concurrency=2, db=db, sensors=())  # fmt: skip
    assert not result.ok and "every request failed" in result.failure
    records = timed(result)
    assert len(records) == 6 and not any(r["ok"] for r in records)
    assert "ConnectionRefusedError" in records[0]["error"]
    assert result.metrics["failed_requests"].median == 6
    assert json.dumps(result.to_json_dict())  # stored and serializable
