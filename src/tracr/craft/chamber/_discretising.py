"""The discretising MLP behind every numerical-input Map (see numerical_mlp for the maths).

Kept apart from the builders because it carries the numerics: slopes and biases chosen to
be exact float32 numbers, and the orientation of each step (rising or falling), chosen so
that the terms whose rounding the output carries stay small (craft/rounding.py bounds that
rounding for every summation order).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Iterable

import numpy as np

from tracr import caches

_F32 = np.float32
_MAX_PIVOTS = 256  # pivot candidates scored when choosing one (all of them below this)
_CHUNK = 1 << 20  # entries per block of the [candidates, points] term-size table


def sorted_points(values: Iterable[float]) -> tuple[np.ndarray, list]:
    """(sorted distinct float64 points, the original value of each); ValueError for a
    non-number, a non-finite number, distinct values with equal floats, or no values."""
    originals: dict[float, object] = {}
    for v in values:
        kind = type(v)
        plain = kind is float or kind is int  # the usual values: no ABC check
        if not (plain or isinstance(v, numbers.Real)) or not math.isfinite(v):
            raise _not_finite(v)
        key = float(v)
        if key in originals and originals[key] != v:
            raise ValueError(f"values {originals[key]!r} and {v!r} are the same float")
        originals.setdefault(key, v)
    if not originals:
        raise _empty()
    points = np.array(sorted(originals), dtype=np.float64)
    return points, [originals[p] for p in points.tolist()]


def _not_finite(value) -> ValueError:
    return ValueError(f"numerical value sets hold finite numbers, got {value!r}")


def _empty() -> ValueError:
    return ValueError("the input value set is empty")


def _float32_slopes(slopes: np.ndarray) -> np.ndarray:
    """Round to float32 where that stays finite and nonzero (so float32 models match)."""
    with np.errstate(over="ignore", under="ignore"):
        rounded = slopes.astype(_F32).astype(np.float64)
    return np.where(np.isfinite(rounded) & (rounded > 0), rounded, slopes)


def _float32_friendly(ideal: np.ndarray, max_shift: np.ndarray) -> np.ndarray:
    """Round each bias c so that c and c - 1 are exact float32 numbers, where that moves
    c by at most max_shift (and |c| < 2^23); elsewhere keep the ideal value."""
    with np.errstate(over="ignore"):
        spacing = np.spacing((np.abs(ideal) + 1.0).astype(_F32)).astype(np.float64)
    rounded = np.round(ideal / spacing) * spacing
    ok = (spacing <= 0.5) & (np.abs(rounded - ideal) <= max_shift)
    return np.where(ok, rounded, ideal)


@dataclasses.dataclass(frozen=True)
class _Steps:
    """Per-gap quantities that do not depend on the orientation of the steps."""

    points: np.ndarray  # [n]
    slopes: np.ndarray  # [n - 1]
    bias_rise: np.ndarray  # [n - 1] bias of unit a when the step rises
    bias_fall: np.ndarray  # [n - 1] bias of unit a when the step falls


def _steps(points: np.ndarray) -> _Steps:
    gaps = np.diff(points)
    mids = points[:-1] + gaps / 2
    slopes = _float32_slopes(2.0 / gaps)
    if not np.all(np.isfinite(slopes * np.max(np.abs(points)))):
        raise ValueError("the gaps of the value set are too small for floating point")
    shift = slopes * gaps / 16
    rise = _float32_friendly(0.5 - slopes * mids, shift)
    fall = _float32_friendly(0.5 + slopes * mids, shift)
    return _Steps(points, slopes, rise, fall)


@dataclasses.dataclass(frozen=True)
class Discretisation:
    """The step units for one value set. Step k's two units are
    sign_k * slope_k * x + bias_k (- 1 for the second) - gate_k * bos.

    points: [n] sorted; slopes, signs, biases, gates: [n - 1], one entry per gap.
    """

    points: np.ndarray
    slopes: np.ndarray
    signs: np.ndarray
    biases: np.ndarray
    gates: np.ndarray

    def constant_row(self, rows: np.ndarray) -> np.ndarray:
        """The output of the gated constant unit: y_0 plus the jumps of the falling
        steps (a falling unit pair computes 1 - step, so their jumps start switched on)."""
        deltas = rows[1:] - rows[:-1]
        return rows[0] + deltas[self.signs < 0].sum(axis=0)

    def ramps(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) per gap: step k is constant outside [lo_k, hi_k]."""
        first = -self.biases / (self.signs * self.slopes)
        second = (1.0 - self.biases) / (self.signs * self.slopes)
        return np.minimum(first, second), np.maximum(first, second)

    @property
    def tolerance(self) -> float:
        """The largest input error every point survives: min_k of the ramp margins."""
        if len(self.points) == 1:
            return math.inf
        lo, hi = self.ramps()
        return float(min(np.min(lo - self.points[:-1]), np.min(self.points[1:] - hi)))


def _term_sums(steps: _Steps, weights: np.ndarray, rising: np.ndarray) -> np.ndarray:
    """[m, n]: for each orientation pattern (rising [m, n - 1] bool) and point s_j, the
    sum over the steps active at s_j of weights_k * (L_k |s_j| + |c_k| + 1): the size of
    the terms whose rounding step k carries (its two pre-activations, and the outputs
    a_k + b_k, at most twice that).

    A rising step k is active at s_j for j > k, a falling one for j <= k; prefix and
    suffix sums make this O(n) per pattern.
    """
    s = np.abs(steps.points)  # [n]
    rising = np.asarray(rising, dtype=bool)
    slope = weights * steps.slopes
    up = rising * slope, rising * weights * (np.abs(steps.bias_rise) + 1)
    down = ~rising * slope, ~rising * weights * (np.abs(steps.bias_fall) + 1)
    zeros = np.zeros((len(rising), 1))
    # rising steps k < j: prefix sums; falling steps k >= j: suffix sums.
    prefix = [np.concatenate([zeros, np.cumsum(a, axis=1)], axis=1) for a in up]
    suffix = [np.concatenate([np.cumsum(a[:, ::-1], axis=1)[:, ::-1], zeros], axis=1) for a in down]
    return s * (prefix[0] + suffix[0]) + prefix[1] + suffix[1]


def _row_norms(outputs: np.ndarray) -> np.ndarray:
    return np.max(np.abs(outputs), axis=-1) if outputs.shape[-1] else np.zeros(len(outputs))


def _step_costs(steps: _Steps, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Worst term size of each step over the points where it is active, rising or
    falling: (L_k max_(j > k) |s_j| + |c_rise| + 1, L_k max_(j <= k) |s_j| + |c_fall| + 1)."""
    s = np.abs(steps.points)
    above = np.maximum.accumulate(s[::-1])[::-1][1:]  # max over j > k
    below = np.maximum.accumulate(s)[:-1]  # max over j <= k
    rise = weights * (steps.slopes * above + np.abs(steps.bias_rise) + 1)
    fall = weights * (steps.slopes * below + np.abs(steps.bias_fall) + 1)
    return rise, fall


def choose_orientation(steps: _Steps, outputs: np.ndarray, relative: bool) -> np.ndarray:
    """[n - 1] bool, True where step k rises (is active above its ramp).

    Each output coordinate of a one-hot output reads two steps, so its rounding is set by
    the costliest step: each step takes its cheaper orientation (`_step_costs`). A
    numerical output reads every active step; the candidates (that choice, and every
    pivot P: steps k >= P rise, up to 256 of them) are scored by the worst over the
    points of the summed term size, relative to max(1e-5 |y_j|, 1e-6) when `relative`.
    Without outputs: rise above the centre of the range.
    """
    n = len(steps.points)
    mids = (steps.points[:-1] + steps.points[1:]) / 2
    geometric = mids >= (steps.points[0] + steps.points[-1]) / 2
    if n == 1 or not np.any(outputs[1:] != outputs[:-1]):
        return geometric
    weights = _row_norms(outputs[1:] - outputs[:-1])
    rise, fall = _step_costs(steps, weights)
    greedy = rise <= fall
    if not relative:
        return greedy
    count = min(n, _MAX_PIVOTS)
    pivots = np.unique(np.linspace(0, n - 1, count).round()).astype(np.int64)
    candidates = np.concatenate(
        [greedy[None], geometric[None], np.arange(n - 1)[None, :] >= pivots[:, None]]
    )
    budget = np.maximum(1e-5 * _row_norms(outputs), 1e-6)
    chunks = np.array_split(np.arange(len(candidates)), len(candidates) * n // _CHUNK + 1)
    worst = np.concatenate(
        [
            np.max(_term_sums(steps, weights, candidates[c]) / budget, axis=1)
            for c in chunks
            if len(c)
        ]
    )
    return candidates[int(np.argmin(worst))]


def discretise(
    values: Iterable[float], outputs: np.ndarray | None = None, relative: bool = False
) -> Discretisation:
    """The step units for a finite set of numbers.

    With `outputs` ([n, d], rows in sorted order of the values), the orientation of each
    step is chosen by `choose_orientation`; without, geometrically.
    """
    points, _ = sorted_points(values)
    if outputs is None:
        outputs = np.zeros((len(points), 0))
    return discretise_sorted(points, outputs, relative)


def discretise_sorted(points: np.ndarray, outputs: np.ndarray, relative: bool) -> Discretisation:
    """`discretise` of points that are already what `sorted_points` returns: a sorted
    float64 array [n] of distinct finite numbers (n >= 1)."""
    outputs = np.ascontiguousarray(outputs, dtype=np.float64)
    return _discretised(points.tobytes(), outputs.tobytes(), outputs.shape, bool(relative))


def check_finite(points: np.ndarray) -> None:
    """ValueError, as `sorted_points` raises it, unless the float64 array [n] holds at
    least one number and only finite ones."""
    bad = np.flatnonzero(~np.isfinite(points))
    if bad.size:
        raise _not_finite(points[bad[0]])
    if not points.size:
        raise _empty()


@functools.lru_cache(maxsize=512)
def _discretised(points: bytes, outputs: bytes, shape: tuple, relative: bool) -> Discretisation:
    """`discretise` of sorted distinct points, by content: the same value set and outputs
    (the points 1/(w+1) of every selector width of one max_seq_len, say) get the same
    numbers, computed once. The arrays are read-only (the result is shared)."""
    points = np.frombuffer(points, np.float64)
    steps = _steps(points)
    rising = choose_orientation(steps, np.frombuffer(outputs, np.float64).reshape(shape), relative)
    signs = np.where(rising, 1.0, -1.0)
    biases = np.where(rising, steps.bias_rise, steps.bias_fall)
    gates = 2 * (np.abs(biases) + steps.slopes * np.max(np.abs(points))) + 1.0
    arrays = (points, steps.slopes, signs, biases, gates)
    for a in arrays:
        a.flags.writeable = False
    return Discretisation(*arrays)


def point_margins(values: Iterable[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(points, below, above): how far each sorted point may move down / up and keep its
    output, for either orientation of its steps; inf at the ends."""
    points, _ = sorted_points(values)
    return _margins(points.tobytes())


@functools.lru_cache(maxsize=512)
def _margins(points: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`point_margins` of sorted distinct points, by content (read-only arrays)."""
    points = np.frombuffer(points, np.float64)
    steps = _steps(points)
    below, above = np.full(len(points), math.inf), np.full(len(points), math.inf)
    for sign, bias in ((1.0, steps.bias_rise), (-1.0, steps.bias_fall)):
        first, second = -bias / (sign * steps.slopes), (1.0 - bias) / (sign * steps.slopes)
        lo, hi = np.minimum(first, second), np.maximum(first, second)
        below[1:] = np.minimum(below[1:], points[1:] - hi)
        above[:-1] = np.minimum(above[:-1], lo - points[:-1])
    below.flags.writeable = above.flags.writeable = False
    return points, below, above


caches.register(_discretised.cache_clear)
caches.register(_margins.cache_clear)


def input_tolerance(values: Iterable[float]) -> float:
    """Lower bound, valid for every orientation, on the distance an input may stray from its
    value and keep its output: the smallest ramp margin (~ a quarter of the min gap)."""
    _, below, above = point_margins(values)
    return float(min(np.min(below), np.min(above)))
