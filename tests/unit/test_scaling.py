"""Power-law fits of metrics against context length, and the growth verdict."""

from __future__ import annotations

import json
import math

import pytest

from meltbench.config import RunSpec
from meltbench.measure.scaling import PowerLawFit, fit_power_law
from meltbench.measure.scaling import growth_verdict as verdict
from meltbench.measure.stats import summarize
from meltbench.results.context_scaling import context_scaling
from tests.helpers import make_result

# A fixed, hand-written perturbation (no RNG): y = 0.02 * x^1.8 * (1 + eps).
NOISY_X = [128, 256, 512, 1024, 2048, 4096]
NOISY_EPS = [0.031, -0.024, 0.012, -0.037, 0.026, -0.008]
NOISY_Y = [0.02 * x**1.8 * (1 + e) for x, e in zip(NOISY_X, NOISY_EPS, strict=True)]


def _closed_form(x, y):
    """Independent check: the textbook sums-of-products form of simple regression
    (no centring), slope SE from SS_res = S_vv - b * S_uv."""
    n = len(x)
    u = [math.log(v) for v in x]
    v = [math.log(w) for w in y]
    su, sv = sum(u), sum(v)
    suu = sum(a * a for a in u)
    svv = sum(b * b for b in v)
    suv = sum(a * b for a, b in zip(u, v, strict=True))
    s_uu = suu - su * su / n
    s_vv = svv - sv * sv / n
    s_uv = suv - su * sv / n
    slope = (n * suv - su * sv) / (n * suu - su * su)
    ss_res = s_vv - slope * s_uv
    se = math.sqrt(ss_res / (n - 2) / s_uu)
    intercept = (sv - slope * su) / n
    return slope, se, 1 - ss_res / s_vv, math.exp(intercept)


# --- fit_power_law ---------------------------------------------------------------------


def test_exact_power_law_is_recovered_and_its_ci_collapses():
    x = [1, 2, 4, 8, 16, 100]
    fit = fit_power_law(x, [3 * v**1.5 for v in x])
    assert fit.exponent == pytest.approx(1.5, abs=1e-12)
    assert fit.coefficient == pytest.approx(3.0, rel=1e-12)
    assert fit.r_squared == pytest.approx(1.0, abs=1e-12)
    assert fit.exponent_se == pytest.approx(0.0, abs=1e-12)
    assert fit.ci95_low == pytest.approx(1.5, abs=1e-12)
    assert fit.ci95_high == pytest.approx(1.5, abs=1e-12)
    assert (fit.n, fit.x_min, fit.x_max) == (6, 1.0, 100.0)


def test_noisy_fit_matches_an_independent_closed_form():
    fit = fit_power_law(NOISY_X, NOISY_Y)
    slope, se, r2, coef = _closed_form(NOISY_X, NOISY_Y)
    t = 2.7764451051977934  # t(0.975, 4), tabulated 2.776
    assert fit.exponent == pytest.approx(slope, rel=1e-12)
    assert fit.exponent_se == pytest.approx(se, rel=1e-6)
    assert fit.r_squared == pytest.approx(r2, rel=1e-12)
    assert fit.coefficient == pytest.approx(coef, rel=1e-10)
    assert fit.ci95_low == pytest.approx(slope - t * se, rel=1e-9)
    assert fit.ci95_high == pytest.approx(slope + t * se, rel=1e-9)


def test_noisy_fit_known_numbers():
    # Reference values from scipy.stats.linregress on (ln x, ln y) and scipy.stats.t.ppf.
    fit = fit_power_law(NOISY_X, NOISY_Y)
    assert fit.exponent == pytest.approx(1.7961848546392996, rel=1e-12)
    assert fit.exponent_se == pytest.approx(0.010469313875586483, rel=1e-9)
    assert fit.ci95_low == pytest.approx(1.7671173793746482, rel=1e-9)
    assert fit.ci95_high == pytest.approx(1.825252329903951, rel=1e-9)
    assert fit.r_squared == pytest.approx(0.999864126313533, rel=1e-12)
    assert fit.coefficient == pytest.approx(0.020502313825204437, rel=1e-10)
    assert fit.n == 6
    assert verdict(fit) == "between linear and quadratic"


def test_three_points_use_one_degree_of_freedom():
    x, y = [1, 2, 4], [1.0, 2.2, 3.9]
    fit = fit_power_law(x, y)
    slope, se, _, _ = _closed_form(x, y)
    half = 12.706204736174707 * se  # t(0.975, 1)
    assert fit.ci95_low == pytest.approx(slope - half, rel=1e-9)
    assert fit.ci95_high == pytest.approx(slope + half, rel=1e-9)


def test_constant_y_fits_exponent_zero_with_r2_one():
    fit = fit_power_law([10, 20, 30], [5.0, 5.0, 5.0])
    assert fit.exponent == 0.0
    assert fit.exponent_se == 0.0
    assert fit.r_squared == 1.0
    assert fit.coefficient == pytest.approx(5.0)


def test_to_dict_is_json_ready():
    d = fit_power_law(NOISY_X, NOISY_Y).to_dict()
    assert json.loads(json.dumps(d)) == d
    assert set(d) == {
        "exponent",
        "exponent_se",
        "ci95_low",
        "ci95_high",
        "coefficient",
        "r_squared",
        "n",
        "x_min",
        "x_max",
    }


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        ([1, 2], [1, 2], "n >= 3"),
        ([], [], "n >= 3"),
        ([1, 2, 3], [1, 2], "differ in length"),
        ([0, 2, 3], [1, 2, 3], "x > 0"),
        ([-1, 2, 3], [1, 2, 3], "x > 0"),
        ([1, 2, 3], [1, 0, 3], "y > 0"),
        ([1, 2, 3], [1, -2, 3], "y > 0"),
        ([1, 2, math.nan], [1, 2, 3], "x > 0"),
        ([1, 2, 3], [1, 2, math.inf], "y > 0"),
        ([4, 4, 4, 4], [1, 2, 3, 4], "all x values are equal"),
    ],
)
def test_invalid_input_raises(x, y, match):
    with pytest.raises(ValueError, match=match):
        fit_power_law(x, y)


# --- verdict -------------------------------------------------------------------------


def _fit(low: float, high: float) -> PowerLawFit:
    mid = (low + high) / 2
    return PowerLawFit(mid, (high - low) / 4, low, high, 1.0, 0.99, 5, 1.0, 16.0)


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (-0.1, 0.2, "constant"),
        (0.2, 0.8, "sublinear"),
        (0.9, 1.1, "linear"),
        (1.2, 1.8, "between linear and quadratic"),
        (1.9, 2.05, "quadratic"),
        (2.1, 3.0, "superquadratic"),
        (-1.2, -0.8, "decreasing"),
        (0.8, 2.3, "linear or quadratic (not resolved; widen the sweep)"),
        (-0.3, 1.4, "constant or linear (not resolved; widen the sweep)"),
        (-0.5, 2.5, "constant, linear or quadratic (not resolved; widen the sweep)"),
        (1.0, 1.0, "linear"),  # bounds are inclusive
        (1.0, 2.0, "linear or quadratic (not resolved; widen the sweep)"),
    ],
)
def test_verdict_classes(low, high, expected):
    assert verdict(_fit(low, high)) == expected


@pytest.mark.parametrize(
    ("power", "expected"),
    [
        (0.0, "constant"),
        (0.5, "sublinear"),
        (1.0, "linear"),
        (1.5, "between linear and quadratic"),
        (2.0, "quadratic"),
        (3.0, "superquadratic"),
        (-1.0, "decreasing"),
    ],
)
def test_verdict_of_exact_power_laws(power, expected):
    # CIs collapse to a point up to rounding; the verdict must not flip on 1e-16 errors.
    x = [3, 7, 100, 1000, 4097]
    assert verdict(fit_power_law(x, [0.7 * v**power for v in x])) == expected


# --- context_scaling -------------------------------------------------------------------


def _run(model, n_prompt, n_depth=0, status="ok", threads=2, metrics=None):
    """A run of ``model`` at one context point with the given metric medians (n = 1)."""
    spec = RunSpec.model_validate(
        {"workload": {"n_prompt": n_prompt, "n_gen": 4, "n_depth": n_depth, "reps": 3}}
    )
    return make_result(
        status=status,
        spec=spec,
        test=spec.workload.label,
        model={"name": model, "quant": "Q8_0"},
        settings={"threads": threads},
        metrics={name: summarize([value]) for name, value in (metrics or {}).items()},
    )


def _transformer(p, d=0, **kw):
    ctx = p + d
    metrics = {
        "ttft_ms": 0.001 * p * ctx,  # quadratic in n_prompt at depth 0
        "prefill_tps": 1000.0 / ctx,  # p / ttft
        "decode_tps": 80.0 * ctx**-0.25,
        "peak_rss_bytes": 1e6 * ctx,
    }
    return _run("tfm", p, d, metrics=metrics, **kw)


def _mamba(p, **kw):
    metrics = {
        "ttft_ms": 0.5 * p,
        "prefill_tps": 2000.0,
        "decode_tps": 60.0,
        "peak_rss_bytes": 3e8,
    }
    return _run("mamba", p, metrics=metrics, **kw)


def _rows(rows, **match):
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def test_context_scaling_per_model_with_verdicts():
    results = [
        *(_transformer(p) for p in (256, 512, 1024, 2048)),
        *(_mamba(p) for p in (512, 4096, 1024, 2048)),  # any order
        # Failed at the OOM boundary: ignored (its numbers would break the fit).
        _transformer(8192, status="failed"),
        # Only 2 distinct n_prompt: its group is skipped.
        _run("two-points", 128, metrics={"ttft_ms": 1.0}),
        _run("two-points", 256, metrics={"ttft_ms": 3.0}),
        # Same model, other thread count: its own group (2 points, skipped), not mixed in.
        _transformer(256, threads=4),
        _transformer(4096, threads=4),
    ]
    rows = context_scaling(results)
    assert json.loads(json.dumps(rows)) == rows
    assert {r["group"]["model"] for r in rows} == {"tfm", "mamba"}
    assert {r["x"] for r in rows} == {"n_prompt"}
    assert len(rows) == 8

    tfm = {r["metric"]: r for r in _rows(rows, x="n_prompt") if r["group"]["model"] == "tfm"}
    assert list(tfm) == ["ttft_ms", "prefill_tps", "decode_tps", "peak_rss_bytes"]
    expected = {
        "ttft_ms": (2.0, "quadratic"),
        "prefill_tps": (-1.0, "decreasing"),
        "decode_tps": (-0.25, "decreasing"),
        "peak_rss_bytes": (1.0, "linear"),
    }
    for metric, (exponent, word) in expected.items():
        row = tfm[metric]
        assert row["exponent"] == pytest.approx(exponent, abs=1e-12), metric
        assert row["ci95_low"] == pytest.approx(exponent, abs=1e-9)
        assert row["ci95_high"] == pytest.approx(exponent, abs=1e-9)
        assert row["r_squared"] == pytest.approx(1.0, abs=1e-12)
        assert row["n"] == 4  # the failed run at 8192 is not a point
        assert (row["x_min"], row["x_max"]) == (256.0, 2048.0)
        assert row["verdict"] == word
    assert tfm["ttft_ms"]["group"] == {
        "model": "tfm",
        "model_path": None,
        "quant": "Q8_0",
        "weights": "pretrained",
        "engine": "llama.cpp",
        "dtype": None,
        "device": None,
        "target": "local",
        "threads": 2,
        "n_gen": 4,
        "n_depth": 0,
    }

    mamba = {r["metric"]: r for r in rows if r["group"]["model"] == "mamba"}
    assert mamba["ttft_ms"]["exponent"] == pytest.approx(1.0, abs=1e-12)
    assert mamba["ttft_ms"]["verdict"] == "linear"
    for metric in ("prefill_tps", "decode_tps", "peak_rss_bytes"):
        assert mamba[metric]["exponent"] == 0.0
        assert mamba[metric]["verdict"] == "constant"


def test_depth_sweep_fits_against_total_context():
    results = [_transformer(64, d) for d in (0, 192, 448, 960)]
    rows = context_scaling(results)
    assert {r["x"] for r in rows} == {"context"}
    by_metric = {r["metric"]: r for r in rows}
    assert by_metric["ttft_ms"]["group"]["n_prompt"] == 64
    assert "n_depth" not in by_metric["ttft_ms"]["group"]
    assert (by_metric["ttft_ms"]["x_min"], by_metric["ttft_ms"]["x_max"]) == (64.0, 1024.0)
    # ttft = 0.001 * 64 * context: linear in context at a fixed prompt.
    assert by_metric["ttft_ms"]["exponent"] == pytest.approx(1.0, abs=1e-12)
    assert by_metric["ttft_ms"]["verdict"] == "linear"
    assert by_metric["decode_tps"]["exponent"] == pytest.approx(-0.25, abs=1e-12)


def test_grid_gives_both_curves():
    results = [_transformer(p, d) for p in (128, 256, 512) for d in (0, 1024, 3072)]
    rows = context_scaling(results)
    prompt_rows = _rows(rows, x="n_prompt", metric="ttft_ms")
    context_rows = _rows(rows, x="context", metric="ttft_ms")
    assert sorted(r["group"]["n_depth"] for r in prompt_rows) == [0, 1024, 3072]
    assert sorted(r["group"]["n_prompt"] for r in context_rows) == [128, 256, 512]
    assert rows.index(prompt_rows[-1]) < rows.index(context_rows[0])  # n_prompt curves first


def test_repeated_points_and_missing_metrics():
    results = [_mamba(p) for p in (256, 512, 1024)]
    # A second run at 512 with a different TTFT: a separate point (n = 4).
    results.append(_run("mamba", 512, metrics={"ttft_ms": 0.5 * 512 * 1.1}))
    rows = context_scaling(results)
    by_metric = {r["metric"]: r for r in rows}
    assert by_metric["ttft_ms"]["n"] == 4
    slope, _, _, _ = _closed_form([256, 512, 1024, 512], [128.0, 256.0, 512.0, 281.6])
    assert by_metric["ttft_ms"]["exponent"] == pytest.approx(slope, rel=1e-12)
    assert by_metric["ttft_ms"]["ci95_low"] < 1.0 < by_metric["ttft_ms"]["ci95_high"]
    assert by_metric["decode_tps"]["n"] == 3  # the extra run did not measure it

    # A metric measured at only 2 distinct x is skipped; the others still fit.
    results = [_mamba(p) for p in (256, 512)] + [_run("mamba", 1024, metrics={"ttft_ms": 512})]
    by_metric = {r["metric"]: r for r in context_scaling(results)}
    assert list(by_metric) == ["ttft_ms"]


def test_nothing_to_fit():
    assert context_scaling([]) == []
    assert context_scaling([_transformer(256), _transformer(512)]) == []
    assert context_scaling([_transformer(p, status="failed") for p in (1, 2, 4)]) == []
