"""Current CPU clock frequencies from cpufreq (``/sys/devices/system/cpu``).

Source: https://www.kernel.org/doc/html/latest/admin-guide/pm/cpufreq.html. CPUs that
share a clock belong to one *policy*, ``/sys/devices/system/cpu/cpufreq/policy<N>/``
(``N`` is the policy's first CPU; ``related_cpus`` lists all its CPUs, online or not), and
``cpu<N>/cpufreq`` is a link to the CPU's policy. Frequencies in these files are in kHz.

Channels (kind ``frequency``, unit MHz = kHz / 1000, scope ``"cpu"``):

- one per policy, ``"cpufreq:policy<N>"``, labelled with its CPUs, when policy
  directories exist (one file read per cluster instead of one per CPU);
- else one per CPU that has a ``cpu<N>/cpufreq`` directory, ``"cpufreq:cpu<N>"`` (old
  kernels).

The value read is ``scaling_cur_freq`` (the frequency the governor last set, or the
hardware's estimate with ``intel_pstate``/``amd-pstate``), else ``cpuinfo_cur_freq`` (the
hardware's, often root-only). A policy whose CPUs are all offline answers ``EBUSY``: it is
skipped at probe time (``Probe.details["skipped"]``), and a failed read later gives None.

``Probe.details["channels"][name]`` records the policy's ``cpus``, ``min_mhz``
(``scaling_min_freq``), ``max_mhz`` (``scaling_max_freq``, the current limit: thermal
capping lowers it), ``cpuinfo_min_mhz``/``cpuinfo_max_mhz`` (the hardware limits),
``governor``, ``driver`` and ``source`` (the file read); None where a file is missing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from meltbench.sensors.base import Channel, Kind, Probe, Sensor
from meltbench.sensors.sysfs import SysFS

__all__ = [
    "CPU_DIR",
    "CpuFreqDomain",
    "CpuFreqSensor",
    "find_domains",
    "format_cpu_list",
    "parse_cpu_list",
]

#: the CPU directory, relative to the root
CPU_DIR = "sys/devices/system/cpu"

_NO_CPUFREQ = (
    "no cpufreq in /sys/devices/system/cpu: a VM or a kernel without CPU frequency scaling"
)
_POLICY_RE = re.compile(r"^policy(\d+)$")
_CPU_RE = re.compile(r"^cpu(\d+)$")


def parse_cpu_list(text: str | None) -> list[int]:
    """CPU numbers from a cpufreq/cpumask list: ``"0 1 2 3"``, ``"0-3"``, ``"0-3,6"``.

    Returns:
        sorted CPU numbers; ``[]`` for None, empty or malformed text.
    """
    cpus: set[int] = set()
    for part in (text or "").replace(",", " ").split():
        try:
            if "-" in part:
                lo, hi = part.split("-", 1)
                cpus.update(range(int(lo), int(hi) + 1))
            else:
                cpus.add(int(part))
        except ValueError:
            return []
    return sorted(cpus)


def format_cpu_list(cpus: Sequence[int]) -> str:
    """Compact ranges: ``[0, 1, 2, 3, 6]`` -> ``"0-3,6"``."""
    out: list[str] = []
    ordered = sorted(cpus)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


@dataclass(frozen=True)
class CpuFreqDomain:
    """One frequency domain: a policy (``key="policy4"``) or, without policies, a CPU.

    Attributes:
        key: ``"policy<N>"`` or ``"cpu<N>"``.
        path: its cpufreq directory relative to the root.
        cpus: the CPUs it clocks (``related_cpus`` of a policy; ``[N]`` for a CPU).
    """

    key: str
    path: str
    cpus: tuple[int, ...]


def find_domains(fs: SysFS) -> list[CpuFreqDomain]:
    """The policies under ``cpu/cpufreq``, else the CPUs with a ``cpufreq`` directory.

    Sorted by number. Never raises for missing files; other read errors of
    ``related_cpus`` give the policy's own number as its only CPU.
    """
    policies: list[tuple[int, str]] = sorted(
        (int(m.group(1)), e) for e in fs.listdir(f"{CPU_DIR}/cpufreq") if (m := _POLICY_RE.match(e))
    )
    domains: list[CpuFreqDomain] = []
    for num, entry in policies:
        path = f"{CPU_DIR}/cpufreq/{entry}"
        try:
            cpus = parse_cpu_list(fs.read_text(f"{path}/related_cpus"))
        except OSError:
            cpus = []
        domains.append(CpuFreqDomain(entry, path, tuple(cpus or [num])))
    if domains:
        return domains
    cpus_found = sorted(
        (int(m.group(1)), e) for e in fs.listdir(CPU_DIR) if (m := _CPU_RE.match(e))
    )
    for num, entry in cpus_found:
        path = f"{CPU_DIR}/{entry}/cpufreq"
        if fs.listdir(path):
            domains.append(CpuFreqDomain(entry, path, (num,)))
    return domains


def _mhz(fs: SysFS, rel: str) -> float | None:
    """A kHz file as MHz; None if missing, unreadable or not an integer."""
    try:
        khz = fs.read_int(rel)
    except OSError:
        return None
    return None if khz is None else khz / 1000.0


def _text(fs: SysFS, rel: str) -> str | None:
    try:
        return fs.read_text(rel)
    except OSError:
        return None


class CpuFreqSensor(Sensor):
    """Current frequency of each cpufreq policy (or CPU), in MHz.

    See the module docstring for the channels, the files read and ``Probe.details``.
    """

    name = "cpufreq"
    kinds: tuple[Kind, ...] = ("frequency",)

    def __init__(self, fs: SysFS | None = None) -> None:
        super().__init__(fs)
        self._readers: list[Callable[[], str]] = []

    def probe(self) -> Probe:
        """Find the frequency domains; never raises.

        Returns:
            available with one channel per readable policy (or CPU), or unavailable with
            ``"no cpufreq in /sys/devices/system/cpu: ..."`` or the read errors.
        """
        return self.guarded_probe(self._probe, "cpufreq unreadable")

    def _probe(self) -> Probe:
        domains = find_domains(self.fs)
        if not domains:
            return Probe(self.name, False, _NO_CPUFREQ)
        channels: list[Channel] = []
        details: dict[str, Any] = {
            "layout": "policy" if domains[0].key.startswith("policy") else "cpu",
            "channels": {},
            "skipped": {},
        }
        for dom in domains:
            opened = self._open_current(dom.path)
            if isinstance(opened, str):
                details["skipped"][dom.key] = opened
                continue
            source, read, close = opened
            self._readers.append(read)
            self._closers.append(close)
            name = f"cpufreq:{dom.key}"
            cpus = format_cpu_list(dom.cpus)
            label = f"CPU {cpus}" if len(dom.cpus) == 1 else f"CPUs {cpus}"
            if dom.key.startswith("policy"):
                label += f" ({dom.key})"
            channels.append(Channel(name=name, kind="frequency", label=label, scope="cpu"))
            p = dom.path
            details["channels"][name] = {
                "cpus": list(dom.cpus),
                "min_mhz": _mhz(self.fs, f"{p}/scaling_min_freq"),
                "max_mhz": _mhz(self.fs, f"{p}/scaling_max_freq"),
                "cpuinfo_min_mhz": _mhz(self.fs, f"{p}/cpuinfo_min_freq"),
                "cpuinfo_max_mhz": _mhz(self.fs, f"{p}/cpuinfo_max_freq"),
                "governor": _text(self.fs, f"{p}/scaling_governor"),
                "driver": _text(self.fs, f"{p}/scaling_driver"),
                "source": source,
            }
        what = "policies" if details["layout"] == "policy" else "CPUs"
        if not channels:
            return Probe(
                self.name,
                False,
                f"{len(domains)} cpufreq {what}, no current frequency readable",
                details=details,
            )
        reason = f"{len(channels)} cpufreq {what}"
        if details["skipped"]:
            reason += f" ({len(details['skipped'])} unreadable, skipped)"
        return Probe(self.name, True, reason, tuple(channels), details)

    def _open_current(self, path: str) -> tuple[str, Callable[[], str], Callable[[], None]] | str:
        """``(file, read, close)`` of the first readable current-frequency file, or why not."""
        errors: list[str] = []
        for fname in ("scaling_cur_freq", "cpuinfo_cur_freq"):
            try:
                read, close = self.fs.reader(f"{path}/{fname}")
            except FileNotFoundError:
                continue
            except OSError as exc:
                errors.append(f"{fname}: {exc.strerror or exc!r}")
                continue
            try:
                int(read().split()[0])
            except (OSError, ValueError, IndexError) as exc:
                close()
                errors.append(f"{fname}: {getattr(exc, 'strerror', None) or exc!r}")
                continue
            return fname, read, close
        return "; ".join(errors) or "no scaling_cur_freq or cpuinfo_cur_freq"

    def read(self) -> Sequence[float | None]:
        """One frequency per channel in MHz (None: this read failed)."""
        out: list[float | None] = []
        for read in self._readers:
            try:
                out.append(int(read().split()[0]) / 1000.0)
            except (OSError, ValueError, IndexError):
                out.append(None)
        return out

    def close(self) -> None:
        """Close the files opened by :meth:`probe`."""
        super().close()
        self._readers = []
