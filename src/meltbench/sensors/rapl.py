"""CPU package, core, uncore, DRAM and platform energy from RAPL through Linux powercap.

The ``intel_rapl`` drivers expose each RAPL domain as a powercap *zone*
(https://www.kernel.org/doc/html/latest/power/powercap/powercap.html)::

    /sys/class/powercap/intel-rapl:0          package-0  (CPU socket 0)
    /sys/class/powercap/intel-rapl:0:0        core       (the cores of package 0)
    /sys/class/powercap/intel-rapl:0:1        uncore     (integrated GPU, caches...)
    /sys/class/powercap/intel-rapl:0:2        dram       (memory of package 0)
    /sys/class/powercap/intel-rapl:1          psys       (the whole platform)
    /sys/class/powercap/intel-rapl-mmio:0     package-0  (same counter, MMIO interface)

Each zone has ``name``, ``energy_uj`` (a cumulative counter in microjoules) and
``max_energy_range_uj`` (the value at which the counter wraps back to 0), both described
in the kernel's sysfs ABI (``Documentation/ABI/testing/sysfs-class-powercap``).

AMD Zen CPUs use the same driver (``intel_rapl_msr`` reads AMD's RAPL MSRs since Linux
5.8/5.11) and appear under the same ``intel-rapl`` control type, usually with
``package-0`` and ``core`` zones. Any control type whose name contains ``rapl`` is
scanned, so a differently named interface is picked up too; ``intel-rapl-mmio`` zones
that repeat an MSR zone of the same name are skipped (they read the same counter).

What contains what (kernel docs and https://github.com/powercap/powercap/issues/3):
``core`` and ``uncore`` are inside their ``package``; ``dram`` is *not* inside the
package; ``psys`` covers the whole platform (packages and DRAM included), so it is the
total. Since Linux 5.10 ``energy_uj`` is readable by root only (CVE-2020-8694, the
"Platypus" power side channel).

Values are raw joules (``energy_uj / 1e6``); unwrapping with ``Channel.wrap_j`` is done
downstream by the energy code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from meltbench.sensors.base import Channel, Kind, Probe, Sensor
from meltbench.sensors.sysfs import SysFS

__all__ = ["PLATYPUS_HINT", "RaplSensor"]

POWERCAP = "sys/class/powercap"

#: a powercap zone directory of a RAPL control type: ``intel-rapl:0``, ``intel-rapl:0:1``,
#: ``intel-rapl-mmio:0``
_ZONE_RE = re.compile(r"^(?P<ctype>[A-Za-z0-9_-]*rapl[A-Za-z0-9_-]*):(?P<path>\d+(?::\d+)*)$")

#: how to fix an ``energy_uj`` that only root may read
PLATYPUS_HINT = (
    "RAPL energy_uj is readable by root only (Linux >= 5.10 restricts it because of "
    "CVE-2020-8694 'Platypus'): run as root, or `sudo chmod a+r "
    "/sys/class/powercap/intel-rapl:*/energy_uj` (until reboot), or add a udev rule "
    '(SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chmod a+r /sys%p/energy_uj")'
)


@dataclass
class _Zone:
    rel: str  # "sys/class/powercap/intel-rapl:0:1"
    ctype: str  # "intel-rapl"
    ids: tuple[int, ...]  # (0, 1)
    name: str  # "dram"


def _scope(zone_name: str) -> str:
    """The channel scope of a RAPL zone named ``zone_name``."""
    if zone_name.startswith("package"):
        return "cpu-package"
    return {"core": "cpu-core", "uncore": "soc", "dram": "dram", "psys": "board"}.get(zone_name, "")


_LABELS = {
    "cpu-package": "CPU package",
    "cpu-core": "CPU cores",
    "soc": "uncore (integrated GPU, caches)",
    "dram": "DRAM",
    "board": "whole platform (psys)",
}


class RaplSensor(Sensor):
    """Energy counters of the RAPL domains (J), read from ``/sys/class/powercap``.

    One ``energy`` channel per zone, named ``rapl:<zone>`` for top-level zones and
    ``rapl:<parent>/<zone>`` for subzones (``rapl:package-0``, ``rapl:package-0/core``,
    ``rapl:package-0/dram``, ``rapl:psys``). ``wrap_j = max_energy_range_uj / 1e6``.
    Scopes: package -> ``cpu-package``, core -> ``cpu-core``, uncore -> ``soc``,
    dram -> ``dram``, psys -> ``board`` (``total=True``). ``core`` and ``uncore`` list
    their package in ``overlaps``; ``psys`` lists every other RAPL channel.
    """

    name = "rapl"
    kinds: tuple[Kind, ...] = ("energy",)

    def __init__(self, fs: SysFS | None = None) -> None:
        super().__init__(fs)
        self._readers: list[Callable[[], str]] = []

    # -- probing -----------------------------------------------------------------------

    def probe(self) -> Probe:
        """Find the RAPL zones and open their ``energy_uj``; never raises.

        Unavailable reasons: no ``/sys/class/powercap``; no RAPL zone in it; every
        ``energy_uj`` unreadable (root-only since Linux 5.10: see :data:`PLATYPUS_HINT`).
        """
        return self.guarded_probe(self._probe, "RAPL probe failed")

    def _zones(self) -> list[_Zone]:
        zones: list[_Zone] = []
        for entry in self.fs.listdir(POWERCAP):
            m = _ZONE_RE.match(entry)
            if m is None:
                continue
            rel = f"{POWERCAP}/{entry}"
            name = self.fs.read_text(f"{rel}/name")
            if not name:
                continue
            ids = tuple(int(part) for part in m.group("path").split(":"))
            zones.append(_Zone(rel, m.group("ctype"), ids, name))
        # MSR interface first, then by position in the zone tree
        zones.sort(key=lambda z: (z.ctype != "intel-rapl", z.ctype, z.ids))
        return zones

    def _probe(self) -> Probe:
        if not self.fs.exists(POWERCAP):
            return Probe(
                self.name,
                False,
                "no /sys/class/powercap: kernel without powercap, not x86 RAPL hardware, "
                "or a VM that hides it",
            )
        zones = self._zones()
        if not zones:
            found = ", ".join(self.fs.listdir(POWERCAP)) or "nothing"
            return Probe(
                self.name,
                False,
                f"no RAPL zone in /sys/class/powercap (found: {found}): not an Intel/AMD "
                "CPU with RAPL, intel_rapl_msr not loaded, or a VM that hides it",
            )

        by_key = {(z.ctype, z.ids): z for z in zones}
        msr_names = {z.name for z in zones if z.ctype == "intel-rapl" and len(z.ids) == 1}
        channels: list[Channel] = []
        paths: dict[str, str] = {}
        skipped: dict[str, str] = {}
        denied: list[str] = []
        used: set[str] = set()
        name_of: dict[tuple[str, tuple[int, ...]], str] = {}

        for zone in zones:
            if zone.ctype != "intel-rapl" and len(zone.ids) == 1 and zone.name in msr_names:
                skipped[zone.rel] = f"same domain as intel-rapl {zone.name} (read there)"
                continue
            parent_key = (zone.ctype, zone.ids[:-1])
            parent = by_key.get(parent_key) if len(zone.ids) > 1 else None
            parent_name = name_of.get(parent_key) if parent is not None else None
            if parent_name is not None:  # "rapl:package-0/core"
                chan_name = f"{parent_name}/{zone.name}"
            elif parent is not None:  # parent zone unreadable: still name the subzone by it
                chan_name = f"rapl:{parent.name}/{zone.name}"
            else:
                chan_name = f"rapl:{zone.name}"
            if chan_name in used:
                chan_name = f"{chan_name}@{zone.rel.rsplit('/', 1)[-1]}"

            energy_rel = f"{zone.rel}/energy_uj"
            try:
                read, close = self.fs.reader(energy_rel)
            except PermissionError:
                denied.append(energy_rel)
                continue
            except OSError as exc:
                skipped[zone.rel] = f"energy_uj: {exc.strerror or exc}"
                continue
            try:
                int(read())
            except PermissionError:
                close()
                denied.append(energy_rel)
                continue
            except (OSError, ValueError) as exc:
                close()
                skipped[zone.rel] = f"energy_uj unreadable: {exc}"
                continue

            try:
                max_uj = self.fs.read_int(f"{zone.rel}/max_energy_range_uj")
            except OSError:
                max_uj = None
            scope = _scope(zone.name)
            overlaps: tuple[str, ...] = ()
            if zone.name in ("core", "uncore") and parent_name is not None:
                overlaps = (parent_name,)
            label = f"{_LABELS.get(scope, zone.name)} (RAPL {zone.name})"
            channels.append(
                Channel(
                    name=chan_name,
                    kind="energy",
                    label=label,
                    scope=scope,
                    wrap_j=max_uj / 1e6 if max_uj else None,
                    total=zone.name == "psys",
                    overlaps=overlaps,
                )
            )
            used.add(chan_name)
            name_of[(zone.ctype, zone.ids)] = chan_name
            paths[chan_name] = energy_rel
            self._readers.append(read)
            self._closers.append(close)

        # psys covers everything else RAPL measures
        names = [c.name for c in channels]
        channels = [
            replace(c, overlaps=tuple(n for n in names if n != c.name)) if c.total else c
            for c in channels
        ]

        details: dict[str, object] = {
            "source": "Linux powercap (intel_rapl)",
            "control_types": sorted({z.ctype for z in zones}),
            "files": paths,
        }
        if skipped:
            details["skipped"] = skipped
        if denied:
            details["permission_denied"] = denied
        if not channels:
            if denied:
                return Probe(self.name, False, PLATYPUS_HINT, details=details)
            return Probe(
                self.name,
                False,
                "RAPL zones found but no energy_uj could be read: "
                + "; ".join(f"{k}: {v}" for k, v in skipped.items()),
                details=details,
            )
        reason = f"{len(channels)} RAPL energy counters: " + ", ".join(names)
        if denied:
            reason += f" ({len(denied)} zones root-only, see details)"
        return Probe(self.name, True, reason, tuple(channels), details)

    # -- reading -----------------------------------------------------------------------

    def read(self) -> Sequence[float | None]:
        """Each zone's ``energy_uj`` in joules (raw, not unwrapped); None if unreadable."""
        out: list[float | None] = []
        for read in self._readers:
            try:
                out.append(int(read()) / 1e6)
            except (OSError, ValueError):
                out.append(None)
        return out

    def close(self) -> None:
        """Close the ``energy_uj`` files opened by :meth:`probe`."""
        super().close()
        self._readers = []
