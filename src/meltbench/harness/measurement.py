"""Measuring on the machine that runs the model, as data the host can analyze anywhere.

:func:`measure` does, on *this* machine, everything of a run that needs the hardware:
probe the sensors, read the device state, sample the idle baseline, start the worker,
sample its memory and the sensors beside it, and collect every event. The result, a
:class:`Measurement`, is plain data (``to_dict`` / ``from_dict`` round-trip through
JSON), so the same function serves a local run (called in-process) and a remote one
(``python -m meltbench.harness.agent`` on the device, its JSON sent back over SSH); the
host then turns it into a :class:`~meltbench.results.schema.RunResult`
(:func:`meltbench.api.execute`). All timestamps are the device's ``perf_counter_ns``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from meltbench.harness.runner import WorkerOutput, record_event, run_worker
from meltbench.timestamps import utc_now

__all__ = ["Measurement", "measure"]

EventCallback = Callable[[dict[str, Any]], None]


@dataclass
class Measurement:
    """Everything measured for one run, JSON-ready.

    Attributes:
        events: the worker's events, in order.
        returncode, stderr_tail, timed_out, interrupted, protocol_errors: how the worker
            ended (see :class:`~meltbench.harness.runner.WorkerOutput`).
        memory: RSS sampling: ``peak_sampled_bytes``, ``achieved_hz``, ``policy``,
            ``samples`` (``[t_ns, rss_bytes]`` pairs).
        sensors: ``series`` (a ``SensorSeries`` dict or None), ``achieved_hz``,
            ``policy``, ``errors``, ``max_bracket_ms`` (the longest read bracket of a
            kept row: half of it bounds every row's timestamp error), ``rereads``.
        probes: every probed sensor (``Probe.to_dict()``), available or not.
        baseline: the idle baseline's ``SensorSeries`` dict, or None.
        device_state: read before the run.
        bandwidth: memory bandwidth measured after the worker ended, when the run asked
            for it (a :class:`~meltbench.measure.bandwidth.BandwidthResult` dict), else
            None.
        started_at, finished_at: ISO 8601 UTC, on the measuring machine.
    """

    events: list[dict[str, Any]] = field(default_factory=list)
    returncode: int | None = None
    stderr_tail: list[str] = field(default_factory=list)
    timed_out: bool = False
    interrupted: bool = False
    protocol_errors: list[str] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)
    sensors: dict[str, Any] = field(default_factory=dict)
    probes: list[dict[str, Any]] = field(default_factory=list)
    baseline: dict[str, Any] | None = None
    device_state: dict[str, Any] = field(default_factory=dict)
    bandwidth: dict[str, Any] | None = None
    started_at: str = ""
    finished_at: str = ""

    def output(self) -> WorkerOutput:
        """The events replayed into a :class:`WorkerOutput` (for ``failure_cause`` etc.)."""
        out = WorkerOutput(
            returncode=self.returncode,
            stderr_tail=list(self.stderr_tail),
            timed_out=self.timed_out,
            interrupted=self.interrupted,
            protocol_errors=list(self.protocol_errors),
        )
        for event in self.events:
            record_event(out, event)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        """Inverse of :meth:`to_dict`; unknown keys are ignored (newer agents).

        Raises:
            ValueError: ``data`` is not a measurement dict.
        """
        if not isinstance(data, dict) or "events" not in data:
            raise ValueError("not a measurement (no 'events')")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def measure(
    job: dict[str, Any], run: dict[str, Any], on_event: EventCallback | None = None
) -> Measurement:
    """Measure one job on this machine.

    Args:
        job: the worker job (:meth:`meltbench.api.PreparedRun.job`).
        run: host-side settings: ``timeout_s``, ``memory_hz``, ``memory_limit_bytes``,
            ``sensors`` (a ``SensorSpec`` dict), ``cooldown`` (a ``CooldownSpec`` dict,
            or None: no cool-down between requests), ``bandwidth`` (keyword arguments
            of :func:`~meltbench.measure.bandwidth.measure_bandwidth`, or None: measure
            the memory bandwidth after the worker, once it has exited).
        on_event: called with each worker event as it arrives.

    Returns:
        the measurement; ``interrupted`` is True after a Ctrl-C (the worker is stopped,
        what it reported is kept).

    Raises:
        UsageError: an unknown sensor name or a missing sysfs root.
    """
    from meltbench.config import SensorSpec
    from meltbench.sensors.session import open_session

    spec = SensorSpec.model_validate(run.get("sensors") or {})
    use = spec.use
    sensing = use is None or any(n != "none" for n in use)
    session = open_session(spec) if sensing else None
    m = Measurement(started_at=utc_now())
    try:
        job = dict(job)
        cooldown = run.get("cooldown")
        if cooldown:
            idle_c = None
            if session is not None and session.baseline is not None:
                from meltbench.measure.thermal import temperature_stats

                idle_c = temperature_stats(session.baseline).get("temp_max_c")
            job["cooldown"] = {
                **cooldown,
                "idle_c": idle_c,
                "root": spec.root,
                "use": None if spec.use is None else list(spec.use),
            }
        try:
            out = run_worker(
                job,
                timeout_s=run.get("timeout_s"),
                memory_hz=float(run.get("memory_hz") or spec.memory_hz),
                on_event=on_event,
                memory_limit_bytes=run.get("memory_limit_bytes"),
                sensors=session.available if session is not None else (),
                sensor_hz=spec.hz,
            )
        except KeyboardInterrupt as exc:
            out = getattr(exc, "output", None)
            if out is None:  # before the worker existed: nothing measured, just stop
                raise
        m.finished_at = utc_now()
        m.events = out.events
        m.returncode = out.returncode
        m.stderr_tail = out.stderr_tail
        m.timed_out = out.timed_out
        m.interrupted = out.interrupted
        m.protocol_errors = out.protocol_errors
        sampler = out.memory
        m.memory = {
            "peak_sampled_bytes": sampler.peak_bytes if sampler else None,
            "achieved_hz": sampler.achieved_hz if sampler else None,
            "policy": sampler.policy if sampler else None,
            "samples": [[s.t_ns, s.rss_bytes] for s in sampler.samples] if sampler else [],
        }
        if out.sensors is not None:
            m.sensors = {
                "series": out.sensors.series.to_dict(),
                "achieved_hz": out.sensors.achieved_hz,
                "policy": out.sensors.policy,
                "errors": out.sensors.errors,
                "max_bracket_ms": out.sensors.max_bracket_ns / 1e6,
                "rereads": out.sensors.rereads,
            }
        if run.get("bandwidth") and not m.interrupted:
            from meltbench.measure.bandwidth import measure_bandwidth

            try:
                m.bandwidth = measure_bandwidth(**run["bandwidth"]).to_dict()
            except (MemoryError, ValueError, ImportError):
                m.bandwidth = None  # the run stands without a roofline
        if session is not None:
            m.probes = [p.to_dict() for _, p in session.probed]
            m.baseline = session.baseline.to_dict() if session.baseline is not None else None
            m.device_state = session.device_state
    finally:
        if session is not None:
            session.close()
    return m
