"""Whole-device power from the battery's fuel gauge (``/sys/class/power_supply``).

Sources: the power supply class,
https://www.kernel.org/doc/html/latest/power/power_supply_class.html, and its ABI,
https://www.kernel.org/doc/Documentation/ABI/testing/sysfs-class-power (``current_now`` in
µA, ``voltage_now`` in µV, ``power_now`` in µW; since 2020 "negative values are used for
discharging batteries, positive values for charging batteries"); Android's
``BatteryManager.BATTERY_PROPERTY_CURRENT_NOW`` has the same sign
(https://developer.android.com/reference/android/os/BatteryManager). Vendors differ: some
gauges report mA/mV, some the opposite sign, and ACPI laptops an unsigned rate (ACPI's
``current_now`` is negated while discharging only since a 2025 kernel change; its
``power_now`` stays unsigned).

A supply is used when its ``type`` is ``Battery``, its ``scope`` is not ``Device`` (a
mouse's or a headset's battery) and ``present`` is not 0 (an empty bay). One channel per
battery, ``"battery:<supply name>"``, kind ``power`` (W), scope ``"board"``; ``total`` is
True when there is exactly one battery (a phone's battery current x voltage is the whole
device's draw when it is not charging; with two batteries neither alone is).

**Value**: ``|power_now|`` (µW, the ABI unit, no guessing) when the file reads as an
integer at probe time; else ``|current_now| x |voltage_now|`` with the units below. The
value is always the magnitude: discharge power is positive. While charging, the same
magnitude is the battery's charge power, not the device's draw (see ``charging``).

**Unit rules** (decided once, at probe time, from the first reading):

- voltage: ``|voltage_now| > 100000`` -> µV (the ABI), else mV. A Li-ion cell is
  3.0-4.5 V and a laptop pack 7-20 V: 3,000,000-20,000,000 µV or 3,000-20,000 mV.
- current: by default the prefix of the voltage (µV -> µA, mV -> mA), overridden by
  magnitude: with µV, ``0 < |current_now| < 10000`` is taken as mA (as µA it would be
  under 10 mA, less than any awake phone or laptop draws); with mV,
  ``|current_now| >= 10000`` is taken as µA (as mA it would be 10 A or more, beyond a
  phone or laptop battery). ``current_now == 0`` keeps the default.

**Sign convention** (``"discharge_negative"`` = the ABI and Android, or
``"discharge_positive"``, or ``"unknown"``): from ``status`` and the sign of
``current_now`` at probe time: Discharging with a negative current, or Charging with a
positive one, is ``discharge_negative``; the opposite pairs are ``discharge_positive``;
any other status (Full, Not charging, Unknown) or a zero current is ``unknown``.

**Charging**: ``details["charging"]`` is True when ``status`` is ``Charging``, or ``Full``
or ``Not charging`` while a charger (a supply of type ``Mains``, ``USB*`` or ``Wireless``)
is ``online``: the battery then does not measure the device's draw and energy from it is
invalid (the sensor stays available; the caller warns).

``Probe.details``: ``charging`` (any battery), ``chargers_online``, ``skipped`` (battery
-> why unusable), ``batteries`` (per channel: ``supply``, ``method``, ``status``,
``charging``, ``capacity_pct``, ``voltage_unit``, ``current_unit``, ``power_unit``,
``sign_convention``, ``raw_at_probe``) and, copied from
the first battery, ``method``, ``voltage_unit``, ``current_unit``, ``power_unit`` and
``sign_convention``. Units are written ASCII: ``"uV"``, ``"mV"``, ``"uA"``, ``"mA"``,
``"uW"``; None when the file is absent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from meltbench.sensors.base import Channel, Kind, Probe, Sensor
from meltbench.sensors.sysfs import SysFS

__all__ = [
    "POWER_SUPPLY_DIR",
    "BatterySensor",
    "PowerSupply",
    "charger_kind",
    "current_unit",
    "is_charging",
    "list_supplies",
    "online_chargers",
    "sign_convention",
    "system_batteries",
    "voltage_unit",
]

#: the power supply class directory, relative to the root
POWER_SUPPLY_DIR = "sys/class/power_supply"

_NO_BATTERY = "no battery in /sys/class/power_supply (a desktop, server or VM)"


@dataclass(frozen=True)
class PowerSupply:
    """One entry of ``/sys/class/power_supply``.

    Attributes:
        name: the directory name (``"battery"``, ``"BAT0"``, ``"usb"``, ``"AC"``).
        type: its ``type`` file (``"Battery"``, ``"Mains"``, ``"USB"``, ``"Wireless"``...),
            None if missing or unreadable.
        path: the directory relative to the root.
    """

    name: str
    type: str | None
    path: str

    def attr_text(self, fs: SysFS, attr: str) -> str | None:
        """Attribute ``attr`` as text; None if missing or unreadable (``OSError``)."""
        try:
            return fs.read_text(f"{self.path}/{attr}")
        except OSError:
            return None

    def attr_int(self, fs: SysFS, attr: str) -> int | None:
        """Attribute ``attr`` as an integer; None if missing, unreadable or not a number."""
        try:
            return fs.read_int(f"{self.path}/{attr}")
        except OSError:
            return None


def list_supplies(fs: SysFS) -> list[PowerSupply]:
    """Every power supply under ``sys/class/power_supply``, sorted by name; never raises."""
    out: list[PowerSupply] = []
    for entry in fs.listdir(POWER_SUPPLY_DIR):
        path = f"{POWER_SUPPLY_DIR}/{entry}"
        try:
            typ = fs.read_text(f"{path}/type")
        except OSError:
            typ = None
        out.append(PowerSupply(entry, typ, path))
    return out


def system_batteries(fs: SysFS, supplies: list[PowerSupply] | None = None) -> list[PowerSupply]:
    """Supplies of type ``Battery`` that power the system (``scope`` not ``Device``,
    ``present`` not 0)."""
    out: list[PowerSupply] = []
    for s in list_supplies(fs) if supplies is None else supplies:
        if s.type != "Battery":
            continue
        if (s.attr_text(fs, "scope") or "").lower() == "device":
            continue
        if s.attr_int(fs, "present") == 0:
            continue
        out.append(s)
    return out


def charger_kind(supply_type: str | None) -> str | None:
    """``"ac"`` for ``Mains``, ``"usb"`` for ``USB*`` types, ``"wireless"`` for
    ``Wireless``; None for anything else (batteries, ``BMS``, unknown)."""
    if supply_type is None:
        return None
    if supply_type == "Mains":
        return "ac"
    if supply_type.upper().startswith("USB"):
        return "usb"
    if supply_type == "Wireless":
        return "wireless"
    return None


def online_chargers(fs: SysFS, supplies: list[PowerSupply] | None = None) -> list[PowerSupply]:
    """Charger supplies (:func:`charger_kind` not None) whose ``online`` is not 0."""
    out: list[PowerSupply] = []
    for s in list_supplies(fs) if supplies is None else supplies:
        if charger_kind(s.type) is None:
            continue
        online = s.attr_int(fs, "online")
        if online:
            out.append(s)
    return out


def voltage_unit(raw: int) -> tuple[str, float]:
    """``("uV", 1e-6)`` if ``|raw| > 100000`` else ``("mV", 1e-3)`` (module docstring)."""
    return ("uV", 1e-6) if abs(raw) > 100_000 else ("mV", 1e-3)


def current_unit(raw: int, volt_unit: str) -> tuple[str, float]:
    """The unit of ``current_now`` given the voltage's unit (rule in the module docstring).

    Returns:
        ``("uA", 1e-6)`` or ``("mA", 1e-3)``.
    """
    mag = abs(raw)
    if volt_unit == "uV":
        return ("mA", 1e-3) if 0 < mag < 10_000 else ("uA", 1e-6)
    return ("uA", 1e-6) if mag >= 10_000 else ("mA", 1e-3)


def sign_convention(status: str | None, current_raw: int | None) -> str:
    """``"discharge_negative"``, ``"discharge_positive"`` or ``"unknown"`` from ``status``
    and the sign of ``current_now`` (module docstring)."""
    if not current_raw or status not in ("Discharging", "Charging"):
        return "unknown"
    negative = current_raw < 0
    if status == "Discharging":
        return "discharge_negative" if negative else "discharge_positive"
    return "discharge_positive" if negative else "discharge_negative"


def is_charging(status: str | None, charger_online: bool) -> bool:
    """True for ``Charging``, or ``Full``/``Not charging`` with a charger online."""
    if status == "Charging":
        return True
    return status in ("Full", "Not charging") and charger_online


def _int_of(read: Callable[[], str]) -> int:
    return int(read().split()[0])


class BatterySensor(Sensor):
    """Power drawn from each system battery, in W (see the module docstring for the
    files, unit and sign rules, and ``Probe.details``)."""

    name = "battery"
    kinds: tuple[Kind, ...] = ("power",)

    def __init__(self, fs: SysFS | None = None) -> None:
        super().__init__(fs)
        self._readers: list[Callable[[], float]] = []

    def probe(self) -> Probe:
        """Find the batteries and their units; never raises.

        Returns:
            available with one channel per usable battery (also while charging, with
            ``details["charging"]`` True), or unavailable with ``"no battery in
            /sys/class/power_supply (a desktop, server or VM)"`` or what is missing.
        """
        return self.guarded_probe(self._probe, "power supplies unreadable")

    def _probe(self) -> Probe:
        supplies = list_supplies(self.fs)
        batteries = system_batteries(self.fs, supplies)
        if not batteries:
            return Probe(self.name, False, _NO_BATTERY)
        chargers = online_chargers(self.fs, supplies)
        details: dict[str, Any] = {
            "charging": False,
            "chargers_online": [c.name for c in chargers],
            "batteries": {},
            "skipped": {},
        }
        found: list[tuple[str, str]] = []
        for bat in batteries:
            info = self._open_battery(bat, bool(chargers))
            if isinstance(info, str):
                details["skipped"][bat.name] = info
                continue
            name = f"battery:{bat.name}"
            details["batteries"][name] = info
            details["charging"] = details["charging"] or info["charging"]
            how = "power_now" if info["method"] == "power_now" else "|current_now| x voltage_now"
            found.append((name, f"battery {bat.name} ({how})"))
        if not found:
            why = "; ".join(f"{k}: {v}" for k, v in details["skipped"].items())
            reason = f"battery without a usable power reading ({why})"
            return Probe(self.name, False, reason, details=details)
        channels = [
            Channel(name=n, kind="power", label=lab, scope="board", total=len(found) == 1)
            for n, lab in found
        ]
        first = details["batteries"][channels[0].name]
        for key in ("method", "voltage_unit", "current_unit", "power_unit", "sign_convention"):
            details[key] = first[key]
        reason = ", ".join(
            f"battery {v['supply']}: {v['method']}" for v in details["batteries"].values()
        )
        if details["charging"]:
            reason += " - charging: the battery does not measure the device's draw now"
        return Probe(self.name, True, reason, tuple(channels), details)

    def _open_battery(self, bat: PowerSupply, charger_online: bool) -> dict[str, Any] | str:
        """Open the battery's files and decide units; details, or why it is unusable."""
        fs = self.fs
        status = bat.attr_text(fs, "status")
        opened: dict[str, tuple[Callable[[], str], Callable[[], None]]] = {}
        raw: dict[str, int] = {}
        for attr in ("power_now", "current_now", "voltage_now"):
            try:
                read, close = fs.reader(f"{bat.path}/{attr}")
            except OSError:
                continue
            try:
                raw[attr] = _int_of(read)
            except (OSError, ValueError, IndexError):
                close()
                continue
            opened[attr] = (read, close)

        v_unit = c_unit = p_unit = None
        v_scale = c_scale = 0.0
        if "voltage_now" in raw:
            v_unit, v_scale = voltage_unit(raw["voltage_now"])
            if "current_now" in raw:
                c_unit, c_scale = current_unit(raw["current_now"], v_unit)

        use: tuple[str, ...]
        if "power_now" in opened:
            method, use, p_unit = "power_now", ("power_now",), "uW"
            p_read = opened["power_now"][0]

            def value() -> float:
                return abs(_int_of(p_read)) * 1e-6

        elif "current_now" in opened and "voltage_now" in opened:
            method, use = "current_now*voltage_now", ("current_now", "voltage_now")
            i_read, v_read = opened["current_now"][0], opened["voltage_now"][0]
            cs, vs = c_scale, v_scale

            def value() -> float:
                return abs(_int_of(i_read)) * cs * abs(_int_of(v_read)) * vs

        else:
            for _, close in opened.values():
                close()
            return "no readable power_now, nor current_now and voltage_now"

        for attr, (_, close) in opened.items():
            if attr in use:
                self._closers.append(close)
            else:
                close()
        self._readers.append(value)
        capacity = bat.attr_int(fs, "capacity")
        return {
            "supply": bat.name,
            "method": method,
            "status": status,
            "charging": is_charging(status, charger_online),
            "capacity_pct": capacity,
            "voltage_unit": v_unit,
            "current_unit": c_unit,
            "power_unit": p_unit,
            "sign_convention": sign_convention(status, raw.get("current_now")),
            "raw_at_probe": raw,
        }

    def read(self) -> Sequence[float | None]:
        """One power per channel in W, positive (None: this read failed)."""
        out: list[float | None] = []
        for value in self._readers:
            try:
                out.append(value())
            except (OSError, ValueError, IndexError):
                out.append(None)
        return out

    def close(self) -> None:
        """Close the files opened by :meth:`probe`."""
        super().close()
        self._readers = []
