"""``meltbench arch-search``: read the space, apply the command line, show the plan
(``--dry-run``) or run the search, then print per target the candidates with the fronts
marked, the latency model and its held-out error, the unmeasured shapes the model puts
on the front, and, with two targets, how their fronts differ."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from meltbench.archsearch.search import TargetSearch
from meltbench.archsearch.space import SearchSpace, load_space, parse_budget
from meltbench.errors import UsageError

__all__ = ["run_arch_search_command", "space_from_args"]


def space_from_args(args: argparse.Namespace) -> SearchSpace:
    """The space file with the command line's overrides applied.

    Raises:
        UsageError: an unreadable or invalid file, or a bad override.
    """
    from meltbench.models.quantize import normalize_quant

    space = load_space(args.space)
    if args.budget_params:
        space.budget = parse_budget(args.budget_params)
    if args.quant:
        try:
            space.quant = normalize_quant(args.quant)
        except UsageError as exc:
            raise UsageError(f"--quant: {exc}") from None
    if args.strategy:
        space.strategy = args.strategy
    for flag, key in (("--samples", "samples"), ("--max-candidates", "max_candidates")):
        value = getattr(args, key)
        if value is not None:
            if value < 1:
                raise UsageError(f"{flag} must be >= 1 (got {value})")
            setattr(space, key, value)
    if args.seed is not None:
        space.seed = args.seed
    if args.engine:
        space.engine = args.engine
    return space


def _count(n: int) -> str:
    """``300M``, ``1.5B``, ``12K`` or the integer."""
    for scale, suffix in ((10**9, "B"), (10**6, "M"), (10**3, "K")):
        if n >= scale:
            return f"{n / scale:g}{suffix}"
    return str(n)


def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f}"


def _ms(n: float | None) -> str:
    return "-" if n is None else (f"{n:.2f}" if n < 100 else f"{n:.0f}")


def _print_plan(space: SearchSpace, out: Console) -> None:
    from meltbench.archsearch.search import choose_initial

    shapes, dropped = space.shapes()
    lo, hi = space.budget
    out.print(f"[bold]{space.name}[/]: {len(shapes)} shapes in {_count(lo)}..{_count(hi)} "
              f"parameters, {space.strategy}, {space.quant} on {space.engine}")  # fmt: skip
    for reason, n in dropped.items():
        out.print(f"  dropped {n}: {reason}")
    first = choose_initial(space, shapes)
    keys = {s.key for s in first}
    table = Table(header_style="bold", title="shapes (* = measured in round 1)")
    for col in ("", "key", "shape", "attn", "params"):
        table.add_column(col, justify="right" if col == "params" else "left")
    for s in shapes:
        table.add_row("*" if s.key in keys else "", s.key, s.label(), s.attention,
                      f"{s.n_params / 1e6:.1f}M")  # fmt: skip
    out.print(table)


def _print_target(ts: TargetSearch, out: Console) -> None:
    decode_front = set(ts.front("decode_ms"))
    prefill_front = set(ts.front("prefill_ms"))
    memory_front = set(ts.front("peak_rss_bytes"))
    energy = any("j_per_token_decode" in c.measured for c in ts.candidates.values())
    table = Table(header_style="bold", title=f"arch-search on {ts.target}: measured candidates "
                  "(front: d = decode, p = prefill, m = memory)")  # fmt: skip
    cols = ["front", "key", "shape", "params", "decode ms/tok", "pred", "prefill ms", "pred",
            "TTFT ms", "peak RSS MiB"] + (["J/tok"] if energy else [])  # fmt: skip
    for col in cols:
        table.add_column(col, justify="left" if col in ("front", "key", "shape") else "right")
    for key, c in ts.candidates.items():
        if c.round is None:
            continue
        mark = "".join(ch for ch, front in (("d", decode_front), ("p", prefill_front),
                                            ("m", memory_front)) if key in front)  # fmt: skip
        m, p = c.measured, c.predicted
        size = f"{c.shape.n_params / 1e6:.1f}M"
        if c.failure:
            table.add_row("x", key, c.shape.label(), size, "failed")
            continue
        row = [mark, key, c.shape.label(), size, _ms(m.get("decode_ms")), _ms(p.get("decode_ms")),
               _ms(m.get("prefill_ms")), _ms(p.get("prefill_ms")), _ms(m.get("ttft_ms")),
               _mib(m.get("peak_rss_bytes"))]  # fmt: skip
        if energy:
            j = m.get("j_per_token_decode")
            row.append("-" if j is None else f"{j:.3f}")
        table.add_row(*row)
    out.print(table)
    for key, c in ts.candidates.items():
        if c.failure:
            out.print(f"failed {key} ({c.shape.label()}): {c.failure}", highlight=False)
    for phase, f in ts.fits.items():
        coef = ", ".join(f"{name} {v:.4g}" for name, v in f.coef.items() if v)
        cv = (f"held-out (leave one candidate out) MAPE {f.cv_mape:.1f}%, max {f.cv_max_ape:.1f}%"
              if f.cv_mape is not None else "held-out error needs >= 3 candidates")  # fmt: skip
        r2 = f"R^2 {f.r_squared:.3f}" if f.r_squared is not None else "R^2 -"
        out.print(f"{phase} model: t_ms = {coef or '0'}  ({f.n_candidates} candidates, "
                  f"{f.n_rows} rows, {r2}; {cv})", highlight=False)  # fmt: skip
    unmeasured = [k for k in ts.front("decode_ms", predicted=True)
                  if ts.candidates[k].round is None]  # fmt: skip
    if unmeasured:
        table = Table(
            header_style="bold",
            title="never measured, on the predicted decode front (ranked by the model)",
        )
        for col in ("key", "shape", "params", "pred decode ms/tok", "pred prefill ms"):
            table.add_column(col)
        for k in unmeasured:
            c = ts.candidates[k]
            table.add_row(
                k,
                c.shape.label(),
                f"{c.shape.n_params / 1e6:.1f}M",
                _ms(c.predicted.get("decode_ms")),
                _ms(c.predicted.get("prefill_ms")),
            )
        out.print(table)


def _print_comparison(comparison: dict[str, Any], searches: list[TargetSearch],
                      out: Console) -> None:  # fmt: skip
    a, b = searches[0], searches[1]
    keys = list(dict.fromkeys(comparison["front_a"] + comparison["front_b"]))
    keys.sort(key=lambda k: a.candidates[k].shape.n_params)
    table = Table(header_style="bold", title=f"decode fronts: {a.target} vs {b.target}")
    for col in ("key", "shape", "params", f"{a.target} ms/tok", "front", f"{b.target} ms/tok",
                "front"):  # fmt: skip
        table.add_column(col)
    for k in keys:
        ca, cb = a.candidates[k], b.candidates[k]
        table.add_row(
            k,
            ca.shape.label(),
            f"{ca.shape.n_params / 1e6:.1f}M",
            _ms(ca.measured.get("decode_ms")),
            "*" if k in comparison["front_a"] else "",
            _ms(cb.measured.get("decode_ms")),
            "*" if k in comparison["front_b"] else "",
        )
    out.print(table)
    rho = comparison["spearman"]
    out.print(f"{len(comparison['both'])} of {len(keys)} front shapes shared; Spearman rank "
              f"correlation of decode ms over {comparison['n']} shapes: "
              + ("-" if rho is None else f"{rho:.2f}"), highlight=False)  # fmt: skip


def run_arch_search_command(args: argparse.Namespace, out: Console) -> int:
    """Body of ``meltbench arch-search``; returns the exit code (1 if a candidate failed)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from meltbench.archsearch.search import analysis_of, run_search
    from meltbench.results.location import db_from_args

    space = space_from_args(args)
    shapes, dropped = space.shapes()
    if not shapes:
        why = "; ".join(f"{n} {reason}" for reason, n in dropped.items())
        raise UsageError(f"no shape of the space is inside the parameter budget ({why}); widen "
                         "--budget-params or the shape lists")  # fmt: skip
    targets = list(dict.fromkeys(args.target or ["local"]))
    if args.dry_run:
        _print_plan(space, out)
        return 0
    db = db_from_args(args)
    err = Console(stderr=True)
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(),
                        console=err, transient=True,
                        disable=args.quiet or not err.is_terminal)  # fmt: skip
    task = progress.add_task(space.name, total=None)

    def on_round(target: str, k: int, n: int) -> None:
        if not args.quiet:
            err.print(f"{target}: round {k}, {n} candidates", highlight=False)

    def started(i: int, n: int, point: Any) -> None:
        progress.update(task, description=f"{space.name}: point {i}/{n}")

    def finished(point: Any, result: Any) -> None:
        if result is not None and not result.ok:
            err.print(f"[yellow]candidate failed[/] {point.label()}: {result.failure}")

    with progress:
        searches = run_search(space, targets, db, resume=args.resume, on_round=on_round,
                              on_point_start=started, on_point_done=finished)  # fmt: skip
    analysis = analysis_of(space, searches)
    if args.format == "json":
        sys.stdout.write(json.dumps(analysis, indent=2) + "\n")
    else:
        for ts in searches:
            _print_target(ts, out)
        if analysis["comparison"]:
            _print_comparison(analysis["comparison"], searches, out)
    failed = sum(bool(c.failure) for ts in searches for c in ts.candidates.values())
    last = searches[-1].sweep_ids[-1]
    sys.stderr.write(f"arch-search {space.name}: {sum(len(ts.measured_keys()) for ts in searches)} "
                     f"candidates measured, {failed} failed; in {db}; plot: meltbench report "
                     f"--sweep {last[:12]}\n")  # fmt: skip
    return 1 if failed else 0
