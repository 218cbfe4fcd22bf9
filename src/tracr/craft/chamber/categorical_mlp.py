"""MLPs for Map and SequenceMap on categorical (one-hot) inputs.

A categorical SOp with value v is the one-hot vector e_(name, v); None is the zero vector,
and so is every SOp at the BOS position. All blocks here are lookup tables with 0/1
hidden units, so they are exact for every one-hot input and write zero at BOS without
any gating.

Functions (`operation`) act on VALUES, not on basis directions. A categorical result of
None writes nothing (the zero vector, i.e. the value None). A numerical result must be a
finite number; None there raises ValueError, since a numerical SOp cannot encode None.

A numerical output space is one direction with value None, (name, None); categorical
spaces never contain a None-valued direction, so `map_categorical_mlp` and
`sequence_map_categorical_mlp` recognise a numerical output_space and write the number
(the `..._to_numerical_mlp` siblings say so explicitly).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import numpy as np

from tracr.craft import bases, transformers, vectorspace_fns
from tracr.craft.chamber import _common


def _lookup_snd(
    hidden: bases.VectorSpaceWithBasis,
    output_space: bases.VectorSpaceWithBasis,
    results: list,
    origins: list,
    numerical: bool,
    what: str,
) -> vectorspace_fns.Linear:
    """Second layer writing results[h] for hidden unit h (one-hot, or a number)."""
    if numerical:
        _common.single_direction(output_space, "output_space")
        values = [_common.as_number(r, what, o) for r, o in zip(results, origins)]
        return vectorspace_fns.Linear.from_index_arrays(
            hidden, output_space, np.arange(len(values)), np.zeros(len(values), int), values
        )
    index = _common.value_index(output_space, "output_space")
    cols = [_common.output_index(index, r, what, o) for r, o in zip(results, origins)]
    rows = [h for h, c in enumerate(cols) if c is not None]
    cols = [c for c in cols if c is not None]
    return vectorspace_fns.Linear.from_index_arrays(hidden, output_space, rows, cols, 1.0)


def _map_mlp(input_space, output_space, operation, hidden_name, numerical) -> transformers.MLP:
    """One hidden unit per distinct result (categorical), or one or two (numerical).

    Categorical: h_z = relu(sum_(v: operation(v) = z) x_v) for each non-None result z.
    For a one-hot x = e_v exactly one term is non-zero, so h_z = 1 for z = operation(v)
    and 0 for every other z: exact, and zero for the zero input (None, BOS).
    Numerical: h_+ = relu(sum_v operation(v) x_v) and h_- = relu(-sum_v operation(v) x_v),
    out = h_+ - h_-; for x = e_v the sum is the single term operation(v), so out is
    operation(v) exactly (as float32 stores it). A unit is left out when no result has
    its sign.
    """
    values = [d.value for d in input_space.basis]
    results = [operation(v) for v in values]
    n = len(values)
    if numerical:
        numbers = [_common.as_number(r, "Map", v) for r, v in zip(results, values)]
        _common.single_direction(output_space, "output_space")
        signs = [sign for sign in (1.0, -1.0) if any(sign * x > 0 for x in numbers)]
        hidden = bases.VectorSpaceWithBasis.from_values(
            hidden_name, ["+" if sign > 0 else "-" for sign in signs]
        )
        first = np.zeros((n, len(signs)))
        for col, sign in enumerate(signs):
            first[:, col] = sign * np.array(numbers)
        fst = vectorspace_fns.Linear(input_space, hidden, first)
        snd = vectorspace_fns.Linear(hidden, output_space, np.array(signs)[:, None])
        return transformers.MLP(fst, snd)
    groups: dict = {}
    for i, r in enumerate(results):
        if r is not None:
            groups.setdefault(r, []).append(i)
    hidden = bases.VectorSpaceWithBasis.from_values(hidden_name, list(range(len(groups))))
    rows = [i for members in groups.values() for i in members]
    cols = [unit for unit, members in enumerate(groups.values()) for _ in members]
    fst = vectorspace_fns.Linear.from_index_arrays(input_space, hidden, rows, cols, 1.0)
    origins = [values[members[0]] for members in groups.values()]
    snd = _lookup_snd(hidden, output_space, list(groups), origins, numerical, "Map")
    return transformers.MLP(fst, snd)


def map_categorical_mlp(
    input_space: bases.VectorSpaceWithBasis,
    output_space: bases.VectorSpaceWithBasis,
    operation: Callable[[Hashable], Hashable],
    hidden_name: bases.Name,
) -> transformers.MLP:
    """MLP computing y = operation(x) from one-hot x to one-hot y.

    Construction: one hidden unit per distinct non-None result z,
    h_z = relu(sum_(v: operation(v) = z) x_v) (= 1 iff operation(x) = z); output =
    sum_z h_z e_(out, z). For a one-hot input every h is exactly 0 or 1, so the output
    is exactly the one-hot of operation(x) (nothing where it is None); the zero input
    (None, or BOS) gives zero.

    Hidden directions: (hidden_name, k) for the k-th distinct result. A numerical
    output_space ((name, None)) gets the number operation(x) instead.
    Raises ValueError naming the value when a result is not in output_space.
    """
    numerical = _common.is_numerical_space(output_space)
    return _map_mlp(input_space, output_space, operation, hidden_name, numerical)


def map_categorical_to_numerical_mlp(
    input_space: bases.VectorSpaceWithBasis,
    output_space: bases.VectorSpaceWithBasis,
    operation: Callable[[Hashable], float],
    hidden_name: bases.Name,
) -> transformers.MLP:
    """MLP writing the number operation(x) for one-hot x into the 1-d output_space.

    Construction: h_+ = relu(sum_v operation(v) x_v), h_- = relu(-sum_v operation(v) x_v),
    output = h_+ - h_- (a unit is left out when no result has its sign). Exact for
    one-hot inputs (one non-zero term); zero for the zero input (BOS).
    Hidden directions: (hidden_name, "+"), (hidden_name, "-").
    """
    return _map_mlp(input_space, output_space, operation, hidden_name, numerical=True)


def _pair_layer(input1_space, input2_space, one_space, hidden_name):
    """First layer with h_(x, y) = relu(a_x + b_y - one) over all value pairs.

    When both inputs are the same space only the diagonal pairs (x, x) can fire
    (a_x + a_y - 1 = 0 for x != y), so only those units are built.
    Returns (fst, list of (x value, y value) per hidden unit).
    """
    one = _common.single_direction(one_space, "one_space")
    same = input1_space == input2_space
    if not same and not set(input1_space.basis).isdisjoint(input2_space.basis):
        raise ValueError("SequenceMap inputs must be the same space or disjoint spaces")
    if one in input1_space or one in input2_space:
        raise ValueError(f"the one direction {one} must not be an input of SequenceMap")
    input_space = bases.join_vector_spaces(input1_space, input2_space, one_space)
    idx1 = input_space.indices(input1_space.basis)
    idx2 = input_space.indices(input2_space.basis)
    n1, n2 = len(idx1), len(idx2)
    if same:
        rows1, rows2 = idx1, idx1
        pairs = [(d.value, d.value) for d in input1_space.basis]
    else:
        rows1, rows2 = np.repeat(idx1, n2), np.tile(idx2, n1)
        pairs = [(d1.value, d2.value) for d1 in input1_space.basis for d2 in input2_space.basis]
    num_hidden = len(pairs)
    hidden = bases.VectorSpaceWithBasis.from_values(hidden_name, pairs)
    units = np.arange(num_hidden)
    rows = np.concatenate([rows1, rows2, np.full(num_hidden, input_space.index(one))])
    cols = np.concatenate([units, units, units])
    vals = np.concatenate([np.ones(2 * num_hidden), -np.ones(num_hidden)])
    fst = vectorspace_fns.Linear.from_index_arrays(input_space, hidden, rows, cols, vals)
    return fst, pairs


def _result_groups(table: list[list], numerical: bool) -> list[tuple[int, object, list[int]]]:
    """(row, result, columns giving that result) for each row and distinct result."""
    units = []
    for i, row in enumerate(table):
        groups: dict = {}
        for j, result in enumerate(row):
            if result is None and not numerical:
                continue  # None writes nothing
            groups.setdefault(result, []).append(j)
        units.extend((i, result, cols) for result, cols in groups.items())
    return units


def _grouped_sequence_map(
    input1_space, input2_space, output_space, operation, one_space, hidden_name, numerical
) -> transformers.MLP:
    """SequenceMap of two distinct inputs with one unit per (x, result) pair.

    For each value x of one input and each result z that f(x, .) takes, the unit
    h_(x, z) = relu(a_x + sum_{y: f(x, y) = z} b_y - one) is exactly 1 when the inputs
    are x and some y with f(x, y) = z (b is one-hot, so the sum is 0 or 1), and 0
    otherwise, at BOS and for None inputs too. It writes z. This needs at most
    |X| * |Y| units (the pair table) and far fewer when f takes few values per x
    (comparisons, say). The input with the fewer units is enumerated.
    Hidden directions: (hidden_name, (x, z)), or (hidden_name, (z, y)) when the second
    input is enumerated.
    """
    one = _common.single_direction(one_space, "one_space")
    if not set(input1_space.basis).isdisjoint(input2_space.basis):
        raise ValueError("SequenceMap inputs must be the same space or disjoint spaces")
    if one in input1_space or one in input2_space:
        raise ValueError(f"the one direction {one} must not be an input of SequenceMap")
    xs = [d.value for d in input1_space.basis]
    ys = [d.value for d in input2_space.basis]
    table = [[operation(x, y) for y in ys] for x in xs]
    by_fst = _result_groups(table, numerical)
    by_snd = _result_groups([list(col) for col in zip(*table)], numerical) if xs else []
    enumerate_fst = len(by_fst) <= len(by_snd)
    units = by_fst if enumerate_fst else by_snd
    outer, inner = (input1_space, input2_space) if enumerate_fst else (input2_space, input1_space)
    input_space = bases.join_vector_spaces(input1_space, input2_space, one_space)
    outer_idx, inner_idx = input_space.indices(outer.basis), input_space.indices(inner.basis)
    names = [
        (outer.basis[i].value, z) if enumerate_fst else (z, outer.basis[i].value)
        for i, z, _ in units
    ]
    hidden = bases.VectorSpaceWithBasis.from_values(hidden_name, names)
    outer_at, inner_at, one_at = outer_idx.tolist(), inner_idx.tolist(), input_space.index(one)
    rows, cols, vals = [], [], []
    for unit, (i, _, members) in enumerate(units):
        rows += [outer_at[i], one_at, *[inner_at[m] for m in members]]
        cols += [unit] * (2 + len(members))
        vals += [1.0, -1.0] + [1.0] * len(members)
    fst = vectorspace_fns.Linear.from_index_arrays(input_space, hidden, rows, cols, vals)
    origins = [
        (outer.basis[i].value, inner.basis[m[0]].value)
        if enumerate_fst
        else (inner.basis[m[0]].value, outer.basis[i].value)
        for i, _, m in units
    ]
    results = [z for _, z, _ in units]
    snd = _lookup_snd(hidden, output_space, results, origins, numerical, "SequenceMap")
    return transformers.MLP(fst, snd)


def _sequence_map(
    input1_space, input2_space, output_space, operation, one_space, hidden_name, numerical
) -> transformers.MLP:
    if input1_space != input2_space:
        return _grouped_sequence_map(
            input1_space, input2_space, output_space, operation, one_space, hidden_name, numerical
        )
    fst, pairs = _pair_layer(input1_space, input2_space, one_space, hidden_name)
    results = [operation(x, y) for x, y in pairs]
    snd = _lookup_snd(fst.output_space, output_space, results, pairs, numerical, "SequenceMap")
    return transformers.MLP(fst, snd)


def sequence_map_categorical_mlp(
    input1_space: bases.VectorSpaceWithBasis,
    input2_space: bases.VectorSpaceWithBasis,
    output_space: bases.VectorSpaceWithBasis,
    operation: Callable[[Hashable, Hashable], Hashable],
    one_space: bases.VectorSpaceWithBasis,
    hidden_name: bases.Name,
) -> transformers.MLP:
    """MLP computing z = operation(x, y) from one-hot x, y to one-hot z.

    Construction: one hidden unit per value pair, h_(x, y) = relu(a_x + b_y - one), which
    is exactly 1 when the inputs are (x, y) and exactly 0 otherwise, including at BOS
    (a = b = 0, one = 1) and when either input is None. Output = sum h_(x, y)
    e_(out, operation(x, y)); a None result writes nothing.

    input1_space == input2_space (SequenceMap(f, s, s)) is supported: then only the units
    (x, x) exist, with weight 2 on a_x (h = relu(2 a_x - 1)), and the block computes
    operation(x, x). Hidden directions: (hidden_name, (x, y)).
    A numerical output_space ((name, None)) gets the number operation(x, y) instead, as
    `sequence_map_categorical_to_numerical_mlp` does.
    """
    numerical = _common.is_numerical_space(output_space)
    return _sequence_map(
        input1_space, input2_space, output_space, operation, one_space, hidden_name, numerical
    )


def sequence_map_categorical_to_numerical_mlp(
    input1_space: bases.VectorSpaceWithBasis,
    input2_space: bases.VectorSpaceWithBasis,
    output_space: bases.VectorSpaceWithBasis,
    operation: Callable[[Hashable, Hashable], float],
    one_space: bases.VectorSpaceWithBasis,
    hidden_name: bases.Name,
) -> transformers.MLP:
    """As `sequence_map_categorical_mlp`, writing the number operation(x, y) into the
    1-d output_space: output = sum h_(x, y) operation(x, y). Exact; zero at BOS."""
    return _sequence_map(
        input1_space, input2_space, output_space, operation, one_space, hidden_name, numerical=True
    )


def map_indicator_table(
    input_space: bases.VectorSpaceWithBasis,
    output_space: bases.VectorSpaceWithBasis,
    operation: Callable[[Hashable], Hashable],
    hidden_name: bases.Name,
) -> transformers.MLP:
    """The Map as a table with one indicator unit per input value: h_v = relu(x_v),
    output = sum_v h_v (the one-hot of operation(v), or the number). Wider than
    `map_categorical_mlp`, but every unit is an indicator, so `clean_indicators` can
    make it immune to noisy inputs. Values whose result is None (or 0 for a numerical
    output) get no unit. Hidden directions: (hidden_name, v)."""
    numerical = _common.is_numerical_space(output_space)
    rows, values, results = [], [], []
    for row, d in enumerate(input_space.basis):
        result = operation(d.value)
        if result is None or (numerical and _common.as_number(result, "Map", d.value) == 0):
            continue
        rows.append(row)
        values.append(d.value)
        results.append(result)
    hidden = bases.VectorSpaceWithBasis.from_values(hidden_name, values)
    fst = vectorspace_fns.Linear.from_index_arrays(
        input_space, hidden, np.array(rows, dtype=np.int64), np.arange(len(rows)), 1.0
    )
    snd = _lookup_snd(hidden, output_space, results, values, numerical, "Map")
    return transformers.MLP(fst, snd)


def clean_indicators(
    mlp: transformers.MLP, one_space: bases.VectorSpaceWithBasis
) -> transformers.MLP:
    """The same lookup table, made immune to noise in its one-hot inputs.

    Every hidden unit of the lookup MLPs above is an indicator h = relu(s), with s an
    integer <= 1 on ideal inputs (s = x_v, or a_x + b_y - 1) and h = [s = 1]. Inputs
    computed by earlier float32 layers are one-hots only up to an error; a plain
    indicator passes that error on (and a one-hot's off coordinates add up in the
    output). Here each unit becomes two,

        h+ = relu(2 s - 1/2),  h- = relu(2 s - 3/2),  h+ - h- = [s = 1]

    exactly for every s within 1/4 of an integer <= 1: at s = 1 + d both are on and
    differ by exactly 1; at s <= d both are off (exactly 0). The output layer writes
    W2_u (h+ - h-). So the output is the exact table entry whatever the input noise
    below 1/4, and the float32 rounding is that of terms of size ~2: the error does
    not carry on. Twice the hidden units; exact and zero at BOS like the original.
    Hidden directions: (name, (value, "+")) and (name, (value, "-")) for each original
    unit (name, value).
    """
    one = _common.single_direction(one_space, "one_space")
    in_space = bases.join_vector_spaces(mlp.fst.input_space, one_space)
    rows = in_space.indices(mlp.fst.input_space.basis)
    w1 = np.zeros((in_space.num_dims, mlp.hidden_space.num_dims))
    w1[rows] = 2.0 * mlp.fst.matrix
    iu = in_space.index(one)
    up, down = w1.copy(), w1.copy()
    up[iu] -= 0.5
    down[iu] -= 1.5
    names = [
        bases.BasisDirection(d.name, (d.value, sign))
        for d in mlp.hidden_space.basis
        for sign in ("+", "-")
    ]
    hidden = bases.VectorSpaceWithBasis(names)
    fst = np.empty((in_space.num_dims, 2 * mlp.hidden_space.num_dims))
    fst[:, 0::2], fst[:, 1::2] = up, down
    snd = np.empty((2 * mlp.hidden_space.num_dims, mlp.snd.output_space.num_dims))
    snd[0::2], snd[1::2] = mlp.snd.matrix, -mlp.snd.matrix
    return transformers.MLP(
        vectorspace_fns.Linear(in_space, hidden, fst),
        vectorspace_fns.Linear(hidden, mlp.snd.output_space, snd),
    )
