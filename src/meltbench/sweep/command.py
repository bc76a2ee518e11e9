"""``meltbench sweep``: build the experiment from a file and/or command-line lists, check
every point, show the plan (``--dry-run``) or run it with a progress bar and ETA, then
print the results, the failures and the scaling fits."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from meltbench.errors import UsageError
from meltbench.parameters import PARAMETERS
from meltbench.results.schema import RunResult
from meltbench.sweep.experiment import (
    INT_AXES,
    Experiment,
    expand,
    load_experiment,
    order_points,
    parse_experiment,
    parse_size,
)
from meltbench.sweep.listsyntax import parse_int_list, parse_str_list

__all__ = ["analyze_sweep", "experiment_from_args", "run_sweep_command"]

_AXIS_FLAGS = tuple(p.key for p in PARAMETERS if p.sweep_flag)


def experiment_from_args(args: argparse.Namespace) -> Experiment:
    """The experiment of a ``meltbench sweep`` call: the file's, with every list given on
    the command line replacing that axis (and the cool-down/limits overriding).

    Raises:
        UsageError: unreadable or invalid file, or a malformed list.
    """
    exp = load_experiment(args.file) if args.file else parse_experiment({}, "<command line>", {})
    for axis in _AXIS_FLAGS:
        text = getattr(args, axis, None)
        if text is None:
            continue
        flag = "--" + axis.replace("_", "-")
        values: list[Any] = parse_int_list(text, flag) if axis in INT_AXES else parse_str_list(text)
        if not values:
            raise UsageError(f"{flag}: empty list")
        exp.axes[axis] = values
    for flag, key, value in (
        ("--cooldown", "cooldown_s", args.cooldown),
        ("--cooldown-margin", "cooldown_margin_c", args.cooldown_margin),
        ("--cooldown-timeout", "cooldown_timeout_s", args.cooldown_timeout),
    ):
        if value is not None:
            if not value >= 0:
                raise UsageError(f"{flag} must be >= 0 (got {value:g})")
            exp.settings[key] = value
    if args.timeout is not None:
        exp.settings["timeout_s"] = args.timeout
    if args.memory_limit is not None:
        exp.settings["memory_limit_bytes"] = parse_size(args.memory_limit, "--memory-limit")
    if args.find_max_context:
        bounds = parse_int_list(args.find_max_context, "--find-max-context")
        if len(bounds) < 2:
            raise UsageError("--find-max-context: give a range LO-HI, e.g. 1024-65536")
        exp.settings["search"] = {"lo": min(bounds), "hi": max(bounds), "multiple_of": 256,
                                  "max_probes": 12}  # fmt: skip
    return exp


def analyze_sweep(results: list[RunResult]) -> dict[str, Any]:
    """The stored analysis of a sweep: context-scaling fits of its ok runs."""
    from meltbench.results.context_scaling import context_scaling

    return {"scaling": context_scaling(results)}


def _print_plan(points: list[Any], eta_s: float, console: Console) -> None:
    table = Table(header_style="bold", title=f"{len(points)} points")
    for col in ("#", "point", "key"):
        table.add_column(col)
    for i, p in enumerate(points, 1):
        table.add_row(str(i), p.label(), p.key)
    console.print(table)
    console.print(f"estimated duration: {eta_s / 60:.1f} min (see meltbench.sweep.execute)")


def _print_scaling(rows: list[dict[str, Any]], console: Console) -> None:
    if not rows:
        return
    table = Table(header_style="bold", title="scaling with context (power law y = a * x^b)")
    for col in ("group", "metric", "x", "b", "95% CI", "R²", "n", "verdict"):
        table.add_column(col)
    shown = ("model", "quant", "weights", "engine", "dtype", "threads")
    for r in rows:
        g = r["group"]
        group = " ".join(
            (f"t{g[k]}" if k == "threads" else str(g[k]))
            for k in shown
            if g.get(k) not in (None, "", "pretrained")
        )
        table.add_row(group, r["metric"], r["x"], f"{r['exponent']:.3f}",
                      f"[{r['ci95_low']:.3f}, {r['ci95_high']:.3f}]", f"{r['r_squared']:.3f}",
                      str(r["n"]), r["verdict"])  # fmt: skip
    console.print(table)


def _search(exp: Experiment, points: list[Any], db: Path, console: Console) -> list[dict]:
    from meltbench.sweep.execute import point_options, requantized_options
    from meltbench.sweep.experiment import GROUP_KEYS
    from meltbench.sweep.search import context_probe, find_max_context

    spec = exp.settings["search"]
    keys = (*GROUP_KEYS, "threads")  # one search per model (as loaded) and thread count
    seen: set[tuple[Any, ...]] = set()
    out = []
    for point in points:
        group = tuple(point.params.get(k) for k in keys)
        if group in seen:
            continue
        seen.add(group)
        base = point_options(exp, point)
        if point.params.get("quant"):
            base, _ = requantized_options(base, str(point.params["quant"]))
        for k in ("n_prompt", "ctx", "memory_limit_bytes", "timeout_s"):
            base.pop(k, None)  # the probe sets these itself
        probe = context_probe(
            base,
            memory_limit_bytes=exp.settings.get("memory_limit_bytes"),
            timeout_s=exp.settings.get("timeout_s"),
            db=db,
        )
        found = find_max_context(
            probe, spec["lo"], spec["hi"], multiple_of=spec.get("multiple_of", 1),
            max_probes=spec.get("max_probes", 12),
        )  # fmt: skip
        console.print(f"max context, {point.label()}: {found.summary}", highlight=False)
        out.append({"group": dict(zip(keys, group, strict=True)),
                    "largest_ok": found.largest_ok, "smallest_failed": found.smallest_failed,
                    "converged": found.converged, "summary": found.summary,
                    "probes": [list(p) for p in found.probes]})  # fmt: skip
    return out


def run_sweep_command(args: argparse.Namespace, out: Console) -> int:
    """Body of ``meltbench sweep``; returns the exit code (1 if any point failed)."""
    from meltbench.report.terminal import print_bench_table
    from meltbench.results.export import export
    from meltbench.results.location import db_from_args
    from meltbench.results.store import ResultStore
    from meltbench.sweep.execute import estimate_seconds, prepare_points, run_sweep

    db = db_from_args(args)
    err = Console(stderr=True)
    if args.list:
        with ResultStore(db, readonly=True) as store:
            rows = store.list_sweeps()
        table = Table(header_style="bold")
        for col in ("sweep_id", "name", "created_at", "points stored/planned", "source"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["sweep_id"][:12], r["name"], r["created_at"][:19],
                          f"{r['stored']}/{r['planned']}", r["source"] or "")  # fmt: skip
        out.print(table)
        return 0
    resume = args.resume
    if isinstance(resume, str) and not args.file:
        with ResultStore(db, readonly=True) as store:
            sweep = store.get_sweep(resume)
        args.file = sweep["source"]
        if not args.file:
            raise UsageError(f"sweep {resume} was started from the command line; repeat its lists")
    if not args.file and not any(getattr(args, a, None) for a in _AXIS_FLAGS):
        raise UsageError("give an experiment file or lists, e.g. meltbench sweep -p 128,512")
    exp = experiment_from_args(args)
    points = order_points(expand(exp))
    notes: list[str] = []
    prepared = prepare_points(exp, points, notes)
    for note in notes:
        err.print(f"note: {note}", highlight=False)
    if args.dry_run:
        store = ResultStore(db, readonly=True) if db.exists() else None
        try:
            eta = estimate_seconds(prepared, exp.settings.get("cooldown_s") or 0.0, store)
        finally:
            if store is not None:
                store.close()
        _print_plan(points, eta, out)
        return 0

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=args.quiet or not err.is_terminal,
    )
    task = progress.add_task(exp.name, total=len(points))

    def started(i: int, n: int, point: Any) -> None:
        progress.update(task, description=f"{exp.name}: {i}/{n} {point.label()}")

    def finished(point: Any, result: RunResult | None) -> None:
        progress.advance(task)
        if result is not None and not result.ok:
            err.print(f"[yellow]point failed[/] {point.label()}: {result.failure}")

    with progress:
        outcome = run_sweep(exp, points, prepared, db, resume=resume, on_point_start=started,
                            on_point_done=finished, analyze=analyze_sweep)  # fmt: skip
    if exp.settings.get("search"):
        outcome.analysis["max_context"] = _search(exp, points, db, err)
        with ResultStore(db) as store:
            store.set_sweep_analysis(outcome.sweep_id, outcome.analysis)

    if args.format == "table":
        print_bench_table(outcome.results, out)
        _print_scaling(outcome.analysis.get("scaling", []), out)
    elif args.format == "json":
        sys.stdout.write(json.dumps({
            "sweep_id": outcome.sweep_id,
            "analysis": outcome.analysis,
            "results": [r.to_json_dict() for r in outcome.results],
        }, indent=2) + "\n")  # fmt: skip
    else:
        sys.stdout.write(export(outcome.results, args.format))
    failed = [r for r in outcome.results if not r.ok]
    sys.stderr.write(
        f"sweep {outcome.sweep_id} ({exp.name}): {len(outcome.ran)} run now, "
        f"{outcome.skipped} already stored, {len(failed)} failed; in {db}\n"
    )
    return 1 if failed else 0
