"""The decode roofline: how close decode speed comes to the memory-bandwidth bound (pure).

Decoding one token reads every weight once plus the KV cache of the positions attended
to, and a small model on a CPU does little arithmetic per byte, so the speed of light of
decode is memory bandwidth over bytes per token (Williams, Waterman and Patterson,
"Roofline: an insightful visual performance model", CACM 52(4), 2009; applied to LLM
decode in e.g. Yuan et al., "LLM Inference Unveiled", arXiv:2402.16363)::

    bytes_per_token   = weights read per token + KV cache read per token
    decode_bound_tps  = bandwidth_bytes_per_s / bytes_per_token
    decode_efficiency = decode_tps / decode_bound_tps

The KV read of a decode step grows with the position, so it is taken at the mean
position of the timed decode window: ``n_depth + n_prompt + (n_gen - 1) / 2`` tokens
already cached (:func:`decode_mean_past`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from meltbench.models.footprint import (
    ModelFootprint,
    kv_bytes_read_per_token,
    kv_cache_bytes,
    kv_cells,
)

__all__ = ["Roofline", "analyze_roofline", "decode_mean_past", "kv_figures", "roofline"]


def decode_mean_past(n_depth: int, n_prompt: int, n_gen: int) -> float:
    """Mean number of cached tokens over the decode steps of a request.

    Decode step ``i`` (``i = 1 .. n_gen - 1``; step 0 is the prompt) runs with
    ``n_depth + n_prompt + i - 1`` tokens cached, whose mean is
    ``n_depth + n_prompt + (n_gen - 2) / 2``; the step's own token is added by
    :func:`meltbench.models.footprint.kv_bytes_read_per_token`.
    """
    if n_gen < 2:
        return float(n_depth + n_prompt)
    return n_depth + n_prompt + (n_gen - 2) / 2


@dataclass(frozen=True)
class Roofline:
    """One run's position under the bandwidth roof.

    Attributes:
        bytes_per_token: weights + KV bytes read per decoded token.
        weights_bytes_per_token, kv_bytes_per_token: its two parts.
        bandwidth_bytes_per_s: the measured read bandwidth used as the roof.
        decode_bound_tps: ``bandwidth / bytes_per_token``.
        decode_efficiency: ``decode_tps / decode_bound_tps`` (None without decode_tps).
    """

    bytes_per_token: float
    weights_bytes_per_token: float
    kv_bytes_per_token: float
    bandwidth_bytes_per_s: float
    decode_bound_tps: float
    decode_efficiency: float | None


def roofline(
    weights_bytes_per_token: float,
    kv_bytes_per_token: float,
    bandwidth_bytes_per_s: float,
    decode_tps: float | None,
) -> Roofline:
    """The bound and efficiency of a decode speed (module docstring).

    Raises:
        ValueError: a bandwidth or a byte count that is not positive.
    """
    per_token = weights_bytes_per_token + kv_bytes_per_token
    if per_token <= 0 or bandwidth_bytes_per_s <= 0:
        raise ValueError("bytes per token and bandwidth must be > 0")
    bound = bandwidth_bytes_per_s / per_token
    return Roofline(
        bytes_per_token=per_token,
        weights_bytes_per_token=weights_bytes_per_token,
        kv_bytes_per_token=kv_bytes_per_token,
        bandwidth_bytes_per_s=bandwidth_bytes_per_s,
        decode_bound_tps=bound,
        decode_efficiency=decode_tps / bound if decode_tps else None,
    )


def kv_figures(
    footprint: ModelFootprint | None, engine_info: dict[str, Any] | None, n_ctx: int
) -> dict[str, Any]:
    """The KV cache size of a run: the engine's own figure and the formula's.

    Args:
        footprint: the GGUF's :class:`~meltbench.models.footprint.ModelFootprint`, or
            None (not a GGUF model).
        engine_info: the engine's ``info()``; llama.cpp gives ``kv_cache`` (its logged
            allocation) and ``params`` (``n_ctx``, ``type_k``, ``type_v``, ``swa_full``,
            ``n_ubatch``, ``n_seq_max`` in force).
        n_ctx: the context size asked for (used when the engine did not say).

    Returns:
        ``{"kv_cache_bytes", "kv_cache_bytes_engine", "kv_cache_bytes_formula",
        "kv_cache_source", "kv_cells"}``; ``kv_cache_bytes`` is the engine's figure when
        it gave one, else the formula's; missing figures are None.
    """
    info = engine_info or {}
    params = info.get("params") or {}
    engine_kv = (info.get("kv_cache") or {}).get("bytes")
    formula = cells = None
    shape = footprint.attention if footprint is not None else None
    if shape is not None:
        ctx = int(params.get("n_ctx") or n_ctx)
        opts = {
            "type_k": str(params.get("type_k") or "f16"),
            "type_v": str(params.get("type_v") or "f16"),
            "swa_full": bool(params.get("swa_full", True)),
            "n_seq": int(params.get("n_seq_max") or 1),
            "n_ubatch": int(params.get("n_ubatch") or 512),
        }
        try:
            formula = kv_cache_bytes(shape, ctx, **opts)
            cells = list(
                kv_cells(shape, ctx, swa_full=opts["swa_full"], n_seq=opts["n_seq"],
                         n_ubatch=opts["n_ubatch"])
            )  # fmt: skip
        except ValueError:
            formula = None
    best = engine_kv if engine_kv is not None else formula
    source = "engine" if engine_kv is not None else ("formula" if formula is not None else None)
    return {
        "kv_cache_bytes": best,
        "kv_cache_bytes_engine": engine_kv,
        "kv_cache_bytes_formula": formula,
        "kv_cache_source": source,
        "kv_cells": cells,
    }


def analyze_roofline(
    footprint: ModelFootprint,
    engine_info: dict[str, Any] | None,
    n_depth: int,
    n_prompt: int,
    n_gen: int,
    decode_tps: Sequence[float],
    bandwidth_bytes_per_s: float | None,
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Per-run roofline metrics and the section stored with the run.

    Args:
        footprint: the model's GGUF footprint (:func:`~meltbench.models.footprint.read_footprint`).
        engine_info: the engine's ``info()`` (KV cache types in force).
        n_depth, n_prompt, n_gen: the workload, tokens.
        decode_tps: decode tok/s of each timed repetition.
        bandwidth_bytes_per_s: the measured read bandwidth, or None (then only
            ``bytes_per_token`` is given).

    Returns:
        ``(metrics, section)``: ``metrics`` maps ``bytes_per_token``,
        ``decode_bound_tps`` (one value each) and ``decode_efficiency`` (one per
        repetition) to their values; ``section`` holds the parts (weights and KV bytes
        per token, mean cached tokens, tied embeddings, bandwidth).
    """
    params = (engine_info or {}).get("params") or {}
    past = decode_mean_past(n_depth, n_prompt, n_gen)
    kv = 0.0
    if footprint.attention is not None:
        try:
            kv = kv_bytes_read_per_token(
                footprint.attention,
                past,
                type_k=str(params.get("type_k") or "f16"),
                type_v=str(params.get("type_v") or "f16"),
            )
        except ValueError:
            kv = 0.0
    weights = float(footprint.weights_read_per_token_bytes)
    metrics: dict[str, list[float]] = {"bytes_per_token": [weights + kv]}
    section: dict[str, Any] = {
        "weights_bytes_per_token": weights,
        "kv_bytes_per_token": kv,
        "mean_past_tokens": past,
        "tied_embeddings": footprint.tied_embeddings,
        "bandwidth_bytes_per_s": bandwidth_bytes_per_s,
        "decode_bound_tps": None,
    }
    if bandwidth_bytes_per_s:
        bound = roofline(weights, kv, bandwidth_bytes_per_s, None).decode_bound_tps
        metrics["decode_bound_tps"] = [bound]
        section["decode_bound_tps"] = bound
        if decode_tps:
            metrics["decode_efficiency"] = [v / bound for v in decode_tps]
    return metrics, section
