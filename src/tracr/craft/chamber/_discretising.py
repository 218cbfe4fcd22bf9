"""The discretising MLP behind every numerical-input Map (see numerical_mlp for the maths).

Kept apart from the builders because it carries the numerics: slopes and biases chosen to
be exact float32 numbers, the pivot that decides which steps rise and which fall, and a
first-order estimate of the float rounding error of the resulting MLP.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable

import numpy as np

_F32 = np.float32
_MAX_PIVOTS = 256  # pivot candidates scored when choosing one (all of them below this)
_CHUNK = 1 << 20  # entries per block of the [pivots, points] error table


def sorted_points(values: Iterable[float]) -> tuple[np.ndarray, list]:
    """(sorted distinct float64 points, the original value of each); ValueError for a
    non-number, a non-finite number, distinct values with equal floats, or no values."""
    originals: dict[float, object] = {}
    for v in values:
        if not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"numerical value sets hold finite numbers, got {v!r}")
        key = float(v)
        if key in originals and originals[key] != v:
            raise ValueError(f"values {originals[key]!r} and {v!r} are the same float")
        originals.setdefault(key, v)
    if not originals:
        raise ValueError("the input value set is empty")
    points = np.array(sorted(originals), dtype=np.float64)
    return points, [originals[p] for p in points.tolist()]


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

    @property
    def num_falling(self) -> int:
        """P, the pivot: the falling steps are exactly the first P gaps."""
        return int(np.sum(self.signs < 0))

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

    @property
    def max_activation(self) -> float:
        """Largest hidden activation for inputs in [s_1, s_n] (at least 1, the constant)."""
        if len(self.points) == 1:
            return 1.0
        ends = np.where(self.signs > 0, self.points[-1], self.points[0])
        return float(max(1.0, np.max(self.signs * self.slopes * ends + self.biases)))


def _activation_sums(steps: _Steps, weights: np.ndarray, pivots: np.ndarray) -> np.ndarray:
    """[len(pivots), n]: sum over the steps active at s_j of weights_k * (a_k + b_k).

    With pivot P, rising steps k >= P are active at s_j for j > k with a + b =
    2 (L_k s_j + c_k) - 1; falling steps k < P for j <= k with a + b = 2 (c_k - L_k s_j) - 1.
    Prefix sums make this O(n) per pivot.
    """
    s = steps.points[None, :]  # [1, n]
    j = np.arange(len(steps.points))[None, :]
    p = pivots[:, None]  # [m, 1]

    def prefix(x):
        return np.concatenate([[0.0], np.cumsum(x)])

    slope_sum = prefix(2 * weights * steps.slopes)
    rise_sum = prefix(weights * (2 * steps.bias_rise - 1))
    fall_sum = prefix(weights * (2 * steps.bias_fall - 1))
    rise = s * (slope_sum[j] - slope_sum[p]) + (rise_sum[j] - rise_sum[p])
    fall = (fall_sum[p] - fall_sum[j]) - s * (slope_sum[p] - slope_sum[j])
    total = np.where(j > p, rise, 0.0) + np.where(j < p, fall, 0.0)
    return np.maximum(total, 0.0)


def _row_norms(outputs: np.ndarray) -> np.ndarray:
    return np.max(np.abs(outputs), axis=-1) if outputs.shape[-1] else np.zeros(len(outputs))


def _estimates(steps: _Steps, outputs: np.ndarray, pivots: np.ndarray, eps: float):
    """[len(pivots), n] first-order float error of the output at each point."""
    weights = _row_norms(outputs[1:] - outputs[:-1])
    norms = _row_norms(outputs)
    sums = _activation_sums(steps, weights, pivots)
    return eps * (sums + norms[pivots][:, None] + norms[None, :])


def choose_pivot(steps: _Steps, outputs: np.ndarray, relative: bool) -> int:
    """The pivot P minimising the worst estimated float32 error over the points, measured
    against max(1e-5 |y_j|, 1e-6) when `relative` (numerical outputs), else absolutely.
    Geometric fallback: steps with midpoint above the centre of the range rise."""
    n = len(steps.points)
    mids = (steps.points[:-1] + steps.points[1:]) / 2
    geometric = int(np.sum(mids < (steps.points[0] + steps.points[-1]) / 2))
    if n == 1 or not np.any(outputs[1:] != outputs[:-1]):
        return geometric
    count = min(n, _MAX_PIVOTS)
    pivots = np.unique(np.concatenate([np.linspace(0, n - 1, count).round(), [geometric]]))
    pivots = pivots.astype(np.int64)
    budget = np.maximum(1e-5 * _row_norms(outputs), 1e-6) if relative else np.ones(n)
    eps = float(np.finfo(_F32).eps)
    chunks = np.array_split(pivots, len(pivots) * n // _CHUNK + 1)  # bounded memory
    worst = np.concatenate(
        [np.max(_estimates(steps, outputs, c, eps) / budget, axis=1) for c in chunks if len(c)]
    )
    return int(pivots[np.argmin(worst)])


def discretise(
    values: Iterable[float], outputs: np.ndarray | None = None, relative: bool = False
) -> Discretisation:
    """The step units for a finite set of numbers.

    With `outputs` ([n, d], rows in sorted order of the values), the pivot is chosen by
    `choose_pivot`; without, geometrically (rise above the centre of the range).
    """
    points, _ = sorted_points(values)
    steps = _steps(points)
    if outputs is None:
        outputs = np.zeros((len(points), 0))
    pivot = choose_pivot(steps, np.asarray(outputs, dtype=np.float64), relative)
    falling = np.arange(len(points) - 1) < pivot
    signs = np.where(falling, -1.0, 1.0)
    biases = np.where(falling, steps.bias_fall, steps.bias_rise)
    gates = 2 * (np.abs(biases) + steps.slopes * np.max(np.abs(points))) + 1.0
    return Discretisation(points, steps.slopes, signs, biases, gates)


def point_margins(values: Iterable[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(points, below, above): how far each sorted point may move down / up and keep its
    output, for either orientation of its steps (so for every pivot); inf at the ends."""
    points, _ = sorted_points(values)
    steps = _steps(points)
    below, above = np.full(len(points), math.inf), np.full(len(points), math.inf)
    for sign, bias in ((1.0, steps.bias_rise), (-1.0, steps.bias_fall)):
        first, second = -bias / (sign * steps.slopes), (1.0 - bias) / (sign * steps.slopes)
        lo, hi = np.minimum(first, second), np.maximum(first, second)
        below[1:] = np.minimum(below[1:], points[1:] - hi)
        above[:-1] = np.minimum(above[:-1], lo - points[:-1])
    return points, below, above


def input_tolerance(values: Iterable[float]) -> float:
    """Lower bound, valid for every pivot, on the distance an input may stray from its
    value and keep its output: the smallest ramp margin (~ a quarter of the min gap)."""
    _, below, above = point_margins(values)
    return float(min(np.min(below), np.min(above)))


def error_estimate(disc: Discretisation, outputs: np.ndarray, eps: float) -> np.ndarray:
    """[n] first-order float rounding error of the MLP's output at each point, for inputs
    near (not exactly at) the points, with unit roundoff `eps`; rows in sorted order."""
    steps = _Steps(
        disc.points,
        disc.slopes,
        np.where(disc.signs > 0, disc.biases, 0.0),
        np.where(disc.signs < 0, disc.biases, 0.0),
    )
    pivot = np.array([disc.num_falling])
    return _estimates(steps, np.asarray(outputs, dtype=np.float64), pivot, eps)[0]
