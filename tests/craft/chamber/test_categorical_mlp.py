"""categorical_mlp: every input value (and BOS) through craft, float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest

from tests.craft import blocks
from tracr.craft import bases
from tracr.craft.chamber import categorical_mlp

D = bases.BasisDirection


def _values_space(name, values):
    return bases.VectorSpaceWithBasis.from_values(name, values)


def _run_map(mlp, input_space, values):
    """Outputs for a BOS row then one row per value (None = the zero vector)."""
    residual = blocks.residual_with(mlp)
    name = input_space.basis[0].name
    rows = [{D(name, v): 1.0} if v is not None else {} for v in values]
    return residual, blocks.run_all(mlp, blocks.rows_with_bos(residual, rows), residual)


def _expected_cols(output_space, results):
    index = {d.value: i for i, d in enumerate(output_space.basis)}
    return np.array([-1 if r is None else index[r] for r in results])


@pytest.mark.parametrize("num_values", [5, 1000])
def test_map_categorical_is_exact_on_every_value(num_values):
    values = list(range(num_values))
    inp = _values_space("x", values)
    f = lambda v: None if v % 7 == 3 else v % 37  # noqa: E731
    out = _values_space("y", range(37))
    mlp = categorical_mlp.map_categorical_mlp(inp, out, f, "h")
    # one unit per distinct non-None result
    assert mlp.hidden_space.num_dims == len({f(v) for v in values} - {None})
    residual, outs = _run_map(mlp, inp, values + [None])
    expected = _expected_cols(out, [None] + [f(v) for v in values] + [None])
    for result in outs.values():
        blocks.assert_one_hot(result[:, residual.indices(out.basis)], expected)
        assert np.all(result[:, residual.indices(inp.basis)] == 0)


def test_map_categorical_mixed_value_types():
    inp = _values_space("x", ["a", 1, (2, "b")])
    out = _values_space("y", [True, False])
    mlp = categorical_mlp.map_categorical_mlp(inp, out, lambda v: isinstance(v, str), "h")
    residual, outs = _run_map(mlp, inp, ["a", 1, (2, "b")])
    blocks.assert_one_hot(outs["float32"][:, residual.indices(out.basis)], np.array([-1, 0, 1, 1]))


def test_map_categorical_names_missing_output_value():
    with pytest.raises(ValueError, match="'oops'.*input 2"):
        categorical_mlp.map_categorical_mlp(
            _values_space("x", [1, 2]),
            _values_space("y", [1]),
            lambda v: 1 if v == 1 else "oops",
            "h",
        )


@pytest.mark.parametrize(
    "builder",
    [categorical_mlp.map_categorical_to_numerical_mlp, categorical_mlp.map_categorical_mlp],
)
def test_map_categorical_to_numerical(builder):
    values = list(range(-50, 50))
    inp = _values_space("x", values)
    out = bases.VectorSpaceWithBasis([D("y")])
    f = lambda v: v / 3 - 7.25  # noqa: E731
    mlp = builder(inp, out, f, "h")
    residual, outs = _run_map(mlp, inp, values)
    expected = np.array([0.0] + [f(v) for v in values])
    for result in outs.values():
        blocks.assert_numbers(result[:, residual.index(D("y"))], expected)


def test_map_categorical_to_numerical_rejects_none():
    with pytest.raises(ValueError, match="None"):
        categorical_mlp.map_categorical_to_numerical_mlp(
            _values_space("x", [1, 2]), bases.VectorSpaceWithBasis([D("y")]), lambda v: None, "h"
        )


def _run_pairs(mlp, space1, space2, pairs):
    residual = blocks.residual_with(mlp)
    name1, name2 = space1.basis[0].name, space2.basis[0].name
    rows = [
        {
            **({D(name1, a): 1.0} if a is not None else {}),
            **({D(name2, b): 1.0} if b is not None else {}),
        }
        for a, b in pairs
    ]
    return residual, blocks.run_all(mlp, blocks.rows_with_bos(residual, rows), residual)


@pytest.mark.parametrize("sizes", [(4, 3), (100, 30)])
def test_sequence_map_is_exact_on_every_pair(sizes):
    n1, n2 = sizes
    s1, s2 = _values_space("a", range(n1)), _values_space("b", range(n2))
    f = lambda x, y: None if (x + y) % 5 == 0 else (x * y) % 11  # noqa: E731
    out = _values_space("z", range(11))
    mlp = categorical_mlp.sequence_map_categorical_mlp(s1, s2, out, f, blocks.ONE_SPACE, "h")
    # One unit per (value of the enumerated input, distinct non-None result).
    per_x = sum(len({f(x, y) for y in range(n2)} - {None}) for x in range(n1))
    per_y = sum(len({f(x, y) for x in range(n1)} - {None}) for y in range(n2))
    assert mlp.hidden_space.num_dims == min(per_x, per_y)
    pairs = [(x, y) for x in range(n1) for y in range(n2)] + [(None, 1), (2, None)]
    residual, outs = _run_pairs(mlp, s1, s2, pairs)
    expected = _expected_cols(out, [None] + [f(x, y) for x, y in pairs[:-2]] + [None, None])
    for result in outs.values():
        blocks.assert_one_hot(result[:, residual.indices(out.basis)], expected)


@pytest.mark.parametrize("numerical", [False, True])
def test_sequence_map_with_few_results_needs_few_units(numerical):
    """x < y over 60 x 40 values: two units per value of the smaller input, not 2400."""
    s1, s2 = _values_space("a", range(60)), _values_space("b", range(40))
    out = (
        bases.VectorSpaceWithBasis([bases.BasisDirection("z")])
        if numerical
        else (_values_space("z", [False, True]))
    )
    f = lambda x, y: x < y  # noqa: E731
    mlp = categorical_mlp.sequence_map_categorical_mlp(s1, s2, out, f, blocks.ONE_SPACE, "h")
    assert mlp.hidden_space.num_dims <= 2 * 40
    pairs = [(x, y) for x in range(60) for y in range(40)]
    residual, outs = _run_pairs(mlp, s1, s2, pairs)
    for result in outs.values():
        got = result[1:, residual.indices(out.basis)]
        if numerical:
            np.testing.assert_allclose(got[:, 0], [float(x < y) for x, y in pairs])
        else:
            blocks.assert_one_hot(
                result[:, residual.indices(out.basis)],
                _expected_cols(out, [None] + [f(x, y) for x, y in pairs]),
            )


def test_sequence_map_same_input_twice():
    s = _values_space("a", range(6))
    out = _values_space("z", range(40))
    mlp = categorical_mlp.sequence_map_categorical_mlp(
        s, s, out, lambda x, y: x * y + 1, blocks.ONE_SPACE, "h"
    )
    assert mlp.hidden_space.num_dims == 6
    residual, outs = _run_map(mlp, s, list(range(6)))
    expected = _expected_cols(out, [None] + [v * v + 1 for v in range(6)])
    for result in outs.values():
        blocks.assert_one_hot(result[:, residual.indices(out.basis)], expected)


@pytest.mark.parametrize(
    "builder",
    [
        categorical_mlp.sequence_map_categorical_to_numerical_mlp,
        categorical_mlp.sequence_map_categorical_mlp,
    ],
)
def test_sequence_map_numerical_output(builder):
    s1, s2 = _values_space("a", range(7)), _values_space("b", ["p", "q"])
    out = bases.VectorSpaceWithBasis([D("z")])
    f = lambda x, y: x * (2.5 if y == "p" else -1)  # noqa: E731
    mlp = builder(s1, s2, out, f, blocks.ONE_SPACE, "h")
    pairs = [(x, y) for x in range(7) for y in "pq"]
    residual, outs = _run_pairs(mlp, s1, s2, pairs)
    expected = np.array([0.0] + [f(x, y) for x, y in pairs])
    for result in outs.values():
        blocks.assert_numbers(result[:, residual.index(D("z"))], expected)


def test_sequence_map_rejects_overlapping_inputs():
    with pytest.raises(ValueError, match="disjoint"):
        categorical_mlp.sequence_map_categorical_mlp(
            _values_space("a", [1, 2]),
            _values_space("a", [2, 3]),
            _values_space("z", [1]),
            lambda x, y: 1,
            blocks.ONE_SPACE,
            "h",
        )
