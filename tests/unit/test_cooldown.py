import json

import pytest

from meltbench.measure.cooldown import CooldownRule, wait_for_cooldown


class FakeTime:
    """A clock that only moves when slept on; records every sleep."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def scripted(temps):
    """A reader returning the given temperatures in turn, then the last one forever."""
    it = iter(temps)
    last = [None]

    def read():
        try:
            last[0] = next(it)
        except StopIteration:
            pass
        return last[0]

    return read


def run(rule, reader, idle_c, ft=None):
    ft = ft or FakeTime()
    rec = wait_for_cooldown(rule, reader, idle_c, sleep=ft.sleep, clock=ft.clock)
    json.dumps(rec)  # JSON-ready
    return rec, ft


def test_no_cooldown_configured():
    rec, ft = run(CooldownRule(), None, None)
    assert rec["mode"] == "none" and rec["waited_s"] == 0.0 and ft.sleeps == []
    assert rec["reached"] is None and rec["reason"] == "no cool-down configured"


def test_fixed_wait_only():
    rec, ft = run(CooldownRule(seconds=30), scripted([60.0, 50.0]), 40.0)
    assert ft.sleeps == [30]
    assert rec["mode"] == "fixed" and rec["waited_s"] == 30.0
    assert rec["start_c"] == 60.0 and rec["end_c"] == 50.0 and rec["reached"] is None
    assert rec["target_c"] is None and rec["reason"] == "waited the fixed 30 s"


def test_temperature_rule_waits_until_within_margin():
    # fixed 10 s, then readings each 1 s: 50, 47, 44, 42 -> target 40 + 2 = 42 reached at +3 s
    reader = scripted([55.0, 50.0, 47.0, 44.0, 42.0, 41.0])
    rec, ft = run(CooldownRule(seconds=10, margin_c=2.0), reader, 40.0)
    assert ft.sleeps == [10, 1.0, 1.0, 1.0]
    assert rec["mode"] == "temperature" and rec["reached"] is True
    assert rec["waited_s"] == 13.0
    assert rec["start_c"] == 55.0 and rec["end_c"] == 42.0
    assert rec["idle_c"] == 40.0 and rec["target_c"] == 42.0
    assert "reached the target 42 C" in rec["reason"] and "after 3 s" in rec["reason"]


def test_already_cool_returns_at_once():
    rec, ft = run(CooldownRule(margin_c=3.0), scripted([41.0, 41.0]), 40.0)
    assert ft.sleeps == [] and rec["waited_s"] == 0.0
    assert rec["mode"] == "temperature" and rec["reached"] is True


def test_timeout_is_hit_exactly():
    rule = CooldownRule(seconds=5, margin_c=1.0, timeout_s=4.5, poll_s=2.0)
    rec, ft = run(rule, scripted([70.0]), 40.0)
    # 5 s fixed, then polls at +2, +4, and a last one at the 4.5 s deadline
    assert ft.sleeps == [5, 2.0, 2.0, 0.5]
    assert rec["waited_s"] == 9.5
    assert rec["mode"] == "temperature" and rec["reached"] is False
    assert rec["end_c"] == 70.0 and rec["target_c"] == 41.0
    assert "timeout after 4.5 s" in rec["reason"] and "still 70 C" in rec["reason"]


def test_no_sensor_falls_back_to_fixed():
    rec, ft = run(CooldownRule(seconds=20, margin_c=2.0), None, 40.0)
    assert ft.sleeps == [20] and rec["waited_s"] == 20.0
    assert rec["mode"] == "fixed" and rec["reached"] is None
    assert rec["reason"] == "no temperature sensor: waited the fixed time only"
    assert rec["start_c"] is None and rec["end_c"] is None


def test_no_sensor_and_no_fixed_wait_is_none():
    rec, ft = run(CooldownRule(margin_c=2.0), None, None)
    assert rec["mode"] == "none" and ft.sleeps == [] and rec["waited_s"] == 0.0
    assert rec["reason"].startswith("no temperature sensor")


def test_unknown_idle_temperature_falls_back_to_fixed():
    rec, _ = run(CooldownRule(seconds=3, margin_c=2.0), scripted([60.0, 55.0]), None)
    assert rec["mode"] == "fixed" and rec["target_c"] is None and rec["end_c"] == 55.0
    assert rec["reason"] == "no idle temperature measured: waited the fixed time only"


def test_sensor_without_reading_falls_back_to_fixed():
    rec, ft = run(CooldownRule(seconds=3, margin_c=2.0), lambda: None, 40.0)
    assert ft.sleeps == [3] and rec["mode"] == "fixed" and rec["reached"] is None
    assert "gave no reading" in rec["reason"]


def test_transient_missing_reading_keeps_polling():
    reader = scripted([50.0, 48.0, None, float("nan"), 41.0])
    rec, ft = run(CooldownRule(margin_c=2.0), reader, 40.0)
    assert ft.sleeps == [1.0, 1.0, 1.0] and rec["waited_s"] == 3.0
    assert rec["reached"] is True and rec["end_c"] == 41.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seconds": -1}, "seconds must be a number >= 0"),
        ({"seconds": float("nan")}, "seconds"),
        ({"margin_c": -2.0}, "margin_c"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"poll_s": 0}, "poll_s"),
        ({"poll_s": float("inf")}, "poll_s"),
    ],
)
def test_rule_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CooldownRule(**kwargs)
