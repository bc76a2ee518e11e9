"""Weights read per token, KV cache bytes and the roofline arithmetic, on GGUF files the
tests write (exact values computed by hand)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from meltbench.engines.llama_cpp import parse_kv_cache_log
from meltbench.measure.roofline import (
    analyze_roofline,
    decode_mean_past,
    kv_figures,
    roofline,
)
from meltbench.models.footprint import (
    AttentionShape,
    ggml_row_bytes,
    kv_bytes_read_per_token,
    kv_cache_bytes,
    kv_cells,
    read_footprint,
)

N_EMBD, N_VOCAB, N_LAYER, N_HEAD, N_HEAD_KV, HEAD_DIM, N_SWA = 64, 100, 6, 4, 2, 16, 32


def write_gguf(path: Path, *, arch: str = "gemma3", tied: bool = True, swa: bool = True) -> None:
    """A tiny decoder: f32 embeddings (100 x 64), per layer q/k/v/o (f16) and a norm (f32)."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(N_LAYER)
    w.add_embedding_length(N_EMBD)
    w.add_context_length(2048)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_key_length(HEAD_DIM)
    w.add_value_length(HEAD_DIM)
    if swa:
        w.add_sliding_window(N_SWA)
    w.add_tensor("token_embd.weight", np.zeros((N_VOCAB, N_EMBD), dtype=np.float32))
    if not tied:
        w.add_tensor("output.weight", np.zeros((N_VOCAB, N_EMBD), dtype=np.float16))
    for il in range(N_LAYER):
        w.add_tensor(f"blk.{il}.attn_q.weight", np.zeros((N_EMBD, N_EMBD), dtype=np.float16))
        w.add_tensor(f"blk.{il}.attn_k.weight", np.zeros((32, N_EMBD), dtype=np.float16))
        w.add_tensor(f"blk.{il}.attn_v.weight", np.zeros((32, N_EMBD), dtype=np.float16))
        w.add_tensor(f"blk.{il}.attn_output.weight", np.zeros((N_EMBD, N_EMBD), dtype=np.float16))
        w.add_tensor(f"blk.{il}.attn_norm.weight", np.zeros(N_EMBD, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


EMBD_BYTES = N_VOCAB * N_EMBD * 4  # 25600
LAYER_BYTES = (64 * 64 * 2) * 2 + (32 * 64 * 2) * 2 + 64 * 4  # 16384 + 8192 + 256
OUTPUT_BYTES = N_VOCAB * N_EMBD * 2  # 12800


def test_tied_embeddings_are_read_in_full(tmp_path):
    path = tmp_path / "tied.gguf"
    write_gguf(path)
    fp = read_footprint(path)
    assert fp.architecture == "gemma3"
    assert fp.tied_embeddings is True
    assert fp.token_embd_bytes == EMBD_BYTES
    assert fp.weights_bytes == EMBD_BYTES + N_LAYER * LAYER_BYTES
    assert fp.weights_read_per_token_bytes == fp.weights_bytes


def test_untied_embeddings_read_one_row(tmp_path):
    path = tmp_path / "untied.gguf"
    write_gguf(path, arch="llama", tied=False, swa=False)
    fp = read_footprint(path)
    assert fp.tied_embeddings is False
    assert fp.weights_bytes == EMBD_BYTES + OUTPUT_BYTES + N_LAYER * LAYER_BYTES
    # one 64-float row of the embedding table instead of the whole table
    assert fp.weights_read_per_token_bytes == fp.weights_bytes - EMBD_BYTES + N_EMBD * 4
    assert fp.attention is not None and fp.attention.n_swa == 0


def test_attention_shape_and_gemma3_window_pattern(tmp_path):
    path = tmp_path / "tied.gguf"
    write_gguf(path)
    shape = read_footprint(path).attention
    assert shape is not None
    assert shape.n_layer == N_LAYER
    assert shape.n_head_kv == (N_HEAD_KV,) * N_LAYER
    assert (shape.head_dim_k, shape.head_dim_v, shape.n_swa) == (HEAD_DIM, HEAD_DIM, N_SWA)
    # llama.cpp's set_swa_pattern(6) for gemma3: five window layers, then a full one
    assert shape.swa_layers == (True, True, True, True, True, False)


def test_kv_cache_bytes_by_hand(tmp_path):
    path = tmp_path / "tied.gguf"
    write_gguf(path)
    shape = read_footprint(path).attention
    # a cell of one layer: K 2 heads x 16 x 2 bytes + V the same = 128 bytes
    assert shape.cell_bytes(0) == 128
    assert kv_cache_bytes(shape, 512) == 6 * 512 * 128  # swa_full (llama.cpp's default)
    # window cache: GGML_PAD(min(512, 32 + 64), 256) = 256 cells for 5 of the 6 layers
    assert kv_cells(shape, 512, swa_full=False, n_ubatch=64) == (512, 256)
    assert kv_cache_bytes(shape, 512, swa_full=False, n_ubatch=64) == (512 + 5 * 256) * 128
    # q8_0 K cache: 32 values in a 34-byte block
    assert kv_cache_bytes(shape, 512, type_k="q8_0") == 6 * 512 * (34 + 64)


def test_kv_read_per_token_counts_the_window():
    shape = AttentionShape(
        n_layer=2, n_head_kv=(1, 1), head_dim_k=32, head_dim_v=32, n_swa=10,
        swa_layers=(True, False),
    )  # fmt: skip
    cell = 32 * 2 * 2
    assert kv_bytes_read_per_token(shape, 3) == (4 + 4) * cell
    assert kv_bytes_read_per_token(shape, 100) == (10 + 101) * cell


def test_ggml_row_bytes():
    assert ggml_row_bytes("f16", 256) == 512
    assert ggml_row_bytes("F32", 3) == 12
    assert ggml_row_bytes("q4_0", 64) == 36
    with pytest.raises(ValueError, match="unknown ggml type"):
        ggml_row_bytes("f13", 8)
    with pytest.raises(ValueError, match="blocks"):
        ggml_row_bytes("q8_0", 31)


def test_decode_mean_past():
    # steps 1..n_gen-1 run with d + p + i - 1 tokens cached
    assert decode_mean_past(0, 256, 64) == 256 + 31
    assert decode_mean_past(4096, 512, 2) == 4608
    assert decode_mean_past(0, 8, 1) == 8


def test_roofline_arithmetic():
    r = roofline(240e6, 10e6, 20e9, 60.0)
    assert r.bytes_per_token == 250e6
    assert r.decode_bound_tps == pytest.approx(80.0)
    assert r.decode_efficiency == pytest.approx(0.75)
    assert roofline(1.0, 0.0, 1.0, None).decode_efficiency is None
    with pytest.raises(ValueError):
        roofline(0.0, 0.0, 1e9, 1.0)


def test_analyze_roofline_per_repetition(tmp_path):
    path = tmp_path / "tied.gguf"
    write_gguf(path)
    fp = read_footprint(path)
    metrics, section = analyze_roofline(fp, None, 0, 16, 8, [10.0, 20.0], 1e9)
    past = 16 + 3  # decode_mean_past(0, 16, 8)
    kv = 5 * min(past + 1, N_SWA) * 128 + 1 * (past + 1) * 128
    per_token = fp.weights_read_per_token_bytes + kv
    assert section["kv_bytes_per_token"] == kv
    assert metrics["bytes_per_token"] == [per_token]
    assert metrics["decode_bound_tps"] == [pytest.approx(1e9 / per_token)]
    assert metrics["decode_efficiency"] == [
        pytest.approx(10.0 * per_token / 1e9),
        pytest.approx(20.0 * per_token / 1e9),
    ]
    no_bw, section = analyze_roofline(fp, None, 0, 16, 8, [10.0], None)
    assert set(no_bw) == {"bytes_per_token"} and section["decode_bound_tps"] is None


KV_LOG = [
    "llama_kv_cache_iswa: creating non-SWA KV cache, size = 512 cells",
    "llama_kv_cache:        CPU KV buffer size =     1.50 MiB",
    "llama_kv_cache: size =    1.50 MiB (   512 cells,   3 layers,  1/1 seqs), "
    "K (f16):    0.75 MiB, V (f16):    0.75 MiB",
    "llama_kv_cache_iswa: creating     SWA KV cache, size = 512 cells",
    "llama_kv_cache: size =    7.50 MiB (   512 cells,  15 layers,  1/1 seqs), "
    "K (q8_0):    3.75 MiB, V (f16):    3.75 MiB",
]


def test_parse_kv_cache_log_sums_both_caches():
    kv = parse_kv_cache_log(KV_LOG)
    assert kv is not None
    assert kv["bytes"] == 9 * 1024 * 1024
    assert [c["layers"] for c in kv["caches"]] == [3, 15]
    assert kv["caches"][1]["type_k"] == "q8_0"
    assert parse_kv_cache_log(["nothing here"]) is None


def test_kv_figures_engine_first_then_formula(tmp_path):
    path = tmp_path / "tied.gguf"
    write_gguf(path)
    fp = read_footprint(path)
    params = {"n_ctx": 512, "type_k": "f16", "type_v": "f16", "swa_full": True, "n_ubatch": 64}
    info = {"params": params, "kv_cache": {"bytes": 393216}}
    kv = kv_figures(fp, info, 300)
    assert kv["kv_cache_bytes"] == 393216 and kv["kv_cache_source"] == "engine"
    assert kv["kv_cache_bytes_formula"] == 6 * 512 * 128
    kv = kv_figures(fp, {"params": params}, 300)
    assert kv["kv_cache_source"] == "formula" and kv["kv_cache_bytes"] == 6 * 512 * 128
    kv = kv_figures(None, None, 300)
    assert kv["kv_cache_bytes"] is None and kv["kv_cache_source"] is None
