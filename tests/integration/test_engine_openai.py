"""The openai engine end to end: llama-cpp-python's server on loopback, and a fake server.

The real server (Gemma 3 270M Q4_K_M, ``python -m llama_cpp.server``) is started once for
the module on a free 127.0.0.1 port with an API key; a second one is started and killed
for the mid-run test. Faults that a real server cannot be made to produce on demand
(invalid JSON, a connection closed inside the body, HTTP 500, an early stop, a hang) come
from :mod:`tests.integration.fake_openai_server`. Workloads are tiny (pp16+tg8).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import meltbench
from meltbench.engines.base import EngineSettings
from meltbench.engines.openai import WORDS, OpenAIEngine
from meltbench.engines.openai_http import redact_url, server_root
from meltbench.errors import UsageError
from tests.integration.fake_openai_server import FakeOpenAIServer

pytestmark = pytest.mark.integration

SECRET = "sk-meltbench-test-7f3a9c1e5b"
SMALL = {"n_prompt": 16, "n_gen": 8, "reps": 2, "warmup": 1}
METRICS = ("ttft_ms", "prefill_tps", "decode_tps", "itl_ms", "tpot_ms", "e2e_ms", "load_ms")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gemma_path() -> str:
    from meltbench.models.resolve import resolve_model

    return str(resolve_model("gemma3-270m-q4_k_m").path)


def start_llama_server(
    log: Path, api_key: str | None = None, threads: int = 1
) -> tuple[subprocess.Popen, str]:
    """llama-cpp-python's server on a free loopback port; returns (process, /v1 URL).

    One thread by default: the tests share 2 cores with other work.
    """
    port = free_port()
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", gemma_path(),
        "--model_alias", "gemma", "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "512", "--n_threads", str(threads), "--verbose", "False",
        "--logits_all", "False",  # the default True computes 262k logits per prompt token
    ]  # fmt: skip
    if api_key:
        cmd += ["--api_key", api_key]
    out = log.open("wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    request = urllib.request.Request(f"{url}/models")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama server exited with {proc.returncode}: {log.read_text()}")
        try:
            with urllib.request.urlopen(request, timeout=2) as answer:
                if answer.status == 200:
                    return proc, url
        except (urllib.error.URLError, OSError):
            time.sleep(0.25)
    proc.kill()
    raise RuntimeError(f"llama server not ready within 120 s: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    proc, url = start_llama_server(log, api_key=SECRET)
    yield url
    stop(proc)


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    return SECRET


@pytest.fixture
def no_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meltbench.cli", "run", "--engine", "openai", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def decode_tps(token_ns: list[int]) -> float:
    return (len(token_ns) - 1) / ((token_ns[-1] - token_ns[0]) / 1e9)


# ---------------------------------------------------------------- the real llama.cpp server


def test_real_server_run_has_every_metric(llama_server, key, tmp_path):
    db = tmp_path / "runs.db"
    result = meltbench.run(engine="openai", endpoint=llama_server, model="gemma", db=db, **SMALL)
    assert result.ok, result.failure
    assert result.test == "pp16+tg8"
    for name in METRICS:
        assert name in result.metrics, name
        assert result.metrics[name].min > 0, name
    m = result.metrics
    assert m["ttft_ms"].n == 2 and m["itl_ms"].n == 2 * 7
    timed = [r for r in result.repetitions if r.kind == "timed"]
    assert [r.kind for r in result.repetitions] == ["warmup", "timed", "timed"]
    for rep, ttft, e2e in zip(timed, m["ttft_ms"].samples, m["e2e_ms"].samples, strict=True):
        assert e2e >= ttft
        assert len(rep.token_ns) == 8
        # llama-cpp-python's server sends one token per chunk and no usage in streams
        assert rep.tokens == list(range(8))
        counters = dict(rep.counters)
        # the server runs on this machine: its memory is read after each request
        assert counters.pop("server_peak_rss_bytes") >= counters.pop("server_rss_bytes") > 1e8
        assert counters == {"chunks": 8.0, "yielded": 8.0}
    expected = [decode_tps(r.token_ns) for r in timed]
    assert m["decode_tps"].samples == pytest.approx(expected, rel=1e-12)
    engine = result.engine
    assert engine["name"] == "openai" and engine["library"] == "openai"
    assert engine["device"] == "remote" and engine["endpoint"] == llama_server
    assert engine["server_models"] == ["gemma"] and engine["model_listed"] is True
    # no n_vocab in its /models answer, and token arrays are rejected: exact-length text
    assert engine["prompt_mode"] == "text" and engine["text_overhead_tokens"] == 1
    assert engine["n_vocab"] is None and engine["api_key_set"] is True
    assert result.model["format"] == "remote" and result.model["ref"] == "gemma"
    # the key went to the server (it would answer 401 otherwise) but was stored nowhere
    assert SECRET not in result.model_dump_json()
    with sqlite3.connect(db) as conn:
        dump = "\n".join(conn.iterdump())
    assert "pp16+tg8" in dump and SECRET not in dump


def test_real_server_through_the_cli(llama_server, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["MELTBENCH_TEST_KEY"] = SECRET
    proc = cli(
        "--endpoint", llama_server, "--model", "gemma", "-p", "16", "-n", "8", "-r", "2",
        "-o", "api_key_env=MELTBENCH_TEST_KEY", "--no-db", "--format", "json",
        env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "ok" and data["failure"] is None
    assert data["engine"]["api_key_env"] == "MELTBENCH_TEST_KEY"
    assert data["settings"]["endpoint"] == llama_server
    assert data["metrics"]["decode_tps"]["n"] == 2
    assert SECRET not in proc.stdout and SECRET not in proc.stderr


def test_real_server_wrong_key_is_a_401(llama_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-123456")
    result = meltbench.run(engine="openai", endpoint=llama_server, model="gemma", **SMALL)
    assert result.status == "failed"
    assert result.failure == (
        f"EndpointError: HTTP 401 from {llama_server}/models: Invalid API key; "
        "check the API key in $OPENAI_API_KEY"
    )
    assert "sk-wrong-key-123456" not in result.model_dump_json()


def test_real_server_killed_mid_run(tmp_path, no_key):
    proc, url = start_llama_server(tmp_path / "server.log")
    killed: list[int] = []

    def kill_after_first(event: dict) -> None:
        # the second request (64 tokens) takes seconds: 1 s after the first one ended,
        # the server is killed while streaming it (or, on a very slow machine, before)
        if event.get("event") == "rep" and event.get("index") == 0:
            threading.Timer(1.0, os.kill, (proc.pid, signal.SIGKILL)).start()
            killed.append(event["index"])

    try:
        result = meltbench.run(
            engine="openai", endpoint=url, model="gemma", n_prompt=16, n_gen=64, reps=1,
            warmup=1, on_event=kill_after_first,
        )  # fmt: skip
    finally:
        stop(proc)
    assert killed == [0]
    assert result.status == "failed"
    assert re.fullmatch(
        r"EndpointError: (server closed the connection mid-stream after \d+ of 64 tokens "
        rf"\({re.escape(url)}/completions\): .+|connection to {re.escape(url)}/completions "
        r"lost before an answer \(.+\); server down\?|cannot connect to "
        rf"{re.escape(url)}/completions: connection refused; is the server running\?)",
        result.failure or "",
    ), result.failure
    assert [r.kind for r in result.repetitions] == ["warmup"]
    assert len(result.repetitions[0].token_ns) == 64


# ------------------------------------------------------------------------ the fake server


def test_fake_server_request_shape_and_usage_counters(no_key):
    with FakeOpenAIServer(n_vocab=1000) as fake:
        result = meltbench.run(engine="openai", endpoint=fake.url, model="fake-model", **SMALL)
    assert result.ok, result.failure
    assert result.engine["prompt_mode"] == "tokens"
    assert result.engine["n_vocab"] == 1000 and result.engine["n_vocab_source"] == "server"
    assert result.engine["server_meta"] == {"fake-model": {"n_vocab": 1000, "n_ctx_train": 512}}
    # the fake listens on loopback in this process: found by its port, its memory read
    assert result.engine["server_process"]["pid"] == os.getpid()
    for rep in result.repetitions:
        counters = dict(rep.counters)
        assert counters.pop("server_peak_rss_bytes") >= counters.pop("server_rss_bytes") > 0
        assert counters == {
            "chunks": 8.0,
            "yielded": 8.0,
            "prompt_tokens": 16.0,
            "completion_tokens": 8.0,
            "server_prompt_n": 16.0,
            "server_prompt_ms": 12.5,
            "server_predicted_n": 8.0,
            "server_predicted_ms": 40.0,
        }
    probes = fake.completions(stream=False)
    assert len(probes) == 1 and probes[0]["prompt"] == [0] and probes[0]["max_tokens"] == 1
    bodies = fake.completions(stream=True)
    assert len(bodies) == 3
    for body in bodies:
        assert body["model"] == "fake-model" and body["max_tokens"] == 8
        assert body["temperature"] == 0 and body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}
        assert body["ignore_eos"] is True and body["min_tokens"] == 8
        assert len(body["prompt"]) == 16
        assert all(isinstance(t, int) and 0 <= t < 1000 for t in body["prompt"])
    # the same synthetic prompt after 4 fresh leading tokens per request (no prefix reuse)
    assert bodies[0]["prompt"][4:] == bodies[1]["prompt"][4:] == bodies[2]["prompt"][4:]
    heads = [tuple(b["prompt"][:4]) for b in bodies]
    assert len(set(heads)) == 3
    auth = {h.get("authorization") for _, _, h, _ in fake.requests}
    assert auth == {"Bearer sk-no-key"}


def test_fake_server_multi_token_chunks_are_counted(no_key):
    with FakeOpenAIServer(tokens_per_chunk=2) as fake:
        result = meltbench.run(engine="openai", endpoint=fake.url, model="fake-model", **SMALL)
    assert result.ok, result.failure
    for rep in result.repetitions:
        # one yield per chunk: 4 chunks of 2 tokens; the server's count shows the mismatch
        assert rep.tokens == [0, 1, 2, 3]
        assert rep.counters["chunks"] == 4.0 and rep.counters["completion_tokens"] == 8.0


def test_fake_server_token_ids_are_yielded(no_key):
    with FakeOpenAIServer(tokens_per_chunk=3, send_ids=True) as fake:
        result = meltbench.run(engine="openai", endpoint=fake.url, model="fake-model", **SMALL)
    assert result.ok, result.failure
    for rep in result.repetitions:
        assert rep.tokens == list(range(500, 508))
        assert rep.counters["chunks"] == 3.0 and rep.counters["yielded"] == 8.0


def test_fake_server_text_prompts_when_token_arrays_are_rejected(no_key):
    with FakeOpenAIServer(accept_token_prompts=False) as fake:
        result = meltbench.run(engine="openai", endpoint=fake.url, model="fake-model", **SMALL)
        tokenized = [b for _, p, _, b in fake.requests if p == "/tokenize"]
    assert result.ok, result.failure
    assert result.engine["prompt_mode"] == "text"
    assert "HTTP 500" in result.engine["token_prompt_error"]
    bodies = fake.completions(stream=True)
    assert len(bodies) == 3
    for body in bodies:
        words = body["prompt"].split(" ")
        assert len(words) == 15 and set(words) <= set(WORDS)  # + BOS = 16 tokens
    # every request's text was counted again after its last token
    assert [b["content"] for b in tokenized[-3:]] == [b["prompt"] for b in bodies]


def test_forced_token_prompts_on_a_text_only_server(no_key):
    with FakeOpenAIServer(accept_token_prompts=False) as fake:
        result = meltbench.run(
            engine="openai", endpoint=fake.url, model="fake-model",
            engine_options={"prompt": "tokens"}, **SMALL,
        )  # fmt: skip
    assert result.status == "failed"
    assert result.failure == (
        f"EndpointError: HTTP 500 from {fake.url}/completions: Input should be a valid string"
    )
    assert fake.completions(stream=True) == []


def test_n_vocab_option_when_the_server_reports_none(no_key):
    with FakeOpenAIServer(n_vocab=None, tokenize=False, send_usage=False) as fake:
        failed = meltbench.run(engine="openai", endpoint=fake.url, model="fake-model", **SMALL)
        result = meltbench.run(
            engine="openai", endpoint=fake.url, model="fake-model",
            engine_options={"n_vocab": 50}, **SMALL,
        )  # fmt: skip
    assert failed.status == "failed"
    assert failed.failure == (
        f"EndpointError: cannot build prompts of an exact length for {fake.url}: it reports "
        "no vocabulary size for token-id prompts (pass -o n_vocab=N), it has no tokenizer "
        "route (/extras/tokenize or /tokenize) and reports no usage.prompt_tokens; pass the "
        "model's tokenizer with -o tokenizer=PATH (a .gguf file or a Hugging Face folder)"
    )
    assert result.ok, result.failure
    assert result.engine["n_vocab_source"] == "option"
    assert all(0 <= t < 50 for b in fake.completions(stream=True) for t in b["prompt"])


def test_text_prompts_counted_by_the_servers_usage(no_key):
    """No token ids, no tokenizer route (Ollama, cloud APIs): usage.prompt_tokens counts."""
    with FakeOpenAIServer(n_vocab=None, tokenize=False) as fake:
        result = meltbench.run(engine="openai", endpoint=fake.url, model="fake-model", **SMALL)
    assert result.ok, result.failure
    assert result.engine["prompt_mode"] == "text"
    assert result.engine["prompt_counted_by"] == "usage"
    assert result.engine["text_overhead_tokens"] == 1  # the fake's BOS
    for body in fake.completions(stream=True):
        assert len(body["prompt"].split()) == SMALL["n_prompt"] - 1
    assert all(r.counters["prompt_tokens"] == SMALL["n_prompt"] for r in result.repetitions)


def test_chat_completions_with_streamed_usage(no_key):
    from tests.integration.fake_openai_server import CHAT_OVERHEAD

    with FakeOpenAIServer() as fake:
        result = meltbench.run(
            engine="openai", endpoint=fake.url, model="fake-model",
            engine_options={"api": "chat"}, **SMALL,
        )  # fmt: skip
    assert result.ok, result.failure
    assert result.engine["api"] == "chat" and result.engine["prompt_counted_by"] == "usage"
    assert result.engine["text_overhead_tokens"] == CHAT_OVERHEAD
    chats = [b for _, path, _, b in fake.requests if path == "/v1/chat/completions"]
    streamed = [b for b in chats if b.get("stream")]
    assert len(streamed) == 3 and not [b for _, p, _, b in fake.requests if p == "/v1/completions"]
    for body in streamed:
        (message,) = body["messages"]
        assert message["role"] == "user"
        assert len(message["content"].split()) == SMALL["n_prompt"] - CHAT_OVERHEAD
        assert body["stream_options"] == {"include_usage": True}
    for rep in result.repetitions:
        assert rep.counters["chunks"] == 8 and rep.counters["prompt_tokens"] == 16
    assert result.metrics["decode_tps"].n == 2


def test_client_side_gguf_tokenizer_counts_and_bans_eos(no_key):
    """A server without token ids or a tokenizer route: the model's own GGUF counts."""
    gguf = gemma_path()
    with FakeOpenAIServer(n_vocab=None, tokenize=False, accept_token_prompts=False) as fake:
        result = meltbench.run(
            engine="openai", endpoint=fake.url, model="fake-model",
            engine_options={"tokenizer": gguf}, **SMALL,
        )  # fmt: skip
    assert result.ok, result.failure
    assert result.engine["prompt_counted_by"] == "client"
    assert result.engine["client_tokenizer"]["library"] == "llama.cpp"
    assert result.engine["n_vocab"] == 262144 and result.engine["n_vocab_source"] == "tokenizer"
    for body in fake.completions(stream=True):
        # Gemma 3's <eos> (1) and <end_of_turn> (106): never sampled
        assert body["logit_bias"] == {"1": -100, "106": -100}
        assert len(body["prompt"].split()) == SMALL["n_prompt"] - 1  # + BOS


@pytest.mark.parametrize(
    ("mode", "options", "cause"),
    [
        ("http_500", {}, "HTTP 500 from {url}/completions: the fake server failed on purpose"),
        (
            "bad_json",
            {},
            "malformed stream from {url}/completions after 2 of 8 tokens: invalid JSON chunk "
            "(Expecting property name enclosed in double quotes): '{{not json'",
        ),
        (
            "close_mid_stream",
            {},
            "server closed the connection mid-stream after 2 of 8 tokens ({url}/completions): "
            "peer closed connection without sending complete message body "
            "(incomplete chunked read)",
        ),
        (
            "stop_early",
            {},
            "server stopped after 3 of 8 tokens (finish_reason 'stop'): it ignored "
            "ignore_eos/min_tokens; results would be too short",
        ),
        (
            "hang",
            {"timeout_s": 1.0},
            "no answer from {url}/completions within 1 s (timeout); check the server or "
            "raise -o timeout_s=N",
        ),
    ],
)
def test_fake_server_faults_fail_the_run(mode, options, cause, no_key):
    with FakeOpenAIServer(mode, hang_s=3.0) as fake:
        result = meltbench.run(
            engine="openai", endpoint=fake.url, model="fake-model", engine_options=options,
            **SMALL,
        )  # fmt: skip
    assert result.status == "failed"
    assert result.failure == "EndpointError: " + cause.format(url=fake.url)
    assert result.repetitions == []
    assert result.engine["name"] == "openai"  # loading worked; the first request failed


def test_fake_server_wrong_key(monkeypatch):
    monkeypatch.setenv("FAKE_KEY", "sk-wrong-0123456789")
    with FakeOpenAIServer(api_key="sk-right-0123456789") as fake:
        result = meltbench.run(
            engine="openai", endpoint=fake.url, model="fake-model",
            engine_options={"api_key_env": "FAKE_KEY"}, **SMALL,
        )  # fmt: skip
    assert result.status == "failed"
    assert result.failure == (
        f"EndpointError: HTTP 401 from {fake.url}/models: Invalid API key; "
        "check the API key in $FAKE_KEY"
    )
    assert fake.requests[0][2]["authorization"] == "Bearer sk-wrong-0123456789"
    assert "sk-wrong-0123456789" not in result.model_dump_json()


def test_n_depth_is_refused_before_any_request(no_key):
    with FakeOpenAIServer() as fake:
        with pytest.raises(UsageError) as exc:
            meltbench.run(
                engine="openai", endpoint=fake.url, model="fake-model", n_depth=8, **SMALL
            )
    assert str(exc.value) == (
        "engine 'openai' does not support --n-depth (it keeps no KV cache that meltbench "
        "controls between requests); use --n-depth 0"
    )
    assert fake.completions(stream=True) == []


# -------------------------------------------------------------------------- server down


def test_server_down_api_and_cli(no_key):
    url = f"http://127.0.0.1:{free_port()}/v1"
    cause = (
        f"EndpointError: cannot connect to {url}/models: connection refused; is the server running?"
    )
    result = meltbench.run(engine="openai", endpoint=url, model="gemma", **SMALL)
    assert result.status == "failed" and result.failure == cause
    assert result.repetitions == [] and "load_ms" not in result.metrics
    proc = cli("--endpoint", url, "-p", "16", "-n", "8", "-r", "1", "--no-db", "--format", "json")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "failed" and data["failure"] == cause


def test_http_500_through_the_cli_exits_1(no_key):
    with FakeOpenAIServer("http_500") as fake:
        proc = cli("--endpoint", fake.url, "-p", "16", "-n", "8", "-r", "1", "--no-db",
                   "--format", "json")  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["failure"] == (
        f"EndpointError: HTTP 500 from {fake.url}/completions: the fake server failed on purpose"
    )


# -------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the openai engine needs --endpoint URL, e.g. http://127.0.0.1:8080/v1"),
        (
            ["--endpoint", "ftp://host/v1"],
            "--endpoint must be an http(s) URL such as http://127.0.0.1:8080/v1, "
            "got 'ftp://host/v1'",
        ),
        (
            ["--endpoint", "http://127.0.0.1:1/v1", "-o", "prompt=words"],
            "option prompt must be one of auto, tokens, text, got 'words'",
        ),
        (
            ["--endpoint", "http://127.0.0.1:1/v1", "-o", "n_vocab=0"],
            "option n_vocab must be a positive integer, got 0",
        ),
        (
            ["--endpoint", "http://127.0.0.1:1/v1", "-o", "flash_attn=true"],
            "engine 'openai' has no option flash_attn; allowed: api, api_key_env, ignore_eos, "
            "include_usage, n_vocab, prompt, timeout_s, tokenizer",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message):
    proc = cli(*args, "--no-db")
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"meltbench run: error: {message}"]


def test_check_settings_and_url_helpers():
    def settings(endpoint: str | None, **options: object) -> EngineSettings:
        return EngineSettings(threads=1, n_ctx=8, batch=8, ubatch=8, endpoint=endpoint,
                              options=dict(options))  # fmt: skip

    assert OpenAIEngine.check_settings(settings("https://api.example.com/v1")) is None
    assert OpenAIEngine.check_settings(settings("http://h:8080/v1", timeout_s=0)) == (
        "option timeout_s must be a positive number of seconds, got 0"
    )
    assert OpenAIEngine.check_settings(settings("http://h:99999/v1")) == (
        "--endpoint has an invalid port: 'http://h/v1'"
    )
    assert redact_url("http://user:pw@host:8080/v1?key=x#f") == "http://host:8080/v1"
    assert server_root("http://127.0.0.1:8080/v1/") == "http://127.0.0.1:8080"
    assert server_root("http://127.0.0.1:8080/api") == "http://127.0.0.1:8080/api"
