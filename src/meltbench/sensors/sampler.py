"""Read every available sensor at a fixed rate, beside the worker, on the worker's clock.

A :class:`SensorSampler` owns one background thread that reads each sensor once per
period and stores one *row* per period: a timestamp and one value per channel (a
:class:`SensorSeries`). The timestamp is ``time.perf_counter_ns`` — the clock of the
worker's token timestamps: ``CLOCK_MONOTONIC`` on Linux, which is one clock for every
process of the machine, and ``mach_absolute_time`` on macOS, likewise system-wide — so
the host's readings line up with the worker's prefill and decode windows
(:mod:`meltbench.measure.energy`).

How the readings are taken, and why:

- **Absolute deadlines.** Row *k* is due at ``start + k / hz``; a row that cost more than
  a period does not shift the later ones, and deadlines that were missed are skipped
  instead of being caught up in a burst (as :class:`meltbench.sensors.memory.RssSampler`
  does). The achieved rate is never above the requested one.
- **Midpoint timestamps.** A row's reads take time (sysfs reads take microseconds; NVML
  or a remote file much longer), so the row is stamped with the midpoint of the clock
  read just before its first read and just after its last one: the error of attributing
  all of the row's values to one instant is then at most half the row's read time.
- **Tight brackets.** That bound only holds if the row's reads were not interrupted: a
  thread preempted between the clock read and a sensor read (always possible, and
  likely for a ``SCHED_IDLE`` thread on cores the engine keeps busy) stamps a value
  read 10-20 ms later with the earlier time. A row whose bracket (clock after minus
  clock before) is longer than ``max(1 ms, 4 x the tightest bracket seen)`` is read
  again, up to :data:`MAX_READS` times, and the tightest attempt is kept (the first
  row, taken by ``start()`` at the caller's priority, sets the scale) — the
  minimum-round-trip rule of clock synchronisation (NTP, RFC 5905 section 10; Cristian,
  1989). Re-reading is harmless for the readings kept here (counters, temperatures,
  power: reads have no side effects). The longest kept bracket is reported
  (:attr:`SensorSampler.max_bracket_ns`): half of it bounds every timestamp's error.
- **Coverage.** :meth:`SensorSampler.start` takes the first row in the calling thread
  before it returns and :meth:`SensorSampler.stop` takes a last row after the thread has
  ended, so the series always spans everything that happened between the two calls —
  the energy of a window that ends just before ``stop()`` is never lost to the last
  period's gap.
- **Errors are readings, not crashes.** A sensor whose ``read()`` raises (or returns the
  wrong number of values) gives None for its channels in that row; the error is counted
  in :attr:`SensorSampler.errors` and sampling goes on. Non-finite values (NaN, inf)
  become None too: "not measured", never a made-up number.
- **Idle priority.** On Linux the thread switches itself to ``SCHED_IDLE``
  (``sched_setscheduler(0, SCHED_IDLE, 0)``; on Linux the policy belongs to the calling
  *thread*, sched_setscheduler(2), so the rest of the process keeps its policy). The
  reason: on a machine whose cores are all busy with engine threads (2 llama.cpp threads
  on a 2-core board), the normal scheduler lets every sampler wakeup preempt a spinning
  engine thread, which then misses its barrier and slows the whole token; the quality
  bar is that sampling at 100 Hz changes decode tok/s by under 1%. A ``SCHED_IDLE``
  thread wakes without preempting normal threads and runs when a core is free (it keeps
  a small share of CPU time, so it is delayed, not starved). The cost: under full load
  rows can be late and the achieved rate lower than asked (see
  :attr:`SensorSeries.achieved_hz`); attribution stays exact because each row carries
  the time it was actually read. Lowering the policy needs no privilege; where it fails
  (or off Linux) the thread runs at normal priority, recorded in
  :attr:`SensorSampler.policy`.

The sampler never closes its sensors: they belong to whoever probed them
(:class:`meltbench.sensors.session.SensorSession`).
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from meltbench.sensors.base import UNITS, Channel, Probe, Sensor

__all__ = ["MAX_HZ", "SensorSampler", "SensorSeries", "sample_for"]

#: highest sampling rate accepted, Hz (sysfs reads cost ~1 us; most sensors update slower)
MAX_HZ = 1000.0
MAX_READS = 3
"""Attempts per row at most when the bracket is too long (module docstring)."""
RETRY_FLOOR_NS = 1_000_000
"""A bracket up to this long (1 ms) is never re-read: sysfs reads take microseconds."""

Clock = Callable[[], int]


def _channel_from_dict(d: dict[str, Any]) -> Channel:
    kind = d["kind"]
    if kind not in UNITS:
        raise ValueError(f"unknown channel kind {kind!r} for channel {d.get('name')!r}")
    wrap = d.get("wrap_j")
    return Channel(
        name=str(d["name"]),
        kind=kind,
        label=str(d.get("label", "")),
        scope=str(d.get("scope", "")),
        wrap_j=None if wrap is None else float(wrap),
        total=bool(d.get("total", False)),
        overlaps=tuple(d.get("overlaps", ())),
    )


def _clean(value: Any) -> float | None:
    """A reading as a finite float, or None (None, NaN and infinities are "not measured")."""
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


@dataclass
class SensorSeries:
    """Timestamped readings of a set of channels: one row per sampling instant.

    Attributes:
        channels: the channels, in column order.
        t_ns: one timestamp per row, ns of ``time.perf_counter_ns``, non-decreasing.
        values: ``values[c][i]`` is channel ``c`` at row ``i``, in the channel's unit
            (J, W, C, MHz, bytes); None when it could not be read. Shape
            ``len(channels) x len(t_ns)``.

    Raises:
        ValueError: (on construction) if the shapes do not match.
    """

    channels: list[Channel] = field(default_factory=list)
    t_ns: list[int] = field(default_factory=list)
    values: list[list[float | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.values and self.channels:
            self.values = [[] for _ in self.channels]
        if len(self.values) != len(self.channels):
            raise ValueError(f"{len(self.values)} value columns for {len(self.channels)} channels")
        for c, column in zip(self.channels, self.values, strict=True):
            if len(column) != len(self.t_ns):
                raise ValueError(
                    f"channel {c.name!r} has {len(column)} values for {len(self.t_ns)} rows"
                )

    def __len__(self) -> int:
        """Number of rows."""
        return len(self.t_ns)

    def index(self, name: str) -> int:
        """Column index of channel ``name``.

        Raises:
            KeyError: if there is no such channel.
        """
        for i, c in enumerate(self.channels):
            if c.name == name:
                return i
        raise KeyError(f"no channel {name!r} in the series ({self._names()})")

    def _names(self) -> str:
        return ", ".join(c.name for c in self.channels) or "no channels"

    def channel(self, name: str) -> list[float | None]:
        """The readings of channel ``name``, one per row (the stored list, not a copy).

        Raises:
            KeyError: if there is no such channel.
        """
        return self.values[self.index(name)]

    def slice(self, start_ns: int, end_ns: int) -> SensorSeries:
        """A new series with the rows whose timestamp is in ``[start_ns, end_ns]``."""
        lo = bisect.bisect_left(self.t_ns, start_ns)
        hi = bisect.bisect_right(self.t_ns, end_ns)
        return SensorSeries(
            channels=list(self.channels),
            t_ns=self.t_ns[lo:hi],
            values=[column[lo:hi] for column in self.values],
        )

    def extend(self, other: SensorSeries) -> None:
        """Append the rows of ``other`` (same channels, not earlier than the last row).

        Raises:
            ValueError: if the channels differ or ``other`` starts before this series ends.
        """
        if list(other.channels) != list(self.channels):
            raise ValueError(
                f"cannot extend a series of [{self._names()}] with one of [{other._names()}]"
            )
        if self.t_ns and other.t_ns and other.t_ns[0] < self.t_ns[-1]:
            raise ValueError("the appended rows start before the last row of the series")
        self.t_ns.extend(other.t_ns)
        for column, more in zip(self.values, other.values, strict=True):
            column.extend(more)

    @property
    def achieved_hz(self) -> float | None:
        """Rows per second actually taken, over the sampled span; None if < 2 rows."""
        if len(self.t_ns) < 2:
            return None
        span = self.t_ns[-1] - self.t_ns[0]
        return (len(self.t_ns) - 1) * 1e9 / span if span > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"channels": [...], "t_ns": [...], "values": [[...], ...]}``."""
        return {
            "channels": [c.to_dict() for c in self.channels],
            "t_ns": list(self.t_ns),
            "values": [list(column) for column in self.values],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SensorSeries:
        """Inverse of :meth:`to_dict`.

        Raises:
            KeyError: a missing field. ValueError: inconsistent shapes, timestamps that go
            backwards, or an unknown channel kind.
        """
        channels = [_channel_from_dict(c) for c in data["channels"]]
        t_ns = [int(t) for t in data["t_ns"]]
        if any(b < a for a, b in itertools.pairwise(t_ns)):
            raise ValueError("sensor series timestamps must not go backwards")
        values = [[_clean(v) for v in column] for column in data["values"]]
        return cls(channels=channels, t_ns=t_ns, values=values)


def lower_thread_priority() -> str:
    """Put the calling thread in ``SCHED_IDLE`` (Linux, sched(7)): it then runs only when
    a CPU would otherwise idle, and never preempts the engine's threads.

    Returns:
        ``"idle"`` if it took effect, else ``"normal"`` (other platforms, or refused).
    """
    setter = getattr(os, "sched_setscheduler", None)
    idle = getattr(os, "SCHED_IDLE", None)
    if setter is None or idle is None or not sys.platform.startswith("linux"):
        return "normal"
    try:
        setter(0, idle, os.sched_param(0))
        return "idle" if os.sched_getscheduler(0) == idle else "normal"
    except OSError:
        return "normal"


class SensorSampler:
    """Sample sensors at ``hz`` in a background thread (see the module docstring).

    Use as a context manager, or call :meth:`start` and :meth:`stop`; a sampler runs
    once. :meth:`sample_once` takes one row synchronously (for tests and
    :func:`sample_for`); do not call it while the thread runs.

    Args:
        probed: ``(sensor, probe)`` pairs from probing; pairs whose sensor is None or
            whose probe is unavailable or has no channels are skipped. ``read()`` of each
            sensor must return one value per channel of its probe.
        hz: rows per second, ``0 < hz <= 1000``.
        clock: ns clock; keep the default (``time.perf_counter_ns``, the worker's clock)
            except in tests. The thread waits in real time.
        idle_priority: run the thread under ``SCHED_IDLE`` on Linux.

    Attributes:
        channels: every sampled channel, in column order.
        errors: failed sensor reads so far (each gives None for that sensor's channels).
        error_messages: the first error of each failing sensor, by sensor name.
        policy: ``"idle"`` once the thread runs under ``SCHED_IDLE``, ``"normal"`` if it
            runs at normal priority; None before the thread started.
        max_bracket_ns: the longest read bracket of a kept row, ns; half of it bounds
            the error of every row's timestamp.
        rereads: rows read again because their bracket was too long.

    Raises:
        ValueError: if ``hz`` is not in (0, 1000], or two channels share a name.
    """

    def __init__(
        self,
        probed: Sequence[tuple[Sensor | None, Probe]],
        hz: float = 10.0,
        *,
        clock: Clock = time.perf_counter_ns,
        idle_priority: bool = True,
    ) -> None:
        if not isinstance(hz, (int, float)) or not 0 < hz <= MAX_HZ:
            raise ValueError(f"sensor sampling rate must be in (0, {MAX_HZ:g}] Hz, got {hz}")
        self.hz = float(hz)
        self._clock = clock
        self._idle_priority = idle_priority
        self._sensors: list[tuple[Sensor, str, int]] = []
        self.channels: list[Channel] = []
        for sensor, probe in probed:
            if sensor is None or not probe.available or not probe.channels:
                continue
            self._sensors.append((sensor, probe.sensor or sensor.name, len(probe.channels)))
            self.channels.extend(probe.channels)
        names = [c.name for c in self.channels]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"channel names must be unique, repeated: {', '.join(dupes)}")
        self._series = SensorSeries(channels=list(self.channels))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._stopped = False
        self._t0 = 0
        self.errors = 0
        self.error_messages: dict[str, str] = {}
        self.policy: str | None = None
        self.max_bracket_ns = 0
        self.rereads = 0
        self._min_bracket_ns: int | None = None

    # -- one row -------------------------------------------------------------------

    def _read_row(self) -> tuple[list[float | None], list[tuple[str, Exception]]]:
        row: list[float | None] = []
        failures: list[tuple[str, Exception]] = []
        for sensor, name, n in self._sensors:
            base = len(row)
            try:
                values = sensor.read()
                if len(values) != n:
                    raise ValueError(f"read() gave {len(values)} values for {n} channels")
                row.extend(_clean(v) for v in values)
            except Exception as exc:  # a failing sensor must not stop the others
                del row[base:]
                row.extend([None] * n)
                failures.append((name, exc))
        return row, failures

    def sample_once(self) -> int:
        """Read every sensor once and append the row; returns the row's timestamp (ns).

        The timestamp is the midpoint of the clock before the first read and after the
        last one. A row whose bracket is too long is read again (module docstring,
        "Tight brackets") and the tightest attempt kept. A sensor that raises, or
        returns the wrong number of values, gives None for all its channels (counted in
        :attr:`errors`, for the kept attempt only).
        """
        best: tuple[int, int, list[float | None], list[tuple[str, Exception]]] | None = None
        for attempt in range(MAX_READS):
            t0 = self._clock()
            row, failures = self._read_row()
            bracket = self._clock() - t0
            if best is None or bracket < best[0]:
                best = (bracket, t0, row, failures)
            if bracket <= self._retry_above_ns():
                break
            if attempt + 1 < MAX_READS:
                self.rereads += 1
        assert best is not None
        bracket, t0, row, failures = best
        for name, exc in failures:
            self._record_error(name, exc)
        self.max_bracket_ns = max(self.max_bracket_ns, bracket)
        self._min_bracket_ns = (
            bracket if self._min_bracket_ns is None else min(self._min_bracket_ns, bracket)
        )
        t = t0 + bracket // 2
        with self._lock:
            self._series.t_ns.append(t)
            for column, value in zip(self._series.values, row, strict=True):
                column.append(value)
        return t

    def _retry_above_ns(self) -> float:
        tightest = self._min_bracket_ns
        if tightest is None:  # the first row: nothing says yet what a normal read costs
            return math.inf
        return max(RETRY_FLOOR_NS, 4 * tightest)

    def _record_error(self, name: str, exc: Exception) -> None:
        self.errors += 1
        self.error_messages.setdefault(name, f"{type(exc).__name__}: {exc}")

    # -- the thread ----------------------------------------------------------------

    def _loop(self) -> None:
        self.policy = lower_thread_priority() if self._idle_priority else "normal"
        period = 1e9 / self.hz
        start = self._t0
        k = 1
        while True:
            now = self._clock()
            deadline = start + k * period
            if deadline < now:  # fell behind: skip missed deadlines instead of bursting
                k = math.floor((now - start) / period) + 1
                deadline = start + k * period
            if self._stop.wait((deadline - now) / 1e9):
                return
            self.sample_once()
            k += 1

    def start(self) -> SensorSampler:
        """Take the first row now, then start the thread; returns self.

        Raises:
            RuntimeError: if the sampler was already started.
        """
        if self._started:
            raise RuntimeError("a SensorSampler can only be started once")
        self._started = True
        if not self._sensors:  # nothing to read: no thread, no rows
            return self
        self._t0 = self._clock()
        self.sample_once()
        self._thread = threading.Thread(target=self._loop, name="meltbench-sensors", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread, wait for it, and take a last row (idempotent).

        If the thread does not end within ``timeout_s`` (a sensor read hangs), no last
        row is taken and the fact is recorded in :attr:`error_messages` (``"sampler"``).
        """
        if self._stopped or not self._started:
            return
        self._stopped = True
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=timeout_s)
        if self._thread.is_alive():
            self.error_messages.setdefault(
                "sampler", f"the sampling thread did not stop within {timeout_s:g} s"
            )
            return
        self.sample_once()

    def __enter__(self) -> SensorSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- results -------------------------------------------------------------------

    @property
    def series(self) -> SensorSeries:
        """A consistent copy of the rows taken so far (safe while the thread runs)."""
        with self._lock:
            return SensorSeries(
                channels=list(self._series.channels),
                t_ns=list(self._series.t_ns),
                values=[list(column) for column in self._series.values],
            )

    @property
    def achieved_hz(self) -> float | None:
        """Rows per second actually taken; None with fewer than 2 rows."""
        with self._lock:
            t = self._series.t_ns
            if len(t) < 2 or t[-1] <= t[0]:
                return None
            return (len(t) - 1) * 1e9 / (t[-1] - t[0])


def sample_for(
    probed: Sequence[tuple[Sensor | None, Probe]],
    seconds: float,
    hz: float = 10.0,
    clock: Clock = time.perf_counter_ns,
    sleep: Callable[[float], Any] = time.sleep,
) -> SensorSeries:
    """Sample synchronously for ``seconds`` at ``hz`` (the idle baseline before a run).

    Rows are due at ``start + k / hz`` for ``k = 0 .. ceil(seconds * hz)``, the last one
    at ``start + seconds``; missed deadlines are skipped, and sampling ends with the
    first row stamped at or after ``start + seconds``, so the series spans at least
    ``seconds`` (when reads succeed). Runs in the calling thread at its own priority.

    Args:
        probed: as for :class:`SensorSampler`.
        seconds: duration, > 0.
        hz: rows per second, ``0 < hz <= 1000``.
        clock: ns clock (tests pass a fake one with a matching ``sleep``).
        sleep: ``sleep(seconds)``.

    Returns:
        the readings; empty (no channels, no rows, no waiting) when no sensor is usable.

    Raises:
        ValueError: if ``seconds`` is not a positive finite number, or ``hz`` is invalid.
    """
    if not isinstance(seconds, (int, float)) or not 0 < seconds < math.inf:
        raise ValueError(f"sampling duration must be > 0 s, got {seconds}")
    sampler = SensorSampler(probed, hz, clock=clock, idle_priority=False)
    if not sampler.channels:
        return sampler.series
    period = 1e9 / sampler.hz
    span = seconds * 1e9
    n = math.ceil(round(span / period, 9))  # intervals; the last may be shorter
    start = clock()
    end = start + span
    k = 0
    while True:
        deadline = start + min(k * period, span)
        now = clock()
        if now < deadline:
            sleep((deadline - now) / 1e9)
        t = sampler.sample_once()
        if k >= n or t >= end:
            break
        k += 1
        now = clock()
        if start + min(k * period, span) < now:  # fell behind: skip missed deadlines
            k = min(n, math.floor((now - start) / period) + 1)
    return sampler.series
