"""The sensor sampler: rows, midpoint timestamps, failures, deadlines, the thread."""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import threading
import time

import pytest

from meltbench.sensors.base import Channel, Probe, Sensor
from meltbench.sensors.sampler import SensorSampler, SensorSeries, sample_for


class FakeClock:
    """A ns clock that only moves when told to (by a sensor read or a sleep)."""

    def __init__(self, t: int = 0) -> None:
        self.t = t
        self.slept: list[float] = []

    def __call__(self) -> int:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += round(seconds * 1e9)


class FakeSensor(Sensor):
    """Returns the next row of ``rows`` on each read, costing ``cost_ns`` on ``clock``."""

    name = "fake"

    def __init__(self, name, channels, rows=None, clock=None, cost_ns=0, fail=()):
        super().__init__()
        self.sensor_name = name
        self.channels = tuple(channels)
        self.rows = rows
        self.clock = clock
        self.cost_ns = cost_ns
        self.fail = set(fail)  # read numbers that raise
        self.reads = 0
        self.threads: set[str] = set()

    def probe(self) -> Probe:
        return Probe(self.sensor_name, True, "fake", self.channels)

    def read(self):
        n = self.reads
        self.reads += 1
        self.threads.add(threading.current_thread().name)
        if self.clock is not None:
            self.clock.t += self.cost_ns
        if n in self.fail:
            raise OSError(f"read {n} failed")
        if self.rows is None:
            return [float(n)] * len(self.channels)
        return self.rows[n % len(self.rows)]


def probed(*sensors):
    return [(s, s.probe()) for s in sensors]


PKG = Channel("a:package", "energy", scope="cpu-package", wrap_j=100.0)
TEMP = Channel("a:temp", "temperature")
GPU = Channel("b:gpu", "power", scope="gpu")


# -- one row at a time, fake clock ----------------------------------------------------


def test_rows_and_midpoint_timestamps():
    clock = FakeClock(1000)
    a = FakeSensor("a", [PKG, TEMP], [[1.0, 40.0], [2.0, 41.5]], clock, cost_ns=100)
    b = FakeSensor("b", [GPU], [[7.0], [8.0]], clock, cost_ns=300)
    sampler = SensorSampler(probed(a, b), 10.0, clock=clock)
    assert sampler.channels == [PKG, TEMP, GPU]
    # reads run from 1000 to 1400: stamped at the midpoint
    assert sampler.sample_once() == 1200
    clock.t += 600  # 2000
    assert sampler.sample_once() == 2200
    s = sampler.series
    assert s.t_ns == [1200, 2200]
    assert s.values == [[1.0, 2.0], [40.0, 41.5], [7.0, 8.0]]
    assert s.channel("b:gpu") == [7.0, 8.0]
    assert sampler.errors == 0


class Preempted(FakeSensor):
    """A read that the scheduler interrupts: read numbers in ``stalls`` cost ``stall_ns``."""

    def __init__(self, *args, stalls=(), stall_ns=0, **kwargs):
        super().__init__(*args, **kwargs)
        self.stalls = set(stalls)
        self.stall_ns = stall_ns

    def read(self):
        if self.reads in self.stalls:
            self.clock.t += self.stall_ns
        return super().read()


def test_a_preempted_row_is_read_again_and_the_tightest_attempt_kept():
    clock = FakeClock(0)
    # read 1 is preempted for 15 ms before it reads; the re-read (read 2) is not
    a = Preempted("a", [PKG], clock=clock, cost_ns=10_000, stalls={1}, stall_ns=15_000_000)
    sampler = SensorSampler(probed(a), clock=clock)
    assert sampler.sample_once() == 5_000  # bracket 0..10 us
    clock.t = 1_000_000
    t = sampler.sample_once()
    # attempt 1: 1_000_000 .. 16_010_000 (15 ms bracket): too long, read again
    # attempt 2: 16_010_000 .. 16_020_000: kept, with the value it read
    assert t == 16_015_000
    assert sampler.series.channel("a:package") == [0.0, 2.0]
    assert a.reads == 3
    assert sampler.rereads == 1
    assert sampler.max_bracket_ns == 10_000


def test_rereads_stop_after_max_reads_and_keep_the_tightest():
    from meltbench.sensors.sampler import MAX_READS

    clock = FakeClock(0)
    stalls = {1: 9_000_000, 2: 3_000_000, 3: 6_000_000}  # by read number

    class Slow(FakeSensor):
        def read(self):
            self.clock.t += stalls.get(self.reads, 0)
            return super().read()

    a = Slow("a", [PKG], clock=clock, cost_ns=1_000)
    sampler = SensorSampler(probed(a), clock=clock)
    sampler.sample_once()  # read 0: 1 us, sets the scale
    clock.t = 0
    t = sampler.sample_once()
    assert a.reads == 1 + MAX_READS == 4
    assert t == 9_001_000 + 1_500_500  # the 3 ms attempt, stamped at its midpoint
    assert sampler.series.channel("a:package") == [0.0, 2.0]
    assert sampler.max_bracket_ns == 3_001_000
    assert sampler.rereads == 2


def test_slow_sensors_are_not_reread_every_row():
    clock = FakeClock(0)
    a = FakeSensor("a", [PKG], clock=clock, cost_ns=2_500_000)  # NVML-like: 2.5 ms a read
    sampler = SensorSampler(probed(a), clock=clock)
    for _ in range(6):
        sampler.sample_once()
    assert a.reads == 6  # 2.5 ms is over the 1 ms floor, but under 4 x the tightest
    assert sampler.rereads == 0


def test_the_first_row_is_never_reread():
    clock = FakeClock(0)
    a = Preempted("a", [PKG], clock=clock, cost_ns=1_000, stalls={0}, stall_ns=20_000_000)
    sampler = SensorSampler(probed(a), clock=clock)
    sampler.sample_once()
    assert a.reads == 1
    assert sampler.max_bracket_ns == 20_001_000


def test_failures_of_discarded_attempts_are_not_counted():
    clock = FakeClock(0)
    a = Preempted("a", [PKG], clock=clock, cost_ns=1_000, stalls={1}, stall_ns=5_000_000)
    a.fail = {1}
    sampler = SensorSampler(probed(a), clock=clock)
    sampler.sample_once()
    sampler.sample_once()  # read 1 stalls and fails; its re-read (read 2) succeeds
    assert sampler.series.channel("a:package") == [0.0, 2.0]
    assert sampler.errors == 0
    assert sampler.error_messages == {}


def test_raising_sensor_gives_none_and_sampling_goes_on():
    clock = FakeClock()
    a = FakeSensor("a", [PKG, TEMP], clock=clock, fail={1})
    b = FakeSensor("b", [GPU], clock=clock)
    sampler = SensorSampler(probed(a, b), clock=clock)
    for _ in range(3):
        sampler.sample_once()
    s = sampler.series
    assert s.channel("a:package") == [0.0, None, 2.0]
    assert s.channel("a:temp") == [0.0, None, 2.0]
    assert s.channel("b:gpu") == [0.0, 1.0, 2.0]
    assert sampler.errors == 1
    assert sampler.error_messages == {"a": "OSError: read 1 failed"}


def test_wrong_length_and_non_finite_values():
    clock = FakeClock()
    short = FakeSensor("a", [PKG, TEMP], [[1.0]], clock)
    odd = FakeSensor("b", [GPU], [[math.nan]], clock)
    sampler = SensorSampler(probed(short, odd), clock=clock)
    sampler.sample_once()
    assert sampler.series.values == [[None], [None], [None]]
    assert sampler.errors == 1  # the wrong length; NaN is simply "not measured"
    assert "1 values for 2 channels" in sampler.error_messages["a"]


def test_unusable_sensors_are_skipped():
    a = FakeSensor("a", [PKG])
    gone = FakeSensor("b", [GPU])
    pairs = [(a, a.probe()), (gone, Probe("b", False, "not here")), (None, Probe("c", False, "x"))]
    sampler = SensorSampler(pairs, clock=FakeClock())
    sampler.sample_once()
    assert sampler.channels == [PKG]
    assert gone.reads == 0


def test_duplicate_channel_names_are_refused():
    with pytest.raises(ValueError, match="a:package"):
        SensorSampler(probed(FakeSensor("a", [PKG]), FakeSensor("b", [PKG])))


@pytest.mark.parametrize("hz", [0, -1, 1000.5, 1e9, math.nan, math.inf])
def test_rate_validation(hz):
    with pytest.raises(ValueError, match="Hz"):
        SensorSampler(probed(FakeSensor("a", [PKG])), hz)


def test_rate_limits_accepted():
    assert SensorSampler([], 1000).hz == 1000.0
    assert SensorSampler([], 0.5).hz == 0.5


# -- sample_for: synchronous, fake clock and sleep ----------------------------------


def test_sample_for_rows_on_absolute_deadlines():
    clock = FakeClock(5_000)
    s = sample_for(probed(FakeSensor("a", [PKG])), 1.0, 10, clock=clock, sleep=clock.sleep)
    assert s.t_ns == [5_000 + k * 100_000_000 for k in range(11)]
    assert s.channel("a:package") == [float(k) for k in range(11)]
    assert s.achieved_hz == 10.0


def test_sample_for_last_row_at_the_end_when_not_a_whole_period():
    clock = FakeClock()
    s = sample_for(probed(FakeSensor("a", [PKG])), 0.25, 10, clock=clock, sleep=clock.sleep)
    assert s.t_ns == [0, 100_000_000, 200_000_000, 250_000_000]


def test_sample_for_skips_missed_deadlines():
    # each read costs 250 ms at 10 Hz: deadlines 1, 2, 4, 5, 7, 8 are skipped, no burst
    clock = FakeClock()
    slow = FakeSensor("a", [PKG], clock=clock, cost_ns=250_000_000)
    s = sample_for(probed(slow), 1.0, 10, clock=clock, sleep=clock.sleep)
    assert s.t_ns == [125_000_000, 425_000_000, 725_000_000, 1_025_000_000]
    assert min(b - a for a, b in itertools.pairwise(s.t_ns)) >= 100_000_000


def test_sample_for_without_sensors_returns_at_once():
    clock = FakeClock()
    s = sample_for([], 5.0, 10, clock=clock, sleep=clock.sleep)
    assert len(s) == 0 and s.channels == [] and clock.slept == []


@pytest.mark.parametrize("seconds", [0, -1.0, math.nan, math.inf])
def test_sample_for_duration_validation(seconds):
    with pytest.raises(ValueError, match="duration"):
        sample_for(probed(FakeSensor("a", [PKG])), seconds, 10)


# -- the thread, real clock ---------------------------------------------------------


def test_thread_samples_at_its_rate_and_covers_start_to_stop():
    sensor = FakeSensor("a", [PKG, TEMP])
    sampler = SensorSampler(probed(sensor), 50.0)
    before = time.perf_counter_ns()
    sampler.start()
    after_start = time.perf_counter_ns()
    mid = sampler.series  # a consistent snapshot while running
    assert all(len(col) == len(mid.t_ns) for col in mid.values)
    time.sleep(0.3)
    before_stop = time.perf_counter_ns()
    sampler.stop()
    s = sampler.series
    assert before <= s.t_ns[0] <= after_start  # first row taken by start()
    assert s.t_ns[-1] >= before_stop  # last row taken by stop()
    assert s.t_ns == sorted(s.t_ns)
    # 0.3 s at 50 Hz: 15 thread rows + the first and the last
    assert 4 <= len(s) <= 15 + 2 + 1
    # absolute deadlines: never faster than asked (the row stop() adds is left out)
    thread_rows = s.t_ns[:-1]
    rate = (len(thread_rows) - 1) * 1e9 / (thread_rows[-1] - thread_rows[0])
    assert rate <= 50.0 * 1.1
    assert sampler.achieved_hz is not None
    assert any(name == "meltbench-sensors" for name in sensor.threads)
    assert sampler.policy in ("idle", "normal")
    if sys.platform.startswith("linux") and hasattr(os, "SCHED_IDLE"):
        assert sampler.policy == "idle"
        # the policy is the thread's own: the rest of the process is untouched
        assert os.sched_getscheduler(0) != os.SCHED_IDLE
    n = len(s)
    sampler.stop()  # idempotent
    assert len(sampler.series) == n


def test_normal_priority_when_asked():
    with SensorSampler(probed(FakeSensor("a", [PKG])), 100.0, idle_priority=False) as sampler:
        time.sleep(0.05)
    assert sampler.policy == "normal"
    assert len(sampler.series) >= 2


def test_start_once_and_no_thread_without_sensors():
    sampler = SensorSampler(probed(FakeSensor("a", [PKG])), 100.0).start()
    with pytest.raises(RuntimeError, match="once"):
        sampler.start()
    sampler.stop()
    empty = SensorSampler([], 100.0).start()
    empty.stop()
    assert len(empty.series) == 0 and empty.policy is None


def test_stop_gives_up_on_a_hanging_sensor():
    release = threading.Event()

    class Hanging(FakeSensor):
        def read(self):
            if self.reads >= 1:
                release.wait(5)
            return super().read()

    sampler = SensorSampler(probed(Hanging("a", [PKG])), 100.0).start()
    time.sleep(0.05)
    sampler.stop(timeout_s=0.1)
    assert "did not stop" in sampler.error_messages["sampler"]
    release.set()


# -- SensorSeries ---------------------------------------------------------------------


def make_series():
    return SensorSeries(
        channels=[PKG, GPU],
        t_ns=[0, 10, 20, 30],
        values=[[1.0, 2.0, None, 4.0], [5.0, 6.0, 7.0, 8.0]],
    )


def test_series_json_round_trip():
    s = make_series()
    text = json.dumps(s.to_dict())
    back = SensorSeries.from_dict(json.loads(text))
    assert back == s
    assert back.channels[0].wrap_j == 100.0
    assert json.loads(text)["channels"][0]["unit"] == "J"


def test_series_from_dict_validation():
    d = make_series().to_dict()
    with pytest.raises(ValueError, match="backwards"):
        SensorSeries.from_dict({**d, "t_ns": [0, 10, 5, 30]})
    with pytest.raises(ValueError, match="values for 4 rows"):
        SensorSeries.from_dict({**d, "values": [[1.0], [2.0]]})
    bad = {**d, "channels": [{**d["channels"][0], "kind": "volts"}, d["channels"][1]]}
    with pytest.raises(ValueError, match="kind"):
        SensorSeries.from_dict(bad)


def test_series_slice_channel_extend_rate():
    s = make_series()
    part = s.slice(10, 20)
    assert part.t_ns == [10, 20] and part.values == [[2.0, None], [6.0, 7.0]]
    assert s.slice(31, 40).t_ns == []
    with pytest.raises(KeyError, match="no channel"):
        s.channel("nope")
    assert s.achieved_hz == pytest.approx(1e8, rel=1e-12)  # 3 rows in 30 ns
    assert SensorSeries([PKG]).achieved_hz is None
    s.extend(SensorSeries([PKG, GPU], [30, 40], [[5.0, 6.0], [9.0, 10.0]]))
    assert s.t_ns == [0, 10, 20, 30, 30, 40] and s.channel("b:gpu")[-1] == 10.0
    with pytest.raises(ValueError, match="start before"):
        s.extend(SensorSeries([PKG, GPU], [0], [[1.0], [1.0]]))
    with pytest.raises(ValueError, match="cannot extend"):
        s.extend(SensorSeries([PKG], [50], [[1.0]]))
