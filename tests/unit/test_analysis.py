import pytest

from meltbench.measure.analysis import analyze_reps, engine_rates
from meltbench.measure.stats import summarize
from meltbench.measure.warnings import check_agreement, check_memory_rate, check_repetitions


def rep(index, kind, ttft_ms, gap_ms, n_gen, counters=None):
    """A synthetic rep: start at index seconds, first token after ttft, equal gaps."""
    start = index * 1_000_000_000
    first = start + int(ttft_ms * 1e6)
    tokens = [first + int(i * gap_ms * 1e6) for i in range(n_gen)]
    return {
        "kind": kind,
        "index": index,
        "t_start_ns": start,
        "token_ns": tokens,
        "counters": counters,
    }


def test_timed_reps_summarized_warmup_excluded_and_kept_as_cold():
    reps = [
        rep(0, "warmup", 400.0, 40.0, 5),  # cold and slow
        rep(1, "timed", 100.0, 10.0, 5),
        rep(2, "timed", 100.0, 20.0, 5),
    ]
    a = analyze_reps(reps, n_prompt=50, load_ns=250_000_000, peak_rss_bytes=1000)
    m = a.metrics
    assert m["ttft_ms"].samples == (100.0, 100.0)
    assert m["prefill_tps"].samples == (500.0, 500.0)
    assert m["decode_tps"].samples == pytest.approx((100.0, 50.0))
    assert m["tpot_ms"].samples == pytest.approx((10.0, 20.0))
    assert m["e2e_ms"].samples == pytest.approx((140.0, 180.0))
    assert m["itl_ms"].n == 8  # 4 gaps x 2 timed reps, pooled
    assert m["itl_ms"].median == pytest.approx(15.0)
    assert m["load_ms"].samples == (250.0,)
    assert m["peak_rss_bytes"].samples == (1000.0,)
    assert a.cold["ttft_ms"] == 400.0
    assert a.cold["decode_tps"] == pytest.approx(25.0)
    # no engine counters -> fidelity unknown, never a made-up number
    assert a.fidelity == {"prefill_tps": None, "decode_tps": None}
    assert "engine_decode_tps" not in m


def test_engine_rates_and_fidelity_ratio():
    assert engine_rates(
        {"n_p_eval": 64, "t_p_eval_ms": 100.0, "n_eval": 15, "t_eval_ms": 150.0}
    ) == (
        640.0,
        100.0,
    )
    assert engine_rates({"n_p_eval": 0, "t_p_eval_ms": 0.0}) == (None, None)
    assert engine_rates(None) == (None, None)
    counters = {"n_p_eval": 50, "t_p_eval_ms": 98.0, "n_eval": 4, "t_eval_ms": 39.0}
    reps = [rep(i, "timed", 100.0, 10.0, 5, counters) for i in range(3)]
    a = analyze_reps(reps, n_prompt=50)
    assert a.fidelity["prefill_tps"] == pytest.approx(500.0 / (50 / 0.098))
    assert a.fidelity["decode_tps"] == pytest.approx(100.0 / (4 / 0.039))
    assert not [w for w in a.warnings if w.code == "engine_disagreement"]


def test_disagreement_with_engine_is_flagged():
    counters = {"n_p_eval": 50, "t_p_eval_ms": 50.0, "n_eval": 4, "t_eval_ms": 40.0}
    reps = [rep(i, "timed", 100.0, 10.0, 5, counters) for i in range(3)]
    codes = [(w.code, w.metric) for w in analyze_reps(reps, n_prompt=50).warnings]
    assert ("engine_disagreement", "prefill_tps") in codes  # ours 500 vs engine 1000
    assert ("engine_disagreement", "decode_tps") not in codes


def test_warnings_variation_slow_first_and_few_reps():
    stable = summarize([100.0, 101.0, 99.0])
    noisy = summarize([100.0, 150.0, 60.0])
    w = check_repetitions(
        {"decode_tps": noisy, "ttft_ms": stable}, [200.0, 100.0, 101.0, 100.0, 99.0]
    )
    codes = [x.code for x in w]
    assert codes == ["high_variation", "slow_first_run"]
    assert w[0].metric == "decode_tps"
    few = check_repetitions({}, [10.0, 11.0])
    assert [x.code for x in few] == ["few_repetitions"]


def test_outlier_not_first():
    w = check_repetitions({}, [100.0, 101.0, 99.0, 100.0, 400.0])
    assert [x.code for x in w] == ["outliers"]


def test_agreement_tolerance_is_three_percent():
    assert check_agreement({"decode_tps": 0.971, "prefill_tps": None}) == []
    assert [w.metric for w in check_agreement({"decode_tps": 0.969})] == ["decode_tps"]


def test_memory_rate_warning():
    assert check_memory_rate(100.0, 80.0) == []
    assert check_memory_rate(100.0, None) == []
    assert check_memory_rate(100.0, 20.0)[0].code == "memory_sampling_slow"


def test_inconsistent_rep_raises():
    bad = {"kind": "timed", "t_start_ns": 10, "token_ns": [5], "counters": None}
    with pytest.raises(ValueError):
        analyze_reps([bad], n_prompt=4)
