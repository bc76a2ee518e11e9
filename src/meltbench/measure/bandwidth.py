"""Achievable memory bandwidth of the machine that runs the model (STREAM-style).

The decode of a small language model is bound by memory traffic: every weight is read
once per token. The roofline bound of decode speed is therefore ``bandwidth /
bytes_per_token`` (:mod:`meltbench.measure.roofline`), and this module measures the
bandwidth, the way McCalpin's STREAM does (https://www.cs.virginia.edu/stream/ref.html):
kernels over arrays much larger than the last-level cache, the best of several trials,
bytes counted as the arrays the kernel reads and writes (no write-allocate traffic).

Kernels, on float64 arrays of ``n`` elements, split evenly over ``threads`` Python
threads (numpy releases the GIL inside its loops, so the threads run in parallel):

- ``read``: ``np.maximum.reduce(a)`` -- reads ``8n`` bytes. The one that matters for decode
  (weights are only read).
- ``copy``: ``np.copyto(b, a)`` -- reads and writes: ``16n`` bytes.
- ``triad``: ``a = b + s * c`` as numpy does it, in two passes (``np.multiply(c, s,
  out=a)`` then ``np.add(a, b, out=a)``): ``40n`` bytes actually moved.

Run on a target with ``python -m meltbench.measure.bandwidth`` (prints one JSON object),
so SSH targets measure their own memory through the same transport as a run.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "KERNELS",
    "BandwidthResult",
    "cache_key",
    "cached_bandwidth",
    "default_size_bytes",
    "llc_bytes",
    "measure_bandwidth",
    "store_bandwidth",
]

#: kernel name -> bytes moved per float64 element (see the module docstring)
KERNELS: dict[str, int] = {"read": 8, "copy": 16, "triad": 40}


def llc_bytes() -> int | None:
    """Size of the largest CPU cache, bytes, from sysfs (Linux), or None."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    best = None
    try:
        entries = os.listdir(base)
    except OSError:
        return None
    for entry in entries:
        try:
            with open(os.path.join(base, entry, "size")) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:].upper(), 1)
        digits = text[:-1] if text[-1:].isalpha() else text
        if digits.isdigit():
            size = int(digits) * mult
            best = size if best is None else max(best, size)
    return best


def default_size_bytes() -> int:
    """Array size: 8 x the last-level cache, at least 256 MiB (STREAM asks for >= 4x)."""
    llc = llc_bytes() or 0
    return max(256 * 1024**2, 8 * llc)


@dataclass
class BandwidthResult:
    """Measured bandwidth, bytes/s, per kernel and thread count.

    Attributes:
        results: ``{kernel: {threads: best bytes/s}}`` (thread counts as strings in JSON).
        size_bytes: bytes of each array.
        trials: timed trials per point (the best is kept).
        llc_bytes: last-level cache size, or None.
        method: a one-line description of how it was measured.
        host: the machine's hostname.
        measured_at: ISO 8601 UTC.
    """

    results: dict[str, dict[int, float]] = field(default_factory=dict)
    size_bytes: int = 0
    trials: int = 0
    llc_bytes: int | None = None
    method: str = "numpy STREAM-style kernels, best of trials"
    host: str = ""
    measured_at: str = ""

    def threads_for(self, threads: int, kernel: str = "read") -> int | None:
        """The measured thread count that stands for ``threads``: the largest not above
        it, else the smallest measured; None when ``kernel`` was not measured."""
        by_threads = self.results.get(kernel) or {}
        if not by_threads:
            return None
        fitting = [t for t in by_threads if t <= threads]
        return max(fitting) if fitting else min(by_threads)

    def best(self, kernel: str = "read", threads: int | None = None) -> float | None:
        """Bytes/s of ``kernel``: at ``threads`` (see :meth:`threads_for`), or the best
        over all thread counts when ``threads`` is None."""
        by_threads = self.results.get(kernel) or {}
        if not by_threads:
            return None
        if threads is None:
            return max(by_threads.values())
        return by_threads[self.threads_for(threads, kernel)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (thread counts become strings)."""
        data = asdict(self)
        data["results"] = {k: {str(t): v for t, v in r.items()} for k, r in self.results.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BandwidthResult:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: ``data`` has no ``results`` mapping.
        """
        if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
            raise ValueError("not a bandwidth result (no 'results')")
        known = set(cls.__dataclass_fields__)
        out = cls(**{k: v for k, v in data.items() if k in known and k != "results"})
        out.results = {
            k: {int(t): float(v) for t, v in r.items()} for k, r in data["results"].items()
        }
        return out


def _run_parallel(work: Sequence[Callable[[], Any]]) -> float:
    """Run the callables in parallel threads from one barrier; wall time, seconds."""
    if len(work) == 1:
        t0 = time.perf_counter()
        work[0]()
        return time.perf_counter() - t0
    barrier = threading.Barrier(len(work) + 1)
    done = threading.Barrier(len(work) + 1)

    def body(fn: Callable[[], Any]) -> None:
        barrier.wait()
        fn()
        done.wait()

    threads = [threading.Thread(target=body, args=(fn,), daemon=True) for fn in work]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    done.wait()
    elapsed = time.perf_counter() - t0
    for t in threads:
        t.join()
    return elapsed


def measure_bandwidth(
    threads: Sequence[int] | None = None,
    *,
    size_bytes: int | None = None,
    trials: int = 5,
    kernels: Sequence[str] = ("read", "copy", "triad"),
) -> BandwidthResult:
    """Measure memory bandwidth at each thread count (module docstring).

    Args:
        threads: thread counts; default ``1..os.cpu_count()``.
        size_bytes: bytes per array; default :func:`default_size_bytes`.
        trials: timed trials per kernel and thread count (after one untimed pass); the
            best (highest bandwidth) is kept, as STREAM does.
        kernels: names from :data:`KERNELS`.

    Raises:
        ValueError: an unknown kernel, or a thread count or trial count below 1.
    """
    import datetime as dt
    import platform

    import numpy as np

    unknown = [k for k in kernels if k not in KERNELS]
    if unknown:
        raise ValueError(f"unknown bandwidth kernel {unknown[0]!r}; choose from {list(KERNELS)}")
    counts = list(threads) if threads else list(range(1, (os.cpu_count() or 1) + 1))
    if min(counts) < 1 or trials < 1:
        raise ValueError("thread counts and trials must be >= 1")
    size = size_bytes or default_size_bytes()
    n = max(size // 8, max(counts))
    a = np.ones(n)
    needs_more = any(k != "read" for k in kernels)  # read alone allocates one array
    b = np.full(n, 2.0) if needs_more else a
    c = np.full(n, 0.5) if needs_more else a
    result = BandwidthResult(
        size_bytes=n * 8,
        trials=trials,
        llc_bytes=llc_bytes(),
        host=platform.node(),
        measured_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )

    def kernel_work(name: str, sl: slice) -> Callable[[], Any]:
        va, vb, vc = a[sl], b[sl], c[sl]
        if name == "read":
            return lambda: np.maximum.reduce(va)
        if name == "copy":
            return lambda: np.copyto(vb, va)

        def triad() -> None:
            np.multiply(vc, 3.0, out=va)
            np.add(va, vb, out=va)

        return triad

    for name in kernels:
        per_threads: dict[int, float] = {}
        for t in counts:
            bounds = [n * i // t for i in range(t + 1)]
            work = [kernel_work(name, slice(bounds[i], bounds[i + 1])) for i in range(t)]
            _run_parallel(work)  # untimed: page faults, frequency ramp-up
            best = min(_run_parallel(work) for _ in range(trials))
            per_threads[t] = KERNELS[name] * n / best
        result.results[name] = per_threads
    return result


def _cache_file() -> str:
    from meltbench.models.cache import cache_dir

    return str(cache_dir() / "bandwidth.json")


def cache_key(target: str) -> str:
    """Cache key of a target's bandwidth: ``local@<hostname>`` or the target itself."""
    import platform

    return f"local@{platform.node()}" if target == "local" else target


def cached_bandwidth(target: str) -> BandwidthResult | None:
    """The last bandwidth measured on ``target`` (``meltbench bandwidth`` or a run), from
    ``<cache dir>/bandwidth.json``, or None. A damaged cache file reads as empty."""
    try:
        with open(_cache_file()) as fh:
            data = json.load(fh)
        return BandwidthResult.from_dict(data[cache_key(target)])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store_bandwidth(target: str, result: BandwidthResult, *, merge: bool = True) -> None:
    """Save ``result`` as ``target``'s bandwidth (atomically replacing the cache file).

    With ``merge``, thread counts measured before and not measured now are kept.
    Errors writing the cache are ignored (the figure is stored with each run anyway).
    """
    path = _cache_file()
    try:
        with open(path) as fh:
            data = json.load(fh)
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    key = cache_key(target)
    entry = result.to_dict()
    if merge and key in data:
        try:
            old = BandwidthResult.from_dict(data[key])
        except ValueError:
            old = None
        if old is not None:
            merged = {k: dict(v) for k, v in old.results.items()}
            for kernel, by_threads in result.results.items():
                merged.setdefault(kernel, {}).update(by_threads)
            entry["results"] = {k: {str(t): v for t, v in r.items()} for k, r in merged.items()}
    data[key] = entry
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=1)
        os.replace(tmp, path)
    except OSError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m meltbench.measure.bandwidth [--threads 1,2] [--size-mib N] [--trials N]``:
    print one JSON object (:meth:`BandwidthResult.to_dict`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m meltbench.measure.bandwidth")
    parser.add_argument("--threads", default=None, help="comma-separated thread counts")
    parser.add_argument("--size-mib", type=int, default=None)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args(argv)
    threads = [int(x) for x in args.threads.split(",")] if args.threads else None
    size = args.size_mib * 1024**2 if args.size_mib else None
    result = measure_bandwidth(threads, size_bytes=size, trials=args.trials)
    json.dump(result.to_dict(), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
