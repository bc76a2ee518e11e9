"""Replay recorded sysfs trees whose values change over time.

A fixture lives in ``tests/fixtures/sysfs/<name>/``:

- ``tree/``: the files as they are at the start, laid out like the real machine
  (``tree/sys/class/powercap/intel-rapl:0/energy_uj``, ...);
- ``timeline.json`` (optional): ``{"source": "...", "ticks": [{"t_s": 0.0, "files":
  {"sys/class/...": "value", ...}}, ...]}``, the values of changing files at each tick,
  as recorded (or as computed by hand: then ``source`` says so).

:class:`SysfsReplay` copies the tree to a temporary directory; ``apply(i)`` writes tick
``i``'s values there, so sensor code reads it exactly as it reads ``/``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from meltbench.sensors.sysfs import SysFS

FIXTURES = Path(__file__).parent / "fixtures" / "sysfs"


class SysfsReplay:
    """A writable copy of fixture ``name`` under ``dest``, advanced tick by tick."""

    def __init__(self, name: str, dest: Path) -> None:
        src = FIXTURES / name
        self.root = Path(dest) / name
        shutil.copytree(src / "tree", self.root, symlinks=True)
        timeline = src / "timeline.json"
        data: dict[str, Any] = json.loads(timeline.read_text()) if timeline.exists() else {}
        self.ticks: list[dict[str, Any]] = data.get("ticks", [])
        self.fs = SysFS(self.root)

    def apply(self, index: int) -> float:
        """Write the values of tick ``index``; returns its time ``t_s``."""
        tick = self.ticks[index]
        for rel, value in tick["files"].items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{value}\n")
        return float(tick["t_s"])

    def t_ns(self, index: int) -> int:
        """Tick ``index``'s time in nanoseconds."""
        return round(float(self.ticks[index]["t_s"]) * 1e9)
