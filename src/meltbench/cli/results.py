"""``meltbench results list|show|export`` and ``meltbench report``: stored runs back."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from meltbench.cli.common import (
    RUN_FORMATS,
    Parser,
    add_db_arguments,
    open_store,
    print_result,
    stdout_console,
    write_atomic,
)

__all__ = ["COMMANDS"]


def _cmd_results(args: argparse.Namespace) -> int:
    import json

    from meltbench.errors import UsageError
    from meltbench.results.export import export

    if args.results_command is None:
        raise UsageError("missing action; use: meltbench results list|show|export")
    with open_store(args) as store:
        if args.results_command == "list":
            if args.limit < 1:
                raise UsageError(f"--limit must be >= 1 (got {args.limit})")
            rows = store.list_runs(limit=args.limit)
            if args.format == "json":
                sys.stdout.write(json.dumps(rows, indent=2) + "\n")
            else:
                from meltbench.report.terminal import print_runs_list

                print_runs_list(rows, stdout_console())
            return 0
        if args.results_command == "show":
            from rich.console import Console

            print_result(store.get(args.run_id), args.format, Console(stderr=True))
            return 0
        ids = [store.resolve_id(i) for i in args.run_ids]
        results = [store.get(i) for i in ids] if ids else list(store.iter_results())
        if args.format == "parquet":
            if not args.output:
                raise UsageError("parquet is binary: give --output FILE.parquet")
            from meltbench.results.export import write_parquet

            write_parquet(results, args.output)
            return 0
        text = export(results, args.format)
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from meltbench.errors import UsageError

    sweep = None
    with open_store(args) as store:
        if args.sweep:
            sweep = store.get_sweep(args.sweep)
            results = store.sweep_results(sweep["sweep_id"])
            title = args.title or f"meltbench sweep {sweep['name']}"
        elif args.runs:
            results = [store.get(i) for i in args.runs]
            title = args.title or "meltbench runs"
        else:
            results = list(store.iter_results())
            title = args.title or f"meltbench results ({store.path.name})"
    if not results:
        raise UsageError("no runs to report; run a benchmark first or check --sweep/--runs")
    try:
        from meltbench.report.html import build_report
        from meltbench.report.plots import build_figures, write_figures

        figures = build_figures(results, (sweep or {}).get("analysis"))
    except ImportError as exc:
        raise UsageError(f"{exc}; the report needs: pip install 'meltbench[report]'") from None
    if args.png:
        written = write_figures(figures, args.png)
        sys.stderr.write(f"wrote {len(written)} plot files to {args.png}\n")
    write_atomic(args.output, build_report(results, title=title, sweep=sweep, figures=figures))
    sys.stderr.write(f"wrote {args.output} ({len(results)} runs, {len(figures)} plots)\n")
    return 0


def add_results_parser(sub: Any) -> None:
    """The ``results`` subcommand's arguments."""
    results = sub.add_parser("results", help="read stored runs back")
    rsub = results.add_subparsers(dest="results_command", metavar="ACTION", parser_class=Parser)
    rlist = rsub.add_parser("list", help="list stored runs, newest first")
    rlist.add_argument("--limit", type=int, default=50, help="at most this many runs (default 50)")
    rlist.add_argument("-f", "--format", choices=("table", "json"), default="table")
    rshow = rsub.add_parser("show", help="show one run")
    rshow.add_argument("run_id", help="run id or a unique prefix of it")
    rshow.add_argument("-f", "--format", choices=RUN_FORMATS, default="table")
    rexport = rsub.add_parser("export", help="export runs (all, or the ids given)")
    rexport.add_argument("run_ids", nargs="*", help="run ids or unique prefixes (default: all)")
    rexport.add_argument(
        "-f",
        "--format",
        choices=("json", "jsonl", "csv", "md", "llama-bench", "parquet"),
        default="json",
    )
    rexport.add_argument("--output", help="write to this file instead of stdout")
    for p in (rlist, rshow, rexport):
        add_db_arguments(p)


def add_report_parser(sub: Any) -> None:
    """The ``report`` subcommand's arguments."""
    report = sub.add_parser(
        "report", help="write one self-contained HTML report (plots inline) of stored runs"
    )
    pick = report.add_mutually_exclusive_group()
    pick.add_argument("--sweep", metavar="SWEEP_ID", help="the runs of this sweep")
    pick.add_argument("--runs", nargs="+", metavar="RUN_ID", help="these runs")
    report.add_argument("-o", "--output", default="report.html", help="HTML file to write")
    report.add_argument("--png", metavar="DIR", help="also write every plot as PNG and SVG")
    report.add_argument("--title", help="report title")
    add_db_arguments(report)


COMMANDS = {
    "results": (add_results_parser, _cmd_results),
    "report": (add_report_parser, _cmd_report),
}
"""Subcommand -> (add its parser, handle it)."""
