"""Descriptive statistics for benchmark samples (pure Python, no numpy).

Every summary keeps its raw samples. Definitions:

- ``stddev`` is the sample standard deviation (Bessel's correction, ``n - 1``).
- ``median``, ``p90`` and ``p99`` use linear interpolation between closest ranks,
  Hyndman & Fan (1996) definition 7, the default of NumPy's ``percentile`` and R's
  ``quantile``.
- The 95% confidence interval is for the mean; with n < 2 it is undefined (``None``).
  When every sample is > 0 (durations, rates, bytes, energies: quantities that cannot
  be negative) it is the *modified Cox* interval for the mean of a log-normal
  distribution, ``exp(ybar + s2/2 +- t(0.975, n - 1) * sqrt(s2/n + s2**2 / (2(n - 1))))``
  with ``ybar``, ``s2`` the mean and sample variance of ``ln(x)`` (Olsson 2005,
  "Confidence intervals for the mean of a log-normal distribution", *J. Statistics
  Education* 13(1); Zhou & Gao 1997, *Statistics in Medicine* 16:783-790). Both bounds
  are > 0, and the interval widens upward for right-skewed timings, as they are. A
  sample with a value <= 0 (net energy above idle can be negative) gets Student's t
  interval ``mean +- t(0.975, n - 1) * stddev / sqrt(n)`` (Student 1908). Both assume
  independent repetitions. :attr:`Summary.ci_method` says which was used.
- Outliers use the modified z-score of Iglewicz & Hoaglin (1993),
  ``0.6745 * (x - median) / MAD``, as hyperfine does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "Summary",
    "mean_ci95",
    "modified_zscores",
    "percentile",
    "student_t_cdf",
    "student_t_quantile",
    "summarize",
]


@dataclass(frozen=True)
class Summary:
    """Summary statistics of one metric over repetitions, with the raw samples.

    Attributes:
        n: number of samples.
        mean, median, stddev, min, max, p90, p99: in the metric's own unit. ``stddev``
            is ``None`` for n < 2.
        ci95_low, ci95_high: 95% confidence interval of the mean (see the module
            docstring); ``None`` for n < 2.
        samples: the raw values, in measurement order.
        groups: for a metric with several samples per repetition (``itl_ms``: one per
            token gap), the number of samples of each repetition, in order
            (``sum(groups) == n``); ``None`` when each sample is its own repetition.
            The repetition, not the sample, is the unit of replication of such a
            metric (see :meth:`per_group_medians`).
        ci_method: ``lognormal-cox`` (every sample > 0), ``student-t`` or ``None``
            (n < 2).
    """

    n: int
    mean: float
    median: float
    stddev: float | None
    min: float
    max: float
    p90: float
    p99: float
    ci95_low: float | None
    ci95_high: float | None
    samples: tuple[float, ...] = field(repr=False)
    groups: tuple[int, ...] | None = field(default=None, repr=False)
    ci_method: str | None = None

    def per_group_medians(self) -> list[float]:
        """One value per unit of replication: each group's median when ``groups`` is set
        (type-7 median of that repetition's samples), else the samples themselves.

        Raises:
            ValueError: ``groups`` does not add up to ``n`` or has an empty group.
        """
        if self.groups is None:
            return list(self.samples)
        _check_groups(self.groups, len(self.samples))
        out, start = [], 0
        for size in self.groups:
            out.append(percentile(self.samples[start : start + size], 50.0))
            start += size
        return out

    @property
    def cv(self) -> float | None:
        """Coefficient of variation ``stddev / |mean|``; ``None`` if undefined."""
        if self.stddev is None or self.mean == 0:
            return None
        return self.stddev / abs(self.mean)

    def to_dict(self) -> dict[str, object]:
        """Plain-dict form (JSON-ready); ``samples`` becomes a list."""
        return {
            "n": self.n,
            "mean": self.mean,
            "median": self.median,
            "stddev": self.stddev,
            "min": self.min,
            "max": self.max,
            "p90": self.p90,
            "p99": self.p99,
            "ci95_low": self.ci95_low,
            "ci95_high": self.ci95_high,
            "samples": list(self.samples),
            "groups": list(self.groups) if self.groups is not None else None,
            "ci_method": self.ci_method,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Summary:
        """Inverse of :meth:`to_dict` (``groups`` and ``ci_method`` may be absent: results
        written before they existed). Raises ``KeyError`` on a missing field."""
        values = dict(data)
        values["samples"] = tuple(values["samples"])  # type: ignore[arg-type]
        if values.get("groups") is not None:
            values["groups"] = tuple(values["groups"])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 <= q <= 100) by linear interpolation (Hyndman & Fan type 7).

    Same result as ``numpy.percentile(values, q)`` with the default method.

    Raises:
        ValueError: if ``values`` is empty or ``q`` is outside [0, 100].
    """
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    ordered = sorted(values)
    h = (len(ordered) - 1) * q / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta function (modified Lentz's method).

    Source: Press et al., Numerical Recipes, 3rd ed., section 6.4.
    """
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = tiny if abs(d) < tiny else d
    d = 1.0 / d
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = tiny if abs(d) < tiny else d
        c = 1.0 + aa / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = tiny if abs(d) < tiny else d
        c = 1.0 + aa / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            return h
    raise ArithmeticError("incomplete beta continued fraction did not converge")


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b), 0 <= x <= 1 (Numerical Recipes 6.4)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """CDF of Student's t distribution with ``df`` degrees of freedom.

    ``P(T <= t) = 1 - I_{df/(df+t^2)}(df/2, 1/2) / 2`` for t >= 0, symmetric otherwise
    (Abramowitz & Stegun 26.7.1 via the incomplete beta function).

    Raises:
        ValueError: if ``df <= 0``.
    """
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def student_t_quantile(p: float, df: float) -> float:
    """Inverse CDF of Student's t: the t with ``P(T <= t) = p``.

    Solved by bisection on :func:`student_t_cdf` to 1e-12 relative precision, e.g.
    ``student_t_quantile(0.975, 4) == 2.7764451...`` (the tabulated value).

    Raises:
        ValueError: if ``p`` is not in (0, 1) or ``df <= 0``.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {p}")
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, df) < p:
        hi *= 2.0
        if hi > 1e300:
            raise ArithmeticError("t quantile search diverged")
    for _ in range(400):
        mid = 0.5 * (lo + hi)
        if student_t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return 0.5 * (lo + hi)


def mean_ci95(samples: Sequence[float]) -> tuple[float, float, str] | None:
    """95% confidence interval of the mean: ``(low, high, method)``, None for n < 2.

    ``method`` is ``lognormal-cox`` when every sample is > 0 (modified Cox interval,
    Olsson 2005; both bounds > 0) else ``student-t`` (see the module docstring). A
    sample of identical positive values gives ``(x, x)``.
    """
    n = len(samples)
    if n < 2:
        return None
    mean = math.fsum(samples) / n
    return _ci95(samples, mean, math.sqrt(math.fsum((v - mean) ** 2 for v in samples) / (n - 1)))


def _check_groups(groups: Sequence[int], n: int) -> None:
    if sum(groups) != n or any(g < 1 for g in groups):
        raise ValueError(f"groups {list(groups)} do not partition {n} samples")


def _ci95(samples: Sequence[float], mean: float, stddev: float) -> tuple[float, float, str]:
    """:func:`mean_ci95` of ``n >= 2`` samples whose mean and sample stddev are known."""
    n = len(samples)
    t = student_t_quantile(0.975, n - 1)
    if all(v > 0 for v in samples):
        logs = [math.log(v) for v in samples]
        ybar = math.fsum(logs) / n
        s2 = math.fsum((y - ybar) ** 2 for y in logs) / (n - 1)
        if s2 == 0.0:  # identical values: exactly that value, without exp(log(x)) rounding
            return samples[0], samples[0], "lognormal-cox"
        half = t * math.sqrt(s2 / n + s2 * s2 / (2 * (n - 1)))
        centre = ybar + s2 / 2
        return math.exp(centre - half), math.exp(centre + half), "lognormal-cox"
    half = t * stddev / math.sqrt(n)
    return mean - half, mean + half, "student-t"


def summarize(values: Sequence[float], groups: Sequence[int] | None = None) -> Summary:
    """Summarize raw samples: n, mean, median, stddev, min, max, p90, p99, 95% CI.

    Args:
        values: one value per repetition (or per token gap), any unit; at least one.
        groups: with several samples per repetition, how many each repetition gave, in
            order (see :attr:`Summary.groups`).

    Raises:
        ValueError: if ``values`` is empty or contains a NaN or infinity, or ``groups``
            does not partition it.
    """
    samples = tuple(float(v) for v in values)
    if not samples:
        raise ValueError("cannot summarize an empty sample")
    if any(not math.isfinite(v) for v in samples):
        raise ValueError("samples must be finite numbers")
    n = len(samples)
    if groups is not None:
        _check_groups(groups, n)
    mean = math.fsum(samples) / n
    stddev: float | None = None
    ci: tuple[float, float, str] | None = None
    if n >= 2:
        stddev = math.sqrt(math.fsum((v - mean) ** 2 for v in samples) / (n - 1))
        ci = _ci95(samples, mean, stddev)
    return Summary(
        n=n,
        mean=mean,
        median=percentile(samples, 50.0),
        stddev=stddev,
        min=min(samples),
        max=max(samples),
        p90=percentile(samples, 90.0),
        p99=percentile(samples, 99.0),
        ci95_low=ci[0] if ci else None,
        ci95_high=ci[1] if ci else None,
        samples=samples,
        groups=tuple(int(g) for g in groups) if groups is not None else None,
        ci_method=ci[2] if ci else None,
    )


def modified_zscores(values: Sequence[float]) -> list[float]:
    """Modified z-scores ``0.6745 * (x - median) / MAD`` (Iglewicz & Hoaglin 1993).

    MAD is the median absolute deviation from the median. When MAD is 0, a value equal
    to the median scores 0 and any other value scores +-infinity (it is infinitely far
    from a sample with no spread).

    Raises:
        ValueError: if ``values`` is empty.
    """
    if not values:
        raise ValueError("modified z-scores of an empty sequence")
    med = percentile(values, 50.0)
    mad = percentile([abs(v - med) for v in values], 50.0)
    scores = []
    for v in values:
        if mad == 0:
            scores.append(0.0 if v == med else math.copysign(math.inf, v - med))
        else:
            scores.append(0.6745 * (v - med) / mad)
    return scores
