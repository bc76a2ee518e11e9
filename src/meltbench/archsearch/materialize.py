"""Candidates as files that run where deployment runs: a random-weight GGUF for llama.cpp
and a ``config.json`` for the transformers engine's ``--weights random``.

The GGUF is written tensor by tensor with the ``gguf`` package's streaming calls
(``add_tensor_info`` for every tensor, then header, key-values and tensor infos, then
``write_tensor_data`` one tensor at a time), so writing holds one tensor in memory, never
the model: about 0.3 GB (the 151,936 x 1,024 F16 embedding) for a 500M candidate. It is
F16 (norms and biases F32), filled with N(0, 0.02) from a seed per tensor, and quantised
with llama.cpp's own quantiser (:func:`meltbench.models.quantize.requantize`) to the
space's type; the F16 file is removed after. Files are cached by shape key and type
under ``cache_dir()/archsearch`` and published atomically.

- gated shapes use llama.cpp's ``llama`` architecture (optional Q/K/V biases, as Qwen2's
  ``attn_q.bias``), transformers' ``llama`` (or ``qwen2`` with ``qkv_bias``);
- ungated shapes use ``starcoder2`` in both (LayerNorm with bias, GELU MLP, biases).

The vocabulary is synthetic, a SentencePiece-style list of ``vocab_size`` pieces
(``<unk>``, ``<s>``, ``</s>``, the 256 byte pieces ``<0x00>``..``<0xFF>``, then
``▁t<i>``): the benchmark feeds token ids, so only the size matters for latency.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meltbench.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from meltbench.archsearch.space import Shape

__all__ = ["MIN_VOCAB", "candidate_dir", "config_path", "gguf_tensors", "hf_config", "materialize"]

MIN_VOCAB = 512  # specials + 256 byte pieces + room for real pieces
_STD = 0.02  # weight init std (GPT-2 / Llama's initializer_range)
_ROWS = 4096  # rows generated at a time


def candidate_dir() -> Path:
    """Where candidates are cached: ``cache_dir()/archsearch``."""
    from meltbench.models.cache import cache_dir

    return cache_dir() / "archsearch"


def _arch(shape: Shape) -> str:
    return "llama" if shape.gated else "starcoder2"


def gguf_tensors(shape: Shape) -> list[tuple[str, tuple[int, ...], bool]]:
    """``(name, numpy shape, is_matrix)`` of every tensor of the candidate's GGUF, in file
    order. numpy shapes are (rows, cols) = GGUF's ``ne`` reversed (llama.cpp's
    ``llama-model.cpp`` loader names and sizes)."""
    d, hd, ff = shape.d_model, shape.head_dim, shape.d_ff
    q, kv = shape.n_heads * hd, shape.n_kv_heads * hd
    ln_bias = not shape.gated
    out: list[tuple[str, tuple[int, ...], bool]] = [
        ("token_embd.weight", (shape.vocab_size, d), True)
    ]
    for i in range(shape.n_layers):
        b = f"blk.{i}."
        out.append((b + "attn_norm.weight", (d,), False))
        if ln_bias:
            out.append((b + "attn_norm.bias", (d,), False))
        out += [(b + "attn_q.weight", (q, d), True), (b + "attn_k.weight", (kv, d), True),
                (b + "attn_v.weight", (kv, d), True),
                (b + "attn_output.weight", (d, q), True)]  # fmt: skip
        if shape.qkv_bias or ln_bias:
            out += [(b + "attn_q.bias", (q,), False), (b + "attn_k.bias", (kv,), False),
                    (b + "attn_v.bias", (kv,), False)]  # fmt: skip
        if ln_bias:
            out.append((b + "attn_output.bias", (d,), False))
        out.append((b + "ffn_norm.weight", (d,), False))
        if ln_bias:
            out.append((b + "ffn_norm.bias", (d,), False))
        if shape.gated:
            out.append((b + "ffn_gate.weight", (ff, d), True))
        out += [(b + "ffn_up.weight", (ff, d), True), (b + "ffn_down.weight", (d, ff), True)]
        if ln_bias:
            out += [(b + "ffn_up.bias", (ff,), False), (b + "ffn_down.bias", (d,), False)]
    out.append(("output_norm.weight", (d,), False))
    if ln_bias:
        out.append(("output_norm.bias", (d,), False))
    if not shape.tied:
        out.append(("output.weight", (shape.vocab_size, d), True))
    return out


def _check(shape: Shape) -> None:
    if shape.qk_norm or shape.norms_per_block != 2:
        raise UsageError(
            f"{shape.label()}: QK norm and extra norms are count-only (llama.cpp's llama and "
            "starcoder2 architectures have neither); drop them from the shape"
        )
    if not shape.gated and shape.n_heads * shape.head_dim != shape.d_model:
        raise UsageError(
            f"{shape.label()}: llama.cpp's starcoder2 (gelu) block needs n_heads * head_dim "
            "== d_model; change head_dim or use swiglu"
        )
    if shape.vocab_size < MIN_VOCAB:
        raise UsageError(f"{shape.label()}: vocab_size must be >= {MIN_VOCAB} to build a GGUF")


def _vocab(writer: Any, size: int) -> None:
    import gguf

    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256
    n_rest = size - len(tokens)
    tokens += [f"\u2581t{i}" for i in range(n_rest)]
    types += [gguf.TokenType.NORMAL] * n_rest
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([-float(i) for i in range(size)])
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)


def _random(rows_shape: tuple[int, ...], seed: int) -> np.ndarray:
    import numpy as np

    rng = np.random.default_rng(seed)
    out = np.empty(rows_shape, dtype=np.float16)
    for start in range(0, rows_shape[0], _ROWS):
        part = out[start : start + _ROWS]
        part[...] = rng.standard_normal(part.shape, dtype=np.float32) * _STD
    return out


def _write_f16(shape: Shape, path: Path, seed: int) -> None:
    import gguf
    import numpy as np

    arch = _arch(shape)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"meltbench archsearch {shape.label()}")
    w.add_description("random weights (N(0, 0.02)) for latency measurement; not a trained model")
    w.add_file_type(int(gguf.LlamaFileType.MOSTLY_F16))
    w.add_context_length(shape.ctx)
    w.add_embedding_length(shape.d_model)
    w.add_block_count(shape.n_layers)
    w.add_feed_forward_length(shape.d_ff)
    w.add_head_count(shape.n_heads)
    w.add_head_count_kv(shape.n_kv_heads)
    w.add_key_length(shape.head_dim)
    w.add_value_length(shape.head_dim)
    w.add_rope_dimension_count(shape.head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(shape.vocab_size)
    if shape.gated:
        w.add_layer_norm_rms_eps(1e-6)
    else:
        w.add_layer_norm_eps(1e-5)
    _vocab(w, shape.vocab_size)
    tensors = gguf_tensors(shape)
    for name, dims, matrix in tensors:
        dtype = np.dtype(np.float16 if matrix else np.float32)
        n = int(np.prod(dims))
        w.add_tensor_info(name, dims, dtype, n * dtype.itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for i, (name, dims, matrix) in enumerate(tensors):
        if matrix:
            data = _random(dims, seed * 100_003 + i)
        elif name.endswith(".bias"):
            data = np.zeros(dims, dtype=np.float32)
        else:
            data = np.ones(dims, dtype=np.float32)
        w.write_tensor_data(data)
        del data
    w.close()


def materialize(shape: Shape, quant: str, *, seed: int = 0, threads: int | None = None) -> Path:
    """The candidate's GGUF quantised to ``quant``, written once and cached.

    Args:
        shape: the candidate.
        quant: a llama.cpp type (``Q4_0``, ``Q8_0``, ``F16``, ...).
        seed: weights seed. threads: quantiser threads (None: all).

    Returns:
        ``candidate_dir()/<shape.key>-<QUANT>.gguf``.

    Raises:
        UsageError: a shape the GGUF architectures cannot hold, an unknown type, a
            full disk or an unwritable cache (one line each).
    """
    from meltbench.models.quantize import normalize_quant, requantize

    _check(shape)
    name = normalize_quant(quant)
    out = candidate_dir() / f"{shape.key}-{name}.gguf"
    if out.is_file():
        return out
    tmp = out.with_name(f".{shape.key}-F16.{os.getpid()}.tmp.gguf")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_f16(shape, tmp, seed)
        if name == "F16":
            tmp.replace(out)
        else:
            requantize(tmp, out, name, threads)
    except OSError as exc:
        raise UsageError(
            f"cannot write candidate {out}: {exc.strerror or exc}; free disk space or set "
            "XDG_CACHE_HOME to a writable folder"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return out


def hf_config(shape: Shape) -> dict[str, Any]:
    """The transformers config of the candidate (``AutoConfig.for_model`` arguments)."""
    _check(shape)
    common = {
        "hidden_size": shape.d_model,
        "intermediate_size": shape.d_ff,
        "num_hidden_layers": shape.n_layers,
        "num_attention_heads": shape.n_heads,
        "num_key_value_heads": shape.n_kv_heads,
        "head_dim": shape.head_dim,
        "vocab_size": shape.vocab_size,
        "max_position_embeddings": shape.ctx,
        "tie_word_embeddings": shape.tied,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    if not shape.gated:
        return {"model_type": "starcoder2", **common, "use_bias": True,
                "hidden_act": "gelu_pytorch_tanh", "norm_epsilon": 1e-5}  # fmt: skip
    if shape.qkv_bias:
        return {"model_type": "qwen2", **common, "rms_norm_eps": 1e-6}
    return {"model_type": "llama", **common, "rms_norm_eps": 1e-6}


def config_path(shape: Shape) -> Path:
    """``candidate_dir()/<key>-hf/config.json``, written once (for ``--weights random``)."""
    import json

    path = candidate_dir() / f"{shape.key}-hf" / "config.json"
    if not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(hf_config(shape), indent=2) + "\n")
            tmp.replace(path)
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
