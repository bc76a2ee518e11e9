"""Measure on a remote device with Python (SSH): the host side of ``--target ssh://...``.

:func:`measure_on_target` is what :func:`meltbench.api.execute` calls for a target that
is neither ``local`` nor ``adb://``. It

1. opens the target (host key verified; an unreachable host or refused key is a
   :class:`~meltbench.errors.UsageError`: nothing was measured, nothing is stored);
2. checks that ``meltbench target setup`` was done (the venv's Python imports meltbench);
3. pushes the model to ``<workdir>/models/<sha256[:16]>/<file name>`` (checked by
   SHA-256; skipped when already there, see :func:`meltbench.targets.sync.sync_file`) and
   rewrites the job's model path. The file name is kept as is (engines look at it);
   quoting makes any name safe;
4. starts ``<venv>/bin/python -m meltbench.harness.agent`` on the device, sends the
   request line, forwards each worker event to ``on_event`` and returns the agent's
   :class:`~meltbench.harness.measurement.Measurement`: sensors were probed and sampled
   on the device, on the device's clock.

Faults become failed runs, never hangs: if the connection drops or the agent dies before
its measurement, the result holds the events received so far (completed repetitions are
kept) and ``protocol_errors`` says why (``target disconnected: ...``). A closed
connection is seen at once; a vanished peer by TCP keepalives (about 45 s); a device that
keeps the connection open but stops answering (hung, sshd stopped) by a liveness check
(a trivial command) after :data:`LIVENESS_INTERVAL_S` of silence from the agent, never
while events flow; a host-side deadline of ``timeout_s`` plus a margin (or
:data:`DEFAULT_TIMEOUT_S` when no timeout was set) stops an agent that never finishes.
A Ctrl-C on the host sends SIGINT to the agent, which stops the worker and
reports what was measured (stored as an interrupted run).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import signal as _signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError
from meltbench.harness.measurement import Measurement
from meltbench.targets.base import Target, TargetError
from meltbench.timestamps import utc_now

__all__ = ["DEFAULT_TIMEOUT_S", "measure_on_target", "push_model", "run_agent"]

EventCallback = Callable[[dict[str, Any]], None]

#: host-side limit of a remote run when the spec sets no timeout, seconds
DEFAULT_TIMEOUT_S = 6 * 3600.0
#: added to the spec's timeout (probing, idle baseline, start-up, transfer of the result)
TIMEOUT_MARGIN_S = 60.0
#: how long to wait for the agent's measurement after a Ctrl-C, seconds
INTERRUPT_GRACE_S = 20.0
#: after this many seconds without output from the agent, check that the device still
#: answers (:meth:`~meltbench.targets.ssh.SshTarget.ping`); no check while events flow
LIVENESS_INTERVAL_S = 30.0
#: a device that does not answer the check within this many seconds is gone
LIVENESS_TIMEOUT_S = 20.0


def push_model(
    target: Target, path: str | os.PathLike[str], on_event: EventCallback | None = None
) -> dict[str, Any]:
    """Copy a model file or folder to ``<workdir>/models/<sha256[:16]>/<name>`` on the
    target, skipping files already there with the same checksum.

    Returns:
        ``{"remote": path on the device, "sha256", "size_bytes", "action": "pushed" |
        "present" | "linked" (for a folder: the first file's action unless any was
        pushed), "seconds", "files"}``.

    Raises:
        TargetError: the copy failed or the connection dropped.
    """
    from meltbench.targets.sync import local_sha256, sync_file

    t0 = time.monotonic()
    src = Path(path)
    models = posixpath.join(target.workdir, "models")
    emit = on_event or (lambda _e: None)
    if src.is_dir():
        files = sorted(f for f in src.rglob("*") if f.is_file())
        shas = [(f.relative_to(src).as_posix(), f.stat().st_size, local_sha256(f)) for f in files]
        manifest = "".join(f"{rel}\0{size}\0{sha}\n" for rel, size, sha in shas)
        digest = hashlib.sha256(manifest.encode()).hexdigest()
        remote = posixpath.join(models, digest[:16], src.name)
        emit({"event": "target", "phase": "push", "path": remote, "files": len(files)})
        actions = [
            sync_file(target, f, posixpath.join(remote, rel), sha256=sha)["action"]
            for f, (rel, _, sha) in zip(files, shas, strict=True)
        ]
        action = "pushed" if "pushed" in actions else (actions[0] if actions else "present")
        size = sum(s for _, s, _ in shas)
    else:
        digest = local_sha256(src)
        remote = posixpath.join(models, digest[:16], src.name)
        emit({"event": "target", "phase": "push", "path": remote, "files": 1})
        action = sync_file(target, src, remote, sha256=digest, dedupe=True)["action"]
        size = src.stat().st_size
    info = {
        "remote": remote,
        "sha256": digest,
        "size_bytes": size,
        "action": action,
        "seconds": round(time.monotonic() - t0, 3),
        "files": len(files) if src.is_dir() else 1,
    }
    emit({"event": "target", "phase": "pushed", **info})
    return info


def _host_limit(run_settings: dict[str, Any], job: dict[str, Any]) -> float:
    """Host-side deadline of the agent, seconds."""
    idle = float(((run_settings.get("sensors") or {}).get("idle_s")) or 0.0)
    timeout = run_settings.get("timeout_s")
    if timeout:
        return float(timeout) + TIMEOUT_MARGIN_S + 2 * idle
    sustain = (job.get("sustain") or {}).get("duration_s") or 0.0
    return max(DEFAULT_TIMEOUT_S, 2 * float(sustain) + TIMEOUT_MARGIN_S)


def run_agent(
    target: Target,
    python: str,
    job: dict[str, Any],
    run_settings: dict[str, Any],
    on_event: EventCallback | None = None,
    *,
    limit_s: float | None = None,
    name: str | None = None,
) -> Measurement:
    """Run ``python -m meltbench.harness.agent`` on the target for one job.

    Args:
        target: an open target.
        python: the device interpreter with meltbench installed.
        job, run_settings: as for :func:`meltbench.harness.measurement.measure`.
        on_event: receives each worker event.
        limit_s: host-side deadline (default from ``run_settings``, see module docstring).
        name: the target's name for messages.

    Returns:
        the agent's measurement; or, if the agent never sent it (disconnect, crash,
        deadline), one built from the events received so far, with ``protocol_errors``,
        ``returncode``, ``stderr_tail`` or ``timed_out`` saying why.

    Raises:
        UsageError: the agent refused the request (``agent_error``: unknown sensor,
            missing sysfs root on the device, protocol mismatch).
        TargetError: the agent could not be started (connection lost before it ran).
    """
    from meltbench.harness.agent import AGENT_PROTOCOL
    from meltbench.harness.runner import describe_exit

    where = name or target.url
    limit = limit_s if limit_s is not None else _host_limit(run_settings, job)
    started = utc_now()
    proc = target.start([python, "-m", "meltbench.harness.agent"])
    events: list[dict[str, Any]] = []
    host_errors: list[str] = []
    final: dict[str, Any] | None = None
    agent_error: str | None = None
    disconnected: str | None = None
    timed_out = threading.Event()
    interrupted = False

    def on_deadline() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(limit, on_deadline)
    timer.daemon = True
    last_output = [time.monotonic()]
    gone: list[str] = []
    stop_watch = threading.Event()
    ping = getattr(target, "ping", None)

    def watchdog() -> None:
        """Silence from the agent is normal (loading, long requests); a device that does
        not answer a trivial command is not: give the stream up then."""
        while not stop_watch.wait(min(1.0, LIVENESS_INTERVAL_S / 2)):
            silent = time.monotonic() - last_output[0]
            if silent < LIVENESS_INTERVAL_S:
                continue
            if ping(LIVENESS_TIMEOUT_S):
                last_output[0] = time.monotonic()
                continue
            if stop_watch.is_set():
                return
            gone.append(
                f"{target.url} stopped answering (no reply to a liveness check within "
                f"{LIVENESS_TIMEOUT_S:g} s after {silent:.0f} s of silence)"
            )
            abandon = getattr(proc, "abandon", proc.kill)
            abandon()
            return

    request = {"protocol": AGENT_PROTOCOL, "job": job, "run": run_settings}

    def consume(lines: Any) -> None:
        nonlocal final, agent_error
        for line in lines:
            last_output[0] = time.monotonic()
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                host_errors.append(f"not JSON: {line[:200]!r}")
                continue
            if not isinstance(event, dict):
                host_errors.append(f"not an event object: {line[:200]!r}")
                continue
            kind = event.get("event")
            if kind == "measurement":
                final = event.get("data")
            elif kind == "agent_error":
                agent_error = str(event.get("message", "agent error"))
            else:
                events.append(event)
                if on_event is not None:
                    on_event(event)

    lines = proc.lines()
    timer.start()
    watch = threading.Thread(target=watchdog, daemon=True) if callable(ping) else None
    if watch is not None:
        watch.start()
    try:
        try:
            proc.write(json.dumps(request, separators=(",", ":")) + "\n")
            proc.close_stdin()
            consume(lines)
        except KeyboardInterrupt:
            interrupted = True
            send = getattr(proc, "send_signal", None)
            stopped = False
            if callable(send):
                try:
                    stopped = bool(send("INT"))
                except (TargetError, OSError):
                    stopped = False
            if stopped:
                grace = threading.Timer(INTERRUPT_GRACE_S, proc.kill)
                grace.daemon = True
                grace.start()
                try:
                    consume(lines)
                except (KeyboardInterrupt, TargetError):
                    proc.kill()
                finally:
                    grace.cancel()
            else:
                proc.kill()
    except TargetError as exc:
        disconnected = str(exc)
    finally:
        timer.cancel()
        stop_watch.set()
    if gone:
        disconnected = gone[0]

    if agent_error is not None:
        proc.kill()
        raise UsageError(f"on target {where}: {agent_error}")
    if final is not None and not timed_out.is_set():
        try:
            measurement = Measurement.from_dict(final)
        except (ValueError, TypeError) as exc:
            host_errors.append(f"bad measurement from the agent: {exc}")
        else:
            measurement.protocol_errors = [*measurement.protocol_errors, *host_errors]
            if interrupted:
                measurement.interrupted = True
            return measurement

    returncode: int | None = None
    if disconnected is None and not timed_out.is_set():
        try:
            returncode = proc.wait(10)
        except TargetError as exc:
            disconnected = str(exc)
    measurement = Measurement(
        events=events,
        returncode=returncode,
        stderr_tail=proc.stderr_tail()[-40:],
        timed_out=timed_out.is_set(),
        interrupted=interrupted,
        started_at=started,
        finished_at=utc_now(),
    )
    errors = list(host_errors)
    if disconnected is not None:
        errors.insert(0, f"target disconnected: {disconnected}")
    elif timed_out.is_set():
        errors.insert(0, f"the agent on {where} did not finish within {limit:g} s; stopped it")
    elif not interrupted:
        if returncode is not None and returncode < 0:
            try:
                sig = _signal.Signals(-returncode).name
            except ValueError:
                sig = f"signal {-returncode}"
            last = next((ln for ln in reversed(measurement.stderr_tail) if ln.strip()), "")
            why = f"agent killed by {sig}"
            if last:
                why += f"; last stderr: {last.strip()[:300]}"
        else:
            why = describe_exit(returncode, measurement.stderr_tail).replace("worker", "agent", 1)
        errors.insert(0, f"the measuring agent on {where} ended without its measurement: {why}")
    measurement.protocol_errors = errors
    return measurement


def _remote_job(
    target: Target, job: dict[str, Any], on_event: EventCallback | None
) -> dict[str, Any]:
    """The job with its model pushed and the path rewritten to the device's copy."""
    job = dict(job)
    model = dict(job.get("model") or {})
    path = model.get("path")
    if path and os.path.exists(path):
        model["path"] = push_model(target, path, on_event)["remote"]
    job["model"] = model
    return job


def measure_on_target(
    target: str,
    prepared: Any,
    job: dict[str, Any],
    run_settings: dict[str, Any],
    on_event: EventCallback | None = None,
    *,
    targets_file: str | os.PathLike[str] | None = None,
) -> Measurement:
    """Measure one job on a remote target (see the module docstring).

    Args:
        target: the spec's target: ``ssh://...`` or a name in the targets file (or
            ``local``).
        prepared: the :class:`~meltbench.api.PreparedRun` (for messages).
        job: the worker job; ``job["model"]["path"]`` is the host's model path.
        run_settings: ``timeout_s``, ``memory_hz``, ``sensors``, ``cooldown``, ...
        on_event: receives each worker event (and host-side ``{"event": "target", ...}``
            progress events: connect, push, start), as they happen.
        targets_file: for names (default ``$MELTBENCH_TARGETS`` or
            ``~/.config/meltbench/targets.yaml``).

    Returns:
        the measurement (a failed one, with the cause in ``protocol_errors``, when the
        target dropped mid-run).

    Raises:
        UsageError: unknown target, unreachable host, refused host key, failed
            authentication, target not set up, or the agent refused the request.
    """
    from meltbench.targets.config import open_target, parse_target
    from meltbench.targets.setup import check_setup

    spec = parse_target(target, targets_file)
    if spec.kind == "local":
        from meltbench.harness.measurement import measure

        return measure(job, run_settings, on_event)
    if spec.kind == "adb":
        raise UsageError(
            f"target {spec.name!r} is an Android device; pass it as --target {spec.url}"
        )
    emit = on_event or (lambda _e: None)
    try:
        tgt = open_target(spec)
    except TargetError as exc:
        raise UsageError(str(exc)) from None
    started = utc_now()
    with tgt:
        emit({"event": "target", "phase": "connected", "target": tgt.describe()})
        try:
            python = check_setup(tgt, spec.name)
            remote_job = _remote_job(tgt, job, on_event)
            emit({"event": "target", "phase": "start", "python": python})
            return run_agent(tgt, python, remote_job, run_settings, on_event, name=spec.name)
        except TargetError as exc:
            # dropped before the agent ran: nothing measured, a failed run with the cause
            return Measurement(
                started_at=started,
                finished_at=utc_now(),
                protocol_errors=[f"target disconnected: {exc}"],
            )
