"""``meltbench lab``: plan the (point, device) pairs, show the plan or the ``ray start``
commands, or run them on Ray with a live devices x points view, then print the results and
a per-device summary (wall time, busy time, failures, what was not run)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from meltbench.errors import UsageError
from meltbench.lab.execute import LabOutcome, PairState

__all__ = ["device_summary", "render_grid", "run_lab_command"]

_GLYPH = {"queued": ("·", "dim"), "running": ("▶", "bold cyan"), "ok": ("✓", "green"),
          "failed": ("✗", "bold red"), "stored": ("○", "dim green"), "unrun": ("?", "yellow"),
          "n/a": ("-", "dim")}  # fmt: skip
_MAX_COLUMNS = 40


def _points(states: list[PairState]) -> list[Any]:
    return list({s.pair.point.key: s.pair.point for s in states}.values())


def render_grid(states: list[PairState], title: str = "lab") -> Group:
    """The devices x points grid: one glyph per pair (legend below); past 40 points, the
    counts per state instead."""
    points = _points(states)
    index = {p.key: i for i, p in enumerate(points, 1)}
    devices = list(dict.fromkeys(s.pair.device.name for s in states))
    cell = {(s.pair.device.name, s.pair.point.key): s for s in states}
    table = Table(title=title, header_style="bold")
    table.add_column("device")
    wide = len(points) <= _MAX_COLUMNS
    for p in points if wide else []:
        table.add_column(str(index[p.key]), justify="center")
    table.add_column("done", justify="right")
    table.add_column("now")
    for name in devices:
        row: list[Any] = [name]
        mine = [s for s in states if s.pair.device.name == name]
        if wide:
            for p in points:
                s = cell.get((name, p.key))
                glyph, style = _GLYPH[s.state] if s else (" ", "")
                row.append(Text(glyph, style=style))
        finished = sum(s.state in ("ok", "failed", "stored") for s in mine)
        runnable = sum(s.state != "n/a" for s in mine)
        running = [s for s in mine if s.state == "running"]
        now = ""
        if running:
            r = running[0]
            now = f"#{index[r.pair.point.key]} {time.time() - (r.started or time.time()):.0f} s"
        row += [f"{finished}/{runnable}", now]
        table.add_row(*row)
    legend = "  ".join(f"{g} {name}" for name, (g, _) in _GLYPH.items())
    labels = "  ".join(f"#{index[p.key]} {p.label()}" for p in points[:_MAX_COLUMNS])
    return Group(table, Text(legend, style="dim"), Text(labels, style="dim"))


def device_summary(outcome: LabOutcome) -> list[dict[str, Any]]:
    """Per device: host, pairs ok/failed/stored earlier/not run/n-a, busy time (sum of its
    runs' wall time in this invocation, s) and span (first start to last finish, s)."""
    rows: dict[str, dict[str, Any]] = {}
    for s in outcome.states:
        d = s.pair.device
        row = rows.setdefault(d.name, {"device": d.name, "class": d.device_class,
                                       "host": d.host, "ok": 0, "failed": 0, "stored": 0,
                                       "unrun": 0, "n/a": 0, "busy_s": 0.0, "span_s": 0.0,
                                       "_t": [], "reasons": []})  # fmt: skip
        if s.state in row:
            row[s.state] += 1
        if s.started is not None and s.finished is not None:
            row["busy_s"] += s.finished - s.started
            row["_t"] += [s.started, s.finished]
        if s.state in ("unrun", "n/a") and s.reason and s.reason not in row["reasons"]:
            row["reasons"].append(s.reason)
    out = []
    for row in rows.values():
        t = row.pop("_t")
        row["span_s"] = (max(t) - min(t)) if t else 0.0
        out.append(row)
    return out


def _print_summary(outcome: LabOutcome, out: Console) -> None:
    table = Table(header_style="bold", title=f"lab summary: {outcome.wall_s:.1f} s wall")
    for col in ("device", "class", "ok", "failed", "stored before", "not run", "n/a",
                "busy s", "span s"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("device", "class") else "right")
    rows = device_summary(outcome)
    for r in rows:
        table.add_row(r["device"], r["class"], str(r["ok"]), str(r["failed"]), str(r["stored"]),
                      str(r["unrun"]), str(r["n/a"]), f"{r['busy_s']:.1f}",
                      f"{r['span_s']:.1f}")  # fmt: skip
    out.print(table)
    for r in rows:
        for reason in r["reasons"]:
            out.print(Text(f"{r['device']}: {reason}", style="yellow"))


def _print_plan(states: list[PairState], out: Console, commands: dict[str, str]) -> None:
    out.print(render_grid(states, title=f"{len(states)} (point, device) pairs"))
    for s in states:
        if s.state == "n/a":
            out.print(Text(f"n/a {s.pair.label()}: {s.reason}", style="dim"))
    out.print("on a cluster, attach each host's devices with:")
    for host, command in commands.items():
        out.print(Text(f"  {host}: {command}"))


def run_lab_command(args: argparse.Namespace, out: Console) -> int:
    """Body of ``meltbench lab``; returns the exit code (1 if a stored run of the lab failed
    or a pair was not run)."""
    from rich.live import Live

    from meltbench.lab.cluster import connect, import_ray
    from meltbench.lab.config import load_lab, ray_start_commands
    from meltbench.lab.execute import run_lab
    from meltbench.lab.plan import load_lab_experiment, plan_pairs
    from meltbench.report.terminal import print_bench_table
    from meltbench.results.location import db_from_args

    lab = load_lab(args.lab)
    commands = ray_start_commands(lab, args.address or "HEAD_IP:6379")
    if args.hosts:
        for host, command in commands.items():
            out.print(Text(f"{host}: {command}"))
        return 0
    if not args.experiment:
        raise UsageError("give an experiment file: meltbench lab LAB.yaml EXPERIMENT.yaml")
    if args.device_grace is not None and not args.device_grace >= 0:
        raise UsageError(f"--device-grace must be >= 0 (got {args.device_grace:g})")
    exp = load_lab_experiment(args.experiment)
    only = [s.strip() for s in args.devices.split(",") if s.strip()] if args.devices else None
    pairs = plan_pairs(exp, lab, only)
    if args.dry_run:
        _print_plan([PairState(p, "n/a" if p.skip_reason else "queued", reason=p.skip_reason)
                     for p in pairs], out, commands)  # fmt: skip
        return 0
    db = db_from_args(args)
    err = Console(stderr=True)
    names = dict.fromkeys(p.device.name for p in pairs if not p.skip_reason)
    devices = [lab.devices[n] for n in names]
    where = connect(args.address, lab, devices)
    if not args.quiet:
        err.print(f"lab {lab.name}: {len(pairs)} pairs on {len(devices)} devices; {where}")
    live = Live(console=err, transient=False, auto_refresh=True, refresh_per_second=4)
    use_live = not args.quiet and err.is_terminal
    reported: set[str] = set()

    def changed(states: list[PairState]) -> None:
        if use_live:
            live.update(render_grid(states, title=f"lab {lab.name}"))
            return
        if args.quiet:
            return
        for s in states:
            if s.state in ("ok", "failed", "unrun") and s.pair.key not in reported:
                reported.add(s.pair.key)
                tail = f": {s.reason}" if s.reason else ""
                err.print(Text(f"{s.state} {s.pair.label()}{tail}"))

    ray = import_ray()
    try:
        if use_live:
            live.start()
        outcome = run_lab(lab, exp, pairs, db, resume=args.resume,
                          grace_s=30.0 if args.device_grace is None else args.device_grace,
                          on_change=changed)  # fmt: skip
    finally:
        if use_live:
            live.stop()
        ray.shutdown()
    if args.format == "json":
        sys.stdout.write(json.dumps({
            "sweep_id": outcome.sweep_id, "lab": lab.name, "wall_s": outcome.wall_s,
            "devices": device_summary(outcome),
            "pairs": [{"key": s.pair.key, "device": s.pair.device.name,
                       "point": s.pair.point.params, "state": s.state, "host": s.host,
                       "reason": s.reason}
                      for s in outcome.states],
            "results": [r.to_json_dict() for r in outcome.results],
        }, indent=2) + "\n")  # fmt: skip
    else:
        print_bench_table(outcome.results, out)
        _print_summary(outcome, out)
    # as a sweep: 1 while any stored run of the lab failed, or any pair was not run
    bad = [s for s in outcome.states if s.state == "unrun"] + [
        r for r in outcome.results if not r.ok
    ]
    sys.stderr.write(
        f"lab run {outcome.sweep_id} ({exp.name} on {lab.name}): "
        f"{sum(s.state == 'ok' for s in outcome.states)} ok, "
        f"{sum(s.state == 'failed' for s in outcome.states)} failed, "
        f"{sum(s.state == 'unrun' for s in outcome.states)} not run, "
        f"{sum(s.state == 'stored' for s in outcome.states)} stored before; in {db}\n"
    )
    return 1 if bad else 0
