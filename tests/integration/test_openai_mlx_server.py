"""The openai engine against mlx-lm's server: a second real OpenAI-compatible server.

``mlx_lm.server`` (mlx-lm, on mlx's CPU backend here) serves the default model's Hugging
Face folder (the cached dequantized export, as ``meltbench convert --to hf`` makes it).
It is what an independent check found the engine could not benchmark: it reports no
vocabulary size, answers a token-array prompt with HTTP 404, has no tokenizer route, and
ignores ``ignore_eos``/``min_tokens``. Measured here (mlx-lm 0.32): about 0.4 s a token
on 2 cores, so workloads are tiny (pp16+tg8).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import meltbench

pytestmark = pytest.mark.integration

SMALL = {"n_prompt": 16, "n_gen": 8, "reps": 2, "warmup": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get_json(url: str, body: dict | None = None, timeout: float = 5.0) -> object:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


@pytest.fixture(scope="module")
def hf_folder() -> str:
    from meltbench.models.resolve import resolve_model

    folder = resolve_model("gemma3-270m-q4_k_m", formats=("hf",)).path
    assert (Path(folder) / "tokenizer.json").is_file()
    return str(folder)


@pytest.fixture(scope="module")
def mlx_server(hf_folder, tmp_path_factory):
    """``python -m mlx_lm server`` on a free loopback port; yields the /v1 URL."""
    tmp = tmp_path_factory.mktemp("mlx-server")
    log = tmp / "server.log"
    port = free_port()
    # mlx-lm 0.32 answers GET /v1/models with an empty body when the hub cache folder is
    # missing: give it an (empty) one; nothing is downloaded.
    env = {**os.environ, "HF_HUB_CACHE": str(tmp / "hub"), "HF_HUB_OFFLINE": "1"}
    (tmp / "hub").mkdir()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlx_lm", "server", "--model", hf_folder,
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlx_lm server exited with {proc.returncode}: {log.read_text()}")
            try:
                if _get_json(f"{url}/models").get("data"):  # type: ignore[union-attr]
                    break
            except (urllib.error.URLError, OSError, ValueError, AttributeError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlx_lm server did not answer in 180 s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        # /health is ok before the model is loaded: one completion makes it ready
        _get_json(
            f"{url}/completions",
            {"model": hf_folder, "prompt": "Hello", "max_tokens": 1},
            timeout=300,
        )
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_completions_with_the_client_side_tokenizer(mlx_server, hf_folder):
    result = meltbench.run(engine="openai", endpoint=mlx_server, model=hf_folder, **SMALL)
    assert result.ok, result.failure
    e = result.engine
    assert e["prompt_mode"] == "text" and e["prompt_counted_by"] == "client"
    assert "HTTP 404" in e["token_prompt_error"]  # token arrays: refused, text instead
    assert e["client_tokenizer"]["library"] == "tokenizers"
    assert e["client_tokenizer"]["eos_ids"] == [1, 106]  # <eos>, <end_of_turn>
    assert e["text_overhead_tokens"] == 1  # BOS
    for rep in result.repetitions:
        # the server's own count agrees with the client's tokenizer, token for token
        assert rep.counters["prompt_tokens"] == SMALL["n_prompt"]
        assert rep.counters["completion_tokens"] == SMALL["n_gen"]
        assert rep.counters["server_peak_rss_bytes"] >= rep.counters["server_rss_bytes"] > 1e8
    assert e["server_process"]["pid"] != os.getpid()
    for name in ("ttft_ms", "decode_tps"):
        assert result.metrics[name].n == SMALL["reps"]
    assert result.metrics["itl_ms"].n == SMALL["reps"] * (SMALL["n_gen"] - 1)  # every gap


def test_chat_completions_counted_by_the_servers_usage(mlx_server, hf_folder):
    result = meltbench.run(
        engine="openai", endpoint=mlx_server, model=hf_folder,
        engine_options={"api": "chat"}, **SMALL,
    )  # fmt: skip
    assert result.ok, result.failure
    assert result.engine["api"] == "chat" and result.engine["prompt_counted_by"] == "usage"
    # mlx-lm without a chat template wraps the message in "USER: ...\nASSISTANT:"
    assert result.engine["text_overhead_tokens"] > 1
    assert all(r.counters["prompt_tokens"] == SMALL["n_prompt"] for r in result.repetitions)


def test_the_run_table_says_whose_memory_it_is(mlx_server, hf_folder):
    proc = subprocess.run(
        [sys.executable, "-m", "meltbench.cli", "run", "--engine", "openai",
         "--endpoint", mlx_server, "--model", hf_folder, "-p", "16", "-n", "8", "-r", "1",
         "--no-db"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "(client)" in proc.stdout
    assert "is the client's (meltbench's worker), not the server's" in proc.stdout
    assert "server " in proc.stdout and "peak (VmHWM, since it started)" in proc.stdout
