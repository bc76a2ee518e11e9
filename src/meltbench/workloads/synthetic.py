"""Synthetic prompts: seeded random token ids of an exact length, as llama-bench uses.

Random ids keep the prompt length exact and independent of any tokenizer, so the same
``n_prompt`` means the same work on every engine. If the model expects a BOS token, it
is the first id (and counts toward ``n_prompt``), like llama-bench's prompt.
"""

from __future__ import annotations

import random

__all__ = ["synthetic_tokens"]


def synthetic_tokens(n: int, n_vocab: int, seed: int, bos: int | None = None) -> list[int]:
    """``n`` token ids drawn uniformly from ``[0, n_vocab)`` with Python's seeded PRNG.

    Args:
        n: number of ids (>= 0).
        n_vocab: vocabulary size (>= 1).
        seed: PRNG seed; the same (n, n_vocab, seed, bos) always gives the same list.
        bos: if given, the first id is ``bos``.

    Raises:
        ValueError: if ``n < 0`` or ``n_vocab < 1``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n_vocab < 1:
        raise ValueError(f"n_vocab must be >= 1, got {n_vocab}")
    rng = random.Random(seed)
    tokens = [rng.randrange(n_vocab) for _ in range(n)]
    if bos is not None and n > 0:
        tokens[0] = bos
    return tokens
