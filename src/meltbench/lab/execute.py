"""The lab's driver: submit every pair not yet stored as a Ray task on its device's
resource, store each result the moment it arrives, and keep going when a node or a
device is lost.

- One task per pair, ``num_cpus=0`` and ``resources={"device:<name>": 1}``: Ray runs one
  pair per device at a time and all devices in parallel; ``max_retries=0`` (a run is not
  silently repeated).
- Each result is written in one transaction with the lab's sweep id and the pair's key (a
  unique index forbids a second copy). Resume (``--resume``) skips stored pairs; pairs
  that were running when the driver died were not stored and run again.
- A node that dies mid-run: that run is stored as failed with the cause. A device that
  cannot be reached: its run is stored as failed and its other pairs are cancelled. A
  device whose resource has left the cluster for ``grace_s``: its queued pairs are
  cancelled. Cancelled pairs are reported as not run (resume runs them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meltbench.lab.cluster import Board, device_resources, import_ray
from meltbench.lab.config import Lab
from meltbench.lab.plan import Pair
from meltbench.results.schema import RunResult
from meltbench.results.store import ResultStore
from meltbench.sweep.experiment import Experiment
from meltbench.timestamps import utc_now

__all__ = ["LabOutcome", "PairState", "run_lab"]

_POLL_S = 0.25


@dataclass
class PairState:
    """Where a pair stands: ``queued``, ``running``, ``ok``, ``failed``, ``stored`` (by an
    earlier invocation), ``unrun`` (cancelled: ``reason`` says why) or ``n/a``."""

    pair: Pair
    state: str = "queued"
    host: str | None = None
    started: float | None = None
    finished: float | None = None
    reason: str | None = None


@dataclass
class LabOutcome:
    """What a lab invocation did: the sweep id, every pair's state, the stored results of
    the whole lab (earlier invocations included) and the wall time of this one, s."""

    sweep_id: str
    states: list[PairState] = field(default_factory=list)
    results: list[RunResult] = field(default_factory=list)
    wall_s: float = 0.0


def _source(lab: Lab, exp: Experiment) -> tuple[str, str]:
    import hashlib

    source = f"lab {lab.source} | {exp.source}"
    sha = hashlib.sha256(f"{lab.text_sha256}|{exp.text_sha256}".encode()).hexdigest()
    return source, sha


def _failed(pair: Pair, failure: str, started_at: str) -> RunResult:
    """A failed record of a pair that produced no result of its own."""
    from meltbench.api import build_spec, prepare
    from meltbench.results.assemble import model_facts, new_result

    prepared = prepare(build_spec(**pair.options))
    return new_result(prepared, failure=failure, started_at=started_at,
                      model=model_facts(prepared))  # fmt: skip


def run_lab(
    lab: Lab,
    exp: Experiment,
    pairs: list[Pair],
    db: Path,
    *,
    resume: str | bool = False,
    grace_s: float = 30.0,
    on_change: Callable[[list[PairState]], None] | None = None,
) -> LabOutcome:
    """Run the pairs that are not stored yet on the connected Ray cluster.

    Args:
        pairs: from :func:`meltbench.lab.plan.plan_pairs` (``n/a`` ones are not run).
        db: the one results database; every result is committed as it arrives.
        resume: False = a new lab run; True = the latest of this lab and experiment; a
            string = that sweep id.
        grace_s: how long a device's resource may be absent before its queued pairs are
            cancelled, s.
        on_change: called with all states whenever one changes (the live view).

    Raises:
        UsageError: nothing to resume, a changed file, or different pairs.
    """
    from meltbench.sweep.execute import open_sweep

    ray = import_ray()
    source, sha = _source(lab, exp)
    t0 = time.monotonic()
    with ResultStore(db) as store:
        sweep_id, _ = open_sweep(
            store, name=exp.name, source=source, source_sha256=sha,
            planned=[{"key": p.key, "params": {**p.point.params, "lab_device": p.device.name}}
                     for p in pairs if not p.skip_reason],
            settings={**exp.settings, "lab": lab.name, "devices": list(lab.devices)},
            resume=resume, what="lab run",
        )  # fmt: skip
        done = store.sweep_points_done(sweep_id)
        states = [PairState(p) for p in pairs]
        for s in states:
            if s.pair.skip_reason:
                s.state, s.reason = "n/a", s.pair.skip_reason
            elif s.pair.key in done:
                s.state = "stored"
        board = _board(ray)
        task = _remote_task(ray)
        refs: dict[Any, PairState] = {}
        first: set[str] = set()
        for s in states:
            if s.state != "queued":
                continue
            d = s.pair.device
            wait = exp.settings.get("cooldown_s") if d.name in first else 0
            payload = {"key": s.pair.key, "device": d.name, "options": s.pair.options,
                       "quant": s.pair.quant, "target_entry": d.target_entry, "env": d.env,
                       "cooldown_s": wait}  # fmt: skip
            first.add(d.name)
            refs[task.options(resources={d.resource: 1}).remote(payload, board)] = s
        by_key = {s.pair.key: s for s in states}
        absent_since: dict[str, float] = {}
        last_check = 0.0
        if on_change:
            on_change(states)
        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=_POLL_S)
                changed = False
                for key, host, t in _drain(ray, board):
                    s = by_key[key]
                    if s.state == "queued":
                        s.state, s.host, s.started, changed = "running", host, t, True
                for ref in ready:
                    s = refs.pop(ref)
                    _settle(ray, ref, s, store, sweep_id, refs)
                    changed = True
                now = time.monotonic()
                if now - last_check > 1.0:
                    last_check = now
                    changed |= _drop_lost_devices(ray, refs, absent_since, grace_s, now)
                if changed and on_change:
                    on_change(states)
        except BaseException:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise
        outcome = LabOutcome(sweep_id=sweep_id, states=states,
                             results=store.sweep_results(sweep_id),
                             wall_s=time.monotonic() - t0)  # fmt: skip
    return outcome


def _board(ray: Any) -> Any:
    """The progress board, pinned to the driver's own node (it must outlive any worker)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(num_cpus=0)(Board).options(scheduling_strategy=here).remote()


def _drain(ray: Any, board: Any) -> list[tuple[str, str, float]]:
    """The board's start events; none if it is gone (progress only, never results)."""
    try:
        return ray.get(board.drain.remote(), timeout=10)
    except ray.exceptions.RayError:
        return []


def _remote_task(ray: Any) -> Any:
    from meltbench.lab.task import run_pair

    return ray.remote(num_cpus=0, max_retries=0)(run_pair)


def _settle(
    ray: Any, ref: Any, s: PairState, store: ResultStore, sweep_id: str, refs: dict[Any, Any]
) -> None:
    """Store what a finished task returned (or why it failed) and update its state."""
    started_at = utc_now()
    s.finished = time.time()
    try:
        reply = ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        s.state = "unrun"
        s.reason = s.reason or "cancelled"
        return
    except ray.exceptions.RayError as exc:  # node died, worker crashed, a bug in the task
        line = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        reply = {"failure": f"{type(exc).__name__} on device {s.pair.device.name}: {line}"}
    if "result" in reply:
        result = RunResult.model_validate(reply["result"])
        result.environment["lab"] = {"device": s.pair.device.name, "host": reply.get("host"),
                                     "device_class": s.pair.device.device_class}  # fmt: skip
    else:
        result = _failed(s.pair, reply["failure"], started_at)
        if reply.get("device_down"):
            _cancel_device(ray, refs, s.pair.device.name, f"device unreachable: {reply['failure']}")
    store.save(result, sweep_id=sweep_id, point_key=s.pair.key)
    s.state = "ok" if result.ok else "failed"
    s.host = s.host or reply.get("host")
    s.reason = result.failure


def _cancel_device(ray: Any, refs: dict[Any, PairState], device: str, reason: str) -> int:
    n = 0
    for ref, s in refs.items():
        if s.pair.device.name == device and s.state == "queued":
            s.reason = reason
            ray.cancel(ref)
            n += 1
    return n


def _drop_lost_devices(
    ray: Any, refs: dict[Any, PairState], absent_since: dict[str, float], grace_s: float,
    now: float,
) -> bool:  # fmt: skip
    """Cancel the queued pairs of devices whose resource has been gone for ``grace_s``."""
    have = device_resources()
    waiting = {s.pair.device.name: s.pair.device.resource for s in refs.values()}
    changed = False
    for name, resource in waiting.items():
        if have.get(resource, 0) >= 1:
            absent_since.pop(name, None)
            continue
        since = absent_since.setdefault(name, now)
        if now - since >= grace_s:
            reason = (f"device {name} left the cluster (its node is gone) for {grace_s:g} s; "
                      "run again with --resume when it is back")  # fmt: skip
            changed |= _cancel_device(ray, refs, name, reason) > 0
    return changed
