"""The transformers engine end to end: every random-weight preset, the real Gemma 3 270M
(GGUF dequantized on load, and the exported Hugging Face folder), dtypes, depth, the
profiler, bad input, and greedy agreement with llama.cpp.

Workloads are tiny (pp16+tg8 for presets, pp32/pp64 for Gemma) so that each run takes
seconds on 2 cores, most of it importing torch and transformers in the worker. The
Gemma 3 HF folder is exported once and cached under ``~/.cache/meltbench/derived``
(about 1 to 2 minutes the first time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

import meltbench
from meltbench.errors import UsageError
from meltbench.measure.profile import CATEGORIES
from meltbench.models.presets import PRESETS
from tests.helpers import RUN_METRICS as METRICS
from tests.unit.test_presets import EXPECTED_CLASS, EXPECTED_PARAMS

pytestmark = pytest.mark.integration

os.environ.setdefault("HF_HUB_OFFLINE", "1")

N_PROMPT, N_GEN, THREADS = 16, 8, 2
GEMMA_PARAMS = 268_098_176
GEMMA_VOCAB = 262_144


def run_tf(model: str, **options: Any) -> meltbench.RunResult:
    """A transformers run with the small defaults of this file."""
    kw: dict[str, Any] = dict(
        engine="transformers", n_prompt=N_PROMPT, n_gen=N_GEN, reps=2, warmup=1, threads=THREADS
    )
    kw.update(options)
    return meltbench.run(model=model, **kw)


def check_run(result: Any, n_prompt: int, n_gen: int, n_timed: int) -> None:
    """Status, every metric, and the metrics recomputed from the raw timestamps."""
    assert result.ok, result.failure
    for name in METRICS:
        assert name in result.metrics, name
        assert result.metrics[name].min > 0, name
    timed = [r for r in result.repetitions if r.kind == "timed"]
    assert len(timed) == n_timed
    assert result.metrics["ttft_ms"].n == n_timed
    assert result.metrics["itl_ms"].n == n_timed * (n_gen - 1)
    for rep in result.repetitions:
        assert len(rep.tokens) == len(rep.token_ns) == n_gen
        assert rep.token_ns == sorted(rep.token_ns) and rep.token_ns[0] > rep.t_start_ns
    samples = zip(
        timed,
        result.metrics["decode_tps"].samples,
        result.metrics["prefill_tps"].samples,
        result.metrics["ttft_ms"].samples,
        result.metrics["e2e_ms"].samples,
        strict=True,
    )
    for rep, decode, prefill, ttft, e2e in samples:
        first, last = rep.token_ns[0], rep.token_ns[-1]
        assert decode == pytest.approx((n_gen - 1) / ((last - first) / 1e9))
        assert ttft == pytest.approx((first - rep.t_start_ns) / 1e6)
        assert prefill == pytest.approx(n_prompt / ((first - rep.t_start_ns) / 1e9))
        assert e2e == pytest.approx((last - rep.t_start_ns) / 1e6)
        assert e2e >= ttft


def check_engine_info(info: dict[str, Any], dtype: str, architecture: str, n_params: int):
    assert info["name"] == "transformers"
    assert info["library"] == "transformers"
    assert info["version"] == version("transformers")
    # torch.__version__ keeps the build's local tag (2.14.1+cu130, 2.13.0+cpu), which
    # the distribution's version drops
    assert info["torch_version"].split("+")[0] == version("torch")
    assert info["device"] == "cpu"
    assert info["dtype"] == dtype
    assert info["architecture"] == architecture
    assert info["n_params"] == n_params
    assert info["n_threads"] == THREADS
    assert info["build"]["cpu_capability"]
    assert isinstance(info["build"]["mkldnn"], bool)
    assert isinstance(info["build"]["openmp"], bool)


# -- random-weight presets --------------------------------------------------------------


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_runs_end_to_end(preset):
    result = run_tf(preset, weights="random")
    check_run(result, N_PROMPT, N_GEN, n_timed=2)
    assert result.test == f"pp{N_PROMPT}+tg{N_GEN}"
    check_engine_info(
        result.engine, "float32", PRESETS[preset]["model_type"], EXPECTED_PARAMS[preset]
    )
    assert result.engine["model_class"] == EXPECTED_CLASS[preset]
    assert result.engine["format"] == "config"
    assert result.model["format"] == "config" and result.model["weights"] == "random"
    # same seeded weights, same prompt, greedy: every request gives the same tokens
    tokens = [r.tokens for r in result.repetitions]
    assert tokens[0] == tokens[1] == tokens[2]
    assert all(0 <= t < 32000 for t in tokens[0])
    assert result.profile is None
    assert result.repetitions[0].counters is None


def test_bfloat16_on_a_preset():
    result = run_tf("gemma3", weights="random", dtype="bfloat16")
    check_run(result, N_PROMPT, N_GEN, n_timed=2)
    check_engine_info(result.engine, "bfloat16", "gemma3_text", EXPECTED_PARAMS["gemma3"])
    assert result.settings["dtype"] == "bfloat16"


@pytest.mark.parametrize("preset", ["llama", "mamba2"])
def test_depth_fills_the_cache_before_each_request(preset):
    result = run_tf(preset, weights="random", n_depth=24, reps=1, warmup=1)
    check_run(result, N_PROMPT, N_GEN, n_timed=1)
    assert result.test == f"pp{N_PROMPT}+tg{N_GEN}@d24"
    assert all(r.depth_fill_ns and r.depth_fill_ns > 0 for r in result.repetitions)
    assert result.settings["n_ctx"] == 24 + N_PROMPT + N_GEN


def test_cli_json_with_profile_on_a_hybrid():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "meltbench.cli",
            "run",
            "--engine",
            "transformers",
            "--model",
            "falcon_h1",
            "--weights",
            "random",
            "-p",
            str(N_PROMPT),
            "-n",
            str(N_GEN),
            "-r",
            "2",
            "--warmup",
            "1",
            "-t",
            str(THREADS),
            "--profile",
            "--no-db",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert data["status"] == "ok" and data["test"] == f"pp{N_PROMPT}+tg{N_GEN}"
    for name in METRICS:
        assert data["metrics"][name]["min"] > 0, name
    assert data["engine"]["architecture"] == "falcon_h1"
    assert data["engine"]["n_params"] == EXPECTED_PARAMS["falcon_h1"]
    profile = data["profile"]
    cats = profile["categories_ms"]
    assert set(cats) == set(CATEGORIES)
    # Falcon-H1 runs attention and a Mamba2 mixer in every block, with RMSNorms and
    # a SwiGLU MLP: every category has time
    for category in ("gemm", "attention", "ssm_scan", "norm", "activation"):
        assert cats[category] > 0, category
    total = sum(cats.values())
    assert total > 0
    assert cats["gemm"] == max(cats["gemm"], cats["attention"], cats["norm"])
    # categories add up to the profiled request (profiler overhead outside ops is small)
    assert total <= profile["wall_ms"] * 1.05
    assert profile["n_tokens"] == N_GEN
    assert profile["source"].startswith("torch.profiler")
    ops = profile["ops"]
    assert 0 < len(ops) <= 20
    assert [o["ms"] for o in ops] == sorted((o["ms"] for o in ops), reverse=True)
    for op in ops:
        assert set(op) == {"name", "category", "ms", "count"}
        assert op["category"] in CATEGORIES and op["count"] >= 1
    names = {o["name"]: o["category"] for o in ops}
    assert names.get("Linear: aten::mm") == "gemm"
    assert names.get("FalconH1Mixer: (python)") == "ssm_scan"


# -- bad input --------------------------------------------------------------------------


def test_bad_dtype_is_a_usage_error():
    with pytest.raises(UsageError, match=r"no dtype 'int4'.*bfloat16, float16, float32"):
        run_tf("llama", weights="random", dtype="int4")


def test_bad_dtype_on_the_cli_exits_2():
    args = ["--engine", "transformers", "--model", "llama", "--weights", "random"]
    proc = subprocess.run(
        [sys.executable, "-m", "meltbench.cli", "run", *args, "--dtype", "fp8", "--no-db"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "no dtype 'fp8'" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_device_is_a_usage_error():
    with pytest.raises(UsageError, match="no device 'tpu'"):
        run_tf("llama", weights="random", device="tpu")


def test_missing_cuda_device_is_a_usage_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(UsageError, match="device 'cuda' is not available"):
        run_tf("llama", weights="random", device="cuda")


def test_config_json_with_random_weights(tmp_path):
    """A config.json path (here the llama preset written out) builds the same model."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(PRESETS["llama"]))
    result = run_tf(str(config), weights="random", reps=1, warmup=0)
    check_run(result, N_PROMPT, N_GEN, n_timed=1)
    assert result.model["format"] == "config" and result.model["architecture"] == "llama"
    assert result.engine["n_params"] == EXPECTED_PARAMS["llama"]


def test_unknown_preset_is_a_usage_error():
    with pytest.raises(UsageError, match="no architecture preset"):
        run_tf("no-such-arch", weights="random")


def test_export_rejects_bad_input(tmp_path):
    from meltbench.models.hf_export import export_gguf_to_hf
    from tests.helpers import write_tiny_gguf

    tiny = write_tiny_gguf(tmp_path / "tiny.gguf")
    with pytest.raises(UsageError, match="cannot export to dtype 'int4'"):
        export_gguf_to_hf(tiny, tmp_path / "a", dtype="int4")
    with pytest.raises(UsageError, match="GGUF file not found"):
        export_gguf_to_hf(tmp_path / "missing.gguf", tmp_path / "b")
    # a 2-tensor GGUF with llama metadata but no real architecture
    with pytest.raises(UsageError, match=r"transformers cannot read .*tiny\.gguf") as err:
        export_gguf_to_hf(tiny, tmp_path / "c")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "c").exists()


# -- cache continuation, in process -----------------------------------------------------


def _engine(preset: str):
    from meltbench.engines.base import EngineSettings, ModelHandle
    from meltbench.engines.transformers import TransformersEngine

    engine = TransformersEngine(EngineSettings(threads=1, n_ctx=64, batch=512, ubatch=512))
    engine.load(ModelHandle(ref=preset, format="config", path=None))
    return engine


@pytest.mark.parametrize(
    "preset",
    [
        "llama",
        "gemma3",
        "mamba2",
        "falcon_h1",
        "nemotron_h",
        pytest.param(
            "mamba",
            marks=pytest.mark.xfail(
                strict=True,
                reason="transformers 5.23-5.24's Mamba (v1) scan takes no initial state: "
                "a multi-token forward after cached tokens restarts the SSM state",
            ),
        ),
    ],
)
def test_extend_then_forward_equals_one_forward(preset):
    """The cache continues exactly: extend(a) + forward(b) == forward(a + b).

    A forward of ``b`` alone must differ by far more than the tolerance, so the check
    would notice a cache that is ignored.
    """
    import torch

    engine = _engine(preset)
    a, b = list(range(100, 120)), list(range(300, 312))
    engine.reset()
    full = engine._forward(a + b).float()
    engine.reset()
    engine.extend(a)
    cached = engine._forward(b).float()
    engine.reset()
    alone = engine._forward(b).float()
    tol = 1e-4
    assert torch.max(torch.abs(alone - full)).item() > 100 * tol
    assert torch.max(torch.abs(cached - full)).item() < tol
    # stream() after a reset gives the greedy continuation, token by token
    engine.reset()
    streamed = list(engine.stream(a, 4))
    engine.reset()
    tokens = list(a)
    for _ in range(4):
        logits = engine._forward(tokens)
        tokens.append(int(logits.argmax()))
        engine.reset()
    assert streamed == tokens[len(a) :]


def test_profile_classifies_modules_without_the_family_prefix():
    from meltbench.engines.transformers import _generic_name
    from meltbench.measure.profile import classify

    assert classify(_generic_name("MambaRMSNorm", "Mamba")) == "norm"
    assert classify(_generic_name("MambaMixer", "Mamba")) == "ssm_scan"
    assert classify(_generic_name("MambaBlock", "Mamba")) == "other"
    assert classify(_generic_name("MambaRMSNormGated", "Mamba2")) == "norm"
    assert classify(_generic_name("NemotronHMamba2Mixer", "NemotronH")) == "ssm_scan"
    assert classify(_generic_name("Gemma3RMSNorm", "Gemma3")) == "norm"
    assert classify(_generic_name("Gemma3Attention", "Gemma3")) == "attention"
    assert classify(_generic_name("Mamba", "Mamba")) == "ssm_scan"


# -- the real Gemma 3 270M --------------------------------------------------------------


@pytest.fixture(scope="module")
def gemma_gguf() -> Path:
    from meltbench.models.resolve import resolve_model

    return resolve_model("gemma3-270m-q4_k_m").path  # type: ignore[return-value]


@pytest.fixture(scope="module")
def gemma_hf(gemma_gguf) -> Path:
    from meltbench.models.derived import cached_hf_from_gguf

    return cached_hf_from_gguf(gemma_gguf)


def test_exported_folder_is_complete(gemma_hf):
    from meltbench.models.hf_info import read_hf_info

    names = {p.name for p in gemma_hf.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    config = json.loads((gemma_hf / "config.json").read_text())
    assert config["model_type"] == "gemma3_text"
    assert "quantization_config" not in config
    assert config["vocab_size"] == GEMMA_VOCAB
    info = read_hf_info(gemma_hf)
    assert info["quant"] == "bfloat16"
    assert info["n_params"] == GEMMA_PARAMS  # the tied LM head is stored once
    assert info["size_bytes"] == pytest.approx(2 * GEMMA_PARAMS, rel=0.001)


def test_exported_folder_keeps_the_gguf_name(gemma_hf, tmp_path):
    # A folder called "hf" became "Hf" in llama.cpp's convert_hf_to_gguf.py (gguf-py's
    # Metadata falls back to the folder name without _name_or_path; issue 20).
    import shutil

    from gguf.metadata import Metadata

    from meltbench.models.hf_info import read_hf_info

    config = json.loads((gemma_hf / "config.json").read_text())
    assert config["_name_or_path"] == "Gemma 3 270m"  # the GGUF's general.name
    folder = tmp_path / "hf"
    folder.mkdir()
    shutil.copy(gemma_hf / "config.json", folder / "config.json")
    assert Metadata.load(None, folder, None, GEMMA_PARAMS).name == "Gemma 3 270m"
    assert read_hf_info(folder)["name"] == "Gemma 3 270m"


def test_gemma_from_gguf_dequantized(gemma_gguf):
    result = run_tf(str(gemma_gguf), n_prompt=32, n_gen=8, reps=1, warmup=0, dtype="float32")
    check_run(result, 32, 8, n_timed=1)
    check_engine_info(result.engine, "float32", "gemma3_text", GEMMA_PARAMS)
    assert result.engine["format"] == "gguf"
    assert result.model["format"] == "gguf" and result.model["quant"] == "Q4_K_M"
    # fp32 weights of 268M parameters are resident
    assert result.metrics["peak_rss_bytes"].max > 4 * GEMMA_PARAMS


@pytest.fixture(scope="module")
def greedy_pair(gemma_hf):
    """llama.cpp (Q4_K_M) and transformers float32 (exported folder) on the same prompt."""
    kw = dict(n_prompt=64, n_gen=8, reps=1, warmup=0, threads=THREADS)
    ref = meltbench.run(engine="llama.cpp", **kw)
    ours = meltbench.run(engine="transformers", model=str(gemma_hf), dtype="float32", **kw)
    return ref, ours


def test_gemma_from_exported_folder(greedy_pair):
    _, ours = greedy_pair
    check_run(ours, 64, 8, n_timed=1)
    check_engine_info(ours.engine, "float32", "gemma3_text", GEMMA_PARAMS)
    assert ours.model["format"] == "hf" and ours.model["quant"] == "bfloat16"


def test_gemma_bfloat16_from_exported_folder(gemma_hf):
    result = run_tf(str(gemma_hf), n_prompt=32, n_gen=8, reps=1, warmup=1, dtype="bfloat16")
    check_run(result, 32, 8, n_timed=1)
    check_engine_info(result.engine, "bfloat16", "gemma3_text", GEMMA_PARAMS)


#: How far below transformers' best logit llama.cpp's greedy token may lie, teacher-forced
#: on the same tokens. Measured on a 2-core AMD EPYC (Zen 3, AVX2), 5 seeded 64-token
#: prompts x 16 greedy tokens, llama.cpp with and without flash attention: the difference
#: between the logits of two of transformers' 16 best tokens differs between the engines
#: by 0.1 to 0.79 at every position (Q4_K_M weights and 8-bit activations vs float32), so
#: near ties flip; llama.cpp's token was at most 0.311 below transformers' best (0.199
#: without flash attention; 0.026 on the Intel Xeon guest this test was written on).
NEAR_TIE = 1.0
#: cached decode vs one uncached forward, float32 (the extend test's tolerance).
SAME_LOGITS = 1e-4


@pytest.fixture(scope="module")
def gemma_float32(gemma_hf) -> Any:
    """The exported folder in float32, for uncached teacher-forced forwards."""
    import torch
    import transformers

    torch.set_num_threads(THREADS)
    return transformers.AutoModelForCausalLM.from_pretrained(gemma_hf, dtype=torch.float32)


def _gaps_below_best(model: Any, generated: list[int]) -> list[float]:
    """For each generated token: transformers' best logit minus that token's logit, from
    one uncached forward over the greedy pair's prompt and ``generated``."""
    import torch

    from meltbench.workloads.synthetic import synthetic_tokens

    prompt = synthetic_tokens(64, GEMMA_VOCAB, 0, 2)
    with torch.inference_mode():
        logits = model(torch.tensor([prompt + generated])).logits[0, 63 : 63 + len(generated)]
    rows = torch.arange(len(generated))
    return (logits.max(dim=-1).values - logits[rows, generated]).tolist()


def test_greedy_tokens_agree_with_llama_cpp(greedy_pair, gemma_float32):
    """Same synthetic prompt (BOS first: both engines add Gemma's BOS, id 2), greedy.

    The transformers engine's tokens are exactly the greedy continuation that uncached
    forwards give (its cache continues exactly). llama.cpp computes with Q4_K_M weights
    and 8-bit-quantized activations, transformers with the dequantized weights (rounded
    to bfloat16 in the folder) in float32: the sequences agree until a near tie (see
    ``NEAR_TIE``), where they may part. Where depends on llama.cpp's CPU kernels and
    flash attention: measured on an Intel Xeon at index 3 (logits 0.026 apart); on an AMD
    EPYC at index 1 (0.199) without flash attention and at index 0 (0.311: llama.cpp's
    three best first tokens are 0.06 apart) with it.
    """
    ref, ours = greedy_pair
    assert ref.ok and ours.ok, (ref.failure, ours.failure)
    a, b = ref.repetitions[-1].tokens, ours.repetitions[-1].tokens
    first_diff = next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), None)
    print(f"llama.cpp {a}\ntransformers {b}\nfirst difference at index {first_diff}")
    own = _gaps_below_best(gemma_float32, b)
    print("transformers' token below its uncached best:", [round(g, 6) for g in own])
    assert max(own) < SAME_LOGITS
    if first_diff is not None:  # after the common prefix, llama.cpp's choice
        gap = _gaps_below_best(gemma_float32, [*b[:first_diff], a[first_diff]])[-1]
        print(f"llama.cpp's token at index {first_diff}: {gap:.4f} below transformers' best")
        assert gap < NEAR_TIE


def test_llama_cpp_tokens_are_near_ties_for_transformers(greedy_pair, gemma_float32):
    """Teacher-forced on llama.cpp's tokens, each of them is within ``NEAR_TIE`` (logit
    units) of transformers' best: where the greedy sequences part, it is on a near tie."""
    ref, _ = greedy_pair
    gaps = _gaps_below_best(gemma_float32, ref.repetitions[-1].tokens)
    print("llama.cpp token's logit below transformers' best:", [round(g, 4) for g in gaps])
    assert max(gaps) < NEAR_TIE
