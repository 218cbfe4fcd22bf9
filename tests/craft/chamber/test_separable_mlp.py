"""separable_mlp: SequenceMaps that split into per-input parts, on every input pair."""

from __future__ import annotations

import numpy as np
import pytest

from tests.craft import blocks
from tracr.compiler import compiling, lib
from tracr.craft import bases
from tracr.craft.chamber import categorical_mlp, separable_mlp
from tracr.rasp import rasp

D = bases.BasisDirection


def _space(name, values):
    return bases.VectorSpaceWithBasis.from_values(name, values)


def _run_pairs(mlp, s1, s2, pairs):
    """Outputs for a BOS row then one row per (a, b) pair (None = the zero vector)."""
    residual = blocks.residual_with(mlp)
    rows = [
        {
            **({D(s1.basis[0].name, a): 1.0} if a is not None else {}),
            **({D(s2.basis[0].name, b): 1.0} if b is not None else {}),
        }
        for a, b in pairs
    ]
    return residual, blocks.run_all(mlp, blocks.rows_with_bos(residual, rows), residual)


def _cols(space, results):
    index = {d.value: i for i, d in enumerate(space.basis)}
    return np.array([-1 if r is None else index[r] for r in results])


CASES = [
    # (first values, second values, f): unit gaps (tents) and wider gaps (steps)
    (range(0, 41), range(0, 40), lambda x, y: x - y),
    (range(1, 30), range(-5, 7), lambda x, y: x + y),
    (range(10), range(8), lambda x, y: 3 * x - 2 * y + 7),
    (["a", "b", "c", "d", "e", "f"], range(6), lambda s, y: 0.25 * "abcdef".index(s) + y / 2),
    (range(0, 60, 3), range(0, 60, 3), lambda x, y: x + y),  # gaps of 3: steps
]


@pytest.mark.parametrize("xs,ys,f", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_exact_on_every_pair_and_zero_when_an_input_is_missing(xs, ys, f):
    xs, ys = list(xs), list(ys)
    s1, s2 = _space("a", xs), _space("b", ys)
    out = _space("z", sorted({f(x, y) for x in xs for y in ys}))
    mlp = separable_mlp.build(s1, s2, out, f, blocks.ONE_SPACE, "h")
    assert mlp is not None
    assert mlp.hidden_space.num_dims <= separable_mlp.width(out.num_dims)
    pairs = [(x, y) for x in xs for y in ys] + [(None, ys[0]), (xs[-1], None), (None, None)]
    residual, outs = _run_pairs(mlp, s1, s2, pairs)
    expected = _cols(out, [None] + [f(x, y) for x, y in pairs[:-3]] + [None] * 3)
    for name, result in outs.items():
        got = result[:, residual.indices(out.basis)]
        blocks.assert_one_hot(got, expected)
        if name != "float64":  # integer arithmetic below 2^22: float32 is exact too
            target = np.zeros_like(got)
            hot = expected >= 0
            target[np.nonzero(hot)[0], expected[hot]] = 1.0
            np.testing.assert_array_equal(got, target)


def test_width_is_linear_where_the_table_is_quadratic():
    xs, ys = range(0, 101), range(0, 100)
    s1, s2 = _space("a", xs), _space("b", ys)
    f = lambda x, y: x - y  # noqa: E731
    out = _space("z", sorted({x - y for x in xs for y in ys}))
    linear = separable_mlp.build(s1, s2, out, f, blocks.ONE_SPACE, "h")
    table = categorical_mlp.sequence_map_categorical_mlp(s1, s2, out, f, blocks.ONE_SPACE, "h")
    assert linear.hidden_space.num_dims == out.num_dims == 200
    assert table.hidden_space.num_dims == 101 * 100


@pytest.mark.parametrize(
    "f,values",
    [
        (lambda x, y: x * y, range(10)),  # does not split
        (lambda x, y: (x - y) % 3, range(10)),  # does not split
        (lambda x, y: None if x == y else x - y, range(10)),  # None results
        (lambda x, y: x + y / 3, range(10)),  # not dyadic: no exact float32 scale
        (lambda x, y: x + 10 * y, range(3)),  # the table (9 units) is narrower
    ],
)
def test_declines_what_it_cannot_build_exactly_or_narrower(f, values):
    s1, s2 = _space("a", values), _space("b", values)
    results = {f(x, y) for x in values for y in values} - {None}
    out = _space("z", sorted(results))
    assert separable_mlp.build(s1, s2, out, f, blocks.ONE_SPACE, "h") is None


def test_names_a_result_missing_from_the_output_space():
    s1, s2 = _space("a", range(20)), _space("b", range(20))
    with pytest.raises(ValueError, match="not in the output space"):
        separable_mlp.build(
            s1, s2, _space("z", range(5)), lambda x, y: x + y, blocks.ONE_SPACE, "h"
        )


@pytest.mark.parametrize("max_seq_len", [7, 20])
def test_difference_of_exact_inputs_compiles_narrow_and_exact(max_seq_len):
    """tokens - indices: exact one-hot inputs, so the separable block (linear width)
    is certified by the compiler's float32 bounds."""
    program = rasp.SequenceMap(lambda t, i: t - i, rasp.tokens, rasp.indices)
    vocab = set(range(max_seq_len))
    model = compiling.compile_rasp_to_model(program, vocab=vocab, max_seq_len=max_seq_len)
    assert model.model_config.mlp_hidden_size <= 2 * (2 * max_seq_len)
    rng = np.random.default_rng(0)
    for length in range(1, max_seq_len + 1):
        tokens = [int(t) for t in rng.choice(sorted(vocab), size=length)]
        out = model.apply(["compiler_bos", *tokens]).decoded
        assert out[1:] == [t - i for i, t in enumerate(tokens)]


def test_reverse_reads_a_noisy_length_through_a_cleaned_table():
    """length comes out of a float32 readout with rounding noise, which the separable
    block's large weights would amplify; the compiler picks the noise-cleaning lookup
    table instead (wider, certified) and the model is exact."""
    model = compiling.compile_rasp_to_model(
        lib.make_reverse(rasp.tokens), vocab={"a", "b"}, max_seq_len=20
    )
    rng = np.random.default_rng(0)
    for length in range(1, 21):
        tokens = list(rng.choice(["a", "b"], size=length))
        assert model.apply(["compiler_bos", *tokens]).decoded[1:] == tokens[::-1]


def test_feasible_pairs_only():
    """length - indices on the pairs with index < length: n values, exact on those."""
    lengths, indices = range(0, 9), range(0, 8)
    s1, s2 = _space("a", lengths), _space("b", indices)
    out = _space("z", range(1, 9))
    f = lambda x, y: x - y  # noqa: E731
    mlp = separable_mlp.build(s1, s2, out, f, blocks.ONE_SPACE, "h", feasible=lambda x, y: x > y)
    assert mlp.hidden_space.num_dims == 8
    pairs = [(x, y) for x in lengths for y in indices if x > y] + [(None, 3), (5, None)]
    residual, outs = _run_pairs(mlp, s1, s2, pairs)
    expected = _cols(out, [None] + [f(x, y) for x, y in pairs[:-2]] + [None, None])
    for result in outs.values():
        blocks.assert_one_hot(result[:, residual.indices(out.basis)], expected)
