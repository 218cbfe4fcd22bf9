"""Tests for tracr.craft.bases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracr.craft import bases

D = bases.BasisDirection


def test_direction_str_is_the_residual_label():
    assert str(D("frac_prevs")) == "frac_prevs"
    assert str(D("tokens", 3)) == "tokens:3"
    assert str(D("tokens", "a")) == "tokens:a"


def test_direction_is_hashable_and_equal_by_value():
    assert D("x", 1) == D("x", 1)
    assert len({D("x", 1), D("x", 1), D("x", 2)}) == 2


def test_direction_order_within_one_type():
    assert D("a", 1) < D("a", 2) < D("b", 0)
    assert sorted([D("x", "b"), D("x", "a")]) == [D("x", "a"), D("x", "b")]


def test_direction_order_across_mixed_types_does_not_raise():
    mixed = [D("x", "a"), D("x", 1), D("x", None), D("x", (1, "a")), D("x", 2.5), D(3, 1)]
    ordered = sorted(mixed)
    # names: ints before strings; values: None < numbers < strings < tuples
    assert ordered == [D(3, 1), D("x"), D("x", 1), D("x", 2.5), D("x", "a"), D("x", (1, "a"))]


_values = st.one_of(
    st.none(),
    st.integers(-5, 5),
    st.floats(-5, 5, allow_nan=False),
    st.text(max_size=2),
    st.tuples(st.integers(0, 2), st.text(max_size=1)),
)
_directions = st.builds(D, st.sampled_from(["a", "b", 1]), _values)


@given(st.lists(_directions, max_size=8))
def test_direction_order_is_total_and_consistent(directions):
    for a in directions:
        for b in directions:
            assert [a < b, b < a, a == b].count(True) == 1
    ordered = sorted(directions)
    for i, a in enumerate(ordered):
        assert not any(b < a for b in ordered[i + 1 :])


def test_space_keeps_order_and_indexes():
    space = bases.VectorSpaceWithBasis([D("b"), D("a"), D("c")])
    assert space.basis == (D("b"), D("a"), D("c"))
    assert space.index(D("a")) == 1
    assert list(space.indices([D("c"), D("b")])) == [2, 0]
    assert space.num_dims == len(space) == 3
    assert D("a") in space and D("z") not in space
    assert list(space) == list(space.basis)
    with pytest.raises(ValueError, match="z"):
        space.index(D("z"))


def test_space_rejects_duplicates():
    with pytest.raises(ValueError, match="duplicate"):
        bases.VectorSpaceWithBasis([D("a"), D("b"), D("a")])


def test_space_equality_is_set_equality_like_the_reference():
    one = bases.VectorSpaceWithBasis([D("a"), D("b")])
    two = bases.VectorSpaceWithBasis([D("b"), D("a")])
    assert one == two and hash(one) == hash(two)
    assert one != bases.VectorSpaceWithBasis([D("a")])


def test_issubspace_and_constructors():
    small = bases.VectorSpaceWithBasis.from_names(["a"])
    big = bases.VectorSpaceWithBasis.from_values("t", [1, 2])
    assert big.basis == (D("t", 1), D("t", 2))
    assert small.issubspace(bases.join_vector_spaces(small, big))
    assert not big.issubspace(small)


def test_vector_from_direction_and_null_vector():
    space = bases.VectorSpaceWithBasis.from_names(["a", "b", "c"])
    np.testing.assert_array_equal(space.vector_from_basis_direction(D("b")).magnitudes, [0, 1, 0])
    np.testing.assert_array_equal(space.null_vector().magnitudes, [0, 0, 0])
    assert len(space.basis_vectors()) == 3


def test_join_sorts_and_deduplicates():
    joined = bases.join_vector_spaces(
        bases.VectorSpaceWithBasis([D("b"), D("a")]), bases.VectorSpaceWithBasis([D("a"), D("c")])
    )
    assert joined.basis == (D("a"), D("b"), D("c"))


def test_join_with_a_part_of_a_join_is_that_join_and_unsorted_spaces_are_sorted():
    whole = bases.join_vector_spaces(bases.VectorSpaceWithBasis([D("c"), D("a"), D("b")]))
    part = bases.VectorSpaceWithBasis([D("b"), D("a")])
    assert bases.join_vector_spaces(part, whole) is whole
    unsorted = bases.VectorSpaceWithBasis([D("b"), D("a"), D("c")])
    assert bases.join_vector_spaces(part, unsorted).basis == (D("a"), D("b"), D("c"))


def test_joining_the_same_spaces_again_gives_the_same_join():
    a, b = bases.VectorSpaceWithBasis([D("b")]), bases.VectorSpaceWithBasis([D("a"), D("c")])
    joined = bases.join_vector_spaces(a, b)
    assert bases.join_vector_spaces(a, b) is joined
    # other spaces with the same directions are joined afresh, to an equal space
    again = bases.join_vector_spaces(a, bases.VectorSpaceWithBasis([D("a"), D("c")]))
    assert again is not joined and again.basis == joined.basis == (D("a"), D("b"), D("c"))
    assert bases.join_vector_spaces(b, a).basis == joined.basis


def test_a_copied_or_pickled_space_keeps_no_joins():
    """Kept joins are keyed by the ids of the joined spaces, which mean nothing in a copy
    or in another process."""
    import copy
    import pickle

    a, b = bases.VectorSpaceWithBasis([D("b")]), bases.VectorSpaceWithBasis([D("a")])
    bases.join_vector_spaces(a, b)
    for twin in (pickle.loads(pickle.dumps(a)), copy.deepcopy(a), copy.copy(a)):
        assert "_joins" not in twin.__dict__
        assert twin == a and twin.index(D("b")) == 0
        assert bases.join_vector_spaces(twin, b).basis == (D("a"), D("b"))


def test_direct_sum_concatenates_and_names_overlap():
    summed = bases.direct_sum(
        bases.VectorSpaceWithBasis([D("b")]), bases.VectorSpaceWithBasis([D("a")])
    )
    assert summed.basis == (D("b"), D("a"))
    with pytest.raises(ValueError, match="b"):
        bases.direct_sum(summed, bases.VectorSpaceWithBasis([D("b")]))


def test_vector_shape_is_checked():
    with pytest.raises(ValueError, match="shape"):
        bases.VectorInBasis([D("a"), D("b")], np.zeros(3))


def test_vector_arithmetic_aligns_order():
    x = bases.VectorInBasis([D("a"), D("b")], np.array([1.0, 2.0]))
    y = bases.VectorInBasis([D("b"), D("a")], np.array([10.0, 20.0]))
    np.testing.assert_array_equal((x + y).magnitudes, [21, 12])
    np.testing.assert_array_equal((x - y).magnitudes, [-19, -8])
    np.testing.assert_array_equal((-x).magnitudes, [-1, -2])
    np.testing.assert_array_equal((2 * x).magnitudes, [2, 4])
    np.testing.assert_array_equal((x * 3).magnitudes, [3, 6])
    np.testing.assert_array_equal((x / 2).magnitudes, [0.5, 1])
    assert x == bases.VectorInBasis([D("b"), D("a")], np.array([2.0, 1.0]))
    assert x != y
    with pytest.raises(TypeError, match="c"):
        _ = x + bases.VectorInBasis([D("a"), D("c")], np.zeros(2))


def test_project_drops_and_zero_fills():
    x = bases.VectorInBasis([D("a"), D("b")], np.array([[1.0, 2.0], [3.0, 4.0]]))
    target = bases.VectorSpaceWithBasis([D("c"), D("b")])
    projected = x.project(target)
    assert projected.basis_directions == (D("c"), D("b"))
    np.testing.assert_array_equal(projected.magnitudes, [[0, 2], [0, 4]])
    assert x.space == bases.VectorSpaceWithBasis([D("a"), D("b")])


def test_stack_and_sum():
    x = bases.VectorInBasis([D("a"), D("b")], np.array([1.0, 2.0]))
    y = bases.VectorInBasis([D("b"), D("a")], np.array([5.0, 7.0]))
    np.testing.assert_array_equal(bases.VectorInBasis.stack([x, y]).magnitudes, [[1, 2], [7, 5]])
    np.testing.assert_array_equal(bases.VectorInBasis.sum([x, y, x]).magnitudes, [9, 9])


def test_vector_in_space_means_same_directions():
    space = bases.VectorSpaceWithBasis([D("a"), D("b")])
    assert bases.VectorInBasis([D("b"), D("a")], np.zeros(2)) in space
    assert bases.VectorInBasis([D("a")], np.zeros(1)) not in space


def test_ensure_dims():
    bases.ensure_dims(bases.VectorSpaceWithBasis([D("a")]), 1)
    with pytest.raises(ValueError, match="bos_space"):
        bases.ensure_dims(bases.VectorSpaceWithBasis([]), 1, "bos_space")


def test_a_pickled_direction_hashes_as_a_new_one_would():
    """A direction caches its hash; one pickled in another process (where str hashes are
    salted differently) must not bring that hash along, or dict lookups miss it."""
    import os
    import pickle
    import subprocess
    import sys

    code = (
        "import pickle, sys; from tracr.craft import bases; "
        "sys.stdout.buffer.write(pickle.dumps(bases.BasisDirection('tokens', 'a')))"
    )
    env = {"PYTHONHASHSEED": "12345", "PYTHONPATH": os.pathsep.join(sys.path)}
    data = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, check=True)
    loaded = pickle.loads(data.stdout)
    assert loaded == D("tokens", "a") and hash(loaded) == hash(D("tokens", "a"))
    assert {D("tokens", "a"): 1}[loaded] == 1
