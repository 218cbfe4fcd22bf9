"""rounding_grid: the bound on a grid of SOp values, SOp by SOp, is mlp_bound's on the
expanded rows (up to float64 rounding), and blocks whose units read two SOps are left to
mlp_bound."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tracr.craft import rounding, rounding_grid


def _block(rng, steps, inputs, outputs):
    """Steps as the discretiser builds them: unit pairs relu(q + c), relu(q + c - 1) with
    opposite output weights, q reading only the columns of factor steps[k]; fst [inputs
    + 1 (`one`), H], snd [H, outputs], and the factor of each unit [H]."""
    cols = [[0, 1], [2], [3, 4, 5]]
    fst = np.zeros((inputs + 1, 2 * len(steps)))
    snd = np.zeros((2 * len(steps), outputs))
    for k, factor in enumerate(steps):
        a, b = 2 * k, 2 * k + 1
        fst[cols[factor], a] = rng.choice([-2.0, -1.0, 0.75, 1.0, 3.0], size=len(cols[factor]))
        fst[cols[factor], b] = fst[cols[factor], a]
        fst[inputs, a] = rng.choice([0.0, 0.5, -1.25])  # `one`
        fst[inputs, b] = fst[inputs, a] - 1.0
        snd[a] = rng.choice([0.0, 1.0, -1.0, 0.3], size=outputs)
        snd[b] = -snd[a]
    return fst, snd, cols


@pytest.mark.parametrize("seed", range(12))
def test_grid_bound_matches_the_bound_on_every_combination(seed):
    rng = np.random.default_rng(seed)
    levels = [[1e-7, 3e-6], [0.0, 1e-7, 3e-6]][seed % 2]  # noisy, some inputs exact
    fst, snd, cols = _block(rng, rng.integers(0, 3, size=5), 6, 3)
    factors = []
    for c in cols:
        n = rng.integers(2, 6)
        x = rng.choice([0.0, 1.0, 0.5, -0.25, 2.0], size=(n, len(c)))
        e = rng.choice(levels, size=(n, len(c)))
        factors.append(rounding_grid.Factor(np.array(c), x, e))
    constant = np.zeros(7)
    constant[6] = 1.0
    owner = rounding_grid.separate_units(fst, factors)
    assert owner is not None
    grid = rounding_grid.grid_mlp_bound(fst, snd, factors, constant, owner)

    rows = list(itertools.product(*(range(len(f.x)) for f in factors)))
    x = np.tile(constant, (len(rows), 1))
    e = np.zeros_like(x)
    for r, picks in enumerate(rows):
        for f, i in zip(factors, picks):
            x[r, f.cols], e[r, f.cols] = f.x[i], f.e[i]
    full = rounding.mlp_bound(fst, snd, x, e)
    assert np.allclose(grid.ideal, full.ideal, rtol=1e-12, atol=1e-15)
    # equal, or larger where some rows have no input error (no credit for exact sums)
    assert np.all(grid.bound >= full.bound * (1 - 1e-12))
    if any(f.e.any(axis=1).all() for f in factors):  # no row without errors
        assert np.allclose(grid.bound, full.bound, rtol=1e-12, atol=1e-300)
    assert np.array_equal(grid.unstable, full.unstable)


def test_units_reading_two_sops_are_not_separated():
    fst = np.zeros((3, 2))
    fst[0, 0] = fst[1, 0] = 1.0  # unit 0 reads both SOps
    fst[1, 1] = 1.0
    factors = [
        rounding_grid.Factor(np.array([0]), np.zeros((2, 1)), np.zeros((2, 1))),
        rounding_grid.Factor(np.array([1]), np.zeros((2, 1)), np.zeros((2, 1))),
    ]
    assert rounding_grid.separate_units(fst, factors) is None
    fst[0, 0] = 0.0
    assert rounding_grid.separate_units(fst, factors).tolist() == [1, 1]
