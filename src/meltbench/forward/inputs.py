"""Synthetic, seeded inputs of the forward tasks: the same arrays on every engine.

Engines get NumPy arrays (each engine converts them to its own tensors), so a
comparison of engines is over identical inputs. Generation uses NumPy's PCG64
generator (``numpy.random.default_rng(seed)``), which gives the same numbers on every
platform and NumPy version that has it (NumPy's random ``Generator`` stream
compatibility policy, NEP 19).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

__all__ = ["FIRST_TOKEN_ID", "describe_inputs", "encoder_inputs", "image_inputs"]

FIRST_TOKEN_ID = 3
"""Token ids are drawn from ``[FIRST_TOKEN_ID, vocab_size)``: this skips BERT's
``[PAD]`` (0) and RoBERTa's ``<s>``, ``<pad>``, ``</s>`` (0, 1, 2). A padding id inside
the sequence would change RoBERTa's position ids (they skip padding), which engines
need not implement alike."""


def encoder_inputs(batch: int, seq_len: int, vocab_size: int, seed: int) -> dict[str, Any]:
    """Token ids and an all-ones attention mask for a BERT-style encoder.

    Args:
        batch: sequences per forward pass (>= 1).
        seq_len: tokens per sequence (>= 1).
        vocab_size: the model's vocabulary size (> :data:`FIRST_TOKEN_ID`).
        seed: generator seed.

    Returns:
        ``{"input_ids": int64 (batch, seq_len), "attention_mask": int64 (batch,
        seq_len)}``; ids uniform in ``[FIRST_TOKEN_ID, vocab_size)``.

    Raises:
        ValueError: a size below 1, or a vocabulary too small.
    """
    _check_positive(batch=batch, seq_len=seq_len)
    if vocab_size <= FIRST_TOKEN_ID:
        raise ValueError(f"vocab_size must be > {FIRST_TOKEN_ID} (got {vocab_size})")
    rng = np.random.default_rng(seed)
    ids = rng.integers(FIRST_TOKEN_ID, vocab_size, size=(batch, seq_len), dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones((batch, seq_len), dtype=np.int64)}


def image_inputs(batch: int, resolution: int, seed: int, channels: int = 3) -> dict[str, Any]:
    """Images for a vision model, already normalized: standard normal values, which is
    what ImageNet mean/std normalization gives a typical photo.

    Args:
        batch: images per forward pass (>= 1).
        resolution: height = width, pixels (>= 1).
        seed: generator seed.
        channels: colour channels.

    Returns:
        ``{"pixel_values": float32 (batch, channels, resolution, resolution)}`` (NCHW,
        PyTorch's layout).

    Raises:
        ValueError: a size below 1.
    """
    _check_positive(batch=batch, resolution=resolution, channels=channels)
    rng = np.random.default_rng(seed)
    shape = (batch, channels, resolution, resolution)
    return {"pixel_values": rng.standard_normal(shape, dtype=np.float32)}


def describe_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """What a run stores about its inputs: name -> ``{"shape", "dtype"}`` and the
    SHA-256 of all the arrays' bytes (in name order), so two runs can be seen to have
    fed the same inputs."""
    digest = hashlib.sha256()
    arrays: dict[str, Any] = {}
    for name in sorted(inputs):
        array = np.ascontiguousarray(inputs[name])
        digest.update(name.encode())
        digest.update(str(array.dtype).encode())
        digest.update(repr(array.shape).encode())
        digest.update(array.tobytes())
        arrays[name] = {"shape": list(array.shape), "dtype": str(array.dtype)}
    return {"arrays": arrays, "sha256": digest.hexdigest()}


def _check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1 (got {value})")
