"""Tests for tracr.craft.transformers, with hand-worked values."""

from __future__ import annotations

import numpy as np
import pytest

from tracr.craft import bases, transformers, vectorspace_fns

D = bases.BasisDirection


def _space(*names):
    return bases.VectorSpaceWithBasis.from_names(names)


def _mlp(inp, hidden, out, first, second):
    return transformers.MLP(
        vectorspace_fns.Linear(_space(*inp), _space(*hidden), np.array(first, float)),
        vectorspace_fns.Linear(_space(*hidden), _space(*out), np.array(second, float)),
    )


def test_mlp_applies_relu_between_layers():
    # h1 = relu(x - y), h2 = relu(y - x); out = h1 + 2 h2
    mlp = _mlp("xy", ["h1", "h2"], "o", [[1, -1], [-1, 1]], [[1], [2]])
    assert mlp.residual_space == _space("o", "x", "y")
    x = bases.VectorInBasis([D("x"), D("y"), D("o")], np.array([[3.0, 1.0, 0.0], [1.0, 4.0, 9.0]]))
    out = mlp.apply(x)
    np.testing.assert_array_equal(out.project(_space("o")).magnitudes, [[2], [6]])
    np.testing.assert_array_equal(out.project(_space("x", "y")).magnitudes, np.zeros((2, 2)))


def test_mlp_checks_hidden_spaces_match():
    with pytest.raises(ValueError, match="hidden"):
        transformers.MLP(
            vectorspace_fns.Linear(_space("x"), _space("h1"), np.ones((1, 1))),
            vectorspace_fns.Linear(_space("h2"), _space("o"), np.ones((1, 1))),
        )


def test_mlp_combine_in_parallel_concatenates_hidden():
    first = _mlp("x", ["h1"], "o", [[1]], [[1]])
    second = _mlp("y", ["h2"], "o", [[1]], [[10]])
    both = transformers.MLP.combine_in_parallel([first, second])
    assert both.hidden_space.basis == (D("h1"), D("h2"))
    x = bases.VectorInBasis([D("x"), D("y")], np.array([2.0, 3.0]))
    np.testing.assert_array_equal(both.apply(x).project(_space("o")).magnitudes, [32])
    with pytest.raises(ValueError, match="h1"):
        transformers.MLP.combine_in_parallel([first, first])


def _head(causal=False):
    # logits[q, k] = 2 * q_a * k_b ; value: b -> o
    w_qk = vectorspace_fns.ScalarBilinear(_space("a"), _space("b"), np.array([[2.0]]))
    w_ov = vectorspace_fns.Linear(_space("b"), _space("o"), np.array([[1.0]]))
    return transformers.AttentionHead(w_qk, w_ov, causal=causal)


def test_attention_head_softmax_without_scaling():
    head = _head()
    # positions: (a, b) = (1, 0), (0, 1), (1, 1)
    x = bases.VectorInBasis([D("a"), D("b")], np.array([[1.0, 0], [0, 1], [1, 1]]))
    logits = head.attn_logits(x)
    np.testing.assert_array_equal(logits, [[0, 2, 2], [0, 0, 0], [0, 2, 2]])
    e2 = np.exp(2.0)
    expected_q0 = (0 * 1 + 1 * e2 + 1 * e2) / (1 + 2 * e2)
    out = head.apply(x).project(_space("o")).magnitudes[:, 0]
    np.testing.assert_allclose(out, [expected_q0, 2 / 3, expected_q0])


def test_attention_head_causal_mask():
    head = _head(causal=True)
    x = bases.VectorInBasis([D("a"), D("b")], np.array([[1.0, 0], [0, 1], [1, 1]]))
    weights = head.attn_weights(x)
    assert weights[0, 1] == weights[0, 2] == weights[1, 2] == 0.0
    np.testing.assert_allclose(weights[0], [1, 0, 0])
    e2 = np.exp(2.0)
    np.testing.assert_allclose(weights[2], [1 / (1 + 2 * e2), e2 / (1 + 2 * e2), e2 / (1 + 2 * e2)])


def test_attention_head_batched():
    head = _head()
    x = np.array([[[1.0, 0], [0, 1]], [[0, 1], [1, 0]]])
    out = head.apply(bases.VectorInBasis([D("a"), D("b")], x))
    single = head.apply(bases.VectorInBasis([D("a"), D("b")], x[1]))
    np.testing.assert_allclose(out.magnitudes[1], single.magnitudes)


def test_multi_attention_head_sums_heads():
    one, two = _head(), _head(causal=True)
    multi = transformers.MultiAttentionHead([one, two.as_multi()])
    assert list(multi.heads()) == [one, two] and multi.num_heads == 2
    assert one.as_multi().sub_blocks == (one,) and multi.as_multi() is multi
    x = bases.VectorInBasis([D("a"), D("b")], np.array([[1.0, 0], [0, 1]]))
    expected = one.apply(x).magnitudes + two.apply(x).magnitudes
    np.testing.assert_allclose(multi.apply(x).project(one.residual_space).magnitudes, expected)


def test_series_adds_each_output_to_the_residual():
    double = _mlp("x", ["h"], "y", [[1]], [[2]])  # y += 2 relu(x)
    shift = _mlp("y", ["g"], "z", [[1]], [[1]])  # z += relu(y)
    series = transformers.SeriesWithResiduals([double, shift])
    x = bases.VectorInBasis([D("x")], np.array([3.0]))
    out = series.apply(x)
    assert out.project(_space("x", "y", "z")).magnitudes.tolist() == [3, 6, 6]
    nested = transformers.SeriesWithResiduals([series, double])
    assert nested.apply(x).project(_space("x", "y", "z")).magnitudes.tolist() == [3, 12, 6]


def test_blocks_check_their_spaces_fit_the_residual():
    with pytest.raises(ValueError, match="residual_space"):
        transformers.MLP(
            vectorspace_fns.Linear(_space("x"), _space("h"), np.ones((1, 1))),
            vectorspace_fns.Linear(_space("h"), _space("o"), np.ones((1, 1))),
            residual_space=_space("x"),
        )
