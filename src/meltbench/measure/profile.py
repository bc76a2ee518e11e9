"""Operator categories for profiles: which kind of work took the time (pure code).

Every engine's profiler names operators differently (PyTorch ``aten::addmm``, module
classes such as ``Gemma3RMSNorm``, ONNX Runtime node types such as ``MatMulNBits`` or
``GroupQueryAttention``). :func:`classify` maps any of those names to one of
:data:`CATEGORIES`, so profiles of different engines are compared in the same terms.
Rules are checked in order, first match wins; names are matched case-insensitively.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["CATEGORIES", "classify", "summarize_ops"]

CATEGORIES = ("gemm", "attention", "ssm_scan", "norm", "activation", "other")

_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    # SSM first: Mamba kernels contain "conv"/"scan"/"mixer" names, not matmuls.
    (
        "ssm_scan",
        re.compile(
            r"selective_scan|selective_state|ssd|ssm|mamba|mixer|"
            r"causal_conv1d|cumsum|chunk_scan|state_update|scan",
            re.I,
        ),
    ),
    (
        "attention",
        re.compile(
            r"attention|attn|sdpa|scaled_dot_product|flash|softmax|"
            r"rotary|rope|kv_cache|baddbmm",
            re.I,
        ),
    ),
    ("norm", re.compile(r"norm", re.I)),
    (
        "gemm",
        re.compile(
            r"matmul|gemm|gemv|\bmm\b|aten::mm|addmm|bmm|linear|"
            r"conv|einsum|dense|fullyconnected|mul_mat",
            re.I,
        ),
    ),
    (
        "activation",
        re.compile(
            r"gelu|silu|swish|relu|sigmoid|tanh|\bact\b|activation|"
            r"glu|softplus|mish",
            re.I,
        ),
    ),
)


def classify(op_name: str) -> str:
    """The category of an operator or module name (``"other"`` if no rule matches).

    Examples: ``aten::addmm`` -> gemm, ``MatMulNBits`` -> gemm,
    ``GroupQueryAttention`` -> attention, ``Gemma3RMSNorm`` -> norm,
    ``aten::gelu`` -> activation, ``MambaMixer`` -> ssm_scan, ``aten::add`` -> other.
    """
    for category, pattern in _RULES:
        if pattern.search(op_name):
            return category
    return "other"


def summarize_ops(ops: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Total milliseconds per category from ``(op_name, ms)`` pairs; every category
    present (0.0 when no operator fell in it)."""
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for name, ms in ops:
        totals[classify(name)] += ms
    return totals
