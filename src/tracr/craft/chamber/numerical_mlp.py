"""MLPs for Map on a numerical input with a finite value set, and for linear SequenceMap.

The discretising construction
-----------------------------
Let s_1 < ... < s_n be the input values, g_k = s_(k+1) - s_k the gaps, m_k their
midpoints and X = max_i |s_i|. For every gap k there is a step made of two ReLUs that
read the input x, `one` and `bos` (sigma_k = +1 for a rising step, -1 for a falling one):

    a_k = relu(sigma_k L_k x + c_k     - M_k bos)
    b_k = relu(sigma_k L_k x + c_k - 1 - M_k bos)
    a_k - b_k = clip(sigma_k L_k x + c_k, 0, 1)

with slope L_k = 2 / g_k (rounded to float32) and c_k placing the ramp, of width 1/L_k =
g_k / 2, in the middle half of the gap: a_k - b_k is exactly constant on [s_k, lo_k] and
on [hi_k, s_(k+1)], where lo_k, hi_k = m_k -+ g_k / 4. A rising step is 0 below the ramp
and 1 above it; a falling step is the reverse. One more unit is the gated constant
h_0 = relu(one - bos). With the output rows y_1 .. y_n (a number, or a one-hot) and
Delta_k = y_(k+1) - y_k, the output is

    out = C h_0 + sum_(rising k) Delta_k (a_k - b_k) - sum_(falling k) Delta_k (a_k - b_k),
    C = y_1 + sum_(falling k) Delta_k

(a falling pair computes 1 - step_k, so its jump starts switched on). At x = s_j the sum
telescopes to y_j EXACTLY (every step is saturated), and stays y_j for any x within
`input_tolerance` of s_j: the min over k of the margins lo_k - s_k and s_(k+1) - hi_k, a
quarter of the smallest gap (less a float32 rounding shift of at most g_k / 16, usually
zero). Outside [s_1, s_n] the output is y_1 or y_n.

Floating point. Each unit is active on a half-line, so a saturated step k far from x
still carries activations ~ L_k |x - m_k| that cancel in a_k - b_k; in float32 the
rounding of its pre-activations and of the output sum grows with the size of the terms,
L_k |x| + |c_k| (craft/rounding.py bounds it for every summation order, and the
compiler checks that bound; `float32_error_bound` here). Three choices keep it small:
* Each step's orientation (`_discretising.choose_orientation`) makes it active where its
  terms are small: for one-hot outputs each step takes its cheaper side (an output
  coordinate reads only two steps); for numerical outputs, which read every active step,
  that choice and every pivot (steps below P fall, the rest rise) are scored by the worst
  summed term size relative to the output's budget max(1e-5 |y_j|, 1e-6).
* c_k is rounded so that c_k and c_k - 1 are exact float32 numbers (when that moves
  the ramp by at most g_k / 16); L_k is rounded to float32 and its ramp re-centred.
  Then the float32 slopes and biases equal the float64 ones, the two pre-activations of a
  step differ by exactly 1, and inputs and outputs on a binary grid (integers, say) are
  computed exactly in every summation order.
* No fixed large numbers: every constant follows from the gaps and the range.

BOS gate: M_k = 2 (|c_k| + L_k X) + 1, so at BOS (bos = 1) every step pre-activation is
at most -(|c_k| + L_k X + 1) <= -M_k / 2 for any |x| <= X (a margin no float rounding
can eat), and h_0 = 0: the output at BOS is exactly zero even if the input there is not
(the selector-width head writes ~1 at BOS). At other positions bos = 0 and the gate
term is an exact zero.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from tracr import caches
from tracr.craft import bases, rounding, transformers, vectorspace_fns
from tracr.craft.chamber import _common, _discretising

Discretisation = _discretising.Discretisation
discretise = _discretising.discretise
input_tolerance = _discretising.input_tolerance


def discretising_mlp(
    input_space: bases.VectorSpaceWithBasis,
    output_space: bases.VectorSpaceWithBasis,
    points: Sequence[float],
    outputs: np.ndarray,
    one_space: bases.VectorSpaceWithBasis,
    bos_space: bases.VectorSpaceWithBasis,
    hidden_name: bases.Name,
) -> transformers.MLP:
    """MLP writing the row outputs[i] ([len(points), output dims]) when x = points[i].

    The construction of the module docstring. Hidden directions: (hidden_name, "const")
    and (hidden_name, (k, 0)), (hidden_name, (k, 1)) for the two units of gap k.
    """
    bos, one = _common.check_aux_spaces(bos_space, one_space, input_space, output_space)
    x_dir = _common.single_direction(input_space, "input_space")
    floats = np.asarray(points, dtype=np.float64)
    outputs = np.asarray(outputs, dtype=np.float64).reshape(len(floats), output_space.num_dims)
    if np.all(floats[1:] > floats[:-1]):  # sorted and distinct already (the usual case)
        ordered, rows_out = floats, outputs
    else:
        order = np.argsort(floats, kind="stable")
        ordered = floats[order]
        # equal neighbours once sorted (NaNs sort last and count as equal, as in np.unique)
        if np.any(ordered[1:] == ordered[:-1]) or (len(ordered) > 1 and np.isnan(ordered[-2])):
            raise ValueError("points must be distinct")
        rows_out = outputs[order]  # [n, out]
    _discretising.check_finite(floats)
    disc = _discretising.discretise_sorted(
        ordered, rows_out, relative=_common.is_numerical_space(output_space)
    )
    hidden = _steps_space(hidden_name, len(disc.points) - 1)
    in_space = bases.join_vector_spaces(input_space, one_space, bos_space)  # x, one, bos
    units, second = _layers(disc, rows_out)
    fst = np.zeros((in_space.num_dims, hidden.num_dims))
    fst[[in_space.index(x_dir), in_space.index(one), in_space.index(bos)]] = units
    return transformers.MLP(
        vectorspace_fns.Linear(in_space, hidden, fst),
        vectorspace_fns.Linear(hidden, output_space, second.copy()),
    )


def _steps_space(hidden_name: bases.Name, n_gaps: int) -> bases.VectorSpaceWithBasis:
    """The hidden space of a discretising MLP: (hidden_name, "const"), then the two
    units (hidden_name, (k, 0)), (hidden_name, (k, 1)) of each gap k."""
    if type(hidden_name) is str:
        return _kept_steps_space(hidden_name, n_gaps)
    return _new_steps_space(hidden_name, n_gaps)


def _new_steps_space(hidden_name: bases.Name, n_gaps: int) -> bases.VectorSpaceWithBasis:
    units = ((k, u) for k in range(n_gaps) for u in (0, 1))
    return bases.VectorSpaceWithBasis.from_values(hidden_name, ["const", *units])


@functools.lru_cache(maxsize=1024)
def _kept_steps_space(hidden_name: str, n_gaps: int) -> bases.VectorSpaceWithBasis:
    """`_steps_space` of a str name, kept across compiles (spaces are immutable)."""
    space = _new_steps_space(hidden_name, n_gaps)
    bases.keep(space)
    return space


caches.register(_kept_steps_space.cache_clear)


def _layers(disc: Discretisation, rows_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the first layer's rows for x, one and bos [3, H]; the second layer [H, out]) of
    the steps of `disc` writing the rows `rows_out` [n, out]. Read-only, and worked out
    once per discretisation: it is kept by its points and these rows
    (`discretise_sorted`), so they are the same."""
    known = disc.__dict__.get("_layers")
    if known is not None:
        return known
    hidden = 1 + 2 * (len(disc.points) - 1)
    # Hidden columns: the constant unit, then a_k, b_k for each gap k (1::2 and 2::2).
    units = np.zeros((3, hidden))  # rows: x, one, bos
    units[1, 0], units[2, 0] = 1.0, -1.0
    units[0, 1::2] = units[0, 2::2] = disc.signs * disc.slopes
    units[1, 1::2], units[1, 2::2] = disc.biases, disc.biases - 1.0
    units[2, 1::2] = units[2, 2::2] = -disc.gates
    second = np.zeros((hidden, rows_out.shape[1]))
    second[0] = disc.constant_row(rows_out)
    deltas = (rows_out[1:] - rows_out[:-1]) * disc.signs[:, None]  # [n - 1, out]
    second[1::2], second[2::2] = deltas, -deltas
    units.flags.writeable = second.flags.writeable = False
    object.__setattr__(disc, "_layers", (units, second))  # not a field
    return units, second


def map_numerical_mlp(
    f: Callable[[float], float],
    input_space: bases.VectorSpaceWithBasis,
    output_space: bases.VectorSpaceWithBasis,
    input_value_set: Iterable[float],
    one_space: bases.VectorSpaceWithBasis,
    bos_space: bases.VectorSpaceWithBasis,
    hidden_name: bases.Name,
) -> transformers.MLP:
    """MLP writing the number f(x) for a numerical x in a finite value set.

    The discretising construction (module docstring): exact at every value, and for
    inputs within `input_tolerance(input_value_set)` of a value; exactly 0 at BOS.
    f is called on the original values of the set; a result that is not a finite number
    (e.g. None) raises ValueError naming the input. 1 + 2 (n - 1) hidden units.
    """
    _common.single_direction(output_space, "output_space")
    points, originals = _discretising.sorted_points(input_value_set)
    outputs = [[_common.as_number(f(v), "numerical Map", v)] for v in originals]
    return discretising_mlp(
        input_space, output_space, points, np.array(outputs), one_space, bos_space, hidden_name
    )


def map_numerical_to_categorical_mlp(
    f: Callable[[float], object],
    input_space: bases.VectorSpaceWithBasis,
    output_space: bases.VectorSpaceWithBasis,
    input_value_set: Iterable[float],
    one_space: bases.VectorSpaceWithBasis,
    bos_space: bases.VectorSpaceWithBasis,
    hidden_name: bases.Name,
) -> transformers.MLP:
    """MLP writing the one-hot of f(x) for a numerical x in a finite value set.

    The discretising construction with one-hot output rows (a None result is the zero
    row): exact at every value and within `input_tolerance`; zero at BOS. ValueError if
    a result is not in output_space.
    """
    index = _common.value_index(output_space, "output_space")
    points, originals = _discretising.sorted_points(input_value_set)
    outputs = np.zeros((len(points), output_space.num_dims))
    for i, v in enumerate(originals):
        col = _common.output_index(index, f(v), "numerical-to-categorical Map", v)
        if col is not None:
            outputs[i, col] = 1.0
    return discretising_mlp(
        input_space, output_space, points, outputs, one_space, bos_space, hidden_name
    )


def linear_sequence_map_numerical_mlp(
    input1_basis_direction: bases.BasisDirection,
    input2_basis_direction: bases.BasisDirection,
    output_basis_direction: bases.BasisDirection,
    input1_factor: float,
    input2_factor: float,
    hidden_name: bases.Name,
) -> transformers.MLP:
    """MLP writing input1_factor * a + input2_factor * b for numerical a, b.

    Construction: units relu(a), relu(-a), relu(b), relu(-b); output =
    c1 (relu(a) - relu(-a)) + c2 (relu(b) - relu(-b)) = c1 a + c2 b, exact for every real
    input (one unit of each pair is exactly 0) and zero at BOS (a = b = 0). When both
    inputs are the same direction, two units carry (c1 + c2) a.
    Hidden directions: (hidden_name, (i, +1)), (hidden_name, (i, -1)) for input i.
    """
    if input1_basis_direction == input2_basis_direction:
        inputs = [input1_basis_direction]
        factors = [float(input1_factor) + float(input2_factor)]
    else:
        inputs = [input1_basis_direction, input2_basis_direction]
        factors = [float(input1_factor), float(input2_factor)]
    if output_basis_direction in inputs:
        raise ValueError(f"output {output_basis_direction} must differ from the inputs")
    in_space = bases.VectorSpaceWithBasis(inputs)
    out_space = bases.VectorSpaceWithBasis([output_basis_direction])
    hidden = bases.VectorSpaceWithBasis(
        [bases.BasisDirection(hidden_name, (i, s)) for i in range(len(inputs)) for s in (1, -1)]
    )
    rows = [i for i in range(len(inputs)) for _ in (1, -1)]  # unit pairs (i, +1), (i, -1)
    units = list(range(hidden.num_dims))
    fst = vectorspace_fns.Linear.from_index_arrays(
        in_space, hidden, rows, units, [1.0, -1.0] * len(inputs)
    )
    snd = vectorspace_fns.Linear.from_index_arrays(
        hidden, out_space, units, [0] * len(units), [s * f for f in factors for s in (1.0, -1.0)]
    )
    return transformers.MLP(fst, snd)


def map_affine_numerical_mlp(
    input_space: bases.VectorSpaceWithBasis,
    output_space: bases.VectorSpaceWithBasis,
    slope: float,
    intercept: float,
    one_space: bases.VectorSpaceWithBasis,
    bos_space: bases.VectorSpaceWithBasis,
    hidden_name: bases.Name,
) -> transformers.MLP:
    """MLP writing slope * x + intercept for numerical x: a Map that is affine.

    Construction: units relu(x), relu(-x) and the gated constant relu(one - bos);
    output = slope (relu(x) - relu(-x)) + intercept relu(one - bos). Exact for every real
    input, with no discretisation and so no error growing with the number of values;
    zero at BOS (x = 0 and the constant unit is off).
    Hidden directions: (hidden_name, "+"), (hidden_name, "-"), (hidden_name, "const").
    """
    bos, one = _common.check_aux_spaces(bos_space, one_space, input_space, output_space)
    x_dir = _common.single_direction(input_space, "input_space")
    out_dir = _common.single_direction(output_space, "output_space")
    in_space = bases.VectorSpaceWithBasis([x_dir, one, bos])
    hidden = bases.VectorSpaceWithBasis.from_values(hidden_name, ["+", "-", "const"])
    fst = vectorspace_fns.Linear.from_index_arrays(
        in_space, hidden, [0, 0, 1, 2], [0, 1, 2, 2], [1.0, -1.0, 1.0, -1.0]
    )
    snd = vectorspace_fns.Linear.from_index_arrays(
        hidden,
        bases.VectorSpaceWithBasis([out_dir]),
        [0, 1, 2],
        [0, 0, 0],
        [float(slope), -float(slope), float(intercept)],
    )
    return transformers.MLP(fst, snd)


def float32_error_bound(
    f: Callable[[float], float],
    input_value_set: Iterable[float],
    input_error: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(sorted points, worst-case float32 error of `map_numerical_mlp` at each point).

    Valid in every summation order, with or without FMA (craft/rounding.py), for inputs
    within `input_error` of each point (which must stay below `input_tolerance`). The
    bound is computed from the float32 weights the compiler uses and includes their
    rounding of the output values.
    """
    x_dir, y_dir = bases.BasisDirection("x"), bases.BasisDirection("y")
    one_space = bases.VectorSpaceWithBasis([bases.BasisDirection("one")])
    bos_space = bases.VectorSpaceWithBasis([bases.BasisDirection("bos")])
    values = list(input_value_set)
    mlp = map_numerical_mlp(
        f,
        bases.VectorSpaceWithBasis([x_dir]),
        bases.VectorSpaceWithBasis([y_dir]),
        values,
        one_space,
        bos_space,
        "h",
    )
    points, originals = _discretising.sorted_points(values)
    space = mlp.fst.input_space
    x = np.zeros((len(points), space.num_dims))
    x[:, space.index(x_dir)] = points
    x[:, space.index(one_space.basis[0])] = 1.0
    errors = np.zeros_like(x)
    errors[:, space.index(x_dir)] = input_error
    result = rounding.mlp_bound(mlp.fst.matrix, mlp.snd.matrix, x, errors)
    if np.any(result.unstable):
        raise ValueError(
            f"input_error {input_error!r} exceeds the MLP's input tolerance "
            f"{input_tolerance(values)!r}"
        )
    targets = np.array([float(f(v)) for v in originals])
    return points, result.bound[:, 0] + np.abs(result.ideal[:, 0] - targets)
