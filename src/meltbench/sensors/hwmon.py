"""Temperatures, power and energy of generic Linux hwmon chips (``/sys/class/hwmon``).

Attribute names and units follow the kernel's hwmon sysfs ABI
(https://docs.kernel.org/hwmon/sysfs-interface.html):

- ``temp<N>_input``: millidegree Celsius -> C; ``temp<N>_label`` names it;
- ``power<N>_input`` (instantaneous) or ``power<N>_average``: microwatt -> W;
- ``energy<N>_input``: cumulative microjoule -> J (a counter, not known to wrap);
- ``name``: the chip (``coretemp``, ``k10temp``, ``amdgpu``, ``nvme``, ``i915``...).

Chips read elsewhere are skipped: ``ina3221`` (the Jetson sensor owns its rails) and the
hwmon mirrors of thermal zones that the thermal core registers under
``/sys/devices/virtual/thermal/thermal_zone<N>/`` (the thermal sensor reads those).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from meltbench.sensors.base import Channel, Kind, Probe, Sensor
from meltbench.sensors.sysfs import SysFS

__all__ = ["CPU_CHIPS", "GPU_CHIPS", "SKIPPED_CHIPS", "HwmonSensor"]

CLASS_HWMON = "sys/class/hwmon"

#: chips whose channels get scope "gpu"
GPU_CHIPS = frozenset({"amdgpu", "radeon", "nouveau", "i915", "xe"})
#: chips of the CPU package (temperatures and power get scope "cpu-package"; coretemp's
#: per-core "Core N" temperatures get "cpu-core")
CPU_CHIPS = frozenset({"coretemp", "k10temp", "k8temp", "zenpower", "fam15h_power"})
#: chips read by another sensor
SKIPPED_CHIPS = {"ina3221": "read by the jetson sensor"}

_ATTR = re.compile(r"^(temp|power|energy)(\d+)_(input|average)$")
_HWMON = re.compile(r"^hwmon(\d+)$")
_KIND: dict[str, Kind] = {"temp": "temperature", "power": "power", "energy": "energy"}
#: divisor from the sysfs unit to the channel unit (mC -> C, uW -> W, uJ -> J)
_DIVISOR = {"temp": 1000, "power": 1e6, "energy": 1e6}
_KIND_ORDER = {"temp": 0, "power": 1, "energy": 2}


@dataclass
class _Input:
    chip: str
    prefix: str  # temp | power | energy
    n: int
    attr: str  # file name
    label: str


def _scope(chip: str, prefix: str, label: str) -> str:
    if chip in GPU_CHIPS:
        return "gpu"
    if chip in CPU_CHIPS:
        if chip == "coretemp" and label.startswith("Core "):
            return "cpu-core"
        return "cpu-package"
    return ""


class HwmonSensor(Sensor):
    """Every readable temperature (C), power (W) and energy (J) input of hwmon chips.

    Channel names are ``hwmon:<chip>/<label>``, the label from ``<attr>_label`` or else
    ``temp1``, ``power1``...; a chip name found twice gets ``-1``, ``-2``... from the
    second one on (``hwmon:nvme-1/Composite``), and a repeated label gets ``#<N>``.
    Scopes: ``gpu`` for :data:`GPU_CHIPS`, ``cpu-package`` (``cpu-core`` for coretemp's
    ``Core N``) for :data:`CPU_CHIPS`, else ``""``. No channel is a total.
    """

    name = "hwmon"
    kinds: tuple[Kind, ...] = ("temperature", "power", "energy")

    def __init__(self, fs: SysFS | None = None) -> None:
        super().__init__(fs)
        self._readers: list[tuple[Callable[[], str], float]] = []

    def probe(self) -> Probe:
        """Find the chips and open their input files; never raises.

        Unavailable reasons: no ``/sys/class/hwmon``; chips present but none with a
        readable temperature, power or energy input.
        """
        return self.guarded_probe(self._probe, "hwmon probe failed")

    def _inputs(self, rel: str, chip: str) -> list[_Input]:
        files = self.fs.listdir(rel)
        found: dict[tuple[str, int], _Input] = {}
        for f in files:
            m = _ATTR.match(f)
            if m is None:
                continue
            prefix, n, which = m.group(1), int(m.group(2)), m.group(3)
            if which == "average" and prefix != "power":
                continue
            key = (prefix, n)
            if key in found and which == "average":  # power<N>_input wins
                continue
            if self.fs.read_int(f"{rel}/{prefix}{n}_enable") == 0:
                continue
            label = (self.fs.read_text(f"{rel}/{prefix}{n}_label") or "").strip()
            found[key] = _Input(chip, prefix, n, f, label or f"{prefix}{n}")
        return sorted(found.values(), key=lambda i: (_KIND_ORDER[i.prefix], i.n))

    def _probe(self) -> Probe:
        if not self.fs.exists(CLASS_HWMON):
            return Probe(
                self.name,
                False,
                "no /sys/class/hwmon: kernel without hwmon drivers, or a container/VM that "
                "hides the hardware sensors",
            )
        entries = sorted(
            (e for e in self.fs.listdir(CLASS_HWMON) if _HWMON.match(e)),
            key=lambda e: int(e[5:]),
        )
        chips: list[str] = []
        skipped: dict[str, str] = {}
        unreadable: dict[str, str] = {}
        channels: list[Channel] = []
        files: dict[str, str] = {}
        seen_chip: dict[str, int] = {}
        used: set[str] = set()
        measured: list[str] = []
        for entry in entries:
            rel = f"{CLASS_HWMON}/{entry}"
            chip = (self.fs.read_text(f"{rel}/name") or "").strip()
            if not chip:
                skipped[entry] = "no name"
                continue
            chips.append(chip)
            if chip in SKIPPED_CHIPS:
                skipped[f"{entry} ({chip})"] = SKIPPED_CHIPS[chip]
                continue
            real = self.fs.path(rel).resolve().as_posix()
            if "/thermal/thermal_zone" in real:
                skipped[f"{entry} ({chip})"] = "mirror of a thermal zone (thermal sensor)"
                continue
            k = seen_chip.get(chip, 0)
            seen_chip[chip] = k + 1
            chip_id = chip if k == 0 else f"{chip}-{k}"
            for inp in self._inputs(rel, chip):
                attr_rel = f"{rel}/{inp.attr}"
                try:
                    read, close = self.fs.reader(attr_rel)
                except OSError as exc:
                    unreadable[attr_rel] = exc.strerror or str(exc)
                    continue
                try:
                    int(read())
                except (OSError, ValueError) as exc:
                    # kept: e.g. a runtime-suspended dGPU answers again once woken
                    unreadable[attr_rel] = f"not readable now: {exc}"
                chan = f"hwmon:{chip_id}/{inp.label}"
                if chan in used:
                    chan = f"{chan}#{inp.n}"
                used.add(chan)
                channels.append(
                    Channel(
                        name=chan,
                        kind=_KIND[inp.prefix],
                        label=f"{chip} {inp.label} ({inp.attr})",
                        scope=_scope(chip, inp.prefix, inp.label),
                    )
                )
                files[chan] = attr_rel
                if chip_id not in measured:
                    measured.append(chip_id)
                self._readers.append((read, _DIVISOR[inp.prefix]))
                self._closers.append(close)

        details: dict[str, object] = {"chips": chips, "files": files}
        if skipped:
            details["skipped"] = skipped
        if unreadable:
            details["unreadable"] = unreadable
        if not channels:
            what = ", ".join(chips) if chips else "no chips"
            return Probe(
                self.name,
                False,
                f"no readable temperature, power or energy input in /sys/class/hwmon ({what})",
                details=details,
            )
        kinds = sorted({c.kind for c in channels})
        reason = f"{len(channels)} hwmon channels ({', '.join(kinds)}) from " + ", ".join(measured)
        return Probe(self.name, True, reason, tuple(channels), details)

    def read(self) -> Sequence[float | None]:
        """Each input in its channel unit (C, W, J); None if unreadable this time."""
        out: list[float | None] = []
        for read, divisor in self._readers:
            try:
                out.append(int(read()) / divisor)
            except (OSError, ValueError):
                out.append(None)
        return out

    def close(self) -> None:
        """Close the files opened by :meth:`probe`."""
        super().close()
        self._readers = []
