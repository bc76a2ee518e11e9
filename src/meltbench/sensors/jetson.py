"""Power of NVIDIA Jetson rails from the on-module INA3221 power monitors.

Jetson modules carry TI INA3221 three-channel current/voltage monitors on I2C. Two
driver interfaces exist:

- JetPack 5/6 (L4T r34+, Orin, Xavier): the mainline ``ina3221`` hwmon driver
  (https://docs.kernel.org/hwmon/ina3221.html), under
  ``/sys/bus/i2c/drivers/ina3221/<bus>-<addr>/hwmon/hwmon<k>/`` (also reachable as
  ``/sys/class/hwmon/hwmon<k>`` with ``name`` = ``ina3221``): ``in<N>_label`` (rail name),
  ``in<N>_input`` (bus voltage, mV), ``curr<N>_input`` (mA), ``in<N>_enable``; ``in7`` is
  the "sum of shunt voltages" and is not a rail. Power W = mV x mA / 1e6.
- JetPack 4 (L4T r32, Nano, TX1/TX2, Xavier): NVIDIA's ``ina3221x`` IIO driver, under
  ``/sys/bus/i2c/drivers/ina3221x/<bus>-<addr>/iio:device<k>/``: ``rail_name_<i>``,
  ``in_power<i>_input`` (mW), ``in_voltage<i>_input`` (mV), ``in_current<i>_input`` (mA).

Rail names per model are listed in NVIDIA's Jetson Linux Developer Guide, "Platform Power
and Performance" (https://docs.nvidia.com/jetson/archives/r36.3/DeveloperGuide/SD/
PlatformPowerAndPerformance/JetsonOrinNanoSeriesJetsonOrinNxSeriesAndJetsonAgxOrinSeries.html):
the module input rail is ``VDD_IN`` (Orin Nano/NX, Xavier NX, TX1/TX2) or ``POM_5V_IN``
(Nano on L4T r32); the other rails (``VDD_CPU_GPU_CV``, ``VDD_SOC``, ``POM_5V_GPU``...) are
inside it. AGX Orin and AGX Xavier have no input rail (their rails are separate supplies).
The input rail measures the module, not the carrier board of a developer kit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from meltbench.sensors.base import Channel, Kind, Probe, Sensor
from meltbench.sensors.sysfs import SysFS

__all__ = ["TOTAL_RAILS", "JetsonPowerSensor"]

HWMON_DRIVER = "sys/bus/i2c/drivers/ina3221"
IIO_DRIVER = "sys/bus/i2c/drivers/ina3221x"
CLASS_HWMON = "sys/class/hwmon"

#: rail names of the module's input supply, which contains every other rail
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN", "5V_IN")

_I2C_DEV = re.compile(r"^\d+-[0-9a-fA-F]{4}$")
_HWMON = re.compile(r"^hwmon\d+$")
_IIO = re.compile(r"^iio:device\d+$")
_IN_LABEL = re.compile(r"^in(\d+)_label$")
_RAIL_NAME = re.compile(r"^rail_name_(\d+)$")


@dataclass
class _Rail:
    label: str
    where: str  # "1-0040 ch1"
    read: Callable[[], float]
    closers: list[Callable[[], None]] = field(default_factory=list)


def _i2c_address(path: str) -> str:
    """``"1-0040"`` from a path through the I2C device directory; ``"?"`` if none."""
    for part in reversed(path.split("/")):
        if _I2C_DEV.match(part):
            return part
    return "?"


class JetsonPowerSensor(Sensor):
    """Power (W) of each labelled INA3221 rail of a Jetson, channel ``jetson:<RAIL>``.

    The input rail (see :data:`TOTAL_RAILS`) gets scope ``board`` and ``total=True``; the
    other rails get scope ``rail`` and ``overlaps=(<input channel>,)``: they are part of
    the input and must never be added to it. Rails labelled ``NC`` (not connected),
    disabled channels (``in<N>_enable`` = 0) and the shunt-voltage sum are skipped.
    """

    name = "jetson"
    kinds: tuple[Kind, ...] = ("power",)

    def __init__(self, fs: SysFS | None = None) -> None:
        super().__init__(fs)
        self._rails: list[_Rail] = []

    # -- discovery ---------------------------------------------------------------------

    def _hwmon_dirs(self) -> list[str]:
        """INA3221 hwmon directories (relative), each once even if reached twice."""
        found: list[str] = []
        seen: set[str] = set()
        candidates: list[str] = []
        for dev in self.fs.listdir(HWMON_DRIVER):
            if _I2C_DEV.match(dev):
                for h in self.fs.listdir(f"{HWMON_DRIVER}/{dev}/hwmon"):
                    if _HWMON.match(h):
                        candidates.append(f"{HWMON_DRIVER}/{dev}/hwmon/{h}")
        for h in sorted(self.fs.listdir(CLASS_HWMON), key=_natural):
            if _HWMON.match(h) and self.fs.read_text(f"{CLASS_HWMON}/{h}/name") == "ina3221":
                candidates.append(f"{CLASS_HWMON}/{h}")
        for rel in candidates:
            real = str(self.fs.path(rel).resolve())
            if real not in seen:
                seen.add(real)
                found.append(rel)
        return found

    def _iio_dirs(self) -> list[str]:
        found: list[str] = []
        for dev in self.fs.listdir(IIO_DRIVER):
            if _I2C_DEV.match(dev):
                for d in self.fs.listdir(f"{IIO_DRIVER}/{dev}"):
                    if _IIO.match(d):
                        found.append(f"{IIO_DRIVER}/{dev}/{d}")
        return found

    def _hwmon_rails(self, rel: str, skipped: dict[str, str]) -> list[_Rail]:
        addr = _i2c_address(str(self.fs.path(rel).resolve()))
        if addr == "?":
            addr = _i2c_address(rel)
        numbers = sorted(int(m.group(1)) for f in self.fs.listdir(rel) if (m := _IN_LABEL.match(f)))
        rails: list[_Rail] = []
        for n in numbers:
            where = f"{addr} ch{n}"
            label = (self.fs.read_text(f"{rel}/in{n}_label") or "").strip()
            if not label or label.upper() == "NC" or label.lower().startswith("sum of shunt"):
                continue
            if self.fs.read_int(f"{rel}/in{n}_enable") == 0:
                skipped[f"{label} ({where})"] = "disabled (in_enable = 0)"
                continue
            if not self.fs.exists(f"{rel}/curr{n}_input"):
                continue
            try:
                read_mv, close_v = self.fs.reader(f"{rel}/in{n}_input")
            except OSError as exc:
                skipped[f"{label} ({where})"] = str(exc)
                continue
            try:
                read_ma, close_c = self.fs.reader(f"{rel}/curr{n}_input")
            except OSError as exc:
                close_v()
                skipped[f"{label} ({where})"] = str(exc)
                continue

            def read(rv: Callable[[], str] = read_mv, rc: Callable[[], str] = read_ma) -> float:
                return int(rv()) * int(rc()) / 1e6  # mV x mA = uW

            rails.append(_Rail(label, where, read, [close_v, close_c]))
        return rails

    def _iio_rails(self, rel: str, skipped: dict[str, str]) -> list[_Rail]:
        addr = _i2c_address(rel)
        numbers = sorted(
            int(m.group(1)) for f in self.fs.listdir(rel) if (m := _RAIL_NAME.match(f))
        )
        rails: list[_Rail] = []
        for i in numbers:
            where = f"{addr} ch{i}"
            label = (self.fs.read_text(f"{rel}/rail_name_{i}") or "").strip()
            if not label or label.upper() == "NC":
                continue
            try:
                if self.fs.exists(f"{rel}/in_power{i}_input"):
                    read_mw, close_p = self.fs.reader(f"{rel}/in_power{i}_input")

                    def read(rp: Callable[[], str] = read_mw) -> float:
                        return int(rp()) / 1000  # mW -> W

                    rails.append(_Rail(label, where, read, [close_p]))
                else:
                    read_mv, close_v = self.fs.reader(f"{rel}/in_voltage{i}_input")
                    try:
                        read_ma, close_c = self.fs.reader(f"{rel}/in_current{i}_input")
                    except OSError:
                        close_v()
                        raise

                    def read_vi(
                        rv: Callable[[], str] = read_mv, rc: Callable[[], str] = read_ma
                    ) -> float:
                        return int(rv()) * int(rc()) / 1e6

                    rails.append(_Rail(label, where, read_vi, [close_v, close_c]))
            except OSError as exc:
                skipped[f"{label} ({where})"] = str(exc)
        return rails

    # -- probing -----------------------------------------------------------------------

    def probe(self) -> Probe:
        """Find the INA3221 rails and open their files; never raises.

        Unavailable reasons: no INA3221 (not a Jetson, or a model without one such as the
        Jetson Nano 2GB); monitors found but no labelled, readable rail.
        """
        return self.guarded_probe(self._probe, "Jetson probe failed")

    def _probe(self) -> Probe:
        hwmon_dirs = self._hwmon_dirs()
        iio_dirs = self._iio_dirs()
        if not hwmon_dirs and not iio_dirs:
            return Probe(
                self.name,
                False,
                "no INA3221 power monitor: not an NVIDIA Jetson (or a model without one, "
                "e.g. Jetson Nano 2GB)",
            )
        skipped: dict[str, str] = {}
        rails: list[_Rail] = []
        for rel in hwmon_dirs:
            rails += self._hwmon_rails(rel, skipped)
        for rel in iio_dirs:
            rails += self._iio_rails(rel, skipped)
        self._rails = rails  # closed by close() if anything below fails

        good: list[_Rail] = []
        for rail in rails:
            try:
                rail.read()
            except (OSError, ValueError) as exc:
                skipped[f"{rail.label} ({rail.where})"] = f"unreadable: {exc}"
                for close in rail.closers:
                    close()
                continue
            good.append(rail)
        self._rails = good

        details: dict[str, object] = {
            "driver": "ina3221 (hwmon)" if hwmon_dirs else "ina3221x (iio, L4T r32)",
            "devices": hwmon_dirs + iio_dirs,
            "rails": {f"jetson:{r.label}": r.where for r in good},
        }
        if skipped:
            details["skipped"] = skipped
        if not good:
            return Probe(
                self.name,
                False,
                "INA3221 found but no labelled, enabled rail could be read",
                details=details,
            )

        channels: list[Channel] = []
        used: set[str] = set()
        for rail in good:
            chan = f"jetson:{rail.label}"
            if chan in used:
                chan = f"{chan}@{rail.where.split()[0]}"
            used.add(chan)
            channels.append(
                Channel(
                    name=chan,
                    kind="power",
                    label=f"{rail.label} rail (INA3221 {rail.where})",
                    scope="rail",
                )
            )
        total = next(
            (c.name for c, r in zip(channels, good, strict=True) if r.label.upper() in TOTAL_RAILS),
            None,
        )
        channels = [
            replace(c, scope="board", total=True)
            if c.name == total
            else replace(c, overlaps=(total,) if total else ())
            for c in channels
        ]
        details["total_rail"] = total
        if total:
            details["note"] = f"the other rails are inside {total}; never add them to it"
        else:
            details["note"] = (
                "no module input rail (e.g. AGX Orin, AGX Xavier): the sum of the rails "
                "misses unmonitored supplies"
            )
        reason = f"{len(channels)} INA3221 rails" + (f", total {total}" if total else "")
        return Probe(self.name, True, reason, tuple(channels), details)

    # -- reading -----------------------------------------------------------------------

    def read(self) -> Sequence[float | None]:
        """Each rail's power in W; None for a rail that cannot be read this time."""
        out: list[float | None] = []
        for rail in self._rails:
            try:
                out.append(rail.read())
            except (OSError, ValueError):
                out.append(None)
        return out

    def close(self) -> None:
        """Close the files opened by :meth:`probe`."""
        for rail in self._rails:
            for close in rail.closers:
                try:
                    close()
                except OSError:
                    pass
        self._rails = []


def _natural(name: str) -> tuple[str, int]:
    """Sort key putting ``hwmon2`` before ``hwmon10``."""
    m = re.match(r"^(\D*)(\d+)$", name)
    return (m.group(1), int(m.group(2))) if m else (name, -1)
