"""Tests for tracr.compiler.expr_blocks: the spaces kept across compiles."""

from __future__ import annotations

import weakref

from tracr.compiler import expr_blocks
from tracr.craft import bases

D = bases.BasisDirection


def test_a_labelled_space_is_kept_by_its_exact_values():
    space = expr_blocks.labelled_space("x_1", frozenset({2, 1, None}))
    assert space.basis == (D("x_1", 1), D("x_1", 2))
    assert expr_blocks.labelled_space("x_1", frozenset({1, 2})) is space
    # equal values of other types, or other float bits, are other spaces
    floats = expr_blocks.labelled_space("x_1", frozenset({1.0, 2.0}))
    assert floats is not space and [str(d) for d in floats.basis] == ["x_1:1.0", "x_1:2.0"]
    bools = expr_blocks.labelled_space("x_1", frozenset({True}))
    assert bools.basis[0].value is True
    zero, negative_zero = (expr_blocks.labelled_space("x_1", {z}) for z in (0.0, -0.0))
    assert str(zero.basis[0]) == "x_1:0.0" and str(negative_zero.basis[0]) == "x_1:-0.0"
    assert expr_blocks.labelled_space("x_2", frozenset({1, 2})) is not space


def test_a_labelled_space_of_tuples_is_kept_by_their_exact_items():
    values = frozenset({(1, 2), (0, 1)})
    space = expr_blocks.labelled_space("pairs_1", values)
    assert space.basis == (D("pairs_1", (0, 1)), D("pairs_1", (1, 2)))
    assert expr_blocks.labelled_space("pairs_1", frozenset({(0, 1), (1, 2)})) is space
    floats = expr_blocks.labelled_space("pairs_1", frozenset({(1.0, 2), (0, 1)}))
    assert floats is not space and "pairs_1:(1.0, 2)" in map(str, floats.basis)
    nested = expr_blocks.labelled_space("pairs_1", frozenset({((1, 2),), (0, 1)}))
    assert nested is not space


class _Value:
    """A value of a user's class: it may define == as it likes, so no key stands for it."""

    def __init__(self, n):
        self.n = n

    def __eq__(self, other):
        return isinstance(other, _Value) and other.n == self.n

    def __hash__(self):
        return hash(self.n)

    def __lt__(self, other):
        return self.n < other.n


def test_a_labelled_space_of_other_values_is_made_afresh():
    values = frozenset({(1, _Value(2)), (0, 1)})
    space = expr_blocks.labelled_space("pairs_1", values)
    assert space.basis[0] == D("pairs_1", (0, 1))
    assert expr_blocks.labelled_space("pairs_1", values) is not space


def test_a_kept_space_keeps_no_join_with_a_space_of_one_compile():
    kept = expr_blocks.labelled_space("kept_1", frozenset({1, 2}))
    other = expr_blocks.labelled_space("kept_2", frozenset({1}))
    joined = bases.join_vector_spaces(kept, other)
    assert bases.join_vector_spaces(kept, other) is joined  # both kept: so is the join
    fresh = bases.VectorSpaceWithBasis([D("fresh")])
    mixed = bases.join_vector_spaces(kept, fresh)
    assert bases.join_vector_spaces(kept, fresh) is not mixed
    assert bases.join_vector_spaces(kept, fresh).basis == mixed.basis
    # with the fresh space first, the join is kept with it, and goes with it
    first = bases.join_vector_spaces(fresh, kept)
    assert bases.join_vector_spaces(fresh, kept) is first
    # nothing kept holds it, and no cycle does: it goes without a garbage collection
    gone = weakref.ref(fresh)
    del fresh, first, mixed
    assert gone() is None
