"""Apple silicon power: a placeholder that says what exists and why nothing is read yet.

What exists on macOS (Apple silicon):

- ``powermetrics`` (``/usr/bin/powermetrics``, shipped with macOS) prints CPU, GPU and ANE
  power per sample (``sudo powermetrics --samplers cpu_power,gpu_power -i 100``, or
  ``-f plist`` for machine-readable output). It must run as root; meltbench never runs
  ``sudo`` itself.
- The private ``IOReport`` framework (``/usr/lib/libIOReport.dylib``, "Energy Model"
  channel group) gives cumulative energy counters per SoC block without root; third-party
  monitors (macmon, mactop, macpow) use it. It is undocumented and may change between
  macOS releases.
- The SMC (through IOKit) exposes temperatures and a system power reading, also through
  undocumented keys that differ between chip generations.

What meltbench uses: nothing yet. :meth:`ApplePowerSensor.probe` always reports
``available=False``: ``"not macOS"`` elsewhere, and on macOS a reason that names the
``powermetrics`` command the user can run themselves. :meth:`ApplePowerSensor.read`
returns ``()``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from meltbench.sensors.base import Kind, Probe, Sensor
from meltbench.sensors.sysfs import SysFS

__all__ = ["DARWIN_REASON", "ApplePowerSensor"]

#: the probe's reason on macOS
DARWIN_REASON = (
    "Apple silicon power needs `sudo powermetrics --samplers cpu_power,gpu_power` (root), "
    "which meltbench does not run; the unprivileged IOReport counters are a private API "
    "not read yet"
)


class ApplePowerSensor(Sensor):
    """Apple silicon CPU/GPU power: never available yet (see the module docstring).

    Args:
        fs: unused (kept for the plug-in contract).
        platform: the value of ``sys.platform`` to assume (default: this machine's); for
            tests.
    """

    name = "apple"
    kinds: tuple[Kind, ...] = ("power",)

    def __init__(self, fs: SysFS | None = None, platform: str | None = None) -> None:
        super().__init__(fs)
        self.platform = sys.platform if platform is None else platform

    def probe(self) -> Probe:
        """``available=False``: ``"not macOS"``, or on macOS why nothing is read."""
        if self.platform != "darwin":
            return Probe(self.name, False, "not macOS")
        return Probe(
            self.name,
            False,
            DARWIN_REASON,
            details={"command": "sudo powermetrics --samplers cpu_power,gpu_power -i 100"},
        )

    def read(self) -> Sequence[float | None]:
        """No channels: ``()``."""
        return ()
