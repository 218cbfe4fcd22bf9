"""numerical_mlp: every value of the input set, off-value inputs within the tolerance,
BOS, small and large value sets, through craft, float32 and float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.craft import blocks
from tracr.craft import bases, rounding
from tracr.craft.chamber import numerical_mlp

D = bases.BasisDirection
X, Y = D("x"), D("y")
X_SPACE, Y_SPACE = bases.VectorSpaceWithBasis([X]), bases.VectorSpaceWithBasis([Y])


def _numerical(f, values):
    return numerical_mlp.map_numerical_mlp(
        f, X_SPACE, Y_SPACE, values, blocks.ONE_SPACE, blocks.BOS_SPACE, "h"
    )


def _run(mlp, inputs, bos_input=0.0):
    residual = blocks.residual_with(mlp)
    x = blocks.rows_with_bos(residual, [{X: v} for v in inputs])
    x[0, residual.index(X)] = bos_input
    return residual, blocks.run_all(mlp, x, residual)


def _shifted(values, fraction):
    """Each value moved by fraction * input_tolerance (inside the tolerance if |f| < 1)."""
    tol = numerical_mlp.input_tolerance(values)
    tol = 0.0 if math.isinf(tol) else tol
    return [v + fraction * tol for v in sorted(values)]


SMALL_CASES = [
    ("square", [-3, -1, 0, 2, 5], lambda v: v * v),
    ("negative outputs", [0.5, 1.0, 1.5, 4.0], lambda v: -2 * v + 1),
    ("single point", [3.0], lambda v: 7.5),
    ("fractions", [i / 7 for i in range(8)], lambda v: 1 / (v + 1)),
]
LARGE_CASES = [
    ("square over 0..299", list(range(300)), lambda v: v * v),
    ("parity over -100..99", list(range(-100, 100)), lambda v: v % 2),
    (
        "fractions k/m, m <= 15",
        sorted({k / m for m in range(1, 16) for k in range(m + 1)}),
        lambda v: 3 * v - 1,
    ),
    (
        "random reals",
        sorted(np.random.default_rng(0).uniform(-50, 50, 150).tolist()),
        lambda v: v / 3 + 2,
    ),
]


@pytest.mark.parametrize("name, values, f", SMALL_CASES + LARGE_CASES)
@pytest.mark.parametrize("fraction", [0.0, 0.9, -0.9])
def test_map_numerical_exact_on_and_near_every_value(name, values, f, fraction):
    """Exact in float64; in float32 within the worst-case bound for inputs that far off,
    whatever order this machine's BLAS adds in (the compiler refuses where the bound
    exceeds the budget)."""
    mlp = _numerical(f, values)
    assert mlp.hidden_space.num_dims == 1 + 2 * (len(values) - 1)
    shifted = _shifted(values, fraction)
    residual, outs = _run(mlp, shifted)
    expected = np.array([0.0] + [f(v) for v in sorted(values)])
    blocks.assert_numbers(outs["float64"][:, residual.index(Y)], expected, rel=1e-9, abs_=1e-9)
    moved = max((abs(a - b) for a, b in zip(shifted, sorted(values))), default=0.0)
    _, bound = numerical_mlp.float32_error_bound(f, values, input_error=moved)
    error = np.abs(outs["float32"][1:, residual.index(Y)] - expected[1:])
    assert np.all(error <= bound), f"error {error.max()} > bound"
    assert outs["float32"][0, residual.index(Y)] == 0.0  # BOS
    for result in outs.values():
        assert np.all(result[:, residual.index(X)] == 0)


def test_float32_bound_is_zero_for_integer_grids_and_small_for_smooth_maps():
    """Integer inputs and outputs sum exactly in any order; 1/(v+1) over eighths stays
    within the numerical budget; parity over 200 integers, moved off the grid, does not."""
    points, bound = numerical_mlp.float32_error_bound(lambda v: v % 3, range(50))
    assert np.all(bound == 0)
    values = [i / 8 for i in range(8)]
    _, bound = numerical_mlp.float32_error_bound(lambda v: 1 / (v + 1), values, 1e-6)
    assert np.all(bound <= np.maximum(1e-5 / (np.array(values) + 1), 1e-6))
    tol = numerical_mlp.input_tolerance(range(-100, 100))
    _, bound = numerical_mlp.float32_error_bound(lambda v: v % 2, range(-100, 100), 0.9 * tol)
    assert np.max(bound) > 1e-5


def test_float32_bound_refuses_inputs_beyond_the_tolerance():
    tol = numerical_mlp.input_tolerance([0, 1, 2])
    with pytest.raises(ValueError, match="input tolerance"):
        numerical_mlp.float32_error_bound(lambda v: v * v, [0, 1, 2], input_error=1.5 * tol)


def test_map_numerical_outside_the_range_saturates():
    values = [1, 2, 4]
    residual, outs = _run(_numerical(lambda v: 10 * v, values), [-100.0, 0.0, 5.0, 1e4])
    np.testing.assert_allclose(outs["float32"][:, residual.index(Y)], [0, 10, 10, 40, 40])


@pytest.mark.parametrize("bos_input", [0.0, 1.0, -5.0, 5.0])
def test_map_numerical_is_zero_at_bos_for_any_input_in_range(bos_input):
    values = [-5.0, -1.0, 0.5, 5.0]
    residual, outs = _run(_numerical(lambda v: v + 100, values), values, bos_input)
    for result in outs.values():
        assert result[0, residual.index(Y)] == 0.0


def test_input_tolerance_is_a_quarter_of_the_smallest_gap():
    assert numerical_mlp.input_tolerance([3.0]) == math.inf
    assert numerical_mlp.input_tolerance([0, 1, 3]) == pytest.approx(0.25, rel=1e-6)
    values = [1 / (w + 1) for w in range(101)]
    smallest_gap = 1 / 100 - 1 / 101
    assert numerical_mlp.input_tolerance(values) == pytest.approx(smallest_gap / 4, rel=1e-3)
    assert numerical_mlp.input_tolerance(values) >= 3 * smallest_gap / 16


def test_input_value_set_errors():
    with pytest.raises(ValueError, match="finite"):
        _numerical(lambda v: v, [1.0, math.nan])
    with pytest.raises(ValueError, match="finite"):
        _numerical(lambda v: v, [1, "a"])
    with pytest.raises(ValueError, match="empty"):
        _numerical(lambda v: v, [])
    with pytest.raises(ValueError, match="None.*input 2"):
        _numerical(lambda v: None if v == 2 else v, [1, 2])


@pytest.mark.parametrize(
    "values, f",
    [
        (list(range(500)), lambda v: v * v),
        (sorted({k / m for m in range(1, 13) for k in range(m + 1)}), lambda v: 3 * v - 1),
        (sorted(np.random.default_rng(0).uniform(-50, 50, 150).tolist()), math.sin),
    ],
)
def test_float32_error_bound_covers_shifted_inputs(values, f):
    shifted = _shifted(values, 0.7)
    moved = max(abs(a - b) for a, b in zip(shifted, sorted(values)))
    points, bound = numerical_mlp.float32_error_bound(f, values, input_error=moved)
    residual, outs = _run(_numerical(f, values), shifted)
    error = np.abs(outs["float32"][1:, residual.index(Y)] - np.array([f(v) for v in points]))
    assert np.all(error <= bound)
    blocks.assert_numbers(outs["float64"][1:, residual.index(Y)], np.array([f(v) for v in points]))


def test_float32_error_bound_certifies_or_flags():
    """3v - 1 over fractions with denominators <= 4 is certified; over denominators <= 12
    it is not (the compiler builds affine Maps without discretising, exactly)."""
    fractions = sorted({k / m for m in range(1, 5) for k in range(m + 1)})
    points, bound = numerical_mlp.float32_error_bound(lambda v: 3 * v - 1, fractions)
    assert np.all(bound <= np.maximum(1e-5 * np.abs(3 * points - 1), 1e-6))
    fractions = sorted({k / m for m in range(1, 13) for k in range(m + 1)})
    points, bound = numerical_mlp.float32_error_bound(lambda v: 3 * v - 1, fractions)
    assert np.any(bound > np.maximum(1e-5 * np.abs(3 * points - 1), 1e-6))
    # A wiggly function over 150 close random reals is beyond float32 with one ReLU
    # layer: the bound says so (float64 stays exact, see the test above).
    wiggly = sorted(np.random.default_rng(0).uniform(-50, 50, 150).tolist())
    points, bound = numerical_mlp.float32_error_bound(math.sin, wiggly, 1e-5)
    assert np.any(bound > np.maximum(1e-5 * np.abs(np.sin(points)), 1e-6))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(-(10**4), 10**4), min_size=1, max_size=40, unique=True),
    st.sampled_from([1, 0.001, 7.25]),
    st.sampled_from([0.0, 0.5, -0.5]),
)
def test_map_numerical_property(ints, scale, fraction):
    values = [i * scale for i in ints]
    f = lambda v: round(v * 3 + 1, 6)  # noqa: E731
    residual, outs = _run(_numerical(f, values), _shifted(values, fraction))
    expected = np.array([0.0] + [f(v) for v in sorted(values)])
    blocks.assert_numbers(outs["float64"][:, residual.index(Y)], expected, rel=1e-9, abs_=1e-9)
    blocks.assert_numbers(outs["float32"][:, residual.index(Y)], expected)


@pytest.mark.parametrize("num_values", [6, 100])
@pytest.mark.parametrize("fraction", [0.0, 0.9, -0.9])
def test_map_numerical_to_categorical(num_values, fraction):
    """Every value, and inputs moved by 0.9 of the tolerance, decode right; the entries
    stay within the worst-case float32 bound, itself within the compiler's budget (at
    400 close random values it is not, and the compiler refuses such a Map)."""
    values = sorted(np.random.default_rng(num_values).normal(0, 10, num_values).tolist())
    f = lambda v: None if int(v * 7) % 5 == 4 else int(v * 7) % 5  # noqa: E731
    out = bases.VectorSpaceWithBasis.from_values("y", range(4))
    mlp = numerical_mlp.map_numerical_to_categorical_mlp(
        f, X_SPACE, out, values, blocks.ONE_SPACE, blocks.BOS_SPACE, "h"
    )
    shifted = _shifted(values, fraction)
    residual, outs = _run(mlp, shifted)
    expected = np.array([-1] + [-1 if f(v) is None else f(v) for v in values])
    # Clean up to the worst-case float32 bound for inputs that far off (any order).
    space = mlp.fst.input_space
    x = np.zeros((len(values), space.num_dims))
    x[:, space.index(X)] = sorted(values)
    x[:, space.index(blocks.ONE)] = 1.0
    e = np.zeros_like(x)
    e[:, space.index(X)] = max(abs(a - b) for a, b in zip(shifted, sorted(values)))
    bound = rounding.mlp_bound(mlp.fst.matrix, mlp.snd.matrix, x, e).bound.max()
    assert bound < 0.05  # the compiler's budget for a categorical SOp
    for result in outs.values():
        blocks.assert_one_hot(result[:, residual.indices(out.basis)], expected, bound + 1e-12)


def test_map_numerical_to_categorical_names_missing_value():
    with pytest.raises(ValueError, match="7"):
        numerical_mlp.map_numerical_to_categorical_mlp(
            lambda v: 7,
            X_SPACE,
            bases.VectorSpaceWithBasis.from_values("y", [1]),
            [1.0],
            blocks.ONE_SPACE,
            blocks.BOS_SPACE,
            "h",
        )


@pytest.mark.parametrize("factors", [(1.0, 1.0), (2.5, -0.5), (-3.0, 0.0)])
def test_linear_sequence_map(factors):
    a, b = D("a"), D("b")
    mlp = numerical_mlp.linear_sequence_map_numerical_mlp(a, b, Y, *factors, "h")
    rng = np.random.default_rng(1)
    pairs = rng.normal(0, 100, (50, 2)).tolist() + [[0.0, 0.0], [-1.0, 1.0]]
    residual = blocks.residual_with(mlp)
    x = blocks.rows_with_bos(residual, [{a: p, b: q} for p, q in pairs])
    expected = np.array([0.0] + [factors[0] * p + factors[1] * q for p, q in pairs])
    for result in blocks.run_all(mlp, x, residual).values():
        blocks.assert_numbers(result[:, residual.index(Y)], expected)


def test_linear_sequence_map_same_input_twice():
    a = D("a")
    mlp = numerical_mlp.linear_sequence_map_numerical_mlp(a, a, Y, 2.0, 3.0, "h")
    assert mlp.hidden_space.num_dims == 2
    residual = blocks.residual_with(mlp)
    x = blocks.rows_with_bos(residual, [{a: v} for v in (-2.0, 0.0, 4.5)])
    for result in blocks.run_all(mlp, x, residual).values():
        np.testing.assert_allclose(result[:, residual.index(Y)], [0, -10, 0, 22.5])


@pytest.mark.parametrize("slope,intercept", [(1.0, 1.0), (-2.0, 3.0), (0.5, 0.0), (0.0, -4.0)])
def test_affine_map_is_exact_everywhere_and_zero_at_bos(slope, intercept):
    mlp = numerical_mlp.map_affine_numerical_mlp(
        X_SPACE, Y_SPACE, slope, intercept, blocks.ONE_SPACE, blocks.BOS_SPACE, "h"
    )
    assert mlp.hidden_space.num_dims == 3
    inputs = [float(v) for v in range(-100, 101)] + [0.25, -1e-3, 1234.5]
    residual, results = _run(mlp, inputs)
    expected = np.array([0.0] + [slope * v + intercept for v in inputs])
    for result in results.values():
        blocks.assert_numbers(result[:, residual.index(Y)], expected)


@pytest.mark.parametrize("n", [8, 32])
def test_float32_error_bound_covers_the_error_in_every_summation_order(n):
    """The bound holds however the second layer's terms are added up."""
    f = lambda v: 1 / v  # noqa: E731
    points, bound = numerical_mlp.float32_error_bound(f, range(1, n + 1))
    mlp = numerical_mlp.map_numerical_mlp(
        f, X_SPACE, Y_SPACE, range(1, n + 1), blocks.ONE_SPACE, blocks.BOS_SPACE, "h"
    )
    inputs = mlp.fst.input_space
    rng = np.random.default_rng(0)
    for i, x in enumerate(points):
        row = np.zeros(inputs.num_dims, dtype=np.float32)
        row[inputs.index(X)], row[inputs.index(blocks.ONE_SPACE.basis[0])] = x, 1.0
        terms = np.maximum(row @ mlp.fst.matrix.astype(np.float32), 0) * mlp.snd.matrix[
            :, 0
        ].astype(np.float32)
        for _ in range(20):
            total = np.float32(0)
            for t in rng.permutation(terms):
                total = np.float32(total + t)
            assert abs(float(total) - 1 / x) <= bound[i]


def test_discretisations_of_equal_value_sets_are_equal_and_read_only():
    outputs = np.array([[0.0], [1.0], [5.0]])
    first = numerical_mlp.discretise([3.0, 1.0, 2.0], outputs, True)
    again = numerical_mlp.discretise([1, 2, 3], outputs, True)
    assert first.points.tolist() == [1.0, 2.0, 3.0]
    for name in ("points", "slopes", "signs", "biases", "gates"):
        assert np.array_equal(getattr(first, name), getattr(again, name))
    with pytest.raises(ValueError):
        first.biases[0] = 0.0


def test_discretising_mlp_sorts_its_points_and_refuses_repeats_and_non_finite_ones():
    def build(points, rows):
        return numerical_mlp.discretising_mlp(
            X_SPACE, Y_SPACE, points, np.array(rows), blocks.ONE_SPACE, blocks.BOS_SPACE, "h"
        )

    in_order = build([1.0, 2.0, 4.0], [[1.0], [5.0], [2.0]])
    shuffled = build([4.0, 1.0, 2.0], [[2.0], [1.0], [5.0]])
    assert np.array_equal(in_order.fst.matrix, shuffled.fst.matrix)
    assert np.array_equal(in_order.snd.matrix, shuffled.snd.matrix)
    assert in_order.fst.output_space == shuffled.fst.output_space
    for points in ([1.0, 1.0], [2.0, 1.0, 2.0], [math.nan, math.nan]):
        with pytest.raises(ValueError, match="distinct"):
            build(points, [[0.0]] * len(points))
    for points in ([1.0, math.inf], [math.nan, 1.0]):
        with pytest.raises(ValueError, match="finite"):
            build(points, [[0.0]] * len(points))
