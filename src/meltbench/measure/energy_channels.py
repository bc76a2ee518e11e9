"""Which energy and power channels to add up for a device's energy (pure).

A device often exposes the same energy twice (a counter and a power reading of one rail,
or a package and the cores inside it); adding those would count it twice. The rules are
in :func:`select_energy_channels`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from meltbench.sensors.base import Channel

__all__ = ["select_energy_channels"]

_KIND_PART = re.compile(r"(?<=[:/])(?:energy|power)(\d*)(?=$|[:/])", re.IGNORECASE)

#: how much of the device a scope covers, for deciding which of two overlapping
#: channels contains the other (unknown scopes rank 2)
_SCOPE_RANK = {"board": 4, "cpu-package": 3, "cpu-core": 1, "rail": 1}


def _quantity_key(name: str) -> str:
    """A name with its ``energy``/``power`` part removed (``nvml:gpu0:energy`` ->
    ``nvml:gpu0``; ``hwmon:x/power1`` -> ``hwmon:x/1``)."""
    return _KIND_PART.sub(r"\1", name).rstrip(":/")


def _method_words(chosen: Sequence[Channel]) -> str:
    kinds = {c.kind for c in chosen}
    if kinds == {"energy"}:
        return "counters" if len(chosen) > 1 else "counter"
    if kinds == {"power"}:
        return "power integral"
    return "counters and power integral"


def select_energy_channels(channels: Sequence[Channel]) -> tuple[list[Channel], str]:
    """The channels whose sum is the device's energy, without double counting.

    Only ``energy`` and ``power`` channels take part. Rules, in order:

    1. **Same quantity twice.** An energy counter and a power reading of the same device
       are one quantity; the power channel is dropped (counters are exact between
       readings, see the module docstring). They are recognised by names that differ
       only in an ``energy``/``power`` part: ``nvml:gpu0:energy`` / ``nvml:gpu0:power``,
       ``hwmon:x/energy1`` / ``hwmon:x/power1``. The counter inherits the power
       channel's ``total`` flag and overlaps.
    2. **A board total.** If any remaining channel has ``total=True`` (Jetson ``VDD_IN``,
       a battery, RAPL ``psys``), exactly one is used: the first energy counter among
       them, else the first one.
    3. **Otherwise a sum** of the remaining channels, leaving out every channel that
       overlaps a bigger one. Two channels overlap when either lists the other in
       ``overlaps``. The plug-ins use both directions (RAPL ``core`` lists its
       ``package``; a Jetson rail lists the input rail; ``psys`` lists what it
       contains), so the relation is read as "never add these two" and the container
       is the one with the wider ``scope`` (board > cpu-package > gpu, dram, soc and
       unknown scopes > cpu-core, rail); on equal scopes, the one that lists the other
       (the meaning :class:`~meltbench.sensors.base.Channel` documents), and on a
       mutual listing the earlier one. RAPL ``package-0`` + ``dram`` + a GPU are summed;
       ``core`` and ``uncore`` (inside the package) are not.

    Returns:
        ``(channels, reason)``: the chosen channels in input order, and one line saying
        what was chosen and why, e.g. ``"sum of rapl:package-0 + rapl:dram +
        nvml:gpu0:energy (counters); left out: rapl:package-0/core (inside
        rapl:package-0)"``. ``([], "no energy or power channel")`` when there is none.
    """
    cands = [c for c in channels if c.kind in ("energy", "power")]
    if not cands:
        return [], "no energy or power channel"
    left_out: list[str] = []

    # 1. an energy counter and a power reading of the same quantity
    energy_by_key: dict[str, Channel] = {}
    for c in cands:
        if c.kind == "energy":
            energy_by_key.setdefault(_quantity_key(c.name), c)
    alias: dict[str, str] = {}  # dropped power channel -> its counter
    for c in cands:
        twin = energy_by_key.get(_quantity_key(c.name)) if c.kind == "power" else None
        if twin is not None:
            alias[c.name] = twin.name
            left_out.append(f"{c.name} (same quantity as counter {twin.name})")
    kept = [c for c in cands if c.name not in alias]
    total = {c.name: c.total for c in kept}
    lists: dict[str, set[str]] = {c.name: set() for c in kept}
    for c in cands:
        owner = alias.get(c.name, c.name)
        if owner not in lists:
            continue  # a second channel with the same name
        total[owner] = total[owner] or c.total
        lists[owner].update(alias.get(o, o) for o in c.overlaps)
    for name, listed in lists.items():
        listed.discard(name)

    # 2. one board total
    totals = [c for c in kept if total[c.name]]
    if totals:
        pick = next((c for c in totals if c.kind == "energy"), totals[0])
        reason = f"board total {pick.name} ({_method_words([pick])})"
        others = [c.name for c in kept if c is not pick]
        if others:
            reason += f"; not added: {', '.join(others)} (the board total includes them)"
        if left_out:
            reason += f"; left out: {', '.join(left_out)}"
        return [pick], reason

    # 3. the sum of the channels that do not overlap a bigger one
    order = {c.name: i for i, c in enumerate(kept)}

    def contains(a: Channel, b: Channel) -> bool:
        ra, rb = _SCOPE_RANK.get(a.scope, 2), _SCOPE_RANK.get(b.scope, 2)
        if ra != rb:
            return ra > rb
        a_lists, b_lists = b.name in lists[a.name], a.name in lists[b.name]
        if a_lists != b_lists:
            return a_lists
        return order[a.name] < order[b.name]

    def neighbours(c: Channel) -> list[Channel]:
        return [
            d for d in kept if d is not c and (d.name in lists[c.name] or c.name in lists[d.name])
        ]

    container = {c.name: next((d for d in neighbours(c) if contains(d, c)), None) for c in kept}
    # a cycle of "contains" (a plug-in error) would leave a group of overlapping
    # channels with no member: keep the group's first channel then
    seen: set[str] = set()
    for c in kept:
        if c.name in seen:
            continue
        group, stack = [], [c]
        seen.add(c.name)
        while stack:
            g = stack.pop()
            group.append(g)
            for d in neighbours(g):
                if d.name not in seen:
                    seen.add(d.name)
                    stack.append(d)
        if all(container[g.name] is not None for g in group):
            container[min(group, key=lambda g: order[g.name]).name] = None
    chosen = [c for c in kept if container[c.name] is None]
    for c in kept:
        inside = container[c.name]
        if inside is not None:
            left_out.append(f"{c.name} (inside {inside.name})")
    names = [c.name for c in chosen]
    method = _method_words(chosen)
    reason = (
        f"sum of {' + '.join(names)} ({method})" if len(names) > 1 else f"{names[0]} ({method})"
    )
    if left_out:
        reason += f"; left out: {', '.join(left_out)}"
    return chosen, reason
