"""``meltbench devices``: every target meltbench knows, with what each one can do.

Listed: this machine (``local``), every target of the targets file (SSH, and adb or local
entries), and the Android devices an adb server on this machine reports (when adbutils is
installed and a server answers; no server is started). For each: reachability, OS,
kernel, architecture, CPU, cores, memory, Python, the engines importable on the device,
and the sensors present.

Engines and sensors come from the device's meltbench venv when the target is set up
(``meltbench target setup``: the registry's own checks and ``meltbench sensors --format
json`` run there); otherwise engines are the engine libraries the device's Python can
import, and sensors are ``"not set up"``. Targets are probed in parallel, each within its
connect timeout, so one dead device does not stall the list.
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from meltbench.errors import UsageError
from meltbench.targets.base import Target, TargetError

__all__ = ["ENGINE_MODULES", "list_devices", "probe_facts", "probe_target"]

#: engine -> the modules its library needs (for a device without meltbench set up)
ENGINE_MODULES: dict[str, tuple[str, ...]] = {
    "llama.cpp": ("llama_cpp",),
    "transformers": ("torch", "transformers"),
    "onnxruntime": ("onnxruntime_genai",),
    "mlx": ("mlx_lm",),
    "openai": ("openai",),
}

_FACTS = r"""
printf 'os=%s\n' "$(uname -s 2>/dev/null)"
printf 'kernel=%s\n' "$(uname -r 2>/dev/null)"
printf 'arch=%s\n' "$(uname -m 2>/dev/null)"
cpu=$(grep -m1 -i -E '^(model name|hardware|cpu model)[[:space:]]*:' /proc/cpuinfo 2>/dev/null \
  | sed 's/^[^:]*:[[:space:]]*//')
[ -n "$cpu" ] || cpu=$(sysctl -n machdep.cpu.brand_string 2>/dev/null)
printf 'cpu=%s\n' "$cpu"
printf 'cores=%s\n' "$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null)"
mem=$(awk '/^MemTotal:/ {printf "%.0f", $2 * 1024}' /proc/meminfo 2>/dev/null)
[ -n "$mem" ] || mem=$(sysctl -n hw.memsize 2>/dev/null)
printf 'memory_bytes=%s\n' "$mem"
printf 'board=%s\n' "$(tr -d '\000' < /proc/device-tree/model 2>/dev/null)"
printf 'os_release=%s\n' "$( (. /etc/os-release && printf %s "$PRETTY_NAME") 2>/dev/null)"
"""

_IMPORTABLE = """
import importlib.util, json, platform, sys
mods = json.loads(sys.argv[1])
print(json.dumps({"python": platform.python_version(),
                  "found": {m: importlib.util.find_spec(m) is not None for m in mods}}))
"""


def probe_facts(target: Target) -> dict[str, Any]:
    """OS, kernel, arch, CPU, cores, memory, board and distribution of a POSIX target,
    from one shell command (``uname``, ``/proc/cpuinfo``, ``/proc/meminfo``, device tree;
    ``sysctl`` on macOS). Missing values are None.

    Raises:
        TargetError: the target is unreachable.
    """
    done = target.run(["sh", "-c", _FACTS], timeout=60)
    facts: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            facts[key.strip()] = value.strip() or None
    for key in ("cores", "memory_bytes"):
        try:
            facts[key] = int(facts[key]) if facts.get(key) else None
        except ValueError:
            facts[key] = None
    return facts


def _engines_without_venv(target: Target, python: str) -> tuple[str | None, dict[str, Any]]:
    mods = sorted({m for ms in ENGINE_MODULES.values() for m in ms})
    done = target.run([python, "-c", _IMPORTABLE, json.dumps(mods)], timeout=120)
    if not done.ok:
        return None, {}
    try:
        data = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, {}
    found = data.get("found", {})
    engines = {
        name: {
            "available": all(found.get(m) for m in ms),
            "missing": [m for m in ms if not found.get(m)],
        }
        for name, ms in ENGINE_MODULES.items()
    }
    return data.get("python"), engines


def _sensors(target: Target, python: str) -> list[dict[str, Any]] | str:
    done = target.run([python, "-m", "meltbench.cli", "sensors", "--format", "json"], timeout=120)
    if not done.ok:
        last = next((ln for ln in reversed(done.stderr.splitlines()) if ln.strip()), "")
        return f"error: {last.strip()[:200] or f'exit {done.returncode}'}"
    try:
        data = json.loads(done.stdout)
    except ValueError:
        return "error: unreadable output of meltbench sensors"
    return [
        {"sensor": s.get("sensor"), "available": s.get("available"), "reason": s.get("reason")}
        for s in data.get("sensors", [])
    ]


def probe_target(target: Target, name: str | None = None) -> dict[str, Any]:
    """Everything ``meltbench devices`` shows for one open target with Python.

    Returns:
        ``name``, ``url``, ``kind``, ``reachable``, ``error``, ``os``, ``kernel``,
        ``arch``, ``cpu``, ``cores``, ``memory_bytes``, ``board``, ``os_release``,
        ``python`` (version or None), ``set_up`` (meltbench venv present),
        ``engines`` (name -> ``{"available", "missing"}``), ``engines_from`` (``venv``
        or ``system python``), ``sensors`` (list of ``{"sensor", "available",
        "reason"}``, or ``"not set up"``).

    Raises:
        TargetError: the target dropped while being probed.
    """
    from meltbench.targets.setup import _INSPECT, _RECORDED, venv_python

    entry: dict[str, Any] = {
        "name": name or getattr(target, "name", None) or target.url,
        "url": target.url,
        "kind": target.kind,
        "reachable": True,
        "error": None,
    }
    entry.update(probe_facts(target))
    target.facts.update({k: entry.get(k) for k in ("os", "kernel", "arch", "cpu", "cores")})
    python = target.python or "python3"
    # this machine: the running meltbench; a device: its venv from `meltbench target setup`
    vpy = sys.executable if target.kind == "local" else venv_python(target)
    inspect = target.run([vpy, "-c", _INSPECT, json.dumps(list(_RECORDED))], timeout=300)
    if inspect.ok:
        data = json.loads(inspect.stdout.strip().splitlines()[-1])
        entry.update(
            python=data.get("python"),
            set_up=True,
            engines=data.get("engines", {}),
            engines_from="venv" if vpy != sys.executable else "this python",
            meltbench_version=data.get("meltbench_version"),
        )
        entry["sensors"] = _sensors(target, vpy)
    else:
        version, engines = _engines_without_venv(target, python)
        entry.update(
            python=version,
            set_up=False,
            engines=engines,
            engines_from="system python" if version else None,
            sensors="not set up",
        )
    return entry


def _unreachable(name: str, url: str, kind: str, error: str) -> dict[str, Any]:
    return {"name": name, "url": url, "kind": kind, "reachable": False, "error": error}


def _probe_spec(spec: Any) -> dict[str, Any]:
    from meltbench.targets.config import open_target

    if spec.kind == "adb":
        return _probe_adb(spec.url, spec.name)
    try:
        target = open_target(spec)
    except (TargetError, UsageError) as exc:
        return _unreachable(spec.name, spec.url, spec.kind, str(exc))
    try:
        with target:
            return probe_target(target, spec.name)
    except TargetError as exc:
        return _unreachable(spec.name, spec.url, spec.kind, str(exc))


def _probe_adb(url: str, name: str | None = None) -> dict[str, Any]:
    """An Android device through the other adb helpers (props, kernel, memory, sensors'
    sysfs presence)."""
    entry = {"name": name or url, "url": url, "kind": "adb", "reachable": False, "error": None}
    try:
        from meltbench.targets.adb import AdbTarget

        target = AdbTarget(url)
    except Exception as exc:  # adbutils missing, bad URL
        entry["error"] = str(exc)
        return entry
    try:
        with target:
            info = target.describe()
            facts = probe_facts(target)
            sysfs = target.run(
                [
                    "sh",
                    "-c",
                    "for p in /sys/class/power_supply/battery/current_now "
                    "/sys/class/thermal/thermal_zone0/temp "
                    "/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq; do "
                    '[ -r "$p" ] && echo "$p"; done',
                ],
                timeout=30,
            )
    except (TargetError, OSError) as exc:
        entry["error"] = str(exc)
        return entry
    present = sysfs.stdout.split()
    entry.update(facts)
    entry.update(
        reachable=True,
        os=f"Android {info.get('android_version')}" if info.get("android_version") else "Android",
        arch=info.get("abi") or facts.get("arch"),
        cpu=info.get("soc_model") or info.get("hardware") or facts.get("cpu"),
        board=info.get("model"),
        python=None,
        set_up=None,
        engines={"llama.cpp": {"available": None, "missing": [], "note": "native binaries"}},
        engines_from="pushed llama.cpp binaries (--engine-binary)",
        sensors=[
            {"sensor": "battery", "available": any("power_supply" in p for p in present)},
            {"sensor": "thermal", "available": any("thermal" in p for p in present)},
            {"sensor": "cpufreq", "available": any("cpufreq" in p for p in present)},
        ],
    )
    return entry


def _adb_serials() -> list[str]:
    """Serials the adb server on this machine lists; none if no server answers (no server
    is ever started: adbutils would spawn one when the port is closed)."""
    import socket

    try:
        import adbutils

        from meltbench.targets import adb
    except ImportError:
        return []
    host, port = adb.adb_server_address()
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return []
    try:
        client_cls = getattr(adb, "_NoSpawnClient", None)
        if client_cls is not None:
            client = client_cls(host, port, 3.0)
        else:  # pragma: no cover - the port answered, so adbutils will not spawn
            client = adbutils.AdbClient(host=host, port=port, socket_timeout=3)
        return [d.serial for d in client.device_list()]
    except Exception:
        return []


def list_devices(targets_file: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Every known target with its capabilities (see the module docstring).

    Args:
        targets_file: the targets file (default ``$MELTBENCH_TARGETS`` or
            ``~/.config/meltbench/targets.yaml``; none is fine).

    Returns:
        one dict per target (see :func:`probe_target`); unreachable ones have
        ``reachable: False`` and ``error``.

    Raises:
        UsageError: a named targets file is missing or invalid.
    """
    from meltbench.targets.config import list_target_specs, parse_url
    from meltbench.targets.local import LocalTarget

    specs = [parse_url("local"), *list_target_specs(targets_file)]
    configured_adb = {s.url for s in specs if s.kind == "adb"}
    adb_urls = [f"adb://{s}" for s in _adb_serials() if f"adb://{s}" not in configured_adb]

    def probe(item: Any) -> dict[str, Any]:
        if isinstance(item, str):
            return _probe_adb(item)
        if item.kind == "local" and item.name == "local":
            with LocalTarget.from_spec(item) as target:
                return probe_target(target, "local")
        return _probe_spec(item)

    items: list[Any] = [*specs, *adb_urls]
    with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
        return list(pool.map(probe, items))
