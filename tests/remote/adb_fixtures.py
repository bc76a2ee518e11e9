"""Building the fake phone for the adb tests (see ``fake_adb_server.py`` and
``tests/fixtures/android/README.md``)."""

from __future__ import annotations

import shutil
from pathlib import Path

ANDROID = Path(__file__).resolve().parents[1] / "fixtures" / "android"
RECORDED_JSON = ANDROID / "recorded" / "llama-bench-pp64-tg16-r3.json"
RECORDED_JSONL = ANDROID / "recorded" / "llama-bench-pp64-tg16-r3.jsonl"
RECORDED_PERF = ANDROID / "recorded" / "llama-perf-context-print.txt"
STANDIN = ANDROID / "llama-bench-standin.sh"
SERIAL = "FAKE0001"


def make_phone(
    root: Path,
    *,
    charging: bool = False,
    battery: str | None = None,
    thermal: str = "thermalservice.txt",
    power: str = "power.txt",
) -> Path:
    """Copy the fake phone tree to ``root`` and put the hand-written dumpsys outputs and
    the recorded llama-bench JSON where the stand-ins read them.

    Args:
        charging: plug in USB: battery ``status`` Charging, positive ``current_now``,
            ``usb/online`` 1, and ``dumpsys battery`` from ``battery_charging.txt``.
        battery, thermal, power: which file of ``fixtures/android/dumpsys`` each
            ``dumpsys`` service prints.
    """
    shutil.copytree(ANDROID / "phone", root, symlinks=True)
    (root / "data" / "local" / "tmp").mkdir(parents=True, exist_ok=True)
    fake = root / "meltbench-fake"
    fake.mkdir()
    dumpsys = ANDROID / "dumpsys"
    battery = battery or ("battery_charging.txt" if charging else "battery.txt")
    shutil.copy(dumpsys / battery, fake / "dumpsys_battery.txt")
    shutil.copy(dumpsys / thermal, fake / "dumpsys_thermalservice.txt")
    shutil.copy(dumpsys / power, fake / "dumpsys_power.txt")
    shutil.copy(ANDROID / "getprop.txt", fake / "getprop.txt")
    shutil.copy(RECORDED_JSON, fake / "llama-bench.json")
    if charging:
        bat = root / "sys" / "class" / "power_supply" / "battery"
        (bat / "status").write_text("Charging\n")
        (bat / "current_now").write_text("1250000\n")
        (root / "sys" / "class" / "power_supply" / "usb" / "online").write_text("1\n")
    return root
