"""The MLX engine (mlx-lm) end to end, on a tiny random-weight Llama built here.

The model (2 layers, hidden size 64, vocabulary 512, 139,584 float32 parameters; sharp
attention, see :func:`build_tiny`) is written with transformers into a temporary Hugging
Face folder, so nothing is downloaded. Runs are pp16+tg8 and take a few seconds each,
mostly importing mlx-lm (which imports transformers and torch). The default alias
through MLX (Gemma 3 270M, GGUF converted to a bfloat16 HF folder and cached, about
1.5 minutes the first time) runs last, when the converter and the model package are
installed.
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
from meltbench.engines.base import EngineSettings, ModelHandle
from meltbench.errors import UsageError
from meltbench.workloads.synthetic import synthetic_tokens
from tests.helpers import RUN_METRICS as METRICS

pytestmark = pytest.mark.integration

os.environ.setdefault("HF_HUB_OFFLINE", "1")

VOCAB = 512
N_PROMPT, N_GEN = 16, 8


def build_tiny(folder: Path, arch: str = "llama") -> tuple[Path, int]:
    """A tiny random ``arch`` folder (float32 safetensors) and its parameter count.

    RoPE base 100 (written by transformers 5 as ``rope_parameters`` only) and query/key
    projections scaled by 20 make attention sharp, so positions and the KV cache change
    the logits by far more than rounding: a wrong RoPE base moves them by about 0.6.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        arch,
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rope_theta=100.0,
        bos_token_id=1,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(20)
            layer.self_attn.k_proj.weight.mul_(20)
    model.save_pretrained(folder, safe_serialization=True)
    return folder, sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The tiny Llama every test here shares."""
    return build_tiny(tmp_path_factory.mktemp("mlx") / "tiny-llama")


def transformers_greedy(folder: Path, prompt: list[int], n_gen: int) -> tuple[list[int], Any]:
    """Greedy tokens (no KV cache: the whole sequence each step) and the prompt's logits
    (numpy, shape (len(prompt), VOCAB)) from transformers in float32."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = torch.tensor([prompt])
    tokens = []
    with torch.no_grad():
        logits = model(ids).logits[0].numpy()
        for _ in range(n_gen):
            token = int(model(ids).logits[0, -1].argmax())
            tokens.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return tokens, logits


def make_engine(folder: Path, dtype: str | None = None, **options: Any) -> Any:
    from meltbench.engines.mlx import MlxEngine

    settings = EngineSettings(
        threads=2, n_ctx=64, batch=512, ubatch=512, dtype=dtype, options=options
    )
    engine = MlxEngine(settings)
    engine.load(ModelHandle(ref=str(folder), format="hf", path=str(folder)))
    return engine


def greedy(engine: Any, prompt: list[int], n_gen: int, depth: list[int] | None = None) -> list[int]:
    engine.reset()
    if depth:
        engine.extend(depth)
    return list(engine.stream(prompt, n_gen))


def prompt_for(n: int = N_PROMPT, seed: int = 0, bos: int | None = 1) -> list[int]:
    return synthetic_tokens(n, VOCAB, seed, bos)


@pytest.fixture(scope="module")
def engine32(tiny: tuple[Path, int]) -> Any:
    engine = make_engine(tiny[0], "float32")
    yield engine
    engine.unload()


@pytest.fixture(scope="module")
def api_run(tiny: tuple[Path, int]) -> Any:
    return meltbench.run(
        engine="mlx", model=str(tiny[0]), n_prompt=N_PROMPT, n_gen=N_GEN, reps=2, warmup=1
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meltbench.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


# -- through the worker -----------------------------------------------------------------


def test_api_run_every_metric(api_run: Any) -> None:
    r = api_run
    assert r.ok, r.failure
    assert r.test == "pp16+tg8"
    for name in METRICS:
        assert name in r.metrics, name
        assert r.metrics[name].min > 0, name
    assert r.metrics["ttft_ms"].n == 2
    assert r.metrics["itl_ms"].n == 2 * (N_GEN - 1)
    for e2e, ttft in zip(r.metrics["e2e_ms"].samples, r.metrics["ttft_ms"].samples, strict=True):
        assert e2e >= ttft


def test_api_run_decode_tps_from_token_times(api_run: Any) -> None:
    timed = [rep for rep in api_run.repetitions if rep.kind == "timed"]
    assert len(timed) == 2 and len(api_run.repetitions) == 3
    expected = [(N_GEN - 1) / ((rep.token_ns[-1] - rep.token_ns[0]) / 1e9) for rep in timed]
    assert api_run.metrics["decode_tps"].samples == pytest.approx(expected, rel=1e-12)
    for rep in api_run.repetitions:
        assert len(rep.tokens) == N_GEN and len(rep.token_ns) == N_GEN
        assert rep.token_ns == sorted(rep.token_ns) and rep.token_ns[0] > rep.t_start_ns


def test_api_run_tokens_deterministic_and_equal_in_process(api_run: Any, engine32: Any) -> None:
    tokens = [rep.tokens for rep in api_run.repetitions]
    assert tokens[0] == tokens[1] == tokens[2]
    # the worker's prompt: synthetic ids, seed 0, BOS (config bos_token_id 1) first
    assert tokens[0] == greedy(engine32, prompt_for(), N_GEN)
    assert all(0 <= t < VOCAB for t in tokens[0])


def test_api_run_engine_and_model_info(api_run: Any, tiny: tuple[Path, int]) -> None:
    from meltbench.engines.mlx import default_prefill_step_size

    info = api_run.engine
    assert info["name"] == "mlx"
    assert info["library"] == "mlx-lm"
    assert info["version"] == version("mlx-lm")
    assert info["mlx_version"] == version("mlx")
    assert info["device"] == "cpu"
    assert info["dtype"] == "float32"
    assert info["params_by_dtype"] == {"float32": tiny[1]}
    assert info["n_params"] == tiny[1] == 139_584
    assert info["weights_bytes"] == 4 * tiny[1]
    assert info["architecture"] == "llama"
    assert info["model_class"] == "mlx_lm.models.llama.Model"
    assert info["quantization"] is None
    assert info["config_overrides"] == {"rope_theta": 100.0}
    assert info["prefill_step_size"] == default_prefill_step_size() == 2048
    assert info["async_eval"] is True
    assert info["n_threads"] is None
    assert info["bos_token_id"] == 1
    assert info["gpu_available"] is (info["metal_available"] or info["cuda_available"])
    if sys.platform == "linux":
        assert "libmlx.so" in info["libraries"]
    assert api_run.model["format"] == "hf"
    assert api_run.model["n_params"] == tiny[1]


def test_cli_bfloat16_json(tiny: tuple[Path, int]) -> None:
    proc = cli(
        "run",
        "--engine",
        "mlx",
        "--model",
        str(tiny[0]),
        "-p",
        str(N_PROMPT),
        "-n",
        str(N_GEN),
        "-r",
        "2",
        "--warmup",
        "1",
        "--dtype",
        "bfloat16",
        "--no-db",
        "--format",
        "json",
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "ok" and data["failure"] is None
    assert data["engine"]["dtype"] == "bfloat16"
    assert data["engine"]["params_by_dtype"] == {"bfloat16": tiny[1]}
    assert data["engine"]["weights_bytes"] == 2 * tiny[1]
    for name in METRICS:
        assert data["metrics"][name]["min"] > 0, name
    reps = data["repetitions"]
    assert len(reps) == 3
    assert all(len(rep["tokens"]) == N_GEN for rep in reps)
    assert reps[0]["tokens"] == reps[1]["tokens"] == reps[2]["tokens"]
    # the same bfloat16 computation in this process gives the same tokens
    engine = make_engine(tiny[0], "bfloat16")
    assert reps[0]["tokens"] == greedy(engine, prompt_for(), N_GEN)


def test_cli_bad_dtype_is_usage_error(tiny: tuple[Path, int]) -> None:
    proc = cli("run", "--engine", "mlx", "--model", str(tiny[0]), "--dtype", "int4", "--no-db")
    assert proc.returncode == 2
    assert "no dtype 'int4'" in proc.stderr and "bfloat16, float16, float32" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_api_usage_errors(tiny: tuple[Path, int]) -> None:
    model = str(tiny[0])
    with pytest.raises(UsageError, match="no dtype 'float64'"):
        meltbench.run(engine="mlx", model=model, dtype="float64")
    with pytest.raises(UsageError, match="engine 'mlx' has no profiler; drop --profile"):
        meltbench.run(engine="mlx", model=model, profile=True)
    with pytest.raises(UsageError, match="no device 'cuda'; choose: cpu, gpu"):
        meltbench.run(engine="mlx", model=model, device="cuda")
    with pytest.raises(UsageError, match="prefill_step_size must be a positive integer"):
        meltbench.run(engine="mlx", model=model, engine_options={"prefill_step_size": 0})
    with pytest.raises(UsageError, match="async_eval must be true or false"):
        meltbench.run(engine="mlx", model=model, engine_options={"async_eval": "yes"})
    with pytest.raises(UsageError, match="has no option n_gpu_layers"):
        meltbench.run(engine="mlx", model=model, engine_options={"n_gpu_layers": 99})


def test_cli_profile_refused(tiny: tuple[Path, int]) -> None:
    proc = cli("run", "--engine", "mlx", "--model", str(tiny[0]), "--profile", "--no-db")
    assert proc.returncode == 2
    assert "engine 'mlx' has no profiler" in proc.stderr


def test_gpu_device_refused_without_gpu(tiny: tuple[Path, int]) -> None:
    import mlx.core as mx

    if mx.is_available(mx.gpu):
        pytest.skip("this MLX has a GPU backend")
    with pytest.raises(UsageError, match="no GPU here"):
        meltbench.run(engine="mlx", model=str(tiny[0]), device="gpu")


def test_gguf_file_is_refused_with_hint(tiny_gguf: Path) -> None:
    with pytest.raises(UsageError, match=r"cannot load a gguf model .* it loads: hf; convert it"):
        meltbench.run(engine="mlx", model=str(tiny_gguf))


def test_depth_run_matches_in_process(tiny: tuple[Path, int], engine32: Any) -> None:
    r = meltbench.run(
        engine="mlx",
        model=str(tiny[0]),
        device="cpu",
        n_depth=12,
        n_prompt=8,
        n_gen=4,
        reps=1,
        warmup=0,
    )
    assert r.ok, r.failure
    assert r.test == "pp8+tg4@d12"
    (rep,) = r.repetitions
    assert rep.depth_fill_ns is not None and rep.depth_fill_ns > 0
    depth = synthetic_tokens(12, VOCAB, 1, 1)  # worker: seed + 1, BOS first
    prompt = synthetic_tokens(8, VOCAB, 0, None)  # no BOS after a depth fill
    assert rep.tokens == greedy(engine32, prompt, 4, depth=depth)
    # a cache filled by extend() continues exactly like one prefilled with the same tokens
    assert rep.tokens == greedy(engine32, depth + prompt, 4)


# -- in process -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_tokens_and_logits_as_transformers_float32(
    tiny: tuple[Path, int], engine32: Any, seed: int
) -> None:
    import mlx.core as mx
    import numpy as np

    prompt = prompt_for(seed=seed)
    expected, logits = transformers_greedy(tiny[0], prompt, N_GEN)
    assert greedy(engine32, prompt, N_GEN) == expected
    ours = np.array(engine32._model(mx.array([prompt]))[0])
    assert ours.shape == logits.shape == (N_PROMPT, VOCAB)
    assert np.abs(ours - logits).max() < 1e-4  # float32 rounding; a wrong RoPE gives ~0.6


def test_qwen2_same_tokens_as_transformers(tmp_path: Path) -> None:
    # mlx-lm's Qwen2 defaults to RoPE base 1,000,000 when config.json has no rope_theta
    folder, n_params = build_tiny(tmp_path / "tiny-qwen2", "qwen2")
    engine = make_engine(folder, "float32")
    info = engine.info()
    assert info["architecture"] == "qwen2" and info["n_params"] == n_params
    assert info["config_overrides"] == {"rope_theta": 100.0}
    for seed in (0, 1):
        prompt = prompt_for(seed=seed)
        assert greedy(engine, prompt, N_GEN) == transformers_greedy(folder, prompt, N_GEN)[0]


def test_chunked_prefill_and_sequential_loop_give_same_tokens(
    tiny: tuple[Path, int], engine32: Any
) -> None:
    prompt = prompt_for(40, seed=3)
    reference = greedy(engine32, prompt, N_GEN)
    chunked = make_engine(tiny[0], "float32", prefill_step_size=7)
    assert chunked.info()["prefill_step_size"] == 7
    sequential = make_engine(tiny[0], "float32", async_eval=False)
    assert sequential.info()["async_eval"] is False
    assert greedy(chunked, prompt, N_GEN) == reference
    assert greedy(sequential, prompt, N_GEN) == reference


def test_stream_counts_and_cache_positions(engine32: Any) -> None:
    assert greedy(engine32, [5], 1) == greedy(engine32, [5], 3)[:1]
    assert len(greedy(engine32, prompt_for(), 1)) == 1
    engine32.reset()
    engine32.extend(prompt_for(10))
    assert [c.offset for c in engine32._cache] == [10, 10]
    tokens = list(engine32.stream(prompt_for(6, seed=4, bos=None), 5))
    assert len(tokens) == 5
    # 10 + 6 prompt tokens, then 4 decode steps (the 5th token is never fed back)
    assert [c.offset for c in engine32._cache] == [20, 20]
    engine32.reset()
    assert [c.offset for c in engine32._cache] == [0, 0]
    with pytest.raises(ValueError, match="at least one prompt token"):
        list(engine32.stream([], 2))


def test_n_vocab_bos_and_default_dtype(tiny: tuple[Path, int]) -> None:
    engine = make_engine(tiny[0])  # no dtype: as stored
    assert engine.n_vocab == VOCAB
    assert engine.bos_token() == 1
    assert engine.info()["dtype"] == "float32"
    assert engine.counters() is None


def test_float16_cast(tiny: tuple[Path, int], engine32: Any) -> None:
    engine = make_engine(tiny[0], "float16")
    info = engine.info()
    assert info["dtype"] == "float16" and info["params_by_dtype"] == {"float16": tiny[1]}
    assert info["weights_bytes"] == 2 * tiny[1]
    tokens = greedy(engine, prompt_for(), N_GEN)
    assert len(tokens) == N_GEN and all(0 <= t < VOCAB for t in tokens)
    assert tokens[0] == greedy(engine32, prompt_for(), 1)[0]


def test_mlx_quantized_folder(tiny: tuple[Path, int], tmp_path: Path) -> None:
    """An MLX-converted 4-bit folder (what ``mlx_lm.convert -q`` writes) loads and runs."""
    from mlx_lm.utils import load_model, quantize_model, save_config, save_model

    from meltbench.engines.mlx import rope_overrides

    config = json.loads((tiny[0] / "config.json").read_text())
    model, config = load_model(tiny[0], model_config=rope_overrides(config))
    model, config = quantize_model(model, config, group_size=64, bits=4)
    folder = tmp_path / "tiny-q4"
    save_model(folder, model)
    save_config(config, folder / "config.json")
    engine = make_engine(folder, "float16")
    info = engine.info()
    assert info["quantization"] == {"group_size": 64, "bits": 4, "mode": "affine"}
    assert info["config_overrides"] == {}  # save_config wrote rope_theta at the top level
    # integer codes stay uint32 under a cast; the 320 RMSNorm weights and the scales and
    # biases (2 per group of 64, 139,264 / 64 groups) are floating
    assert info["params_by_dtype"] == {"uint32": 139_264 // 8, "float16": 320 + 2 * 2176}
    assert info["dtype"] == "float16"
    assert info["n_params"] == tiny[1]
    tokens = greedy(engine, prompt_for(), N_GEN)
    assert len(tokens) == N_GEN and tokens == greedy(engine, prompt_for(), N_GEN)


def _folder(tmp: Path, config: dict[str, Any], **files: Any) -> Path:
    tmp.mkdir()
    (tmp / "config.json").write_text(json.dumps(config))
    for name, content in files.items():
        (tmp / f"{name}.json").write_text(json.dumps(content))
    return tmp


def test_bos_from_folder_rules(tmp_path: Path) -> None:
    from meltbench.engines.mlx import bos_from_folder

    def bos(name: str, config: dict[str, Any], **files: Any) -> int | None:
        return bos_from_folder(_folder(tmp_path / name, config, **files), config)

    template = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A"}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [7], "tokens": ["<s>"]}},
    }
    assert bos("plain", {"bos_token_id": 7}) == 7  # no tokenizer files: config decides
    assert bos("none", {"bos_token_id": None}) is None
    assert bos("nested", {"text_config": {"bos_token_id": 2}}) == 2
    assert bos("list", {"bos_token_id": [3, 4]}) == 3
    assert bos("off", {"bos_token_id": 7}, tokenizer_config={"add_bos_token": False}) is None
    assert bos("on", {"bos_token_id": 7}, tokenizer_config={"add_bos_token": True}) == 7
    byte_level = {"post_processor": {"type": "ByteLevel"}}
    assert bos("qwen", {"bos_token_id": 7}, tokenizer=byte_level) is None
    assert bos("llama3", {"bos_token_id": 7}, tokenizer={"post_processor": template}) == 7
    seq = {"post_processor": {"type": "Sequence", "processors": [{"type": "ByteLevel"}, template]}}
    assert bos("seq", {"bos_token_id": 7}, tokenizer=seq) == 7
    assert bos("nullpp", {"bos_token_id": 7}, tokenizer={"post_processor": None}) == 7


# -- the default alias through MLX --------------------------------------------------------


def test_default_model_gemma3_through_mlx() -> None:
    r = meltbench.run(
        engine="mlx", model="gemma3-270m-q4_k_m", n_prompt=16, n_gen=8, reps=1, warmup=0
    )
    assert r.ok, r.failure
    assert r.model["format"] == "hf" and r.model["architecture"] == "gemma3_text"
    info = r.engine
    assert info["architecture"] == "gemma3_text"
    assert info["dtype"] == "bfloat16"
    assert info["n_params"] == r.model["n_params"] == 268_098_176
    assert info["bos_token_id"] == 2
    (rep,) = r.repetitions
    assert len(rep.tokens) == 8 and all(0 <= t < 262_144 for t in rep.tokens)
    for name in METRICS:
        assert r.metrics[name].min > 0, name


def test_rope_overrides() -> None:
    from meltbench.engines.mlx import rope_overrides

    flat = {"rope_parameters": {"rope_theta": 5e5, "rope_type": "default"}}
    assert rope_overrides(flat) == {"rope_theta": 5e5}
    scaled = {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}
    assert rope_overrides({"rope_parameters": scaled}) == {
        "rope_theta": 5e5,
        "rope_scaling": scaled,
    }
    gemma = {
        "rope_parameters": {
            "full_attention": {"rope_theta": 1e6, "rope_type": "linear", "factor": 8.0},
            "sliding_attention": {"rope_theta": 1e4, "rope_type": "default"},
        }
    }
    assert rope_overrides(gemma) == {
        "rope_theta": 1e6,
        "rope_local_base_freq": 1e4,
        "rope_scaling": {"rope_theta": 1e6, "rope_type": "linear", "factor": 8.0},
    }
    nested = {"model_type": "gemma3", "text_config": {"a": 1, **flat}}
    assert rope_overrides(nested) == {"text_config": {"a": 1, **flat, "rope_theta": 5e5}}
    assert rope_overrides({"rope_theta": 1e4, **flat}) == {}  # old keys win
    assert rope_overrides({"rope_scaling": None, "rope_theta": None}) == {}
