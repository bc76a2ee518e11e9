"""MNN-LLM on the default model, end to end, offline.

The default alias (Gemma 3 270M Q4_K_M) is exported once into meltbench's cache: GGUF ->
dequantized Hugging Face folder -> MNN-LLM folder (int4, MNN's llmexport in a child
process), then run by ``meltbench run --engine mnn`` in the worker, as a user runs it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import RUN_METRICS

pytestmark = pytest.mark.integration

# Plain import: the test set-up installs the mnn extra; a missing one must fail CI.
# (llmexport cannot be imported as a package: see meltbench.models.mnn_build.)
import MNN  # noqa: E402, F401

assert importlib.util.find_spec("llmexport") is not None, "pip install 'meltbench[mnn]'"


def cli(*args: str, cwd: Path, timeout: int = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meltbench.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip


@pytest.fixture(scope="module")
def mnn_folder() -> Path:
    """The default model's MNN-LLM folder in meltbench's cache (built on first use)."""
    from meltbench.models.derived import cached_from_gguf
    from meltbench.models.resolve import resolve_model

    return cached_from_gguf(resolve_model("gemma3-270m-q4_k_m").path, "mnn")


def test_default_model_runs_with_every_metric_and_is_stored(mnn_folder, tmp_path):
    db = tmp_path / "r.db"
    proc = cli("run", "--engine", "mnn", "-p", "32", "-n", "8", "-r", "2", "--warmup", "1",
               "--db", str(db), "-f", "json", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert data["status"] == "ok", data.get("failure")
    for name in RUN_METRICS:
        value = data["metrics"][name]
        value = value["median"] if isinstance(value, dict) else value
        assert value and value > 0, name
    assert data["model"]["quant"] == "int4"
    engine = data["engine"]
    assert engine["name"] == "mnn" and engine["runtime_settings"]["thread_num"] == 2
    timed = [r for r in data["repetitions"] if r["kind"] == "timed"]
    assert len(timed) == 2 and all(len(r["tokens"]) == 8 for r in timed)
    # greedy on the same prompt: every repetition generates the same tokens
    assert timed[0]["tokens"] == timed[1]["tokens"]
    with sqlite3.connect(db) as conn:
        (status,) = conn.execute("SELECT status FROM runs").fetchone()
    assert status == "ok"


def test_step_loop_gives_the_tokens_of_mnns_own_generate(mnn_folder, tmp_path):
    """meltbench's step loop (Llm.forward + argmax) and MNN's generate(ids, n) produce the
    same greedy tokens (in a child process: MNN's bindings can crash at interpreter exit)."""
    script = textwrap.dedent(f"""
        import importlib, json, os
        from meltbench.engines.base import EngineSettings, ModelHandle
        from meltbench.engines.mnn_llm import MnnEngine
        eng = MnnEngine(EngineSettings(threads=2, n_ctx=256, batch=512, ubatch=512))
        eng.load(ModelHandle(ref="m", format="mnn", path={str(mnn_folder)!r}))
        prompt = [2] + list(range(1000, 1031))
        eng.reset()
        mine = list(eng.stream(prompt, 12))
        llm = importlib.import_module("MNN.llm").create({str(mnn_folder / "config.json")!r})
        llm.set_config({{"thread_num": 2, "sampler_type": "greedy"}})
        llm.load()
        llm.reset(); llm.generate_init()
        theirs = [int(t) for t in llm._c_obj.generate(prompt, 12)]
        print(json.dumps({{"mine": mine, "theirs": theirs, "n_vocab": eng.n_vocab}}), flush=True)
        os._exit(0)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["n_vocab"] == 262144
    theirs = out["theirs"]
    assert theirs, "MNN's generate() returned nothing"
    # generate() stops early at an end-of-generation token; up to there they are equal
    assert out["mine"][: len(theirs)] == theirs


def test_bad_model_files_are_refused_with_one_line(tmp_path):
    broken = tmp_path / "broken-mnn"
    broken.mkdir()
    (broken / "llm_config.json").write_text("{}")
    (broken / "config.json").write_text("not json")
    fake_pte = tmp_path / "model.pte"
    fake_pte.write_bytes(b"\0" * 64)
    fake_litertlm = tmp_path / "model.litertlm"
    fake_litertlm.write_bytes(b"PK\3\4" + b"\0" * 60)
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "llm_config.json").write_text("{}")
    (no_weights / "config.json").write_text('{"llm_model": "llm.mnn"}')
    cases = [
        (broken, "config.json is not readable JSON"),
        (no_weights, "has no llm.mnn"),
        (fake_pte, "not an ExecuTorch program"),
        (fake_litertlm, "not a LiteRT-LM file"),
    ]
    for model, expected in cases:
        proc = cli("run", "--engine", "mnn", "--model", str(model), "--db", str(tmp_path / "r.db"),
                   cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 2, (model, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (model, proc.stderr)
    assert not (tmp_path / "r.db").exists()


def test_dtype_other_than_the_folders_is_refused(mnn_folder, tmp_path):
    proc = cli("run", "--engine", "mnn", "--model", str(mnn_folder), "--dtype", "int8", "-p", "8",
               "-n", "2", "-r", "1", "--no-db", cwd=tmp_path)  # fmt: skip
    assert proc.returncode != 0
    assert "holds int4 weights" in proc.stdout + proc.stderr
