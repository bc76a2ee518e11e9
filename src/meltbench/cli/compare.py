"""``meltbench compare``: two result sets point by point (exit 1 on a regression)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from meltbench.cli.common import stdout_console
from meltbench.errors import UsageError
from meltbench.report.compare_view import render_markdown, render_table
from meltbench.results.compare import (
    DEFAULT_METRICS,
    FORMATS,
    IDENTITY_FIELDS,
    compare_results,
    load_selection,
)
from meltbench.results.location import add_db_option

__all__ = ["COMMANDS", "add_compare_arguments", "compare_command"]


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments of ``meltbench compare`` on ``parser`` (the subparser).

    Namespace fields: base, candidate (str); db, base_db, candidate_db (str or None);
    threshold (float, 0.05); metrics (list of str or None); format (table, json, md);
    seed (int, 0); force (bool); ignore (list of str or None).
    """
    parser.add_argument("base", help="BASE: run id, sweep id (unique prefix), or database file")
    parser.add_argument("candidate", help="CANDIDATE: run id, sweep id, or database file")
    add_db_option(parser, help="database of the ids (default: $MELTBENCH_DB or ./meltbench.db)")
    parser.add_argument("--base-db", help="database of BASE (overrides --db)")
    parser.add_argument("--candidate-db", help="database of CANDIDATE (overrides --db)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.05,
        help="smallest relative change that counts as a regression (default: 0.05 = 5%%)",
    )
    parser.add_argument(
        "--metrics",
        type=lambda s: [m for m in s.split(",") if m],
        help="comma-separated metrics (default: " + ",".join(DEFAULT_METRICS) + ")",
    )
    parser.add_argument("-f", "--format", choices=FORMATS, default="table", help="output format")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="compare one point with one point even if their identities differ "
        "(e.g. threads 1 vs 2, Q4_0 vs Q4_K_M); the differing fields are printed",
    )
    parser.add_argument(
        "--ignore",
        action="append",
        metavar="FIELD",
        help="leave an identity field out of the matching, repeatable: "
        + ", ".join(IDENTITY_FIELDS),
    )


def compare_command(args: argparse.Namespace, console: Any) -> int:
    """Run ``meltbench compare``: select, match, compare, print.

    Args:
        args: namespace of :func:`add_compare_arguments` (``force`` and ``ignore`` may be
            absent: default off).
        console: ``rich.console.Console`` for the table; json and md are written to
            ``console.file``.

    Returns:
        1 if any metric regressed (significant and beyond the threshold), else 0.

    Raises:
        UsageError: bad input (exit code 2 in the CLI), one line.
    """
    fmt = getattr(args, "format", "table") or "table"
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    threshold = getattr(args, "threshold", 0.05)
    threshold = 0.05 if threshold is None else float(threshold)
    db = getattr(args, "db", None)
    base_db = getattr(args, "base_db", None) or db
    cand_db = getattr(args, "candidate_db", None) or db
    ignore_arg = getattr(args, "ignore", None) or []
    ignore = [f for item in ignore_arg for f in str(item).split(",") if f]
    seed = getattr(args, "seed", 0)
    base = load_selection(args.base, base_db, "BASE")
    cand = load_selection(args.candidate, cand_db, "CANDIDATE")
    comparison = compare_results(
        base.results,
        cand.results,
        metrics=getattr(args, "metrics", None),
        threshold=threshold,
        seed=0 if seed is None else int(seed),
        force=bool(getattr(args, "force", False)),
        ignore=ignore,
    )
    if fmt == "json":
        doc = {"base": base.to_dict(), "candidate": cand.to_dict(), **comparison.to_dict()}
        out = getattr(console, "file", None) or sys.stdout
        out.write(json.dumps(doc, indent=2) + "\n")
    elif fmt == "md":
        out = getattr(console, "file", None) or sys.stdout
        out.write(render_markdown(comparison))
    else:
        render_table(comparison, console)
    return comparison.exit_code


def _cmd_compare(args: argparse.Namespace) -> int:
    return compare_command(args, stdout_console())


def add_compare_parser(sub: Any) -> None:
    """The ``compare`` subcommand's arguments."""
    compare = sub.add_parser(
        "compare",
        help="compare two result sets with a significance test (exit 1 on a regression)",
        description=(
            "BASE and CANDIDATE are run ids, sweep ids (unique prefixes) or database files. "
            "Matching points are compared metric by metric: ratio of medians with a 95%% "
            "bootstrap CI and a Mann-Whitney p-value; exit code 1 when a regression beyond "
            "--threshold is significant."
        ),
    )
    add_compare_arguments(compare)


COMMANDS = {
    "compare": (add_compare_parser, _cmd_compare),
}
"""Subcommand -> (add its parser, handle it)."""
