"""ExecuTorch for LLMs, end to end, offline: a tiny random-weight Gemma 3 (the default
model's architecture: sliding-window and global layers, GQA, tied embeddings) written here
with transformers, exported once by optimum-executorch in a child process (float32,
custom SDPA, XNNPACK), then run by ``meltbench run --engine executorch`` in the worker.

The default model itself is not exported here: its export takes about 20 minutes on 2
cores (README, "The runtimes phones ship"); its figures are in the engines table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meltbench.workloads.synthetic import synthetic_tokens
from tests.helpers import RUN_METRICS

pytestmark = pytest.mark.integration

# Plain imports: the test set-up installs executorch and optimum-executorch.
import executorch  # noqa: E402, F401
import optimum.exporters.executorch  # noqa: E402, F401
import torch  # noqa: E402
import transformers  # noqa: E402

VOCAB = 512


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(HF folder, .pte) of a tiny random Gemma 3, exported once for the module."""
    root = tmp_path_factory.mktemp("et")
    hf = root / "hf"
    config = transformers.AutoConfig.for_model(
        "gemma3_text", vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
        max_position_embeddings=512, sliding_window=16,
        layer_types=["sliding_attention", "full_attention"], initializer_range=0.3,
        bos_token_id=2, eos_token_id=1, pad_token_id=0, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    model.save_pretrained(hf)
    from meltbench.models.pte_build import build_pte

    pte = root / "tiny.pte"
    build_pte(hf, pte, precision="float32", max_seq_len=128)
    return hf, pte


def run_json(*args: str, cwd: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "meltbench.cli", "run", *args, "-f", "json"],
                          capture_output=True, text=True, timeout=900, cwd=cwd,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_program_runs_with_every_metric_and_matches_transformers_greedy(tiny_gemma, tmp_path):
    hf, pte = tiny_gemma
    assert json.loads(pte.with_suffix(".json").read_text())["precision"] == "float32"
    data = run_json("--engine", "executorch", "--model", str(pte), "-p", "24", "-n", "12",
                    "-r", "2", "--warmup", "1", "-t", "2", "--db", str(tmp_path / "r.db"),
                    cwd=tmp_path)  # fmt: skip
    assert data["status"] == "ok", data.get("failure")
    for name in RUN_METRICS:
        value = data["metrics"][name]
        value = value["median"] if isinstance(value, dict) else value
        assert value and value > 0, name
    engine = data["engine"]
    assert engine["n_threads"] == 2
    assert engine["program_metadata"]["get_max_seq_len"] == 128
    timed = [r for r in data["repetitions"] if r["kind"] == "timed"]
    assert all(len(r["tokens"]) == 12 for r in timed)
    # the same prompt (the worker's seeded synthetic ids, BOS first) in transformers
    # (float32, eager), greedy, EOS ignored
    prompt = synthetic_tokens(24, VOCAB, 0, bos=2)
    model = transformers.AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=12, min_new_tokens=12, do_sample=False,
                             eos_token_id=None, pad_token_id=0)  # fmt: skip
    assert timed[0]["tokens"] == out[0, len(prompt) :].tolist()


def test_depth_fill_then_prompt_and_context_past_the_program_is_refused(tiny_gemma, tmp_path):
    _, pte = tiny_gemma
    data = run_json("--engine", "executorch", "--model", str(pte), "-d", "32", "-p", "16",
                    "-n", "8", "-r", "1", "--warmup", "0", "--no-db", cwd=tmp_path)  # fmt: skip
    assert data["status"] == "ok", data.get("failure")
    proc = subprocess.run([sys.executable, "-m", "meltbench.cli", "run", "--engine", "executorch",
                           "--model", str(pte), "-p", "200", "-n", "8", "-r", "1", "--no-db"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)  # fmt: skip
    assert proc.returncode != 0
    assert "max_seq_len 128" in proc.stdout + proc.stderr
