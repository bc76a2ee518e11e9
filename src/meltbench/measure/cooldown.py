"""Cool-down between benchmark points: a fixed wait, then optionally wait for the heat.

A device that just ran a benchmark is warm, and a warm device may already be throttled
when the next point starts, which biases every point after the first (MELT,
arXiv:2403.12844, reports the thermal behaviour of phones under continuous LLM
execution). The cool-down rule is:

1. Wait ``seconds`` (a fixed pause, works everywhere, also without sensors).
2. If ``margin_c`` is set and a temperature can be read: poll the hottest temperature
   every ``poll_s`` until it is within ``margin_c`` of its idle value (``<= idle_c +
   margin_c``), for at most ``timeout_s``. Without a sensor or an idle value, step 2 is
   skipped and the record says so; it never invents a temperature.

The clock and sleep are injectable so that tests run instantly and exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from meltbench.parameters import default

__all__ = ["CooldownRule", "wait_for_cooldown"]


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class CooldownRule:
    """How to cool down between points.

    Attributes:
        seconds: fixed wait, s (>= 0; 0 = none). Always waited first.
        margin_c: if set (>= 0), then also wait until the hottest temperature is at most
            ``idle + margin_c`` C. ``None``: fixed wait only.
        timeout_s: longest wait for the temperature rule, s (> 0), after the fixed wait.
            Default 300 s: a phone or small board sheds most of its heat within a few
            minutes; longer usually means it cannot get back to idle at this ambient.
        poll_s: seconds between temperature readings (> 0). Default 1 s: thermal zones
            update about that often and reading them is cheap.

    Raises:
        ValueError: a field out of range; the message says what to set instead.
    """

    seconds: float = 0.0
    margin_c: float | None = None
    timeout_s: float = default("cooldown_timeout_s")
    poll_s: float = 1.0

    def __post_init__(self) -> None:
        if not (_finite(self.seconds) and self.seconds >= 0):
            raise ValueError(
                f"cool-down seconds must be a number >= 0, got {self.seconds!r}; "
                "use 0 for no fixed wait"
            )
        if self.margin_c is not None and not (_finite(self.margin_c) and self.margin_c >= 0):
            raise ValueError(
                f"cool-down margin_c must be a number of degrees C >= 0, got "
                f"{self.margin_c!r}; e.g. 2 waits until within 2 C of idle, or leave it unset"
            )
        if not (_finite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(
                f"cool-down timeout_s must be a number of seconds > 0, got {self.timeout_s!r}"
            )
        if not (_finite(self.poll_s) and self.poll_s > 0):
            raise ValueError(
                f"cool-down poll_s must be a number of seconds > 0, got {self.poll_s!r}"
            )


def _fmt(x: float) -> str:
    return f"{round(x, 1):g}"


def wait_for_cooldown(
    rule: CooldownRule,
    read_max_temp_c: Callable[[], float | None] | None,
    idle_c: float | None,
    *,
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, object]:
    """Cool down according to ``rule`` and return a record of what was done.

    Args:
        rule: the :class:`CooldownRule`.
        read_max_temp_c: returns the hottest temperature now, C, or ``None`` if it cannot
            be read; ``None`` (no function) when the target has no thermal sensor.
        idle_c: the hottest temperature at idle, C, measured before the first point;
            ``None`` if unknown.
        sleep, clock: injectable ``time.sleep`` and ``time.monotonic`` (seconds).

    Returns:
        ``{"mode", "waited_s", "start_c", "end_c", "idle_c", "target_c", "reached",
        "reason"}``: ``mode`` is ``"none"`` (nothing waited), ``"fixed"`` (only the fixed
        wait) or ``"temperature"`` (the temperature rule ran); ``waited_s`` is clock time
        from call to return; ``start_c`` / ``end_c`` the temperature read at the start /
        the end (``None`` if not read); ``target_c = idle_c + margin_c``; ``reached`` is
        ``True``/``False`` for the temperature rule, ``None`` otherwise; ``reason`` one
        line.

    Exceptions raised by ``read_max_temp_c`` or ``sleep`` propagate (a sensor should
    return ``None`` rather than raise).
    """
    began = clock()

    def read() -> float | None:
        if read_max_temp_c is None:
            return None
        value = read_max_temp_c()
        return float(value) if _finite(value) else None

    start_c = read()
    if rule.seconds > 0:
        sleep(rule.seconds)
    fixed_mode = "fixed" if rule.seconds > 0 else "none"
    fixed_desc = f"waited the fixed {_fmt(rule.seconds)} s" if rule.seconds > 0 else "no fixed wait"
    target_c = idle_c + rule.margin_c if idle_c is not None and rule.margin_c is not None else None

    def record(
        mode: str, end_c: float | None, reached: bool | None, reason: str
    ) -> dict[str, object]:
        return {
            "mode": mode,
            "waited_s": clock() - began,
            "start_c": start_c,
            "end_c": end_c,
            "idle_c": idle_c,
            "target_c": target_c,
            "reached": reached,
            "reason": reason,
        }

    if rule.margin_c is None:
        reason = fixed_desc if rule.seconds > 0 else "no cool-down configured"
        return record(fixed_mode, read() if start_c is not None else None, None, reason)
    only = "waited the fixed time only" if rule.seconds > 0 else "no wait"
    if read_max_temp_c is None:
        return record(fixed_mode, None, None, f"no temperature sensor: {only}")
    if idle_c is None or target_c is None:
        return record(fixed_mode, read(), None, f"no idle temperature measured: {only}")
    current = read()
    if current is None:
        return record(fixed_mode, None, None, f"temperature sensor gave no reading: {only}")

    desc = f"target {_fmt(target_c)} C = idle {_fmt(idle_c)} + {_fmt(rule.margin_c)} C"
    waited_from = clock()
    last = current
    while True:
        if current is not None:
            last = current
            if current <= target_c:
                return record(
                    "temperature",
                    current,
                    True,
                    f"{fixed_desc}; temperature {_fmt(current)} C reached the {desc} after "
                    f"{_fmt(clock() - waited_from)} s",
                )
        remaining = rule.timeout_s - (clock() - waited_from)
        if remaining <= 0:
            return record(
                "temperature",
                last,
                False,
                f"{fixed_desc}; timeout after {_fmt(rule.timeout_s)} s: temperature still "
                f"{_fmt(last)} C, above the {desc}; raise timeout_s or margin_c",
            )
        sleep(min(rule.poll_s, remaining))
        current = read()
