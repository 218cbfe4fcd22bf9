"""Value sets sorted once per compile (`numeric_points.Grouping`) are shared only between
sets holding exactly the same values: a Map's function is evaluated at a Grouping's
points, and 1, 1.0 and True (or 0.0 and -0.0) are equal in a frozenset but not to it."""

from __future__ import annotations

import math

import pytest

from tracr.compiler import compiling, numeric_points
from tracr.rasp import rasp

Grouping = numeric_points.Grouping


def test_equal_sets_of_other_types_get_groupings_of_their_own():
    groupings: dict = {}
    ints = Grouping.shared(groupings, frozenset({1, 2}))
    floats = Grouping.shared(groupings, frozenset({1.0, 2.0}))
    assert [type(p) for p in ints.points] == [int, int]
    assert [type(p) for p in floats.points] == [float, float]
    zero = Grouping.shared(groupings, frozenset({0.0}))
    negative_zero = Grouping.shared(groupings, frozenset({-0.0}))
    assert math.copysign(1, zero.points[0]) == 1
    assert math.copysign(1, negative_zero.points[0]) == -1
    assert Grouping.shared(groupings, frozenset({2, 1})) is ints  # the same values: shared


def test_a_map_of_ints_is_not_evaluated_at_a_float_set_that_compares_equal():
    """A linear SequenceMap of 256 values keeps its Grouping (floats); an int-valued
    numerical SOp with the same values used to be given it, so a type-sensitive function
    was evaluated at floats and the model decoded "float" where the program says "int"."""
    a = rasp.numerical(rasp.Map(lambda x: x, rasp.tokens, simplify=False)).named("a")
    zero = rasp.numerical(rasp.Map(lambda x: 0, rasp.tokens, simplify=False)).named("zero")
    floats = rasp.numerical(rasp.LinearSequenceMap(a, zero, 1.0, 1)).named("floats")
    ints = rasp.tokens
    for i in range(4):  # values inferred after those of `floats`
        ints = rasp.categorical(rasp.Map(lambda x: x, ints, simplify=False)).named(f"c{i}")
    ints = rasp.numerical(rasp.Map(lambda x: x, ints, simplify=False)).named("ints")
    kind = rasp.categorical(rasp.Map(lambda x: type(x).__name__, ints, simplify=False))
    kind = kind.named("kind")
    uses_floats = rasp.categorical(rasp.Map(lambda x: 0, floats)).named("uses_floats")
    program = rasp.categorical(rasp.SequenceMap(lambda k, _: k, kind, uses_floats))
    try:
        model = compiling.compile_rasp_to_model(
            program, vocab=set(range(256)), max_seq_len=2, compiler_bos="BOS"
        )
    except ValueError as err:  # refused is allowed: the MLP reads its input as floats
        assert "kind" in str(err) or "'float'" in str(err)
        return
    for xs in ([5, 7], [0, 255]):
        assert model.apply(["BOS", *xs]).decoded[1:] == rasp.evaluate(program, xs)


@pytest.mark.parametrize("values", [frozenset({1, 2.0}), frozenset({True, 2})])
def test_mixed_sets_key_their_own_types(values):
    groupings: dict = {}
    first = Grouping.shared(groupings, values)
    assert Grouping.kept(groupings, values) is first
    assert Grouping.kept(groupings, frozenset(float(v) for v in values)) is None
