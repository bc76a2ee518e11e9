"""Do two engines compute the same thing? The output check of a forward run.

A speed comparison of engines is fair only when they compute the same function on the
same weights and inputs. Each engine's outputs are compared with PyTorch eager's
(float32) on the same inputs: the largest absolute difference per output, and whether
every element is within NumPy's ``allclose`` tolerance ``|out - ref| <= atol + rtol *
|ref|`` (numpy.allclose's definition). ``tolerance_ratio`` is the worst element's
``|out - ref| / (atol + rtol * |ref|)``: <= 1 passes.

Default tolerances, for float32: ``atol = 1e-4``, ``rtol = 1e-3``. Reordered float32
sums differ by a few units in the last place per operation; through 12 encoder layers
that reaches about 1e-5 on hidden states of magnitude 1 (measured here: MLX vs PyTorch
BERT-Tiny 1.2e-6, ExecuTorch and LiteRT vs PyTorch on MobileNetV4-Conv-S 3e-5 to 6e-5
on logits), so the defaults pass engines that agree and fail a wrong graph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["ATOL", "RTOL", "OutputCheck", "compare_outputs"]

ATOL = 1e-4
RTOL = 1e-3


@dataclass(frozen=True)
class OutputCheck:
    """The comparison of one engine's outputs with the reference's.

    Attributes:
        max_abs_diff: largest ``|out - ref|`` over every output (NaN when an output is
            not finite).
        per_output: name -> ``{"max_abs_diff", "max_abs_ref", "tolerance_ratio",
            "shape"}``.
        tolerance_ratio: the worst element's ``|out - ref| / (atol + rtol * |ref|)``.
        atol, rtol: the tolerances used.
        match: every element within tolerance and finite.
        reason: why it does not match (None when it does).
    """

    max_abs_diff: float
    tolerance_ratio: float
    atol: float
    rtol: float
    match: bool
    reason: str | None = None
    per_output: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN stays a float; the store writes JSON with NaN)."""
        return asdict(self)


def compare_outputs(
    reference: dict[str, Any],
    outputs: dict[str, Any],
    *,
    atol: float = ATOL,
    rtol: float = RTOL,
) -> OutputCheck:
    """Compare an engine's outputs with the reference's, output by output.

    Args:
        reference: name -> array (the reference engine's outputs).
        outputs: name -> array; must hold every name of ``reference`` with the same
            shape (extra names are ignored).
        atol, rtol: tolerances (>= 0).

    Returns:
        the :class:`OutputCheck`; a non-finite output gives ``match=False`` with a
        reason, not an exception.

    Raises:
        ValueError: no reference outputs, a reference output missing from ``outputs``,
            a shape mismatch, or a negative tolerance.
    """
    if atol < 0 or rtol < 0:
        raise ValueError(f"tolerances must be >= 0 (got atol={atol}, rtol={rtol})")
    if not reference:
        raise ValueError("no reference outputs to compare with")
    missing = [name for name in reference if name not in outputs]
    if missing:
        got = ", ".join(outputs) or "nothing"
        raise ValueError(f"outputs lack {', '.join(missing)}; the engine returned {got}")
    per: dict[str, dict[str, Any]] = {}
    worst_diff, worst_ratio, reason = 0.0, 0.0, None
    for name, ref_value in reference.items():
        ref = np.asarray(ref_value, dtype=np.float64)
        out = np.asarray(outputs[name], dtype=np.float64)
        if ref.shape != out.shape:
            raise ValueError(
                f"output {name!r} has shape {tuple(out.shape)}, the reference {tuple(ref.shape)}"
            )
        if not np.isfinite(out).all():
            per[name] = {"max_abs_diff": float("nan"), "max_abs_ref": _max_abs(ref),
                         "tolerance_ratio": float("nan"), "shape": list(ref.shape)}  # fmt: skip
            worst_diff = worst_ratio = float("nan")
            reason = reason or f"output {name!r} has NaN or infinite values"
            continue
        diff = np.abs(out - ref)
        bound = atol + rtol * np.abs(ref)
        max_diff = float(diff.max()) if diff.size else 0.0
        if diff.size == 0:
            ratio = 0.0
        elif atol == 0 and rtol == 0:
            ratio = 0.0 if max_diff == 0 else float("inf")
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = float(np.nanmax(np.where(diff == 0, 0.0, diff / bound)))
        per[name] = {"max_abs_diff": max_diff, "max_abs_ref": _max_abs(ref),
                     "tolerance_ratio": ratio, "shape": list(ref.shape)}  # fmt: skip
        if not np.isnan(worst_diff):
            worst_diff = max(worst_diff, max_diff)
            worst_ratio = max(worst_ratio, ratio)
        if ratio > 1 and reason is None:
            reason = (
                f"output {name!r} differs by up to {max_diff:.3g} (tolerance {atol:g} + "
                f"{rtol:g} x |reference|)"
            )
    return OutputCheck(
        max_abs_diff=worst_diff,
        tolerance_ratio=worst_ratio,
        atol=atol,
        rtol=rtol,
        match=reason is None,
        reason=reason,
        per_output=per,
    )


def _max_abs(array: Any) -> float:
    return float(np.abs(array).max()) if array.size else 0.0
