"""Command line: ``meltbench run``, ``sweep``, ``lab``, ``arch-search``, ``sustain``, ``sensors``,
``eval``, ``quant-study``, ``report``,
``compare``, ``results list|show|export``, ``engines``, ``convert``, ``env``.

Exit codes: 0 success; 1 a run failed (it is stored as failed, with its cause); 2 bad
input (one line on stderr, nothing stored); 130 interrupted by Ctrl-C.

Only ``argparse`` is imported at start-up, so ``meltbench --help`` stays fast; each
command imports what it needs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from meltbench.cli.common import Parser

__all__ = ["ORDER", "build_parser", "main"]

#: the subcommands, in the order ``meltbench --help`` lists them
ORDER = ("run", "sweep", "lab", "arch-search", "sustain", "devices", "target", "sensors", "eval",
         "quant-study", "results", "report", "compare", "engines", "convert", "bandwidth",
         "env")  # fmt: skip


def _commands() -> dict[str, tuple[Callable[[Any], None], Callable[[argparse.Namespace], int]]]:
    """Every subcommand: name -> (add its parser, handle it), one module per role."""
    from meltbench.cli import (
        archsearch,
        compare,
        evaluate,
        lab,
        machine,
        models,
        results,
        run,
        sweep,
    )

    table: dict[str, Any] = {}
    for module in (run, sweep, lab, archsearch, evaluate, results, compare, machine, models):
        table.update(module.COMMANDS)
    return {name: table[name] for name in ORDER}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (all subcommands)."""
    parser = Parser(
        prog="meltbench",
        description="Measure language models on the devices where they run.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for add_parser, _ in _commands().values():
        add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``meltbench`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from meltbench import __version__

        print(f"meltbench {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    from meltbench.errors import RunInterrupted, UsageError
    from meltbench.targets.base import TargetError

    handlers = {name: handler for name, (_, handler) in _commands().items()}
    try:
        return handlers[args.command](args)
    except (UsageError, TargetError) as exc:
        sys.stderr.write(f"meltbench {args.command}: error: {exc}\n")
        return 2
    except RunInterrupted as exc:
        run_id = getattr(exc.result, "run_id", "?")
        sys.stderr.write(f"meltbench: interrupted; the run was stored as failed (run {run_id})\n")
        return 130
    except KeyboardInterrupt:
        sys.stderr.write("meltbench: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); exit quietly like other Unix tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
