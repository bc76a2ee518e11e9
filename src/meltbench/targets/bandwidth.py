"""Measure a target's memory bandwidth through its transport (``meltbench bandwidth``).

Local targets run the STREAM-style kernels of :mod:`meltbench.measure.bandwidth` in this
process; SSH targets run ``<venv>/bin/python -m meltbench.measure.bandwidth`` on the
device (set up with ``meltbench target setup``) and send back its JSON, so a Jetson or a
Raspberry Pi is measured on its own memory. Android (adb) targets have no Python and no
native bandwidth binary yet: they are refused with that reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from meltbench.errors import UsageError
from meltbench.measure.bandwidth import BandwidthResult, measure_bandwidth, store_bandwidth

__all__ = ["measure_target_bandwidth"]


def measure_target_bandwidth(
    target: str,
    threads: Sequence[int] | None = None,
    *,
    size_bytes: int | None = None,
    trials: int = 5,
    store: bool = True,
) -> BandwidthResult:
    """Measure ``target``'s bandwidth (read, copy, triad at each thread count).

    Args:
        target: ``local``, ``ssh://...`` or a name in the targets file.
        threads: thread counts; default ``1..cores`` of the target.
        size_bytes: bytes per array (default: 8 x the target's last-level cache, at least
            256 MiB).
        trials: timed trials per point (best kept).
        store: cache the result as the target's roof for later runs (thread counts
            measured now replace the cached ones; others are kept).

    Raises:
        UsageError: an adb target, an unknown or unreachable target, a target that is not
            set up, or bad thread/trial counts.
    """
    from meltbench.targets.base import TargetError
    from meltbench.targets.config import open_target, parse_target

    if threads is not None and (not threads or min(threads) < 1):
        raise UsageError("--threads: give thread counts >= 1, e.g. 1,2,4")
    if trials < 1:
        raise UsageError(f"--trials must be >= 1 (got {trials})")
    spec = parse_target(target) if target != "local" else None
    if spec is None or spec.kind == "local":
        result = measure_bandwidth(threads, size_bytes=size_bytes, trials=trials)
    elif spec.kind == "adb":
        raise UsageError(
            "bandwidth on adb targets needs a native STREAM binary, which meltbench does "
            "not push yet; use an ssh:// target (Termux) or give the figure with "
            "$MELTBENCH_BANDWIDTH_GBS"
        )
    else:
        from meltbench.targets.setup import check_setup

        argv = ["-m", "meltbench.measure.bandwidth", "--trials", str(trials)]
        if threads:
            argv += ["--threads", ",".join(str(t) for t in threads)]
        if size_bytes:
            argv += ["--size-mib", str(max(1, size_bytes // 1024**2))]
        try:
            with open_target(spec) as tgt:
                python = check_setup(tgt, spec.name)
                done = tgt.run([python, *argv], timeout=600.0)
        except TargetError as exc:
            raise UsageError(str(exc)) from None
        if not done.ok:
            tail = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
            raise UsageError(f"bandwidth on {spec.name} failed: {tail[0][:300]}")
        try:
            result = BandwidthResult.from_dict(json.loads(done.stdout.strip().splitlines()[-1]))
        except (ValueError, IndexError) as exc:
            raise UsageError(f"bandwidth on {spec.name} sent no result ({exc})") from None
    if store:
        store_bandwidth(target, result)
    return result
