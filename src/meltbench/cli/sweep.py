"""``meltbench sweep``: a matrix of benchmarks (:mod:`meltbench.sweep.command`)."""

from __future__ import annotations

import argparse
from typing import Any

from meltbench.cli.common import RUN_FORMATS, add_db_arguments, add_target_arguments, stdout_console

__all__ = ["COMMANDS"]


def _cmd_sweep(args: argparse.Namespace) -> int:
    from meltbench.sweep.command import run_sweep_command

    return run_sweep_command(args, stdout_console())


def add_sweep_parser(sub: Any) -> None:
    """The ``sweep`` subcommand's arguments."""
    sweep = sub.add_parser(
        "sweep",
        help="run a matrix of benchmarks from a YAML file and/or llama-bench lists",
        description=(
            "Expand an experiment (YAML file, and/or lists on the command line in "
            "llama-bench syntax: -p 128,512 or -p 128-2048*2 or -t 1-4+1) to its points, "
            "check them all, then run each in a fresh worker, storing each as it finishes. "
            "Resumable with --resume."
        ),
    )
    sweep.add_argument("file", nargs="?", help="experiment YAML (see examples/)")
    from meltbench.parameters import add_sweep_list_options

    add_sweep_list_options(sweep)
    sweep.add_argument("--cooldown", type=float, metavar="S", help="seconds between points")
    sweep.add_argument(
        "--cooldown-margin",
        type=float,
        metavar="C",
        help="then wait until the hottest sensor is within C degrees of its idle value",
    )
    sweep.add_argument(
        "--cooldown-timeout", type=float, metavar="S", help="longest temperature wait, s"
    )
    sweep.add_argument("--timeout", type=float, metavar="S", help="per-point worker timeout")
    add_target_arguments(sweep)
    sweep.add_argument("--memory-limit", metavar="SIZE", help="per-point RLIMIT_AS, e.g. 2GiB")
    sweep.add_argument(
        "--find-max-context",
        metavar="LO-HI",
        help="after the matrix, bisect n_prompt in [LO, HI] to the largest that runs",
    )
    sweep.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="SWEEP_ID",
        help="run only the missing points of the last sweep of FILE (or of SWEEP_ID)",
    )
    sweep.add_argument("--dry-run", action="store_true", help="print the points and an ETA")
    sweep.add_argument("--list", action="store_true", help="list the sweeps in the database")
    add_db_arguments(sweep)
    sweep.add_argument("-f", "--format", choices=RUN_FORMATS, default="table")
    sweep.add_argument("-q", "--quiet", action="store_true", help="no progress display")


COMMANDS = {
    "sweep": (add_sweep_parser, _cmd_sweep),
}
"""Subcommand -> (add its parser, handle it)."""
