"""A per-device latency model of decoder shapes: non-negative linear least squares on
FLOPs, bytes and layer count, with leave-one-candidate-out error.

For each phase the time is modelled as a sum of costs, each non-negative::

    t_ms = c0 + c_flop * GFLOP + c_w * weight_GB + c_kv * kv_GB + c_l * n_layers

- ``GFLOP``: matrix-multiply FLOPs, 2 per weight per token (Kaplan et al. 2020, "Scaling
  Laws for Neural Language Models", Table 1: C_forward = 2N + 2 n_layer n_ctx d_attn),
  attention's QK^T and AV included at 4 * n_layers * n_heads * head_dim per (query,
  key) pair; prefill computes the LM head for the last token only (as llama-bench and
  meltbench's engines do), decode for every token.
- ``weight_GB``: block matrices and LM head at the quantisation's nominal bits per
  weight (``gguf.GGML_QUANT_SIZES``), read once per decoded token, once per prefill.
- ``kv_GB``: K and V cache read (F16, 2 bytes) at the request's context: per decoded
  token the whole cache; per prefill the cache once.
- ``n_layers``: a fixed cost per block (kernel launches, thread barriers), large on CPUs
  for small models.

The roofline view behind it (Williams, Waterman and Patterson 2009; for LLM inference
Yuan et al. 2024, "LLM Inference Unveiled", arXiv:2402.16363): decode is bound by bytes
read, prefill by FLOPs. The coefficients are fitted with ``scipy.optimize.nnls``
(Lawson and Hanson's algorithm), so each is a time per unit of cost (ms/GFLOP, ms/GB)
and none can be negative. Prefill and decode are fitted separately, pooled over the
workload points (prompt lengths, depths).

Held-out error: leave one *candidate* out (every row of a shape is held out together),
fit on the rest, predict its rows; the mean absolute percentage error over all held-out
rows is reported (``cv_mape``) with the largest (``cv_max_ape``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meltbench.archsearch.space import Shape

__all__ = ["FEATURES", "LatencyFit", "Row", "bits_per_weight", "features", "fit", "predict"]

FEATURES = ("intercept", "gflop", "weight_gb", "kv_gb", "n_layers")
PHASES = ("prefill", "decode")
_KV_BYTES = 2  # F16 K and V cache, llama.cpp's default type_k / type_v


def bits_per_weight(quant: str) -> float:
    """Nominal bits per weight of a llama.cpp type's main tensor type: ``Q4_0`` 4.5,
    ``Q8_0`` 8.5, ``F16`` 16, ``Q4_K_M`` 4.5 (Q4_K's), from ``gguf.GGML_QUANT_SIZES``
    (block size, bytes per block).

    Raises:
        ValueError: a type gguf does not know.
    """
    import gguf

    base = quant.upper().removesuffix("_M").removesuffix("_S").removesuffix("_L")
    try:
        qtype = gguf.GGMLQuantizationType[base]
    except KeyError:
        raise ValueError(f"no GGML type for {quant!r}") from None
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    return 8.0 * size / block


def features(
    shape: Shape, phase: str, n_prompt: int, n_depth: int, n_gen: int, bpw: float
) -> dict[str, float]:
    """The cost features of one measured quantity (see the module docstring).

    Args:
        phase: ``prefill`` (time of ``n_prompt`` tokens after ``n_depth`` cached) or
            ``decode`` (time of one token at the mean decode context
            ``n_depth + n_prompt + (n_gen - 1) / 2``).
        bpw: bits per weight of the matrices (:func:`bits_per_weight`).

    Returns:
        ``{name: value}`` for every name in :data:`FEATURES` (``intercept`` is 1).
    """
    from meltbench.archsearch.params import block_matmul_params

    L, d = shape.n_layers, shape.d_model
    block = L * block_matmul_params(shape)
    head = shape.vocab_size * d
    attn_per_pair = 4 * L * shape.n_heads * shape.head_dim
    kv_per_token = 2 * L * shape.n_kv_heads * shape.head_dim * _KV_BYTES
    weight_gb = (block + head) * bpw / 8 / 1e9
    if phase == "prefill":
        pairs = n_prompt * n_depth + n_prompt * (n_prompt + 1) / 2
        gflop = (2 * n_prompt * block + 2 * head + attn_per_pair * pairs) / 1e9
        kv_gb = kv_per_token * (n_depth + n_prompt) / 1e9
    elif phase == "decode":
        context = n_depth + n_prompt + max(n_gen - 1, 0) / 2
        gflop = (2 * (block + head) + attn_per_pair * context) / 1e9
        kv_gb = kv_per_token * context / 1e9
    else:
        raise ValueError(f"phase must be prefill or decode, got {phase!r}")
    return {"intercept": 1.0, "gflop": gflop, "weight_gb": weight_gb, "kv_gb": kv_gb,
            "n_layers": float(L)}  # fmt: skip


@dataclass(frozen=True)
class Row:
    """One measured quantity: a candidate's time at one workload point.

    Attributes:
        candidate: the shape's key (rows of one key are held out together).
        x: features (:func:`features`). y_ms: the measured time, ms.
    """

    candidate: str
    x: dict[str, float]
    y_ms: float


@dataclass
class LatencyFit:
    """A fitted phase model.

    Attributes:
        phase: ``prefill`` or ``decode``. coef: feature -> coefficient (ms per unit).
        n_rows, n_candidates: data fitted. r_squared: on the fitted rows.
        cv_mape, cv_max_ape: leave-one-candidate-out errors, percent (None with fewer
            than 3 candidates).
        held_out: ``[candidate, measured_ms, predicted_ms]`` of every held-out row.
    """

    phase: str
    coef: dict[str, float]
    n_rows: int
    n_candidates: int
    r_squared: float | None
    cv_mape: float | None = None
    cv_max_ape: float | None = None
    held_out: list[list[Any]] = field(default_factory=list)

    def predict(self, x: dict[str, float]) -> float:
        """Predicted time, ms."""
        return predict(self.coef, x)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in the sweep's analysis)."""
        return {"phase": self.phase, "coef": self.coef, "n_rows": self.n_rows,
                "n_candidates": self.n_candidates, "r_squared": self.r_squared,
                "cv_mape": self.cv_mape, "cv_max_ape": self.cv_max_ape,
                "held_out": self.held_out, "features": list(FEATURES)}  # fmt: skip


def predict(coef: dict[str, float], x: dict[str, float]) -> float:
    """``sum(coef[f] * x[f])`` over :data:`FEATURES`, ms."""
    return sum(coef[f] * x[f] for f in FEATURES)


def _nnls(rows: Sequence[Row]) -> dict[str, float]:
    import numpy as np
    from scipy.optimize import nnls

    a = np.array([[r.x[f] for f in FEATURES] for r in rows], dtype=np.float64)
    b = np.array([r.y_ms for r in rows], dtype=np.float64)
    # Columns are scaled to unit norm so the solver sees comparable magnitudes (GFLOP and
    # layers differ by orders of magnitude); coefficients are scaled back.
    scale = np.linalg.norm(a, axis=0)
    scale[scale == 0] = 1.0
    solution, _ = nnls(a / scale, b)
    return {f: float(c) for f, c in zip(FEATURES, solution / scale, strict=True)}


def fit(phase: str, rows: Sequence[Row]) -> LatencyFit:
    """Fit the phase model to ``rows`` and cross-validate it by candidate.

    Raises:
        ValueError: no rows, or a non-positive or non-finite time.
    """
    if not rows:
        raise ValueError(f"no {phase} measurements to fit")
    if any(not (math.isfinite(r.y_ms) and r.y_ms > 0) for r in rows):
        raise ValueError(f"{phase}: every measured time must be a positive number")
    coef = _nnls(rows)
    ys = [r.y_ms for r in rows]
    mean = sum(ys) / len(ys)
    ss_tot = sum((y - mean) ** 2 for y in ys)
    ss_res = sum((r.y_ms - predict(coef, r.x)) ** 2 for r in rows)
    candidates = list(dict.fromkeys(r.candidate for r in rows))
    out = LatencyFit(phase=phase, coef=coef, n_rows=len(rows), n_candidates=len(candidates),
                     r_squared=1 - ss_res / ss_tot if ss_tot > 0 else None)  # fmt: skip
    if len(candidates) < 3:
        return out
    errors = []
    for held in candidates:
        train = [r for r in rows if r.candidate != held]
        c = _nnls(train)
        for r in rows:
            if r.candidate == held:
                p = predict(c, r.x)
                out.held_out.append([held, r.y_ms, p])
                errors.append(abs(p - r.y_ms) / r.y_ms * 100)
    out.cv_mape = sum(errors) / len(errors)
    out.cv_max_ape = max(errors)
    return out
