"""NVIDIA GPU energy, power, temperature, clocks and memory through NVML (nvidia-ml-py).

NVML is the driver's management library (``libnvidia-ml.so``, the one ``nvidia-smi``
uses), reached from Python through ``nvidia-ml-py`` (``import pynvml``), which is imported
only inside :meth:`NvmlSensor.probe`. Calls and units, from the NVML API reference
(https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html):

- ``nvmlDeviceGetTotalEnergyConsumption``: mJ since the driver was last loaded, a 64-bit
  counter (Volta and newer; ``NVML_ERROR_NOT_SUPPORTED`` before, then only power is read);
- ``nvmlDeviceGetPowerUsage``: mW for the GPU board and its memory; on Ampere (except
  GA100) and newer an average over 1 s, instantaneous before;
- ``nvmlDeviceGetTemperature(h, NVML_TEMPERATURE_GPU)``: degrees C of the GPU die;
- ``nvmlDeviceGetClockInfo(h, NVML_CLOCK_SM | NVML_CLOCK_MEM)``: MHz;
- ``nvmlDeviceGetMemoryInfo(h).used``: bytes of device memory in use.

GPU ``i`` is NVML's index ``i`` (PCI bus order), which can differ from CUDA's default
device order unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from meltbench.sensors.base import Channel, Kind, Probe, Sensor
from meltbench.sensors.sysfs import SysFS

__all__ = ["NOT_INSTALLED_REASON", "NO_DRIVER_REASON", "NvmlSensor"]

NOT_INSTALLED_REASON = "nvidia-ml-py is not installed: pip install 'meltbench[nvidia]'"
NO_DRIVER_REASON = "no NVIDIA driver (libnvidia-ml.so not found): no NVIDIA GPU on this target"


def _text(value: object) -> str:
    """NVML strings are bytes in older nvidia-ml-py releases and str in newer ones."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class NvmlSensor(Sensor):
    """Per-GPU channels from NVML, all with scope ``"gpu"``.

    Channels of GPU ``i`` (each only if the GPU supports it at probe time):
    ``nvml:gpu<i>:energy`` (J, counter = mJ / 1000, no wrap), ``nvml:gpu<i>:power`` (W =
    mW / 1000), ``nvml:gpu<i>:temp`` (C), ``nvml:gpu<i>:sm_clock`` and
    ``nvml:gpu<i>:mem_clock`` (MHz), ``nvml:gpu<i>:memory_used`` (bytes).

    NVML talks to this machine's driver, not to files, so the sensor is only available
    when ``fs`` is this machine's ``/``.
    """

    name = "nvml"
    kinds: tuple[Kind, ...] = ("energy", "power", "temperature", "frequency", "memory")

    def __init__(self, fs: SysFS | None = None) -> None:
        super().__init__(fs)
        self._nvml: Any = None  # the pynvml module while initialised
        self._getters: list[Callable[[], float]] = []
        self._error: type[BaseException] = Exception

    def probe(self) -> Probe:
        """Initialise NVML and find each GPU's supported readings; never raises.

        Unavailable reasons: the sensor is pointed at another file tree than ``/``;
        nvidia-ml-py is not installed; no NVIDIA driver (``NVMLError_LibraryNotFound`` or
        ``NVMLError_DriverNotLoaded``); another NVML error at init; no GPU; no GPU with a
        supported reading.
        """
        self.close()
        if self.fs.root.resolve() != Path("/").resolve():
            return Probe(
                self.name,
                False,
                f"NVML reads this machine's NVIDIA driver, not files under {self.fs.root}",
            )
        try:
            import pynvml
        except ImportError:
            return Probe(self.name, False, NOT_INSTALLED_REASON)
        try:
            return self._probe(pynvml)
        except Exception as exc:  # a probe never raises
            self.close()
            return Probe(self.name, False, f"NVML probe failed: {type(exc).__name__}: {exc}")

    def _probe(self, nv: Any) -> Probe:
        no_driver = tuple(
            cls
            for cls in (
                getattr(nv, "NVMLError_LibraryNotFound", None),
                getattr(nv, "NVMLError_DriverNotLoaded", None),
            )
            if isinstance(cls, type)
        )
        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            if no_driver and isinstance(exc, no_driver):
                return Probe(self.name, False, NO_DRIVER_REASON, details={"nvml_error": str(exc)})
            return Probe(self.name, False, f"NVML could not start: {exc}")
        self._nvml = nv
        self._error = nv.NVMLError

        driver = _text(nv.nvmlSystemGetDriverVersion())
        count = int(nv.nvmlDeviceGetCount())
        details: dict[str, Any] = {"driver_version": driver, "gpus": []}
        if count == 0:
            self.close()
            return Probe(
                self.name,
                False,
                f"NVIDIA driver {driver} is loaded but NVML sees no GPU",
                details=details,
            )

        channels: list[Channel] = []
        unsupported: dict[str, str] = {}
        for i in range(count):
            try:
                handle = nv.nvmlDeviceGetHandleByIndex(i)
                gpu_name = _text(nv.nvmlDeviceGetName(handle))
            except nv.NVMLError as exc:  # e.g. a GPU this container may not use
                unsupported[f"nvml:gpu{i}"] = str(exc)
                continue
            details["gpus"].append({"index": i, "name": gpu_name})
            candidates: list[tuple[str, Kind, str, Callable[[], float]]] = [
                (
                    "energy",
                    "energy",
                    "energy since driver load",
                    lambda h=handle: nv.nvmlDeviceGetTotalEnergyConsumption(h) / 1000,
                ),
                (
                    "power",
                    "power",
                    "board power",
                    lambda h=handle: nv.nvmlDeviceGetPowerUsage(h) / 1000,
                ),
                (
                    "temp",
                    "temperature",
                    "GPU temperature",
                    lambda h=handle: float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)),
                ),
                (
                    "sm_clock",
                    "frequency",
                    "SM clock",
                    lambda h=handle: float(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
                ),
                (
                    "mem_clock",
                    "frequency",
                    "memory clock",
                    lambda h=handle: float(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM)),
                ),
                (
                    "memory_used",
                    "memory",
                    "device memory used",
                    lambda h=handle: float(nv.nvmlDeviceGetMemoryInfo(h).used),
                ),
            ]
            for suffix, kind, what, getter in candidates:
                chan = f"nvml:gpu{i}:{suffix}"
                try:
                    getter()
                except nv.NVMLError as exc:
                    unsupported[chan] = str(exc)
                    continue
                channels.append(
                    Channel(name=chan, kind=kind, label=f"GPU {i} {gpu_name}: {what}", scope="gpu")
                )
                self._getters.append(getter)
            if f"nvml:gpu{i}:energy" not in unsupported:
                details["gpus"][-1]["energy"] = "counter"
            elif f"nvml:gpu{i}:power" not in unsupported:
                details["gpus"][-1]["energy"] = "power only"
            else:
                details["gpus"][-1]["energy"] = "none"
        if unsupported:
            details["unsupported"] = unsupported
        if not channels:
            self.close()
            return Probe(
                self.name,
                False,
                f"NVML sees {count} GPU(s) but none reports energy, power, temperature, "
                "clocks or memory",
                details=details,
            )
        names = ", ".join(g["name"] for g in details["gpus"])
        return Probe(
            self.name,
            True,
            f"{count} NVIDIA GPU(s) ({names}), driver {driver}: {len(channels)} channels",
            tuple(channels),
            details,
        )

    def read(self) -> Sequence[float | None]:
        """One value per channel in its unit (J, W, C, MHz, bytes); None on an NVML error."""
        out: list[float | None] = []
        for getter in self._getters:
            try:
                out.append(getter())
            except self._error:
                out.append(None)
        return out

    def close(self) -> None:
        """Shut NVML down (``nvmlShutdown``) if :meth:`probe` initialised it."""
        nv, self._nvml = self._nvml, None
        self._getters = []
        if nv is not None:
            try:
                nv.nvmlShutdown()
            except Exception:  # already shut down, driver gone: nothing left to release
                pass
