"""An MLP for a categorical SequenceMap whose function splits into per-input parts.

When z = f(x, y) = u(x) + v(y) for numbers u(x), v(y) (x - y, x + y, anything affine in
numbers attached to the categorical values), the lookup table of
`categorical_mlp.sequence_map_categorical_mlp` needs one hidden unit per (x, result)
pair, |X| * |Y| for x - y. This block needs 2 |Z| - 1, with |Z| <= |X| + |Y| - 1 output
values: linear in the value sets. It is one MLP, like the table, and exact.

The construction
----------------
Scale everything by S = 2^q, the smallest power of two (q <= MAX_SCALE_BITS) that makes
every u(x), v(y) and output value an integer: U(x) = S u(x), V(y) = S v(y) and
Z_1 < ... < Z_m the scaled output values (shifted so that min U = min V = 0). With a,
b the one-hot inputs and `one` the constant direction, the hidden units are

    h_0   = relu(sum_x a_x + sum_y b_y - one)
    r_k   = relu(p_k),  r'_k = relu(p_k - 1),   k = 1 .. m - 1, where
    p_k   = sum_x (U(x) + G) a_x + sum_y (V(y) + G) b_y - (Z_k + 2 G) one

and the output is  out_(Z_1) = h_0 - (r_1 - r'_1),  out_(Z_j) = (r_(j-1) - r'_(j-1)) -
(r_j - r'_j),  out_(Z_m) = r_(m-1) - r'_(m-1).

Why it is right. With both inputs present (x and y one-hot) the G terms cancel and p_k =
U(x) + V(y) - Z_k = Z_j - Z_k, where Z_j is the (scaled) result. Integers: p_k >= 1 for
k < j and p_k <= 0 for k >= j, so the step r_k - r'_k = clip(p_k, 0, 1) is exactly 1 for
k < j and exactly 0 for k >= j, and h_0 = 1: the output telescopes to the one-hot of
Z_j. With an input missing (the value None, or the BOS position, where every
categorical SOp is the zero vector) p_k loses at least G, the gate, chosen so that
p_k <= 0 for every k: G >= max(max V - Z_1, max U - Z_1, -Z_1 / 2). Then every step is 0
and h_0 = relu(at most 1 - 1) = 0: nothing is written, as for a None result.

Floating point. Every weight and bias is an integer, and for one-hot inputs every
pre-activation is a sum of three of them (one per input, one bias); every hidden value
is an integer and every output a sum of at most four of them with weights +-1.
`build` refuses (returns None) unless all of these magnitudes stay below 2^22, so
float32 represents every term and every partial sum exactly: the block is exact in any
summation order. An input that deviates from a one-hot by at most d in l1 norm (softmax
leakage of an upstream head, say) moves a pre-activation by at most d * (max weight on
that input), and an output by at most 4 times that; `build` also refuses when that
exceeds OUTPUT_ERROR for d = INPUT_ERROR.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Hashable, Sequence

import numpy as np

from tracr.craft import bases, transformers, vectorspace_fns
from tracr.craft.chamber import _common

#: The largest q tried for the scale 2^q that makes the parts integers.
MAX_SCALE_BITS = 10
#: Every weight, pre-activation and partial sum stays below this (float32-exact).
EXACT_LIMIT = 2**22
#: l1 deviation from a one-hot vector assumed for each input ...
INPUT_ERROR = 1e-6
#: ... and the largest output deviation from a one-hot vector accepted for it.
OUTPUT_ERROR = 4e-3


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
    """Hidden units of the block for an output with that many values (at most)."""
    return 2 * num_output_values - 1


def build(
    input1_space: bases.VectorSpaceWithBasis,
    input2_space: bases.VectorSpaceWithBasis,
    output_space: bases.VectorSpaceWithBasis,
    operation: Callable[[Hashable, Hashable], Hashable],
    one_space: bases.VectorSpaceWithBasis,
    hidden_name: bases.Name,
    feasible: Callable[[Hashable, Hashable], bool] | None = None,
) -> transformers.MLP | None:
    """The MLP described in the module docstring, or None where it does not apply.

    Applies to two disjoint categorical input spaces and a categorical output space
    whose values are numbers, when operation(x, y) = u(x) + v(y) (see
    `separable_parts`), the exactness conditions hold and the block is narrower than
    the lookup table of `categorical_mlp.sequence_map_categorical_mlp`.
    feasible(x, y): the pairs that can occur (default all); the block is exact on
    those, and on the others writes something that no input ever sees.
    Hidden directions: (hidden_name, "present") and (hidden_name, (k, 0)),
    (hidden_name, (k, 1)) for the two units of the k-th step.
    Raises ValueError, as the table builder does, when a result is not in output_space.
    """
    one = _common.single_direction(one_space, "one_space")
    if input1_space == input2_space or _common.is_numerical_space(output_space):
        return None
    if not set(input1_space.basis).isdisjoint(input2_space.basis):
        raise ValueError("SequenceMap inputs must be the same space or disjoint spaces")
    if one in input1_space or one in input2_space:
        raise ValueError(f"the one direction {one} must not be an input of SequenceMap")
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
    if not all(float(z).is_integer() for z in z_all):
        return None
    order = sorted(range(len(z_all)), key=lambda i: z_all[i])
    shift = min(u) + min(v)
    z = [int(z_all[i]) - shift for i in order]  # Z_1 < ... < Z_m
    big_u = [x - min(u) for x in u]
    big_v = [y - min(v) for y in v]
    m = len(z)
    unit_gaps = all(z[k + 1] - z[k] == 1 for k in range(m - 1))
    if (m if unit_gaps else width(m)) >= table:
        return None
    lowest = z[0] - 1 if unit_gaps else z[0]  # the smallest offset a unit subtracts
    gate = max(max(big_v) - lowest, max(big_u) - lowest, math.ceil(-lowest / 2), 0)
    weight_u = max(big_u) + gate
    weight_v = max(big_v) + gate
    bias = max(abs(zk + 2 * gate) for zk in (lowest, z[-1]))
    if weight_u + weight_v + bias + 1 >= EXACT_LIMIT:
        return None
    if 4 * INPUT_ERROR * max(weight_u, weight_v, 1) > OUTPUT_ERROR:
        return None
    input_space = bases.join_vector_spaces(input1_space, input2_space, one_space)
    idx1, idx2 = input_space.indices(input1_space.basis), input_space.indices(input2_space.basis)
    one_idx = input_space.index(one)
    out_col = [index[out_values[i]] for i in order]  # output column of Z_j
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
