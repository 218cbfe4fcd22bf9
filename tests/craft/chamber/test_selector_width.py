"""selector_width: every selection pattern up to length 4, and every width 0..100 at
max_seq_len 100, categorical and numerical, through craft, float32 and float64."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tests.craft import blocks
from tracr.craft import bases, transformers
from tracr.craft.chamber import selector_width

D = bases.BasisDirection


def _space(name, values):
    return bases.VectorSpaceWithBasis.from_values(name, values)


def _block(qvals, kvals, attn_fn, categorical, n, causal=False, out_values=None):
    out_values = list(range(n + 1)) if out_values is None else out_values
    out = _space("w", range(n + 1)) if categorical else bases.VectorSpaceWithBasis([D("w")])
    block = selector_width.selector_width(
        _space("q", qvals),
        _space("k", kvals),
        out,
        blocks.BOS_SPACE,
        blocks.ONE_SPACE,
        attn_fn,
        out_values,
        categorical,
        max_seq_len=n,
        causal=causal,
        hidden_name="sw_",
    )
    return block, out


def _widths(qs, ks, attn_fn, causal):
    return [
        sum(
            1
            for j, k in enumerate(ks)
            if (not causal or j <= i) and q is not None and k is not None and attn_fn(q, k)
        )
        for i, q in enumerate(qs)
    ]


def _check(block, out, seqs, attn_fn, causal, categorical, out_values):
    residual = blocks.residual_with(block)
    rows = [
        [
            {
                **({D("q", q): 1.0} if q is not None else {}),
                **({D("k", k): 1.0} if k is not None else {}),
            }
            for q, k in zip(qs, ks)
        ]
        for qs, ks in seqs
    ]
    x = blocks.sequences(residual, rows)
    widths = np.array([[0] + _widths(qs, ks, attn_fn, causal) for qs, ks in seqs])
    written = np.isin(widths, list(out_values))
    written[:, 0] = False  # BOS
    t = residual.index(selector_width.attn_output_direction("sw_"))
    cols = residual.indices(out.basis)
    for result in blocks.run_all(block, x, residual).values():
        if categorical:
            expected_cols = np.where(written, widths, -1)
            blocks.assert_one_hot(result[..., cols].reshape(-1, len(cols)), expected_cols.ravel())
        else:
            # 1e-5 relative to the output's scale: the compiler's numerical budget.
            scale = max(1, max(out_values, default=0))
            expected = np.where(written, widths, 0.0)
            blocks.assert_numbers(result[..., cols[0]], expected, abs_=1e-5 * scale)
        _check_t(block, result[..., t], x[..., t], widths)


def _check_t(block, result_t, input_t, widths):
    """t = 1/(w+1) up to the head's leakage WIDTH_LEAKAGE / (w+1)^2; at BOS the cleanup
    leaves only the weight BOS leaks to the other n keys, <= n e^(-2c)."""
    qk = block.blocks[0].w_qk
    c = qk.matrix[qk.left_space.index(blocks.BOS), qk.right_space.index(blocks.BOS)]
    n = input_t.shape[1] - 1
    assert np.all(np.abs(result_t[:, 0] + input_t[:, 0]) <= n * np.exp(-2 * c) + 1e-6)
    exact_t = 1 / (widths[:, 1:] + 1)
    leak = selector_width.WIDTH_LEAKAGE * exact_t**2
    assert np.all(np.abs(result_t[:, 1:] - exact_t) <= leak + 1e-6 * exact_t)


@pytest.mark.parametrize("predicate", ["eq", "leq", "true", "false"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("categorical", [True, False])
def test_every_pattern_up_to_length_four(predicate, causal, categorical):
    attn_fn = {
        "eq": lambda q, k: q == k,
        "leq": lambda q, k: k <= q,
        "true": lambda q, k: True,
        "false": lambda q, k: False,
    }[predicate]
    vals = [0, 1, 2]
    block, out = _block(vals, vals, attn_fn, categorical, 4, causal)
    for length in (1, 2, 3, 4):
        options = vals + [None] if length < 4 else vals
        pairs = list(itertools.product(itertools.product(options, repeat=length), repeat=2))
        _check(block, out, pairs, attn_fn, causal, categorical, range(5))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("categorical", [True, False])
def test_every_width_at_max_seq_len_100(causal, categorical):
    n = 100
    attn_fn = lambda q, k: k < q  # noqa: E731  width of query q = number of keys below q
    block, out = _block(range(n + 1), range(n), attn_fn, categorical, n, causal)
    rng = np.random.default_rng(3)
    keys = list(range(n))
    seqs = [
        (list(range(n)), keys),  # widths 0..99
        (list(range(n, 0, -1)), keys),  # widths 100..1
        (rng.integers(0, n + 1, n).tolist(), rng.permutation(n).tolist()),
        ([n] * n, [0] * n),  # everything selected everywhere
    ]
    _check(block, out, seqs, attn_fn, causal, categorical, range(n + 1))


def test_widths_outside_out_value_set_write_nothing():
    attn_fn = lambda q, k: True  # noqa: E731
    for categorical in (True, False):
        block, out = _block([0], [0], attn_fn, categorical, 6, out_values=[1, 3, 5])
        seqs = [([0] * length + [None] * (6 - length), [0] * 6) for length in range(7)]
        seqs += [([0] * 6, [0] * length + [None] * (6 - length)) for length in range(7)]
        _check(block, out, seqs, attn_fn, False, categorical, [1, 3, 5])


def test_structure_and_naming():
    block, out = _block([0, 1], [0, 1], lambda q, k: q == k, True, 10)
    head, mlp = block.blocks
    assert isinstance(head, transformers.AttentionHead) and isinstance(mlp, transformers.MLP)
    t = selector_width.attn_output_direction("sw_")
    assert t in head.w_ov.output_space and t in mlp.fst.input_space
    assert D("sw_", "bos_cleanup") in mlp.hidden_space
    assert all(d.name == "sw_" for d in mlp.hidden_space)
    assert mlp.hidden_space.num_dims == 1 + 2 * 10 + 1


def test_categorical_output_must_hold_the_widths():
    with pytest.raises(ValueError, match="3"):
        selector_width.selector_width(
            _space("q", [0]),
            _space("k", [0]),
            _space("w", [0, 1, 2]),
            blocks.BOS_SPACE,
            blocks.ONE_SPACE,
            lambda q, k: True,
            [0, 1, 2, 3],
            True,
            max_seq_len=3,
            hidden_name="h",
        )
