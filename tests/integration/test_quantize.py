"""Quantization variants of the real default model, made by llama.cpp's quantizer.

Two variants are built (Q4_0 and Q8_0, through :func:`cached_variant`, so a rerun finds
them in the cache) plus one uncached Q4_0 through :func:`requantize`: a few seconds each
on 2 cores. The byte sizes are what llama-cpp-python 0.3.36's llama.cpp writes for Gemma 3
270M: its 262,144 x 640 token embedding (tied to the output) stays Q8_0 in every variant
(Q6_K would need rows of 256), so sizes differ less than the type names suggest.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import gguf
import llama_cpp
import pytest

import meltbench
from meltbench.errors import UsageError
from meltbench.models import cache, resolve
from meltbench.models import quantize as q
from meltbench.models.gguf_info import read_gguf_info

pytestmark = pytest.mark.integration

GEMMA_PARAMS = 268_098_176
GEMMA_BYTES = 253_113_024
GEMMA_TENSORS = 236
Q4_0_BYTES = 241_408_704
Q8_0_BYTES = 291_543_744


@pytest.fixture(scope="module")
def src() -> Path:
    return resolve.resolve_model("gemma3-270m-q4_k_m").path


@pytest.fixture(scope="module")
def src_info(src):
    return read_gguf_info(src)


@pytest.fixture(scope="module")
def q4_0(src) -> Path:
    return q.cached_variant(src, "q4_0")  # lower case on purpose


@pytest.fixture(scope="module")
def q8_0(src) -> Path:
    return q.cached_variant(src, "Q8_0", threads=2)


@pytest.fixture(scope="module")
def variant_infos(q4_0, q8_0):
    # Reading a Gemma 3 header takes seconds (262,144 vocabulary strings): read each once.
    return {"Q4_0": read_gguf_info(q4_0), "Q8_0": read_gguf_info(q8_0)}


def tensor_types(path: Path) -> Counter[str]:
    reader = gguf.GGUFReader(str(path), "r")
    return Counter(t.tensor_type.name for t in reader.tensors)


def test_quant_types_agree_with_llama_cpp_and_cover_its_enum():
    assert q.QUANT_TYPES["Q4_0"] == 2 and q.QUANT_TYPES["Q8_0"] == 7
    assert q.QUANT_TYPES["Q4_K_M"] == 15 and q.QUANT_TYPES["F32"] == 0
    for name, value in q.QUANT_TYPES.items():
        member = "ALL_F32" if name == "F32" else f"MOSTLY_{name}"
        assert getattr(llama_cpp, f"LLAMA_FTYPE_{member}") == value, name
        assert int(gguf.LlamaFileType[member]) == value, name
    assert not set(q.QUANT_TYPES) & set(q.EXCLUDED_TYPES)
    # Every llama_ftype of the installed llama.cpp is either offered or excluded with a reason.
    enum = {
        n.removeprefix("LLAMA_FTYPE_").removeprefix("MOSTLY_").removeprefix("ALL_")
        for n in dir(llama_cpp)
        if n.startswith("LLAMA_FTYPE_")
    } - {"GUESSED"}
    assert enum == set(q.QUANT_TYPES) | set(q.EXCLUDED_TYPES)
    for name in ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "Q2_K_S"):
        assert "importance matrix" in q.EXCLUDED_TYPES[name]


def test_variants_read_back_with_exact_type_and_parameters(src_info, q4_0, q8_0, variant_infos):
    assert src_info.quant == "Q4_K_M" and src_info.n_params == GEMMA_PARAMS
    for path, quant in ((q4_0, "Q4_0"), (q8_0, "Q8_0")):
        info = variant_infos[quant]
        assert info.path == str(path) and info.quant == quant
        assert info.n_params == src_info.n_params == GEMMA_PARAMS
        assert info.n_tensors == GEMMA_TENSORS
        assert info.architecture == "gemma3" and info.n_layer == src_info.n_layer == 18


def test_variant_tensor_types(q4_0, q8_0):
    # 109 norms stay F32; the tied token embedding falls back from Q6_K to Q8_0.
    assert tensor_types(q4_0) == {"F32": 109, "Q8_0": 1, "Q4_0": 126}
    assert tensor_types(q8_0) == {"F32": 109, "Q8_0": 127}


def test_variant_sizes_order_and_exact_bytes(src, q4_0, q8_0):
    sizes = {p: p.stat().st_size for p in (src, q4_0, q8_0)}
    assert sizes[q8_0] > sizes[src] > sizes[q4_0]
    assert sizes[src] == GEMMA_BYTES
    assert sizes[q4_0] == Q4_0_BYTES
    assert sizes[q8_0] == Q8_0_BYTES


def test_cached_variant_location_and_reuse(src, q4_0):
    from meltbench.models.cache import source_key

    assert q4_0 == cache.cache_dir() / "derived" / f"{src.stem}-{source_key(src)}-Q4_0.gguf"
    before = q4_0.stat()
    again = q.cached_variant(src, "Q4_0")
    assert again == q4_0
    after = again.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not list(q4_0.parent.glob(f"{q4_0.name}.partial-*"))


def test_same_type_returns_the_source(src):
    assert q.cached_variant(src, "q4_k_m") == src.resolve()
    assert q.cached_variant(src, " Q4_K_M ") == src.resolve()


def test_requantize_writes_the_same_bytes_atomically(src, q4_0, tmp_path):
    dst = tmp_path / "new" / "gemma-Q4_0.gguf"
    assert q.requantize(src, dst, "Q4_0", threads=1) == dst.resolve()
    assert sorted(p.name for p in dst.parent.iterdir()) == ["gemma-Q4_0.gguf"]
    # llama.cpp's quantization is deterministic: the thread count does not change a byte.
    assert dst.stat().st_size == Q4_0_BYTES
    with dst.open("rb") as a, q4_0.open("rb") as b:
        while True:
            chunk = a.read(1 << 24)
            assert chunk == b.read(1 << 24)
            if not chunk:
                break


@pytest.mark.parametrize("name", ["Q9_9", "q4_k_x", "", "IQ2_XXS", "tq1_0"])
def test_unknown_or_excluded_name_is_one_line_usage_error(src, tmp_path, name):
    with pytest.raises(UsageError) as err:
        q.requantize(src, tmp_path / "x.gguf", name)
    msg = str(err.value)
    assert "\n" not in msg
    assert "Q4_0, " in msg and "Q8_0, " in msg  # lists the valid names
    if name in ("IQ2_XXS",):
        assert "importance matrix" in msg
    with pytest.raises(UsageError):
        q.cached_variant(src, name)
    assert list(tmp_path.iterdir()) == []


def test_missing_source_is_usage_error(tmp_path):
    with pytest.raises(UsageError, match=r"model file not found") as err:
        q.requantize(tmp_path / "missing.gguf", tmp_path / "out.gguf", "Q4_0")
    assert "\n" not in str(err.value)
    with pytest.raises(UsageError, match=r"model file not found"):
        q.cached_variant(tmp_path / "missing.gguf", "Q4_0")


def test_output_equal_to_source_or_bad_threads_is_usage_error(src, tmp_path):
    with pytest.raises(UsageError, match=r"is the source file"):
        q.requantize(src, src, "Q4_0")
    with pytest.raises(UsageError, match=r"threads must be at least 1"):
        q.requantize(src, tmp_path / "x.gguf", "Q4_0", threads=0)
    with pytest.raises(UsageError, match=r"is a directory"):
        q.requantize(src, tmp_path, "Q4_0")


def test_llama_cpp_failure_is_one_line_usage_error_and_leaves_nothing(src, tmp_path):
    broken = tmp_path / "truncated.gguf"
    with src.open("rb") as fh:
        broken.write_bytes(fh.read(5_000_000))  # GGUF magic, header cut short
    out = tmp_path / "out"
    with pytest.raises(UsageError) as err:
        q.requantize(broken, out / "x.gguf", "Q4_0")
    msg = str(err.value)
    assert msg.startswith(f"llama.cpp could not quantize {broken} to Q4_0: ")
    assert "failed to load model" in msg and "\n" not in msg
    assert list(out.iterdir()) == []  # the temporary file is gone too


def test_cached_variant_keeps_a_result_published_first(src, src_info, tmp_path, monkeypatch):
    """Two processes building one variant: the one that finishes second keeps the first's."""
    monkeypatch.setattr(cache, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(cache, "cached_gguf_info", lambda path: src_info)
    from meltbench.models.cache import source_key

    target = tmp_path / "derived" / f"{src.stem}-{source_key(src)}-Q2_K.gguf"

    def other_process_wins(src_: Path, out: Path, name: str, threads: int | None) -> None:
        assert name == "Q2_K" and out.name == f"{target.name}.partial-{os.getpid()}"
        out.write_bytes(b"ours")
        target.write_bytes(b"theirs")

    monkeypatch.setattr(q, "_quantize_file", other_process_wins)
    assert q.cached_variant(src, "q2_k") == target
    assert target.read_bytes() == b"theirs"
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_variant_note(src_info, variant_infos):
    variant = variant_infos["Q4_0"]
    assert q.variant_note(src_info, variant) == (
        "Q4_0 requantized from Q4_K_M (compared against its source, not the original weights)"
    )
    assert q.variant_note(src_info.to_dict(), variant.to_dict()) == q.variant_note(
        src_info, variant
    )
    assert q.variant_note(src_info, src_info) == (
        "Q4_K_M: the source file itself (not requantized)"
    )
    f16 = {"quant": "F16", "path": "/m/f16.gguf"}
    assert q.variant_note(f16, variant) == "Q4_0 quantized from F16"


def test_q4_0_variant_runs_through_the_engine(q4_0):
    result = meltbench.run(model=str(q4_0), n_prompt=16, n_gen=8, reps=1, warmup=0)
    assert result.ok, result.failure
    assert result.model["quant"] == "Q4_0"
    assert result.model["n_params"] == GEMMA_PARAMS
    assert result.test == "pp16+tg8"
    assert result.metrics["decode_tps"].n == 1 and result.metrics["decode_tps"].min > 0
