"""Tests for tracr.rasp.rasp: the language, its annotations and the default evaluator.

Expected values are worked out by hand in the comments or the tables, never by the code under test.
"""

from __future__ import annotations

import itertools
import logging
import operator
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracr.rasp import rasp

T, F = True, False
ALL_COMPARISONS = list(rasp.Comparison)


# ---------------------------------------------------------------------------------------------
# Primitives.


@pytest.mark.parametrize(
    ("xs", "tokens", "indices", "length"),
    [
        ("hello", list("hello"), [0, 1, 2, 3, 4], [5, 5, 5, 5, 5]),
        ("h", ["h"], [0], [1]),
        ([1, 2], [1, 2], [0, 1], [2, 2]),
        ([0.1, 0.2], [0.1, 0.2], [0, 1], [2, 2]),
        ((7, 7, 7), [7, 7, 7], [0, 1, 2], [3, 3, 3]),
        ([], [], [], []),
    ],
)
def test_primitives(xs, tokens, indices, length):
    assert rasp.tokens(xs) == tokens
    assert rasp.indices(xs) == indices
    assert rasp.length(xs) == length
    assert rasp.evaluate(rasp.tokens, xs) == tokens


def test_primitive_types_and_labels():
    assert isinstance(rasp.tokens, rasp.TokensType)
    assert isinstance(rasp.indices, rasp.IndicesType)
    assert isinstance(rasp.length, rasp.LengthType)
    for prim, label in [
        (rasp.tokens, "tokens"),
        (rasp.indices, "indices"),
        (rasp.length, "length"),
    ]:
        assert isinstance(prim, rasp.SOp)
        assert isinstance(prim, rasp.RASPExpr)
        assert prim.label == label
        assert prim.name == label
        assert repr(prim) == label
        assert list(prim.children) == []


def test_evaluation_returns_fresh_list():
    xs = [1, 2, 3]
    out = rasp.tokens(xs)
    out.append(4)
    assert xs == [1, 2, 3]


# ---------------------------------------------------------------------------------------------
# Map, SequenceMap, LinearSequenceMap, Full, ConstantSOp.


@pytest.mark.parametrize(
    ("f", "xs", "expected"),
    [
        (lambda x: x + "a", "hello", ["ha", "ea", "la", "la", "oa"]),
        (lambda x: x + 1, [1, 2], [2, 3]),
        (lambda x: x / 2, [0.5, 3], [0.25, 1.5]),
        (lambda x: x % 3, [5, 6, 7], [2, 0, 1]),
    ],
)
def test_map(f, xs, expected):
    assert rasp.Map(f, rasp.tokens)(xs) == expected


def test_map_leaves_none_alone():
    calls = []

    def f(x):
        calls.append(x)
        return x * 10

    assert rasp.Map(f, rasp.ConstantSOp([1, None, 3]))([0, 0, 0]) == [10, None, 30]
    assert calls == [1, 3]


def test_map_of_map_is_merged_by_default():
    sop = ((rasp.tokens * 2) + 2) / 2
    assert isinstance(sop, rasp.Map)
    assert sop.inner is rasp.tokens
    # (1 * 2 + 2) / 2 = 2; (4 * 2 + 2) / 2 = 5
    assert sop([1, 4]) == [2, 5]


def test_map_without_simplify_keeps_both_maps():
    inner = rasp.tokens * 2
    sop = rasp.Map(lambda x: x + 2, inner, simplify=False)
    assert sop.inner is inner
    assert sop.children == [inner]
    assert sop([1]) == [4]


def test_merged_map_keeps_the_none_rule():
    # The inner function gives None for 0; the outer one would fail on None.
    inner = rasp.Map(lambda x: None if x == 0 else x, rasp.tokens)
    merged = rasp.Map(lambda x: x + 1, inner)
    unmerged = rasp.Map(lambda x: x + 1, inner, simplify=False)
    assert merged.inner is rasp.tokens
    assert merged([0, 1, 2]) == [None, 2, 3]
    assert unmerged([0, 1, 2]) == [None, 2, 3]


@pytest.mark.parametrize(
    ("f", "xs", "expected"),
    [
        (lambda x, y: x + y, "hey", ["hh", "ee", "yy"]),
        (lambda x, y: x + y, [1, 2], [2, 4]),
        (lambda x, y: x * y, [1, 2, 3], [1, 4, 9]),
    ],
)
def test_sequence_map_same_input(f, xs, expected):
    assert rasp.SequenceMap(f, rasp.tokens, rasp.tokens)(xs) == expected


def test_sequence_map_two_inputs_in_order():
    # tokens - indices on [5, 5, 5] = [5, 4, 3]; the reverse order would be [-5, -4, -3].
    sop = rasp.SequenceMap(lambda x, y: x - y, rasp.tokens, rasp.indices)
    assert sop.children == [rasp.tokens, rasp.indices]
    assert sop([5, 5, 5]) == [5, 4, 3]


def test_sequence_map_none_in_either_input_gives_none():
    fst = rasp.ConstantSOp([1, None, 3, None])
    snd = rasp.ConstantSOp([10, 20, None, None])
    assert rasp.SequenceMap(operator.add, fst, snd)([0] * 4) == [11, None, None, None]


def test_sequence_map_with_same_input_logs_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        rasp.SequenceMap(operator.add, rasp.tokens, rasp.tokens)
    assert "Map" in caplog.text


@pytest.mark.parametrize(
    ("fst_fac", "snd_fac", "expected"),
    # tokens = [1, 2], indices = [0, 1]: fst_fac * t + snd_fac * i
    [(1, 1, [1, 3]), (1, -1, [1, 1]), (2, -3, [2, 1]), (0.5, 0, [0.5, 1.0])],
)
def test_linear_sequence_map(fst_fac, snd_fac, expected):
    sop = rasp.LinearSequenceMap(rasp.tokens, rasp.indices, fst_fac, snd_fac)
    assert isinstance(sop, rasp.SequenceMap)
    assert (sop.fst_fac, sop.snd_fac) == (fst_fac, snd_fac)
    assert sop([1, 2]) == expected


def test_full():
    assert rasp.Full(7)("abc") == [7, 7, 7]
    assert rasp.Full("x")([]) == []
    assert rasp.Full(7).fill == 7


@pytest.mark.parametrize(
    ("const", "xs", "expected"),
    [
        ([5, 5, 5, 5, 5], "hello", [5, 5, 5, 5, 5]),
        (["e"], "h", ["e"]),
        ([1, 2, 3, 4, 5], list("hello"), [1, 2, 3, 4, 5]),
        ((2, 1), [1, 2], [2, 1]),
    ],
)
def test_constant_sop(const, xs, expected):
    assert rasp.ConstantSOp(const)(xs) == expected


def test_constant_sop_checks_length():
    with pytest.raises(ValueError, match=r"Constant len 3 doesn't match input len 13"):
        rasp.ConstantSOp([1, 2, 3])("longer string")
    assert rasp.ConstantSOp([1, 2, 3], check_length=False)("longer string") == [1, 2, 3]


def test_sop_not():
    assert rasp.sop_not(rasp.tokens)([True, False, 0, 1]) == [False, True, True, False]


# ---------------------------------------------------------------------------------------------
# Operators on SOps: the reference's table.

TOKENS_012 = [0, 1, 2]
tok, idx, ln = rasp.tokens, rasp.indices, rasp.length
M, SM = rasp.Map, rasp.SequenceMap

OPERATOR_TABLE = [
    # (description, build, input, expected, kind)
    ("tokens < 1", lambda: tok < 1, TOKENS_012, [T, F, F], M),
    ("tokens <= 1", lambda: tok <= 1, TOKENS_012, [T, T, F], M),
    ("tokens == 1", lambda: tok == 1, TOKENS_012, [F, T, F], M),
    ("tokens != 1", lambda: tok != 1, TOKENS_012, [T, F, T], M),
    ("tokens > 1", lambda: tok > 1, TOKENS_012, [F, F, T], M),
    ("tokens >= 1", lambda: tok >= 1, TOKENS_012, [F, T, T], M),
    ("1 < tokens", lambda: 1 < tok, TOKENS_012, [F, F, T], M),
    ("1 > tokens", lambda: 1 > tok, TOKENS_012, [T, F, F], M),
    ("1 == tokens", lambda: 1 == tok, TOKENS_012, [F, T, F], M),
    ("tokens + 1", lambda: tok + 1, TOKENS_012, [1, 2, 3], M),
    ("1 + tokens", lambda: 1 + tok, TOKENS_012, [1, 2, 3], M),
    ("'a' + tokens", lambda: "a" + tok, ["x", "y"], ["ax", "ay"], M),
    ("tokens + 'a'", lambda: tok + "a", ["x", "y"], ["xa", "ya"], M),
    ("tokens - 1", lambda: tok - 1, TOKENS_012, [-1, 0, 1], M),
    ("1 - indices", lambda: 1 - idx, TOKENS_012, [1, 0, -1], M),
    ("tokens * 3", lambda: tok * 3, TOKENS_012, [0, 3, 6], M),
    ("3 * tokens", lambda: 3 * tok, TOKENS_012, [0, 3, 6], M),
    ("tokens / 2", lambda: tok / 2, TOKENS_012, [0.0, 0.5, 1.0], M),
    ("6 / tokens", lambda: 6 / tok, [1, 2, 3], [6.0, 3.0, 2.0], M),
    ("~tokens", lambda: ~tok, [T, F], [F, T], M),
    ("tokens & True", lambda: tok & True, [T, F], [T, F], M),
    ("tokens & False", lambda: tok & False, [T, F], [F, F], M),
    ("tokens | True", lambda: tok | True, [T, F], [T, T], M),
    ("tokens | False", lambda: tok | False, [T, F], [T, F], M),
    ("True & tokens", lambda: True & tok, [T, F], [T, F], M),
    ("False & tokens", lambda: False & tok, [T, F], [F, F], M),
    ("True | tokens", lambda: True | tok, [T, F], [T, T], M),
    ("False | tokens", lambda: False | tok, [T, F], [T, F], M),
    # Python's `and`/`or` return an operand: 0 and x = 0; x and 5 = 5 where x is truthy.
    ("tokens & 5", lambda: tok & 5, [0, 2], [0, 5], M),
    ("0 | tokens", lambda: 0 | tok, [0, 2], [0, 2], M),
    # Ours: `other | sop` is `other or x` (3 or x = 3); the reference would give x or 3.
    ("3 | tokens", lambda: 3 | tok, [0, 2], [3, 3], M),
    # Two SOps: a SequenceMap with the left operand first.
    ("tokens + indices", lambda: tok + idx, TOKENS_012, [0, 2, 4], SM),
    ("tokens - indices", lambda: tok - idx, [5, 5, 5], [5, 4, 3], SM),
    ("indices - tokens", lambda: idx - tok, [5, 5, 5], [-5, -4, -3], SM),
    ("length * length", lambda: ln * ln, TOKENS_012, [9, 9, 9], SM),
    ("tokens / length", lambda: tok / ln, [1, 2], [0.5, 1.0], SM),
    ("length - 1 - indices", lambda: ln - 1 - idx, TOKENS_012, [2, 1, 0], SM),
    ("tokens & indices", lambda: tok & idx, [T, T, F], [0, 1, F], SM),
    ("tokens | indices", lambda: tok | idx, [F, T, F], [0, T, 2], SM),
    # Ours: comparing two SOps compares their values position by position.
    ("tokens == indices", lambda: tok == idx, [0, 5, 2], [T, F, T], SM),
    ("tokens != indices", lambda: tok != idx, [0, 5, 2], [F, T, F], SM),
    ("tokens < indices", lambda: tok < idx, [0, 0, 5], [F, T, F], SM),
    ("tokens <= indices", lambda: tok <= idx, [0, 0, 5], [T, T, F], SM),
    ("tokens > indices", lambda: tok > idx, [0, 0, 5], [F, F, T], SM),
    ("tokens >= indices", lambda: tok >= idx, [0, 0, 5], [T, F, T], SM),
]  # fmt: skip


@pytest.mark.parametrize(
    ("build", "xs", "expected", "kind"),
    [row[1:] for row in OPERATOR_TABLE],
    ids=[row[0] for row in OPERATOR_TABLE],
)
def test_operator_table(build, xs, expected, kind):
    sop = build()
    assert type(sop) is kind
    out = sop(xs)
    assert out == expected
    assert [type(v) for v in out] == [type(v) for v in expected]


def test_operator_with_constant_maps_the_sop_itself():
    sop = rasp.Map(lambda x: x, rasp.tokens, simplify=False)
    assert (1 - sop).inner is sop.inner  # a Map of a Map is merged
    assert (rasp.indices + 1).inner is rasp.indices
    assert (rasp.indices - rasp.tokens).fst is rasp.indices
    assert (rasp.indices - rasp.tokens).snd is rasp.tokens


@pytest.mark.parametrize("op", [operator.add, operator.sub, operator.mul, operator.and_])
def test_operator_between_sop_and_selector_raises_type_error(op):
    select = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    with pytest.raises(TypeError):
        op(rasp.tokens, select)
    with pytest.raises(TypeError):
        op(select, rasp.tokens)


def test_sop_compared_with_selector_is_not_equal():
    select = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    assert (rasp.tokens == select) is False
    assert select not in [rasp.tokens]


def test_sops_are_hashable_by_identity():
    a = rasp.tokens + 1
    b = a.named("b")
    assert {a: 1, b: 2}[a] == 1
    assert len({a, b, a}) == 2


# ---------------------------------------------------------------------------------------------
# Comparisons and Select.


@pytest.mark.parametrize(
    ("comparison", "key", "query", "expected"),
    [
        (rasp.Comparison.EQ, 1, 1, T),
        (rasp.Comparison.EQ, 1, 2, F),
        (rasp.Comparison.LT, 1, 2, T),  # key < query
        (rasp.Comparison.LT, 2, 1, F),
        (rasp.Comparison.LEQ, 2, 2, T),
        (rasp.Comparison.LEQ, 3, 2, F),
        (rasp.Comparison.GT, 2, 1, T),  # key > query
        (rasp.Comparison.GT, 1, 2, F),
        (rasp.Comparison.GEQ, 2, 2, T),
        (rasp.Comparison.GEQ, 1, 2, F),
        (rasp.Comparison.NEQ, 1, 2, T),
        (rasp.Comparison.NEQ, 2, 2, F),
        (rasp.Comparison.TRUE, 1, 2, T),
        (rasp.Comparison.FALSE, 1, 1, F),
    ],
)
def test_comparison_is_called_key_then_query(comparison, key, query, expected):
    assert comparison(key, query) is expected


def test_comparison_values():
    assert [c.value for c in rasp.Comparison] == ["==", "<", "<=", ">", ">=", "!=", "True", "False"]
    assert [c.name for c in rasp.Comparison] == [
        "EQ", "LT", "LEQ", "GT", "GEQ", "NEQ", "TRUE", "FALSE",
    ]  # fmt: skip


@pytest.mark.parametrize("comparison", ALL_COMPARISONS)
def test_comparison_rejects_none(comparison):
    with pytest.raises(ValueError, match="key is None"):
        comparison(None, 1)
    with pytest.raises(ValueError, match="query is None"):
        comparison(1, None)


# m[q][k] = predicate(tokens[k], tokens[q]) on tokens [0, 1, 2].
SELECT_TABLE = {
    rasp.Comparison.EQ: [[T, F, F], [F, T, F], [F, F, T]],
    rasp.Comparison.LT: [[F, F, F], [T, F, F], [T, T, F]],
    rasp.Comparison.LEQ: [[T, F, F], [T, T, F], [T, T, T]],
    rasp.Comparison.GT: [[F, T, T], [F, F, T], [F, F, F]],
    rasp.Comparison.GEQ: [[T, T, T], [F, T, T], [F, F, T]],
    rasp.Comparison.NEQ: [[F, T, T], [T, F, T], [T, T, F]],
    rasp.Comparison.TRUE: [[T, T, T], [T, T, T], [T, T, T]],
    rasp.Comparison.FALSE: [[F, F, F], [F, F, F], [F, F, F]],
}


@pytest.mark.parametrize("comparison", ALL_COMPARISONS)
def test_select_matrix(comparison):
    select = rasp.Select(rasp.tokens, rasp.tokens, comparison)
    assert isinstance(select, rasp.Selector)
    assert select([0, 1, 2]) == SELECT_TABLE[comparison]


def test_select_rows_are_queries_and_columns_are_keys():
    # keys = indices [0, 1, 2], queries = tokens [2, 0, 1]: row q selects key tokens[q].
    select = rasp.Select(rasp.indices, rasp.tokens, rasp.Comparison.EQ)
    assert select.children == [rasp.indices, rasp.tokens]
    assert select([2, 0, 1]) == [[F, F, T], [T, F, F], [F, T, F]]


def test_select_with_custom_predicate():
    select = rasp.Select(rasp.tokens, rasp.tokens, lambda k, q: (k + q) % 2 == 0)
    assert select([1, 2, 3]) == [[T, F, T], [F, T, F], [T, F, T]]


def test_select_on_empty_input():
    assert rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)([]) == []


def test_constant_selector():
    assert rasp.ConstantSelector([[T, T], [F, F]])([1, 2]) == [[T, T], [F, F]]
    with pytest.raises(ValueError, match="Constant len 2 doesn't match input len 3"):
        rasp.ConstantSelector([[T, T], [F, F]])([1, 2, 3])
    assert rasp.ConstantSelector([[T]], check_length=False)([1, 2]) == [[T]]


# ---------------------------------------------------------------------------------------------
# Selector combinations and their simplification.


def _select(keys, queries, comparison):
    return rasp.Select(keys, queries, comparison)


def test_selector_and_or_not_values():
    # On tokens [0, 1, 2]: LEQ & GEQ = EQ; LT | GT = NEQ; ~LT = GEQ.
    leq = _select(rasp.tokens, rasp.tokens, rasp.Comparison.LEQ)
    geq = _select(rasp.tokens, rasp.tokens, rasp.Comparison.GEQ)
    lt = _select(rasp.tokens, rasp.tokens, rasp.Comparison.LT)
    gt = _select(rasp.tokens, rasp.tokens, rasp.Comparison.GT)
    xs = [0, 1, 2]
    assert rasp.SelectorAnd(leq, geq)(xs) == SELECT_TABLE[rasp.Comparison.EQ]
    assert rasp.SelectorOr(lt, gt)(xs) == SELECT_TABLE[rasp.Comparison.NEQ]
    assert rasp.SelectorNot(lt)(xs) == SELECT_TABLE[rasp.Comparison.GEQ]
    assert (leq & geq)(xs) == SELECT_TABLE[rasp.Comparison.EQ]
    assert (lt | gt)(xs) == SELECT_TABLE[rasp.Comparison.NEQ]
    assert (~lt)(xs) == SELECT_TABLE[rasp.Comparison.GEQ]


def test_selector_and_is_simplified_when_keys_and_queries_match():
    selector = rasp.selector_and(
        _select(rasp.tokens, rasp.indices, rasp.Comparison.GEQ),
        _select(rasp.tokens, rasp.indices, rasp.Comparison.LEQ),
    )
    assert isinstance(selector, rasp.Select)
    assert selector.keys is rasp.tokens
    assert selector.queries is rasp.indices
    # key == query: tokens [1, 0, 2] against indices [0, 1, 2].
    assert selector([1, 0, 2]) == [[F, T, F], [T, F, F], [F, F, T]]


def test_selector_and_is_not_simplified_when_inputs_differ():
    fst = _select(rasp.tokens, rasp.indices, rasp.Comparison.GEQ)
    snd = _select(rasp.indices, rasp.tokens, rasp.Comparison.LEQ)
    selector = rasp.selector_and(fst, snd)
    assert isinstance(selector, rasp.SelectorAnd)
    assert selector.children == [fst, snd]
    assert isinstance(fst & snd, rasp.SelectorAnd)
    assert isinstance(fst | snd, rasp.SelectorOr)


def test_selector_combination_simplified_through_full_keys_and_queries():
    selector = rasp.selector_and(
        _select(rasp.Full(1), rasp.indices, rasp.Comparison.GEQ),
        _select(rasp.tokens, rasp.indices, rasp.Comparison.LEQ),
    )
    assert isinstance(selector, rasp.Select)
    assert selector.keys is rasp.tokens
    assert selector.queries is rasp.indices
    selector = rasp.selector_or(
        _select(rasp.tokens, rasp.indices, rasp.Comparison.GEQ),
        _select(rasp.tokens, rasp.Full(1), rasp.Comparison.LEQ),
    )
    assert isinstance(selector, rasp.Select)
    assert selector.keys is rasp.tokens
    assert selector.queries is rasp.indices


def test_simplify_false_keeps_the_combination_nodes():
    fst = _select(rasp.tokens, rasp.tokens, rasp.Comparison.LT)
    snd = _select(rasp.tokens, rasp.tokens, rasp.Comparison.GT)
    assert isinstance(rasp.selector_and(fst, snd, simplify=False), rasp.SelectorAnd)
    assert isinstance(rasp.selector_or(fst, snd, simplify=False), rasp.SelectorOr)
    assert isinstance(rasp.selector_not(fst, simplify=False), rasp.SelectorNot)
    not_fst = rasp.selector_not(fst)
    assert isinstance(not_fst, rasp.Select)
    assert (not_fst.keys, not_fst.queries) == (rasp.tokens, rasp.tokens)
    assert isinstance(~rasp.SelectorAnd(fst, snd), rasp.SelectorNot)


@pytest.mark.parametrize("combine", [rasp.selector_and, rasp.selector_or])
def test_simplified_selector_combinations_agree_with_unsimplified(combine):
    inputs = (rasp.tokens, rasp.indices, rasp.Full(1))
    xs = [0, 3, 1, 2]
    for fk, fq, fp, sk, sq, sp in itertools.product(
        inputs, inputs, ALL_COMPARISONS, inputs, inputs, ALL_COMPARISONS
    ):
        fst, snd = _select(fk, fq, fp), _select(sk, sq, sp)
        assert combine(fst, snd)(xs) == combine(fst, snd, simplify=False)(xs)
    for k, q, p in itertools.product(inputs, inputs, ALL_COMPARISONS):
        select = _select(k, q, p)
        assert rasp.selector_not(select)(xs) == rasp.selector_not(select, simplify=False)(xs)


# ---------------------------------------------------------------------------------------------
# SelectorWidth and Aggregate.


def test_selector_width():
    # LEQ on tokens [0, 1, 2]: rows select 1, 2, 3 keys.
    select = _select(rasp.tokens, rasp.tokens, rasp.Comparison.LEQ)
    assert rasp.SelectorWidth(select)([0, 1, 2]) == [1, 2, 3]
    histogram = rasp.SelectorWidth(_select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ))
    assert histogram("hello") == [1, 1, 2, 2, 1]
    assert rasp.SelectorWidth(_select(rasp.tokens, rasp.tokens, rasp.Comparison.FALSE))("ab") == [
        0,
        0,
    ]


@pytest.mark.parametrize(
    ("matrix", "values", "default", "expected"),
    [
        ([[T, F], [F, T]], ["h", "e"], None, ["h", "e"]),
        ([[F, T], [F, F]], ["h", "e"], None, ["e", None]),
        ([[T, F], [F, F]], ["h", "e"], "z", ["h", "z"]),
        ([[T, T], [F, T]], [0, 1], 0, [0.5, 1]),
        ([[F, F], [T, T]], [0, 1], 0, [0, 0.5]),
        ([[F, F], [T, T]], [0, 1], None, [None, 0.5]),
        # Ours: floats and bools average like ints.
        ([[T, T], [T, F]], [0.5, 0.25], 0, [0.375, 0.5]),
        ([[T, T], [F, T]], [True, False], 0, [0.5, False]),
        ([[T, T], [T, T]], [True, True], 0, [1.0, 1.0]),
        ([[T, T], [T, T]], [1, 0.5], 0, [0.75, 0.75]),
    ],
)
def test_aggregate(matrix, values, default, expected):
    aggregate = rasp.Aggregate(rasp.ConstantSelector(matrix), rasp.ConstantSOp(values), default)
    out = aggregate([0, 0])
    assert out == expected
    assert [type(v) for v in out] == [type(v) for v in expected]


def test_aggregate_single_selection_returns_value_unchanged():
    # One selected position: the value itself (int stays int, True stays True).
    select = _select(rasp.indices, rasp.indices, rasp.Comparison.EQ)
    assert rasp.Aggregate(select, rasp.tokens)([3, True, "x"]) == [3, True, "x"]


def test_aggregate_children_and_default():
    select = _select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    aggregate = rasp.Aggregate(select, rasp.indices, default=0)
    assert aggregate.children == [select, rasp.indices]
    assert aggregate.selector is select
    assert aggregate.sop is rasp.indices
    assert aggregate.default == 0
    assert rasp.Aggregate(select, rasp.indices).default is None


# ---------------------------------------------------------------------------------------------
# Names, labels and annotations.


def _sel_eq():
    return rasp.Select(rasp.tokens, rasp.indices, rasp.Comparison.EQ)


def _sel_leq():
    return rasp.Select(rasp.indices, rasp.tokens, rasp.Comparison.LEQ)


DEFAULT_NAME_CASES = [
    ("map", lambda: rasp.Map(lambda x: x, rasp.tokens)),
    ("sequence_map", lambda: rasp.SequenceMap(operator.add, rasp.tokens, rasp.indices)),
    ("linear_sequence_map", lambda: rasp.LinearSequenceMap(rasp.tokens, rasp.indices, 1, 2)),
    ("full", lambda: rasp.Full(1)),
    ("constant_sop", lambda: rasp.ConstantSOp([1])),
    ("aggregate", lambda: rasp.Aggregate(_sel_eq(), rasp.tokens)),
    ("selector_width", lambda: rasp.SelectorWidth(_sel_eq())),
    ("select", lambda: _sel_eq()),
    ("selector_and", lambda: rasp.SelectorAnd(_sel_eq(), _sel_leq())),
    ("selector_or", lambda: rasp.SelectorOr(_sel_eq(), _sel_leq())),
    ("selector_not", lambda: rasp.SelectorNot(_sel_eq())),
    ("constant_selector", lambda: rasp.ConstantSelector([[True]])),
]


@pytest.mark.parametrize(
    ("name", "build"), DEFAULT_NAME_CASES, ids=[c[0] for c in DEFAULT_NAME_CASES]
)
def test_default_names_and_label_pattern(name, build):
    expr = build()
    assert expr.name == name
    assert rasp.default_name(expr) == name
    assert re.fullmatch(rf"{name}_[1-9][0-9]*", expr.label)
    assert expr.label == f"{expr.name}_{expr.unique_id}"
    assert expr.label == expr.label  # stable once read


def test_subclass_gets_its_parents_default_name():
    class MyMap(rasp.Map):
        pass

    assert MyMap(lambda x: x, rasp.tokens).name == "map"


def test_distinct_expressions_have_distinct_labels():
    exprs = [rasp.tokens + i for i in range(50)]
    exprs += [e.named("same") for e in exprs]
    assert len({e.label for e in exprs}) == 100
    assert len({e.unique_id for e in exprs}) == 100


def test_named_returns_a_copy_sharing_children():
    sop = rasp.Map(lambda x: x + 1, rasp.tokens)
    named = sop.named("plus_one")
    assert named is not sop
    assert isinstance(named, rasp.Map)
    assert named.name == "plus_one"
    assert sop.name == "map"
    assert named.inner is sop.inner
    assert named.f is sop.f
    assert re.fullmatch(r"plus_one_[0-9]+", named.label)
    assert named.unique_id != sop.unique_id
    assert named([1, 2]) == [2, 3]


def test_copy_after_reading_the_id_still_gets_a_new_id():
    sop = rasp.tokens + 1
    first = sop.label
    copied = sop.named("map")
    assert copied.label != first
    assert sop.label == first


def test_primitive_copies_keep_their_label():
    named = rasp.tokens.named("my_tokens")
    assert named.name == "my_tokens"
    assert named.label == "tokens"
    assert isinstance(named, rasp.TokensType)
    assert rasp.tokens.name == "tokens"


def test_annotations_merge_and_override():
    sop = rasp.tokens + 1
    a = sop.annotated(colour="red", size=1)
    b = rasp.annotate(a, size=2)
    assert dict(a.annotations) == {"colour": "red", "size": 1}
    assert b.annotations["colour"] == "red"
    assert b.annotations["size"] == 2
    assert a.annotations["size"] == 1
    assert "colour" not in sop.annotations


def test_annotations_are_read_only():
    sop = rasp.tokens + 1
    with pytest.raises(TypeError):
        sop.annotations["name"] = "x"  # type: ignore[index]


def test_unknown_annotation_raises_key_error_naming_key():
    with pytest.raises(KeyError, match="colour"):
        (rasp.tokens + 1).annotations["colour"]


def test_custom_default_annotator_is_used_lazily():
    sop = rasp.tokens + 1
    rasp.DEFAULT_ANNOTATORS["shape"] = lambda expr: f"shape of {expr.name}"
    try:
        assert sop.annotations["shape"] == "shape of map"
        assert sop.annotated(shape="round").annotations["shape"] == "round"
    finally:
        del rasp.DEFAULT_ANNOTATORS["shape"]


def test_encodings():
    sop = rasp.tokens + 1
    assert rasp.get_encoding(sop) is rasp.Encoding.CATEGORICAL
    assert rasp.is_categorical(sop)
    assert not rasp.is_numerical(sop)
    num = rasp.numerical(sop)
    assert num is not sop
    assert rasp.is_numerical(num)
    assert not rasp.is_categorical(num)
    assert rasp.is_categorical(sop)
    assert rasp.is_categorical(rasp.categorical(num))
    assert rasp.numerical(sop.named("x")).name == "x"
    assert rasp.numerical(sop).named("x").annotations["encoding"] is rasp.Encoding.NUMERICAL
    assert [e.value for e in rasp.Encoding] == ["categorical", "numerical"]


@pytest.mark.parametrize("build", [c[1] for c in DEFAULT_NAME_CASES[:7]])
def test_every_sop_is_categorical_by_default_and_can_be_numerical(build):
    sop = build()
    assert rasp.is_categorical(sop)
    assert rasp.is_numerical(rasp.numerical(sop))


def test_selectors_have_no_encoding():
    with pytest.raises(TypeError, match="SOp"):
        rasp.get_encoding(_select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ))


def test_evaluate_does_not_assign_unique_ids():
    # Ids are handed out when first read. Evaluating `late` must not read its id, so `early`,
    # read first afterwards, gets the smaller id.
    late = rasp.Map(lambda x: x + 1, rasp.tokens)
    early = rasp.Map(lambda x: x + 2, rasp.tokens)
    late([1, 2])
    assert early.unique_id < late.unique_id


# ---------------------------------------------------------------------------------------------
# Construction errors.


def _sel():
    return _select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)


CONSTRUCTION_ERRORS = [
    ("Map inner", lambda: rasp.Map(lambda x: x, 3), r"Map: inner must be a SOp, got int 3"),
    ("Map f", lambda: rasp.Map(3, rasp.tokens), r"Map: f must be a function.*got int 3"),
    (
        "Map swapped",
        lambda: rasp.Map(rasp.tokens, lambda x: x),
        r"Map: f must be a function.*got TokensType",
    ),
    (
        "Map of selector",
        lambda: rasp.Map(lambda x: x, _sel()),
        r"Map: inner must be a SOp, got Select",
    ),
    (
        "SequenceMap snd",
        lambda: rasp.SequenceMap(operator.add, rasp.tokens, [1]),
        r"SequenceMap: snd must be a SOp, got list \[1\]",
    ),
    (
        "SequenceMap f",
        lambda: rasp.SequenceMap(None, rasp.tokens, rasp.indices),
        r"SequenceMap: f must be a function.*got NoneType None",
    ),
    (
        "LinearSequenceMap fac",
        lambda: rasp.LinearSequenceMap(rasp.tokens, rasp.indices, "1", 2),
        r"LinearSequenceMap: fst_fac must be a number, got str '1'",
    ),
    (
        "LinearSequenceMap sop",
        lambda: rasp.LinearSequenceMap(rasp.tokens, 2, 1, 2),
        r"LinearSequenceMap: snd must be a SOp, got int 2",
    ),
    (
        "Select predicate",
        lambda: rasp.Select(rasp.tokens, rasp.tokens, "EQ"),
        r"Select: predicate must be a function.*got str 'EQ'",
    ),
    (
        "Select keys",
        lambda: rasp.Select(_sel(), rasp.tokens, rasp.Comparison.EQ),
        r"Select: keys must be a SOp, got Select",
    ),
    (
        "Select queries",
        lambda: rasp.Select(rasp.tokens, "abc", rasp.Comparison.EQ),
        r"Select: queries must be a SOp, got str 'abc'",
    ),
    (
        "Aggregate default",
        lambda: rasp.Aggregate(_sel(), rasp.tokens, default=[1]),
        r"Aggregate: default must be None, a number or a string, got list \[1\]",
    ),
    (
        "Aggregate selector",
        lambda: rasp.Aggregate(rasp.tokens, rasp.tokens),
        r"Aggregate: selector must be a Selector, got TokensType tokens",
    ),
    (
        "Aggregate sop",
        lambda: rasp.Aggregate(_sel(), _sel()),
        r"Aggregate: sop must be a SOp, got Select",
    ),
    (
        "SelectorWidth",
        lambda: rasp.SelectorWidth(rasp.tokens),
        r"SelectorWidth: selector must be a Selector, got TokensType",
    ),
    (
        "SelectorAnd",
        lambda: rasp.SelectorAnd(_sel(), rasp.tokens),
        r"SelectorAnd: snd must be a Selector, got TokensType",
    ),
    (
        "SelectorOr",
        lambda: rasp.SelectorOr(1, _sel()),
        r"SelectorOr: fst must be a Selector, got int 1",
    ),
    (
        "SelectorNot",
        lambda: rasp.SelectorNot(rasp.tokens),
        r"SelectorNot: inner must be a Selector",
    ),
    ("selector &", lambda: _sel() & rasp.tokens, r"SelectorAnd: snd must be a Selector"),
    ("Full", lambda: rasp.Full(rasp.tokens), r"Full: fill must be a value, got TokensType"),
    (
        "ConstantSOp",
        lambda: rasp.ConstantSOp(3),
        r"ConstantSOp: value must be a sequence, got int 3",
    ),
    (
        "ConstantSelector",
        lambda: rasp.ConstantSelector([1, 2]),
        r"ConstantSelector: value must be a sequence of rows",
    ),
    ("evaluate", lambda: rasp.evaluate(3, [1]), r"evaluate: expr must be a RASPExpr, got int 3"),
]


@pytest.mark.parametrize(
    ("build", "message"),
    [c[1:] for c in CONSTRUCTION_ERRORS],
    ids=[c[0] for c in CONSTRUCTION_ERRORS],
)
def test_construction_errors_are_type_errors_naming_the_problem(build, message):
    with pytest.raises(TypeError, match=message):
        build()


# ---------------------------------------------------------------------------------------------
# Evaluation errors.


def test_map_function_error_names_label_and_value():
    sop = rasp.Map(lambda x: 10 // x, rasp.tokens).named("tenth")
    with pytest.raises(rasp.EvaluationError) as info:
        sop([5, 0])
    message = str(info.value)
    assert sop.label in message
    assert "ZeroDivisionError" in message
    assert "input value 0" in message
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_sequence_map_function_error_names_label_and_values():
    sop = rasp.SequenceMap(lambda x, y: x + y, rasp.tokens, rasp.indices)
    with pytest.raises(rasp.EvaluationError, match=re.escape(sop.label) + ".*'a', 0") as info:
        sop(["a", "b"])
    assert isinstance(info.value.__cause__, TypeError)


def test_select_predicate_error_names_label_key_and_query():
    # Aggregate with nothing selected gives None; comparing None fails.
    nothing = _select(rasp.tokens, rasp.tokens, rasp.Comparison.FALSE)
    maybe = rasp.Aggregate(nothing, rasp.tokens)
    select = _select(maybe, rasp.tokens, rasp.Comparison.EQ)
    with pytest.raises(rasp.EvaluationError, match=re.escape(select.label) + ".*key None") as info:
        select([1, 2])
    assert "key is None" in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)


def test_error_inside_deep_program_names_the_failing_expression():
    bad = rasp.Map(lambda x: 1 / x, rasp.indices, simplify=False)
    program = rasp.Map(lambda x: x + 1, bad, simplify=False)
    with pytest.raises(rasp.EvaluationError, match=re.escape(bad.label)):
        program([7, 7])


def test_non_numerical_aggregate_of_several_positions_raises():
    aggregate = rasp.Aggregate(_select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE), rasp.tokens)
    with pytest.raises(ValueError, match=re.escape(aggregate.label) + r".*\['a', 'b'\]"):
        aggregate(["a", "b"])
    mixed = rasp.Aggregate(rasp.ConstantSelector([[T, T], [F, F]]), rasp.ConstantSOp([1, None]))
    with pytest.raises(
        rasp.EvaluationError, match=r"query position 0 selects the values \[1, None\]"
    ):
        mixed([0, 0])


def test_unknown_expression_type_is_not_implemented():
    class Strange(rasp.SOp):
        @property
        def children(self):
            return []

    with pytest.raises(NotImplementedError, match="Strange"):
        Strange()([1])


# ---------------------------------------------------------------------------------------------
# The evaluator.


def test_shared_subexpression_is_evaluated_once():
    calls = []

    def spy(x):
        calls.append(x)
        return x

    shared = rasp.Map(spy, rasp.tokens)
    left = rasp.Map(lambda x: x + 1, shared, simplify=False)
    right = rasp.Map(lambda x: x * 2, shared, simplify=False)
    program = rasp.SequenceMap(operator.add, left, right)
    # (x + 1) + 2x
    assert program([1, 2, 3]) == [4, 7, 10]
    assert calls == [1, 2, 3]


def test_exponentially_shared_program_is_fast():
    # x_{i+1} = x_i + copy(x_i): 60 levels would take 2**60 steps without sharing.
    x = rasp.tokens
    for _ in range(60):
        x = rasp.SequenceMap(operator.add, x, rasp.Map(lambda v: v, x, simplify=False))
    assert x([1, 3]) == [2**60, 3 * 2**60]


def test_chain_of_2000_maps_does_not_hit_the_recursion_limit():
    sop = rasp.tokens
    for _ in range(2000):
        sop = rasp.Map(lambda v: v + 1, sop, simplify=False)
    assert sop([0, 5]) == [2000, 2005]
    assert sys.getrecursionlimit() < 10_000


def test_chain_of_2000_selector_operations():
    sel = _select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    for _ in range(2000):
        sel = rasp.SelectorNot(sel)
    assert sel([1, 2]) == [[T, F], [F, T]]


def test_subclass_of_map_is_evaluated_as_a_map():
    class Doubler(rasp.Map):
        def __init__(self, inner):
            super().__init__(lambda x: 2 * x, inner)

    assert Doubler(rasp.tokens)([1, 4]) == [2, 8]


def test_evaluator_classes():
    evaluator = rasp.DefaultRASPEvaluator()
    assert isinstance(evaluator, rasp.RASPEvaluator)
    assert evaluator.evaluate(rasp.indices + 1, "ab") == [1, 2]


def test_rasp_does_not_import_numpy():
    code = "import sys, tracr.rasp.rasp, tracr.rasp.causal_eval; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------------
# Properties.

small_ints = st.integers(min_value=-3, max_value=3)


@settings(deadline=None)
@given(st.data())
def test_aggregate_of_one_hot_selector_is_a_gather(data):
    values = data.draw(
        st.lists(st.one_of(small_ints, st.sampled_from("abc")), min_size=1, max_size=6)
    )
    n = len(values)
    targets = data.draw(st.lists(st.integers(0, n - 1), min_size=n, max_size=n))
    # Query q selects the key at position targets[q].
    select = _select(rasp.indices, rasp.ConstantSOp(targets), rasp.Comparison.EQ)
    gathered = rasp.Aggregate(select, rasp.ConstantSOp(values))(values)
    assert gathered == [values[t] for t in targets]


SELECTOR_INPUTS = st.sampled_from([rasp.tokens, rasp.indices, rasp.tokens * 2 - rasp.indices])


def _selectors():
    leaves = st.builds(_select, SELECTOR_INPUTS, SELECTOR_INPUTS, st.sampled_from(ALL_COMPARISONS))
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.builds(operator.and_, inner, inner),
            st.builds(operator.or_, inner, inner),
            st.builds(operator.invert, inner),
            st.builds(rasp.SelectorAnd, inner, inner),
            st.builds(rasp.SelectorNot, inner),
        ),
        max_leaves=4,
    )


@settings(deadline=None)
@given(_selectors(), st.lists(small_ints, max_size=6))
def test_selector_width_is_row_sum(selector, xs):
    matrix = selector(xs)
    assert len(matrix) == len(xs)
    assert all(len(row) == len(xs) for row in matrix)
    assert rasp.SelectorWidth(selector)(xs) == [sum(row) for row in matrix]


MAP_FUNCTIONS = [
    lambda x: x + 1,
    lambda x: x * 2,
    lambda x: None if x % 3 == 0 else x,
    lambda x: -x,
    lambda x: x // 2,
    lambda x: x if x > 0 else None,
]


@settings(deadline=None)
@given(
    st.lists(st.sampled_from(MAP_FUNCTIONS), min_size=1, max_size=6),
    st.lists(st.one_of(small_ints, st.none()), max_size=6),
)
def test_map_simplification_never_changes_the_result(functions, xs):
    merged = unmerged = rasp.ConstantSOp(xs)
    for f in functions:
        merged = rasp.Map(f, merged)
        unmerged = rasp.Map(f, unmerged, simplify=False)
    assert isinstance(merged.inner, rasp.ConstantSOp)
    assert merged(xs) == unmerged(xs)
