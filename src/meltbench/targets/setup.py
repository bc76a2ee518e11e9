"""Install meltbench on a device: ``meltbench target setup TARGET`` / ``cleanup``.

What :func:`setup_target` does, on a target with Python (SSH, or this machine):

1. checks the device's Python (``python3`` or the target's ``python``) is 3.10 or newer;
2. builds the wheel of *this* meltbench (``pip wheel --no-deps --no-build-isolation``
   from a clean copy of the checkout that ``meltbench.__file__`` lives in, with a fixed
   ``SOURCE_DATE_EPOCH`` so unchanged sources give a byte-identical wheel), or takes a
   given wheel, and pushes it to ``<workdir>/wheels/`` (skipped if the checksum matches);
3. creates the venv ``<workdir>/venv`` (``python3 -m venv``, with
   ``--system-site-packages`` if asked; recreated if that choice changed);
4. installs the wheel there:

   - ``system_site_packages=True``: ``pip install --no-deps``: nothing is downloaded;
     meltbench's dependencies and the engines (llama-cpp-python, ...) come from the
     device's system Python (e.g. Debian packages, or a Jetson's preinstalled torch).
   - otherwise ``pip install 'meltbench[EXTRAS] @ file://...whl'``: the dependencies and
     extras come from PyPI (the *device* needs to reach it; the host does not), or, with
     ``wheelhouse=DIR``, only from a local folder of wheels built or downloaded for the
     device (``pip download --platform ... -d DIR 'meltbench[llama]'``, or
     ``pip wheel`` on a similar machine), pushed to ``<workdir>/wheels`` and installed with
     ``--no-index --find-links``: no network anywhere;

5. records what was installed (versions, engines importable, wheel checksum, the git
   commit of the checkout) in ``<workdir>/setup.json`` and returns it.

Running it again does only what changed (idempotent). :func:`cleanup_target` removes the
workdir and everything meltbench put there.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError
from meltbench.targets.base import Target
from meltbench.targets.sync import _read_json, _write_text, local_sha256, remote_sha256, sync_file
from meltbench.timestamps import utc_now

__all__ = [
    "SETUP_FILE",
    "build_wheel",
    "check_setup",
    "cleanup_target",
    "local_sha256",
    "remote_sha256",
    "setup_target",
    "source_root",
    "sync_file",
    "venv_dir",
    "venv_python",
]

SETUP_FILE = "setup.json"
#: packages whose versions are recorded by setup (when installed on the device)
_RECORDED = (
    "meltbench",
    "llama-cpp-python",
    "gguf",
    "numpy",
    "psutil",
    "pydantic",
    "pyyaml",
    "rich",
    "torch",
    "transformers",
    "onnxruntime-genai",
    "mlx",
    "mlx-lm",
    "openai",
    "nvidia-ml-py",
)

# Run by the device venv's Python: what is installed and which engines import.
_INSPECT = """
import json, platform, sys
from importlib import metadata
out = {"python": platform.python_version(), "executable": sys.executable}
import meltbench
out["meltbench_version"] = meltbench.__version__
out["meltbench_file"] = meltbench.__file__
packages = {}
for name in json.loads(sys.argv[1]):
    try:
        packages[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        packages[name] = None
out["packages"] = packages
from meltbench.registry import ENGINES
engines = {}
for name in ENGINES.names():
    try:
        missing = list(ENGINES.load(name).missing_requirements())
    except Exception as exc:
        missing = [str(exc)]
    engines[name] = {"available": not missing, "missing": missing}
out["engines"] = engines
print(json.dumps(out))
"""

Status = Callable[[str], None]


# -- the wheel ---------------------------------------------------------------------------


def source_root() -> Path | None:
    """The checkout meltbench is imported from: the nearest folder above the package with
    a ``pyproject.toml`` naming ``meltbench``; None when meltbench is installed from a
    wheel."""
    import meltbench

    pkg = Path(meltbench.__file__).resolve().parent
    for folder in pkg.parents:
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            try:
                text = pyproject.read_text()
            except OSError:
                return None
            return folder if 'name = "meltbench"' in text else None
    return None


def build_wheel(dest: str | os.PathLike[str]) -> Path:
    """Build the wheel of this meltbench checkout into ``dest``.

    The package and the top-level files are copied to a temporary folder first (so stale
    ``build/`` output of the checkout cannot leak into the wheel), and
    ``SOURCE_DATE_EPOCH`` is the newest source mtime, so the same sources give the same
    bytes (and setup can skip reinstalling).

    Raises:
        UsageError: meltbench is not a checkout, or the build failed (the message has
            pip's last error line).
    """
    import meltbench

    root = source_root()
    if root is None:
        raise UsageError(
            "meltbench is not running from a source checkout, so its wheel cannot be built; "
            "pass a wheel (--wheel FILE) or install meltbench on the device with pip"
        )
    pkg = Path(meltbench.__file__).resolve().parent
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    with tempfile.TemporaryDirectory(prefix="meltbench-wheel-") as tmp:
        copy = Path(tmp) / "src-copy"
        copy.mkdir()
        newest = 0.0
        for item in root.iterdir():
            if item.is_file() and item.stat().st_size < 10 * 2**20:
                shutil.copy2(item, copy / item.name)
                newest = max(newest, item.stat().st_mtime)
        rel = pkg.relative_to(root)
        shutil.copytree(pkg, copy / rel, ignore=ignore)
        for f in (copy / rel).rglob("*"):
            if f.is_file():
                newest = max(newest, f.stat().st_mtime)
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(max(int(newest), 315532800)))
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "--disable-pip-version-check",
                "-q",
                "-w",
                str(dest),
                str(copy),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
    wheels = sorted(dest.glob("meltbench-*.whl"), key=lambda p: p.stat().st_mtime)
    if proc.returncode != 0 or not wheels:
        last = next((ln for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "")
        raise UsageError(
            f"building the meltbench wheel failed ({last.strip()[:200]}); install setuptools "
            "and wheel (pip install setuptools wheel) or pass a wheel with --wheel FILE"
        )
    return wheels[-1]


# -- the venv ----------------------------------------------------------------------------


def venv_dir(target: Target) -> str:
    """The target's venv: its ``venv`` setting, else ``<workdir>/venv``."""
    venv = getattr(target, "venv", None)
    return venv or posixpath.join(target.workdir, "venv")


def venv_python(target: Target) -> str:
    """``<venv>/bin/python`` on the target."""
    return posixpath.join(venv_dir(target), "bin", "python")


def _target_name(target: Target) -> str:
    return getattr(target, "name", None) or target.url


def check_setup(target: Target, name: str | None = None) -> str:
    """The venv Python if meltbench imports there.

    Raises:
        UsageError: not set up (``target X is not set up: run `meltbench target setup X```).
        TargetError: the target is unreachable.
    """
    name = name or _target_name(target)
    vpy = venv_python(target)
    done = target.run([vpy, "-c", "import meltbench"], timeout=120)
    if not done.ok:
        why = "no venv" if done.returncode in (126, 127) else "meltbench does not import there"
        raise UsageError(
            f"target {name} is not set up ({why} at {venv_dir(target)}): run "
            f"`meltbench target setup {name}`"
        )
    return vpy


def _open(target: Target | str, targets_file: str | os.PathLike[str] | None) -> Target:
    if isinstance(target, Target):
        return target
    from meltbench.targets.config import open_target

    return open_target(target, targets_file)


def _check_python(target: Target, python: str) -> str:
    done = target.run(
        [python, "-c", "import platform, sys; print(platform.python_version())"], timeout=120
    )
    if done.returncode in (126, 127):
        raise UsageError(
            f"{python} not found on {target.url}; install Python 3.10+ with venv support "
            "there (Debian: apt install python3 python3-venv) or set python: in the targets file"
        )
    version = done.stdout.strip()
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        raise UsageError(
            f"cannot run {python} on {target.url}: {done.stderr.strip()[:200]}"
        ) from None
    if (major, minor) < (3, 10):
        raise UsageError(
            f"{python} on {target.url} is Python {version}; meltbench needs 3.10 or newer: "
            "install one and set python: in the targets file"
        )
    return version


def _pyvenv_flag(target: Target, venv: str) -> bool | None:
    text = target.read_file(posixpath.join(venv, "pyvenv.cfg"))
    if text is None:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "include-system-site-packages":
            return value.strip().lower() == "true"
    return False


def _make_venv(target: Target, python: str, venv: str, system_site_packages: bool) -> bool:
    """Create (or recreate) the venv; True if it was (re)created.

    Raises:
        UsageError: a venv outside the workdir (not meltbench's) has other settings.
    """
    flag = _pyvenv_flag(target, venv)
    vpy = posixpath.join(venv, "bin", "python")
    if flag is not None and flag == system_site_packages:
        if target.run([vpy, "-c", "pass"], timeout=120).ok:
            return False
    if flag is not None:  # a venv (pyvenv.cfg exists) with other settings, or broken
        inside = (venv.rstrip("/") + "/").startswith(target.workdir.rstrip("/") + "/")
        if not inside:
            raise UsageError(
                f"the venv {venv} on {target.url} exists with other settings (system site "
                "packages or a broken interpreter) and is outside meltbench's workdir; "
                "remove it or configure another venv"
            )
        target.run(["rm", "-rf", "--", venv], timeout=600)
    argv = [python, "-m", "venv"]
    if system_site_packages:
        argv.append("--system-site-packages")
    done = target.run([*argv, venv], timeout=900)
    if not done.ok:
        err = done.stderr + done.stdout
        hint = (
            "install the venv module (Debian/Ubuntu: apt install python3-venv)"
            if "ensurepip" in err or "venv" in err.lower()
            else "check the Python installation on the device"
        )
        last = next((ln for ln in reversed(err.splitlines()) if ln.strip()), "")
        raise UsageError(
            f"creating the venv {venv} on {target.url} failed ({last.strip()[:160]}); {hint}"
        )
    return True


def _pip(target: Target, vpy: str, args: Sequence[str], what: str) -> None:
    argv = [vpy, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", *args]
    done = target.run(argv, timeout=3600)
    if not done.ok:
        last = next((ln for ln in reversed(done.stderr.splitlines()) if ln.strip()), "")
        raise UsageError(
            f"pip could not install {what} on {target.url} ({last.strip()[:200]}); with "
            "system_site_packages nothing is downloaded, otherwise the device needs PyPI or "
            "a wheelhouse (--wheelhouse DIR)"
        )


def setup_target(
    target: Target | str,
    extras: Sequence[str] = (),
    *,
    system_site_packages: bool = False,
    python: str | None = None,
    wheel: str | os.PathLike[str] | None = None,
    wheelhouse: str | os.PathLike[str] | None = None,
    targets_file: str | os.PathLike[str] | None = None,
    on_status: Status | None = None,
) -> dict[str, Any]:
    """Install this meltbench (and engine extras) into a venv on the target.

    Args:
        target: an open target, or its name/URL (opened and closed here).
        extras: meltbench extras (``llama``, ``torch``, ...) to install with it.
        system_site_packages: create the venv with ``--system-site-packages`` and install
            only meltbench (``--no-deps``): the device's own packages provide the rest.
        python: the device interpreter that creates the venv (default: the target's
            ``python`` setting, else ``python3``).
        wheel: install this wheel instead of building one from the checkout.
        wheelhouse: a local folder of wheels for the device; pushed and used with
            ``--no-index`` (no network needed on the device).
        targets_file: for names.
        on_status: called with one-line progress messages.

    Returns:
        the setup record (also written to ``<workdir>/setup.json``): ``target``,
        ``workdir``, ``venv``, ``python`` (device interpreter and version), ``wheel``
        (name, sha256, action), ``extras``, ``system_site_packages``, ``installed``
        (whether pip ran), ``packages`` (versions in the venv), ``engines`` (importable or
        what is missing), ``meltbench_file``, ``git`` (commit of the checkout),
        ``warnings``, ``seconds``.

    Raises:
        UsageError: bad target, no suitable Python, venv or pip failure, no wheel.
        TargetError: the target is unreachable or dropped.
    """
    t0 = time.monotonic()
    say = on_status or (lambda _msg: None)
    own = not isinstance(target, Target)
    tgt = _open(target, targets_file)
    try:
        if tgt.python is None and python is None:
            raise UsageError(
                f"target {tgt.url} has no Python; use a native engine (adb) or set python:"
            )
        py = python or tgt.python or "python3"
        say(f"checking {py} on {tgt.url}")
        py_version = _check_python(tgt, py)
        workdir = tgt.workdir
        wheels_dir = posixpath.join(workdir, "wheels")
        extras = sorted({e.strip() for e in extras if e.strip()})

        with tempfile.TemporaryDirectory(prefix="meltbench-setup-") as tmp:
            if wheel is not None:
                wheel_path = Path(wheel)
                if not wheel_path.is_file() or wheel_path.suffix != ".whl":
                    raise UsageError(f"--wheel {wheel}: not a wheel file (*.whl)")
            else:
                say("building the meltbench wheel")
                wheel_path = build_wheel(tmp)
            remote_wheel = posixpath.join(wheels_dir, wheel_path.name)
            say(f"pushing {wheel_path.name}")
            wheel_sync = sync_file(tgt, wheel_path, remote_wheel)
            house: list[dict[str, Any]] = []
            if wheelhouse is not None:
                folder = Path(wheelhouse)
                if not folder.is_dir():
                    raise UsageError(f"--wheelhouse {wheelhouse}: not a directory")
                for f in sorted(folder.iterdir()):
                    if f.is_file() and f.suffix in (".whl", ".gz", ".zip"):
                        say(f"pushing {f.name}")
                        house.append(sync_file(tgt, f, posixpath.join(wheels_dir, f.name)))

        venv = venv_dir(tgt)
        say(f"creating the venv {venv}")
        created = _make_venv(tgt, py, venv, system_site_packages)
        vpy = venv_python(tgt)
        state_path = posixpath.join(workdir, SETUP_FILE)
        previous = None if created else _read_json(tgt, state_path)
        wanted = {
            "wheel_sha256": wheel_sync["sha256"],
            "extras": extras,
            "system_site_packages": system_site_packages,
            "wheelhouse": sorted(h["sha256"] for h in house),
        }
        fresh = (
            previous is not None
            and {k: previous.get(k) for k in wanted} == wanted
            and tgt.run([vpy, "-c", "import meltbench"], timeout=120).ok
        )
        warnings: list[str] = []
        if not fresh:
            index = ["--no-index", "--find-links", wheels_dir] if house else []
            reinstall = [*index, "--no-deps", "--force-reinstall", remote_wheel]
            if system_site_packages:
                say("installing meltbench (--no-deps: dependencies from the system Python)")
                _pip(tgt, vpy, reinstall, "meltbench")
            else:
                if extras:
                    url = "file://" + urllib.parse.quote(remote_wheel)
                    req = f"meltbench[{','.join(extras)}] @ {url}"
                else:
                    req = remote_wheel
                shown = f"meltbench[{','.join(extras)}]" if extras else "meltbench"
                say(f"installing {shown} and its dependencies")
                _pip(tgt, vpy, [*index, req], "meltbench and its dependencies")
                _pip(tgt, vpy, reinstall, "meltbench")
        inspect = tgt.run([vpy, "-c", _INSPECT, json.dumps(list(_RECORDED))], timeout=300)
        if not inspect.ok:
            last = next((ln for ln in reversed(inspect.stderr.splitlines()) if ln.strip()), "")
            raise UsageError(
                f"meltbench was installed on {tgt.url} but does not run there ({last[:200]}); "
                "check the device's Python packages or set up without --system-site-packages"
            )
        facts = json.loads(inspect.stdout.strip().splitlines()[-1])
        engines = facts.get("engines", {})
        extra_engine = {"llama": "llama.cpp", "torch": "transformers", "onnx": "onnxruntime"}
        extra_engine.update({"mlx": "mlx", "openai": "openai"})
        for extra in extras:
            engine = extra_engine.get(extra)
            if engine and not engines.get(engine, {}).get("available"):
                missing = ", ".join(engines.get(engine, {}).get("missing", [])) or "?"
                warnings.append(
                    f"extra {extra!r}: engine {engine} is not importable on the device "
                    f"(missing {missing})"
                )
        from meltbench.environment import git_commit

        root = source_root()
        record = {
            **wanted,
            "target": _target_name(tgt),
            "url": tgt.url,
            "workdir": workdir,
            "venv": venv,
            "python": {"interpreter": py, "version": py_version},
            "wheel": {
                "name": wheel_path.name,
                "remote": remote_wheel,
                "sha256": wheel_sync["sha256"],
                "action": wheel_sync["action"],
            },
            "venv_created": created,
            "installed": not fresh,
            "packages": facts.get("packages", {}),
            "engines": engines,
            "meltbench_version": facts.get("meltbench_version"),
            "meltbench_file": facts.get("meltbench_file"),
            "git": git_commit(root) if root is not None and wheel is None else None,
            "set_up_at": utc_now("seconds") if not fresh else (previous or {}).get("set_up_at"),
            "warnings": warnings,
        }
        _write_text(tgt, state_path, json.dumps(record, indent=2))
        record["seconds"] = round(time.monotonic() - t0, 2)
        say(f"{_target_name(tgt)} is set up ({'installed' if not fresh else 'already current'})")
        return record
    finally:
        if own:
            tgt.close()


def cleanup_target(
    target: Target | str, *, targets_file: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Remove the target's workdir: the venv (when inside it), wheels and pushed models.

    Returns:
        ``{"target", "removed": workdir, "kept": [...]}`` (a venv configured outside the
        workdir is kept: it may not be meltbench's).

    Raises:
        UsageError: bad target name.
        TargetError: unreachable, or the workdir could not be removed.
    """
    own = not isinstance(target, Target)
    tgt = _open(target, targets_file)
    try:
        venv = venv_dir(tgt)
        kept = []
        if not (venv + "/").startswith(tgt.workdir.rstrip("/") + "/"):
            kept.append(venv)
        tgt.cleanup()
        return {"target": _target_name(tgt), "removed": tgt.workdir, "kept": kept}
    finally:
        if own:
            tgt.close()
