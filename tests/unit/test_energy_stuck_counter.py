"""An energy counter that never advances gives a warning, not a silent 0 J."""

from __future__ import annotations

from meltbench.measure.sensor_analysis import analyze_sensors
from meltbench.sensors.base import Channel
from meltbench.sensors.sampler import SensorSeries

PACKAGE = Channel("rapl:package-0", "energy", "CPU package 0", scope="cpu-package")
REP = {"kind": "timed", "t_start_ns": 1_000_000_000, "token_ns": [1_300_000_000, 1_600_000_000]}


def series(values: list[float]) -> SensorSeries:
    t = [900_000_000 + 100_000_000 * i for i in range(len(values))]
    return SensorSeries([PACKAGE], t, [values])


def analyze(values: list[float]):
    return analyze_sensors([], series(values), None, [REP], 8, hz=10.0)


def test_a_frozen_counter_is_flagged_and_its_energy_invalid():
    out = analyze([5.0] * 9)
    assert out.per_rep["energy_j"] == [0.0]  # what the counter says...
    codes = [w.code for w in out.warnings]
    assert "energy_counter_stuck" in codes  # ...and that it is not a measurement
    warning = next(w for w in out.warnings if w.code == "energy_counter_stuck")
    assert "rapl:package-0 did not advance" in warning.message and "9 readings" in warning.message
    assert out.info["energy_valid"] is False


def test_a_working_counter_is_not_flagged():
    out = analyze([5.0 + i for i in range(9)])
    assert out.per_rep["energy_j"] == [6.0]
    assert "energy_counter_stuck" not in [w.code for w in out.warnings]
    assert out.info["energy_valid"] is True
