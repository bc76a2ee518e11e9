"""Energy attribution: exact, hand-computed numbers (values chosen to be exact in binary)."""

from __future__ import annotations

import pytest

from meltbench.measure.energy import (
    Window,
    attribute_energy,
    counter_energy_j,
    counter_update_points,
    idle_power_w,
    interpolate,
    power_energy_j,
    rep_energy_metrics,
    unwrap_counter,
    window_energy,
)
from meltbench.measure.energy_channels import select_energy_channels
from meltbench.measure.thermal import frequency_stats, temperature_stats
from meltbench.sensors.base import Channel
from meltbench.sensors.sampler import SensorSeries

S = 1_000_000_000  # ns per second


def series(channels, t_s, *columns):
    """A series from times in seconds (exact multiples of 1/4 s become exact ns)."""
    return SensorSeries(
        channels=list(channels),
        t_ns=[round(t * S) for t in t_s],
        values=[list(c) for c in columns],
    )


E = Channel("rapl:package-0", "energy", scope="cpu-package", wrap_j=100.0)
P = Channel("jetson:VDD_IN", "power", scope="board", total=True)


# -- unwrap_counter -------------------------------------------------------------------


def test_unwrap_one_wrap():
    assert unwrap_counter([80.0, 95.0, 10.0, 60.0], 100.0) == [80.0, 95.0, 110.0, 160.0]


def test_unwrap_two_wraps():
    got = unwrap_counter([80.0, 95.0, 10.0, 60.0, 99.0, 20.0], 100.0)
    assert got == [80.0, 95.0, 110.0, 160.0, 199.0, 220.0]


def test_unwrap_carries_over_none_gaps():
    got = unwrap_counter([None, 80.0, None, 10.0, None, 30.0], 100.0)
    assert got == [None, 80.0, None, 110.0, None, 130.0]


def test_unwrap_reset_without_wrap_value_invalidates_the_rest():
    # NVML-style counter (no wrap): a drop is a driver reload, energy across it unknown
    assert unwrap_counter([5.0, 7.0, 2.0, 3.0], None) == [5.0, 7.0, None, None]


def test_unwrap_small_drop_is_not_a_wrap():
    # a drop of 1 J on a 100 J counter is a misread/reset, not a wrap (+99 J)
    assert unwrap_counter([50.0, 51.0, 50.0, 52.0], 100.0) == [50.0, 51.0, None, None]


def test_unwrap_monotonic_and_empty():
    assert unwrap_counter([1.0, 1.0, 2.5], None) == [1.0, 1.0, 2.5]
    assert unwrap_counter([], 10.0) == []


# -- interpolate / counter / power ----------------------------------------------------

T = [0, S, 2 * S]


def test_interpolate_between_and_at_readings():
    v = [0.0, 10.0, 30.0]
    assert interpolate(T, v, S // 2) == 5.0
    assert interpolate(T, v, 3 * S // 2) == 20.0
    assert interpolate(T, v, S) == 10.0
    assert interpolate(T, v, 0) == 0.0
    assert interpolate(T, v, 2 * S) == 30.0


def test_interpolate_outside_span_is_none():
    v = [0.0, 10.0, 30.0]
    assert interpolate(T, v, -1) is None
    assert interpolate(T, v, 2 * S + 1) is None
    assert interpolate([], [], 0) is None


def test_interpolate_skips_failed_reads():
    assert interpolate(T, [0.0, None, 30.0], S // 2) == 7.5
    assert interpolate(T, [None, 10.0, 30.0], S // 2) is None
    assert interpolate(T, [0.0, 10.0, None], 3 * S // 2) is None


def test_interpolate_length_mismatch():
    with pytest.raises(ValueError, match="timestamps"):
        interpolate(T, [1.0], 0)


def test_counter_energy_interpolates_both_edges():
    assert counter_energy_j(T, [100.0, 110.0, 130.0], S // 2, 3 * S // 2) == 15.0
    assert counter_energy_j(T, [100.0, 110.0, 130.0], 0, 2 * S) == 30.0
    assert counter_energy_j(T, [100.0, 110.0, 130.0], S, S) == 0.0
    assert counter_energy_j(T, [100.0, 110.0, 130.0], S, 3 * S) is None


def test_power_ramp_trapezoid():
    # 2 W rising linearly to 4 W over 1 s = 3 J
    assert power_energy_j([0, S], [2.0, 4.0], 0, S) == 3.0
    # edges interpolated: 2.5 W at 0.25 s, 3.5 W at 0.75 s -> 0.5 s x 3 W
    assert power_energy_j([0, S], [2.0, 4.0], S // 4, 3 * S // 4) == 1.5


def test_power_integral_over_several_segments():
    p = [2.0, 4.0, 2.0]
    assert power_energy_j(T, p, 0, 2 * S) == 6.0
    # 3 W at 0.5 s, 4 W at 1 s, 3 W at 1.5 s: 0.5 x 3.5 + 0.5 x 3.5
    assert power_energy_j(T, p, S // 2, 3 * S // 2) == 3.5
    # a failed read in between: the curve runs straight from 2 W to 2 W
    assert power_energy_j(T, [2.0, None, 2.0], 0, 2 * S) == 4.0


def test_power_outside_samples_and_bad_window():
    assert power_energy_j(T, [2.0, 4.0, 2.0], -S, S) is None
    with pytest.raises(ValueError, match="ends before"):
        power_energy_j(T, [2.0, 4.0, 2.0], S, 0)


# -- counters that update in steps ---------------------------------------------------


def test_update_points_keep_first_of_each_value_and_the_last_reading():
    t = list(range(9))
    v = [0.0, 0.0, 0.0, 3.0, 3.0, 3.0, 6.0, 6.0, 6.0]
    assert counter_update_points(t, v) == ([0, 3, 6, 8], [0.0, 3.0, 6.0, 6.0])
    assert counter_update_points([0, 1, 2], [None, 1.0, None]) == ([1], [1.0])


def test_stepwise_counter_spreads_each_step_over_its_period():
    # a counter that advances 3 J every 3 readings (1 W); a 1 s window inside a flat
    # run would read 0 J between raw readings, but the update points give 1 J
    ch = Channel("nvml:gpu0:energy", "energy", scope="gpu")
    s = series([ch], range(9), [0.0, 0.0, 0.0, 3.0, 3.0, 3.0, 6.0, 6.0, 6.0])
    assert window_energy(s, Window("w", 4 * S, 5 * S), [ch]) == (1.0, "counter")
    assert window_energy(s, Window("w", 3 * S, 6 * S), [ch]) == (3.0, "counter")
    # straddling a step: 2.5 s..3.5 s -> 2.5 J .. 3.5 J
    assert window_energy(s, Window("w", 5 * S // 2, 7 * S // 2), [ch]) == (1.0, "counter")


# -- window_energy -------------------------------------------------------------------


def test_window_energy_counter_with_a_wrap_inside():
    s = series([E], [0, 1, 2, 3], [90.0, 98.0, 6.0, 14.0])  # 8 J/s, wraps at 100 J
    assert window_energy(s, Window("w", S // 2, 5 * S // 2), [E]) == (16.0, "counter")


def test_window_energy_power_and_mixed():
    gpu = Channel("gpu:power", "power", scope="gpu")
    s = series([E, gpu], [0, 1, 2], [0.0, 5.0, 10.0], [2.0, 4.0, 2.0])
    assert window_energy(s, Window("w", 0, 2 * S), [gpu]) == (6.0, "power-integral")
    assert window_energy(s, Window("w", 0, 2 * S), [E, gpu]) == (16.0, "mixed")


def test_window_energy_none_outside_the_samples():
    s = series([E], [1, 2, 3], [0.0, 5.0, 10.0])
    assert window_energy(s, Window("w", 0, 2 * S), [E]) == (None, "counter")
    assert window_energy(s, Window("w", 2 * S, 4 * S), [E]) == (None, "counter")
    assert window_energy(SensorSeries([E]), Window("w", 0, S), [E]) == (None, "counter")


def test_window_energy_none_if_any_channel_does_not_cover():
    late = Channel("gpu:power", "power", scope="gpu")
    s = series([E, late], [0, 1, 2], [0.0, 5.0, 10.0], [None, 3.0, 3.0])
    assert window_energy(s, Window("w", S // 2, 2 * S), [E, late]) == (None, "mixed")
    assert window_energy(s, Window("w", S, 2 * S), [E, late]) == (8.0, "mixed")


def test_window_energy_none_across_a_reset_but_not_after_it():
    ch = Channel("nvml:gpu0:energy", "energy", scope="gpu")
    s = series([ch], [0, 1, 2, 3, 4], [10.0, 20.0, 1.0, 11.0, 21.0])
    assert window_energy(s, Window("w", 0, 3 * S), [ch])[0] is None
    assert window_energy(s, Window("w", 0, S), [ch])[0] == 10.0
    assert window_energy(s, Window("w", 2 * S, 4 * S), [ch])[0] == 20.0


def test_window_energy_without_channels():
    s = series([Channel("t", "temperature")], [0, 1], [40.0, 41.0])
    assert window_energy(s, Window("w", 0, S)) == (None, "none")


def test_window_validation():
    with pytest.raises(ValueError, match="ends before"):
        Window("w", 2, 1)
    assert Window("w", S, 3 * S).duration_s == 2.0


# -- idle and attribution -------------------------------------------------------------


def test_idle_power_over_the_baseline_span():
    s = series([E], [0, 1, 2, 4], [50.0, 51.5, 53.0, 56.0])
    assert idle_power_w(s, [E]) == 1.5
    assert idle_power_w(s) == 1.5  # selects the channels itself
    assert idle_power_w(series([E], [0], [1.0]), [E]) is None
    assert idle_power_w(series([Channel("t", "temperature")], [0, 1], [1.0, 2.0])) is None


def test_idle_power_uses_the_span_every_channel_covers():
    gpu = Channel("gpu:power", "power", scope="gpu")
    s = series([E, gpu], [0, 1, 2], [0.0, 1.0, 2.0], [None, 3.0, 3.0])
    assert idle_power_w(s, [E, gpu]) == 4.0  # 1 W + 3 W over [1 s, 2 s]


def test_idle_subtraction():
    # gross 10 J over 2 s with 1.5 W idle -> net 7 J
    s = series([E], [0, 2], [0.0, 10.0])
    out = attribute_energy(s, [Window("decode", 0, 2 * S, 4)], 1.5, [E])["decode"]
    assert out["energy_j"] == 10.0
    assert out["energy_j_net"] == 7.0
    assert out["avg_power_w"] == 5.0
    assert out["avg_power_w_net"] == 3.5
    assert out["j_per_token"] == 2.5
    assert out["j_per_token_net"] == 1.75
    assert out["tokens_per_j"] == 0.4
    assert out["tokens_per_j_net"] == pytest.approx(4 / 7, rel=1e-12)
    assert out["duration_s"] == 2.0 and out["tokens"] == 4 and out["method"] == "counter"


def test_net_energy_may_be_negative_and_is_kept():
    s = series([E], [0, 2], [0.0, 2.0])  # 1 W, below a 1.5 W idle estimate
    out = attribute_energy(s, [Window("decode", 0, 2 * S, 4)], 1.5, [E])["decode"]
    assert out["energy_j_net"] == -1.0
    assert out["j_per_token_net"] == -0.25
    assert out["tokens_per_j_net"] is None


def test_attribution_without_idle_or_tokens_or_duration():
    s = series([E], [0, 2], [0.0, 10.0])
    out = attribute_energy(s, [Window("load", 0, S), Window("z", S, S, 3)], None, [E])
    assert out["load"]["energy_j"] == 5.0 and out["load"]["avg_power_w"] == 5.0
    assert out["load"]["j_per_token"] is None and out["load"]["energy_j_net"] is None
    assert out["z"]["energy_j"] == 0.0
    assert out["z"]["avg_power_w"] is None and out["z"]["j_per_token"] is None
    with pytest.raises(ValueError, match="unique"):
        attribute_energy(s, [Window("a", 0, S), Window("a", S, 2 * S)], None, [E])


REP_KEYS = {
    "energy_j_prefill",
    "energy_j_decode",
    "energy_j",
    "avg_power_w_prefill",
    "avg_power_w_decode",
    "avg_power_w",
    "j_per_token_prefill",
    "j_per_token_decode",
    "j_per_token",
    "tokens_per_j_decode",
}


def rep_series():
    # 8 W during prefill (0..0.5 s), 2 W during decode (0.5..2 s)
    return series([E], [0, 0.5, 1.0, 1.5, 2.0], [0.0, 4.0, 5.0, 6.0, 7.0])


def test_rep_energy_metrics_prefill_decode_request():
    tokens = [S // 2, S, 3 * S // 2, 2 * S]
    m = rep_energy_metrics(rep_series(), 0, tokens, 8, 1.0, [E])
    assert set(m) == REP_KEYS | {k + "_net" for k in REP_KEYS}
    assert m["energy_j_prefill"] == 4.0
    assert m["avg_power_w_prefill"] == 8.0
    assert m["j_per_token_prefill"] == 0.5  # 4 J / 8 prompt tokens
    assert m["energy_j_decode"] == 3.0
    assert m["avg_power_w_decode"] == 2.0
    assert m["j_per_token_decode"] == 1.0  # 3 J / (4 - 1) tokens
    assert m["tokens_per_j_decode"] == 1.0
    assert m["energy_j"] == 7.0
    assert m["avg_power_w"] == 3.5
    assert m["j_per_token"] == 1.75  # 7 J / 4 generated tokens
    # idle 1 W
    assert m["energy_j_prefill_net"] == 3.5
    assert m["j_per_token_prefill_net"] == 0.4375
    assert m["energy_j_decode_net"] == 1.5
    assert m["avg_power_w_decode_net"] == 1.0
    assert m["j_per_token_decode_net"] == 0.5
    assert m["tokens_per_j_decode_net"] == 2.0
    assert m["energy_j_net"] == 5.0
    assert m["avg_power_w_net"] == 2.5
    assert m["j_per_token_net"] == 1.25


def test_rep_energy_metrics_one_token_and_no_idle():
    m = rep_energy_metrics(rep_series(), 0, [S // 2], 8, None, [E])
    assert m["energy_j_prefill"] == 4.0 and m["energy_j"] == 4.0
    assert m["j_per_token"] == 4.0
    for key in ("energy_j_decode", "avg_power_w_decode", "j_per_token_decode"):
        assert m[key] is None
    assert all(m[k + "_net"] is None for k in REP_KEYS)


def test_rep_energy_metrics_prefill_between_readings_at_10_hz():
    # 50 ms prefill inside one 100 ms period: interpolated at the period's average power
    s = series([E], [0, 0.1, 0.2], [0.0, 0.5, 1.5])
    t0 = 25_000_000
    m = rep_energy_metrics(s, t0, [t0 + 50_000_000, 175_000_000], 4, None, [E])
    assert m["energy_j_prefill"] == pytest.approx(0.25, rel=1e-12)  # 5 W x 50 ms
    assert m["energy_j_decode"] == pytest.approx(0.125 + 0.75, rel=1e-12)


def test_rep_energy_metrics_unmeasured_and_bad_input():
    m = rep_energy_metrics(rep_series(), 0, [S // 2, 3 * S], 8, 1.0, [E])
    assert m["energy_j_prefill"] == 4.0
    assert m["energy_j_decode"] is None and m["energy_j"] is None
    assert m["j_per_token_decode_net"] is None
    with pytest.raises(ValueError, match="token"):
        rep_energy_metrics(rep_series(), 0, [], 8, None, [E])
    with pytest.raises(ValueError, match="ends before"):
        rep_energy_metrics(rep_series(), S, [S // 2], 8, None, [E])


# -- channel selection ----------------------------------------------------------------


def names(chosen):
    return [c.name for c in chosen]


def test_select_rapl_package_and_dram_not_core():
    pkg = Channel("rapl:package-0", "energy", scope="cpu-package")
    # as rapl.py writes it: the subzone lists its package
    core = Channel("rapl:package-0/core", "energy", scope="cpu-core", overlaps=(pkg.name,))
    dram = Channel("rapl:package-0/dram", "energy", scope="dram")
    chosen, why = select_energy_channels([pkg, core, dram])
    assert names(chosen) == ["rapl:package-0", "rapl:package-0/dram"]
    assert why == (
        "sum of rapl:package-0 + rapl:package-0/dram (counters); "
        "left out: rapl:package-0/core (inside rapl:package-0)"
    )
    # as base.Channel documents it: the package lists what it contains
    pkg2 = Channel("rapl:package-0", "energy", scope="cpu-package", overlaps=(core.name,))
    core2 = Channel("rapl:package-0/core", "energy", scope="cpu-core")
    assert names(select_energy_channels([core2, dram, pkg2])[0]) == [dram.name, pkg2.name]


def test_select_containment_on_equal_scopes_follows_the_lister():
    a = Channel("x:a", "power", overlaps=("x:b",))
    b = Channel("x:b", "power")
    assert names(select_energy_channels([b, a])[0]) == ["x:a"]
    # a cycle (plug-in error) still keeps one channel
    c1 = Channel("y:1", "power", overlaps=("y:2",))
    c2 = Channel("y:2", "power", overlaps=("y:3",))
    c3 = Channel("y:3", "power", overlaps=("y:1",))
    assert names(select_energy_channels([c1, c2, c3])[0]) == ["y:1"]


def test_select_jetson_total_only():
    vin = Channel("jetson:VDD_IN", "power", scope="board", total=True)
    cpu = Channel("jetson:VDD_CPU_GPU_CV", "power", scope="rail", overlaps=(vin.name,))
    soc = Channel("jetson:VDD_SOC", "power", scope="rail", overlaps=(vin.name,))
    chosen, why = select_energy_channels([cpu, vin, soc])
    assert chosen == [vin]
    assert why.startswith("board total jetson:VDD_IN (power integral)")


def test_select_nvml_energy_over_power():
    e = Channel("nvml:gpu0:energy", "energy", scope="gpu")
    p = Channel("nvml:gpu0:power", "power", scope="gpu")
    pkg = Channel("rapl:package-0", "energy", scope="cpu-package")
    dram = Channel("rapl:dram", "energy", scope="dram")
    chosen, why = select_energy_channels([pkg, dram, p, e])
    assert chosen == [pkg, dram, e]
    assert why == (
        "sum of rapl:package-0 + rapl:dram + nvml:gpu0:energy (counters); "
        "left out: nvml:gpu0:power (same quantity as counter nvml:gpu0:energy)"
    )
    # a GPU without an energy counter: its power is used
    chosen, why = select_energy_channels([pkg, p])
    assert chosen == [pkg, p]
    assert "(counters and power integral)" in why


def test_select_battery_total_and_psys_prefers_a_counter():
    bat = Channel("battery:BAT0", "power", scope="board", total=True)
    assert select_energy_channels([bat]) == ([bat], "board total battery:BAT0 (power integral)")
    psys = Channel("rapl:psys", "energy", scope="board", total=True)
    pkg = Channel("rapl:package-0", "energy", scope="cpu-package")
    chosen, why = select_energy_channels([bat, pkg, psys])
    assert chosen == [psys]
    assert "not added: battery:BAT0, rapl:package-0" in why


def test_select_two_batteries_are_summed():
    b0 = Channel("battery:BAT0", "power", scope="board")
    b1 = Channel("battery:BAT1", "power", scope="board")
    assert select_energy_channels([b0, b1])[0] == [b0, b1]


def test_select_nothing():
    temp = Channel("thermal:cpu", "temperature")
    assert select_energy_channels([temp]) == ([], "no energy or power channel")
    assert select_energy_channels([]) == ([], "no energy or power channel")


def test_select_single_channel_reason():
    assert select_energy_channels([E]) == ([E], "rapl:package-0 (counter)")


# -- temperature and frequency ------------------------------------------------------


def test_temperature_stats():
    t1 = Channel("thermal:cpu", "temperature")
    t2 = Channel("thermal:gpu", "temperature")
    t3 = Channel("thermal:dead", "temperature")
    s = series(
        [t1, E, t2, t3],
        [0, 1, 2],
        [40.0, 55.5, 41.0],
        [0.0, 1.0, 2.0],
        [50.0, None, 52.0],
        [None, None, None],
    )
    assert temperature_stats(s) == {
        "temp_max_c": 55.5,
        "temp_max_channel": "thermal:cpu",
        "by_channel": {"thermal:cpu": 55.5, "thermal:gpu": 52.0, "thermal:dead": None},
    }
    assert temperature_stats(s, 2 * S, 2 * S)["temp_max_channel"] == "thermal:gpu"
    assert temperature_stats(series([E], [0], [1.0])) == {
        "temp_max_c": None,
        "temp_max_channel": None,
        "by_channel": {},
    }


def test_frequency_stats_time_weighted():
    f = Channel("cpufreq:cpu0", "frequency")
    g = Channel("cpufreq:cpu1", "frequency")
    s = series([f, g], [0, 1, 2, 4], [1000.0, 2000.0, 2000.0, 1000.0], [None, 800.0, 800.0, None])
    out = frequency_stats(s, 0, 2 * S)
    # 1 s ramp 1000->2000 (mean 1500) then 1 s at 2000: mean 1750
    assert out["cpufreq:cpu0"] == {"mean_mhz": 1750.0, "min_mhz": 1000.0, "max_mhz": 2000.0}
    assert out["cpufreq:cpu1"] == {"mean_mhz": None, "min_mhz": 800.0, "max_mhz": 800.0}
    assert frequency_stats(s, S // 2, S // 2)["cpufreq:cpu0"] == {
        "mean_mhz": 1500.0,
        "min_mhz": None,
        "max_mhz": None,
    }
    assert frequency_stats(s, 2 * S, 4 * S)["cpufreq:cpu0"]["mean_mhz"] == 1500.0
