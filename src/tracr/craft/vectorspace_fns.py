"""Linear maps and scalar bilinear forms between named vector spaces.

Each is one numpy matrix laid out by the bases of its spaces: a `Linear` from I to O is
an [I.num_dims, O.num_dims] matrix acting on row vectors (x @ M); a `ScalarBilinear` on
L x R is an [L.num_dims, R.num_dims] matrix with value x^T M y. The block builders fill
these matrices with index arrays (`from_index_arrays`); `from_action` is the slow,
per-direction convenience for small hand-written maps and tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from tracr.craft import bases


def _as_float_matrix(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix)
    if matrix.dtype.kind != "f":  # np.issubdtype(dtype, np.floating), without its cost
        matrix = matrix.astype(np.float64)
    return matrix


def _check_shape(matrix: np.ndarray, rows: int, cols: int, what: str) -> None:
    if matrix.shape != (rows, cols):
        raise ValueError(f"{what} matrix must have shape ({rows}, {cols}), got {matrix.shape}")


def _magnitudes_in(x: bases.VectorInBasis, space: bases.VectorSpaceWithBasis) -> np.ndarray:
    """x's magnitudes in space's order; TypeError unless x spans exactly that space."""
    if x.basis_directions == space.basis:
        return x.magnitudes
    if x not in space:
        raise TypeError(
            f"vector over {[str(d) for d in x.basis_directions]} is not in the space "
            f"{[str(d) for d in space.basis]}"
        )
    return x.project(space).magnitudes


def _filled(shape: tuple[int, int], rows, cols, values) -> np.ndarray:
    """A zero matrix with values[i] added at (rows[i], cols[i]); repeats accumulate."""
    matrix = np.zeros(shape)
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    np.add.at(matrix, (rows, cols), np.asarray(values, float))  # a scalar broadcasts
    return matrix


@dataclasses.dataclass(frozen=True, eq=False)
class Linear:
    """The linear map x -> x @ matrix from input_space to output_space.

    matrix: [input_space.num_dims, output_space.num_dims].
    """

    input_space: bases.VectorSpaceWithBasis
    output_space: bases.VectorSpaceWithBasis
    matrix: np.ndarray

    def __post_init__(self) -> None:
        matrix = _as_float_matrix(self.matrix)
        _check_shape(matrix, self.input_space.num_dims, self.output_space.num_dims, "Linear")
        object.__setattr__(self, "matrix", matrix)

    def __call__(self, x: bases.VectorInBasis) -> bases.VectorInBasis:
        """Applies the map to x (shape [..., input dims]); x must span input_space."""
        mags = _magnitudes_in(x, self.input_space)
        return self.output_space.make_vector(mags @ self.matrix)

    @classmethod
    def from_action(
        cls,
        input_space: bases.VectorSpaceWithBasis,
        output_space: bases.VectorSpaceWithBasis,
        action: Callable[[bases.BasisDirection], bases.VectorInBasis],
    ) -> Linear:
        """The map sending each input direction d to action(d).

        action(d) may span any subset of output_space (missing directions are zero);
        TypeError if it has a direction outside output_space.
        """
        matrix = np.zeros((input_space.num_dims, output_space.num_dims))
        for i, direction in enumerate(input_space.basis):
            image = action(direction)
            outside = [d for d in image.basis_directions if d not in output_space]
            if outside:
                raise TypeError(
                    f"image of {direction} has directions outside output_space: "
                    f"{[str(d) for d in outside]}"
                )
            matrix[i] = image.project(output_space).magnitudes
        return cls(input_space, output_space, matrix)

    @classmethod
    def from_index_arrays(
        cls,
        input_space: bases.VectorSpaceWithBasis,
        output_space: bases.VectorSpaceWithBasis,
        rows: Sequence[int] | np.ndarray,
        cols: Sequence[int] | np.ndarray,
        values: float | Sequence[float] | np.ndarray,
    ) -> Linear:
        """The map whose matrix is the sum of values[i] at (rows[i], cols[i]).

        Repeated (row, col) pairs accumulate (np.add.at); values may be a scalar.
        """
        shape = (input_space.num_dims, output_space.num_dims)
        return cls(input_space, output_space, _filled(shape, rows, cols, values))

    @classmethod
    def combine_in_parallel(cls, fns: Sequence[Linear]) -> Linear:
        """The sum of the maps, each extended by zero to the joined (sorted) spaces."""
        input_space = bases.join_vector_spaces(*[fn.input_space for fn in fns])
        output_space = bases.join_vector_spaces(*[fn.output_space for fn in fns])
        matrix = np.zeros((input_space.num_dims, output_space.num_dims))
        for fn in fns:
            rows = input_space.indices(fn.input_space.basis)
            cols = output_space.indices(fn.output_space.basis)
            matrix[np.ix_(rows, cols)] += fn.matrix
        return cls(input_space, output_space, matrix)


def project(from_space: bases.VectorSpaceWithBasis, to_space: bases.VectorSpaceWithBasis) -> Linear:
    """The map that keeps the components along directions both spaces share."""
    shared = [d for d in from_space.basis if d in to_space]
    return Linear.from_index_arrays(
        from_space, to_space, from_space.indices(shared), to_space.indices(shared), 1.0
    )


@dataclasses.dataclass(frozen=True, eq=False)
class ScalarBilinear:
    """The bilinear form (x, y) -> x^T matrix y on left_space x right_space.

    matrix: [left_space.num_dims, right_space.num_dims].
    """

    left_space: bases.VectorSpaceWithBasis
    right_space: bases.VectorSpaceWithBasis
    matrix: np.ndarray

    def __post_init__(self) -> None:
        matrix = _as_float_matrix(self.matrix)
        _check_shape(matrix, self.left_space.num_dims, self.right_space.num_dims, "ScalarBilinear")
        object.__setattr__(self, "matrix", matrix)

    def __call__(self, x: bases.VectorInBasis, y: bases.VectorInBasis) -> float | np.ndarray:
        """x^T M y. For single vectors a float; for x [n, L] and y [m, R] all pairs, [n, m]."""
        left = _magnitudes_in(x, self.left_space)
        right = _magnitudes_in(y, self.right_space)
        if right.ndim > 1:
            right = np.swapaxes(right, -1, -2)
        result = left @ self.matrix @ right
        return float(result) if np.ndim(result) == 0 else result

    @classmethod
    def from_action(
        cls,
        left_space: bases.VectorSpaceWithBasis,
        right_space: bases.VectorSpaceWithBasis,
        action: Callable[[bases.BasisDirection, bases.BasisDirection], float],
    ) -> ScalarBilinear:
        """The form with matrix[i, j] = action(left.basis[i], right.basis[j])."""
        matrix = np.array(
            [[float(action(a, b)) for b in right_space.basis] for a in left_space.basis]
        ).reshape(left_space.num_dims, right_space.num_dims)
        return cls(left_space, right_space, matrix)

    @classmethod
    def from_index_arrays(
        cls,
        left_space: bases.VectorSpaceWithBasis,
        right_space: bases.VectorSpaceWithBasis,
        rows: Sequence[int] | np.ndarray,
        cols: Sequence[int] | np.ndarray,
        values: float | Sequence[float] | np.ndarray,
    ) -> ScalarBilinear:
        """The form whose matrix is the sum of values[i] at (rows[i], cols[i])."""
        shape = (left_space.num_dims, right_space.num_dims)
        return cls(left_space, right_space, _filled(shape, rows, cols, values))
