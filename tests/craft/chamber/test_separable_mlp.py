"""separable_mlp: SequenceMaps that split into per-input parts, on every input pair."""

from __future__ import annotations

import numpy as np
import pytest

from tests.craft import blocks
from tests.transformer import adversarial
from tracr.compiler import compiling, lib
from tracr.craft import bases, rounding
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


def _plain(s1, s2, out, f):
    return separable_mlp.build(s1, s2, out, f, blocks.ONE_SPACE, "h")


def _robust(may_be_none):
    def build(s1, s2, out, f):
        return separable_mlp.build_robust(
            s1, s2, out, f, blocks.ONE_SPACE, blocks.BOS_SPACE, "h", may_be_none=may_be_none
        )

    return build


BUILDERS = {
    "plain": (_plain, (True, True), lambda m, _: separable_mlp.width(m)),
    "robust": (_robust((True, True)), (True, True), separable_mlp.robust_width),
    "robust, gate a": (_robust((True, False)), (True, False), separable_mlp.robust_width),
    "robust, gate b": (_robust((False, True)), (False, True), separable_mlp.robust_width),
    "robust, BOS gate only": (_robust((False, False)), (False, False), separable_mlp.robust_width),
}


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("xs,ys,f", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_exact_on_every_pair_and_zero_when_an_input_is_missing(xs, ys, f, builder):
    """Every pair of values, BOS, and (where the block is told an input can be None) the
    zero vector for that input: the exact one-hot, in float32 too."""
    build, (none1, none2), width = BUILDERS[builder]
    xs, ys = list(xs), list(ys)
    s1, s2 = _space("a", xs), _space("b", ys)
    out = _space("z", sorted({f(x, y) for x in xs for y in ys}))
    mlp = build(s1, s2, out, f)
    if mlp is None:  # the robust block is wider than this small table
        assert builder != "plain" and len(xs) * len(ys) <= width(out.num_dims, True)
        return
    assert mlp.hidden_space.num_dims <= width(out.num_dims, True)
    missing = [(None, ys[0])] * none1 + [(xs[-1], None)] * none2 + [(None, None)] * none1
    pairs = [(x, y) for x in xs for y in ys] + missing
    residual, outs = _run_pairs(mlp, s1, s2, pairs)
    expected = _cols(out, [None] + [f(x, y) for x, y in pairs[: -len(missing) or None]])
    expected = np.concatenate([expected, np.full(len(missing), -1)])
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


def test_reverse_reads_a_noisy_length_through_robust_steps():
    """length comes out of a float32 readout with rounding noise, which the plain
    block's units (on their kinks) would pass on; the compiler picks the robust block,
    whose steps absorb it: width linear in max_seq_len (the table, cleaned, needed
    2 * 210 units), and the model is exact."""
    program = lib.make_reverse(rasp.tokens)
    model = compiling.compile_rasp_to_model(program, vocab={"a", "b"}, max_seq_len=20)
    opp_idx = next(n for n in model.circuit.nodes if n.label.startswith("opp_idx_"))
    (block,) = opp_idx.blocks
    assert block.units[1] - block.units[0] == separable_mlp.robust_width(20)
    rng = np.random.default_rng(0)
    for length in range(1, 21):
        tokens = list(rng.choice(["a", "b"], size=length))
        assert model.apply(["compiler_bos", *tokens]).decoded[1:] == tokens[::-1]


def _ideal_rows(residual, s1, s2, pairs):
    """[1 + len(pairs), d]: BOS, then the one-hots of each pair (with `one`)."""
    rows = [{D(s1.basis[0].name, a): 1.0, D(s2.basis[0].name, b): 1.0} for a, b in pairs]
    return blocks.rows_with_bos(residual, rows)


def _bound_and_runs(mlp, residual, x, e, rng, trials=30):
    """rounding.mlp_bound on the ideal rows x with per-coordinate errors e, and the float32
    outputs of random inputs within e (and at its corners) in every summation order."""
    w1 = np.zeros((residual.num_dims, mlp.hidden_space.num_dims))
    w1[residual.indices(mlp.fst.input_space.basis)] = mlp.fst.matrix
    w2 = np.zeros((mlp.hidden_space.num_dims, residual.num_dims))
    w2[:, residual.indices(mlp.snd.output_space.basis)] = mlp.snd.matrix
    result = rounding.mlp_bound(w1, w2, x, e)
    runs = []
    for trial in range(trials):
        signs = rng.choice([-1.0, 1.0], x.shape) if trial % 2 else rng.uniform(-1, 1, x.shape)
        noisy = (x + e * signs).astype(np.float32)
        for order in adversarial.ORDERS:
            hidden = np.maximum(adversarial.matmul(noisy, w1.astype(np.float32), order), 0)
            runs.append(adversarial.matmul(hidden, w2.astype(np.float32), order))
    return result, runs


def test_robust_steps_absorb_input_noise_within_their_margin():
    """length - index on every feasible pair, the length one-hot off by 1e-3 in every
    coordinate (its l1 deviation 1.3e-2, read with weights up to 6): each unit stays on
    its side, so the output is the exact one-hot up to float32 rounding alone. The
    proven bound holds for every perturbation tried, in every summation order, and is
    far below the noise a plain linear read would pass on."""
    lengths, indices = range(0, 13), range(0, 12)
    s1, s2 = _space("a", lengths), _space("b", indices)
    out = _space("z", range(1, 13))
    f = lambda x, y: x - y  # noqa: E731
    mlp = separable_mlp.build_robust(
        s1, s2, out, f, blocks.ONE_SPACE, blocks.BOS_SPACE, "h", lambda x, y: x > y, (False, False)
    )
    residual = blocks.residual_with(mlp)
    pairs = [(x, y) for x in lengths for y in indices if x > y]
    x = _ideal_rows(residual, s1, s2, pairs)
    e = np.zeros_like(x)
    e[:, residual.indices(s1.basis)] = 1e-3
    result, runs = _bound_and_runs(mlp, residual, x, e, np.random.default_rng(0))
    assert not result.unstable.any()
    cols = residual.indices(out.basis)
    expected = _cols(out, [None] + [f(a, b) for a, b in pairs])
    target = np.zeros((len(x), len(cols)))
    target[np.flatnonzero(expected >= 0), expected[expected >= 0]] = 1.0
    np.testing.assert_allclose(result.ideal[:, cols], target, atol=1e-9)
    robust_l1 = result.bound[:, cols].sum(axis=1).max()
    plain = separable_mlp.build(s1, s2, out, f, blocks.ONE_SPACE, "h", lambda x, y: x > y)
    plain_residual = blocks.residual_with(plain)
    x_plain = _ideal_rows(plain_residual, s1, s2, pairs)
    e_plain = np.zeros_like(x_plain)
    e_plain[:, plain_residual.indices(s1.basis)] = 1e-3
    plain_result, _ = _bound_and_runs(plain, plain_residual, x_plain, e_plain, None, trials=0)
    plain_l1 = plain_result.bound[:, plain_residual.indices(out.basis)].sum(axis=1).max()
    assert robust_l1 < 1e-3 and robust_l1 < plain_l1 / 50
    for got in runs:
        assert np.all(np.abs(got[:, cols] - target) <= result.bound[:, cols] * (1 + 1e-9) + 1e-30)


def test_robust_steps_are_refused_beyond_their_margin():
    """The same block with the length one-hot off by 0.03 per coordinate: a unit's
    pre-activation may cross 0, so the bound flags the inputs (the compiler refuses)."""
    lengths, indices = range(0, 13), range(0, 12)
    s1, s2 = _space("a", lengths), _space("b", indices)
    mlp = separable_mlp.build_robust(
        s1, s2, _space("z", range(1, 13)), lambda x, y: x - y, blocks.ONE_SPACE,
        blocks.BOS_SPACE, "h", lambda x, y: x > y, (False, False),
    )  # fmt: skip
    residual = blocks.residual_with(mlp)
    x = _ideal_rows(residual, s1, s2, [(x, y) for x in lengths for y in indices if x > y])
    e = np.zeros_like(x)
    e[:, residual.indices(s1.basis)] = 0.03
    result, _ = _bound_and_runs(mlp, residual, x, e, np.random.default_rng(0), trials=0)
    assert result.unstable.any()


def test_robust_block_reads_a_width_as_a_number():
    """w - index with w read as 2 (m - t) + 2 from a width head's t = 1/(w+1) and mean
    index m = w (w - 1) / (2 (w + 1)), both off by up to 1e-3: exact one-hots on every
    feasible pair, nothing at BOS (t ~ 0 once the width's readout has cleaned it, m ~ 0:
    the reading is 2 there), bound holds in every order."""
    n = 12
    widths, indices = range(0, n + 1), range(0, n)
    s1, s2 = _space("w", widths), _space("b", indices)
    out = _space("z", range(1, n + 1))
    t, m = D("t"), D("m")
    reading = separable_mlp.NumberReading(
        bases.VectorSpaceWithBasis([t, m]), (-2.0, 2.0), offset=2.0, at_bos=2.0
    )
    mlp = separable_mlp.build_robust(
        s1, s2, out, lambda w, y: w - y, blocks.ONE_SPACE, blocks.BOS_SPACE, "h",
        lambda w, y: w > y, (False, False), number1=reading,
    )  # fmt: skip
    assert not set(s1.basis) & set(mlp.fst.input_space.basis)  # the one-hot is not read
    residual = blocks.residual_with(mlp)
    pairs = [(w, y) for w in widths for y in indices if w > y]
    rows = [{t: 1 / (w + 1), m: w * (w - 1) / (2 * (w + 1)), D("b", y): 1.0} for w, y in pairs]
    x = blocks.rows_with_bos(residual, rows)
    e = np.zeros_like(x)
    e[:, residual.indices([t, m])] = 1e-3
    result, runs = _bound_and_runs(mlp, residual, x, e, np.random.default_rng(1))
    assert not result.unstable.any()
    cols = residual.indices(out.basis)
    expected = _cols(out, [None] + [w - y for w, y in pairs])
    target = np.zeros((len(x), len(cols)))
    target[np.flatnonzero(expected >= 0), expected[expected >= 0]] = 1.0
    np.testing.assert_allclose(result.ideal[:, cols], target, atol=1e-9)
    for got in runs:
        assert np.all(np.abs(got[:, cols] - target) <= result.bound[:, cols] * (1 + 1e-9) + 1e-30)


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
