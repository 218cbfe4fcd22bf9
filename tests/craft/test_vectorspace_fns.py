"""Tests for tracr.craft.vectorspace_fns."""

from __future__ import annotations

import numpy as np
import pytest

from tracr.craft import bases, vectorspace_fns

D = bases.BasisDirection
AB = bases.VectorSpaceWithBasis.from_names(["a", "b"])
XYZ = bases.VectorSpaceWithBasis.from_names(["x", "y", "z"])


def test_linear_applies_matrix_to_row_vectors():
    fn = vectorspace_fns.Linear(AB, XYZ, np.array([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]]))
    out = fn(bases.VectorInBasis(AB.basis, np.array([2.0, 10.0])))
    assert out.basis_directions == XYZ.basis
    np.testing.assert_array_equal(out.magnitudes, [2, 14, -4])


def test_linear_accepts_reordered_input_and_rejects_other_spaces():
    fn = vectorspace_fns.Linear(AB, XYZ, np.array([[1.0, 0, 0], [0, 1.0, 0]]))
    out = fn(bases.VectorInBasis([D("b"), D("a")], np.array([5.0, 7.0])))
    np.testing.assert_array_equal(out.magnitudes, [7, 5, 0])
    with pytest.raises(TypeError):
        fn(bases.VectorInBasis([D("a")], np.array([1.0])))


def test_linear_checks_shape():
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        vectorspace_fns.Linear(AB, XYZ, np.zeros((3, 2)))


def test_from_action_matches_from_index_arrays():
    def action(d):
        return XYZ.vector_from_basis_direction(D("z")) * (2.0 if d.name == "a" else 3.0)

    slow = vectorspace_fns.Linear.from_action(AB, XYZ, action)
    fast = vectorspace_fns.Linear.from_index_arrays(AB, XYZ, [0, 1], [2, 2], [2.0, 3.0])
    np.testing.assert_array_equal(slow.matrix, fast.matrix)


def test_from_action_accepts_partial_images_and_rejects_outside_directions():
    fn = vectorspace_fns.Linear.from_action(
        AB, XYZ, lambda d: bases.VectorInBasis([D("y")], np.array([1.0]))
    )
    np.testing.assert_array_equal(fn.matrix, [[0, 1, 0], [0, 1, 0]])
    with pytest.raises(TypeError, match="q"):
        vectorspace_fns.Linear.from_action(
            AB, XYZ, lambda d: bases.VectorInBasis([D("q")], np.array([1.0]))
        )


def test_from_index_arrays_accumulates_repeats():
    fn = vectorspace_fns.Linear.from_index_arrays(AB, XYZ, [0, 0, 1], [1, 1, 2], 1.5)
    np.testing.assert_array_equal(fn.matrix, [[0, 3, 0], [0, 0, 1.5]])


def test_combine_in_parallel_sums_on_joined_spaces():
    f = vectorspace_fns.Linear(AB, XYZ, np.ones((2, 3)))
    g = vectorspace_fns.Linear(
        bases.VectorSpaceWithBasis.from_names(["b", "c"]),
        bases.VectorSpaceWithBasis.from_names(["z"]),
        np.array([[10.0], [20.0]]),
    )
    both = vectorspace_fns.Linear.combine_in_parallel([f, g])
    assert both.input_space.basis == tuple(D(n) for n in "abc")
    assert both.output_space.basis == tuple(D(n) for n in "xyz")
    np.testing.assert_array_equal(both.matrix, [[1, 1, 1], [1, 1, 11], [0, 0, 20]])


def test_project_is_identity_on_shared_directions():
    fn = vectorspace_fns.project(AB, bases.VectorSpaceWithBasis.from_names(["b", "c"]))
    np.testing.assert_array_equal(fn.matrix, [[0, 0], [1, 0]])


def test_scalar_bilinear_single_and_batched():
    form = vectorspace_fns.ScalarBilinear(AB, XYZ, np.array([[1.0, 2, 3], [4, 5, 6]]))
    x = bases.VectorInBasis(AB.basis, np.array([1.0, 1.0]))
    y = bases.VectorInBasis(XYZ.basis, np.array([0.0, 0.0, 2.0]))
    assert form(x, y) == 18.0
    xs = bases.VectorInBasis(AB.basis, np.eye(2))
    ys = bases.VectorInBasis(XYZ.basis, np.eye(3))
    np.testing.assert_array_equal(form(xs, ys), form.matrix)


def test_scalar_bilinear_constructors_agree():
    slow = vectorspace_fns.ScalarBilinear.from_action(
        AB, XYZ, lambda a, b: 1.0 if (a.name, b.name) == ("b", "x") else 0.0
    )
    fast = vectorspace_fns.ScalarBilinear.from_index_arrays(AB, XYZ, [1], [0], [1.0])
    np.testing.assert_array_equal(slow.matrix, fast.matrix)
    with pytest.raises(ValueError, match="shape"):
        vectorspace_fns.ScalarBilinear(AB, XYZ, np.zeros((2, 2)))
