"""The device's state before a run: battery, charger, CPU governors, Jetson power mode,
thermal throttling counters.

Everything is read through a :class:`SysFS`; a value the device does not expose is None,
never guessed. Sources:

- battery and chargers: ``/sys/class/power_supply`` (see :mod:`meltbench.sensors.battery`;
  https://www.kernel.org/doc/html/latest/power/power_supply_class.html);
- governors: cpufreq policies (see :mod:`meltbench.sensors.cpufreq`;
  https://www.kernel.org/doc/html/latest/admin-guide/pm/cpufreq.html);
- Jetson power mode: ``/var/lib/nvpmodel/status`` (written by ``nvpmodel``, e.g.
  ``pmode:0002 fmode:quiet``) and ``/etc/nvpmodel.conf`` (``< POWER_MODEL ID=2 NAME=15W >``,
  ``< PM_CONFIG DEFAULT=2 >``), as documented in NVIDIA's Jetson Linux Developer Guide,
  "Power Management";
- Intel thermal throttling counters:
  ``/sys/devices/system/cpu/cpu<N>/thermal_throttle/{core,package}_throttle_count``
  (events since boot; the kernel's ``Documentation/ABI/testing/sysfs-devices-system-cpu``,
  written by ``drivers/thermal/intel/therm_throt.c``).
"""

from __future__ import annotations

import re
from typing import Any

from meltbench.sensors.battery import (
    charger_kind,
    is_charging,
    list_supplies,
    online_chargers,
    system_batteries,
)
from meltbench.sensors.cpufreq import CPU_DIR, find_domains
from meltbench.sensors.sysfs import SysFS

__all__ = [
    "NVPMODEL_CONF",
    "NVPMODEL_STATUS",
    "charging_invalidates_energy",
    "parse_nvpmodel_conf",
    "parse_nvpmodel_status",
    "read_device_state",
]

NVPMODEL_STATUS = "var/lib/nvpmodel/status"
NVPMODEL_CONF = "etc/nvpmodel.conf"

_KNOWN_STATUS = ("Charging", "Discharging", "Full", "Not charging")
_SOURCE_ORDER = ("ac", "usb", "wireless")
_POWER_MODEL_RE = re.compile(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)\s*>")
_PM_DEFAULT_RE = re.compile(r"<\s*PM_CONFIG\s+DEFAULT=(\d+)\s*>")
_CPU_RE = re.compile(r"^cpu(\d+)$")


def parse_nvpmodel_status(text: str) -> dict[str, Any] | None:
    """``"pmode:0002 fmode:quiet"`` -> ``{"mode_id": 2, "fan_mode": "quiet"}``.

    Returns:
        ``mode_id`` (int) and ``fan_mode`` (str or None); None without a numeric
        ``pmode``.
    """
    fields: dict[str, str] = {}
    for token in text.split():
        key, sep, value = token.partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()
    try:
        mode_id = int(fields["pmode"])
    except (KeyError, ValueError):
        return None
    return {"mode_id": mode_id, "fan_mode": fields.get("fmode") or None}


def parse_nvpmodel_conf(text: str) -> tuple[dict[int, str], int | None]:
    """The power modes of an ``nvpmodel.conf``: ``({id: name}, default id or None)``."""
    modes = {int(m.group(1)): m.group(2) for m in _POWER_MODEL_RE.finditer(text)}
    default = _PM_DEFAULT_RE.search(text)
    return modes, int(default.group(1)) if default else None


def read_device_state(fs: SysFS) -> dict[str, Any]:
    """The device state under ``fs``; never raises (read errors become ``notes``).

    Returns:
        A dict with these keys (None where the device does not expose the value):

        - ``battery_level_pct`` (int): ``capacity`` of the first system battery;
        - ``charging`` (bool): True if a battery's ``status`` is ``Charging``, or ``Full``/
          ``Not charging`` with a charger online; False if the status says otherwise; with
          no known status, whether a charger is ``online`` (None without chargers); None
          without a battery;
        - ``power_source``: ``"battery"`` when a battery is discharging (even with a
          charger plugged in that does not keep up), else the online charger's kind,
          ``"ac"`` (``Mains``), ``"usb"`` (``USB*``) or ``"wireless"`` (in this order of
          preference), else ``"battery"`` when there is a battery, else None;
        - ``governors`` (dict ``"policy<N>"``/``"cpu<N>"`` -> governor name);
        - ``governor``: the governor when all are equal, else ``"mixed"``;
        - ``nvpmodel`` (Jetson): ``{"mode_id", "mode_name", "fan_mode",
          "default_mode_id"}`` (``mode_name``/``default_mode_id`` from
          ``/etc/nvpmodel.conf``, None when not found there);
        - ``thermal_throttle_count`` (int): Intel's thermal throttling events since boot:
          ``core_throttle_count`` summed over CPUs plus ``package_throttle_count`` once per
          physical package (every CPU of a package shows the same package counter);
        - ``notes`` (list of str): what the caller should know (charging, several
          batteries, unreadable parts).
    """
    state: dict[str, Any] = {
        "battery_level_pct": None,
        "charging": None,
        "power_source": None,
        "governors": None,
        "governor": None,
        "nvpmodel": None,
        "thermal_throttle_count": None,
        "notes": [],
    }
    notes: list[str] = state["notes"]
    for part, fn in (
        ("power supplies", _power_state),
        ("cpufreq governors", _governors),
        ("nvpmodel", _nvpmodel),
        ("thermal_throttle counters", _throttle_count),
    ):
        try:
            fn(fs, state, notes)
        except Exception as exc:  # never raise: record what failed
            notes.append(f"{part} unreadable: {exc!r}")
    return state


def charging_invalidates_energy(state: dict[str, Any]) -> bool:
    """True when battery readings do not measure the device's draw: the battery is
    charging (``state["charging"]``), or a device with a battery runs from a charger
    (``power_source`` ``"ac"``/``"usb"``/``"wireless"``)."""
    if state.get("charging") is True:
        return True
    return state.get("battery_level_pct") is not None and state.get("power_source") in (
        _SOURCE_ORDER
    )


def _power_state(fs: SysFS, state: dict[str, Any], notes: list[str]) -> None:
    supplies = list_supplies(fs)
    batteries = system_batteries(fs, supplies)
    chargers = [s for s in supplies if charger_kind(s.type) is not None]
    online = online_chargers(fs, supplies)
    kinds_online = {charger_kind(s.type) for s in online}
    online_source = next((k for k in _SOURCE_ORDER if k in kinds_online), None)
    if not batteries:
        state["power_source"] = online_source
        return
    if len(batteries) > 1:
        names = ", ".join(b.name for b in batteries)
        notes.append(f"{len(batteries)} batteries ({names}): level of {batteries[0].name}")
    state["battery_level_pct"] = batteries[0].attr_int(fs, "capacity")
    statuses = [b.attr_text(fs, "status") for b in batteries]
    if any(is_charging(st, bool(online)) for st in statuses):
        state["charging"] = True
    elif any(st in _KNOWN_STATUS for st in statuses):
        state["charging"] = False
    elif chargers:
        state["charging"] = bool(online)
    if "Discharging" in statuses and not state["charging"]:
        state["power_source"] = "battery"
    else:
        state["power_source"] = online_source or "battery"
    if state["charging"]:
        why = ", ".join(st or "?" for st in statuses)
        via = f", {online_source} online" if online_source else ""
        notes.append(
            f"charging (status {why}{via}): battery power does not measure the device's "
            "draw and energy from the battery is invalid"
        )


def _governors(fs: SysFS, state: dict[str, Any], notes: list[str]) -> None:
    governors: dict[str, str] = {}
    for dom in find_domains(fs):
        try:
            gov = fs.read_text(f"{dom.path}/scaling_governor")
        except OSError:
            gov = None
        if gov:
            governors[dom.key] = gov
    if not governors:
        return
    state["governors"] = governors
    distinct = set(governors.values())
    state["governor"] = distinct.pop() if len(distinct) == 1 else "mixed"


def _nvpmodel(fs: SysFS, state: dict[str, Any], notes: list[str]) -> None:
    status = fs.read_text(NVPMODEL_STATUS)
    conf = fs.read_text(NVPMODEL_CONF)
    if status is None:
        if conf is not None:
            notes.append(
                "/etc/nvpmodel.conf exists but /var/lib/nvpmodel/status does not: power mode "
                "unknown (`nvpmodel -q` tells it)"
            )
        return
    parsed = parse_nvpmodel_status(status)
    if parsed is None:
        notes.append(f"/var/lib/nvpmodel/status not understood: {status!r}")
        return
    modes, default = parse_nvpmodel_conf(conf) if conf is not None else ({}, None)
    state["nvpmodel"] = {
        "mode_id": parsed["mode_id"],
        "mode_name": modes.get(parsed["mode_id"]),
        "fan_mode": parsed["fan_mode"],
        "default_mode_id": default,
    }


def _throttle_count(fs: SysFS, state: dict[str, Any], notes: list[str]) -> None:
    core_total = 0
    packages: dict[str, int] = {}
    found = False
    for entry in fs.listdir(CPU_DIR):
        if not _CPU_RE.match(entry):
            continue
        base = f"{CPU_DIR}/{entry}/thermal_throttle"
        for fname in fs.listdir(base):
            if not fname.endswith("_throttle_count"):
                continue
            try:
                count = fs.read_int(f"{base}/{fname}")
            except OSError:
                continue
            if count is None:
                continue
            found = True
            if fname.startswith("package_"):
                try:
                    pkg = fs.read_text(f"{CPU_DIR}/{entry}/topology/physical_package_id")
                except OSError:
                    pkg = None
                key = f"{pkg or '?'}:{fname}"
                packages[key] = max(packages.get(key, 0), count)
            else:
                core_total += count
    if found:
        state["thermal_throttle_count"] = core_total + sum(packages.values())
