"""Max context before out-of-memory: bisect ``n_prompt`` to the largest one that runs.

The SSM long-context studies report "the largest context that runs in 24 GB". Here that
is a search over real runs: each probe is one :func:`meltbench.api.run` at a given
``n_prompt`` under a memory limit (``RLIMIT_AS``, ``memory_limit_bytes``) and/or a time
limit (``timeout_s``), stored like any other run, so the failures are data too.

Two pieces, usable alone:

- :func:`find_max_context` is pure control logic: given ``probe(n) -> RunResult | bool``
  it finds the largest ``n`` that succeeds between ``lo`` and ``hi``. It is tested with
  fake probes (tests/unit/test_search.py).
- :func:`context_probe` builds the probe that runs the engine (one fresh worker per
  probe, the context sized to the request).

Example::

    probe = context_probe({"n_gen": 2}, memory_limit_bytes=24 * 2**30, timeout_s=600,
                          db=Path("meltbench.db"))
    search = find_max_context(probe, 512, 131072, multiple_of=256, max_probes=8)
    print(search.summary)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from meltbench.results.schema import RunResult

__all__ = [
    "ContextSearch",
    "Probe",
    "context_probe",
    "find_max_context",
    "is_out_of_memory",
]

#: Substrings of a failed run's cause that mean "ran out of memory". Sources: numpy's
#: ``MemoryError: Unable to allocate ...``; llama-cpp-python's ``ValueError: Failed to
#: create llama_context`` / ``Failed to load model`` (llama.cpp returns NULL when a
#: buffer allocation fails); ggml's ``failed to allocate`` messages; C++
#: ``std::bad_alloc``; ``ENOMEM`` text; libgomp's ``Thread creation failed`` (under an
#: ``RLIMIT_AS`` cap, pthread_create cannot map a thread's 8 MiB stack: measured here with
#: Gemma 3 270M a few MiB below the cap); and the worker killed by ``SIGKILL``, which is
#: what the Linux OOM killer sends (``meltbench.harness.runner.describe_exit``).
OUT_OF_MEMORY_MARKERS: tuple[str, ...] = (
    "MemoryError",
    "Failed to create llama_context",
    "Failed to load model",
    "failed to allocate",
    "bad_alloc",
    "out of memory",
    "Cannot allocate memory",
    "Thread creation failed",
    "SIGKILL",
)

#: Keys of the flat run options that a context probe sets itself.
_PROBE_KEYS = ("n_prompt", "ctx", "memory_limit_bytes", "timeout_s")

#: Longest failure cause quoted in a summary line, characters.
_CAUSE_CHARS = 80


def is_out_of_memory(cause: str | None) -> bool:
    """Whether a failed run's one-line cause says it ran out of memory.

    Args:
        cause: ``RunResult.failure`` (None for a run that did not fail).

    Returns:
        True if the cause contains one of :data:`OUT_OF_MEMORY_MARKERS` (case-insensitive).
    """
    if not cause:
        return False
    low = cause.lower()
    return any(marker.lower() in low for marker in OUT_OF_MEMORY_MARKERS)


class Probe(NamedTuple):
    """One probe of a search: ``(n, ok, cause)``.

    Attributes:
        n: the ``n_prompt`` tried, tokens.
        ok: whether the run succeeded.
        cause: the failed run's one-line cause (``RunResult.failure``); None when it
            succeeded or when the probe returned a plain bool.
    """

    n: int
    ok: bool
    cause: str | None


@dataclass(frozen=True)
class ContextSearch:
    """Outcome of :func:`find_max_context`.

    Attributes:
        largest_ok: largest ``n`` that succeeded, tokens; None if none did ("no context
            fits", or the probe budget ran out before ``lo`` was tried).
        smallest_failed: smallest ``n`` that failed, tokens; None if none did (then
            ``largest_ok == hi``: the boundary is at or above the upper bound tried).
        probes: every probe in the order run, as ``(n, ok, cause)``.
        converged: True when the search answered its question within ``[lo, hi]``:
            ``largest_ok`` and ``smallest_failed`` are adjacent multiples of
            ``multiple_of`` (no multiple lies strictly between them), or ``hi``
            succeeded, or ``lo`` failed. False when ``max_probes`` ran out first; the
            boundary then lies somewhere between ``largest_ok`` and ``smallest_failed``.
        multiple_of: the rounding step of the probes, tokens.
        run_ids: ``run_id`` of each probe's RunResult (None for plain-bool probes),
            parallel to ``probes``: where to find the probes in the results database.
    """

    largest_ok: int | None
    smallest_failed: int | None
    probes: list[Probe]
    converged: bool
    multiple_of: int = 1
    run_ids: list[str | None] = field(default_factory=list)

    @property
    def failure_cause(self) -> str | None:
        """Cause of the run at ``smallest_failed`` (None if it did not fail or gave none)."""
        for probe in self.probes:
            if probe.n == self.smallest_failed and not probe.ok:
                return probe.cause
        return None

    @property
    def summary(self) -> str:
        """One line, e.g. ``largest n_prompt that runs: 6144 (8192 failed: MemoryError:
        ...), 6 probes``."""
        count = f"{len(self.probes)} probe{'s' if len(self.probes) != 1 else ''}"
        failed = _failed_text(self.smallest_failed, self.failure_cause)
        if self.largest_ok is None:
            if self.smallest_failed is None:
                return f"nothing tried, {count}"
            if self.converged:
                return f"no context fits: {failed}, {count}"
            return f"no n_prompt tried runs ({failed}), not converged after {count}"
        if self.smallest_failed is None:
            return (
                f"largest n_prompt that runs: >= {self.largest_ok} "
                f"(the upper bound tried; nothing failed), {count}"
            )
        if self.converged:
            return f"largest n_prompt that runs: {self.largest_ok} ({failed}), {count}"
        return (
            f"largest n_prompt that runs: >= {self.largest_ok} ({failed}), "
            f"not converged after {count}"
        )


def _failed_text(n: int | None, cause: str | None) -> str:
    if cause is None:
        return f"{n} failed"
    if len(cause) > _CAUSE_CHARS:
        cause = cause[: _CAUSE_CHARS - 3].rstrip() + "..."
    return f"{n} failed: {cause}"


def _outcome(result: RunResult | bool) -> tuple[bool, str | None, str | None]:
    """``(ok, cause, run_id)`` of a probe's return value."""
    if isinstance(result, bool):
        return result, None, None
    ok = bool(result.ok)
    return ok, (None if ok else result.failure), getattr(result, "run_id", None)


def _next_probe(ok: int, bad: int, step: int) -> int | None:
    """The next ``n`` to try strictly between ``ok`` and ``bad``, or None if none is left.

    The midpoint is geometric (``sqrt(ok * bad)``) while ``bad / ok > 2`` and arithmetic
    after, rounded to the nearest multiple of ``step`` that lies strictly between.
    Geometric first because contexts span orders of magnitude (512 to 128k): a boundary
    is as likely near 1k as near 64k, so halving the ratio gains the most per probe, and
    it keeps early probes away from huge contexts, which are the slowest to run. Once the
    bounds are within a factor of 2, halving the difference is what narrows the absolute
    gap fastest.
    """
    lowest = (ok // step + 1) * step
    highest = ((bad - 1) // step) * step
    if lowest > highest:
        return None
    mid = math.sqrt(ok * bad) if bad > 2 * ok else (ok + bad) / 2
    nearest = math.floor(mid / step + 0.5) * step
    return min(max(nearest, lowest), highest)


def find_max_context(
    probe: Callable[[int], RunResult | bool],
    lo: int,
    hi: int,
    *,
    multiple_of: int = 1,
    max_probes: int = 16,
) -> ContextSearch:
    """Find the largest ``n`` (``n_prompt``, tokens) in ``[lo, hi]`` whose probe succeeds.

    Order: ``hi`` first (if it succeeds, the boundary is at or above ``hi``: reported
    as such, one probe); then ``lo`` (expected to succeed; if it fails, "no context
    fits"); then bisection between the largest success and the smallest failure,
    geometric while their ratio is above 2 and arithmetic after (see
    :func:`_next_probe`), each probe rounded to a multiple of ``multiple_of``, until no
    multiple lies strictly between them or ``max_probes`` probes have run. ``lo`` and
    ``hi`` are tried as given, even if they are not multiples. Assumes success is
    monotone in ``n`` (a larger context needs at least as much memory and time).

    Args:
        probe: runs one probe at ``n``; a probe succeeds when it returns ``True`` or a
            :class:`~meltbench.results.schema.RunResult` whose ``ok`` is true. Its
            exceptions (e.g. ``UsageError`` for bad options) propagate unchanged.
        lo: smallest ``n`` to consider, expected to succeed (>= 1).
        hi: largest ``n`` to try (>= lo).
        multiple_of: probes between ``lo`` and ``hi`` are multiples of this (>= 1);
            e.g. 256 to report contexts in llama.cpp-friendly steps with fewer probes.
        max_probes: most probes to run (>= 1); a search cut short has
            ``converged=False``.

    Returns:
        a :class:`ContextSearch`.

    Raises:
        ValueError: ``lo < 1``, ``hi < lo``, ``multiple_of < 1`` or ``max_probes < 1``.
    """
    if lo < 1 or hi < lo:
        raise ValueError(f"need 1 <= lo <= hi, got lo={lo}, hi={hi}")
    if multiple_of < 1:
        raise ValueError(f"multiple_of must be >= 1, got {multiple_of}")
    if max_probes < 1:
        raise ValueError(f"max_probes must be >= 1, got {max_probes}")

    probes: list[Probe] = []
    run_ids: list[str | None] = []

    def attempt(n: int) -> bool:
        ok, cause, run_id = _outcome(probe(n))
        probes.append(Probe(n, ok, cause))
        run_ids.append(run_id)
        return ok

    def done(ok: int | None, bad: int | None, converged: bool) -> ContextSearch:
        return ContextSearch(ok, bad, probes, converged, multiple_of, run_ids)

    if attempt(hi):
        return done(hi, None, True)
    if lo == hi:
        return done(None, hi, True)
    if len(probes) >= max_probes:
        return done(None, hi, False)
    if not attempt(lo):
        return done(None, lo, True)
    good, bad = lo, hi
    while True:
        n = _next_probe(good, bad, multiple_of)
        if n is None:
            return done(good, bad, True)
        if len(probes) >= max_probes:
            return done(good, bad, False)
        if attempt(n):
            good = n
        else:
            bad = n


def context_probe(
    base: dict[str, Any],
    *,
    memory_limit_bytes: int | None,
    timeout_s: float | None,
    db: Path | None,
    on_result: Callable[[RunResult], None] | None = None,
) -> Callable[[int], RunResult]:
    """Build a probe for :func:`find_max_context` that runs the engine at ``n_prompt=n``.

    Each call is one real :func:`meltbench.api.run` in a fresh worker: ``n_prompt=n``,
    ``ctx = n_depth + n + n_gen`` (exactly what the request needs, so memory grows with
    ``n``), ``reps=1`` and ``warmup=0`` unless ``base`` sets them, and the limits given.
    A run that fails (out of memory, timeout, crash) comes back as a ``failed``
    RunResult, which the search counts as a failure; it is not an exception.

    Args:
        base: flat run options as for :func:`meltbench.api.build_spec` (``model``,
            ``engine``, ``threads``, ``n_gen``, ``n_depth``, ``batch``,
            ``engine_options``, ...). It must not set ``n_prompt``, ``ctx``,
            ``memory_limit_bytes`` or ``timeout_s``: the probe sets them.
        memory_limit_bytes: ``RLIMIT_AS`` of each probe's worker, bytes; None = no cap.
            Address space counts mapped model files and thread stacks, so it exceeds
            the resident memory.
        timeout_s: wall-clock limit of each probe's worker, seconds; None = no limit.
        db: SQLite database that stores every probe (ok or failed), so the search is
            data; None = store nothing.
        on_result: called with each probe's RunResult (progress display).

    Returns:
        ``probe(n) -> RunResult``.

    Raises:
        UsageError: at once, if ``base`` sets a key the probe sets or has an unknown or
            invalid option; from a probe, if the engine or model cannot be prepared.
        RunInterrupted: from a probe, on Ctrl-C (the interrupted run is stored as failed).
    """
    from meltbench.api import build_spec
    from meltbench.errors import UsageError

    clash = [key for key in _PROBE_KEYS if base.get(key) is not None]
    if clash:
        raise UsageError(
            f"the context search sets {', '.join(clash)} itself; remove it from the options"
        )
    options: dict[str, Any] = {"reps": 1, "warmup": 0, **base}
    options["memory_limit_bytes"] = memory_limit_bytes
    options["timeout_s"] = timeout_s
    workload = build_spec(**options, n_prompt=1).workload  # checks the options once, now

    def probe(n: int) -> RunResult:
        from meltbench.api import run

        ctx = workload.n_depth + n + workload.n_gen
        result = run(build_spec(**options, n_prompt=n, ctx=ctx), db=db)
        if on_result is not None:
            on_result(result)
        return result

    return probe
