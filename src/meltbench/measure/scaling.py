"""How a metric grows with context: power-law fits and a growth verdict (pure Python).

A context sweep runs one model at several prompt lengths (``n_prompt``) or KV depths
(``n_depth``). For each metric we fit ``y = a * x^b`` by ordinary least squares in log-log
space and read the exponent ``b`` with a 95% confidence interval: ``b`` near 1 is linear
growth, near 2 quadratic (a Transformer's prefill at long context), and so on.

Regression formulas (simple linear regression of ``v = ln y`` on ``u = ln x``; Montgomery,
Peck & Vining, "Introduction to Linear Regression Analysis", 5th ed., ch. 2, sections
2.2-2.3 and 2.9)::

    S_uu   = sum (u_i - mean u)^2
    S_uv   = sum (u_i - mean u) * (v_i - mean v)
    b      = S_uv / S_uu                      (the exponent)
    ln a   = mean v - b * mean u              (a: the coefficient)
    SS_res = sum (v_i - ln a - b * u_i)^2     (residual sum of squares, log space)
    se(b)  = sqrt(SS_res / (n - 2) / S_uu)
    CI95   = b -+ t(0.975, n - 2) * se(b)     (Student's t, n - 2 degrees of freedom)
    R^2    = 1 - SS_res / S_vv                (S_vv = sum (v_i - mean v)^2; 1 if S_vv = 0)

The interval assumes the log-space residuals are roughly normal and independent with a
common variance, i.e. a multiplicative, constant-relative error around the power law.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from meltbench.measure.stats import student_t_quantile

__all__ = ["PowerLawFit", "fit_power_law", "growth_verdict"]

#: Reference exponents and their names, for :func:`growth_verdict`.
_REFERENCE = ((0.0, "constant"), (1.0, "linear"), (2.0, "quadratic"))

#: A reference exponent counts as inside a CI widened by this much on each side, so that
#: exact data (a CI collapsed to a point, up to rounding) classify as expected.
_VERDICT_TOLERANCE = 1e-9


@dataclass(frozen=True)
class PowerLawFit:
    """Least-squares fit of ``y = coefficient * x^exponent`` (in log-log space).

    Attributes:
        exponent: b, the slope of ln y on ln x (dimensionless).
        exponent_se: standard error of b, ``sqrt(SS_res / (n - 2) / S_uu)``; 0 for an
            exact fit.
        ci95_low, ci95_high: 95% confidence interval of b (Student's t, n - 2 df).
        coefficient: a, in y's unit per x's unit to the power b (``exp(ln a)``).
        r_squared: coefficient of determination in log space, in [0, 1].
        n: number of (x, y) points fitted (repeated x values count separately).
        x_min, x_max: range of x covered by the fit, in x's unit.
    """

    exponent: float
    exponent_se: float
    ci95_low: float
    ci95_high: float
    coefficient: float
    r_squared: float
    n: int
    x_min: float
    x_max: float

    def to_dict(self) -> dict[str, float | int]:
        """Plain-dict form (JSON-ready)."""
        return {
            "exponent": self.exponent,
            "exponent_se": self.exponent_se,
            "ci95_low": self.ci95_low,
            "ci95_high": self.ci95_high,
            "coefficient": self.coefficient,
            "r_squared": self.r_squared,
            "n": self.n,
            "x_min": self.x_min,
            "x_max": self.x_max,
        }


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> PowerLawFit:
    """Fit ``y = a * x^b`` by ordinary least squares of ``ln y`` on ``ln x``.

    Formulas in the module docstring (Montgomery, Peck & Vining, "Introduction to Linear
    Regression Analysis", ch. 2): ``b = S_uv / S_uu``, slope standard error
    ``sqrt(SS_res / (n - 2) / S_uu)`` with ``SS_res`` the residual sum of squares in log
    space, and ``b -+ t(0.975, n - 2) * se(b)`` as the 95% confidence interval.

    Args:
        x: n values of the independent variable (e.g. context tokens), all > 0.
        y: n values of the metric at those x (any unit), all > 0.

    Returns:
        The fit; its CI collapses to the point estimate when the data lie exactly on a
        power law.

    Raises:
        ValueError: if x and y differ in length, n < 3, a value is not a finite positive
            number, or all x are equal (the exponent is then undefined).
    """
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length ({len(x)} and {len(y)})")
    n = len(x)
    if n < 3:
        raise ValueError(f"a power-law fit with a confidence interval needs n >= 3, got {n}")
    xs = [float(v) for v in x]
    ys = [float(v) for v in y]
    for name, values in (("x", xs), ("y", ys)):
        bad = [v for v in values if not (math.isfinite(v) and v > 0)]
        if bad:
            raise ValueError(f"power-law fit needs finite {name} > 0, got {bad[0]!r}")
    if min(xs) == max(xs):
        raise ValueError("all x values are equal: the exponent is undefined")

    u = [math.log(v) for v in xs]
    v = [math.log(w) for w in ys]
    mean_u = math.fsum(u) / n
    mean_v = math.fsum(v) / n
    du = [ui - mean_u for ui in u]
    dv = [vi - mean_v for vi in v]
    s_uu = math.fsum(d * d for d in du)
    s_uv = math.fsum(a * b for a, b in zip(du, dv, strict=True))
    s_vv = math.fsum(d * d for d in dv)
    if s_uu == 0.0:  # distinct x whose logs coincide (not reachable with floats > 0)
        raise ValueError("all x values are equal: the exponent is undefined")

    slope = s_uv / s_uu
    intercept = mean_v - slope * mean_u
    ss_res = math.fsum((vi - intercept - slope * ui) ** 2 for ui, vi in zip(u, v, strict=True))
    se = math.sqrt(ss_res / (n - 2) / s_uu)
    half = student_t_quantile(0.975, n - 2) * se
    r_squared = 1.0 if s_vv == 0.0 else max(0.0, min(1.0, 1.0 - ss_res / s_vv))
    return PowerLawFit(
        exponent=slope,
        exponent_se=se,
        ci95_low=slope - half,
        ci95_high=slope + half,
        coefficient=math.exp(intercept),
        r_squared=r_squared,
        n=n,
        x_min=min(xs),
        x_max=max(xs),
    )


def growth_verdict(fit: PowerLawFit) -> str:
    """Plain-language growth class of a power-law fit, from its exponent's 95% CI.

    Rule: take the reference exponents 0 (``constant``), 1 (``linear``) and 2
    (``quadratic``) that lie inside ``[ci95_low, ci95_high]`` (widened by 1e-9 on each
    side so that an exact fit, whose CI is a point up to rounding, classifies as
    expected).

    - exactly one inside: its name (``"constant"``, ``"linear"`` or ``"quadratic"``);
    - several inside: the CI cannot tell them apart, e.g.
      ``"linear or quadratic (not resolved; widen the sweep)"``, likewise
      ``"constant or linear (...)"`` and ``"constant, linear or quadratic (...)"``;
    - none inside: the CI lies in one open interval between them: above 2
      ``"superquadratic"``, in (1, 2) ``"between linear and quadratic"``, in (0, 1)
      ``"sublinear"``, below 0 ``"decreasing"`` (e.g. tok/s falling with context).

    Args:
        fit: a fit from :func:`fit_power_law`.

    Returns:
        One of the strings above.
    """
    lo = fit.ci95_low - _VERDICT_TOLERANCE
    hi = fit.ci95_high + _VERDICT_TOLERANCE
    inside = [name for ref, name in _REFERENCE if lo <= ref <= hi]
    if len(inside) == 1:
        return inside[0]
    if inside:
        names = ", ".join(inside[:-1]) + " or " + inside[-1]
        return f"{names} (not resolved; widen the sweep)"
    if lo > 2.0:
        return "superquadratic"
    if lo > 1.0:
        return "between linear and quadratic"
    if lo > 0.0:
        return "sublinear"
    return "decreasing"
