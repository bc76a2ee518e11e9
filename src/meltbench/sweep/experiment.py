"""Experiment files: lists of run parameters that expand to a matrix of points.

A YAML file names, for any run parameter, one value or a list (integers also in
llama-bench's list syntax, see :mod:`meltbench.sweep.listsyntax`)::

    name: context-sweep
    model: [gemma3-270m-q4_k_m]
    engine: llama.cpp
    n_prompt: 128-2048*2        # 128, 256, 512, 1024, 2048
    n_gen: 16
    reps: 3
    cooldown_s: 5               # fixed wait between points, s
    cooldown_margin_c: 3        # then until the hottest sensor is within 3 C of idle
    exclude:
      - {engine: mlx, n_prompt: 2048}
    include:
      - {engine: transformers, dtype: bfloat16, n_prompt: 512}

The points are the cross product of the lists, minus every point that matches an
``exclude`` rule (all its keys equal; a list value matches any of its items), plus each
``include`` entry (its keys over the first value of every other list). Errors name the
file, line and field. Points are ordered so that all points of one model, quantization
and engine run one after another (see :func:`order_points`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError
from meltbench.parameters import INT_AXES, SWEEP_AXES
from meltbench.sweep.listsyntax import parse_int_list

__all__ = [
    "AXES",
    "Experiment",
    "Point",
    "expand",
    "load_experiment",
    "order_points",
    "parse_size",
    "read_yaml",
]

STR_AXES = tuple(a for a in SWEEP_AXES if a not in INT_AXES)
AXES = SWEEP_AXES  # in the parameter table's order
#: points sharing these values load the same model: they run consecutively.
GROUP_KEYS = ("model", "quant", "weights", "engine", "dtype", "device", "endpoint")
_SETTINGS = {
    "name",
    "description",
    "engine_options",
    "timeout_s",
    "memory_limit",
    "cooldown_s",
    "cooldown_margin_c",
    "cooldown_timeout_s",
    "target",
    "include",
    "exclude",
    "search",
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", re.I)
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # fmt: skip


def parse_size(value: Any, name: str = "memory_limit") -> int:
    """Bytes from an integer or a string such as ``512MiB``, ``2GiB``, ``1.5GB``.

    Raises:
        UsageError: if the value is not a positive size.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = _SIZE.fullmatch(str(value))
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"{name}: {value!r} is not a size; write e.g. 2GiB, 512MiB or bytes")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "B").upper()])


@dataclass(frozen=True)
class Point:
    """One run of a sweep.

    Attributes:
        params: the point's axis values (only axes that were set).
        key: stable id of the point: the first 16 hex digits of the SHA-256 of its
            canonical JSON (sorted keys), used to resume without running it twice.
    """

    params: dict[str, Any]
    key: str

    @classmethod
    def of(cls, params: dict[str, Any]) -> Point:
        """A point with its key computed from ``params``."""
        canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
        return cls(params=params, key=hashlib.sha256(canonical.encode()).hexdigest()[:16])

    def label(self) -> str:
        """Short human label, e.g. ``gemma3-270m-q4_k_m llama.cpp pp512+tg128 t2``."""
        p = self.params
        parts = [str(p.get("model", "default")), str(p.get("engine", "llama.cpp"))]
        for k in ("quant", "dtype", "weights"):
            if p.get(k):
                parts.append(str(p[k]))
        test = f"pp{p.get('n_prompt', 512)}+tg{p.get('n_gen', 128)}"
        if p.get("n_depth"):
            test += f"@d{p['n_depth']}"
        parts.append(test)
        if p.get("threads"):
            parts.append(f"t{p['threads']}")
        return " ".join(parts)


@dataclass
class Experiment:
    """A parsed experiment.

    Attributes:
        axes: parameter -> list of values (a single value is a one-item list).
        settings: everything else: name, description, engine_options, timeout_s,
            memory_limit_bytes, cooldown_s, include, exclude, search.
        source: the file it came from (None for command-line experiments).
        text_sha256: SHA-256 of the file's text (detects a changed file on resume).
    """

    axes: dict[str, list[Any]]
    settings: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None
    text_sha256: str | None = None
    extra_axes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The experiment's name (from the file, else its stem, else "sweep")."""
        return str(self.settings.get("name") or (self.source.stem if self.source else "sweep"))


def _node_lines(node: Any, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Map each path in a composed YAML tree to its 1-based line number."""
    import yaml

    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            lines.update(_node_lines(value_node, (*path, key_node.value)))
            lines[(*path, key_node.value)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_node_lines(item, (*path, i)))
    return lines


class _Located:
    """Raises UsageErrors that name ``file:line: field``."""

    def __init__(self, source: str, lines: dict[tuple[Any, ...], int]) -> None:
        self.source, self.lines = source, lines

    def error(self, path: tuple[Any, ...], message: str) -> UsageError:
        while path and path not in self.lines:
            path = path[:-1]
        line = self.lines.get(path)
        where = f"{self.source}:{line}" if line else self.source
        field_name = ".".join(str(p) for p in path) or "(top level)"
        return UsageError(f"{where}: {field_name}: {message}")


def _axis_values(key: str, value: Any, loc: _Located, path: tuple[Any, ...]) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise loc.error(path, "empty list; give at least one value")
    out: list[Any] = []
    for i, item in enumerate(items):
        where = (*path, i) if isinstance(value, list) else path
        if isinstance(item, (dict, list)) or item is None:
            raise loc.error(where, f"expected a value, got {type(item).__name__}")
        if key in INT_AXES:
            if isinstance(item, bool):
                raise loc.error(where, "expected an integer, got a boolean")
            if isinstance(item, int):
                out.append(item)
                continue
            try:
                out.extend(parse_int_list(str(item), key))
            except UsageError as exc:
                raise loc.error(where, str(exc).split(": ", 1)[-1]) from None
        else:
            out.append(str(item))
    return list(dict.fromkeys(out))


def _rules(
    name: str, value: Any, loc: _Located, axes: tuple[str, ...] = AXES
) -> list[dict[str, list[Any]]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise loc.error((name,), "expected a list of mappings, e.g. - {engine: mlx}")
    rules = []
    for i, rule in enumerate(value):
        if not isinstance(rule, dict) or not rule:
            raise loc.error((name, i), "expected a mapping of parameters, e.g. {engine: mlx}")
        parsed = {}
        for k, v in rule.items():
            if k not in axes:
                raise loc.error((name, i, k), f"unknown parameter; use one of: {', '.join(axes)}")
            parsed[k] = _axis_values(k, v, loc, (name, i, k))
        rules.append(parsed)
    return rules


def parse_experiment(
    data: Any,
    source: str,
    lines: dict[tuple[Any, ...], int],
    extra_axes: tuple[str, ...] = (),
) -> Experiment:
    """Validate a loaded YAML mapping; ``lines`` maps paths to line numbers.

    ``extra_axes`` are string parameters a command adds to the run parameters (``meltbench
    lab``'s ``devices``): they expand, include and exclude like the others.

    Raises:
        UsageError: ``file:line: field: problem`` for the first problem found.
    """
    loc = _Located(source, lines)
    if not isinstance(data, dict):
        raise loc.error((), "an experiment is a mapping of parameters (e.g. n_prompt: [128, 512])")
    axes: dict[str, list[Any]] = {}
    settings: dict[str, Any] = {}
    all_axes = (*AXES, *extra_axes)
    for key, value in data.items():
        if key in all_axes:
            axes[key] = _axis_values(key, value, loc, (key,))
        elif key not in _SETTINGS:
            raise loc.error(
                (key,),
                f"unknown field; parameters: {', '.join(AXES)}; settings: "
                f"{', '.join(sorted(_SETTINGS))}",
            )
    if data.get("target") is not None:
        if not isinstance(data["target"], str) or not data["target"].strip():
            raise loc.error(("target",), "expected a target: local, ssh://user@host, adb://SERIAL")
        settings["target"] = data["target"].strip()
    for key in ("name", "description"):
        if data.get(key) is not None:
            settings[key] = str(data[key])
    options = data.get("engine_options") or {}
    if not isinstance(options, dict):
        raise loc.error(("engine_options",), "expected a mapping, e.g. {flash_attn: true}")
    settings["engine_options"] = options
    for key in ("timeout_s", "cooldown_s", "cooldown_margin_c", "cooldown_timeout_s"):
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise loc.error((key,), f"expected a number of seconds >= 0, got {value!r}")
        settings[key] = float(value)
    if data.get("memory_limit") is not None:
        try:
            settings["memory_limit_bytes"] = parse_size(data["memory_limit"])
        except UsageError as exc:
            raise loc.error(("memory_limit",), str(exc).split(": ", 1)[-1]) from None
    settings["include"] = _rules("include", data.get("include"), loc, all_axes)
    settings["exclude"] = _rules("exclude", data.get("exclude"), loc, all_axes)
    settings["search"] = _search(data.get("search"), loc)
    return Experiment(axes=axes, settings=settings, extra_axes=tuple(extra_axes))


def _search(value: Any, loc: _Located) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"max_context"}:
        raise loc.error(("search",), "expected {max_context: {lo: N, hi: N}}")
    spec = value["max_context"]
    if not isinstance(spec, dict):
        raise loc.error(("search", "max_context"), "expected a mapping {lo: N, hi: N}")
    out: dict[str, int] = {"multiple_of": 256, "max_probes": 12}
    for key, item in spec.items():
        if key not in ("lo", "hi", "multiple_of", "max_probes"):
            raise loc.error(("search", "max_context", key), "use lo, hi, multiple_of, max_probes")
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            raise loc.error(("search", "max_context", key), f"expected an integer >= 1: {item!r}")
        out[key] = item
    if "lo" not in out or "hi" not in out or out["lo"] >= out["hi"]:
        raise loc.error(("search", "max_context"), "needs lo < hi (n_prompt bounds)")
    return out


def read_yaml(path: str | Path, what: str) -> tuple[str, Any, dict[tuple[Any, ...], int]]:
    """``(text, data, lines)`` of a YAML file: its text, the loaded data, and the line of
    every node by path (for ``file:line: field`` errors).

    Raises:
        UsageError: ``cannot read {what} PATH: why``, or ``PATH:LINE: invalid YAML: ...``.
    """
    import yaml

    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{where}: invalid YAML: {problem}") from None
    return text, data, _node_lines(node) if node is not None else {}


def load_experiment(path: str | Path, extra_axes: tuple[str, ...] = ()) -> Experiment:
    """Read and validate an experiment YAML file (``extra_axes``: see
    :func:`parse_experiment`).

    Raises:
        UsageError: missing/unreadable file, invalid YAML (with its line), or an invalid
            field (``file:line: field: problem``).
    """
    p = Path(path)
    text, data, lines = read_yaml(p, "experiment file")
    exp = parse_experiment(data, str(p), lines, extra_axes)
    exp.source = p.resolve()
    exp.text_sha256 = hashlib.sha256(text.encode()).hexdigest()
    return exp


def _matches(params: dict[str, Any], rule: dict[str, list[Any]]) -> bool:
    return all(params.get(k) in values for k, values in rule.items())


def expand(exp: Experiment) -> list[Point]:
    """The experiment's points: cross product, minus excludes, plus includes (deduped).

    With no axes at all, one point with every default.
    """
    names = [a for a in (*AXES, *exp.extra_axes) if a in exp.axes]
    points: list[Point] = []
    seen: set[str] = set()
    for combo in itertools.product(*(exp.axes[n] for n in names)):
        params = dict(zip(names, combo, strict=True))
        if any(_matches(params, rule) for rule in exp.settings.get("exclude", [])):
            continue
        point = Point.of(params)
        if point.key not in seen:
            seen.add(point.key)
            points.append(point)
    first = {n: exp.axes[n][0] for n in names}
    for rule in exp.settings.get("include", []):
        for combo in itertools.product(*rule.values()):
            params = {**first, **dict(zip(rule, combo, strict=True))}
            point = Point.of(params)
            if point.key not in seen:
                seen.add(point.key)
                points.append(point)
    return points


def order_points(points: list[Point]) -> list[Point]:
    """Group points that load the same model (same :data:`GROUP_KEYS` values), groups in
    order of first appearance, points in expansion order within a group.

    Each point still runs in its own fresh worker process (so peak memory, crashes and
    out-of-memory failures are per point); grouping keeps the model file hot in the OS
    page cache between consecutive loads.
    """
    groups: dict[tuple[Any, ...], list[Point]] = {}
    for point in points:
        key = tuple(point.params.get(k) for k in GROUP_KEYS)
        groups.setdefault(key, []).append(point)
    return [p for group in groups.values() for p in group]
