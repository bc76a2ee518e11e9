"""Where results are stored: the default database and the ``--db`` / ``--no-db`` options.

Declared once here and used by every command that reads or writes runs (run, sustain,
sweep, eval, quant-study, results, report, compare). Light on purpose (argparse and
os only): the CLI builds its parser from it without importing the store.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from meltbench.errors import UsageError

__all__ = ["DB_HELP", "DEFAULT_DB", "add_db_option", "db_from_args", "default_db_path"]

DEFAULT_DB = "meltbench.db"
DB_HELP = "results database (default: $MELTBENCH_DB or ./meltbench.db)"


def default_db_path() -> Path:
    """``$MELTBENCH_DB`` if set, else ``./meltbench.db``."""
    return Path(os.environ.get("MELTBENCH_DB") or DEFAULT_DB)


def add_db_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    no_db: str | None = None,
    help: str = DB_HELP,
) -> None:
    """``--db PATH`` (and ``--no-db``, with ``no_db`` as its help, for commands that store).

    ``help`` replaces the ``--db`` help where the database plays another role (compare:
    the database its ids are looked up in).
    """
    parser.add_argument("--db", help=help)
    if no_db is not None:
        parser.add_argument("--no-db", action="store_true", help=no_db)


def db_from_args(args: argparse.Namespace) -> Path | None:
    """The database a command uses: ``--db``, else :func:`default_db_path`; None with
    ``--no-db``.

    Raises:
        UsageError: ``--db`` and ``--no-db`` together.
    """
    db, no_db = getattr(args, "db", None), getattr(args, "no_db", False)
    if db is not None and no_db:
        raise UsageError("--db and --no-db contradict each other; pass one of them")
    if no_db:
        return None
    return Path(db) if db else default_db_path()
