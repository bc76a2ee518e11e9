"""Temperatures of the kernel's thermal zones (``/sys/class/thermal/thermal_zone*``).

Source: the generic thermal sysfs ABI,
https://www.kernel.org/doc/html/latest/driver-api/thermal/sysfs-api.html. Each zone has
``type`` (what it measures, e.g. ``x86_pkg_temp``, ``cpu-thermal``, ``battery``),
``temp`` (millidegree Celsius by the ABI) and, on most kernels, ``mode``
(``enabled``/``disabled``). ``cooling_device*`` entries in the same directory are skipped.

One channel per zone, ``"thermal:<type>"`` (kind ``temperature``, unit C). Names are unique:
when several zones share a type, the zone with the lowest index keeps ``"thermal:<type>"``
and each later one gets ``"#<zone index>"`` appended (``"thermal:soc_thermal#3"``). Duplicates
are counted over all zones with a type, skipped ones included, so a name does not change
when another zone of the same type happens to be unreadable.

Skipped at probe time (listed in ``Probe.details["skipped"]`` with the reason):

- zones whose ``mode`` is ``disabled``;
- zones whose ``temp`` cannot be read (``EINVAL``/``ENODATA``/``EAGAIN`` from a sensor that
  is powered down, common on phones: an ``OSError``) or is not an integer.

**Scale rule** (Android vendors do not all follow the ABI; e.g. a battery zone reading
``315`` means 31.5 C): the scale of each zone is chosen once, at probe time, from the
magnitude ``|raw|`` of its first reading:

- ``|raw| > 1000``: millidegrees (divide by 1000) - the ABI;
- ``100 <= |raw| <= 1000``: decidegrees (divide by 10) - as millidegrees it would be
  0.1-1 C and as degrees 100-1000 C, neither plausible on a running device;
- ``0 < |raw| < 100``: degrees (divide by 1);
- ``raw == 0``: millidegrees (0 is 0 in every scale, so the ABI's unit is kept).

The chosen scale is recorded per channel in ``Probe.details["zones"][name]["scale"]``
(``"milli-C"``, ``"deci-C"`` or ``"C"``) with the divisor and the raw probe value.

**Scope rule** (first match wins, on the lower-cased type):

- ``"battery"``: contains ``batt`` or ``bms``;
- ``"skin"``: contains ``skin``, ``case`` or ``shell``;
- ``"gpu"``: contains ``gpu``;
- ``"cpu"``: contains ``cpu``, ``x86_pkg``, ``core`` or ``cluster``;
- ``""`` otherwise (SoC, modem, PMIC, board sensors: not guessed).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from meltbench.sensors.base import Channel, Kind, Probe, Sensor
from meltbench.sensors.sysfs import SysFS

__all__ = ["THERMAL_DIR", "ThermalZoneSensor", "infer_scope", "pick_scale"]

#: the thermal class directory, relative to the root
THERMAL_DIR = "sys/class/thermal"

_ZONE_RE = re.compile(r"^thermal_zone(\d+)$")

#: (scope, keywords) in match order; see the module docstring
_SCOPE_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("battery", ("batt", "bms")),
    ("skin", ("skin", "case", "shell")),
    ("gpu", ("gpu",)),
    ("cpu", ("cpu", "x86_pkg", "core", "cluster")),
)


def infer_scope(zone_type: str) -> str:
    """The scope of a zone from its ``type`` by the keyword rules of the module docstring.

    Returns:
        ``"battery"``, ``"skin"``, ``"gpu"``, ``"cpu"`` or ``""`` (unknown).
    """
    low = zone_type.lower()
    for scope, words in _SCOPE_RULES:
        if any(w in low for w in words):
            return scope
    return ""


def pick_scale(raw: int) -> tuple[str, int]:
    """The scale of a zone's ``temp`` from the magnitude of one raw reading.

    Args:
        raw: the integer in the zone's ``temp`` file.

    Returns:
        ``(scale, divisor)``: ``("milli-C", 1000)`` when ``|raw| > 1000`` or ``raw == 0``,
        ``("deci-C", 10)`` when ``100 <= |raw| <= 1000``, ``("C", 1)`` when
        ``0 < |raw| < 100``.
    """
    mag = abs(raw)
    if mag > 1000 or mag == 0:
        return "milli-C", 1000
    if mag >= 100:
        return "deci-C", 10
    return "C", 1


class ThermalZoneSensor(Sensor):
    """Every readable thermal zone, in degrees Celsius.

    Channels: ``"thermal:<type>"`` (see the module docstring for uniqueness, scale and
    scope rules), kind ``temperature``. ``read()`` re-reads each zone's ``temp`` file
    (opened once in :meth:`probe`) and gives None for a zone that fails this time.
    """

    name = "thermal"
    kinds: tuple[Kind, ...] = ("temperature",)

    def __init__(self, fs: SysFS | None = None) -> None:
        super().__init__(fs)
        self._readers: list[tuple[Callable[[], str], int]] = []

    def probe(self) -> Probe:
        """Find the zones; never raises.

        Returns:
            available with one channel per usable zone, or unavailable with the reason
            (no zones, or every zone disabled/unreadable).
        """
        return self.guarded_probe(self._probe, "thermal zones unreadable")

    def _probe(self) -> Probe:
        zones = sorted(
            (int(m.group(1)), entry)
            for entry in self.fs.listdir(THERMAL_DIR)
            if (m := _ZONE_RE.match(entry))
        )
        if not zones:
            return Probe(
                self.name,
                False,
                "no /sys/class/thermal/thermal_zone*: a VM, a container or a kernel "
                "without thermal zones",
            )
        types: dict[int, str] = {}
        for index, entry in zones:
            try:
                types[index] = self.fs.read_text(f"{THERMAL_DIR}/{entry}/type") or f"zone{index}"
            except OSError:
                types[index] = f"zone{index}"
        names = _unique_names(types)

        channels: list[Channel] = []
        details: dict[str, Any] = {"zones": {}, "skipped": {}}
        for index, entry in zones:
            base = f"{THERMAL_DIR}/{entry}"
            try:
                mode = self.fs.read_text(f"{base}/mode")
            except OSError:
                mode = None
            if mode == "disabled":
                details["skipped"][entry] = f"{types[index]}: mode disabled"
                continue
            try:
                read, close = self.fs.reader(f"{base}/temp")
            except OSError as exc:
                details["skipped"][entry] = f"{types[index]}: temp cannot be opened ({exc})"
                continue
            try:
                raw = int(read().split()[0])
            except (OSError, ValueError, IndexError) as exc:
                close()
                details["skipped"][entry] = f"{types[index]}: temp unreadable ({exc!r})"
                continue
            scale, divisor = pick_scale(raw)
            self._readers.append((read, divisor))
            self._closers.append(close)
            name = names[index]
            channels.append(
                Channel(
                    name=name,
                    kind="temperature",
                    label=f"{types[index]} ({entry})",
                    scope=infer_scope(types[index]),
                )
            )
            details["zones"][name] = {
                "zone": entry,
                "type": types[index],
                "scale": scale,
                "divisor": divisor,
                "raw_at_probe": raw,
            }
        if not channels:
            return Probe(
                self.name,
                False,
                f"{len(zones)} thermal zones, none usable (disabled or unreadable)",
                details=details,
            )
        reason = f"{len(channels)} of {len(zones)} thermal zones"
        if details["skipped"]:
            reason += f" ({len(details['skipped'])} skipped: disabled or unreadable)"
        return Probe(self.name, True, reason, tuple(channels), details)

    def read(self) -> Sequence[float | None]:
        """One temperature per channel, in degrees Celsius (None: this read failed)."""
        out: list[float | None] = []
        for read, divisor in self._readers:
            try:
                out.append(int(read().split()[0]) / divisor)
            except (OSError, ValueError, IndexError):
                out.append(None)
        return out

    def close(self) -> None:
        """Close the zone files opened by :meth:`probe`."""
        super().close()
        self._readers = []


def _unique_names(types: dict[int, str]) -> dict[int, str]:
    """``"thermal:<type>"`` per zone index; later zones of a repeated type get ``#<index>``."""
    seen: set[str] = set()
    names: dict[int, str] = {}
    for index in sorted(types):
        t = types[index]
        names[index] = f"thermal:{t}" if t not in seen else f"thermal:{t}#{index}"
        seen.add(t)
    return names
