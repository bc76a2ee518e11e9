"""Typed warnings about the trustworthiness of a result, each with advice.

Rules and their sources:

- ``high_variation``: standard deviation >= 10% of the mean (pyperf's "benchmark
  seems unstable" check, ``pyperf._cli.format_checks``).
- ``slow_first_run``: the first timed repetition's e2e time has a modified z-score
  above 14 among the timed repetitions (hyperfine's ``SlowInitialRun``, same threshold).
- ``outliers``: any other repetition with |modified z-score| > 14 (hyperfine's
  ``OutliersDetected``).
- ``few_repetitions``: fewer than 3 timed repetitions; a t-based 95% CI with n = 2 is
  +- 12.7 standard errors wide.
- ``engine_disagreement``: our prefill or decode tok/s differs from the engine's own
  counters by more than 3% (meltbench's fidelity target).
- ``memory_sampling_slow``: the RSS sampler reached under half its requested rate.

Warnings flag; they never drop data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from meltbench.measure.stats import Summary, modified_zscores, percentile

__all__ = [
    "AGREEMENT_TOLERANCE",
    "CV_THRESHOLD",
    "OUTLIER_ZSCORE",
    "BenchWarning",
    "check_agreement",
    "check_memory_rate",
    "check_repetitions",
]

CV_THRESHOLD = 0.10
OUTLIER_ZSCORE = 14.0
AGREEMENT_TOLERANCE = 0.03
_VARIATION_METRICS = ("prefill_tps", "decode_tps", "ttft_ms", "e2e_ms", "latency_ms")


@dataclass(frozen=True)
class BenchWarning:
    """A warning about a result.

    Attributes:
        code: stable identifier (``high_variation``, ``slow_first_run``, ...).
        message: what was observed, with numbers.
        advice: what to do about it.
        metric: the metric concerned, if any.
    """

    code: str
    message: str
    advice: str
    metric: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        """Plain-dict form (JSON-ready)."""
        return asdict(self)


def check_repetitions(
    metrics: Mapping[str, Summary], e2e_ms: Sequence[float], series_name: str = "e2e_ms"
) -> list[BenchWarning]:
    """Variation, slow-first-run, outlier and too-few-repetitions checks.

    Args:
        metrics: per-repetition summaries by metric name.
        e2e_ms: end-to-end time of each timed repetition, in order.
        series_name: the metric ``e2e_ms`` is (``latency_ms`` for a forward pass).
    """
    warnings: list[BenchWarning] = []
    for name in _VARIATION_METRICS:
        summary = metrics.get(name)
        if summary is None or summary.cv is None or summary.cv < CV_THRESHOLD:
            continue
        warnings.append(
            BenchWarning(
                code="high_variation",
                message=(
                    f"{name}: standard deviation is {summary.cv:.0%} of the mean "
                    f"({summary.stddev:.4g} of {summary.mean:.4g})"
                ),
                advice="close other programs, add --reps, or pin the CPU frequency governor",
                metric=name,
            )
        )
    if len(e2e_ms) < 3:
        warnings.append(
            BenchWarning(
                code="few_repetitions",
                message=f"only {len(e2e_ms)} timed repetition(s); confidence intervals are wide",
                advice="use --reps 5 or more for numbers you publish or gate on",
            )
        )
        return warnings
    scores = modified_zscores(e2e_ms)
    if scores[0] > OUTLIER_ZSCORE:
        warnings.append(
            BenchWarning(
                code="slow_first_run",
                message=(
                    f"the first timed repetition ({e2e_ms[0]:.1f} ms) was much slower than "
                    f"the rest (median {percentile(e2e_ms, 50.0):.1f} ms)"
                ),
                advice="caches were probably cold; raise --warmup",
                metric=series_name,
            )
        )
    elif any(abs(s) > OUTLIER_ZSCORE for s in scores):
        n_out = sum(abs(s) > OUTLIER_ZSCORE for s in scores)
        warnings.append(
            BenchWarning(
                code="outliers",
                message=(
                    f"{n_out} of {len(e2e_ms)} repetitions are statistical outliers ({series_name})"
                ),
                advice="another process may have interfered; rerun on a quiet machine",
                metric=series_name,
            )
        )
    return warnings


def check_agreement(ratios: Mapping[str, float | None]) -> list[BenchWarning]:
    """Warn where ``ours / engine's`` differs from 1 by more than 3%.

    Args:
        ratios: metric name -> ratio of medians (None = engine reports no counter).
    """
    warnings = []
    for name, ratio in ratios.items():
        if ratio is None or abs(ratio - 1.0) <= AGREEMENT_TOLERANCE:
            continue
        warnings.append(
            BenchWarning(
                code="engine_disagreement",
                message=f"{name} differs from the engine's own counters by {ratio - 1:+.1%}",
                advice="the harness may be adding overhead; run benchmarks/overhead.py",
                metric=name,
            )
        )
    return warnings


def check_memory_rate(requested_hz: float, achieved_hz: float | None) -> list[BenchWarning]:
    """Warn if the RSS sampler achieved less than half its requested rate."""
    if achieved_hz is None or achieved_hz >= 0.5 * requested_hz:
        return []
    return [
        BenchWarning(
            code="memory_sampling_slow",
            message=f"memory sampled at {achieved_hz:.0f} Hz of {requested_hz:.0f} Hz requested",
            advice="the machine is overloaded; the peak RSS still includes the kernel's VmHWM",
            metric="peak_rss_bytes",
        )
    ]
