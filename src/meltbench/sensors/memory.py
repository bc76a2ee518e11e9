"""Resident memory of the worker process, sampled from outside it.

A thread in the host samples the worker's RSS at a fixed rate, so the worker's own timing
loop is not touched. On Linux it keeps ``/proc/<pid>/statm`` open and re-reads it with
``pread`` (resident pages x page size, proc(5)): about 1 us a sample against 8.5 us for
``psutil.Process.memory_info()``, which is the fallback elsewhere. Samples are scheduled
on absolute deadlines (``start + k / hz``) so the rate does not drift with the cost of
each read. Like the sensor sampler, the thread runs under ``SCHED_IDLE`` on Linux so a
wake-up never preempts one of the engine's busy threads (benchmarks/perturbation.py).
The peak of the samples is a lower bound of the
true peak; the worker adds the kernel's exact high-water mark (``VmHWM``) at its end.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MemorySample", "RssSampler", "rss_reader"]


def rss_reader(pid: int) -> tuple[Callable[[], int], Callable[[], None]]:
    """A fast ``read() -> rss_bytes`` for process ``pid`` and its ``close()``.

    Raises:
        ProcessLookupError: if the process does not exist (no reader can be made).
        OSError: from ``read()`` once the process is gone (Linux), or
        ``psutil.Error`` (elsewhere).
    """
    try:
        fd = os.open(f"/proc/{pid}/statm", os.O_RDONLY)
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            raise ProcessLookupError(pid) from None
        fd = -1
    if fd >= 0:
        page = os.sysconf("SC_PAGE_SIZE")

        def read_statm() -> int:
            data = os.pread(fd, 256, 0)
            resident = int(data.split()[1]) if data else 0
            if resident == 0:  # gone, or a zombie (proc(5) reports all zeros)
                raise ProcessLookupError(pid)
            return resident * page

        return read_statm, lambda: os.close(fd)
    import psutil

    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        raise ProcessLookupError(pid) from None
    return (lambda: int(proc.memory_info().rss)), (lambda: None)


@dataclass(frozen=True)
class MemorySample:
    """One reading: ``t_ns`` from ``time.perf_counter_ns``, ``rss_bytes`` in bytes."""

    t_ns: int
    rss_bytes: int


class RssSampler:
    """Sample a process's RSS at ``hz`` in a background thread.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Reading stops
    quietly when the process exits.

    Args:
        pid: process to watch.
        hz: samples per second (> 0).
        idle_priority: run the thread under ``SCHED_IDLE`` on Linux (see module doc).

    Raises:
        ValueError: if ``hz <= 0``.
    """

    def __init__(self, pid: int, hz: float, *, idle_priority: bool = True) -> None:
        if hz <= 0:
            raise ValueError(f"sampling rate must be > 0 Hz, got {hz}")
        self.pid = pid
        self.hz = hz
        self.samples: list[MemorySample] = []
        self.idle_priority = idle_priority
        self.policy: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="meltbench-rss", daemon=True)

    def _loop(self) -> None:
        if self.idle_priority:
            from meltbench.sensors.sampler import lower_thread_priority

            self.policy = lower_thread_priority()
        else:
            self.policy = "normal"
        try:
            read, close = rss_reader(self.pid)
        except ProcessLookupError:
            return
        period_ns = int(1e9 / self.hz)
        clock = time.perf_counter_ns
        start = clock()
        k = 0
        try:
            while not self._stop.is_set():
                try:
                    rss = read()
                except Exception:  # the process exited (OSError, psutil.Error)
                    return
                self.samples.append(MemorySample(clock(), rss))
                k += 1
                delay = start + k * period_ns - clock()
                if delay < 0:  # fell behind: skip missed deadlines instead of bursting
                    k += -delay // period_ns + 1
                    delay = start + k * period_ns - clock()
                self._stop.wait(max(delay, 0) / 1e9)
        finally:
            close()

    def start(self) -> RssSampler:
        """Start sampling; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def __enter__(self) -> RssSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def peak_bytes(self) -> int | None:
        """Largest sampled RSS, bytes; None if nothing was sampled."""
        return max((s.rss_bytes for s in self.samples), default=None)

    @property
    def achieved_hz(self) -> float | None:
        """Samples per second actually taken, over the sampled span; None if < 2 samples."""
        if len(self.samples) < 2:
            return None
        span = self.samples[-1].t_ns - self.samples[0].t_ns
        return (len(self.samples) - 1) * 1e9 / span if span > 0 else None
