"""Energy and power sensors (RAPL, NVML, Jetson INA3221, hwmon) on replayed sysfs trees.

The fixture trees under ``tests/fixtures/sysfs/{rapl,jetson,hwmon}_*`` are hand-made (their
``timeline.json`` says so): layouts follow the kernel ABI and NVIDIA's documentation, and
every expected value below is computed by hand from the fixture's numbers.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from meltbench.sensors.hwmon import HwmonSensor
from meltbench.sensors.jetson import JetsonPowerSensor
from meltbench.sensors.nvml import NO_DRIVER_REASON, NOT_INSTALLED_REASON, NvmlSensor
from meltbench.sensors.rapl import RaplSensor
from meltbench.sensors.sysfs import SysFS
from tests.sysfs_replay import SysfsReplay

PKG_WRAP_J = 262143.32885  # max_energy_range_uj 262143328850 / 1e6
DRAM_WRAP_J = 65532.610987  # max_energy_range_uj 65532610987 / 1e6


def _replay(name: str, tmp_path: Path) -> SysfsReplay:
    return SysfsReplay(name, tmp_path)


def _read_ticks(sensor: Any, replay: SysfsReplay) -> list[list[float | None]]:
    rows = []
    for i in range(len(replay.ticks)):
        replay.apply(i)
        rows.append(list(sensor.read()))
    return rows


# -- RAPL ------------------------------------------------------------------------------


def test_rapl_channels_of_a_server_package_with_core_and_dram(tmp_path):
    replay = _replay("rapl_wrap", tmp_path)
    probe = RaplSensor(replay.fs).probe()
    assert probe.available, probe.reason
    assert [c.to_dict() for c in probe.channels] == [
        {
            "name": "rapl:package-0",
            "kind": "energy",
            "unit": "J",
            "label": "CPU package (RAPL package-0)",
            "scope": "cpu-package",
            "wrap_j": PKG_WRAP_J,
            "total": False,
            "overlaps": [],
        },
        {
            "name": "rapl:package-0/core",
            "kind": "energy",
            "unit": "J",
            "label": "CPU cores (RAPL core)",
            "scope": "cpu-core",
            "wrap_j": PKG_WRAP_J,
            "total": False,
            "overlaps": ["rapl:package-0"],
        },
        {
            # DRAM is a subzone in sysfs but not inside the package's energy
            "name": "rapl:package-0/dram",
            "kind": "energy",
            "unit": "J",
            "label": "DRAM (RAPL dram)",
            "scope": "dram",
            "wrap_j": DRAM_WRAP_J,
            "total": False,
            "overlaps": [],
        },
    ]
    assert probe.details["files"]["rapl:package-0/dram"] == (
        "sys/class/powercap/intel-rapl:0:1/energy_uj"
    )


def test_rapl_reads_raw_joules_and_the_package_counter_wraps(tmp_path):
    replay = _replay("rapl_wrap", tmp_path)
    sensor = RaplSensor(replay.fs)
    sensor.probe()
    rows = _read_ticks(sensor, replay)
    sensor.close()
    assert rows == [
        [262110.0, 100000.0, 1000.0],
        [262130.0, 100015.0, 1002.5],
        [6.67115, 100030.0, 1005.0],  # package wrapped: 262150 J - 262143.32885 J
        [26.67115, 100045.0, 1007.5],
    ]
    # raw values, not unwrapped; unwrapping with wrap_j recovers 20 J (40 W x 0.5 s)
    assert rows[2][0] < rows[1][0]
    assert rows[2][0] + PKG_WRAP_J - rows[1][0] == pytest.approx(20.0, abs=1e-9)


def test_rapl_laptop_psys_is_the_total_and_the_mmio_duplicate_is_skipped(tmp_path):
    replay = _replay("rapl_laptop", tmp_path)
    sensor = RaplSensor(replay.fs)
    probe = sensor.probe()
    assert probe.available, probe.reason
    by_name = {c.name: c for c in probe.channels}
    assert list(by_name) == [
        "rapl:package-0",
        "rapl:package-0/core",
        "rapl:package-0/uncore",
        "rapl:psys",
    ]
    assert by_name["rapl:package-0/uncore"].scope == "soc"
    assert by_name["rapl:package-0/uncore"].overlaps == ("rapl:package-0",)
    psys = by_name["rapl:psys"]
    assert (psys.scope, psys.total) == ("board", True)
    assert set(psys.overlaps) == {"rapl:package-0", "rapl:package-0/core", "rapl:package-0/uncore"}
    assert [c.name for c in probe.channels if c.total] == ["rapl:psys"]
    assert "sys/class/powercap/intel-rapl-mmio:0" in probe.details["skipped"]
    assert probe.details["control_types"] == ["intel-rapl", "intel-rapl-mmio"]
    assert _read_ticks(sensor, replay) == [
        [5000.0, 2000.0, 300.0, 9000.0],
        [5012.5, 2009.0, 301.25, 9021.0],
    ]


def test_rapl_without_powercap(tmp_path):
    probe = RaplSensor(SysFS(tmp_path)).probe()
    assert not probe.available
    assert probe.reason == (
        "no /sys/class/powercap: kernel without powercap, not x86 RAPL hardware, "
        "or a VM that hides it"
    )
    assert probe.channels == ()


def test_rapl_with_powercap_but_no_rapl_zone(tmp_path):
    (tmp_path / "sys/class/powercap/dtpm").mkdir(parents=True)
    probe = RaplSensor(SysFS(tmp_path)).probe()
    assert not probe.available
    assert "no RAPL zone" in probe.reason and "dtpm" in probe.reason


def _deny_unreadable_files_even_to_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``SysFS.reader`` refuse files with no read bit, as the kernel does to non-root.

    The tests may run as root, which ``chmod 000`` does not stop; an unprivileged user
    gets ``EACCES`` from ``open()``, which is what this raises.
    """
    if os.geteuid() != 0:
        return
    real_reader = SysFS.reader

    def reader(self: SysFS, rel: str) -> Any:
        path = self.path(rel)
        if path.exists() and os.stat(path).st_mode & 0o444 == 0:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_reader(self, rel)

    monkeypatch.setattr(SysFS, "reader", reader)


def test_rapl_root_only_energy_uj_gives_the_platypus_reason(tmp_path, monkeypatch):
    replay = _replay("rapl_wrap", tmp_path)
    for zone in ("intel-rapl:0", "intel-rapl:0:0", "intel-rapl:0:1"):
        replay.fs.path(f"sys/class/powercap/{zone}/energy_uj").chmod(0o000)
    _deny_unreadable_files_even_to_root(monkeypatch)
    probe = RaplSensor(replay.fs).probe()
    assert not probe.available
    assert "root only" in probe.reason
    assert "5.10" in probe.reason and "CVE-2020-8694" in probe.reason
    assert "sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj" in probe.reason
    assert "udev" in probe.reason
    assert len(probe.details["permission_denied"]) == 3


def test_rapl_unreadable_value_reads_as_none(tmp_path):
    replay = _replay("rapl_wrap", tmp_path)
    sensor = RaplSensor(replay.fs)
    sensor.probe()
    replay.fs.path("sys/class/powercap/intel-rapl:0:1/energy_uj").write_text("\n")
    assert sensor.read() == [262110.0, 100000.0, None]
    sensor.close()
    assert sensor.read() == []


# -- NVML ------------------------------------------------------------------------------


def test_nvml_on_this_machine_without_an_nvidia_driver():
    """Real nvidia-ml-py, real (absent) driver: this machine has no NVIDIA GPU."""
    pytest.importorskip("pynvml")
    sensor = NvmlSensor()
    probe = sensor.probe()
    sensor.close()
    if probe.available:  # pragma: no cover - only on a machine with an NVIDIA GPU
        assert probe.channels
        return
    assert probe.reason == NO_DRIVER_REASON
    assert probe.channels == ()


def test_nvml_without_nvidia_ml_py(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import -> ImportError
    probe = NvmlSensor().probe()
    assert (probe.available, probe.reason) == (False, NOT_INSTALLED_REASON)


class FakeNvml:
    """A minimal stand-in for the ``pynvml`` module (nvidia-ml-py).

    It stands in because no NVIDIA GPU or driver exists on the machine that runs these
    tests; it implements only the calls :class:`NvmlSensor` makes, with the units NVML
    documents (mJ, mW, C, MHz, bytes). A value of None makes the call raise
    ``NVMLError_NotSupported``.
    """

    def __init__(self, gpus: list[dict[str, Any]], init_error: str | None = None) -> None:
        self.gpus = gpus
        self.init_calls = 0
        self.shutdown_calls = 0
        mod = types.ModuleType("pynvml")

        class NVMLError(Exception):
            def __init__(self, value: int = 999) -> None:
                super().__init__(value)
                self.value = value

            def __str__(self) -> str:
                return type(self).__name__.removeprefix("NVMLError_")

        def sub(name: str, code: int) -> type:
            return type(
                f"NVMLError_{name}",
                (NVMLError,),
                {"__init__": lambda s: NVMLError.__init__(s, code)},
            )

        mod.NVMLError = NVMLError
        mod.NVMLError_NotSupported = sub("NotSupported", 3)
        mod.NVMLError_DriverNotLoaded = sub("DriverNotLoaded", 9)
        mod.NVMLError_LibraryNotFound = sub("LibraryNotFound", 12)
        mod.NVMLError_GpuIsLost = sub("GpuIsLost", 15)
        mod.NVML_TEMPERATURE_GPU = 0
        mod.NVML_CLOCK_SM = 1
        mod.NVML_CLOCK_MEM = 2

        def value(i: int, key: str) -> Any:
            v = self.gpus[i][key]
            if v is None:
                raise mod.NVMLError_NotSupported()
            if isinstance(v, BaseException):
                raise v
            return v

        def init() -> None:
            self.init_calls += 1
            if init_error:
                raise getattr(mod, f"NVMLError_{init_error}")()

        def shutdown() -> None:
            self.shutdown_calls += 1

        mod.nvmlInit = init
        mod.nvmlShutdown = shutdown
        mod.nvmlSystemGetDriverVersion = lambda: "550.54.15"
        mod.nvmlDeviceGetCount = lambda: len(self.gpus)
        mod.nvmlDeviceGetHandleByIndex = lambda i: i
        mod.nvmlDeviceGetName = lambda h: self.gpus[h]["name"]
        mod.nvmlDeviceGetTotalEnergyConsumption = lambda h: value(h, "energy_mj")
        mod.nvmlDeviceGetPowerUsage = lambda h: value(h, "power_mw")

        def temperature(h: int, sensor: int) -> int:
            assert sensor == mod.NVML_TEMPERATURE_GPU
            return value(h, "temp_c")

        def clock(h: int, which: int) -> int:
            return value(h, {mod.NVML_CLOCK_SM: "sm_mhz", mod.NVML_CLOCK_MEM: "mem_mhz"}[which])

        mod.nvmlDeviceGetTemperature = temperature
        mod.nvmlDeviceGetClockInfo = clock
        mod.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(
            total=85_520_809_984, free=0, used=value(h, "used_bytes")
        )
        self.module = mod


def _gpu(**over: Any) -> dict[str, Any]:
    gpu = {
        "name": "NVIDIA H100 80GB HBM3",
        "energy_mj": 123456,
        "power_mw": 250000,
        "temp_c": 67,
        "sm_mhz": 1980,
        "mem_mhz": 2619,
        "used_bytes": 123_456_789,
    }
    gpu.update(over)
    return gpu


@pytest.fixture
def fake_nvml(monkeypatch):
    def install(gpus: list[dict[str, Any]], init_error: str | None = None) -> FakeNvml:
        fake = FakeNvml(gpus, init_error)
        monkeypatch.setitem(sys.modules, "pynvml", fake.module)
        return fake

    return install


def test_nvml_channels_and_unit_conversions(fake_nvml):
    fake = fake_nvml([_gpu()])
    sensor = NvmlSensor()
    probe = sensor.probe()
    assert probe.available, probe.reason
    assert [(c.name, c.kind, c.unit, c.scope) for c in probe.channels] == [
        ("nvml:gpu0:energy", "energy", "J", "gpu"),
        ("nvml:gpu0:power", "power", "W", "gpu"),
        ("nvml:gpu0:temp", "temperature", "C", "gpu"),
        ("nvml:gpu0:sm_clock", "frequency", "MHz", "gpu"),
        ("nvml:gpu0:mem_clock", "frequency", "MHz", "gpu"),
        ("nvml:gpu0:memory_used", "memory", "bytes", "gpu"),
    ]
    assert all(c.wrap_j is None and not c.total and not c.overlaps for c in probe.channels)
    assert probe.details["driver_version"] == "550.54.15"
    assert probe.details["gpus"] == [
        {"index": 0, "name": "NVIDIA H100 80GB HBM3", "energy": "counter"}
    ]
    assert sensor.read() == [123.456, 250.0, 67.0, 1980.0, 2619.0, 123456789.0]
    fake.gpus[0].update(energy_mj=124_456, power_mw=312_345, temp_c=71, sm_mhz=1755)
    assert sensor.read() == [124.456, 312.345, 71.0, 1755.0, 2619.0, 123456789.0]
    sensor.close()
    assert (fake.init_calls, fake.shutdown_calls) == (1, 1)
    assert sensor.read() == []


def test_nvml_without_energy_counter_falls_back_to_power(fake_nvml):
    fake_nvml([_gpu(name="Tesla T4", energy_mj=None), _gpu(name="NVIDIA A100-SXM4-40GB")])
    sensor = NvmlSensor()
    probe = sensor.probe()
    names = [c.name for c in probe.channels]
    assert "nvml:gpu0:energy" not in names and "nvml:gpu0:power" in names
    assert "nvml:gpu1:energy" in names
    assert probe.details["gpus"][0]["energy"] == "power only"
    assert probe.details["unsupported"] == {"nvml:gpu0:energy": "NotSupported"}
    assert len(sensor.read()) == len(probe.channels) == 11
    sensor.close()


def test_nvml_read_error_gives_none(fake_nvml):
    fake = fake_nvml([_gpu()])
    sensor = NvmlSensor()
    sensor.probe()
    fake.gpus[0]["power_mw"] = fake.module.NVMLError_GpuIsLost()
    assert sensor.read() == [123.456, None, 67.0, 1980.0, 2619.0, 123456789.0]
    sensor.close()


@pytest.mark.parametrize("error", ["LibraryNotFound", "DriverNotLoaded"])
def test_nvml_no_driver(fake_nvml, error):
    fake = fake_nvml([], init_error=error)
    probe = NvmlSensor().probe()
    assert (probe.available, probe.reason) == (False, NO_DRIVER_REASON)
    assert fake.shutdown_calls == 0


def test_nvml_driver_without_gpus(fake_nvml):
    fake = fake_nvml([])
    probe = NvmlSensor().probe()
    assert not probe.available
    assert probe.reason == "NVIDIA driver 550.54.15 is loaded but NVML sees no GPU"
    assert fake.shutdown_calls == 1


def test_nvml_refuses_a_file_tree_other_than_this_machine(fake_nvml, tmp_path):
    fake = fake_nvml([_gpu()])
    probe = NvmlSensor(SysFS(tmp_path)).probe()
    assert not probe.available and "this machine" in probe.reason
    assert fake.init_calls == 0


# -- Jetson ----------------------------------------------------------------------------


def test_jetson_orin_rails(tmp_path):
    replay = _replay("jetson_orin", tmp_path)
    sensor = JetsonPowerSensor(replay.fs)
    probe = sensor.probe()
    assert probe.available, probe.reason
    assert [(c.name, c.kind, c.scope, c.total, c.overlaps) for c in probe.channels] == [
        ("jetson:VDD_IN", "power", "board", True, ()),
        ("jetson:VDD_CPU_GPU_CV", "power", "rail", False, ("jetson:VDD_IN",)),
        ("jetson:VDD_SOC", "power", "rail", False, ("jetson:VDD_IN",)),
    ]
    assert probe.details["total_rail"] == "jetson:VDD_IN"
    assert probe.details["driver"] == "ina3221 (hwmon)"
    # reached through /sys/bus/i2c/drivers/ina3221 and /sys/class/hwmon: counted once
    assert probe.details["devices"] == ["sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"]
    rows = _read_ticks(sensor, replay)
    sensor.close()
    # W = mV x mA / 1e6, e.g. 5080 mV x 900 mA = 4.572 W
    assert rows == [
        [4.572, 0.80896, 1.62048],
        [7.1008, 2.62496, 2.0224],
        [9.6216, 4.4352, 2.32576],
        [11.6288, 5.544, 2.524],
    ]
    for row in rows:
        assert row[1] + row[2] < row[0]  # the rails are inside VDD_IN
    assert [r[1] for r in rows] == sorted(r[1] for r in rows)  # decode ramps up


def test_jetson_nano_old_iio_driver(tmp_path):
    replay = _replay("jetson_nano_l4t32", tmp_path)
    sensor = JetsonPowerSensor(replay.fs)
    probe = sensor.probe()
    assert probe.available, probe.reason
    assert [(c.name, c.scope, c.total, c.overlaps) for c in probe.channels] == [
        ("jetson:POM_5V_IN", "board", True, ()),
        ("jetson:POM_5V_GPU", "rail", False, ("jetson:POM_5V_IN",)),
        ("jetson:POM_5V_CPU", "rail", False, ("jetson:POM_5V_IN",)),
    ]
    assert probe.details["driver"] == "ina3221x (iio, L4T r32)"
    # the driver's in_power<i>_input, mW / 1000
    assert _read_ticks(sensor, replay) == [[2.6, 0.199, 0.598], [7.165, 2.777, 2.384]]
    sensor.close()


def test_jetson_skips_disabled_and_unconnected_channels(tmp_path):
    replay = _replay("jetson_orin", tmp_path)
    hw = "sys/class/hwmon/hwmon1"
    replay.fs.path(f"{hw}/in3_enable").write_text("0\n")
    replay.fs.path(f"{hw}/in2_label").write_text("NC\n")
    probe = JetsonPowerSensor(replay.fs).probe()
    assert [c.name for c in probe.channels] == ["jetson:VDD_IN"]
    assert "VDD_SOC (1-0040 ch3)" in probe.details["skipped"]


def test_jetson_without_an_input_rail_has_no_total(tmp_path):
    """AGX Orin-like labels: no VDD_IN, so nothing is a total and nothing overlaps."""
    replay = _replay("jetson_orin", tmp_path)
    replay.fs.path("sys/class/hwmon/hwmon1/in1_label").write_text("VDD_GPU_SOC\n")
    probe = JetsonPowerSensor(replay.fs).probe()
    assert probe.available
    assert all(c.scope == "rail" and not c.total and not c.overlaps for c in probe.channels)
    assert probe.details["total_rail"] is None


def test_jetson_found_through_class_hwmon_alone(tmp_path):
    replay = _replay("jetson_orin", tmp_path)
    shutil.rmtree(replay.fs.path("sys/bus"))
    probe = JetsonPowerSensor(replay.fs).probe()
    assert [c.name for c in probe.channels] == [
        "jetson:VDD_IN",
        "jetson:VDD_CPU_GPU_CV",
        "jetson:VDD_SOC",
    ]
    assert probe.details["rails"]["jetson:VDD_IN"] == "1-0040 ch1"


def test_jetson_absent(tmp_path):
    probe = JetsonPowerSensor(SysFS(tmp_path)).probe()
    assert not probe.available
    assert probe.reason.startswith("no INA3221 power monitor: not an NVIDIA Jetson")


# -- hwmon -----------------------------------------------------------------------------


def test_hwmon_laptop_channels(tmp_path):
    replay = _replay("hwmon_laptop", tmp_path)
    sensor = HwmonSensor(replay.fs)
    probe = sensor.probe()
    assert probe.available, probe.reason
    assert [(c.name, c.kind, c.scope) for c in probe.channels] == [
        ("hwmon:amdgpu/edge", "temperature", "gpu"),
        ("hwmon:amdgpu/power1", "power", "gpu"),
        ("hwmon:coretemp/Package id 0", "temperature", "cpu-package"),
        ("hwmon:coretemp/Core 0", "temperature", "cpu-core"),
        ("hwmon:coretemp/Core 1", "temperature", "cpu-core"),
        ("hwmon:nvme/Composite", "temperature", ""),
        ("hwmon:nvme/Sensor 1", "temperature", ""),
    ]
    assert all(not c.total and not c.overlaps and c.wrap_j is None for c in probe.channels)
    assert probe.details["skipped"] == {
        "hwmon0 (acpitz)": "mirror of a thermal zone (thermal sensor)",
        "hwmon4 (ina3221)": "read by the jetson sensor",
    }
    assert probe.details["files"]["hwmon:amdgpu/power1"] == "sys/class/hwmon/hwmon1/power1_average"
    # millidegree C / 1000, microwatt / 1e6
    assert _read_ticks(sensor, replay) == [
        [46.0, 5.12, 52.0, 49.0, 50.0, 38.85, 41.85],
        [49.0, 18.25, 71.0, 69.0, 70.0, 38.85, 41.85],
        [53.0, 24.5, 83.0, 81.0, 82.0, 39.85, 42.85],
    ]
    sensor.close()


def test_hwmon_prefers_power_input_over_average(tmp_path):
    replay = _replay("hwmon_laptop", tmp_path)
    replay.fs.path("sys/class/hwmon/hwmon1/power1_input").write_text("7250000\n")
    sensor = HwmonSensor(replay.fs)
    probe = sensor.probe()
    assert probe.details["files"]["hwmon:amdgpu/power1"] == "sys/class/hwmon/hwmon1/power1_input"
    assert sensor.read()[1] == 7.25
    sensor.close()


def test_hwmon_energy_counter_and_repeated_chips(tmp_path):
    replay = _replay("hwmon_desktop_arc", tmp_path)
    sensor = HwmonSensor(replay.fs)
    probe = sensor.probe()
    assert [(c.name, c.kind, c.unit, c.scope) for c in probe.channels] == [
        ("hwmon:k10temp/Tctl", "temperature", "C", "cpu-package"),
        ("hwmon:k10temp/Tccd1", "temperature", "C", "cpu-package"),
        ("hwmon:i915/energy1", "energy", "J", "gpu"),
        ("hwmon:nvme/Composite", "temperature", "C", ""),
        ("hwmon:nvme-1/Composite", "temperature", "C", ""),
    ]
    rows = _read_ticks(sensor, replay)
    sensor.close()
    # microjoule / 1e6
    assert rows == [
        [45.25, 41.0, 987654.321, 36.85, 40.85],
        [61.875, 58.5, 987744.3215, 36.85, 41.85],
    ]
    assert (rows[1][2] - rows[0][2]) / 0.5 == pytest.approx(180.001)


def test_hwmon_leaves_ina3221_to_the_jetson_sensor(tmp_path):
    replay = _replay("jetson_orin", tmp_path)
    probe = HwmonSensor(replay.fs).probe()
    assert not probe.available
    assert probe.reason == (
        "no readable temperature, power or energy input in /sys/class/hwmon (pwmfan, ina3221)"
    )


def test_hwmon_absent(tmp_path):
    probe = HwmonSensor(SysFS(tmp_path)).probe()
    assert not probe.available
    assert probe.reason.startswith("no /sys/class/hwmon: ")


# -- all of them -----------------------------------------------------------------------


@pytest.mark.parametrize("cls", [RaplSensor, NvmlSensor, JetsonPowerSensor, HwmonSensor])
def test_probing_this_machine_never_raises(cls):
    sensor = cls(SysFS("/"))
    probe = sensor.probe()
    try:
        assert probe.sensor == cls.name
        assert probe.reason
        assert len(sensor.read()) == len(probe.channels)
        if not probe.available:
            assert probe.channels == ()
        assert {c.kind for c in probe.channels} <= set(cls.kinds)
    finally:
        sensor.close()


@pytest.mark.parametrize("cls", [RaplSensor, JetsonPowerSensor, HwmonSensor])
def test_probing_an_empty_tree_is_unavailable_with_a_reason(cls, tmp_path):
    sensor = cls(SysFS(tmp_path))
    probe = sensor.probe()
    assert (probe.available, probe.channels) == (False, ())
    assert probe.reason.startswith("no ")
    assert sensor.read() == []


def test_nvml_skips_a_gpu_it_may_not_open(fake_nvml):
    fake = fake_nvml([_gpu(), _gpu()])
    real = fake.module.nvmlDeviceGetHandleByIndex

    def handle(i: int) -> int:
        if i == 0:
            raise fake.module.NVMLError(4)  # NVML_ERROR_NO_PERMISSION
        return real(i)

    fake.module.nvmlDeviceGetHandleByIndex = handle
    sensor = NvmlSensor()
    probe = sensor.probe()
    assert probe.available
    assert {c.name.split(":")[1] for c in probe.channels} == {"gpu1"}
    assert "nvml:gpu0" in probe.details["unsupported"]
    sensor.close()
