"""What several commands share: the parser class, the target and database options, the
stdout console, printing a result, atomic writes. argparse only at import time."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, NoReturn

__all__ = [
    "RUN_FORMATS",
    "Parser",
    "add_db_arguments",
    "add_target_arguments",
    "configure_targets",
    "db_from_args",
    "open_store",
    "print_result",
    "stdout_console",
    "write_atomic",
]

RUN_FORMATS = ("table", "json", "jsonl", "csv", "md")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_target_arguments(p: argparse.ArgumentParser) -> None:
    """Where the model runs: --target, --targets, --accept-new-host-key."""
    group = p.add_argument_group("target")
    from meltbench.parameters import PARAMETERS

    target = next(p for p in PARAMETERS if p.key == "target")  # its help, declared once
    group.add_argument(*target.flags, metavar=target.metavar, help=target.help_text())
    group.add_argument(
        "--targets",
        metavar="FILE",
        help="targets file (default: $MELTBENCH_TARGETS or ~/.config/meltbench/targets.yaml)",
    )
    group.add_argument(
        "--accept-new-host-key",
        action="store_true",
        help="SSH: accept an unknown host key once and record it in known_hosts",
    )


def configure_targets(args: argparse.Namespace) -> None:
    """Hand --targets / --accept-new-host-key to the target layer (only when given)."""
    if getattr(args, "targets", None) or getattr(args, "accept_new_host_key", False):
        from meltbench.targets.config import configure

        configure(
            targets_file=args.targets,
            accept_new_host_key=True if args.accept_new_host_key else None,
        )


def add_db_arguments(p: Any, no_db: str | None = None) -> None:
    from meltbench.results.location import add_db_option

    add_db_option(p, no_db)


def db_from_args(args: argparse.Namespace) -> str | None:
    from meltbench.results.location import db_from_args

    db = db_from_args(args)
    return None if db is None else str(db)


def stdout_console() -> Any:
    from rich.console import Console

    return Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)


def print_result(result: Any, fmt: str, err: Any) -> None:
    """A result on stdout in ``fmt``; with a data format, warnings and failure on ``err``."""
    from meltbench.report.terminal import print_bench_table, print_run_details, print_warnings
    from meltbench.results.export import export

    if fmt == "table":
        out = stdout_console()
        if result.requests is not None:
            from meltbench.report.requests_view import print_request_run

            print_request_run(result, out)
            return
        print_bench_table([result], out)
        print_run_details(result, out)
        return
    sys.stdout.write(export([result], fmt))
    print_warnings(result, err)


def open_store(args: argparse.Namespace) -> Any:
    from meltbench.results.location import db_from_args
    from meltbench.results.store import ResultStore

    return ResultStore(db_from_args(args), readonly=True)


def write_atomic(path: str, text: str) -> None:
    from pathlib import Path

    from meltbench.errors import UsageError

    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {target}: {exc.strerror}; choose another --output") from exc
