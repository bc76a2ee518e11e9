import json
import math

import pytest

from meltbench.measure.sustain import (
    channel_series,
    combine_max,
    combine_series,
    decode_rate_series,
    detect_throttling,
    summarize_sustain,
)

S = 1_000_000_000
MS = 1_000_000


# ---------------------------------------------------------------- decode_rate_series


def test_decode_rate_series_exact_bins():
    t0 = 1 * S
    requests = [
        # prefill 100 ms, then three 25 ms gaps ending in bin 0 -> 40 tok/s
        (t0, [t0 + 100 * MS, t0 + 125 * MS, t0 + 150 * MS, t0 + 175 * MS]),
        # prefill (1.2 -> 1.95 s) and the pause between requests are not decode gaps;
        # gaps of 50 and 100 ms end in bin 1 -> 2 / 0.15 s
        (t0 + 200 * MS, [t0 + 950 * MS, t0 + 1000 * MS, t0 + 1100 * MS]),
        # bin 2 empty; bin 3 gets 4 gaps of 20 ms -> 50 tok/s
        (t0 + 3 * S, [t0 + 3100 * MS + i * 20 * MS for i in range(5)]),
    ]
    series = decode_rate_series(requests, t0, 1.0)
    assert [t for t, _ in series] == [0.5, 1.5, 2.5, 3.5]
    assert series[0][1] == 40.0
    assert series[1][1] == pytest.approx(2 / 0.15)
    assert series[2][1] is None
    assert series[3][1] == 50.0


def test_decode_rate_series_is_token_weighted():
    # one bin: 3 gaps of 10 ms and 1 gap of 70 ms -> 4 / 0.1 s = 40, not the mean of rates
    req = (0, [5 * MS, 15 * MS, 25 * MS, 35 * MS, 105 * MS])
    assert decode_rate_series([req], 0, 1.0) == [(0.5, 40.0)]


def test_decode_rate_series_end_and_before_t0():
    t0 = 10 * S
    # a gap ending before t0 is dropped; one ending at end_ns is dropped
    req = (t0 - S, [t0 - 100 * MS, t0 - 50 * MS, t0 + 25 * MS, t0 + 2 * S])
    series = decode_rate_series([req], t0, 0.5, end_ns=t0 + 2 * S)
    assert [t for t, _ in series] == [0.25, 0.75, 1.25, 1.75]
    assert series[0][1] == pytest.approx(1 / 0.075)
    assert [v for _, v in series[1:]] == [None, None, None]


def test_decode_rate_series_empty_and_single_token():
    assert decode_rate_series([], 0, 1.0) == []
    assert decode_rate_series([(0, [5])], 0, 1.0) == []
    assert decode_rate_series([(0, [5])], 0, 1.0, end_ns=2 * S) == [(0.5, None), (1.5, None)]


@pytest.mark.parametrize("bin_s", [0, -1.0, float("nan")])
def test_decode_rate_series_rejects_bad_bin(bin_s):
    with pytest.raises(ValueError, match="bin_s"):
        decode_rate_series([(0, [1, 2])], 0, bin_s)


def test_decode_rate_series_rejects_backwards():
    with pytest.raises(ValueError, match="backwards"):
        decode_rate_series([(0, [10, 30, 20])], 0, 1.0)
    with pytest.raises(ValueError, match="before its request start"):
        decode_rate_series([(50, [10, 30])], 0, 1.0)


# ---------------------------------------------------------------- channel series


def test_channel_series_reduce_and_missing():
    t = [0, 400 * MS, 900 * MS, 1100 * MS, 1500 * MS, 3200 * MS]
    v = [40.0, 42.0, None, float("nan"), 50.0, 45.0]
    assert channel_series(t, v, 0, 1.0, "mean") == [
        (0.5, 41.0),
        (1.5, 50.0),
        (2.5, None),
        (3.5, 45.0),
    ]
    assert channel_series(t, v, 0, 1.0, "max")[0] == (0.5, 42.0)
    assert channel_series(t, v, 0, 1.0, "min")[0] == (0.5, 40.0)
    with pytest.raises(ValueError, match="length"):
        channel_series([0], [1.0, 2.0], 0, 1.0)
    with pytest.raises(ValueError, match="reduce"):
        channel_series(t, v, 0, 1.0, "median")


def test_combine_max_across_channels():
    a = [(0.5, 40.0), (1.5, None), (2.5, 45.0)]
    b = [(0.5, 48.0), (1.5, None)]
    assert combine_max([a, b]) == [(0.5, 48.0), (1.5, None), (2.5, 45.0)]
    assert combine_series([a, b], "sum")[0] == (0.5, 88.0)
    assert combine_max([]) == []
    with pytest.raises(ValueError, match="share bins"):
        combine_max([a, [(0.25, 1.0)]])


# ---------------------------------------------------------------- synthetic runs


def stream(segments, *, t0=5 * S, n_gen=50, prefill_ms=100, pause_ms=10):
    """Back-to-back requests; segments = [(until_s, tok/s)], the rate of a request fixed
    by its start time. Returns (requests, end_ns)."""
    requests = []
    end_ns = t0 + round(segments[-1][0] * S)
    t = t0
    while t < end_ns:
        rel = (t - t0) / S
        tps = next(r for until, r in segments if rel < until)
        first = t + prefill_ms * MS
        tokens = [first + round(i * S / tps) for i in range(n_gen)]
        tokens = [x for x in tokens if x < end_ns]
        if len(tokens) >= 1:
            requests.append((t, tokens))
        t = (tokens[-1] if tokens else first) + pause_ms * MS
    return requests, t0, end_ns


def temp_rows(t0, end_ns, fn, period_s=1.0):
    t_ns = list(range(t0, end_ns, round(period_s * S)))
    return t_ns, [fn((x - t0) / S) for x in t_ns]


def rate_of(segments, bin_s=5.0):
    requests, t0, end = stream(segments)
    return decode_rate_series(requests, t0, bin_s, end_ns=end), t0, end


def binned_temp(t0, end, fn, bin_s=5.0):
    t, v = temp_rows(t0, end, fn)
    return channel_series(t, v, t0, bin_s, "max", end_ns=end)


def heating(t):
    return 45.0 if t < 60 else min(75.0, 45.0 + (t - 60) * 0.5)


STEP = [(60, 40.0), (180, 30.0)]


def test_steady_40_then_30_with_rising_temperature_is_throttled():
    rate, t0, end = rate_of(STEP)
    assert len(rate) == 36
    assert rate[0][1] == pytest.approx(40.0) and rate[-1][1] == pytest.approx(30.0)
    temp = binned_temp(t0, end, heating)
    v = detect_throttling(rate, temp, None)
    assert v.throttled is True
    assert v.initial_tps == pytest.approx(40.0)
    assert v.steady_tps == pytest.approx(30.0)
    assert v.drop_ratio == pytest.approx(0.25)
    assert 60.0 - 5.0 <= v.time_to_throttle_s <= 60.0 + 5.0
    assert v.temp_rise_c == pytest.approx(30.0)
    assert v.freq_drop_ratio is None
    assert v.reason.startswith("tok/s fell 25% (40 -> 30 tok/s) from ")
    assert v.reason.endswith("with temperature +30 C: thermal throttling")


def test_drop_without_sensors_is_unknown():
    rate, _, _ = rate_of(STEP)
    v = detect_throttling(rate, None, None)
    assert v.throttled is None
    assert v.drop_ratio == pytest.approx(0.25)
    assert 55.0 <= v.time_to_throttle_s <= 65.0
    assert v.reason.endswith("but no temperature or frequency sensor to attribute it to throttling")
    assert "tok/s fell 25%" in v.reason


def test_drop_with_flat_sensors_is_not_thermal():
    rate, t0, end = rate_of(STEP)
    temp = binned_temp(t0, end, lambda t: 45.0 + (t % 3))  # noisy but flat
    freq_t, freq_v = temp_rows(t0, end, lambda t: 2400.0)
    freq = channel_series(freq_t, freq_v, t0, 5.0, end_ns=end)
    v = detect_throttling(rate, temp, freq)
    assert v.throttled is False and v.time_to_throttle_s is None
    assert v.temp_rise_c == pytest.approx(0.0) and v.freq_drop_ratio == 0.0
    assert "without a temperature or frequency change" in v.reason
    assert v.reason.endswith("not thermal throttling (background load?)")


def test_drop_with_frequency_drop_only_is_throttled():
    rate, t0, end = rate_of(STEP)
    ft, fv = temp_rows(t0, end, lambda t: 2400.0 if t < 60 else 1800.0)
    freq = channel_series(ft, fv, t0, 5.0, end_ns=end)
    v = detect_throttling(rate, None, freq)
    assert v.throttled is True and v.freq_drop_ratio == pytest.approx(0.25)
    assert v.reason.endswith("with frequency -25%: thermal throttling")


def test_steady_rate_is_not_throttled_even_when_hot():
    rate, t0, end = rate_of([(180, 40.0)])
    temp = binned_temp(t0, end, heating)
    v = detect_throttling(rate, temp, None)
    assert v.throttled is False and v.time_to_throttle_s is None
    assert v.drop_ratio == pytest.approx(0.0, abs=1e-9)
    assert v.temp_rise_c == pytest.approx(30.0)
    assert v.reason == "no sustained drop: 40 -> 40 tok/s (+0% change, threshold -5%)"


def test_brief_dip_that_recovers_is_not_throttled():
    rate, t0, end = rate_of([(60, 40.0), (70, 30.0), (180, 40.0)])
    assert min(v for _, v in rate) < 35.0  # the dip is visible in the series
    v = detect_throttling(rate, binned_temp(t0, end, heating), None)
    assert v.throttled is False
    assert v.reason.startswith("no sustained drop")


def test_long_dip_that_recovers_is_not_throttled():
    rate, _, _ = rate_of([(60, 40.0), (110, 30.0), (180, 40.0)])
    v = detect_throttling(rate, None, None)
    assert v.throttled is False and v.steady_tps == pytest.approx(40.0)


def test_drop_too_late_in_run_is_inconclusive():
    rate, _, _ = rate_of([(160, 40.0), (180, 30.0)])
    v = detect_throttling(rate, None, None)
    assert v.throttled is None and v.time_to_throttle_s is None
    assert "too late in the run to judge" in v.reason and v.reason.endswith("run longer")


def test_small_drop_below_threshold_is_not_throttled():
    rate, _, _ = rate_of([(60, 40.0), (180, 39.0)])
    v = detect_throttling(rate, None, None)
    assert v.throttled is False
    assert v.drop_ratio == pytest.approx(0.025)


def test_gradual_decline_is_detected():
    # 40 tok/s falling linearly by 0.1 tok/s per second from 30 s on
    segs = [(30, 40.0)] + [(30 + 5 * (k + 1), 40.0 - 0.5 * k) for k in range(30)]
    rate, _, _ = rate_of(segs)
    v = detect_throttling(rate, None, None)
    assert v.throttled is None  # no sensor
    assert v.initial_tps == pytest.approx(40.0)
    # threshold 38 tok/s is crossed around 30 + 5 * 4 = 50 s
    assert 45.0 <= v.time_to_throttle_s <= 60.0


def test_too_short_run():
    rate, _, _ = rate_of([(30, 40.0)])
    v = detect_throttling(rate, None, None)
    assert v.throttled is None and v.initial_tps is None and v.drop_ratio is None
    assert v.reason.startswith("run too short to judge throttling: 2 decode-rate bins")
    assert v.reason.endswith("use --duration >= 90 s")


def test_too_short_single_bin():
    v = detect_throttling([(0.5, 40.0)], None, None)
    assert v.throttled is None and "use --duration >= 90 s" in v.reason


def test_too_few_bins_with_tokens_in_a_long_run_advises_bigger_bins():
    rate = [(2.5 + 5 * k, 40.0 if k % 4 == 0 else None) for k in range(36)]
    v = detect_throttling(rate, None, None)
    assert v.throttled is None and "larger bin" in v.reason


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"initial_s": 0}, "initial_s"),
        ({"steady_fraction": 0.7}, "steady_fraction"),
        ({"drop_threshold": 1.0}, "drop_threshold"),
        ({"hold_s": -1}, "hold_s"),
        ({"temp_rise_c": -1}, "temp_rise_c"),
        ({"freq_drop_threshold": 0}, "freq_drop_threshold"),
    ],
)
def test_detect_validation(kwargs, match):
    rate, _, _ = rate_of(STEP)
    with pytest.raises(ValueError, match=match):
        detect_throttling(rate, None, None, **kwargs)


def test_uneven_rate_series_rejected():
    with pytest.raises(ValueError, match="evenly spaced"):
        detect_throttling([(0.5, 1.0), (1.5, 1.0), (3.5, 1.0)], None, None)


# ---------------------------------------------------------------- summarize_sustain


def test_summarize_sustain_is_json_ready_and_aligned():
    requests, t0, end = stream(STEP)
    temps = [temp_rows(t0, end, heating), temp_rows(t0, end, lambda t: heating(t) - 3)]
    freq = [temp_rows(t0, end, lambda t: 2400.0 if t < 60 else 1800.0)]
    pt, pv = temp_rows(t0, end, lambda t: 4.0)
    pv[3] = float("nan")
    out = summarize_sustain(
        requests, t0, bin_s=5.0, end_ns=end, temp=temps, freq=freq, power=(pt, pv)
    )
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text) == out
    series = out["series"]
    n = len(series["t_s"])
    assert n == 36 and series["t_s"][:2] == [2.5, 7.5]
    for key in ("decode_tps", "temp_max_c", "cpu_freq_mhz", "power_w"):
        assert len(series[key]) == n
    assert series["temp_max_c"][0] == 45.0 and series["temp_max_c"][-1] == 75.0
    assert series["power_w"][0] == 4.0
    assert out["temp_max_c"] == 75.0
    assert out["throttled"] is True and out["verdict"]["throttled"] is True
    assert out["bin_s"] == 5.0


def test_summarize_sustain_without_sensors():
    requests, t0, _ = stream(STEP)
    out = summarize_sustain(requests, t0, temp=[], freq=None)
    s = out["series"]
    assert s["temp_max_c"] is None and s["cpu_freq_mhz"] is None and s["power_w"] is None
    assert out["temp_max_c"] is None and out["throttled"] is None
    assert all(v is None or math.isfinite(v) for v in s["decode_tps"])
    json.dumps(out, allow_nan=False)


def test_summarize_sustain_passes_detect_options():
    requests, t0, end = stream(STEP)
    out = summarize_sustain(requests, t0, end_ns=end, drop_threshold=0.3)
    assert out["throttled"] is False
