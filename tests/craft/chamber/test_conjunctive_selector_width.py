"""conjunctive_selector_width: every assignment of values to sequences up to length 4 for
conjunctions of 2 and 3 terms, and every width 0..64 at max_seq_len 64 over ~20-value
SOps, categorical and numerical, through craft, float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest

from tests.craft import blocks
from tests.craft.chamber import conjunction_cases as cases
from tracr.craft import bases, transformers
from tracr.craft.chamber import categorical_attn, selector_width

D = bases.BasisDirection


def _block(terms, categorical, n, causal=False):
    out = cases.space("w", range(n + 1)) if categorical else bases.VectorSpaceWithBasis([D("w")])
    block = selector_width.conjunctive_selector_width(
        terms,
        out,
        blocks.BOS_SPACE,
        blocks.ONE_SPACE,
        range(n + 1),
        categorical,
        max_seq_len=n,
        causal=causal,
        hidden_name="sw_",
    )
    return block, out


def _check(block, out, idx, selected, categorical, sop_values=cases.SOP_VALUES):
    residual = blocks.residual_with(block, out)
    x = cases.embed(residual, idx, sop_values)
    widths = np.zeros(x.shape[:2], np.int64)
    widths[:, 1:] = selected.sum(-1)
    t = residual.index(selector_width.attn_output_direction("sw_"))
    cols = residual.indices(out.basis)
    for result in blocks.run_all(block, x, residual).values():
        if categorical:
            expected_cols = widths.copy()
            expected_cols[:, 0] = -1  # BOS writes nothing
            blocks.assert_one_hot(result[..., cols].reshape(-1, len(cols)), expected_cols.ravel())
        else:
            expected = widths.astype(float)
            expected[:, 0] = 0.0
            blocks.assert_numbers(result[..., cols[0]], expected)
        # t = 1/(w+1) up to the head's leakage; at BOS the cleanup leaves only the
        # weight BOS leaks to the (at most n) other keys, <= n e^(-2c).
        n = x.shape[1] - 1
        c = categorical_attn.score_coldness(selector_width.selector_width_coldness(4))
        assert np.all(np.abs(result[:, 0, t] + x[:, 0, t]) <= n * np.exp(-2 * c) + 1e-6)
        exact_t = 1 / (widths[:, 1:] + 1)
        leak = selector_width.WIDTH_LEAKAGE * exact_t**2
        assert np.all(np.abs(result[:, 1:, t] - exact_t) <= leak + 1e-6 * exact_t)


@pytest.mark.parametrize("case", sorted(cases.CASES))
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("categorical", [True, False])
def test_every_assignment_up_to_length_four(case, causal, categorical):
    spec = cases.CASES[case]
    block, out = _block(cases.make_terms(spec), categorical, 4, causal)
    for length in (1, 2, 3, 4):
        idx = cases.every_assignment(cases.sops_of(spec), length)
        _check(block, out, idx, cases.selection(spec, idx, causal), categorical)


LARGE_PREDICATES = {
    "gt": lambda q, k: q > k,
    "eq": lambda q, k: q == k,
    "leq": lambda q, k: q <= k,
}
LARGE_SPEC = [("idx", "idx", "gt"), ("tok", "tok", "eq"), ("grp", "tok", "leq")]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("categorical", [True, False])
def test_every_width_at_max_seq_len_64(causal, categorical):
    n = 64
    terms = cases.make_terms(LARGE_SPEC, cases.LARGE_SOP_VALUES, LARGE_PREDICATES)
    block, out = _block(terms, categorical, n, causal)
    rng = np.random.default_rng(13)
    tok = rng.integers(0, 3, (5, n))
    grp = rng.integers(0, 3, (5, n))
    tok[0], grp[0] = 5, 4  # every earlier key: widths 0..63
    tok[1], grp[1] = 5, 6  # every key meets 2 of 3 terms at most: width 0
    tok[2], grp[2] = 19, np.arange(n) % 18  # widths 0..63 again, with a varying grp
    idx = {"idx": np.broadcast_to(np.arange(n), (5, n)), "tok": tok, "grp": grp}
    selected = cases.selection(LARGE_SPEC, idx, causal, cases.LARGE_SOP_VALUES, LARGE_PREDICATES)
    np.testing.assert_array_equal(selected[0].sum(-1), np.arange(n))
    assert not selected[1].any()
    _check(block, out, idx, selected, categorical, cases.LARGE_SOP_VALUES)


def test_single_term_wrapper_is_the_one_term_conjunction():
    q, k = cases.space("q", [0, 1, 2]), cases.space("k", [1, 2])
    fn = cases.PREDICATES["leq"]
    out = cases.space("w", range(6))
    aux = (blocks.BOS_SPACE, blocks.ONE_SPACE)
    kwargs = dict(max_seq_len=5, causal=True, hidden_name="h")
    single = selector_width.selector_width(q, k, out, *aux, fn, range(6), True, **kwargs)
    term = categorical_attn.AttnTerm(q, k, fn)
    general = selector_width.conjunctive_selector_width([term], out, *aux, range(6), True, **kwargs)
    for a, b in zip(single.blocks, general.blocks):
        assert type(a) is type(b)
        if isinstance(a, transformers.AttentionHead):
            assert a.causal and b.causal
            np.testing.assert_array_equal(a.w_qk.matrix, b.w_qk.matrix)
            np.testing.assert_array_equal(a.w_ov.matrix, b.w_ov.matrix)
        else:
            np.testing.assert_array_equal(a.fst.matrix, b.fst.matrix)
            np.testing.assert_array_equal(a.snd.matrix, b.snd.matrix)


def test_bos_scores_like_a_full_match():
    spec = cases.THREE_TERMS["three_sops"]
    block, _ = _block(cases.make_terms(spec), False, 4)
    head = block.blocks[0]
    c = categorical_attn.score_coldness(selector_width.selector_width_coldness(4))
    qk = head.w_qk
    one, bos = qk.left_space.index(blocks.ONE), qk.left_space.index(blocks.BOS)
    assert qk.matrix[one, qk.right_space.index(blocks.BOS)] == 3 * c
    assert qk.matrix[bos, qk.right_space.index(blocks.BOS)] == c
    terms_block = np.delete(qk.matrix, [one, bos], axis=0)
    assert set(np.unique(terms_block)) == {0, c}  # three terms over distinct space pairs


def test_empty_terms_are_refused():
    with pytest.raises(ValueError, match="at least one"):
        _block([], True, 3)
