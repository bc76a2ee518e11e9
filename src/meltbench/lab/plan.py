"""(point, device) pairs: an experiment with a ``devices`` axis, expanded over a lab.

The experiment is a sweep file (:mod:`meltbench.sweep.experiment`) with one more string
parameter, ``devices``: a device name, ``class:NAME``, ``host:NAME`` or ``all`` (the
default), one value or a list, usable in ``include``/``exclude`` like any parameter::

    model: gemma3-270m-q4_k_m
    n_prompt: [64, 256]
    n_gen: 16
    devices: [all]
    exclude:
      - {devices: class:android, n_prompt: 256}

Each point runs on every device its selector matches, less the devices an ``exclude``
rule with ``devices`` names for it (the rule's selectors are matched against each device,
so ``{devices: class:android, n_prompt: 256}`` drops that point on the phones whatever the
point's own selector); a pair's key is the point's key
with the device added, so resume skips exactly the completed (point, device) pairs. A
pair that cannot run on its device (an adb phone runs only llama.cpp, an engine missing
on a local device) is "not applicable" with the reason; a point that fits no device is an
error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError
from meltbench.lab.config import Lab, LabDevice
from meltbench.sweep.experiment import Experiment, Point, expand, load_experiment, order_points

__all__ = ["DEVICES_AXIS", "Pair", "load_lab_experiment", "plan_pairs", "select"]

DEVICES_AXIS = "devices"
#: experiment settings a lab cannot honour (they read the driver's own sensors)
_REFUSED = {
    "cooldown_margin_c": "it reads this host's temperature sensors; use cooldown_s",
    "search": "run the max-context search with meltbench sweep --target DEVICE",
    "target": "the lab file's devices are the targets; select them with devices:",
}


@dataclass(frozen=True)
class Pair:
    """One unit of work: a point on a device.

    Attributes:
        point: the experiment's point (its ``devices`` selector removed).
        device: the device it runs on.
        key: 16 hex digits, the key of the point's parameters plus ``lab_device``.
        options: flat :func:`meltbench.api.build_spec` options (``quant`` excluded).
        quant: requantization of the point (``quant`` axis), built on the device's host.
        skip_reason: why it cannot run on this device, or None.
    """

    point: Point
    device: LabDevice
    key: str
    options: dict[str, Any]
    quant: str | None = None
    skip_reason: str | None = None

    def label(self) -> str:
        """``DEVICE: point label``."""
        return f"{self.device.name}: {self.point.label()}"


def load_lab_experiment(path: str | Path) -> Experiment:
    """An experiment file with the ``devices`` axis.

    Raises:
        UsageError: as :func:`~meltbench.sweep.experiment.load_experiment`, and for
            settings a lab cannot honour (``cooldown_margin_c``, ``search``, ``target``).
    """
    exp = load_experiment(path, extra_axes=(DEVICES_AXIS,))
    for key, why in _REFUSED.items():
        if exp.settings.get(key):
            raise UsageError(f"{path}: {key}: not supported by meltbench lab ({why})")
    return exp


def select(selector: str, lab: Lab) -> list[LabDevice]:
    """The devices a selector names: ``all``, a name, ``class:NAME`` or ``host:NAME``.

    Raises:
        UsageError: a selector that matches no device (listing the devices and classes).
    """
    devices = list(lab.devices.values())
    if selector == "all":
        return devices
    if selector.startswith("class:"):
        found = [d for d in devices if d.device_class == selector[6:]]
    elif selector.startswith("host:"):
        found = [d for d in devices if d.host == selector[5:]]
    else:
        found = [d for d in devices if d.name == selector]
    if not found:
        classes = sorted({d.device_class for d in devices})
        raise UsageError(
            f"devices: {selector!r} matches no device of the lab; use all, a name "
            f"({', '.join(lab.devices)}), class:NAME ({', '.join(classes)}) or host:NAME"
        )
    return found


def _absolute_model(options: dict[str, Any]) -> dict[str, Any]:
    """A model given as a relative path that exists here becomes absolute (the task may
    run in another working directory); names and absolute paths are left alone."""
    model = options.get("model")
    if model and not Path(str(model)).is_absolute() and Path(str(model)).exists():
        return {**options, "model": str(Path(str(model)).resolve())}
    return options


def plan_pairs(exp: Experiment, lab: Lab, only: list[str] | None = None) -> list[Pair]:
    """Every (point, device) pair of the experiment, points grouped by model as in a sweep,
    devices in lab order within a point; checked with :func:`meltbench.api.prepare`.

    Args:
        only: ``--devices`` selectors: keep only the devices they match.

    Raises:
        UsageError: a selector that matches nothing, or (without ``only``) a point that no
            device can run (naming the point and the first reason).
    """
    from meltbench.api import build_spec, prepare
    from meltbench.sweep.execute import point_options, requantized_options
    from meltbench.targets.config import configure

    kept = None
    if only:
        kept = {d.name for s in only for d in select(s, lab)}
    pairs: list[Pair] = []
    seen: set[str] = set()
    for point in order_points(expand(exp)):
        params = {k: v for k, v in point.params.items() if k != DEVICES_AXIS}
        devices = select(str(point.params.get(DEVICES_AXIS, "all")), lab)
        base = Point.of(params)
        for device in devices:
            if kept is not None and device.name not in kept:
                continue
            if any(_excludes(rule, params, device, lab) for rule in exp.settings["exclude"]):
                continue
            key = Point.of({**params, "lab_device": device.name}).key
            if key in seen:
                continue
            seen.add(key)
            options = _absolute_model(point_options(exp, base))
            options["target"] = device.name
            engine_options = {**(options.get("engine_options") or {}), **device.engine_options}
            options["engine_options"] = engine_options or None
            pairs.append(Pair(base, device, key, options, params.get("quant")))
    # the devices as a targets file, so that a run's ``target`` is the device's name
    configure(targets_file=write_targets_file(lab.targets()))
    checked: list[Pair] = []
    for pair in pairs:
        try:
            opts = pair.options
            if pair.quant:
                opts, _ = requantized_options(opts, str(pair.quant))
            prepare(build_spec(**opts))
            checked.append(pair)
        except UsageError as exc:
            checked.append(_with_reason(pair, str(exc)))
    by_point: dict[str, list[Pair]] = {}
    for pair in checked:
        by_point.setdefault(pair.point.key, []).append(pair)
    for group in by_point.values():
        if only is None and all(p.skip_reason for p in group):
            raise UsageError(f"point {group[0].point.label()}: {group[0].skip_reason}")
    return checked


def _excludes(rule: dict[str, list[Any]], params: dict[str, Any], device: LabDevice,
              lab: Lab) -> bool:  # fmt: skip
    """Whether an ``exclude`` rule with a ``devices`` key drops this point on this device
    (its selectors are matched against the device, not the point's own selector)."""
    if DEVICES_AXIS not in rule:
        return False
    if not all(params.get(k) in v for k, v in rule.items() if k != DEVICES_AXIS):
        return False
    return any(device.name == d.name for s in rule[DEVICES_AXIS] for d in select(str(s), lab))


def _with_reason(pair: Pair, reason: str) -> Pair:
    return Pair(pair.point, pair.device, pair.key, pair.options, pair.quant, reason)


def write_targets_file(entries: dict[str, dict[str, Any]]) -> Path:
    """``entries`` (name -> targets-file entry) written to a new temporary targets file."""
    import tempfile

    import yaml

    d = Path(tempfile.mkdtemp(prefix="meltbench-lab-"))
    path = d / "targets.yaml"
    path.write_text(yaml.safe_dump({"targets": entries}))
    return path
