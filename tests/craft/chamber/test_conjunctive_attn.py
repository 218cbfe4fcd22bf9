"""conjunctive_attn: every assignment of values to sequences up to length 4 for
conjunctions of 2 and 3 terms (shared query / key spaces, query = key SOp, None values),
and length-64 sequences over ~20-value SOps, through craft, float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest

from tests.craft import blocks
from tests.craft.chamber import conjunction_cases as cases
from tracr.craft import bases
from tracr.craft.chamber import categorical_attn

D = bases.BasisDirection
VVALS = ["x", "y", "z"]


def _head(terms, numerical, max_seq_len, causal, vvals=VVALS):
    out = bases.VectorSpaceWithBasis([D("o")]) if numerical else cases.space("o", vvals)
    value_space = bases.VectorSpaceWithBasis([D("v")]) if numerical else cases.space("v", vvals)
    head = categorical_attn.conjunctive_attn(
        terms,
        value_space,
        out,
        blocks.BOS_SPACE,
        blocks.ONE_SPACE,
        max_seq_len=max_seq_len,
        causal=causal,
    )
    return head, out


def _check(head, out, idx, values, selected, numerical, vvals=VVALS, sop_values=None):
    """values: [batch, length] numbers (numerical) or indices into vvals."""
    residual = blocks.residual_with(head, out)
    x = cases.embed(residual, idx, sop_values or cases.SOP_VALUES)
    batch, length = values.shape
    b, p = np.indices((batch, length))
    if numerical:
        x[:, 1:, residual.index(D("v"))] = values
        per_key = values[..., None]  # [batch, key, 1]
    else:
        x[b, 1 + p, residual.indices(cases.space("v", vvals).basis)[values]] = 1.0
        per_key = np.eye(len(vvals))[values]  # [batch, key, len(vvals)]
    counts = selected.sum(-1, keepdims=True)  # [batch, query, 1]
    expected = np.zeros((batch, 1 + length, out.num_dims))
    expected[:, 1:] = (selected @ per_key) / np.maximum(counts, 1)
    cols = residual.indices(out.basis)
    for result in blocks.run_all(head, x, residual).values():
        blocks.assert_numbers(result[..., cols], expected)
        assert np.all(np.delete(result, cols, axis=-1) == 0)
    weights = head.attn_weights(residual.make_vector(x).project(head.residual_space))
    intended = np.zeros(weights.shape, bool)
    intended[:, 1:, 1:] = selected
    intended[:, 1:, 0] = counts[..., 0] == 0  # BOS fallback
    intended[:, 0, 0] = True
    assert np.all(np.where(intended, 0.0, weights).sum(-1) <= 1e-9)


@pytest.mark.parametrize("case", sorted(cases.CASES))
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("numerical", [False, True])
def test_every_assignment_up_to_length_four(case, causal, numerical):
    spec = cases.CASES[case]
    head, out = _head(cases.make_terms(spec), numerical, 4, causal)
    for length in (1, 2, 3, 4):
        idx = cases.every_assignment(cases.sops_of(spec), length)
        batch = next(iter(idx.values())).shape[0]
        if numerical:
            values = np.broadcast_to(-2.5 + 3.0 * np.arange(length), (batch, length))
        else:
            values = np.broadcast_to(np.arange(length) % len(VVALS), (batch, length))
        selected = cases.selection(spec, idx, causal)
        _check(head, out, idx, values, selected, numerical)


LARGE_PREDICATES = {
    "gt": lambda q, k: q > k,
    "eq": lambda q, k: q == k,
    "not_mod3": lambda q, k: (q + k) % 3 != 0,
}
LARGE_SPEC = [("idx", "idx", "gt"), ("tok", "tok", "eq"), ("grp", "tok", "not_mod3")]


def _large_inputs(rng):
    """Random sequences, plus the worst cases for leakage: every key meeting all terms
    but one (so nothing is selected), and every key but one meeting all terms but one."""
    n = 64
    tok = rng.integers(0, 4, (6, n))
    grp = rng.integers(0, 18, (6, n))
    tok[3], grp[3] = 7, 2  # (2 + 7) % 3 == 0: only the last term fails everywhere
    tok[4], grp[4] = 7, 1  # all terms hold for every earlier key
    tok[5], grp[5] = 7, 2
    tok[5, 0] = 8  # ... for key 0 only, for queries with tok = 8 (position 0: none)
    tok[5, 40] = 8  # query 40 selects key 0 alone; all other keys meet 2 of 3 terms
    return {"idx": np.broadcast_to(np.arange(n), (6, n)), "tok": tok, "grp": grp}


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("numerical", [False, True])
def test_length_64_over_20_values(causal, numerical):
    rng = np.random.default_rng(11)
    vvals = list(range(20))
    terms = cases.make_terms(LARGE_SPEC, cases.LARGE_SOP_VALUES, LARGE_PREDICATES)
    head, out = _head(terms, numerical, 64, causal, vvals)
    idx = _large_inputs(rng)
    values = rng.normal(0, 10, (6, 64)) if numerical else rng.integers(0, 20, (6, 64))
    selected = cases.selection(LARGE_SPEC, idx, causal, cases.LARGE_SOP_VALUES, LARGE_PREDICATES)
    assert not selected[3].any() and selected[4].sum() == 64 * 63 // 2
    assert selected[5, 40].sum() == 1
    _check(head, out, idx, values, selected, numerical, vvals, cases.LARGE_SOP_VALUES)


def _logits(head, x, dtype):
    """Logits [batch, seq, seq] at dtype with the weights laid out as an assembled model
    holds them: W_Q = W_qk (rows of its left space), W_K = identity on its right space."""
    qk, residual = head.w_qk, head.residual_space
    w_q = np.zeros((residual.num_dims, qk.right_space.num_dims))
    w_q[residual.indices(qk.left_space.basis)] = qk.matrix
    w_k = np.zeros_like(w_q)
    w_k[residual.indices(qk.right_space.basis), np.arange(qk.right_space.num_dims)] = 1.0
    x = x.astype(dtype)
    return (x @ w_q.astype(dtype)) @ np.swapaxes(x @ w_k.astype(dtype), -1, -2)


def test_scores_of_full_partial_and_bos():
    spec = cases.THREE_TERMS["shared_query_and_key"]  # a_q > a_k, b_q = b_k, b_q <= a_k
    head, _ = _head(cases.make_terms(spec), True, 4, False)
    c = categorical_attn.score_coldness(categorical_attn.attention_coldness(4))
    residual = head.residual_space
    # query 1 is (a=2, b=1); keys 1..5 meet 2, 3, 1, 1, 2 of its terms; BOS gets 2.5c
    idx = {"a": np.array([[2, 1, 0, 2, 2]]), "b": np.array([[1, 1, 0, 0, 1]])}
    x = cases.embed(residual, idx)
    logits = head.attn_logits(residual.make_vector(x))[0]
    np.testing.assert_array_equal(logits[1], c * np.array([2.5, 2, 3, 1, 1, 2]))
    np.testing.assert_array_equal(logits[0], [3.5 * c, 0, 0, 0, 0, 0])


def test_float32_logits_are_exact_for_many_terms():
    """Eight terms over eight SOps: a selected key's logit is a sum of eight entries. On
    the score grid every summation order gives exactly 8c in float32 (with c off the grid,
    float32 matmuls give selected keys logits an ulp apart, weights 3e-5 apart)."""
    names = "pqrstuvw"
    sops = {s: tuple(range(7)) for s in names}
    spec = [(s, s, "eq") for s in names]
    head, _ = _head(cases.make_terms(spec, sops), True, 100, False)
    c = categorical_attn.score_coldness(categorical_attn.attention_coldness(100))
    rng = np.random.default_rng(5)
    base = rng.integers(0, 7, (2, 100))
    idx = {s: base for s in names}
    idx["w"] = np.where(rng.random((2, 100)) < 0.7, base, (base + 1) % 7)  # partial matches
    x = cases.embed(head.residual_space, idx, sops)
    selected = cases.selection(spec, idx, False, sops)
    assert selected.sum() > 1000 and (~selected).sum() > 1000
    for dtype in (np.float32, np.float64):
        logits = _logits(head, x, dtype)[:, 1:, 1:]
        assert np.all(logits[selected] == 8 * c)
        assert np.all(logits[~selected] <= 7 * c)
    assert np.all(head.w_qk.matrix * 8 == np.round(head.w_qk.matrix * 8))


def test_single_term_wrapper_is_the_one_term_conjunction():
    q, k = cases.space("q", [0, 1, 2]), cases.space("k", [1, 2])
    v, o = cases.space("v", VVALS), cases.space("o", VVALS)
    fn = cases.PREDICATES["leq"]
    args = (v, o, blocks.BOS_SPACE, blocks.ONE_SPACE)
    single = categorical_attn.categorical_attn(q, k, *args, fn, max_seq_len=9, causal=True)
    term = categorical_attn.AttnTerm(q, k, fn)
    general = categorical_attn.conjunctive_attn([term], *args, max_seq_len=9, causal=True)
    assert single.causal and general.causal
    assert single.w_qk.left_space == general.w_qk.left_space
    assert single.w_qk.right_space == general.w_qk.right_space
    np.testing.assert_array_equal(single.w_qk.matrix, general.w_qk.matrix)
    np.testing.assert_array_equal(single.w_ov.matrix, general.w_ov.matrix)


def test_shared_blocks_accumulate_and_term_order_does_not_matter():
    spec = cases.CASES["identical_spaces"] + [("a", "b", "gt")]
    forward, _ = _head(cases.make_terms(spec), True, 5, False)
    backward, _ = _head(cases.make_terms(spec[::-1]), True, 5, False)
    np.testing.assert_array_equal(forward.w_qk.matrix, backward.w_qk.matrix)
    assert forward.w_qk.right_space == backward.w_qk.right_space
    c = categorical_attn.score_coldness(categorical_attn.attention_coldness(5))
    left, right = forward.w_qk.left_space, forward.w_qk.right_space
    a_a = forward.w_qk.matrix[
        np.ix_(
            left.indices(cases.space("a", [0, 1, 2]).basis),
            right.indices(cases.space("a", [0, 1, 2]).basis),
        )
    ]
    # [a_q <= a_k] + [a_q != a_k]: 2c above the diagonal, c on and below it
    np.testing.assert_array_equal(a_a, c * np.array([[1, 2, 2], [1, 1, 2], [1, 1, 1]]))


def test_empty_and_malformed_terms_are_refused():
    args = (cases.space("v", VVALS), cases.space("o", VVALS), blocks.BOS_SPACE, blocks.ONE_SPACE)
    with pytest.raises(ValueError, match="at least one"):
        categorical_attn.conjunctive_attn([], *args, max_seq_len=3)
    with pytest.raises(TypeError, match=r"terms\[0\]"):
        categorical_attn.conjunctive_attn([("q", "k", None)], *args, max_seq_len=3)
    with pytest.raises(TypeError, match="query_space"):
        categorical_attn.AttnTerm("q", cases.space("k", [0]), cases.PREDICATES["eq"])
    with pytest.raises(TypeError, match="attn_fn"):
        categorical_attn.AttnTerm(cases.space("q", [0]), cases.space("k", [0]), None)
    good = categorical_attn.AttnTerm(cases.space("q", [0]), cases.space("k", [0]), min)
    bad = categorical_attn.AttnTerm(cases.space("q", [0]), blocks.BOS_SPACE, min)
    with pytest.raises(ValueError, match="bos"):
        categorical_attn.conjunctive_attn([good, bad], *args, max_seq_len=3)
