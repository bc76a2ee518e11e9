"""The cool-down between sweep points: fixed wait, then the temperature rule."""

from __future__ import annotations

import time

from meltbench.sweep.execute import _point_cooldown


def test_no_cooldown_settings_means_no_wait():
    assert _point_cooldown({}, []) is None
    assert _point_cooldown({"cooldown_s": 0.0}, []) is None


def test_fixed_wait_is_waited_and_recorded():
    wait = _point_cooldown({"cooldown_s": 0.2}, [])
    t0 = time.monotonic()
    record = wait()
    assert time.monotonic() - t0 >= 0.2
    assert record["mode"] == "fixed"
    assert record["waited_s"] >= 0.2


def test_temperature_rule_without_sensors_falls_back_to_the_fixed_wait():
    wait = _point_cooldown({"cooldown_s": 0.05, "cooldown_margin_c": 2.0}, [])
    record = wait()
    assert record["mode"] == "fixed"
    assert record["reached"] is None
    assert "no temperature sensor" in record["reason"]
