"""``meltbench eval`` and ``meltbench quant-study``: accuracy, quantization types side by side."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from meltbench.cli.common import add_db_arguments, db_from_args, stdout_console
from meltbench.parameters import parse_engine_option

__all__ = ["COMMANDS"]


def _add_eval_arguments(p: argparse.ArgumentParser) -> None:
    """Corpus and window flags shared by eval and quant-study."""
    p.add_argument("--corpus", metavar="FILE", help="text file for perplexity (UTF-8)")
    p.add_argument("--max-chars", type=int, help="only the first N characters of the corpus")
    p.add_argument(
        "--window",
        "--ctx",
        dest="ctx",
        type=int,
        default=512,
        help="window length, tokens (default 512); --ctx is its old name (in run, --ctx is "
        "the context size)",
    )
    p.add_argument(
        "--stride", type=int, help="window step, tokens (default ctx/2: each token sees >= ctx/2)"
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=32,
        help="top-k kept per position for a saved reference and the KL bound (default 32)",
    )
    p.add_argument("-t", "--threads", type=int, help="CPU threads (default: physical cores)")
    p.add_argument(
        "-o",
        "--engine-opt",
        dest="engine_options",
        type=parse_engine_option,
        action="append",
        metavar="KEY=VALUE",
        help="llama.cpp option for the model and the reference, repeatable (llama_cpp.Llama "
        "keywords: flash_attn=true, type_k=8, n_gpu_layers=99, ...)",
    )


def _eval_options(args: argparse.Namespace, **extra: Any) -> Any:
    from meltbench.accuracy.evaluate import EvalOptions
    from meltbench.errors import UsageError

    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1 (got {args.threads})")
    return EvalOptions(
        corpus=args.corpus,
        max_chars=args.max_chars,
        ctx=args.ctx,
        stride=args.stride if args.stride is not None else max(args.ctx // 2, 1),
        k=args.top_k,
        threads=args.threads,
        engine_options=tuple(args.engine_options or ()),
        **extra,
    )


def _window_progress(quiet: bool) -> tuple[Any, Any]:
    """A rich progress bar over corpus windows (on stderr) and its ``on_window``."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    err = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} windows, {task.fields[tokens]} tokens"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=quiet or not err.is_terminal,
    )
    task = progress.add_task("scoring", total=None, tokens=0)

    def on_window(i: int, n: int, scored: int) -> None:
        progress.update(task, completed=i + 1, total=n, tokens=scored)

    def on_status(msg: str) -> None:
        progress.update(task, description=msg[:60], completed=0, tokens=0)
        if quiet or not err.is_terminal:
            return
        err.print(msg, highlight=False)

    progress.on_window = on_window  # type: ignore[attr-defined]
    progress.on_status = on_status  # type: ignore[attr-defined]
    return progress, err


def _cmd_eval(args: argparse.Namespace) -> int:
    from meltbench.accuracy.evaluate import evaluate_model
    from meltbench.config import DEFAULT_MODEL
    from meltbench.report.terminal import print_eval

    tasks = tuple(t.strip() for t in (args.tasks or "").split(",") if t.strip())
    options = _eval_options(
        args,
        reference=args.reference,
        save_reference=args.save_reference,
        tasks=tasks,
        task_path=args.task_path,
        limit=args.limit,
        dtype=args.dtype,
    )
    db = db_from_args(args)
    progress, err = _window_progress(args.quiet)
    with progress:
        result = evaluate_model(
            args.model or DEFAULT_MODEL,
            args.engine,
            options,
            on_window=progress.on_window,
            on_status=progress.on_status,
        )
    if db is not None:
        from meltbench.results.store import ResultStore

        with ResultStore(db) as store:
            store.save(result)
    if args.format == "json":
        import json

        sys.stdout.write(json.dumps(result.to_json_dict(), indent=2) + "\n")
    else:
        print_eval(result, stdout_console())
    if db is not None:
        err.print(f"stored evaluation {result.run_id} in {db}", highlight=False)
    return 0


def _cmd_quant_study(args: argparse.Namespace) -> int:
    from meltbench.accuracy.quant_study import run_quant_study
    from meltbench.config import DEFAULT_MODEL
    from meltbench.report.terminal import print_quant_study

    options = _eval_options(args)
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    db = db_from_args(args)
    bench = {"n_prompt": args.n_prompt, "n_gen": args.n_gen, "reps": args.reps, "warmup": 1}
    progress, err = _window_progress(args.quiet)
    with progress:
        study = run_quant_study(
            args.model or DEFAULT_MODEL,
            types,
            options,
            bench=bench,
            db=db,
            on_status=progress.on_status,
            on_window=progress.on_window,
        )
    if args.format == "json":
        import json

        rows = [
            {
                "quant": r.quant,
                "path": str(r.path),
                "note": r.note,
                "pareto": r.pareto,
                "run_id": r.result.run_id,
                "status": r.result.status,
                "size_bytes": r.result.model.get("size_bytes"),
                **{name: r.metric(name) for name in sorted(r.result.metrics)},
            }
            for r in study.rows
        ]
        data = {"source": study.source, "reference": study.reference_note, "rows": rows}
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        print_quant_study(study, stdout_console())
    if db is not None:
        err.print(f"stored {len(study.rows)} runs in {db}", highlight=False)
    return 0 if all(r.result.ok for r in study.rows) else 1


def add_eval_parser(sub: Any) -> None:
    """The ``eval`` subcommand's arguments."""
    ev = sub.add_parser(
        "eval",
        help="accuracy: perplexity on a corpus, KL divergence and top-1 agreement against a "
        "reference, lm-eval tasks",
        description=(
            "Perplexity over a text corpus with a strided sliding window (the Hugging Face "
            "perplexity guide's method), optionally against a reference model or a saved "
            "reference file (KL divergence of next-token distributions, top-1 agreement, "
            "perplexity ratio), and task accuracy through lm-evaluation-harness. The "
            "scores are stored as a run."
        ),
    )
    ev.add_argument(
        "model", nargs="?", default=None, help="alias or path (default: the default model)"
    )
    _add_eval_arguments(ev)
    ev.add_argument("-e", "--engine", default="llama.cpp", help="llama.cpp or transformers")
    ev.add_argument("--dtype", help="transformers dtype (default float32)")
    ev.add_argument(
        "--reference", metavar="MODEL|FILE.npz", help="compare against this model or saved file"
    )
    ev.add_argument("--save-reference", metavar="FILE.npz", help="save this model's scores")
    ev.add_argument("--tasks", metavar="LIST", help="lm-evaluation-harness tasks, comma list")
    ev.add_argument("--task-path", metavar="DIR", help="folder of local lm-eval task YAML files")
    ev.add_argument("--limit", type=int, help="at most this many documents per task")
    add_db_arguments(ev, no_db="do not store the scores")
    ev.add_argument("-f", "--format", choices=("table", "json"), default="table")
    ev.add_argument("-q", "--quiet", action="store_true", help="no progress display")


def add_quant_study_parser(sub: Any) -> None:
    """The ``quant-study`` subcommand's arguments."""
    qs = sub.add_parser(
        "quant-study",
        help="quantization types side by side: size, speed, memory, perplexity, KL, top-1",
        description=(
            "Make each quantization variant of a GGUF (requantized from it when it is "
            "already quantized), measure its speed (pp/tg tok/s, peak RSS) and its accuracy "
            "against the source (perplexity, KL divergence, top-1 agreement) on --corpus, "
            "print one table with the speed/accuracy Pareto front, and store every run."
        ),
    )
    qs.add_argument("model", nargs="?", default=None, help="GGUF path or alias (default model)")
    qs.add_argument(
        "--types", required=True, metavar="LIST", help="quantization types, e.g. Q4_0,Q2_K"
    )
    _add_eval_arguments(qs)
    qs.add_argument("-p", "--n-prompt", type=int, default=128, help="speed run prompt (128)")
    qs.add_argument("-n", "--n-gen", type=int, default=64, help="speed run generation (64)")
    qs.add_argument("-r", "--reps", type=int, default=3, help="speed run repetitions (3)")
    add_db_arguments(qs, no_db="do not store the runs")
    qs.add_argument("-f", "--format", choices=("table", "json"), default="table")
    qs.add_argument("-q", "--quiet", action="store_true", help="no progress display")


COMMANDS = {
    "eval": (add_eval_parser, _cmd_eval),
    "quant-study": (add_quant_study_parser, _cmd_quant_study),
}
"""Subcommand -> (add its parser, handle it)."""
