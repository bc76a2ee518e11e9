"""The environment a run was measured in: hardware, OS, Python, library versions.

Collected by the worker, on the machine that runs the model, and stored with every run
so that two results can be compared knowing what differed. Anything that cannot be read
is ``None``, never a guess.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["collect_environment", "cpu_model", "git_commit", "physical_cores"]

_LIBRARIES = ("meltbench", "llama-cpp-python", "gguf", "numpy", "psutil", "pydantic", "rich")


def cpu_model() -> str | None:
    """CPU model name (``/proc/cpuinfo`` "model name" on Linux, else ``platform``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def physical_cores() -> int:
    """Physical CPU cores (psutil), falling back to logical CPUs, at least 1.

    llama-bench's default thread count is the number of physical cores.
    """
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _os_release() -> str | None:
    text = _read("/etc/os-release")
    if not text:
        return None
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return None


def git_commit(path: Path | None = None) -> dict[str, Any] | None:
    """The git commit (and dirty flag) of meltbench's own source tree, if it is a checkout.

    Returns:
        ``{"commit": sha, "dirty": bool}`` or None when not in a git checkout or git is
        missing.
    """
    here = path or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": sha, "dirty": bool(status.strip())}


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def collect_environment() -> dict[str, Any]:
    """Describe this machine and software stack.

    Returns:
        a JSON-ready dict: ``hostname``, ``cpu_model``, ``cpu_count_logical``,
        ``cpu_count_physical``, ``ram_total_bytes``, ``os``, ``os_release``, ``kernel``,
        ``machine``, ``python``, ``python_implementation``, ``libraries`` (name ->
        version or None), ``meltbench_version``, ``git`` (see :func:`git_commit`),
        ``cpu_governor`` (Linux cpufreq, or None).
    """
    import psutil

    from meltbench import __version__

    return {
        "hostname": platform.node() or None,
        "cpu_model": cpu_model(),
        "cpu_count_logical": os.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "ram_total_bytes": int(psutil.virtual_memory().total),
        "os": platform.system(),
        "os_release": _os_release(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "libraries": _versions(),
        "meltbench_version": __version__,
        "git": git_commit(),
        "cpu_governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
    }
