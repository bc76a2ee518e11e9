"""The measuring agent: :func:`meltbench.harness.measurement.measure` behind JSON lines.

Run on a remote device as ``python -m meltbench.harness.agent`` (over SSH). It reads one
line from stdin, ``{"protocol": 1, "job": {...}, "run": {...}}``, and writes JSON lines to
stdout:

- every worker event as it arrives (``{"event": "rep", ...}``: progress for the host);
- at the end ``{"event": "measurement", "data": {...}}`` (a ``Measurement`` dict);
- or ``{"event": "agent_error", "message": "..."}`` with exit code 2 for bad input (an
  unknown sensor, a missing sysfs root, a protocol mismatch).

Sensors are probed and sampled on the device, and every timestamp is the device's
``perf_counter_ns``, the clock of the worker's token timestamps.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

__all__ = ["AGENT_PROTOCOL", "main"]

AGENT_PROTOCOL = 1


def _write(stream: IO[str], event: dict[str, Any]) -> None:
    stream.write(json.dumps(event, separators=(",", ":")) + "\n")
    stream.flush()


def _forward(stream: IO[str], event: dict[str, Any]) -> None:
    """Send a worker event to the host; if the host is gone (broken pipe after an SSH
    disconnect), stop the worker now instead of running it to the end unseen: the
    KeyboardInterrupt makes :func:`~meltbench.harness.runner.run_worker` kill it."""
    try:
        _write(stream, event)
    except OSError:
        raise KeyboardInterrupt from None


def main() -> int:
    """Agent entry point; returns the exit code (0 measured, 2 bad input, 130 Ctrl-C)."""
    from meltbench.errors import UsageError
    from meltbench.harness.measurement import measure

    out = sys.stdout
    try:
        request = json.loads(sys.stdin.readline())
        if request.get("protocol") != AGENT_PROTOCOL:
            raise UsageError(
                f"agent protocol {request.get('protocol')!r}, this meltbench speaks "
                f"{AGENT_PROTOCOL}; run `meltbench target setup` to update the device"
            )
        measurement = measure(request["job"], request["run"], lambda e: _forward(out, e))
    except UsageError as exc:
        _write(out, {"event": "agent_error", "message": str(exc)})
        return 2
    except (ValueError, KeyError) as exc:
        _write(out, {"event": "agent_error", "message": f"bad agent request: {exc}"})
        return 2
    try:
        _write(out, {"event": "measurement", "data": measurement.to_dict()})
    except OSError:  # the host is gone: nobody to tell
        return 1
    return 130 if measurement.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
