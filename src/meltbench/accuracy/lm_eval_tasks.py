"""lm-evaluation-harness tasks: loading them offline (local YAML folders, no hub), running
them on a meltbench LM (:mod:`meltbench.accuracy.lm_eval_bridge`), and their results as
``task_<task>_<metric>`` metrics."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from meltbench.accuracy.base import LogitsSource
from meltbench.accuracy.lm_eval_bridge import (
    _META_KEYS,
    _import_lm_eval,
    _lm_eval_version,
    make_lm,
)
from meltbench.errors import UsageError

__all__ = ["compact_results", "run_tasks", "task_metrics"]


def _slug(name: str) -> str:
    return re.sub(r"[^0-9a-z_]+", "_", name.lower()).strip("_")


_HUB_UNREACHABLE = frozenset(
    {"ConnectionError", "ConnectError", "OfflineModeIsEnabled", "LocalEntryNotFoundError"}
)


def _is_hub_unreachable(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionError) or any(
        cls.__name__ in _HUB_UNREACHABLE for cls in type(exc).__mro__
    )


def _task_manager(task_manager_cls: Any, tasks: Sequence[str], include_path: str | None) -> Any:
    """A TaskManager that knows ``tasks``.

    Indexing lm-eval's own ~15,000 task configs takes seconds, so when every requested
    name is a plain task of ``include_path`` only that directory is indexed.
    """
    if include_path is not None:
        local = task_manager_cls(include_path=include_path, include_defaults=False)
        if all(name in local.all_subtasks for name in tasks):
            return local
    return task_manager_cls(include_path=include_path)


def _load_tasks(tm: Any, tasks: Sequence[str]) -> list[Any]:
    """The top-level Task/Group objects of each name, with loading errors as UsageError."""
    objects: list[Any] = []
    for name in tasks:
        try:
            loaded = tm.load([name])
        except KeyError:
            close = difflib.get_close_matches(name, tm.all_tasks, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UsageError(
                f"unknown lm-eval task {name!r}{hint}; list tasks with `lm-eval ls tasks`, "
                "or pass --task-path DIR with a local task YAML"
            ) from None
        except FileNotFoundError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError(
                f"task {name} cannot find its dataset ({first}); check the task's "
                "dataset_path / data_files (relative data_files are read from the current "
                "directory)"
            ) from None
        except Exception as exc:
            if _is_hub_unreachable(exc):
                raise UsageError(
                    f"task {name} needs its dataset from the Hugging Face hub, which is not "
                    "reachable; download it once online (HF_DATASETS_CACHE) or pass "
                    "--task-path with a local task"
                ) from None
            if isinstance(exc, (ValueError, TypeError, ImportError, AttributeError)):
                first = str(exc).splitlines()[0] if str(exc) else ""
                raise UsageError(
                    f"task {name} cannot be loaded ({type(exc).__name__}: {first}); fix its YAML"
                ) from None
            raise
        children = {c for kids in loaded.get("group_map", {}).values() for c in kids}
        groups = [g for n, g in loaded.get("groups", {}).items() if n not in children]
        leaves = [t for n, t in loaded["tasks"].items() if n not in children]
        objects.extend(groups + leaves)
    return objects


def _metric_name(key: str) -> str:
    """``"acc,none"`` -> ``acc``; ``"exact_match_stderr,strict-match"`` ->
    ``exact_match_strict-match_stderr`` (the filter joins the metric, stderr stays last)."""
    metric, _, filt = key.partition(",")
    stderr = metric.endswith("_stderr")
    base = metric[: -len("_stderr")] if stderr else metric
    if filt and filt != "none":
        base = f"{base}_{filt}"
    return f"{base}_stderr" if stderr else base


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):  # lm-eval writes "N/A" for a missing stderr
        return None
    return None if math.isnan(number) else number


def compact_results(
    raw: dict[str, Any],
    *,
    tasks: Sequence[str] | None = None,
    limit: int | float | None = None,
    num_fewshot: int | None = None,
) -> dict[str, Any]:
    """Reduce ``simple_evaluate``'s result to a JSON-ready dict.

    Returns:
        ``{task: {metric: value, metric_stderr: value, ..., n_samples, n_shot}, ...}`` for
        every task and group in ``raw["results"]`` (metric names without lm-eval's
        ``,none`` filter suffix; a stderr lm-eval could not compute is None), plus
        ``lm_eval_version``, ``tasks`` (as requested), ``limit`` and ``num_fewshot``.
    """
    out: dict[str, Any] = {
        "lm_eval_version": _lm_eval_version(),
        "tasks": list(tasks) if tasks is not None else list(raw.get("results", {})),
        "limit": limit,
        "num_fewshot": num_fewshot,
    }
    n_samples = raw.get("n-samples") or {}
    n_shot = raw.get("n-shot") or {}
    for task, metrics in (raw.get("results") or {}).items():
        entry: dict[str, Any] = {}
        for key, value in metrics.items():
            if "," not in key:  # "alias", "name", ...: labels, not metrics
                continue
            entry[_metric_name(key)] = _number(value)
        if task in n_samples:
            entry["n_samples"] = n_samples[task].get("effective")
        if task in n_shot:
            entry["n_shot"] = _number(n_shot[task])
        out[task] = entry
    return out


def task_metrics(results: dict[str, Any]) -> dict[str, float]:
    """Flatten task results to ``task_<task>_<metric>`` floats, for storage beside speed metrics.

    Args:
        results: :func:`run_tasks`' dict (or ``simple_evaluate``'s raw dict).

    Returns:
        e.g. ``{"task_meltbench_local_mc_acc": 0.5, "task_meltbench_local_mc_acc_stderr":
        0.15, "task_meltbench_local_mc_acc_norm": 0.5, ...}``; names are lower case with
        every run of other characters than ``[0-9a-z_]`` replaced by ``_``. Values that
        were not measured (None, NaN) are left out.
    """
    if "results" in results and isinstance(results["results"], dict):
        results = compact_results(results)
    out: dict[str, float] = {}
    for task, entry in results.items():
        if task in _META_KEYS or not isinstance(entry, dict):
            continue
        for metric, value in entry.items():
            number = _number(value)
            if number is not None:
                out[f"task_{_slug(task)}_{_slug(metric)}"] = float(number)
    return out


def run_tasks(
    source: LogitsSource,
    tasks: list[str],
    *,
    include_path: str | None = None,
    limit: int | None = None,
    num_fewshot: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate ``source`` on lm-eval tasks with ``lm_eval.simple_evaluate``.

    Args:
        source: an open logits source (not closed here).
        tasks: lm-eval task, group or tag names (or paths of task YAML files).
        include_path: a directory of extra task YAML files (``--task-path``); with only
            its tasks requested, lm-eval's built-in task index is not built.
        limit: at most this many documents per task (lm-eval: "only for testing").
        num_fewshot: few-shot examples per prompt (default: each task's own, else 0).
        progress: show progress bars while scoring.

    Returns:
        :func:`compact_results` of the evaluation.

    Raises:
        UsageError: lm-eval missing, no or unknown task, a dataset that is neither local
            nor reachable, a generation task with a source that cannot decode text, or a
            bad ``include_path`` / ``limit`` / ``num_fewshot``.
    """
    if not tasks:
        raise UsageError("no task given; name an lm-eval task (e.g. --task arc_easy)")
    if limit is not None and limit <= 0:
        raise UsageError(f"limit must be a positive number of documents, got {limit}")
    if num_fewshot is not None and num_fewshot < 0:
        raise UsageError(f"num_fewshot must be >= 0, got {num_fewshot}")
    if include_path is not None and not Path(include_path).is_dir():
        raise UsageError(
            f"task path {include_path} is not a directory; pass the directory that holds "
            "the task YAML files"
        )
    _import_lm_eval()
    from lm_eval.evaluator import simple_evaluate
    from lm_eval.tasks import TaskManager

    lm = make_lm(source, progress=progress)
    tm = _task_manager(TaskManager, tasks, include_path)
    objects = _load_tasks(tm, tasks)
    if not lm.can_generate():
        generative = [
            t.task_name
            for t in _leaf_tasks(objects)
            if getattr(t, "OUTPUT_TYPE", None) == "generate_until"
        ]
        if generative:
            raise UsageError(
                f"task {generative[0]} generates text, which this {source.engine} logits "
                "source cannot decode (no detokenize()); use loglikelihood or "
                "multiple_choice tasks"
            )
    raw = simple_evaluate(
        model=lm,
        tasks=objects,
        task_manager=tm,
        num_fewshot=num_fewshot,
        limit=limit,
        log_samples=False,
    )
    if raw is None:  # pragma: no cover - only on non-zero ranks
        raise RuntimeError("lm-eval returned no results")
    return compact_results(raw, tasks=tasks, limit=limit, num_fewshot=num_fewshot)


def _leaf_tasks(objects: Sequence[Any]) -> list[Any]:
    leaves = []
    for obj in objects:
        if hasattr(obj, "get_all_tasks"):
            leaves.extend(obj.get_all_tasks())
        else:
            leaves.append(obj)
    return leaves
