"""The app end to end: phone sensor readings in, a JSON answer out, parsed and checked.

Modelled on AutoLife (a phone's sensors -> a language model infers where its owner is
and what they are doing), the app of "Are We There Yet? A Measurement Study of Efficiency
for LLM Applications on Mobile Devices". Each recorded episode (a few timestamped
samples: GPS fix or ``"no fix"``, accelerometer magnitude mean/std, steps per minute,
Wi-Fi access points in range, ambient light, time of day) is one request; the model is
asked for ONLY a JSON object ``{"location": ..., "activity": ...}`` from the allowed
values, and :func:`parse_answer` finds and checks it in the reply, as the app would.

Readings file (JSON)::

    {"allowed": {"location": [...], "activity": [...]},      # optional
     "episodes": [{"id": "ep-1", "samples": [{...}, ...],
                   "expected": {"location": "home", "activity": "sleeping"}}, ...]}

The shipped file, ``data/sensor_readings.json``, is hand-written for this project.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError
from meltbench.workloads.base import OUTPUT_MODES, RequestSet, Session, Turn

__all__ = ["ACTIVITIES", "LOCATIONS", "app_requests", "parse_answer", "system_prompt"]

#: the answer's allowed values when the readings file gives none
LOCATIONS = ("home", "office", "street", "park", "transit", "gym")
ACTIVITIES = ("sitting", "walking", "running", "commuting", "sleeping")
_FIELDS = ("location", "activity")
_SHIPPED = ("data", "sensor_readings.json")
_UNITS = (
    "Phone sensor readings, one sample a minute (gps: lat/lon in degrees and speed in "
    'm/s, or "no fix"; accel_mps2: mean and standard deviation of the accelerometer '
    "magnitude, m/s^2; steps_per_min; wifi_aps: Wi-Fi access points in range; light_lux: "
    "ambient light; time: local time of day):"
)


def system_prompt(locations: tuple[str, ...], activities: tuple[str, ...]) -> str:
    """The app's system message: answer with ONLY the JSON object, from these values."""
    return (
        "You infer where a phone's owner is and what they are doing from the phone's "
        'sensor readings. Reply with ONLY a JSON object with two keys: "location", one '
        f'of {", ".join(locations)}; and "activity", one of {", ".join(activities)}. '
        'For example: {"location": "home", "activity": "sitting"}. No other text.'
    )


def _names(value: Any, field: str, source: str) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v.strip() for v in value)
    ):
        raise UsageError(f"{source}: allowed.{field} must be a non-empty list of strings")
    return tuple(value)


def _episodes(data: Any, source: str) -> tuple[tuple[str, ...], tuple[str, ...], list[dict]]:
    if not isinstance(data, dict) or "episodes" not in data:
        raise UsageError(f'{source}: expected a JSON object with "episodes": [...]')
    allowed = data.get("allowed", {})
    if not isinstance(allowed, dict):
        raise UsageError(f'{source}: "allowed" must be an object of "location"/"activity" lists')
    locations = (
        _names(allowed["location"], "location", source) if "location" in allowed else LOCATIONS
    )
    activities = (
        _names(allowed["activity"], "activity", source) if "activity" in allowed else ACTIVITIES
    )
    episodes = data["episodes"]
    if not isinstance(episodes, list) or not episodes:
        raise UsageError(f'{source}: "episodes" must be a non-empty list')
    seen: set[str] = set()
    for i, ep in enumerate(episodes, start=1):
        at = f"{source}: episode {i}"
        if not isinstance(ep, dict):
            raise UsageError(f"{at} is not an object")
        eid = ep.get("id", f"ep-{i}")
        if not isinstance(eid, str) or not eid or eid in seen:
            raise UsageError(f"{at}: id {eid!r} is not a unique, non-empty string")
        seen.add(eid)
        samples = ep.get("samples")
        if (
            not isinstance(samples, list)
            or not samples
            or not all(isinstance(s, dict) for s in samples)
        ):
            raise UsageError(f'{at} ({eid}): "samples" must be a non-empty list of objects')
        expected = ep.get("expected")
        if not isinstance(expected, dict):
            raise UsageError(f'{at} ({eid}) has no "expected" {{"location", "activity"}} object')
        for field, values in (("location", locations), ("activity", activities)):
            if expected.get(field) not in values:
                raise UsageError(
                    f"{at} ({eid}): expected {field} {expected.get(field)!r} is not one of "
                    f"{', '.join(values)}"
                )
    return locations, activities, episodes


def app_requests(
    path: str | None = None, *, max_tokens: int = 96, output: str = "natural"
) -> RequestSet:
    """One request per recorded episode of a sensor readings file.

    Args:
        path: the readings JSON (see the module docstring); None: the shipped
            ``data/sensor_readings.json``.
        max_tokens: each reply's most output tokens.
        output: ``natural`` (default: the reply stops at its end, as in the app) or
            ``fixed``.

    Returns:
        kind ``app``, name ``autolife-sensors`` for the shipped file (else the file's
        stem); one session an episode (its ``id``; group ``app``) with
        :func:`system_prompt` as the system message and one turn: ``user`` the units
        line and the samples as compact JSON, ``expected`` the episode's
        ``{"location", "activity"}``. ``info``: ``source``, ``episodes``, ``locations``,
        ``activities``.

    Raises:
        UsageError: one line: a missing or unreadable file, not JSON, no episodes, an
            episode without samples or ``expected``, an expected value not allowed,
            bad ``max_tokens`` or ``output``.
    """
    if max_tokens < 1:
        raise UsageError(f"max_tokens (--n-gen) must be >= 1, got {max_tokens}")
    if output not in OUTPUT_MODES:
        raise UsageError(f"output mode must be one of {', '.join(OUTPUT_MODES)}, got {output!r}")
    if path is None:
        source, name = "meltbench:workloads/" + "/".join(_SHIPPED), "autolife-sensors"
        text = resources.files("meltbench.workloads").joinpath(*_SHIPPED).read_text("utf-8")
    else:
        p = Path(path).expanduser()
        source, name = str(path), p.stem
        if not p.is_file():
            raise UsageError(f"sensor readings file not found: {path}; pass a .json file")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read {path}: {' '.join(str(exc).split())}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{source}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    locations, activities, episodes = _episodes(data, source)
    system = system_prompt(locations, activities)
    sessions = []
    for i, ep in enumerate(episodes, start=1):
        readings = json.dumps(ep["samples"], separators=(",", ":"), ensure_ascii=False)
        user = f"{_UNITS}\n{readings}\nWhere is the owner, and what are they doing?"
        expected = {field: ep["expected"][field] for field in _FIELDS}
        turn = Turn(user=user, max_tokens=max_tokens, expected=expected)
        sessions.append(
            Session(id=ep.get("id", f"ep-{i}"), group="app", turns=(turn,), system=system)
        )
    info = {
        "source": source,
        "episodes": len(sessions),
        "locations": list(locations),
        "activities": list(activities),
    }
    return RequestSet(
        kind="app",
        name=name,
        sessions=tuple(sessions),
        output=output,
        info=info,  # type: ignore[arg-type]
    )


def _balanced_end(text: str, start: int) -> int | None:
    """Index just past the ``}`` that closes the ``{`` at ``start`` (braces inside JSON
    strings not counted), or None."""
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        c = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _first_object(text: str) -> dict[str, Any] | None:
    start = text.find("{")
    while start != -1:
        end = _balanced_end(text, start)
        if end is not None:
            try:
                value = json.loads(text[start:end])
            except json.JSONDecodeError:
                value = None
            if isinstance(value, dict):
                return value
        start = text.find("{", start + 1)
    return None


def parse_answer(text: str, expected: dict[str, Any] | None) -> dict[str, Any]:
    """The app's answer in a model's reply, checked against the expected one.

    The answer is the first balanced ``{...}`` in the text that parses as a JSON object
    (so ```json fences and prose around it do not matter); it is ``parsed`` when it has
    ``location`` and ``activity`` strings.

    Args:
        text: the reply.
        expected: ``{"location", "activity"}``, or None (nothing to check).

    Returns:
        ``{"parsed": bool, "answer": dict | None, "correct": bool | None, "error": str |
        None}``: ``answer`` the object found (None when none parses); ``correct`` None
        without ``expected``, else True only when parsed and both fields equal the
        expected ones (case and surrounding spaces ignored); ``error`` why it is not
        parsed, else None.
    """
    answer = _first_object(text)
    error = None
    if answer is None:
        error = "no JSON object in the reply"
    else:
        for field in _FIELDS:
            if field not in answer:
                error = f"the JSON object has no {field!r} key"
                break
            if not isinstance(answer[field], str):
                error = f"{field!r} is a {type(answer[field]).__name__}, not a string"
                break
    parsed = error is None
    correct = None
    if expected is not None:
        correct = parsed and all(
            str(answer[f]).strip().lower() == str(expected.get(f, "")).strip().lower()  # type: ignore[index]
            for f in _FIELDS
        )
    return {"parsed": parsed, "answer": answer, "correct": correct, "error": error}
