"""What the float32 bounds of a compile share: the error of an SOp (`SOpError`), the
context of the lowered SOps the bounds read (`Context`), and the SOps' values and errors
as the bounds ask for them. See float_bounds.py for the pass and the maths."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

import numpy as np

from tracr.compiler import numeric_points
from tracr.craft import bases
from tracr.rasp import rasp


@dataclasses.dataclass(frozen=True)
class SOpError:
    """Worst-case deviation of an SOp's residual coordinates from their ideal values.

    Categorical: every coordinate is within `abs` of the one-hot, and the deviations of
    all coordinates add up to at most `l1`. Numerical: the number is within
    abs + rel |value|; where the values were enumerated, `per_value` gives the bound at
    each of the sorted `values`.
    """

    abs: float
    rel: float = 0.0
    l1: float = 0.0
    values: np.ndarray | None = None
    per_value: np.ndarray | None = None
    #: Some MLP unit reading a numerical input may switch: the input error exceeds the
    #: block's tolerance, and no bound holds.
    unstable: bool = False

    def at(self, value: float) -> float:
        return float(self.at_many(np.array([value], np.float64))[0])

    def at_many(self, values: np.ndarray) -> np.ndarray:
        """The bound at each of `values` (a numerical SOp's values). Where `values` and
        this error's arrays are read-only, the result is too, and is kept with the error
        for the same `values` (errors and value arrays kept across compiles are asked
        again each compile)."""
        values = np.asarray(values, np.float64)
        if self.values is None or not len(self.values):
            return self.abs + self.rel * np.abs(values)
        known = self.__dict__.get("_at_many")
        if known is not None and known[0] is values:
            return known[1]
        out = self.abs + self.rel * np.abs(values)
        i = np.clip(np.searchsorted(self.values, values), 1, len(self.values) - 1)
        i = np.where(
            np.abs(self.values[i - 1] - values) <= np.abs(self.values[i] - values), i - 1, i
        )
        near = np.abs(self.values[i] - values) <= 1e-9 * np.maximum(1.0, np.abs(values))
        out = np.where(near, self.per_value[i], out)
        arrays = (values, self.values, self.per_value)
        if not any(a.flags.writeable for a in arrays):  # none can change
            out.flags.writeable = False
            object.__setattr__(self, "_at_many", (values, out))  # not a field
        return out

    def worst(self, magnitude: float) -> float:
        """The bound for values of size up to `magnitude`."""
        if self.per_value is not None and len(self.per_value):
            return float(max(np.max(self.per_value), self.abs + self.rel * magnitude))
        return self.abs + self.rel * magnitude


EXACT = SOpError(0.0)


def numerical_budget(value, scale: float = 0.0):
    """What a numerical output may be off by: 1e-5 relative to the value, or to the
    output's scale (its largest magnitude) for values near 0, and never below 1e-6.
    `value` is a number (a float back) or an array of them (an array back).

    A value near 0 is often a difference of larger ones (opens - closes); no float32
    computation gets it to 1e-5 of itself, but one gets it to 1e-5 of the scale."""
    if np.ndim(value):
        return np.maximum(np.maximum(1e-5 * np.abs(value), 1e-5 * scale), 1e-6)
    return max(1e-5 * abs(value), 1e-5 * scale, 1e-6)


@dataclasses.dataclass(frozen=True)
class Context:
    """What the bounds need besides the blocks: lowered SOps so far (label -> an object
    with .expr, .space, .block, .constant), value sets, the BOS and `one` directions."""

    lowered: Mapping[str, object]
    value_sets: Mapping[str, frozenset | None]
    bos: bases.BasisDirection
    one: bases.BasisDirection
    max_seq_len: int
    #: One-hots inside blocks that other blocks read (a two-stage SelectorWidth's
    #: one-hot of w): direction name -> (values, SOpError).
    hidden: dict = dataclasses.field(default_factory=dict)
    #: Numbers a selector-width head writes that other blocks read (its t = 1/(w+1)
    #: and mean index): direction name -> WidthNumbers.
    numbers: dict = dataclasses.field(default_factory=dict)
    #: Results computed once per compile: sorted value sets and magnitudes by label.
    memo: dict = dataclasses.field(default_factory=dict, compare=False)
    #: The compile's numerical value sets sorted once (value set ->
    #: numeric_points.Grouping), whose sorted arrays `points` takes where they are kept.
    groupings: dict = dataclasses.field(default_factory=dict, compare=False)


@dataclasses.dataclass(frozen=True)
class WidthNumbers:
    """The numbers a selector-width head writes, as functions of the width w: for every
    w of `widths` ([W]), the ideal value and error bound of each of `directions` ([W, D]),
    and the same at BOS ([D]). They are read together (one w per position)."""

    label: str
    directions: tuple[str, ...]
    widths: np.ndarray
    ideal: np.ndarray
    error: np.ndarray
    bos_ideal: np.ndarray
    bos_error: np.ndarray


def per_space(ctx: Context, what: str, space: bases.VectorSpaceWithBasis, make: Callable):
    """make(space), worked out once per compile for each space (heads and MLPs reading
    the same SOps share their spaces); `what` names the result."""
    key = (what, id(space))
    known = ctx.memo.get(key)
    if known is not None and known[0] is space:
        return known[1]
    found = make(space)
    ctx.memo[key] = (space, found)  # the space is kept, so its id is not reused
    return found


def read_names(ctx: Context, space: bases.VectorSpaceWithBasis) -> list[str]:
    """The names of the directions of `space` other than BOS and `one`, each once, in
    basis order; kept for the compile (do not modify the list)."""
    return per_space(ctx, "names", space, lambda s: _names(ctx, s))


def _names(ctx: Context, space: bases.VectorSpaceWithBasis) -> list[str]:
    aux = {ctx.bos, ctx.one}
    return list(dict.fromkeys(d.name for d in space.basis if d not in aux))


def numerical(ctx: Context, label: str) -> bool:
    return label not in ctx.hidden and rasp.is_numerical(ctx.lowered[label].expr)


def error(ctx: Context, errors: Mapping[str, SOpError], label: str) -> SOpError:
    return ctx.hidden[label][1] if label in ctx.hidden else errors[label]


def values(ctx: Context, label: str) -> list | None:
    """The sorted values of an SOp (or of a hidden one-hot); do not modify the list."""
    if label in ctx.hidden:
        return list(ctx.hidden[label][0])
    key = ("values", label)
    if key not in ctx.memo:
        ctx.memo[key] = _sorted_values(ctx, label)
    return ctx.memo[key]


def points(ctx: Context, label: str) -> np.ndarray | None:
    """The sorted values of a numerical SOp as a read-only float64 array [n]."""
    key = ("points", label)
    if key not in ctx.memo:
        found = ctx.value_sets.get(label)
        grouping = None if found is None else numeric_points.Grouping.kept(ctx.groupings, found)
        if grouping is not None and grouping.array is not None:
            found = grouping.array  # read-only
        elif found is not None:
            if None in found:
                found = found - {None}
            found = np.sort(np.fromiter(found, np.float64, len(found)))
            found.flags.writeable = False
        ctx.memo[key] = found
    return ctx.memo[key]


def _sorted_values(ctx: Context, label: str) -> list | None:
    values = ctx.value_sets.get(label)
    if values is None:
        return None
    node = ctx.lowered[label]
    if rasp.is_categorical(node.expr):
        return sorted(values, key=repr)
    return points(ctx, label).tolist()


def magnitude(ctx: Context, label: str) -> float:
    """Largest |value| of a numerical SOp (1 for a categorical one: its one-hot)."""
    if not numerical(ctx, label):
        return 1.0
    key = ("magnitude", label)
    if key not in ctx.memo:
        found = points(ctx, label)
        if found is None:
            ctx.memo[key] = math.inf
        elif len(found) and np.isfinite(found[0]) and np.isfinite(found[-1]):
            # Sorted, and no nan (it would sort last): the largest |value| is at an end.
            ctx.memo[key] = max(abs(float(found[0])), abs(float(found[-1])))
        else:
            ctx.memo[key] = max(map(abs, found.tolist()), default=0.0)
    return ctx.memo[key]
