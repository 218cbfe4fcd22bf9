"""Group numerical values that differ only by floating-point rounding.

Value sets are enumerated in Python floats, so one real number can show up as two
floats a few ulps apart (0.7 - 0.1 and 0.6, say). A numerical MLP cannot and need not
tell those apart; it must treat each group as one input point. A group is formed by
values within `RELATIVE_TOLERANCE` of their neighbour, relative to the set's scale.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import numpy as np

from tracr.compiler import bound_cache

RELATIVE_TOLERANCE = 1e-9


def _grouped(values: Iterable[float]) -> tuple[list, list[int]]:
    """The sorted distinct values and the start index of each group (plus the end)."""
    points = sorted({v for v in values if v is not None})
    if not points:
        return [], [0]
    return points, _group_starts(np.array(points, dtype=np.float64))


def _group_starts(as_floats: np.ndarray) -> list[int]:
    """The start index of each group of sorted distinct floats (plus the end)."""
    scale = max(1.0, float(np.abs(as_floats).max()))
    # a new group starts wherever the gap to the previous value exceeds the tolerance
    apart = np.diff(as_floats) > RELATIVE_TOLERANCE * scale
    if apart.all():  # one value per group, the usual case
        return list(range(len(as_floats) + 1))
    return [0, *(np.flatnonzero(apart) + 1).tolist(), len(as_floats)]


#: What `Grouping.results` holds where f raised an ArithmeticError.
RAISED = object()


class _ExactSet:
    """A value set as a key of `groupings`, equal to another only where both hold the
    same values of the same types. Frozensets compare 1, 1.0 and True equal, and 0.0 and
    -0.0, but a Map's function may tell them apart, so a Grouping (whose points are the
    set's own elements, which functions are evaluated at) must not be shared between
    them. The same object, the usual case, is equal at once; other equal sets are
    compared element by element (`bound_cache.exact_values`), and never where a value
    has no exact key. (Not a `bound_cache.Key`: that compares its parts with ==.)"""

    __slots__ = ("values", "_hash")

    def __init__(self, values: frozenset):
        self.values = values
        self._hash = hash(values)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _ExactSet):
            return NotImplemented
        a, b = self.values, other.values
        if a is b:
            return True
        if a != b:
            return False
        exact = bound_cache.exact_values(a)
        return exact is not None and exact == bound_cache.exact_values(b)


@dataclasses.dataclass(frozen=True)
class Grouping:
    """A value set's sorted distinct values (`points`) and where each group of rounding
    duplicates starts (`bounds`, plus the end): sorted once for the several questions
    the compiler asks of one set. The functions below take it in place of the values.

    One compile's passes share its groupings (compiling.py), and with them the results
    of each function at the points (`results`): validation and lowering ask for them."""

    points: list
    bounds: list[int]
    _results: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)
    #: The points as a read-only float64 array, where the Grouping was made from one
    #: (`of_sorted`); None otherwise.
    array: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, values: Iterable[float] | Grouping) -> Grouping:
        return values if isinstance(values, Grouping) else cls(*_grouped(values))

    @classmethod
    def of_sorted(cls, floats: np.ndarray, points: list) -> Grouping:
        """The Grouping of a sorted float64 array of distinct finite numbers (np.unique's,
        say) whose values are `points` (its tolist()): what `of` gives for the set of
        them, without sorting them again; the array is kept (read-only) as `array`."""
        floats.flags.writeable = False
        if not points:
            return cls([], [0], array=floats)
        return cls(points, _group_starts(floats), array=floats)

    @classmethod
    def shared(cls, groupings: dict, values: frozenset) -> Grouping:
        """The Grouping of `values`, made once per compile in `groupings` (value set ->
        Grouping), which the passes share. Raises what `of` raises (TypeError: values
        that do not sort)."""
        grouping = cls.kept(groupings, values)
        if grouping is None:
            grouping = cls.keep(groupings, values, cls.of(values))
        return grouping

    @staticmethod
    def kept(groupings: dict, values: frozenset) -> Grouping | None:
        """The Grouping `groupings` holds for exactly these values, if any."""
        return groupings.get(_ExactSet(values))

    @staticmethod
    def keep(groupings: dict, values: frozenset, grouping: Grouping) -> Grouping:
        """Puts `grouping` in `groupings` as that of exactly these values; returns it."""
        groupings[_ExactSet(values)] = grouping
        return grouping

    def results(self, f: Callable) -> list:
        """f at every point (RAISED where it raises an ArithmeticError), computed once."""
        return self._evaluation(f)[1]

    def raises(self, f: Callable) -> bool:
        """Whether f raises an ArithmeticError at some point."""
        return self._evaluation(f)[2]

    def _evaluation(self, f: Callable) -> tuple:
        known = self._results.get(id(f))
        if known is None:  # f is kept with its results, so its id is not reused
            known = self._results[id(f)] = (f, *_evaluated(f, self.points))
        return known

    def memo(self, kind: str, f: Callable, compute: Callable):
        """compute(), worked out once per (kind, f) for this value set: validation and
        lowering ask the same questions of one Map (`map_points`, `affine_fit`); the
        answer is shared, so callers must not change it."""
        known = self._results.get((kind, id(f)))
        if known is None:  # f is kept with the answer, so its id is not reused
            known = self._results[(kind, id(f))] = (f, compute())
        return known[1]

    def floats(self) -> bool:
        """Whether every point is a float (so f at a point is f at the point's float)."""
        known = self._results.get("floats")
        if known is None:
            known = self._results["floats"] = all(type(p) is float for p in self.points)
        return known


def _evaluated(f: Callable, points: list) -> tuple[list, bool]:
    try:
        return [f(p) for p in points], False
    except ArithmeticError:
        pass
    out = []
    for p in points:
        try:
            out.append(f(p))
        except ArithmeticError:
            out.append(RAISED)
    return out, True


def _float_results(f: Callable, grouping: Grouping) -> tuple[list[float], list]:
    """The representatives as floats and quiet f at each: the shared results where the
    points are floats already (f gets the same arguments), calls otherwise."""
    firsts = grouping.bounds[:-1]
    if not grouping.floats():
        points = [float(grouping.points[a]) for a in firsts]
        return points, _results(f, points)
    shared = grouping.results(f)
    outputs = [shared[a] for a in firsts]
    if grouping.raises(f):
        outputs = [None if o is RAISED else o for o in outputs]
    return [grouping.points[a] for a in firsts], outputs


def representatives(values: Iterable[float] | Grouping) -> list[float]:
    """One value per group (its first)."""
    grouping = Grouping.of(values)
    return [grouping.points[a] for a in grouping.bounds[:-1]]


def _float_points(values: Iterable | Grouping) -> list[float]:
    """The representatives as floats (of a Grouping's values the same: groups are formed
    on the floats, and sorted() orders numbers as their floats)."""
    if isinstance(values, Grouping):
        return [float(p) for p in representatives(values)]
    return representatives(float(v) for v in values if v is not None)


#: Up to this many points, `run_endpoints` compares outputs in a Python loop.
_FEW = 32


def run_endpoints(points: list[float], outputs: list) -> list[int]:
    """Indices of the points an MLP must separate: the ends of each run of equal outputs.

    A numerical MLP needs a step only where its output changes, so points inside a run of
    equal outputs can be dropped; the run's two ends keep its extent.
    """
    if not points:
        return []
    if len(points) <= _FEW:  # a Python loop is quicker than numpy on a few outputs
        last = len(points) - 1
        return [
            i
            for i in range(len(points))
            if i in (0, last) or outputs[i - 1] != outputs[i] or outputs[i] != outputs[i + 1]
        ]
    kinds = set(map(type, outputs))
    if kinds == {bool} or kinds == {float}:  # compared as Python compares them
        values = np.array(outputs)
        changes = values[1:] != values[:-1]
    else:
        changes = np.fromiter((bool(a != b) for a, b in zip(outputs, outputs[1:])), bool)
    ends = np.ones(len(points), dtype=bool)  # the first point of a run, or the last
    ends[1:-1] = changes[:-1] | changes[1:]
    return np.flatnonzero(ends).tolist()


def map_points(f: Callable, values: Iterable | Grouping) -> tuple[list[float], list]:
    """The input points a numerical-input Map's MLP must separate, and f at each.

    Rounding duplicates are merged and runs of equal outputs reduced to their ends. A
    point where f raises an ArithmeticError is no valid input (see basis_inference) and
    gets the output None.
    """
    if isinstance(values, Grouping):
        return values.memo("map_points", f, lambda: _map_points(*_float_results(f, values)))
    points = _float_points(values)
    return _map_points(points, _results(f, points))


def _map_points(points: list[float], outputs: list) -> tuple[list[float], list]:
    keep = run_endpoints(points, outputs)
    return [points[i] for i in keep], [outputs[i] for i in keep]


def _results(f: Callable, points: list) -> list:
    """[quiet(f)(p) for p in points], without the wrapper where no call raises."""
    try:
        return [f(p) for p in points]
    except ArithmeticError:
        g = quiet(f)
        return [g(p) for p in points]


def quiet(f: Callable, fallback=None) -> Callable:
    """f, returning `fallback` where it raises an ArithmeticError.

    On such an input `rasp.evaluate` raises too (see basis_inference), so no valid input
    reaches it and any output will do.
    """

    def wrapped(*args):
        try:
            return f(*args)
        except ArithmeticError:
            return fallback

    return wrapped


def affine_fit(f: Callable, values: Iterable | Grouping) -> tuple[float, float] | None:
    """(slope, intercept) when f is affine on the values (to 1e-9 relative), else None."""
    if isinstance(values, Grouping):
        if len(values.bounds) < 3:
            return None
        return values.memo("affine_fit", f, lambda: _affine_fit(*_float_results(f, values)))
    points = _float_points(values)
    if len(points) < 2:
        return None
    return _affine_fit(points, _results(f, points))


def _affine_fit(points: list[float], outputs: list) -> tuple[float, float] | None:
    if not all(isinstance(o, (int, float)) and not isinstance(o, bool) for o in outputs):
        return None
    slope = (outputs[-1] - outputs[0]) / (points[-1] - points[0])
    intercept = outputs[0] - slope * points[0]
    scale = max(1.0, *(abs(o) for o in outputs))
    if all(
        abs(slope * p + intercept - o) <= RELATIVE_TOLERANCE * scale
        for p, o in zip(points, outputs)
    ):
        return slope, intercept
    return None
