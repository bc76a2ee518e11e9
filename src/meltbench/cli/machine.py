"""``meltbench devices``, ``target``, ``sensors``, ``bandwidth``, ``env``: the machines."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from meltbench.cli.common import (
    Parser,
    add_target_arguments,
    configure_targets,
    stdout_console,
)

__all__ = ["COMMANDS"]


def _cmd_devices(args: argparse.Namespace) -> int:
    import json

    from meltbench.targets.devices import list_devices

    devices = list_devices(args.targets)
    if args.format == "json":
        sys.stdout.write(json.dumps(devices, indent=2, default=str) + "\n")
        return 0
    from meltbench.report.terminal import print_devices

    print_devices(devices, stdout_console())
    return 0


def _cmd_target(args: argparse.Namespace) -> int:
    from meltbench.errors import UsageError
    from meltbench.targets.setup import cleanup_target, setup_target

    if args.target_command is None:
        raise UsageError("missing action; use: meltbench target setup|cleanup TARGET")
    configure_targets(args)
    if args.target_command == "cleanup":
        cleanup_target(args.target, targets_file=args.targets)
        sys.stderr.write(f"removed meltbench's files from {args.target}\n")
        return 0
    extras = tuple(e.strip() for e in args.extras.split(",") if e.strip())
    info = setup_target(
        args.target,
        extras,
        system_site_packages=args.system_site_packages,
        python=args.python,
        wheel=args.wheel,
        wheelhouse=args.wheelhouse,
        targets_file=args.targets,
        on_status=lambda msg: sys.stderr.write(msg + "\n"),
    )
    import json

    sys.stdout.write(json.dumps(info, indent=2, default=str) + "\n")
    return 0


def _cmd_sensors(args: argparse.Namespace) -> int:
    import json

    from meltbench.errors import UsageError
    from meltbench.sensors.device_state import read_device_state
    from meltbench.sensors.discover import probe_sensors
    from meltbench.sensors.sysfs import SysFS

    root = args.sysfs_root or "/"
    if not os.path.isdir(root):
        raise UsageError(f"--sysfs-root {root!r} is not a directory; give a sysfs tree")
    fs = SysFS(root)
    from meltbench.parameters import sensor_names

    probed = probe_sensors(fs, sensor_names(args.sensors))
    readings: dict[str, list[float | None]] = {}
    try:
        if args.read:
            for sensor, probe in probed:
                if sensor is not None and probe.available:
                    try:
                        readings[probe.sensor] = list(sensor.read())
                    except Exception as exc:
                        readings[probe.sensor] = []
                        sys.stderr.write(f"reading {probe.sensor} failed: {exc}\n")
        state = read_device_state(fs)
    finally:
        for sensor, _ in probed:
            if sensor is not None:
                sensor.close()
    if args.format == "json":
        data = {
            "root": root,
            "sensors": [{**p.to_dict(), "reading": readings.get(p.sensor)} for _, p in probed],
            "device_state": state,
        }
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return 0
    from meltbench.report.terminal import print_sensors

    print_sensors([p for _, p in probed], readings, state, stdout_console(), root=root)
    return 0


def _cmd_bandwidth(args: argparse.Namespace) -> int:
    import json

    from meltbench.errors import UsageError
    from meltbench.targets.bandwidth import measure_target_bandwidth

    configure_targets(args)
    threads = None
    if args.threads:
        try:
            threads = [int(t) for t in args.threads.split(",") if t.strip()]
        except ValueError:
            msg = f"--threads: expected numbers like 1,2,4, got {args.threads!r}"
            raise UsageError(msg) from None
    if args.size_mib is not None and args.size_mib < 1:
        raise UsageError(f"--size-mib must be >= 1 (got {args.size_mib})")
    result = measure_target_bandwidth(
        args.target or "local",
        threads,
        size_bytes=args.size_mib * 1024**2 if args.size_mib else None,
        trials=args.trials,
    )
    if args.format == "json":
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
        return 0
    from meltbench.report.terminal import print_bandwidth

    print_bandwidth(result, stdout_console())
    return 0


def _cmd_env(args: argparse.Namespace) -> int:
    import json

    from meltbench.environment import collect_environment

    sys.stdout.write(json.dumps(collect_environment(), indent=2) + "\n")
    return 0


def add_devices_parser(sub: Any) -> None:
    """The ``devices`` subcommand's arguments."""
    dev = sub.add_parser(
        "devices", help="configured and attached targets: reachable, OS, CPU, memory, engines"
    )
    dev.add_argument("--targets", metavar="FILE", help="targets file")
    dev.add_argument("-f", "--format", choices=("table", "json"), default="table")


def add_target_parser(sub: Any) -> None:
    """The ``target`` subcommand's arguments."""
    tgt = sub.add_parser("target", help="prepare or clean up a remote target")
    tsub = tgt.add_subparsers(dest="target_command", metavar="ACTION", parser_class=Parser)
    tsetup = tsub.add_parser(
        "setup", help="install this checkout's meltbench (and engine extras) in a venv there"
    )
    tsetup.add_argument("target", help="ssh://[user@]host[:port] or a name in the targets file")
    tsetup.add_argument("--extras", default="llama", help="engine extras, comma list (llama)")
    tsetup.add_argument(
        "--system-site-packages",
        action="store_true",
        help="let the venv use the device's installed packages (downloads nothing)",
    )
    tsetup.add_argument("--python", help="device interpreter for the venv (default python3)")
    tsetup.add_argument("--wheel", help="install this wheel instead of building one")
    tsetup.add_argument("--wheelhouse", metavar="DIR", help="local wheels to push and use")
    tclean = tsub.add_parser("cleanup", help="remove everything meltbench pushed there")
    tclean.add_argument("target", help="a target URL or name")
    for p in (tsetup, tclean):
        p.add_argument("--targets", metavar="FILE", help="targets file")
        p.add_argument(
            "--accept-new-host-key", action="store_true", help="accept an unknown host key once"
        )


def add_sensors_parser(sub: Any) -> None:
    """The ``sensors`` subcommand's arguments."""
    sens = sub.add_parser(
        "sensors", help="list every sensor of this machine: available or not, and why"
    )
    sens.add_argument("--sysfs-root", metavar="DIR", help="read sysfs under DIR instead of /")
    sens.add_argument("--sensors", metavar="LIST", help="only these sensors (comma list)")
    sens.add_argument("--read", action="store_true", help="also take one reading of every channel")
    sens.add_argument("-f", "--format", choices=("table", "json"), default="table")


def add_bandwidth_parser(sub: Any) -> None:
    """The ``bandwidth`` subcommand's arguments."""
    bw = sub.add_parser(
        "bandwidth",
        help="measure the target's memory bandwidth (the roof of decode speed)",
        description="STREAM-style read/copy/triad kernels over arrays much larger than the "
        "last-level cache, at 1..N threads; the read figure becomes the roof of every later "
        "run's decode_bound_tps on this target.",
    )
    bw.add_argument("--threads", help="comma-separated thread counts (default: 1..cores)")
    bw.add_argument("--size-mib", type=int, help="MiB per array (default: 8 x LLC, >= 256)")
    bw.add_argument("--trials", type=int, default=5, help="trials per point, best kept (5)")
    bw.add_argument("-f", "--format", choices=("table", "json"), default="table")
    add_target_arguments(bw)


def add_env_parser(sub: Any) -> None:
    """The ``env`` subcommand's arguments."""
    sub.add_parser("env", help="print this machine's environment as JSON")


COMMANDS = {
    "devices": (add_devices_parser, _cmd_devices),
    "target": (add_target_parser, _cmd_target),
    "sensors": (add_sensors_parser, _cmd_sensors),
    "bandwidth": (add_bandwidth_parser, _cmd_bandwidth),
    "env": (add_env_parser, _cmd_env),
}
"""Subcommand -> (add its parser, handle it)."""
