"""Wall-clock timestamps of records: one format everywhere (UTC, ISO 8601).

Durations are never measured with these (``time.perf_counter_ns`` is the clock of every
measurement); they date a run, a sweep, a reference file or a target's setup.
"""

from __future__ import annotations

import datetime as _dt

__all__ = ["utc_now"]


def utc_now(timespec: str = "milliseconds") -> str:
    """Now in UTC as ISO 8601, e.g. ``2026-12-03T14:15:02.123+00:00``.

    Args:
        timespec: as :meth:`datetime.datetime.isoformat` (``milliseconds``, ``seconds``).
    """
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec=timespec)
