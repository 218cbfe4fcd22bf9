"""Tests for tracr.rasp.causal_eval: every selector masked to its lower triangle."""

from __future__ import annotations

import operator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracr.rasp import causal_eval, rasp

T, F = True, False


def _select(keys, queries, comparison):
    return rasp.Select(keys, queries, comparison)


def test_select_is_masked_to_lower_triangle():
    select = _select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)
    assert causal_eval.evaluate(select, "abc") == [[T, F, F], [T, T, F], [T, T, T]]
    # Full EQ on "aba" is [[T, F, T], [F, T, F], [T, F, T]]; the key above the diagonal goes.
    select = _select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    assert causal_eval.evaluate(select, "aba") == [[T, F, F], [F, T, F], [T, F, T]]
    assert rasp.evaluate(select, "aba") == [[T, F, T], [F, T, F], [T, F, T]]


def test_length_stays_the_full_length():
    assert causal_eval.evaluate(rasp.length, "abcd") == [4, 4, 4, 4]
    # Counting with a selector, in contrast, sees only the prefix.
    width = rasp.SelectorWidth(_select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE))
    assert causal_eval.evaluate(width, "abcd") == [1, 2, 3, 4]
    assert rasp.evaluate(width, "abcd") == [4, 4, 4, 4]


def test_sops_without_selectors_are_unchanged():
    sop = rasp.tokens * 2 + rasp.indices
    assert causal_eval.evaluate(sop, [1, 1, 1]) == [2, 3, 4]


def test_numerical_aggregate_is_a_prefix_mean():
    select_all = _select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)
    mean = rasp.numerical(rasp.Aggregate(select_all, rasp.tokens, default=0))
    # Prefix means of [2, 4, 0]: 2, (2 + 4) / 2, (2 + 4 + 0) / 3.
    assert causal_eval.evaluate(mean, [2, 4, 0]) == [2, 3.0, 2.0]
    assert rasp.evaluate(mean, [2, 4, 0]) == [2.0, 2.0, 2.0]


def test_reverse_needs_keys_from_the_future():
    opp_index = rasp.length - rasp.indices - 1
    reverse = rasp.Aggregate(_select(rasp.indices, opp_index, rasp.Comparison.EQ), rasp.tokens)
    assert rasp.evaluate(reverse, [1, 2, 3]) == [3, 2, 1]
    # Query 0 wants key 2, which is in its future: nothing selected, the default None.
    assert causal_eval.evaluate(reverse, [1, 2, 3]) == [None, 2, 1]


def test_inner_selectors_are_masked_too():
    # ~FALSE is all True before masking; after masking only the lower triangle.
    nothing = _select(rasp.tokens, rasp.tokens, rasp.Comparison.FALSE)
    assert causal_eval.evaluate(rasp.SelectorNot(nothing), "ab") == [[T, F], [T, T]]
    everything = _select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)
    either = rasp.SelectorOr(nothing, everything)
    assert causal_eval.evaluate(either, "ab") == [[T, F], [T, T]]
    constant = rasp.ConstantSelector([[T, T], [T, T]])
    assert causal_eval.evaluate(constant, "ab") == [[T, F], [T, T]]


def test_causal_result_differs_from_full_after_two_attention_layers():
    # Mean of the means: at the last position the full evaluator averages the full means
    # (1, 1, 1) of [0, 0, 3], the causal one the prefix means (0, 0, 1).
    select_all = _select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)
    inner = rasp.numerical(rasp.Aggregate(select_all, rasp.tokens, default=0))
    outer_select = _select(rasp.indices, rasp.indices, rasp.Comparison.TRUE)
    outer = rasp.numerical(rasp.Aggregate(outer_select, inner, default=0))
    assert rasp.evaluate(outer, [0, 0, 3]) == [1.0, 1.0, 1.0]
    assert causal_eval.evaluate(outer, [0, 0, 3])[-1] == pytest.approx(1 / 3)


def test_mask_lower_triangle():
    assert causal_eval.mask_lower_triangle([[T, T, T], [T, T, T]]) == [[T, F, F], [T, T, F]]
    assert causal_eval.mask_lower_triangle([[1, 0], [0, 1]]) == [[T, F], [F, T]]
    assert causal_eval.mask_lower_triangle([]) == []


def test_causal_evaluator_is_an_evaluator():
    evaluator = causal_eval.CausalEvaluator()
    assert isinstance(evaluator, rasp.DefaultRASPEvaluator)
    assert isinstance(evaluator, rasp.RASPEvaluator)
    assert evaluator.evaluate(rasp.indices, "ab") == [0, 1]


def test_causal_errors_match_the_default_evaluator():
    bad = rasp.Map(lambda x: 1 // x, rasp.tokens)
    with pytest.raises(rasp.EvaluationError, match=bad.label):
        causal_eval.evaluate(bad, [1, 0])


# ---------------------------------------------------------------------------------------------
# Properties over random programs that do not use `length`.

MAP_FUNCTIONS = st.sampled_from([lambda x: x + 1, lambda x: 2 * x, lambda x: x % 3, operator.neg])
PAIR_FUNCTIONS = st.sampled_from([operator.add, operator.sub, max, min])
COMPARISONS = st.sampled_from(list(rasp.Comparison))
INPUTS = st.lists(st.integers(min_value=-3, max_value=3), min_size=1, max_size=6)


def _mean(selector: rasp.Selector, sop: rasp.SOp) -> rasp.SOp:
    return rasp.numerical(rasp.Aggregate(selector, sop, default=0))


def _pointwise_sops() -> st.SearchStrategy[rasp.SOp]:
    """SOps computed position by position from tokens and indices (no attention)."""
    return st.recursive(
        st.sampled_from([rasp.tokens, rasp.indices]),
        lambda inner: st.one_of(
            st.builds(rasp.Map, MAP_FUNCTIONS, inner),
            st.builds(rasp.SequenceMap, PAIR_FUNCTIONS, inner, inner),
        ),
        max_leaves=4,
    )


def _selectors_over(sops: st.SearchStrategy[rasp.SOp]) -> st.SearchStrategy[rasp.Selector]:
    return st.recursive(
        st.builds(_select, sops, sops, COMPARISONS),
        lambda inner: st.one_of(
            st.builds(rasp.SelectorAnd, inner, inner),
            st.builds(rasp.SelectorOr, inner, inner),
            st.builds(rasp.SelectorNot, inner),
        ),
        max_leaves=3,
    )


def _one_layer_programs() -> st.SearchStrategy[rasp.SOp]:
    """Programs whose selectors and aggregated values are computed without attention."""
    sops = _pointwise_sops()
    selectors = _selectors_over(sops)
    attention = st.one_of(
        st.builds(_mean, selectors, sops), st.builds(rasp.SelectorWidth, selectors)
    )
    return st.recursive(
        st.one_of(attention, sops),
        lambda inner: st.one_of(
            st.builds(rasp.Map, MAP_FUNCTIONS, inner),
            st.builds(rasp.SequenceMap, PAIR_FUNCTIONS, inner, inner),
        ),
        max_leaves=3,
    )


def _deep_programs() -> st.SearchStrategy[rasp.SOp]:
    """Programs with attention at any depth."""

    def extend(inner: st.SearchStrategy[rasp.SOp]) -> st.SearchStrategy[rasp.SOp]:
        selectors = st.builds(_select, inner, inner, COMPARISONS)
        return st.one_of(
            st.builds(rasp.Map, MAP_FUNCTIONS, inner),
            st.builds(rasp.SequenceMap, PAIR_FUNCTIONS, inner, inner),
            st.builds(_mean, selectors, inner),
            st.builds(rasp.SelectorWidth, selectors),
        )

    return st.recursive(st.sampled_from([rasp.tokens, rasp.indices]), extend, max_leaves=8)


@settings(deadline=None, max_examples=200)
@given(_selectors_over(_pointwise_sops()), INPUTS)
def test_causal_selector_is_masked_full_selector(selector, xs):
    full = rasp.evaluate(selector, xs)
    expected = [[full[q][k] and k <= q for k in range(len(xs))] for q in range(len(xs))]
    assert causal_eval.evaluate(selector, xs) == expected


@settings(deadline=None, max_examples=200)
@given(_one_layer_programs(), INPUTS)
def test_causal_equals_full_at_last_position_for_one_attention_layer(program, xs):
    assert causal_eval.evaluate(program, xs)[-1] == rasp.evaluate(program, xs)[-1]


@settings(deadline=None, max_examples=200)
@given(_deep_programs(), INPUTS)
def test_causal_value_at_a_position_depends_only_on_the_prefix(program, xs):
    out = causal_eval.evaluate(program, xs)
    for end in range(1, len(xs) + 1):
        assert causal_eval.evaluate(program, xs[:end]) == out[:end]


def test_length_breaks_prefix_independence():
    # The one non-causal primitive: the same prefix sees different lengths.
    assert causal_eval.evaluate(rasp.length, [1, 2]) == [2, 2]
    assert causal_eval.evaluate(rasp.length, [1]) == [1]
