"""Group numerical values that differ only by floating-point rounding.

Value sets are enumerated in Python floats, so one real number can show up as two
floats a few ulps apart (0.7 - 0.1 and 0.6, say). A numerical MLP cannot and need not
tell those apart; it must treat each group as one input point. A group is formed by
values within `RELATIVE_TOLERANCE` of their neighbour, relative to the set's scale.
"""

from __future__ import annotations

from collections.abc import Iterable

RELATIVE_TOLERANCE = 1e-9


def clusters(values: Iterable[float]) -> list[list[float]]:
    """Sorted groups of values that are equal up to rounding; None is ignored."""
    points = sorted({v for v in values if v is not None})
    if not points:
        return []
    scale = max(1.0, max(abs(p) for p in points))
    groups = [[points[0]]]
    for p in points[1:]:
        if p - groups[-1][-1] <= RELATIVE_TOLERANCE * scale:
            groups[-1].append(p)
        else:
            groups.append([p])
    return groups


def representatives(values: Iterable[float]) -> list[float]:
    """One value per group (its first)."""
    return [group[0] for group in clusters(values)]
