"""Exact parameter counts of decoder shapes, from the shape alone.

Two block families, the ones meltbench materialises (:mod:`.materialize`):

- **gated** (Llama / Qwen2 block): RMSNorm before attention and before the MLP (weight
  only), Q/K/V/O projections without bias (``qkv_bias`` adds Q, K and V biases, as
  Qwen2), a SwiGLU MLP of three ``d_model x d_ff`` matrices (gate, up, down).
- **ungated** (StarCoder2 block): LayerNorm with weight and bias, every projection with a
  bias, a two-matrix GELU MLP (up, down) with biases.

Both end with a final norm and an LM head that is the embedding matrix when ``tied``.
Two count-only options describe published models that are neither: ``qk_norm`` (an
RMSNorm of ``head_dim`` on queries and keys, Gemma 3 and Qwen3) and ``norms_per_block``
(Gemma 3 has 4: before and after attention and MLP).

Checked against published counts (``tests/unit/test_archsearch.py``):
Qwen2-0.5B's config gives 494,032,768 (``sum(p.numel())`` in transformers, tied embedding
once) and Gemma 3 270M's gives 268,098,176; the GGUF files meltbench writes hold exactly
:func:`count_params` elements.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meltbench.archsearch.space import Shape

__all__ = ["block_matmul_params", "count_params", "embedding_params"]


def embedding_params(shape: Shape) -> int:
    """Token embedding plus an untied LM head: ``V*d`` or ``2*V*d``."""
    one = shape.vocab_size * shape.d_model
    return one if shape.tied else 2 * one


def block_matmul_params(shape: Shape) -> int:
    """Weights of the matrix multiplies of one block (attention and MLP), no biases/norms.

    ``d*(H*hd) * 2`` for Q and O, ``d*(KV*hd) * 2`` for K and V, and ``d*d_ff`` per MLP
    matrix (3 gated, 2 ungated).
    """
    d, hd = shape.d_model, shape.head_dim
    attn = 2 * d * shape.n_heads * hd + 2 * d * shape.n_kv_heads * hd
    return attn + (3 if shape.gated else 2) * d * shape.d_ff


def _block_vector_params(shape: Shape) -> int:
    """Biases and norm weights of one block."""
    d, hd = shape.d_model, shape.head_dim
    q, kv = shape.n_heads * hd, shape.n_kv_heads * hd
    if shape.gated:
        out = shape.norms_per_block * d
        if shape.qkv_bias:
            out += q + 2 * kv
    else:  # LayerNorm weight + bias; biases on Q, K, V, O, up and down
        out = shape.norms_per_block * 2 * d + q + 2 * kv + d + shape.d_ff + d
    if shape.qk_norm:
        out += 2 * hd
    return out


def count_params(shape: Shape) -> int:
    """Every parameter of the model, tied embedding counted once.

    ``embedding_params + n_layers * (block matmuls + block vectors) + final norm`` (the
    final norm is ``d`` weights, ``2d`` with LayerNorm's bias). Equal to transformers'
    ``sum(p.numel() for p in model.parameters())`` for the model's config and to the
    element count of the GGUF :mod:`.materialize` writes.
    """
    final_norm = shape.d_model if shape.gated else 2 * shape.d_model
    per_block = block_matmul_params(shape) + _block_vector_params(shape)
    return embedding_params(shape) + shape.n_layers * per_block + final_norm
