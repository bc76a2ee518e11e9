"""What runs on a lab node: one (point, device) pair, through :mod:`meltbench.api`.

Ray calls :func:`run_pair` in a worker process of the node that holds the device's
resource. The device's targets-file entry is written to a private targets file (so the
run's ``target`` is the device's name), its ``env`` is set around the run, and Ray's own
``OMP_NUM_THREADS=1`` (set for tasks that reserve no CPU) is removed so that engines use
the threads the point asks for. The return value is a plain dict; nothing raises except
for a bug.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["run_pair"]


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    if "OMP_NUM_THREADS" not in env and os.environ.get("RAY_RAYLET_PID"):
        os.environ.pop("OMP_NUM_THREADS", None)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_pair(payload: dict[str, Any], board: Any = None) -> dict[str, Any]:
    """Measure one pair on this node.

    Args:
        payload: ``key``, ``device``, ``options`` (flat run options, ``target`` = the
            device name), ``quant``, ``target_entry`` (the device's targets-file entry),
            ``env``, ``cooldown_s`` (a fixed wait before the run, s).
        board: the driver's progress board actor (told when the run starts), or None.

    Returns:
        ``{"result": RunResult JSON, "host": ..., "pid": ...}`` for a run that was
        measured (``ok`` or ``failed``), else ``{"failure": "one line",
        "device_down": bool, "host": ...}`` when it could not start (the device is
        unreachable: ``device_down``; or bad input on this host).
    """
    from meltbench.api import build_spec, execute, prepare
    from meltbench.errors import UsageError
    from meltbench.lab.plan import write_targets_file
    from meltbench.sweep.execute import requantized_options
    from meltbench.targets.base import TargetError
    from meltbench.targets.config import configure

    host = socket.gethostname()
    if board is not None:
        board.started.remote(payload["key"], host, time.time())
    if payload.get("cooldown_s"):
        time.sleep(float(payload["cooldown_s"]))
    configure(targets_file=write_targets_file({payload["device"]: payload["target_entry"]}))
    with _environment(payload.get("env") or {}):
        try:
            options = payload["options"]
            if payload.get("quant"):
                options, _ = requantized_options(options, str(payload["quant"]))
            prepared = prepare(build_spec(**options))
            result, _ = execute(prepared)
        except TargetError as exc:
            return {"failure": f"device {payload['device']}: {exc}", "device_down": True,
                    "host": host}  # fmt: skip
        except UsageError as exc:
            return {"failure": f"on {host}: {exc}", "device_down": False, "host": host}
    return {"result": result.to_json_dict(), "host": host, "pid": os.getpid()}
