"""MLPs for a categorical SequenceMap whose function splits into per-input parts.

When z = f(x, y) = u(x) + v(y) for numbers u(x), v(y) (x - y, x + y, anything affine in
numbers attached to the categorical values), the lookup table of
`categorical_mlp.sequence_map_categorical_mlp` needs one hidden unit per (x, result)
pair, |X| * |Y| for x - y. The blocks here need about one or two units per output value,
|Z| <= |X| + |Y| - 1: linear in the value sets. Each is one MLP, like the table.

Scale everything by S = 2^q, the smallest power of two (q <= MAX_SCALE_BITS) that makes
every u(x), v(y) and output value an integer: U(x) = S u(x), V(y) = S v(y) and
Z_1 < ... < Z_m the scaled output values. With a, b the one-hot inputs and `one` the
constant direction, every unit reads a linear part of the inputs,

    p = sum_x U(x) a_x + sum_y V(y) b_y,      = U(x) + V(y) = Z for one-hot inputs,

against a threshold, and the output one-hot is a telescoping sum of steps "Z > Z_k".

The plain block (`build`)
-------------------------
Shift U, V so that min U = min V = 0. The hidden units are

    h_0   = relu(sum_x a_x + sum_y b_y - one)
    r_k   = relu(p_k),  r'_k = relu(p_k - 1),   k = 1 .. m - 1, where
    p_k   = sum_x (U(x) + G) a_x + sum_y (V(y) + G) b_y - (Z_k + 2 G) one

and the output is  out_(Z_1) = h_0 - (r_1 - r'_1),  out_(Z_j) = (r_(j-1) - r'_(j-1)) -
(r_j - r'_j),  out_(Z_m) = r_(m-1) - r'_(m-1). (With unit gaps Z_(k+1) = Z_k + 1 the
steps share units: m "knots" relu(p - c) and tents out_(Z_j) = r_(Z_j - 1) - 2 r_(Z_j) +
r_(Z_j + 1), m units in all.)

Why it is right. With both inputs present (x and y one-hot) the G terms cancel and p_k =
Z_j - Z_k, where Z_j is the (scaled) result. Integers: p_k >= 1 for k < j and p_k <= 0
for k >= j, so the step r_k - r'_k = clip(p_k, 0, 1) is exactly 1 for k < j and exactly 0
for k >= j, and h_0 = 1: the output telescopes to the one-hot of Z_j. With an input
missing (the value None, or the BOS position, where every categorical SOp is the zero
vector) p_k loses at least G, the gate, chosen so that p_k <= 0 for every k:
G >= max(max V - Z_1, max U - Z_1, -Z_1 / 2). Then every step is 0 and h_0 = relu(at most
1 - 1) = 0: nothing is written, as for a None result.

Floating point. Every weight and bias is an integer, and for one-hot inputs every
pre-activation is a sum of three of them; every hidden value is an integer and every
output a sum of at most four of them with weights +-1. `build` refuses (returns None)
unless all of these magnitudes stay below 2^22, so the block is exact in any summation
order. Its units sit on their kinks (p_k = 0 and p_k = 1 are ideal values), so an input
that deviates from its one-hot moves the output by the deviation times the weights (up
to 2 max(U + G, V + G) per unit): the compiler uses this block where its proven bound
(craft/rounding.py) says the output stays clean, which is certain for exact inputs.

The robust block (`build_robust`)
---------------------------------
For inputs computed by earlier float32 layers (a one-hot off by rounding noise). Centre
the parts, A(x) = U(x) - c_U and B(y) = V(y) - c_V (c the integer middle of each range),
and put the thresholds between consecutive values, t_k = (Z_k + Z_(k+1)) / 2 - c_U - c_V.
For ideal inputs

    q_k = sum_x A(x) a_x + sum_y B(y) b_y - t_k one = Z - (Z_k + Z_(k+1)) / 2,

a multiple of 1/2 and at least 1/2 away from 0 (the Z are distinct integers). Each step k
is a pair of units of steepness s = STEEPNESS and orientation sigma_k = +1 (rising) or -1
(falling),

    r_k = relu(sigma_k s q_k + 1/2 - gates),   r'_k = relu(sigma_k s q_k - 1/2 - gates),
    r_k - r'_k = clip(sigma_k s q_k + 1/2, 0, 1),

exactly 1 for sigma_k q_k >= 1/(2 s) and exactly 0 for sigma_k q_k <= -1/(2 s): every
pre-activation is at least (s - 1)/2 away from 0 at every ideal input. A rising pair is
step_k = [Z > Z_k]; a falling pair is 1 - step_k. With a presence unit P (1 at every
position where both inputs hold a value, else 0), Delta_k = e(Z_(k+1)) - e(Z_k) and
C = e(Z_1) + sum_(falling k) Delta_k, the output

    out = C P + sum_(rising k) Delta_k (r_k - r'_k) - sum_(falling k) Delta_k (r_k - r'_k)

telescopes to e(Z). Steps below the middle of the output range fall and the others rise,
so at most half of them are active (on) at any input, which halves the rounding the
output adds up.

Gates. At BOS every unit gets -G_bos bos, G_bos = s (2 max|A| + 2 max|B| + max|t| +
|A_bos|) + 2 (A_bos: the linear part of a number reading at BOS, below), so it is off
even for inputs of mass up to 2 there. (Values of the first input that meet no feasible
value of the second never occur and get weight 0.) An input that can be None at other
positions (its zero vector) also gates through its weights: + G_x (sum_x a_x - 1), with
G_x = s (max|A| + max|B| + max|t|) + 2, is 0 when it holds a value and pushes every unit
below -1 when it does not. P is relu(one - bos) (exact) when no input can be None, and
otherwise the cleaned indicator relu(2 sigma - 1/2) - relu(2 sigma - 3/2) of
sigma = (sum of the masses of the inputs that can be None) - (their count - 1) - (their
count) bos, which is 1, <= 0 or <= -1 for all, some or none of them present.

Noise: the bound. Let an ideal input carry per-coordinate deviations e (the one-hots'
off coordinates and the hot one). In exact arithmetic q_k moves by at most
d_k = sum_x |A(x)| e_(a,x) + sum_y |B(y)| e_(b,y) (plus G_x times the mass deviation of a
gated input), and float32 rounds the pre-activation by at most rho_k, the summation
bound (*) of craft/rounding.py. If

    s d_k + rho_k < s |q_k| - 1/2    (>= (s - 1)/2)

for every unit, each unit is surely on or surely off: a saturated pair differs by
exactly 1 or 0 in exact arithmetic, whatever the deviation, so the output is the ideal
one-hot up to rounding alone: the first-layer rounding of the active units (|W2| = 1, at
most two pairs per output coordinate) and the second dot product's rounding (*). The
input noise is not passed on; only the rounding of terms of size up to s (max|A| +
max|B| + max|t|) is. The compiler evaluates exactly this, unit by unit, with
`rounding.mlp_bound` (which refuses a unit that may switch and credits the pairs'
cancellation) on every ideal input with the bounds of the inputs. Sums of one-hot
coordinates read with weights of size ~|X| add up the coordinates' errors; d_k is
where that shows.

Reading an input as a number. `build_robust` can read the first input through numeric
directions instead of its one-hot (`NumberReading`): at every non-BOS position its value
is x = sum_i w_i n_i + offset. Where U is affine in x (U(x) = alpha x + beta on the
value set) the linear part A(x) is alpha (sum_i w_i n_i + offset) + beta - c_U. The same
bound holds with the deviations of the n_i.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Hashable, Sequence

import numpy as np

from tracr import caches
from tracr.craft import bases, transformers, vectorspace_fns
from tracr.craft.chamber import _common

#: The largest q tried for the scale 2^q that makes the parts integers.
MAX_SCALE_BITS = 10
#: Every weight, pre-activation and partial sum stays below this (float32-exact).
EXACT_LIMIT = 2**22
#: s of the robust block: each unit's pre-activation is at least (s - 1)/2 from 0 at an
#: ideal input, so the steps absorb a move of q_k by up to 1/2 - 1/(2 s).
STEEPNESS = 2


@dataclasses.dataclass(frozen=True)
class NumberReading:
    """The first input read as a number: x = sum_i weights[i] n_i + offset at every
    non-BOS position, n_i the directions of `space`; `at_bos` is the ideal value of
    sum_i weights[i] n_i + offset at BOS."""

    space: bases.VectorSpaceWithBasis
    weights: tuple[float, ...]
    offset: float
    at_bos: float

    def __post_init__(self):
        if len(self.weights) != self.space.num_dims:
            raise ValueError(
                f"a NumberReading needs one weight per direction, got {len(self.weights)} "
                f"for {self.space.num_dims}"
            )


def separable_parts(
    xs: Sequence[Hashable],
    ys: Sequence[Hashable],
    operation: Callable,
    feasible: Callable[[Hashable, Hashable], bool] | None = None,
) -> tuple[int, list[int], list[int], dict[int, Hashable], int] | None:
    """(q, U, V, scaled result -> result, table width) with S f(x, y) = U(x) + V(y)
    exactly on every feasible pair, S = 2^q.

    feasible(x, y): whether the pair can occur (default: every pair); the others are
    neither evaluated nor constrained. None when f is not of that form: a result that
    is not a finite real number (or is a bool), no q <= MAX_SCALE_BITS making every
    result an integer below EXACT_LIMIT, or a table that does not split. The table
    width is that of the lookup table (`categorical_mlp`) for the same pairs.
    """
    if not xs or not ys:
        return None
    pairs = [
        (i, j)
        for i, x in enumerate(xs)
        for j, y in enumerate(ys)
        if feasible is None or feasible(x, y)
    ]
    if not pairs:
        return None
    flat = [operation(xs[i], ys[j]) for i, j in pairs]
    for r in flat:
        if isinstance(r, bool) or not isinstance(r, numbers.Real) or not math.isfinite(r):
            return None
    for q in range(MAX_SCALE_BITS + 1):
        scaled = [r * 2**q for r in flat]  # exact: a power-of-two scale
        if all(float(s).is_integer() and abs(s) < EXACT_LIMIT for s in scaled):
            break
    else:
        return None
    ints = [int(s) for s in scaled]
    # Solve U(x) + V(y) = ints on the pairs, one connected component at a time.
    by_x: dict[int, list[tuple[int, int]]] = {}
    by_y: dict[int, list[tuple[int, int]]] = {}
    for (i, j), t in zip(pairs, ints):
        by_x.setdefault(i, []).append((j, t))
        by_y.setdefault(j, []).append((i, t))
    u: dict[int, int] = {}
    v: dict[int, int] = {}
    for start in by_x:
        if start in u:
            continue
        u[start] = 0
        stack = [("x", start)]
        while stack:
            side, k = stack.pop()
            if side == "x":
                for j, t in by_x[k]:
                    if j not in v:
                        v[j] = t - u[k]
                        stack.append(("y", j))
            else:
                for i, t in by_y[k]:
                    if i not in u:
                        u[i] = t - v[k]
                        stack.append(("x", i))
    if any(u[i] + v[j] != t for (i, j), t in zip(pairs, ints)):
        return None
    big_u = [u.get(i, 0) for i in range(len(xs))]
    big_v = [v.get(j, 0) for j in range(len(ys))]
    results = {t: r for t, r in zip(ints, flat)}
    table = min(
        sum(len({t for _, t in row}) for row in by_x.values()),
        sum(len({t for _, t in col}) for col in by_y.values()),
    )
    return q, big_u, big_v, results, table


def width(num_output_values: int) -> int:
    """Hidden units of the plain block for an output with that many values (at most)."""
    return 2 * num_output_values - 1


def robust_width(num_output_values: int, may_be_none: bool = False) -> int:
    """Hidden units of the robust block: two per step and one presence unit (two when
    an input can be None)."""
    return 2 * (num_output_values - 1) + (2 if may_be_none else 1)


@dataclasses.dataclass(frozen=True)
class _Scaled:
    """The integer form of a separable SequenceMap (module docstring)."""

    u: list[int]  # U(x) per input-1 value
    v: list[int]  # V(y) per input-2 value
    used_x: list[bool]  # whether the input-1 value meets a feasible input-2 value
    z: list[int]  # Z_1 < ... < Z_m
    out_col: list[int]  # output column of Z_j
    table: int  # width of the lookup table for the same pairs


def _scaled(input1_space, input2_space, output_space, operation, feasible) -> _Scaled | None:
    """The integer parts, or None where the function does not split (ValueError where a
    result is not in output_space).

    `build` and `build_robust` of one SequenceMap (and the compiler's alternatives) pass
    the very same spaces and functions: the last answer is kept for those (compared by
    identity, so exactly the same question), and the table is evaluated once."""
    args = (input1_space, input2_space, output_space, operation, feasible)
    last = _last_scaled[0]
    if last is not None and all(a is b for a, b in zip(last[0], args)):
        return last[1]
    scaled = _scaled_of(*args)
    _last_scaled[0] = (args, scaled)
    return scaled


_last_scaled: list = [None]  # [(the arguments, their _Scaled)] of the last `_scaled` call
caches.register(lambda: _last_scaled.__setitem__(0, None))


def _scaled_of(input1_space, input2_space, output_space, operation, feasible) -> _Scaled | None:
    """`_scaled`, worked out."""
    if input1_space == input2_space or _common.is_numerical_space(output_space):
        return None
    if not set(input1_space.basis).isdisjoint(input2_space.basis):
        raise ValueError("SequenceMap inputs must be the same space or disjoint spaces")
    index = _common.value_index(output_space, "output_space")
    xs = [d.value for d in input1_space.basis]
    ys = [d.value for d in input2_space.basis]
    parts = separable_parts(xs, ys, operation, feasible)
    if parts is None:
        return None
    q, u, v, results, table = parts
    for scaled, result in results.items():
        _common.output_index(index, result, "SequenceMap", scaled / 2**q)
    out_values = [val for val in index if isinstance(val, numbers.Real)]
    if len(out_values) != len(index) or any(isinstance(val, bool) for val in index):
        return None
    z_all = [val * 2**q for val in out_values]
    if not all(float(z).is_integer() and abs(z) < EXACT_LIMIT for z in z_all):
        return None
    order = sorted(range(len(z_all)), key=lambda i: z_all[i])
    z = [int(z_all[i]) for i in order]
    used = [feasible is None or any(feasible(x, y) for y in ys) for x in xs]
    out_col = [index[out_values[i]] for i in order]
    return _Scaled(u=u, v=v, used_x=used, z=z, out_col=out_col, table=table)


def build(
    input1_space: bases.VectorSpaceWithBasis,
    input2_space: bases.VectorSpaceWithBasis,
    output_space: bases.VectorSpaceWithBasis,
    operation: Callable[[Hashable, Hashable], Hashable],
    one_space: bases.VectorSpaceWithBasis,
    hidden_name: bases.Name,
    feasible: Callable[[Hashable, Hashable], bool] | None = None,
) -> transformers.MLP | None:
    """The plain block of the module docstring, or None where it does not apply.

    Applies to two disjoint categorical input spaces and a categorical output space
    whose values are numbers, when operation(x, y) = u(x) + v(y) (see
    `separable_parts`), every weight stays float32-exact and the block is narrower than
    the lookup table of `categorical_mlp.sequence_map_categorical_mlp`.
    feasible(x, y): the pairs that can occur (default all); the block is exact on
    those, and on the others writes something that no input ever sees.
    Hidden directions: (hidden_name, "present") and (hidden_name, (k, 0)),
    (hidden_name, (k, 1)) for the two units of the k-th step, or (hidden_name, ("knot",
    c)) with unit gaps.
    Raises ValueError, as the table builder does, when a result is not in output_space.
    """
    one = _common.single_direction(one_space, "one_space")
    if one in input1_space or one in input2_space:
        raise ValueError(f"the one direction {one} must not be an input of SequenceMap")
    scaled = _scaled(input1_space, input2_space, output_space, operation, feasible)
    if scaled is None:
        return None
    shift = min(scaled.u) + min(scaled.v)
    z = [zk - shift for zk in scaled.z]  # Z_1 < ... < Z_m
    big_u = [x - min(scaled.u) for x in scaled.u]
    big_v = [y - min(scaled.v) for y in scaled.v]
    m = len(z)
    unit_gaps = all(z[k + 1] - z[k] == 1 for k in range(m - 1))
    if (m if unit_gaps else width(m)) >= scaled.table:
        return None
    lowest = z[0] - 1 if unit_gaps else z[0]  # the smallest offset a unit subtracts
    gate = max(max(big_v) - lowest, max(big_u) - lowest, math.ceil(-lowest / 2), 0)
    weight_u = max(big_u) + gate
    weight_v = max(big_v) + gate
    bias = max(abs(zk + 2 * gate) for zk in (lowest, z[-1]))
    if weight_u + weight_v + bias + 1 >= EXACT_LIMIT:
        return None
    input_space = bases.join_vector_spaces(input1_space, input2_space, one_space)
    idx1, idx2 = input_space.indices(input1_space.basis), input_space.indices(input2_space.basis)
    one_idx = input_space.index(one)
    out_col = scaled.out_col
    if unit_gaps:
        # knots c = Z_1 - 1, Z_1, ..., Z_(m-1): r_c = relu(p_c), tents out of them
        knots = [z[0] - 1, *z[:-1]]
        names = [("knot", c) for c in knots]
        steps = np.arange(m)
        offsets = [(steps, np.array(knots, dtype=float))]
    else:
        names = ["present"] + [(k, half) for k in range(m - 1) for half in (0, 1)]
        steps = 1 + 2 * np.arange(m - 1)  # column of r_k; r'_k is the next one
        offsets = [(steps, np.array(z[:-1], float)), (steps + 1, np.array(z[:-1], float) + 1)]
    hidden = bases.VectorSpaceWithBasis.from_values(hidden_name, names)
    first = np.zeros((input_space.num_dims, hidden.num_dims))
    for cols, offset in offsets:
        first[np.ix_(idx1, cols)] = (np.array(big_u) + gate)[:, None]
        first[np.ix_(idx2, cols)] = (np.array(big_v) + gate)[:, None]
        first[one_idx, cols] = -(offset + 2 * gate)
    second = np.zeros((hidden.num_dims, output_space.num_dims))
    if unit_gaps:
        # out_(Z_j) = r_(Z_j - 1) - 2 r_(Z_j) + r_(Z_j + 1), dropping the knots >= Z_m
        # (p never exceeds Z_m there, so those units would always be 0)
        for j in range(m):
            for unit, coef in ((j, 1.0), (j + 1, -2.0), (j + 2, 1.0)):
                if unit < m:
                    second[unit, out_col[j]] += coef
    else:
        first[idx1, 0] = 1.0
        first[idx2, 0] = 1.0
        first[one_idx, 0] = -1.0
        second[0, out_col[0]] = 1.0
        for k in range(m - 1):  # step k (between Z_k and Z_(k+1)) moves 1 from Z_k up
            for row, sign in ((steps[k], 1.0), (steps[k] + 1, -1.0)):
                second[row, out_col[k + 1]] += sign
                second[row, out_col[k]] -= sign
    fst = vectorspace_fns.Linear(input_space, hidden, first)
    snd = vectorspace_fns.Linear(hidden, output_space, second)
    return transformers.MLP(fst, snd)


def _affine(xs: Sequence[Hashable], u: Sequence[int]) -> tuple[float, float] | None:
    """(alpha, beta) with u[i] = alpha xs[i] + beta exactly for every value, or None."""
    if not all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in xs):
        return None
    pairs = sorted({(float(x), float(ui)) for x, ui in zip(xs, u)})
    if len(pairs) < 2:
        return (0.0, pairs[0][1]) if pairs else None
    (x0, u0), (x1, u1) = pairs[0], pairs[-1]
    alpha = (u1 - u0) / (x1 - x0)
    beta = u0 - alpha * x0
    if all(alpha * x + beta == ux for x, ux in pairs):
        return alpha, beta
    return None


def build_robust(
    input1_space: bases.VectorSpaceWithBasis,
    input2_space: bases.VectorSpaceWithBasis,
    output_space: bases.VectorSpaceWithBasis,
    operation: Callable[[Hashable, Hashable], Hashable],
    one_space: bases.VectorSpaceWithBasis,
    bos_space: bases.VectorSpaceWithBasis,
    hidden_name: bases.Name,
    feasible: Callable[[Hashable, Hashable], bool] | None = None,
    may_be_none: tuple[bool, bool] = (True, True),
    number1: NumberReading | None = None,
) -> transformers.MLP | None:
    """The robust block of the module docstring, or None where it does not apply.

    As `build` (same arguments and conditions), for inputs that may deviate from their
    one-hots. may_be_none: whether each input can be None (its zero vector) at a
    position other than BOS; those are gated through their weights, the others only
    through the bos direction. number1: read the first input as a number instead of its
    one-hot (it cannot be None then); None where U is not affine in its values.
    Hidden directions: (hidden_name, "present") (or ("present", 0 / 1) when an input can
    be None) and (hidden_name, (k, 0 / 1)) for the units of the k-th step.
    """
    bos, one = _common.check_aux_spaces(bos_space, one_space, input1_space, input2_space)
    scaled = _scaled(input1_space, input2_space, output_space, operation, feasible)
    if scaled is None:
        return None
    m, s = len(scaled.z), STEEPNESS
    gated = (may_be_none[0] and number1 is None, bool(may_be_none[1]))
    if robust_width(m, any(gated)) >= scaled.table:
        return None
    used = np.array(scaled.used_x)
    u_used = np.array(scaled.u, float)[used]
    c_u = (int(u_used.min()) + int(u_used.max())) // 2
    c_v = (min(scaled.v) + max(scaled.v)) // 2
    big_a = (np.array(scaled.u, float) - c_u) * used  # values that never occur: weight 0
    big_b = np.array(scaled.v, float) - c_v
    z = np.array(scaled.z, float)
    thresholds = (z[:-1] + z[1:]) / 2 - c_u - c_v  # [m - 1]
    rising = thresholds >= (thresholds[0] + thresholds[-1]) / 2 if m > 1 else np.zeros(0, bool)
    sigma = np.where(rising, 1.0, -1.0)
    xs = [d.value for d, ok in zip(input1_space.basis, used) if ok]
    fit = None if number1 is None else _affine(xs, u_used)
    if number1 is not None and fit is None:
        return None
    at_bos = 0.0 if fit is None else abs(fit[0] * number1.at_bos + fit[1] - c_u)
    reach = float(np.max(np.abs(big_a)) + np.max(np.abs(big_b)))
    t_max = float(np.max(np.abs(thresholds), initial=0.0))
    gate_bos = s * (2 * reach + t_max + at_bos) + 2
    gate_in = s * (reach + t_max) + 2
    if s * (reach + t_max) + gate_bos + 2 * gate_in >= EXACT_LIMIT:
        return None

    reads1 = input1_space if number1 is None else number1.space
    input_space = bases.join_vector_spaces(reads1, input2_space, one_space, bos_space)
    idx1, idx2 = input_space.indices(reads1.basis), input_space.indices(input2_space.basis)
    i_one, i_bos = input_space.index(one), input_space.index(bos)
    presence = ["present"] if not any(gated) else [("present", 0), ("present", 1)]
    names = presence + [(k, half) for k in range(m - 1) for half in (0, 1)]
    hidden = bases.VectorSpaceWithBasis.from_values(hidden_name, names)
    first = np.zeros((input_space.num_dims, hidden.num_dims))
    cols = len(presence) + 2 * np.arange(m - 1)  # column of r_k; r'_k is the next one
    # q_k's weights, then sigma_k s q_k + 1/2 in column r_k and - 1/2 in r'_k.
    q = np.zeros((input_space.num_dims, m - 1))
    if fit is None:
        q[idx1] = big_a[:, None]
    else:
        alpha, beta = fit
        q[idx1] = alpha * np.array(number1.weights, float)[:, None]
        q[i_one] += alpha * number1.offset + beta - c_u
    q[idx2] = big_b[:, None]
    q[i_one] -= thresholds
    for half, bias in ((0, 0.5), (1, -0.5)):
        first[:, cols + half] = s * sigma * q
        first[i_one, cols + half] += bias
        first[i_bos, cols + half] = -gate_bos
        for idx, gate in ((idx1, gated[0]), (idx2, gated[1])):
            if gate:
                first[np.ix_(idx, cols + half)] += gate_in
                first[i_one, cols + half] -= gate_in
    if not any(gated):
        first[i_one, 0], first[i_bos, 0] = 1.0, -1.0
    else:
        # sigma = (masses of the gated inputs) - (count - 1) - count bos
        count = sum(gated)
        for col, bias in ((0, -0.5), (1, -1.5)):
            for idx, gate in ((idx1, gated[0]), (idx2, gated[1])):
                if gate:
                    first[idx, col] = 2.0
            first[i_one, col] = -2.0 * (count - 1) + bias
            first[i_bos, col] = -2.0 * count
    second = np.zeros((hidden.num_dims, output_space.num_dims))
    constant = np.zeros(output_space.num_dims)
    constant[scaled.out_col[0]] = 1.0
    for k in range(m - 1):
        delta = np.zeros(output_space.num_dims)
        delta[scaled.out_col[k + 1]], delta[scaled.out_col[k]] = 1.0, -1.0
        if not rising[k]:
            constant += delta
        second[cols[k]], second[cols[k] + 1] = sigma[k] * delta, -sigma[k] * delta
    second[0] = constant
    if any(gated):
        second[1] = -constant
    fst = vectorspace_fns.Linear(input_space, hidden, first)
    snd = vectorspace_fns.Linear(hidden, output_space, second)
    return transformers.MLP(fst, snd)
