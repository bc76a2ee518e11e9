import math
import random

import pytest

from meltbench.measure.stats import (
    Summary,
    modified_zscores,
    percentile,
    student_t_cdf,
    student_t_quantile,
    summarize,
)


@pytest.mark.parametrize(
    ("df", "expected"),
    [
        # Two-sided 95% critical values, from standard t tables (e.g. NIST/SEMATECH).
        (1, 12.706204736),
        (2, 4.302652730),
        (4, 2.776445105),
        (9, 2.262157163),
        (30, 2.042272456),
        (1000, 1.962339081),
    ],
)
def test_t_quantile_matches_tables(df, expected):
    assert student_t_quantile(0.975, df) == pytest.approx(expected, rel=1e-9)


def test_t_quantile_is_symmetric_and_inverts_cdf():
    assert student_t_quantile(0.5, 7) == 0.0
    assert student_t_quantile(0.025, 7) == pytest.approx(-student_t_quantile(0.975, 7))
    for p in (0.6, 0.9, 0.99, 0.999):
        assert student_t_cdf(student_t_quantile(p, 5), 5) == pytest.approx(p, abs=1e-12)


def test_t_cdf_df1_is_cauchy():
    for t in (-3.0, -0.5, 0.0, 1.0, 10.0):
        assert student_t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_t_quantile_rejects_bad_probability(bad):
    with pytest.raises(ValueError, match="probability"):
        student_t_quantile(bad, 3)


def test_t_rejects_bad_df():
    with pytest.raises(ValueError, match="degrees of freedom"):
        student_t_quantile(0.9, 0)


def test_percentile_linear_interpolation_numpy_default():
    values = [10.0, 1.0, 7.0, 3.0]  # unsorted on purpose; sorted: 1 3 7 10
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 10.0
    assert percentile(values, 50) == 5.0
    # h = 3 * 0.9 = 2.7 -> 7 + 0.7 * 3 = 9.1
    assert percentile(values, 90) == pytest.approx(9.1)
    # h = 3 * 0.99 = 2.97 -> 7 + 0.97 * 3 = 9.91
    assert percentile(values, 99) == pytest.approx(9.91)
    assert percentile([4.2], 99) == 4.2


def test_percentile_errors():
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)
    with pytest.raises(ValueError, match="q must be"):
        percentile([1.0], 101)


def test_summarize_exact_values():
    s = summarize([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    assert s.n == 8
    assert s.mean == 5.0
    assert s.median == 4.5
    # sum of squared deviations = 32, sample variance = 32 / 7
    assert s.stddev == pytest.approx(math.sqrt(32 / 7))
    assert (s.min, s.max) == (2.0, 9.0)
    assert s.p90 == pytest.approx(7.6)  # h = 6.3 -> 7 + 0.3 * 2
    # every sample > 0: the modified Cox interval on ln(x) (Olsson 2005), by hand
    logs = [math.log(v) for v in s.samples]
    ybar = sum(logs) / 8
    s2 = sum((y - ybar) ** 2 for y in logs) / 7
    half = 2.364624252 * math.sqrt(s2 / 8 + s2**2 / 14)  # t(0.975, 7)
    assert s.ci_method == "lognormal-cox"
    assert s.ci95_low == pytest.approx(math.exp(ybar + s2 / 2 - half), rel=1e-8)
    assert s.ci95_high == pytest.approx(math.exp(ybar + s2 / 2 + half), rel=1e-8)
    assert s.samples == (2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0)
    assert s.cv == pytest.approx(math.sqrt(32 / 7) / 5.0)


def test_a_sample_with_a_value_at_or_below_zero_gets_student_t():
    # net energy above idle can be negative: the interval of the mean is Student's t
    s = summarize([-3.0, -1.0, -1.0, -1.0, 0.0, 0.0, 2.0, 4.0])  # the sample above, - 5
    half = 2.364624252 * math.sqrt(32 / 7) / math.sqrt(8)  # t(0.975, 7)
    assert s.ci_method == "student-t"
    assert s.ci95_low == pytest.approx(0.0 - half, abs=1e-8)
    assert s.ci95_high == pytest.approx(0.0 + half, abs=1e-8)


def test_no_bound_of_a_positive_metric_is_negative():
    # A loaded machine's TTFTs (ms): one request 10x slower. Student's t gave
    # [-145.9, 3080.4] for a sample like this (issue 20); a duration cannot be negative.
    ttft = [310.0, 295.0, 5350.0, 301.0, 1080.0]
    s = summarize(ttft)
    t_half = 2.776445105 * s.stddev / math.sqrt(5)
    assert s.mean - t_half < 0  # the old interval left the possible range
    assert 0 < s.ci95_low < s.median < s.mean < s.ci95_high
    rng = random.Random(7)
    for _ in range(500):
        n = rng.randint(2, 12)
        sample = [rng.lognormvariate(3.0, rng.uniform(0.01, 2.0)) for _ in range(n)]
        s = summarize(sample)
        assert 0 < s.ci95_low <= s.ci95_high


def test_constant_positive_sample_has_a_zero_width_interval():
    s = summarize([4.0, 4.0, 4.0])
    assert s.ci95_low == pytest.approx(4.0, rel=1e-12)
    assert s.ci95_high == pytest.approx(4.0, rel=1e-12)


def test_groups_partition_the_samples():
    s = summarize([1.0, 2.0, 3.0, 10.0, 20.0], groups=[3, 2])
    assert s.groups == (3, 2)
    assert s.per_group_medians() == [2.0, 15.0]
    assert summarize([1.0, 2.0]).per_group_medians() == [1.0, 2.0]
    with pytest.raises(ValueError, match="partition"):
        summarize([1.0, 2.0], groups=[3])


def test_summarize_single_value_has_no_spread():
    s = summarize([3.5])
    assert (s.n, s.mean, s.median, s.min, s.max, s.p99) == (1, 3.5, 3.5, 3.5, 3.5, 3.5)
    assert s.stddev is None and s.ci95_low is None and s.ci95_high is None and s.cv is None


def test_summarize_rejects_empty_and_nan():
    with pytest.raises(ValueError, match="empty"):
        summarize([])
    with pytest.raises(ValueError, match="finite"):
        summarize([1.0, float("nan")])


def test_summary_dict_round_trip():
    s = summarize([1.0, 2.0, 4.0])
    assert Summary.from_dict(s.to_dict()) == s


def test_modified_zscores():
    # median 3, absolute deviations 2 1 0 1 97 -> MAD 1
    scores = modified_zscores([1.0, 2.0, 3.0, 4.0, 100.0])
    assert scores == pytest.approx([-1.349, -0.6745, 0.0, 0.6745, 65.4265])


def test_modified_zscores_zero_mad():
    assert modified_zscores([5.0, 5.0, 5.0, 9.0]) == [0.0, 0.0, 0.0, math.inf]
