"""The Pareto front of capacity against cost: shapes no other shape beats on both.

A candidate is on the front when no other has at least as many parameters and at most
the same cost, one of the two strictly (the usual dominance of multi-objective
optimisation, maximising parameters and minimising latency, memory or energy).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["pareto_front"]


def pareto_front(points: Sequence[tuple[str, int, float]]) -> list[str]:
    """Keys of the non-dominated points, fewest parameters first.

    Args:
        points: ``(key, n_params, cost)``; costs that are None or NaN are skipped.

    Returns:
        The front's keys, fewest parameters first (ties in input order). Among equal
        (params, cost) duplicates every one is kept.

    Runs in O(n log n): sorted by parameters descending (cost ascending on ties), a point
    is on the front when its cost is below every cost seen at strictly more parameters
    and not above the best at its own parameter count.
    """
    valid = [(k, n, c, i) for i, (k, n, c) in enumerate(points) if c is not None and c == c]
    valid.sort(key=lambda p: (-p[1], p[2], p[3]))
    front: list[tuple[int, int, str]] = []  # (params, input position, key)
    best_above = float("inf")  # lowest cost among strictly larger models
    i = 0
    while i < len(valid):
        j = i
        while j < len(valid) and valid[j][1] == valid[i][1]:
            j += 1
        group = valid[i:j]  # same parameter count, cost ascending
        lowest = group[0][2]
        if lowest < best_above:
            front.extend((n, pos, k) for k, n, c, pos in group if c == lowest)
        best_above = min(best_above, lowest)
        i = j
    return [k for _, _, k in sorted(front)]
