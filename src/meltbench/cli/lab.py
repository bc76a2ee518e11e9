"""``meltbench lab``: one experiment across many devices on many hosts, on Ray
(:mod:`meltbench.lab.command`)."""

from __future__ import annotations

import argparse
from typing import Any

from meltbench.cli.common import RUN_FORMATS, add_db_arguments, stdout_console

__all__ = ["COMMANDS"]


def _cmd_lab(args: argparse.Namespace) -> int:
    from meltbench.lab.command import run_lab_command

    return run_lab_command(args, stdout_console())


def add_lab_parser(sub: Any) -> None:
    """The ``lab`` subcommand's arguments."""
    lab = sub.add_parser(
        "lab",
        help="run one experiment across the devices of a lab (Ray; pip install meltbench[lab])",
        description=(
            "Expand EXPERIMENT over the devices of LAB (each a Ray resource device:NAME on "
            "the node it is attached to), run every device in parallel, one run per device "
            "at a time, and store each result as it arrives. Without --address an embedded "
            "Ray instance runs on this machine. Resumable with --resume."
        ),
    )
    lab.add_argument("lab", help="lab YAML: the devices and their hosts (see examples/)")
    lab.add_argument("experiment", nargs="?", help="experiment YAML (a sweep file + devices:)")
    lab.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="join this Ray cluster (ray start --head); default: embedded",
    )
    lab.add_argument(
        "--devices",
        metavar="LIST",
        help="only these devices: names, class:NAME, host:NAME (comma-separated)",
    )
    lab.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="ID",
        help="run only the pairs not stored by the last run of these files",
    )
    lab.add_argument(
        "--device-grace",
        type=float,
        metavar="S",
        help="cancel a lost device's queued pairs after S seconds (default 30)",
    )
    lab.add_argument("--dry-run", action="store_true", help="print the pairs and stop")
    lab.add_argument(
        "--hosts", action="store_true", help="print the ray start command of each host and stop"
    )
    add_db_arguments(lab)
    lab.add_argument(
        "-f",
        "--format",
        choices=[f for f in RUN_FORMATS if f in ("table", "json")],
        default="table",
    )
    lab.add_argument("-q", "--quiet", action="store_true", help="no progress display")


COMMANDS = {
    "lab": (add_lab_parser, _cmd_lab),
}
"""Subcommand -> (add its parser, handle it)."""
