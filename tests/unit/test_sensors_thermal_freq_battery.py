"""Thermal zones, cpufreq, battery and Apple sensors, and the device state, on hand-made
sysfs fixtures (tests/fixtures/sysfs/{thermal_,cpufreq_,android_,laptop_,jetson_state_}*)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meltbench.registry import SENSORS
from meltbench.sensors.apple import DARWIN_REASON, ApplePowerSensor
from meltbench.sensors.base import Sensor
from meltbench.sensors.battery import BatterySensor, current_unit, sign_convention, voltage_unit
from meltbench.sensors.cpufreq import CpuFreqSensor, format_cpu_list, parse_cpu_list
from meltbench.sensors.device_state import (
    charging_invalidates_energy,
    parse_nvpmodel_conf,
    parse_nvpmodel_status,
    read_device_state,
)
from meltbench.sensors.sysfs import SysFS
from meltbench.sensors.thermal import ThermalZoneSensor, infer_scope, pick_scale
from tests.sysfs_replay import SysfsReplay

ALL = (ThermalZoneSensor, CpuFreqSensor, BatterySensor, ApplePowerSensor)


def write(root: Path, files: dict[str, object]) -> SysFS:
    for rel, value in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"{value}\n")
    return SysFS(root)


# ------------------------------------------------------------------------------ thermal


def test_thermal_phone_channels_scales_and_skips(tmp_path):
    replay = SysfsReplay("thermal_phone", tmp_path)
    sensor = ThermalZoneSensor(replay.fs)
    probe = sensor.probe()
    assert probe.available
    assert [c.name for c in probe.channels] == [
        "thermal:cpu-0-0-usr",
        "thermal:gpuss-0-usr",
        "thermal:battery",
        "thermal:skin-therm",
        "thermal:gpuss-0-usr#6",
    ]
    assert [c.scope for c in probe.channels] == ["cpu", "gpu", "battery", "skin", "gpu"]
    assert all(c.kind == "temperature" and c.unit == "C" for c in probe.channels)
    assert probe.channels[0].label == "cpu-0-0-usr (thermal_zone0)"
    zones = probe.details["zones"]
    assert {n: z["scale"] for n, z in zones.items()} == {
        "thermal:cpu-0-0-usr": "milli-C",
        "thermal:gpuss-0-usr": "milli-C",
        "thermal:battery": "deci-C",
        "thermal:skin-therm": "C",
        "thermal:gpuss-0-usr#6": "milli-C",
    }
    assert zones["thermal:battery"]["raw_at_probe"] == 315
    assert zones["thermal:gpuss-0-usr#6"]["zone"] == "thermal_zone6"
    skipped = probe.details["skipped"]
    assert set(skipped) == {"thermal_zone2", "thermal_zone5"}
    assert "disabled" in skipped["thermal_zone2"]
    assert "IsADirectoryError" in skipped["thermal_zone5"]
    assert probe.reason == "5 of 7 thermal zones (2 skipped: disabled or unreadable)"

    assert list(sensor.read()) == [41.2, 39.8, 31.5, 33.0, 40.1]
    replay.apply(1)
    assert list(sensor.read()) == [48.7, 45.1, 31.8, 34.0, 45.6]
    replay.apply(2)
    last = list(sensor.read())
    assert last == [56.3, 51.9, 32.2, 36.0, 52.2]
    sensor.close()


def test_thermal_temperatures_rise_over_the_timeline(tmp_path):
    replay = SysfsReplay("thermal_phone", tmp_path)
    sensor = ThermalZoneSensor(replay.fs)
    sensor.probe()
    series = []
    for i in range(len(replay.ticks)):
        replay.apply(i)
        series.append(sensor.read())
    for column in zip(*series, strict=True):
        assert list(column) == sorted(column) and column[0] < column[-1]
    sensor.close()


def test_thermal_read_gives_none_when_a_zone_fails_later(tmp_path):
    fs = write(
        tmp_path,
        {
            "sys/class/thermal/thermal_zone0/type": "x86_pkg_temp",
            "sys/class/thermal/thermal_zone0/temp": 52000,
        },
    )
    sensor = ThermalZoneSensor(fs)
    assert [c.name for c in sensor.probe().channels] == ["thermal:x86_pkg_temp"]
    assert sensor.read() == [52.0]
    (tmp_path / "sys/class/thermal/thermal_zone0/temp").write_text("garbage\n")
    assert sensor.read() == [None]
    sensor.close()
    assert sensor.read() == []


def test_thermal_zone_order_is_numeric_and_missing_type_is_named(tmp_path):
    fs = write(
        tmp_path,
        {
            "sys/class/thermal/thermal_zone10/type": "soc_thermal",
            "sys/class/thermal/thermal_zone10/temp": 40000,
            "sys/class/thermal/thermal_zone2/type": "soc_thermal",
            "sys/class/thermal/thermal_zone2/temp": 41000,
            "sys/class/thermal/thermal_zone3/temp": 42000,
        },
    )
    probe = ThermalZoneSensor(fs).probe()
    assert [c.name for c in probe.channels] == [
        "thermal:soc_thermal",
        "thermal:zone3",
        "thermal:soc_thermal#10",
    ]


def test_thermal_all_zones_unusable(tmp_path):
    fs = write(
        tmp_path,
        {
            "sys/class/thermal/thermal_zone0/type": "cpu",
            "sys/class/thermal/thermal_zone0/mode": "disabled",
            "sys/class/thermal/thermal_zone0/temp": 40000,
        },
    )
    probe = ThermalZoneSensor(fs).probe()
    assert not probe.available and probe.channels == ()
    assert probe.reason == "1 thermal zones, none usable (disabled or unreadable)"


@pytest.mark.parametrize(
    ("raw", "scale"),
    [
        (45000, ("milli-C", 1000)),
        (1001, ("milli-C", 1000)),
        (1000, ("deci-C", 10)),
        (315, ("deci-C", 10)),
        (100, ("deci-C", 10)),
        (99, ("C", 1)),
        (33, ("C", 1)),
        (0, ("milli-C", 1000)),
        (-40000, ("milli-C", 1000)),
        (-5, ("C", 1)),
    ],
)
def test_thermal_scale_rule(raw, scale):
    assert pick_scale(raw) == scale


@pytest.mark.parametrize(
    ("zone_type", "scope"),
    [
        ("x86_pkg_temp", "cpu"),
        ("cpu-thermal", "cpu"),
        ("cpuss-0-usr", "cpu"),
        ("gpu-thermal", "gpu"),
        ("battery", "battery"),
        ("bms", "battery"),
        ("skin-therm", "skin"),
        ("acpitz", ""),
        ("soc_thermal", ""),
        ("tj-thermal", ""),
    ],
)
def test_thermal_scope_rule(zone_type, scope):
    assert infer_scope(zone_type) == scope


# ------------------------------------------------------------------------------ cpufreq


def test_cpufreq_big_little_policies(tmp_path):
    replay = SysfsReplay("cpufreq_big_little", tmp_path)
    sensor = CpuFreqSensor(replay.fs)
    probe = sensor.probe()
    assert probe.available and probe.reason == "2 cpufreq policies"
    assert [c.name for c in probe.channels] == ["cpufreq:policy0", "cpufreq:policy4"]
    assert [c.label for c in probe.channels] == ["CPUs 0-3 (policy0)", "CPUs 4-7 (policy4)"]
    assert all(c.kind == "frequency" and c.unit == "MHz" for c in probe.channels)
    assert probe.details["layout"] == "policy"
    assert probe.details["channels"]["cpufreq:policy4"] == {
        "cpus": [4, 5, 6, 7],
        "min_mhz": 710.4,
        "max_mhz": 2419.2,
        "cpuinfo_min_mhz": 710.4,
        "cpuinfo_max_mhz": 2419.2,
        "governor": "schedutil",
        "driver": "qcom-cpufreq-hw",
        "source": "scaling_cur_freq",
    }
    expected = [(1804.8, 2419.2), (1708.8, 2227.2), (1497.6, 1996.8), (1209.6, 1497.6)]
    for i, values in enumerate(expected):
        replay.apply(i)
        assert tuple(sensor.read()) == values
    sensor.close()


def test_cpufreq_per_cpu_fallback_and_cpuinfo_cur_freq(tmp_path):
    fs = write(
        tmp_path,
        {
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": 2400000,
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "performance",
            "sys/devices/system/cpu/cpu1/cpufreq/cpuinfo_cur_freq": 1200000,
            "sys/devices/system/cpu/cpu1/cpufreq/cpuinfo_max_freq": 3000000,
            "sys/devices/system/cpu/cpu2/online": 1,
        },
    )
    sensor = CpuFreqSensor(fs)
    probe = sensor.probe()
    assert [c.name for c in probe.channels] == ["cpufreq:cpu0", "cpufreq:cpu1"]
    assert [c.label for c in probe.channels] == ["CPU 0", "CPU 1"]
    assert probe.details["layout"] == "cpu"
    d1 = probe.details["channels"]["cpufreq:cpu1"]
    assert d1["source"] == "cpuinfo_cur_freq" and d1["cpuinfo_max_mhz"] == 3000.0
    assert d1["max_mhz"] is None and d1["governor"] is None
    assert list(sensor.read()) == [2400.0, 1200.0]
    sensor.close()


def test_cpufreq_skips_an_unreadable_policy(tmp_path):
    fs = write(
        tmp_path,
        {
            "sys/devices/system/cpu/cpufreq/policy0/related_cpus": "0 1",
            "sys/devices/system/cpu/cpufreq/policy0/scaling_cur_freq": 1000000,
            "sys/devices/system/cpu/cpufreq/policy2/related_cpus": "2 3",
        },
    )
    (tmp_path / "sys/devices/system/cpu/cpufreq/policy2/scaling_cur_freq").mkdir()
    probe = CpuFreqSensor(fs).probe()
    assert [c.name for c in probe.channels] == ["cpufreq:policy0"]
    assert set(probe.details["skipped"]) == {"policy2"}
    assert probe.reason == "1 cpufreq policies (1 unreadable, skipped)"


def test_cpu_lists():
    assert parse_cpu_list("0 1 2 3") == [0, 1, 2, 3]
    assert parse_cpu_list("0-3,6") == [0, 1, 2, 3, 6]
    assert parse_cpu_list("") == [] and parse_cpu_list(None) == [] and parse_cpu_list("x") == []
    assert format_cpu_list([6, 0, 1, 2, 3]) == "0-3,6"
    assert format_cpu_list([4]) == "4"


# ------------------------------------------------------------------------------ battery


def test_android_battery_microamps_discharge_negative(tmp_path):
    replay = SysfsReplay("android_battery", tmp_path)
    sensor = BatterySensor(replay.fs)
    probe = sensor.probe()
    assert probe.available
    (ch,) = probe.channels
    assert (ch.name, ch.kind, ch.unit, ch.scope, ch.total) == (
        "battery:battery",
        "power",
        "W",
        "board",
        True,
    )
    d = probe.details
    assert (d["method"], d["voltage_unit"], d["current_unit"], d["sign_convention"]) == (
        "current_now*voltage_now",
        "uV",
        "uA",
        "discharge_negative",
    )
    assert d["charging"] is False and d["chargers_online"] == []
    assert d["batteries"]["battery:battery"]["raw_at_probe"] == {
        "current_now": -512000,
        "voltage_now": 3850000,
    }
    assert probe.reason == "battery battery: current_now*voltage_now"
    (w,) = sensor.read()
    assert w == pytest.approx(1.9712, rel=1e-12)
    replay.apply(1)
    assert sensor.read()[0] == pytest.approx(1.25 * 3.812, rel=1e-12)
    replay.apply(2)
    assert sensor.read()[0] == pytest.approx(1.83 * 3.79, rel=1e-12)
    sensor.close()


def test_android_battery_milliamps_discharge_positive(tmp_path):
    replay = SysfsReplay("android_battery_ma", tmp_path)
    sensor = BatterySensor(replay.fs)
    probe = sensor.probe()
    d = probe.details
    assert (d["voltage_unit"], d["current_unit"], d["sign_convention"]) == (
        "mV",
        "mA",
        "discharge_positive",
    )
    assert sensor.read()[0] == pytest.approx(1.9712, rel=1e-12)
    replay.apply(1)
    assert sensor.read()[0] == pytest.approx(4.765, rel=1e-12)
    sensor.close()


def test_laptop_battery_charging_uses_power_now(tmp_path):
    replay = SysfsReplay("laptop_battery_charging", tmp_path)
    sensor = BatterySensor(replay.fs)
    probe = sensor.probe()
    assert probe.available
    # the mouse's battery (scope Device) is not a channel
    assert [c.name for c in probe.channels] == ["battery:BAT0"]
    assert probe.channels[0].total
    d = probe.details
    assert d["charging"] is True and d["chargers_online"] == ["AC"]
    assert (d["method"], d["power_unit"], d["voltage_unit"], d["current_unit"]) == (
        "power_now",
        "uW",
        "uV",
        None,
    )
    assert d["sign_convention"] == "unknown"
    assert probe.reason.endswith("charging: the battery does not measure the device's draw now")
    assert sensor.read()[0] == pytest.approx(23.45, rel=1e-12)
    replay.apply(1)
    assert sensor.read()[0] == pytest.approx(24.11, rel=1e-12)
    sensor.close()


def test_battery_microvolts_with_milliamps_and_two_batteries(tmp_path):
    fs = write(
        tmp_path,
        {
            "sys/class/power_supply/BAT0/type": "Battery",
            "sys/class/power_supply/BAT0/status": "Discharging",
            "sys/class/power_supply/BAT0/current_now": 1500,
            "sys/class/power_supply/BAT0/voltage_now": 11400000,
            "sys/class/power_supply/BAT1/type": "Battery",
            "sys/class/power_supply/BAT1/status": "Discharging",
            "sys/class/power_supply/BAT1/power_now": 4000000,
            "sys/class/power_supply/BAT2/type": "Battery",
            "sys/class/power_supply/BAT2/present": 0,
            "sys/class/power_supply/BAT3/type": "Battery",
            "sys/class/power_supply/BAT3/status": "Discharging",
            "sys/class/power_supply/BAT3/capacity": 10,
        },
    )
    sensor = BatterySensor(fs)
    probe = sensor.probe()
    assert [c.name for c in probe.channels] == ["battery:BAT0", "battery:BAT1"]
    assert [c.total for c in probe.channels] == [False, False]
    assert probe.details["current_unit"] == "mA"
    assert probe.details["skipped"] == {
        "BAT3": "no readable power_now, nor current_now and voltage_now"
    }
    assert list(sensor.read()) == [pytest.approx(17.1), pytest.approx(4.0)]
    (tmp_path / "sys/class/power_supply/BAT1/power_now").write_text("\n")
    assert sensor.read()[1] is None
    sensor.close()


def test_battery_without_a_power_reading(tmp_path):
    fs = write(
        tmp_path,
        {"sys/class/power_supply/BAT0/type": "Battery", "sys/class/power_supply/BAT0/capacity": 80},
    )
    probe = BatterySensor(fs).probe()
    assert not probe.available
    assert probe.reason == (
        "battery without a usable power reading "
        "(BAT0: no readable power_now, nor current_now and voltage_now)"
    )


@pytest.mark.parametrize(
    ("voltage", "current", "units"),
    [
        (3850000, -512000, ("uV", "uA")),
        (3850, 512, ("mV", "mA")),
        (3850000, 512, ("uV", "mA")),
        (3850000, 9999, ("uV", "mA")),
        (3850000, 10000, ("uV", "uA")),
        (3850, 512000, ("mV", "uA")),
        (3850, 9999, ("mV", "mA")),
        (3850000, 0, ("uV", "uA")),
        (3850, 0, ("mV", "mA")),
        (100000, 0, ("mV", "mA")),
        (100001, 0, ("uV", "uA")),
    ],
)
def test_battery_unit_rules(voltage, current, units):
    v_unit, v_scale = voltage_unit(voltage)
    c_unit, c_scale = current_unit(current, v_unit)
    assert (v_unit, c_unit) == units
    assert v_scale == {"uV": 1e-6, "mV": 1e-3}[v_unit]
    assert c_scale == {"uA": 1e-6, "mA": 1e-3}[c_unit]


@pytest.mark.parametrize(
    ("status", "current", "convention"),
    [
        ("Discharging", -5, "discharge_negative"),
        ("Discharging", 5, "discharge_positive"),
        ("Charging", 5, "discharge_negative"),
        ("Charging", -5, "discharge_positive"),
        ("Full", -5, "unknown"),
        ("Discharging", 0, "unknown"),
        (None, 5, "unknown"),
        ("Discharging", None, "unknown"),
    ],
)
def test_battery_sign_convention(status, current, convention):
    assert sign_convention(status, current) == convention


# -------------------------------------------------------------------------------- apple


def test_apple_is_never_available():
    linux = ApplePowerSensor(platform="linux").probe()
    assert (linux.available, linux.reason, linux.channels) == (False, "not macOS", ())
    mac = ApplePowerSensor(platform="darwin").probe()
    assert not mac.available and mac.reason == DARWIN_REASON
    assert "sudo powermetrics --samplers cpu_power,gpu_power" in mac.reason
    assert ApplePowerSensor().read() == ()


# -------------------------------------------------------------------- contract, absence


@pytest.mark.parametrize("cls", ALL)
def test_registry_names_these_classes(cls):
    assert SENSORS.load(cls.name) is cls
    assert issubclass(cls, Sensor) and cls.kinds


@pytest.mark.parametrize(
    ("cls", "reason"),
    [
        (
            ThermalZoneSensor,
            "no /sys/class/thermal/thermal_zone*: a VM, a container or a kernel "
            "without thermal zones",
        ),
        (
            CpuFreqSensor,
            "no cpufreq in /sys/devices/system/cpu: a VM or a kernel without CPU frequency scaling",
        ),
        (BatterySensor, "no battery in /sys/class/power_supply (a desktop, server or VM)"),
    ],
)
def test_probe_reasons_on_an_empty_tree(tmp_path, cls, reason):
    sensor = cls(SysFS(tmp_path))
    probe = sensor.probe()
    assert (probe.sensor, probe.available, probe.reason, probe.channels) == (
        cls.name,
        False,
        reason,
        (),
    )
    assert sensor.read() == []
    probe.to_dict()  # JSON-ready
    sensor.close()


def test_probe_never_raises_on_a_missing_root(tmp_path):
    for cls in ALL:
        probe = cls(SysFS(tmp_path / "nope")).probe()
        assert not probe.available


@pytest.mark.parametrize("cls", ALL)
def test_probing_the_live_machine_does_not_raise(cls):
    sensor = cls()
    probe = sensor.probe()
    assert probe.sensor == cls.name
    values = sensor.read()
    assert len(values) == len(probe.channels)
    sensor.close()


# ------------------------------------------------------------------------- device state


EMPTY_STATE = {
    "battery_level_pct": None,
    "charging": None,
    "power_source": None,
    "governors": None,
    "governor": None,
    "nvpmodel": None,
    "thermal_throttle_count": None,
    "notes": [],
}


def test_device_state_android_battery(tmp_path):
    state = read_device_state(SysfsReplay("android_battery", tmp_path).fs)
    assert state == EMPTY_STATE | {
        "battery_level_pct": 76,
        "charging": False,
        "power_source": "battery",
    }
    assert not charging_invalidates_energy(state)


def test_device_state_laptop_charging(tmp_path):
    state = read_device_state(SysfsReplay("laptop_battery_charging", tmp_path).fs)
    assert state == {
        "battery_level_pct": 57,
        "charging": True,
        "power_source": "ac",
        "governors": {f"policy{i}": "powersave" for i in range(4)},
        "governor": "powersave",
        "nvpmodel": None,
        "thermal_throttle_count": 3 + 0 + 5 + 1 + 12,
        "notes": [
            "charging (status Charging, ac online): battery power does not measure the "
            "device's draw and energy from the battery is invalid"
        ],
    }
    assert charging_invalidates_energy(state)


def test_device_state_jetson_orin(tmp_path):
    state = read_device_state(SysfsReplay("jetson_state_orin", tmp_path).fs)
    assert state == EMPTY_STATE | {
        "governors": {"policy0": "schedutil", "policy4": "schedutil"},
        "governor": "schedutil",
        "nvpmodel": {"mode_id": 2, "mode_name": "15W", "fan_mode": "quiet", "default_mode_id": 2},
    }
    assert not charging_invalidates_energy(state)


def test_device_state_big_little_governors(tmp_path):
    replay = SysfsReplay("cpufreq_big_little", tmp_path)
    state = read_device_state(replay.fs)
    assert state["governors"] == {"policy0": "schedutil", "policy4": "schedutil"}
    (replay.root / "sys/devices/system/cpu/cpufreq/policy4/scaling_governor").write_text(
        "performance\n"
    )
    state = read_device_state(replay.fs)
    assert state["governor"] == "mixed"
    assert state["governors"] == {"policy0": "schedutil", "policy4": "performance"}


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # Full on the charger: charging (the charger powers the device)
        (
            {"BAT0/status": "Full", "AC/type": "Mains", "AC/online": 1},
            {"charging": True, "power_source": "ac"},
        ),
        # Full, charger unplugged: running on the battery
        (
            {"BAT0/status": "Full", "AC/type": "Mains", "AC/online": 0},
            {"charging": False, "power_source": "battery"},
        ),
        # USB plugged in but the battery still discharges (charging disabled or too weak)
        (
            {"BAT0/status": "Discharging", "usb/type": "USB", "usb/online": 1},
            {"charging": False, "power_source": "battery"},
        ),
        # Unknown status: the charger's online flag decides
        (
            {"BAT0/status": "Unknown", "usb/type": "USB_PD", "usb/online": 1},
            {"charging": True, "power_source": "usb"},
        ),
        ({"BAT0/status": "Unknown"}, {"charging": None, "power_source": "battery"}),
        (
            {"wireless/type": "Wireless", "wireless/online": 1, "BAT0/status": "Charging"},
            {"charging": True, "power_source": "wireless"},
        ),
    ],
)
def test_device_state_charging_rules(tmp_path, files, expected):
    base = {"BAT0/type": "Battery", "BAT0/capacity": 50}
    fs = write(tmp_path, {f"sys/class/power_supply/{k}": v for k, v in (base | files).items()})
    state = read_device_state(fs)
    assert {k: state[k] for k in expected} == expected
    assert state["battery_level_pct"] == 50
    assert charging_invalidates_energy(state) is bool(expected["charging"])


def test_device_state_without_a_battery_but_with_a_charger(tmp_path):
    fs = write(
        tmp_path,
        {
            "sys/class/power_supply/ucsi-source-psy-1/type": "USB",
            "sys/class/power_supply/ucsi-source-psy-1/online": 1,
        },
    )
    state = read_device_state(fs)
    assert state == EMPTY_STATE | {"power_source": "usb"}
    assert not charging_invalidates_energy(state)


def test_device_state_nvpmodel_notes(tmp_path):
    fs = write(tmp_path, {"etc/nvpmodel.conf": "< POWER_MODEL ID=0 NAME=MAXN >"})
    state = read_device_state(fs)
    assert state["nvpmodel"] is None
    assert state["notes"] == [
        "/etc/nvpmodel.conf exists but /var/lib/nvpmodel/status does not: power mode unknown "
        "(`nvpmodel -q` tells it)"
    ]
    write(tmp_path, {"var/lib/nvpmodel/status": "pmode:0000"})
    assert read_device_state(fs)["nvpmodel"] == {
        "mode_id": 0,
        "mode_name": "MAXN",
        "fan_mode": None,
        "default_mode_id": None,
    }


def test_nvpmodel_parsers():
    assert parse_nvpmodel_status("pmode:0002 fmode:quiet") == {"mode_id": 2, "fan_mode": "quiet"}
    assert parse_nvpmodel_status("pmode:0000") == {"mode_id": 0, "fan_mode": None}
    assert parse_nvpmodel_status("garbage") is None
    modes, default = parse_nvpmodel_conf(
        "< POWER_MODEL ID=0 NAME=MAXN >\nCPU_ONLINE CORE_0 1\n<POWER_MODEL ID=1 NAME=MODE_15W>\n"
        "< PM_CONFIG DEFAULT=1 >\n"
    )
    assert modes == {0: "MAXN", 1: "MODE_15W"} and default == 1


def test_device_state_on_empty_and_live_roots(tmp_path):
    assert read_device_state(SysFS(tmp_path)) == EMPTY_STATE
    live = read_device_state(SysFS("/"))
    assert set(live) == set(EMPTY_STATE)
