"""Host side of a run: start a fresh worker process, feed it the job, collect its events.

The worker runs in its own process group (so a Ctrl-C reaches the host, which then stops
the worker cleanly) with the same Python interpreter. Its stderr is drained in a thread,
keeping the last lines for the failure cause. A timeout kills the worker. Whatever the
worker reported before it died is kept in :class:`WorkerOutput`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from meltbench.sensors.memory import RssSampler

if TYPE_CHECKING:
    from meltbench.sensors.base import Probe, Sensor
    from meltbench.sensors.sampler import SensorSampler

__all__ = ["WorkerOutput", "describe_exit", "record_event", "run_worker"]

EventCallback = Callable[[dict[str, Any]], None]


@dataclass
class WorkerOutput:
    """Everything a worker reported, and how it ended.

    Attributes:
        events: every event, in order.
        environment, engine: from the ``environment`` and ``loaded`` events (or None).
        load_ns: model load time, ns (or None if loading did not finish).
        reps: the ``rep`` events.
        done: the ``done`` event, None if the worker did not finish.
        error: the ``error`` event, if any.
        returncode: process exit status (negative = killed by that signal).
        stderr_tail: last lines the worker wrote to stderr.
        timed_out, interrupted: why the host stopped the worker, if it did.
        memory: the RSS sampler (samples, peak, achieved rate).
        sensors: the energy/temperature/frequency sampler, when sensors were given.
        requests: the ``request`` records of a request workload, in order.
        replayed: the ``replayed`` event's data (the chat template used).
    """

    events: list[dict[str, Any]] = field(default_factory=list)
    environment: dict[str, Any] | None = None
    engine: dict[str, Any] | None = None
    load_ns: int | None = None
    reps: list[dict[str, Any]] = field(default_factory=list)
    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    returncode: int | None = None
    stderr_tail: list[str] = field(default_factory=list)
    timed_out: bool = False
    interrupted: bool = False
    memory: RssSampler | None = None
    sensors: SensorSampler | None = None
    protocol_errors: list[str] = field(default_factory=list)
    profile: dict[str, Any] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    replayed: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """True when the worker finished every repetition and exited 0."""
        return self.done is not None and self.returncode == 0 and self.error is None

    def failure_cause(self, timeout_s: float | None = None) -> str | None:
        """One line saying why the run failed, or None if it did not."""
        if self.ok:
            return None
        if self.interrupted:
            return "interrupted by the user (Ctrl-C)"
        if self.timed_out:
            return f"timed out after {timeout_s:g} s; raise --timeout or shorten the workload"
        if self.error is not None:
            return f"{self.error.get('error_type', 'Error')}: {self.error.get('message', '')}"
        if self.protocol_errors:
            first = self.protocol_errors[0]
            if first.startswith("target "):  # a transport fault, already one clear line
                return first
            return f"worker protocol error: {first}"
        return describe_exit(self.returncode, self.stderr_tail)


def describe_exit(returncode: int | None, stderr_tail: list[str]) -> str:
    """Explain a worker exit status in one line (signal names, OOM hint, last stderr).

    ``SIGKILL`` is what the Linux out-of-memory killer sends, so it is reported as a
    probable OOM.
    """
    last = next((line for line in reversed(stderr_tail) if line.strip()), "")
    tail = f"; last stderr: {last.strip()[:300]}" if last else ""
    if returncode is None:
        return "worker did not exit"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if name == "SIGKILL":
            return f"worker killed by SIGKILL (probably out of memory; see dmesg){tail}"
        return f"worker crashed with {name}{tail}"
    if returncode == 0:
        return f"worker exited before finishing the run{tail}"
    return f"worker exited with status {returncode}{tail}"


def _address_space_limit(limit_bytes: int) -> Callable[[], None]:
    """A ``preexec_fn`` that caps the child's address space at ``limit_bytes``."""

    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return apply


def _drain(stream: Any, sink: deque[str]) -> None:
    for raw in iter(stream.readline, b""):
        sink.append(raw.decode("utf-8", errors="replace").rstrip("\n"))
    stream.close()


def run_worker(
    job: dict[str, Any],
    *,
    timeout_s: float | None = None,
    memory_hz: float = 50.0,
    on_event: EventCallback | None = None,
    python: str | None = None,
    memory_limit_bytes: int | None = None,
    sensors: Sequence[tuple[Sensor, Probe]] = (),
    sensor_hz: float = 10.0,
) -> WorkerOutput:
    """Run one job in a fresh worker process and collect its events.

    Args:
        job: the job dict (see :mod:`meltbench.harness.worker`).
        timeout_s: kill the worker after this many seconds; None = no limit.
        memory_hz: RSS sampling rate of the worker, Hz.
        on_event: called with each event as it arrives (progress display).
        python: interpreter for the worker; default ``sys.executable``.
        memory_limit_bytes: ``RLIMIT_AS`` of the worker (set in the child before exec).
        sensors: probed, available sensors to sample beside the worker (host side, in
            a thread at ``sensor_hz``, on the worker's clock) from its start to its end.

    Returns:
        the worker's output; never raises for a failed worker (see ``.ok``), except
        that ``KeyboardInterrupt`` is re-raised after the worker is stopped and the
        output marked ``interrupted`` (the output is attached as ``exc.output``).
    """
    out = WorkerOutput()
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    limit = _address_space_limit(memory_limit_bytes) if memory_limit_bytes else None
    proc = subprocess.Popen(
        [python or sys.executable, "-m", "meltbench.harness.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
        preexec_fn=limit,
    )
    stderr_lines: deque[str] = deque(maxlen=40)
    drain = threading.Thread(target=_drain, args=(proc.stderr, stderr_lines), daemon=True)
    timer: threading.Timer | None = None

    def kill_on_timeout() -> None:
        out.timed_out = True
        proc.kill()

    try:  # from here on, a Ctrl-C at any point stops the worker and keeps what it sent
        drain.start()
        out.memory = RssSampler(proc.pid, memory_hz).start()
        if sensors:
            from meltbench.sensors.sampler import SensorSampler

            out.sensors = SensorSampler(list(sensors), sensor_hz).start()
        if timeout_s:
            timer = threading.Timer(timeout_s, kill_on_timeout)
            timer.daemon = True
            timer.start()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write((json.dumps(job) + "\n").encode())
        proc.stdin.close()
        for raw in iter(proc.stdout.readline, b""):
            try:
                event = json.loads(raw)
            except ValueError:
                out.protocol_errors.append(f"not JSON: {raw[:200]!r}")
                continue
            if not isinstance(event, dict):
                out.protocol_errors.append(f"not an event object: {raw[:200]!r}")
                continue
            record_event(out, event)
            if on_event is not None:
                on_event(event)
        proc.wait()
    except KeyboardInterrupt as exc:
        out.interrupted = True
        proc.kill()
        proc.wait()
        exc.output = out  # type: ignore[attr-defined]
        raise
    except BrokenPipeError:
        proc.wait()
    finally:
        if timer:
            timer.cancel()
        if out.memory is not None:
            out.memory.stop()
        if out.sensors is not None:
            out.sensors.stop()
        if drain.is_alive():
            drain.join(timeout=5)
        out.stderr_tail = list(stderr_lines)
        out.returncode = proc.returncode
    return out


def record_event(out: WorkerOutput, event: dict[str, Any]) -> None:
    """Add one worker event to ``out`` (and to the field it fills)."""
    out.events.append(event)
    kind = event.get("event")
    if kind == "environment":
        out.environment = event.get("data")
    elif kind == "loaded":
        out.load_ns = event.get("load_ns")
        out.engine = event.get("engine")
    elif kind == "rep":
        out.reps.append(event)
    elif kind == "request":
        out.requests.append(event.get("record") or {})
    elif kind == "replayed":
        out.replayed = event.get("data")
    elif kind == "profile":
        out.profile = event.get("data")
    elif kind == "done":
        out.done = event
    elif kind == "error":
        out.error = event
