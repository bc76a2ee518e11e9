"""``meltbench arch-search``: latency-optimal decoder shapes per device
(:mod:`meltbench.archsearch`)."""

from __future__ import annotations

import argparse
from typing import Any

from meltbench.cli.common import add_db_arguments, configure_targets, stdout_console

__all__ = ["COMMANDS"]


def _cmd_arch_search(args: argparse.Namespace) -> int:
    from meltbench.archsearch.command import run_arch_search_command

    configure_targets(args)
    return run_arch_search_command(args, stdout_console())


def _add_search_options(p: argparse.ArgumentParser) -> None:
    from meltbench.archsearch.space import STRATEGIES

    p.add_argument("space", help="search-space YAML (see examples/arch-space-phonelm.yaml)")
    p.add_argument("--budget-params", metavar="LO..HI",
                   help="keep shapes with LO..HI parameters, e.g. 300M..600M")  # fmt: skip
    p.add_argument("--quant", metavar="TYPE", help="llama.cpp type of the candidates (Q4_0)")
    p.add_argument("--strategy", choices=STRATEGIES, help="how candidates are chosen")
    p.add_argument("--samples", type=int, metavar="N", help="candidates to measure")
    p.add_argument("--max-candidates", type=int, metavar="N",
                   help="refuse an exhaustive search of more shapes (default 64)")  # fmt: skip
    p.add_argument("--seed", type=int, help="random strategy and weights seed")
    p.add_argument("--engine", choices=("llama.cpp", "transformers"),
                   help="llama.cpp (quantised GGUF) or transformers (random weights)")  # fmt: skip
    p.add_argument("--resume", action="store_true",
                   help="continue the stored sweeps of this space (killed or failed)")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print the shapes and the first round")
    p.add_argument("-f", "--format", choices=("table", "json"), default="table")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")


def add_arch_search_parser(sub: Any) -> None:
    """The ``arch-search`` subcommand's arguments."""
    p = sub.add_parser(
        "arch-search",
        help="measure random-weight decoder shapes on a device and fit its latency model",
        description=(
            "Expand a space of decoder shapes, keep those inside the parameter budget "
            "(counted exactly), write each chosen candidate as a random-weight GGUF "
            "quantised with llama.cpp (or a transformers config), measure it on each "
            "--target through the sweep machinery, fit prefill and decode latency on "
            "FLOPs, weight bytes and KV bytes, and print the latency-vs-parameters "
            "Pareto fronts (measured and predicted)."
        ),
    )
    _add_search_options(p)
    group = p.add_argument_group("target")
    group.add_argument("--target", action="append", metavar="TARGET",
                       help="where to measure: local (default), ssh://[user@]host[:port] or a "
                       "name from the targets file; repeat to compare devices")  # fmt: skip
    group.add_argument("--targets", metavar="FILE", help="targets file")
    group.add_argument("--accept-new-host-key", action="store_true",
                       help="SSH: accept an unknown host key once and record it")  # fmt: skip
    add_db_arguments(p)


COMMANDS = {
    "arch-search": (add_arch_search_parser, _cmd_arch_search),
}
"""Subcommand -> (add its parser, handle it)."""
