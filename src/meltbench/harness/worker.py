"""The measuring worker: one fresh process per run, on the machine that runs the model.

Run as ``python -m meltbench.harness.worker``. It reads one job (JSON) from stdin and
writes events as JSON lines to its original stdout. Before anything else it moves file
descriptor 1 to stderr, so text that an engine's C code prints cannot corrupt the event
stream. Events, in order::

    {"event": "hello", "protocol": 1, "pid": ..., "clock": "perf_counter_ns"}
    {"event": "environment", "data": {...}}
    {"event": "phase", "phase": "load"}
    {"event": "loaded", "load_ns": ..., "t_load_start_ns": ..., "t_load_end_ns": ...,
     "engine": {...}}
    {"event": "rep", "index": i, "kind": "warmup"|"timed", "t_start_ns": ...,
     "token_ns": [...], "tokens": [...], "counters": {...}|null, "depth_fill_ns": ...|null,
     "cooldown": {...}|null}
    ... one "rep" per repetition, warmup first ...
    {"event": "profile", "data": {...}}   (only when the job asks for a profile)
    {"event": "done", "memory": {"vm_hwm_bytes": ..., "ru_maxrss_bytes": ...}}

A request workload (``job["requests"]``: a :class:`meltbench.workloads.base.RequestSet`
as a dict) replaces the ``rep`` events with one ``{"event": "request", "record": {...}}``
per turn (:mod:`meltbench.harness.replay`) and a ``{"event": "replayed", "data":
{"template": ...}}`` before ``done``.

A forward task (``job["forward"]``: encode, classify) replaces the ``rep`` events with
one per forward pass, after a ``prepare`` phase (:mod:`meltbench.forward.measure`).

On an exception: ``{"event": "error", "error_type": ..., "message": ...}`` and exit 1.
All times come from ``time.perf_counter_ns`` (CLOCK_MONOTONIC on Linux: one clock for
every process of the machine, so the host's sensor readings line up with these
timestamps). Python's garbage collector is paused during each timed request and run
between requests.

Optional parts of the job:

- ``cooldown``: ``{"seconds", "margin_c", "timeout_s", "idle_c", "root", "use"}``: before
  every request but the first, wait (fixed, then until the hottest temperature sensor
  is within ``margin_c`` of ``idle_c``); the wait is recorded in the request's event.
- ``sustain``: ``{"duration_s"}``: after the warmup requests, send timed requests back to
  back until ``duration_s`` has passed (``meltbench sustain``), instead of ``reps``.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
from typing import IO, Any

PROTOCOL = 1

__all__ = ["PROTOCOL", "main", "peak_memory"]


def peak_memory() -> dict[str, int | None]:
    """This process's peak resident memory, bytes, from the kernel.

    ``vm_hwm_bytes`` is ``VmHWM`` from ``/proc/self/status`` (Linux, exact high-water
    mark); ``ru_maxrss_bytes`` is ``getrusage`` ``ru_maxrss`` (kilobytes on Linux, bytes
    on macOS, per getrusage(2)). Either is None where unavailable.
    """
    hwm: int | None = None
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    maxrss_bytes = maxrss if sys.platform == "darwin" else maxrss * 1024
    return {"vm_hwm_bytes": hwm, "ru_maxrss_bytes": maxrss_bytes or None}


def _emitter(stream: IO[str]) -> Any:
    def emit(event: str, **fields: Any) -> None:
        stream.write(json.dumps({"event": event, **fields}, separators=(",", ":")) + "\n")
        stream.flush()

    return emit


def _measure(job: dict[str, Any], emit: Any) -> None:
    from meltbench.engines.base import EngineSettings, ModelHandle
    from meltbench.environment import collect_environment
    from meltbench.registry import ENGINES
    from meltbench.workloads.synthetic import synthetic_tokens

    emit("environment", data=collect_environment())
    workload = job["workload"]
    if job.get("forward") is not None:  # encode / classify: one forward pass per rep
        from meltbench.forward.measure import measure_forward

        measure_forward(job, emit, _cooldown_waiter(job.get("cooldown")))
        emit("done", memory=peak_memory())
        return
    settings = EngineSettings(**job["settings"])
    engine = ENGINES.load(job["engine"])(settings)

    emit("phase", phase="load")
    t0 = time.perf_counter_ns()
    engine.load(ModelHandle(**job["model"]))
    t1 = time.perf_counter_ns()
    emit("loaded", load_ns=t1 - t0, t_load_start_ns=t0, t_load_end_ns=t1, engine=engine.info())
    if job.get("requests") is not None:
        _replay(job, engine, emit)
        return

    n_prompt, n_gen, n_depth = workload["n_prompt"], workload["n_gen"], workload["n_depth"]
    seed, n_vocab, bos = workload["seed"], engine.n_vocab, engine.bos_token()
    depth_tokens = synthetic_tokens(n_depth, n_vocab, seed + 1, bos)
    prompt = synthetic_tokens(n_prompt, n_vocab, seed, None if n_depth else bos)
    n_warmup, n_reps = workload["warmup"], workload["reps"]
    cool = _cooldown_waiter(job.get("cooldown"))
    sustain_s = (job.get("sustain") or {}).get("duration_s")
    deadline: int | None = None

    index = 0
    while True:
        if sustain_s is None and index >= n_warmup + n_reps:
            break
        if deadline is not None and time.perf_counter_ns() >= deadline:
            break
        kind = "warmup" if index < n_warmup else "timed"
        if sustain_s is not None and kind == "timed" and deadline is None:
            deadline = time.perf_counter_ns() + int(sustain_s * 1e9)
        cooldown = cool() if (cool is not None and index > 0) else None
        engine.reset()
        depth_fill_ns = None
        if n_depth:
            t_fill = time.perf_counter_ns()
            engine.extend(depth_tokens)
            depth_fill_ns = time.perf_counter_ns() - t_fill
        engine.reset_counters()
        token_ns: list[int] = []
        tokens: list[int] = []
        gc.collect()
        gc.disable()
        try:
            clock = time.perf_counter_ns
            t_start = clock()
            for token in engine.stream(prompt, n_gen):
                token_ns.append(clock())
                tokens.append(token)
        finally:
            gc.enable()
        emit(
            "rep",
            index=index,
            kind=kind,
            t_start_ns=t_start,
            token_ns=token_ns,
            tokens=tokens,
            counters=engine.counters(),
            depth_fill_ns=depth_fill_ns,
            cooldown=cooldown,
        )
        index += 1
    if job.get("profile"):
        emit("phase", phase="profile")
        engine.reset()
        if n_depth:
            engine.extend(depth_tokens)
        emit("profile", data=engine.profile(prompt, n_gen))
    engine.unload()
    emit("done", memory=peak_memory())


def _replay(job: dict[str, Any], engine: Any, emit: Any) -> None:
    """A request workload (``job["requests"]``): one ``request`` event per turn."""
    from meltbench.harness.replay import replay_requests
    from meltbench.workloads.base import RequestSet

    workload = job["workload"]
    info = replay_requests(
        engine,
        RequestSet.from_dict(job["requests"]),
        warmup=workload["warmup"],
        reps=workload["reps"],
        prefix_reuse=not workload.get("no_prefix_reuse", False),
        emit=lambda record: emit("request", record=record),
    )
    emit("replayed", data=info)
    engine.unload()
    emit("done", memory=peak_memory())


def _cooldown_waiter(conf: dict[str, Any] | None) -> Any:
    """``wait() -> record`` for the job's cool-down rule, or None when there is none."""
    if not conf or not (conf.get("seconds") or conf.get("margin_c")):
        return None
    from meltbench.measure.cooldown import CooldownRule, wait_for_cooldown
    from meltbench.parameters import default

    rule = CooldownRule(
        seconds=float(conf.get("seconds") or 0.0),
        margin_c=conf.get("margin_c"),
        timeout_s=float(conf.get("timeout_s") or default("cooldown_timeout_s")),
    )
    read_hottest = None
    if rule.margin_c is not None:
        from meltbench.sensors.discover import hottest_reader, probe_sensors
        from meltbench.sensors.sysfs import SysFS

        use = conf.get("use")
        read_hottest = hottest_reader(probe_sensors(SysFS(conf.get("root") or "/"), use))
    idle_c = conf.get("idle_c")

    def wait() -> dict[str, Any]:
        return wait_for_cooldown(rule, read_hottest, idle_c)

    return wait


def main() -> int:
    """Worker entry point; returns the process exit code (0 ok, 1 error)."""
    events = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # anything printed to fd 1 from now on goes to stderr
    sys.stdout = sys.stderr
    emit = _emitter(events)
    emit("hello", protocol=PROTOCOL, pid=os.getpid(), clock="perf_counter_ns")
    try:
        job = json.loads(sys.stdin.readline())
        if job.get("protocol") != PROTOCOL:
            raise ValueError(f"job protocol {job.get('protocol')!r}, worker speaks {PROTOCOL}")
        _measure(job, emit)
    except BaseException as exc:  # report everything, including KeyboardInterrupt
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        try:
            emit("error", error_type=type(exc).__name__, message=message)
        except OSError:
            pass
        if not isinstance(exc, Exception):
            return 130
        import traceback

        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
