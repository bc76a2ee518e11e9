"""``meltbench compare``: exact statistics, verdicts, matching, selection and output."""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import random

import pytest
from rich.console import Console

from meltbench.cli.compare import add_compare_arguments, compare_command
from meltbench.errors import UsageError
from meltbench.measure.stats import summarize
from meltbench.results.compare import (
    bootstrap_ratio_ci,
    compare_metric,
    compare_results,
    group_points,
    mann_whitney_u,
    match_points,
    metric_direction,
    point_identity,
    point_label,
    summary_line,
    verdict,
)
from meltbench.results.store import ResultStore
from tests.helpers import make_result

# ----------------------------------------------------------------- Mann-Whitney U


def test_u_counts_pairs_with_ties_as_half():
    # x = [1, 2, 2], y = [2, 3]: pairs x > y: none; ties: (2, 2) twice -> U_x = 1.
    r = mann_whitney_u([1, 2, 2], [2, 3])
    assert r.u == 1.0
    assert mann_whitney_u([2, 3], [1, 2, 2]).u == 5.0  # U_x + U_y = n1 * n2 = 6


def test_exact_p_without_ties():
    # x = [1, 2, 3] below y = [4, 5]: W_x = 6 is the smallest of C(5, 3) = 10 rank sums,
    # so P(W <= 6) = 1/10 and the two-sided p is 2/10.
    r = mann_whitney_u([1, 2, 3], [4, 5], method="exact")
    assert (r.u, r.method) == (0.0, "exact")
    assert r.p_value == pytest.approx(0.2, abs=1e-15)
    # Five below five: 2 of C(10, 5) = 252 splits are as extreme.
    r = mann_whitney_u([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert r.p_value == pytest.approx(2 / 252, abs=1e-15)


def test_exact_p_with_ties_by_hand():
    # Pooled 1, 2, 2, 2, 3 -> midranks 1, 3, 3, 3, 5; x = [1, 2, 2] has W = 7.
    # The 10 equally likely 3-subsets: {1,3,3} x3 -> 7; {1,3,5} x3 -> 9; {3,3,3} -> 9;
    # {3,3,5} x3 -> 11. P(W <= 7) = 3/10, P(W >= 7) = 1 -> p = 2 * 3/10 = 0.6.
    r = mann_whitney_u([1, 2, 2], [2, 3], method="exact")
    assert r.p_value == pytest.approx(0.6, abs=1e-15)


def test_normal_approximation_without_ties_by_hand():
    # U = 0, mu = 3, sigma^2 = 3 * 2 * 6 / 12 = 3, z = (3 - 0.5) / sqrt(3) = 1.443376
    # p = 2 * (1 - Phi(1.443376)) = 0.148915
    r = mann_whitney_u([1, 2, 3], [4, 5], method="normal")
    assert r.method == "normal"
    assert r.p_value == pytest.approx(0.148915, abs=2e-6)


def test_normal_approximation_with_ties_by_hand():
    # U = 1, mu = 3; one tie group of 3: sum(t^3 - t) = 24;
    # sigma^2 = 6 / 12 * ((5 + 1) - 24 / (5 * 4)) = 2.4; z = (2 - 0.5) / sqrt(2.4) = 0.968246
    # p = 2 * (1 - Phi(0.968246)) = 0.332922
    r = mann_whitney_u([1, 2, 2], [2, 3], method="normal")
    assert r.p_value == pytest.approx(0.332922, abs=2e-6)
    assert r.p_value == pytest.approx(math.erfc(1.5 / math.sqrt(2.4) / math.sqrt(2)), rel=1e-12)


def test_all_values_tied_gives_p_one():
    for method in ("exact", "normal"):
        assert mann_whitney_u([5, 5, 5], [5, 5], method=method).p_value == 1.0


def test_exact_with_ties_matches_brute_force_enumeration():
    x, y = [1.0, 2.0, 2.0, 4.0], [2.0, 3.0, 3.0, 5.0]
    pooled = x + y
    order = sorted(pooled)
    rank = {v: (order.index(v) + 1 + len(order) - order[::-1].index(v)) / 2 for v in pooled}
    w = sum(rank[v] for v in x)
    sums = [sum(rank[pooled[i]] for i in c) for c in itertools.combinations(range(8), 4)]
    low = sum(s <= w + 1e-9 for s in sums) / len(sums)
    high = sum(s >= w - 1e-9 for s in sums) / len(sums)
    expected = min(1.0, 2 * min(low, high))
    assert mann_whitney_u(x, y, method="exact").p_value == pytest.approx(expected, abs=1e-15)


def test_auto_method_switches_at_20_samples():
    rng = random.Random(3)
    small = [rng.random() for _ in range(20)]
    big = [rng.random() for _ in range(21)]
    assert mann_whitney_u(small, small[:5]).method == "exact"
    assert mann_whitney_u(big, small).method == "normal"


def test_mann_whitney_rejects_bad_input():
    with pytest.raises(ValueError):
        mann_whitney_u([], [1.0])
    with pytest.raises(ValueError):
        mann_whitney_u([1.0], [2.0], method="magic")  # type: ignore[arg-type]


# ----------------------------------------------------------------- bootstrap


def test_bootstrap_is_deterministic_with_a_seed():
    rng = random.Random(1)
    b = [rng.gauss(100, 5) for _ in range(8)]
    c = [rng.gauss(95, 5) for _ in range(8)]
    assert bootstrap_ratio_ci(b, c, seed=7) == bootstrap_ratio_ci(b, c, seed=7)
    assert bootstrap_ratio_ci(b, c, seed=7) != bootstrap_ratio_ci(b, c, seed=8)


def test_bootstrap_of_constant_samples_is_the_exact_ratio():
    assert bootstrap_ratio_ci([10.0] * 4, [12.0] * 3) == (pytest.approx(1.2), pytest.approx(1.2))


def test_bootstrap_contains_the_true_ratio_of_a_known_shift():
    covered = 0
    for data_seed in range(20):
        rng = random.Random(data_seed)
        base = [rng.gauss(100, 3) for _ in range(20)]
        cand = [rng.gauss(80, 2.4) for _ in range(20)]  # true median ratio 0.8
        low, high = bootstrap_ratio_ci(base, cand, seed=data_seed)
        assert low < high
        covered += low <= 0.8 <= high
    assert covered >= 17  # nominal 95%


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError):
        bootstrap_ratio_ci([], [1.0])
    with pytest.raises(ValueError):
        bootstrap_ratio_ci([1.0], [1.0], resamples=0)
    with pytest.raises(ValueError):
        bootstrap_ratio_ci([1.0], [1.0], confidence=1.0)
    assert bootstrap_ratio_ci([0.0, 0.0], [1.0]) is None


# ----------------------------------------------------------------- verdicts


@pytest.mark.parametrize(
    ("name", "direction"),
    [
        ("decode_tps", 1),
        ("prefill_tps", 1),
        ("engine_decode_tps", 1),
        ("ttft_ms", -1),
        ("itl_ms", -1),
        ("e2e_ms", -1),
        ("peak_rss_bytes", -1),
        ("energy_j_decode", -1),
        ("avg_power_w_prefill_net", -1),
        ("j_per_token", -1),
        ("temp_max_c", -1),
        ("tokens_per_j_decode", 1),
        ("tokens_per_j_decode_net", 1),
        ("energy_j_load", -1),
        ("perplexity", -1),
        ("ppl_ratio", -1),
        ("kl_mean_nats", -1),
        ("kl_p99_nats", -1),
        ("top1_agreement", 1),
        ("task_meltbench_local_mc_acc", 1),
    ],
)
def test_direction_per_metric(name, direction):
    assert metric_direction(name) == direction


def test_unknown_direction_is_refused():
    with pytest.raises(ValueError, match="throttled"):
        metric_direction("throttled")
    with pytest.raises(ValueError, match="cpu_freq_mhz_decode"):
        metric_direction("cpu_freq_mhz_decode")
    with pytest.raises(ValueError, match="standard error"):
        metric_direction("task_x_acc_stderr")


@pytest.mark.parametrize(
    ("ratio", "ci", "direction", "expected"),
    [
        (0.8, (0.75, 0.85), 1, "regressed"),  # slower tok/s
        (1.2, (1.15, 1.25), 1, "improved"),
        (1.2, (1.15, 1.25), -1, "regressed"),  # longer TTFT
        (0.8, (0.75, 0.85), -1, "improved"),
        (0.8, (0.7, 1.01), 1, "no significant change"),  # CI contains 1
        (0.98, (0.97, 0.99), 1, "within threshold"),  # significant, < 5%
        (0.94, (0.93, 0.95), 1, "regressed"),
        (0.95, (0.93, 0.97), 1, "within threshold"),  # exactly at the threshold
    ],
)
def test_verdict_table(ratio, ci, direction, expected):
    assert verdict(ratio, ci, direction, 0.05, 5, 5) == expected


def test_verdict_too_few_samples():
    assert verdict(0.5, (0.4, 0.6), 1, 0.05, 2, 5) == "too few samples"
    m = compare_metric("decode_tps", [50.0, 51.0], [30.0, 31.0, 32.0])
    assert m.verdict == "too few samples"
    assert m.ci_low is None and m.p_value is None
    assert m.ratio == pytest.approx(31.0 / 50.5)


def _noisy(rng, center, n, cv=0.02):
    return [rng.gauss(center, center * cv) for _ in range(n)]


def test_known_20_percent_slowdown_is_a_regression():
    rng = random.Random(11)
    m = compare_metric("decode_tps", _noisy(rng, 50, 5), _noisy(rng, 40, 5))
    assert m.verdict == "regressed"
    assert m.ratio == pytest.approx(0.8, abs=0.03)
    assert m.ci_high < 1 and m.p_value == pytest.approx(2 / 252)
    # The same slowdown seen as time: 25% longer TTFT.
    m = compare_metric("ttft_ms", _noisy(rng, 100, 5), _noisy(rng, 125, 5))
    assert m.verdict == "regressed" and m.direction == -1
    m = compare_metric("ttft_ms", _noisy(rng, 125, 5), _noisy(rng, 100, 5))
    assert m.verdict == "improved"


@pytest.mark.parametrize("seed", range(8))
def test_identical_distributions_are_not_flagged(seed):
    rng = random.Random(seed)
    for name in ("decode_tps", "ttft_ms"):
        m = compare_metric(name, _noisy(rng, 50, 5), _noisy(rng, 50, 5), seed=seed)
        assert m.verdict in ("no significant change", "within threshold")


def test_significant_change_below_the_threshold_is_not_flagged():
    base = [100.0, 101.0, 99.0, 100.5, 99.5]
    cand = [v * 0.98 for v in base]  # every candidate value below every base value
    m = compare_metric("decode_tps", base, cand, threshold=0.05)
    assert m.ratio == pytest.approx(0.98)
    assert m.ci_high < 1.0  # significant ...
    assert m.verdict == "within threshold"  # ... but smaller than 5%
    assert compare_metric("decode_tps", base, cand, threshold=0.01).verdict == "regressed"


# ----------------------------------------------------------------- matching


def res(
    decode=(50.0, 51.0, 49.0),
    prefill=(600.0, 610.0, 590.0),
    threads=2,
    quant="Q8_0",
    test="pp8+tg4",
    run_id=None,
    status="ok",
    **extra,
):
    """A hand-built run with given samples and identity fields."""
    result = make_result(status=status)
    metrics = {"decode_tps": summarize(decode), "prefill_tps": summarize(prefill)}
    update = {
        "metrics": metrics,
        "test": test,
        "settings": {**result.settings, "threads": threads},
        "model": {**result.model, "quant": quant},
        **extra,
    }
    if run_id is not None:
        update["run_id"] = run_id
    return result.model_copy(update=update)


def test_identity_fields():
    ident = point_identity(res(threads=4, quant="Q4_0", test="pp64+tg16"))
    assert ident == {
        "model": "tiny",
        "quant": "Q4_0",
        "weights": "pretrained",
        "engine": "llama.cpp",
        "dtype": None,
        "device": None,
        "threads": 4,
        "test": "pp64+tg16",
    }
    assert point_label(ident) == "tiny Q4_0 llama.cpp t4 pp64+tg16"


def test_runs_with_the_same_identity_are_pooled():
    a, b = res(decode=(1.0, 2.0, 3.0)), res(decode=(4.0, 5.0, 6.0))
    points = group_points([a, b, res(threads=1)])
    assert len(points) == 2
    assert points[0].run_ids == [a.run_id, b.run_id]
    assert points[0].samples("decode_tps") == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_unmatched_points_are_listed_not_compared():
    base = [res(test="pp8+tg4"), res(test="pp16+tg4")]
    cand = [res(test="pp8+tg4"), res(test="pp32+tg4")]
    comp = compare_results(base, cand)
    assert [p.base.identity["test"] for p in comp.points] == ["pp8+tg4"]
    assert [p.identity["test"] for p in comp.only_base] == ["pp16+tg4"]
    assert [p.identity["test"] for p in comp.only_candidate] == ["pp32+tg4"]
    assert summary_line(comp) == (
        "0 regressions, 0 improvements, 2 unchanged; "
        "1 point only in base, 1 point only in candidate"
    )
    doc = comp.to_dict()
    assert doc["only_in_base"][0]["point"]["test"] == "pp16+tg4"
    assert doc["summary"]["only_in_candidate"] == 1


def test_single_runs_with_different_identities_need_force():
    base, cand = res(threads=2), res(threads=1, decode=(30.0, 31.0, 29.0))
    with pytest.raises(UsageError, match=r"threads: base 2, candidate 1.*--force"):
        compare_results([base], [cand])
    comp = compare_results([base], [cand], force=True)
    assert comp.forced == {"threads": (2, 1)}
    assert comp.points[0].label == "tiny Q8_0 llama.cpp pp8+tg4 (threads 2 → 1)"
    decode = next(m for m in comp.points[0].metrics if m.metric == "decode_tps")
    assert decode.verdict == "regressed" and comp.exit_code == 1
    assert comp.to_dict()["forced"] == {"threads": {"base": 2, "candidate": 1}}


def test_force_needs_one_point_a_side():
    with pytest.raises(UsageError, match="--force compares one point"):
        compare_results([res(test="a"), res(test="b")], [res()], force=True)


def test_ignore_matches_sets_across_a_field():
    base = [res(quant="Q8_0", test="pp8+tg4"), res(quant="Q8_0", test="pp16+tg4")]
    cand = [res(quant="Q4_0", test="pp8+tg4"), res(quant="Q4_0", test="pp16+tg4")]
    with pytest.raises(UsageError, match="--ignore quant"):
        compare_results(base, cand)
    comp = compare_results(base, cand, ignore=["quant"])
    assert len(comp.points) == 2 and not comp.only_base
    with pytest.raises(UsageError, match="only differ in it"):
        match_points(group_points(base), group_points(cand), ignore=["test"])
    with pytest.raises(UsageError, match="not an identity field"):
        match_points(group_points(base), group_points(cand), ignore=["colour"])


def test_metric_selection():
    base, cand = [res()], [res()]
    comp = compare_results(base, cand, metrics=["decode_tps"])
    assert [m.metric for m in comp.points[0].metrics] == ["decode_tps"]
    # Default metrics: only those with samples on both sides.
    assert [m.metric for m in compare_results(base, cand).points[0].metrics] == [
        "prefill_tps",
        "decode_tps",
    ]
    with pytest.raises(UsageError, match="ttft_ms has no samples"):
        compare_results(base, cand, metrics=["ttft_ms"])
    with pytest.raises(UsageError, match="no known direction"):
        compare_results(base, cand, metrics=["tokens"])
    with pytest.raises(UsageError, match="threshold"):
        compare_results(base, cand, threshold=1.5)


# ----------------------------------------------------------------- command


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_compare_arguments(parser)
    return parser.parse_args(list(argv))


def run_cmd(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = compare_command(parse(*argv), Console(file=out, width=250))
    return code, out.getvalue()


@pytest.fixture
def db(tmp_path):
    """A database with a 2-thread sweep (two points), a slower 1-thread sweep, a failed
    run, and two runs whose ids share the prefix ``abc``."""
    path = tmp_path / "r.db"
    with ResultStore(path) as store:
        for sweep_id, threads, decode in (
            ("5eeb" + "0" * 28, 2, 50.0),
            ("5eed" + "0" * 28, 1, 30.0),
        ):
            store.create_sweep(sweep_id, f"t{threads}", "2026-11-21T10:00:00+00:00", [], {})
            for i, test in enumerate(("pp8+tg4", "pp16+tg4")):
                r = res(
                    decode=(decode, decode + 1, decode - 1),
                    threads=threads,
                    test=test,
                    run_id=f"{threads}{i}" + "f" * 30,
                )
                store.save(r, sweep_id=sweep_id, point_key=test)
        store.save(res(status="failed", run_id="dead" + "0" * 28))
        store.save(res(run_id="abc1" + "0" * 28))
        store.save(res(run_id="abc2" + "0" * 28))
    return path


def test_command_same_runs_exit_0(db):
    code, out = run_cmd("abc1", "abc2", "--db", str(db))
    assert code == 0
    assert "no significant change" in out
    assert "0 regressions, 0 improvements, 2 unchanged" in out


def test_command_sweeps_with_ignore_and_regression_exit_1(db):
    code, out = run_cmd("5eeb", "5eed", "--db", str(db), "--ignore", "threads")
    assert code == 1
    assert "regressed" in out and "(threads 2 → 1)" in out
    assert "2 regressions, 0 improvements, 2 unchanged" in out  # decode down, prefill same


def test_command_json_and_markdown(db):
    code, out = run_cmd("2" + "0f", "1" + "0f", "--db", str(db), "--force", "-f", "json")
    doc = json.loads(out)
    assert code == 1 == doc["exit_code"]
    assert doc["base"]["kind"] == "run" and doc["forced"]["threads"] == {"base": 2, "candidate": 1}
    decode = doc["points"][0]["metrics"][1]
    assert decode["metric"] == "decode_tps" and decode["verdict"] == "regressed"
    assert decode["p_method"] == "exact" and decode["ratio"] == pytest.approx(0.6)
    code, out = run_cmd("20f", "10f", "--db", str(db), "--force", "-f", "md")
    assert out.startswith("> warning: forced comparison")
    assert "| **regressed** |" in out and "| point | metric |" in out


def test_command_database_files_per_side(db, tmp_path):
    other = tmp_path / "other.db"
    with ResultStore(other) as store:
        store.save(res(test="pp8+tg4", threads=2))
        store.save(res(test="pp99+tg4", threads=2))
    code, out = run_cmd("5eeb", str(other), "--base-db", str(db), "--db", "/nonexistent.db")
    assert code == 0
    assert "only in base (not compared): tiny Q8_0 llama.cpp t2 pp16+tg4" in out
    assert "only in candidate (not compared): tiny Q8_0 llama.cpp t2 pp99+tg4" in out
    # A database as BASE: all its ok runs (the failed one is skipped).
    code, out = run_cmd(str(db), str(other), "--format", "json")
    doc = json.loads(out)
    assert doc["base"]["kind"] == "database" and doc["base"]["failed_skipped"] == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("nope", "abc1"), "no run or sweep with id 'nope'"),
        (("abc", "abc1"), "ambiguous"),
        (("dead", "abc1"), "failed"),
        (("missing.db", "abc1"), "no database file"),
        (("20f", "10f"), "--force"),
        (("abc1", "abc2", "--threshold", "-0.1"), "--threshold"),
    ],
)
def test_command_bad_input_is_a_usage_error(db, argv, message):
    with pytest.raises(UsageError, match=message):
        run_cmd(*argv, "--db", str(db))


def test_arguments_and_defaults():
    args = parse("a", "b")
    assert (args.base, args.candidate, args.threshold, args.seed, args.format) == (
        "a",
        "b",
        0.05,
        0,
        "table",
    )
    assert args.metrics is None and args.force is False and args.ignore is None
    assert parse("a", "b", "--metrics", "decode_tps,ttft_ms").metrics == ["decode_tps", "ttft_ms"]
