"""craft.rounding's fast paths give the bounds of the plain computation.

`mlp_bound` multiplies over nonzeros, skips kinds that are 0, shares equal products,
sums second-layer terms only over units that may be on, groups twins by a projection
and bounds rows a few at a time. Here the same bound is computed the plain way (every
product dense, every kind, twins by comparing whole columns, all rows at once) on
random sparse blocks shaped like compiled ones, and the two must agree: to float64
rounding, and never looser.
"""

from __future__ import annotations

import numpy as np
import pytest

from tracr.craft import rounding

U = rounding.U


def _plain_sum_bound(total, small, n_large, n_terms, inexact, extent):
    """Bound (*), as rounding.sum_bound states it."""
    g = rounding.gamma(np.maximum(n_terms, 1))
    products = 2 * U * inexact
    reach = extent + products + g * total
    split = np.maximum(n_large - 1, 0) * U * reach + (1 + g) ** 2 * small
    classical = np.maximum(n_terms - 1, 0) * U * reach
    return products + np.minimum(split, classical)


def _kinds(w):
    mantissa, _ = np.frexp(np.abs(w))
    exact = (w == 0) | (mantissa == 0.5)
    return {
        "w": w,
        "abs": np.abs(w),
        "nz": (w != 0).astype(np.float64),
        "pos": np.maximum(w, 0),
        "neg": np.maximum(-w, 0),
        "inexact": np.where(exact, 0.0, np.abs(w)),
    }


def _plain_mlp_bound(fst, snd, x, e):
    """mlp_bound as its docstring states it, dense and straightforward."""
    w1, w2 = rounding.as_float32_values(fst), rounding.as_float32_values(snd)
    k1, k2 = _kinds(w1), _kinds(w2)
    z = x @ w1
    big, mag = x != 0, np.abs(x) + e
    move, total1 = e @ k1["abs"], mag @ k1["abs"]
    exact_in = (e == 0) & ((x == 0) | (np.abs(x) == 1))
    inexact1 = np.where(exact_in, 0.0, mag) @ k1["inexact"]
    n_terms1 = (big | (e > 0)) @ k1["nz"]
    rho = _plain_sum_bound(
        total1,
        (e * ~big) @ k1["abs"],
        big @ k1["nz"],
        n_terms1,
        inexact1,
        np.maximum(mag @ k1["pos"], mag @ k1["neg"]),
    )
    two = 2 * U * inexact1 + U * (np.abs(z) + move + 2 * U * inexact1)
    rho = np.where(n_terms1 <= 2, two, rho)
    exact_rows = np.all(e == 0, axis=1)
    bits = rounding.grid_bits(x) + rounding.grid_bits(w1)
    rho = np.where(exact_rows[:, None] & rounding.exact_sums(total1, bits), 0.0, rho)
    radius = move + rho
    off, on = z + radius <= 0, z - radius > 0
    unstable = ~(off | on)
    ideal = np.maximum(z, 0) @ w2
    dev = (radius * unstable + rho * on) @ k2["abs"]
    # Twins: units whose first-layer weights agree on every input that moves.
    moving = np.flatnonzero(np.any(e > 0, axis=0))
    if moving.size:
        _, reps, group = np.unique(w1[moving].T, axis=0, return_index=True, return_inverse=True)
        member = np.eye(len(reps))[np.asarray(group).ravel()]  # [H, G]
        reach = e[:, moving] @ np.abs(w1[np.ix_(moving, reps)])  # [P, G]
        summed = np.einsum("pu,ug,uo->pgo", on * 1.0, member, w2)
        dev += np.einsum("pg,pgo->po", reach, np.abs(summed))
    hmax = np.where(off, 0.0, np.maximum(z + radius, 0.0))
    total2 = hmax @ k2["abs"]
    rho2 = _plain_sum_bound(
        total2,
        (hmax * unstable) @ k2["abs"],
        on @ k2["nz"],
        ~off @ k2["nz"],
        hmax @ k2["inexact"],
        np.maximum(hmax @ k2["pos"], hmax @ k2["neg"]),
    )
    exact_hidden = exact_rows & np.all(rho == 0, axis=1)
    bits2 = bits + rounding.grid_bits(w2)
    rho2 = np.where(exact_hidden[:, None] & rounding.exact_sums(total2, bits2), 0.0, rho2)
    switching = unstable & (np.abs(z) > 1e-9 * total1)
    return ideal, dev + rho2, np.any(switching, axis=1)


def _random_block(rng, n_groups, group_size, n_numbers, n_hidden, n_out, noisy):
    """A lookup-like block on one-hot groups, numbers and `one` (last input), with twin
    units (equal first-layer columns, output weights +-w) and its ideal inputs."""
    n_in = n_groups * group_size + n_numbers + 1
    fst = np.zeros((n_in, n_hidden))
    for u in range(n_hidden):
        rows = rng.choice(n_in - 1, size=rng.integers(1, 4), replace=False)
        fst[rows, u] = rng.choice([1.0, 2.0, -1.0, 0.37, 1.5], len(rows))
        fst[-1, u] = rng.choice([0.0, -1.0, -0.5, -1.5, -3.5, 0.25])
    twins = rng.choice(n_hidden, size=n_hidden // 4, replace=False)
    fst[:, twins[1::2]] = fst[:, twins[: len(twins) // 2 * 2 : 2]]
    snd = np.zeros((n_hidden, n_out))
    snd[np.arange(n_hidden), rng.integers(n_out, size=n_hidden)] = rng.choice(
        [1.0, -1.0, 0.25, 7.1, 3.0], n_hidden
    )
    snd[twins[1::2]] = -snd[twins[: len(twins) // 2 * 2 : 2]]
    rows = 30
    x = np.zeros((rows, n_in))
    e = np.zeros_like(x)
    for g in range(n_groups):
        cols = g * group_size + rng.integers(group_size, size=rows)
        x[np.arange(rows), cols] = 1.0
        if noisy[g]:
            e[:, g * group_size : (g + 1) * group_size] = rng.choice([1e-7, 1e-5, 0.03])
    numbers = slice(n_groups * group_size, n_in - 1)
    x[:, numbers] = rng.choice([0.0, 0.5, -2.0, 1 / 3, 4.0], (rows, n_numbers))
    e[:, numbers] = rng.choice([0.0, 0.0, 1e-6], (rows, n_numbers))
    x[:, -1] = 1.0
    x[-1], e[-1, : n_in - 1] = 0.0, 1e-6  # BOS: every SOp ideally 0, within its error
    x[-1, -1] = 1.0
    return fst, snd, x, e


SHAPES = [
    # groups, size, numbers, hidden, out: dense BLAS products / sparse ones (and the
    # second layer over live cells) / wide outputs with several units per column
    (2, 4, 1, 12, 5),
    (3, 20, 2, 200, 150),
    (2, 100, 0, 300, 40),
    (1, 3, 2, 6, 2),
]


@pytest.mark.parametrize("seed", range(12))
def test_mlp_bound_agrees_with_the_plain_computation(seed):
    rng = np.random.default_rng(seed)
    shape = SHAPES[seed % len(SHAPES)]
    noisy = rng.random(shape[0]) < 0.7
    fst, snd, x, e = _random_block(rng, *shape, noisy)
    if seed % 3 == 0:
        e[:] = 0.0  # exact inputs: the exact-sum shortcuts
    fast = rounding.mlp_bound(fst, snd, x, e)
    ideal, bound, unstable = _plain_mlp_bound(fst, snd, x, e)
    np.testing.assert_array_equal(fast.unstable, unstable)
    # Both are float64 sums in some order (BLAS's, or over the nonzeros): equal to its
    # rounding, relative to the terms' size.
    scale = 1e-12 * np.max(np.abs(ideal), initial=1.0)
    np.testing.assert_allclose(fast.ideal, ideal, rtol=1e-12, atol=scale)
    np.testing.assert_allclose(fast.bound, bound, rtol=1e-9, atol=1e-300)
    assert np.all(fast.bound <= bound * (1 + 1e-12))


@pytest.mark.parametrize("seed", range(3))
def test_mlp_bound_in_row_chunks_is_no_looser(seed, monkeypatch):
    """Rows bounded a few at a time (bounded memory) may group more twins and find
    more exact rows, never fewer."""
    rng = np.random.default_rng(100 + seed)
    fst, snd, x, e = _random_block(rng, *SHAPES[1], np.array([True, False, True]))
    whole = rounding.mlp_bound(fst, snd, x, e)
    monkeypatch.setattr(rounding, "_CHUNK_CELLS", 7 * max(fst.shape[1], np.count_nonzero(snd)))
    chunked = rounding.mlp_bound(fst, snd, x, e)
    np.testing.assert_array_equal(chunked.unstable, whole.unstable)
    np.testing.assert_array_equal(chunked.ideal, whole.ideal)
    assert np.all(chunked.bound <= whole.bound * (1 + 1e-12))


def test_twin_groups_compare_whole_columns_when_the_projection_collides():
    w = np.array([[1.0, 0.0, 1.0, 2.0], [0.0, 1.0, 0.0, 0.0]])
    group, reps = rounding._twin_groups(w)
    assert group[0] == group[2] and len({*group.tolist()}) == 3
    colliding = np.array([1.0, 1.0])  # columns (1, 0) and (0, 1) project alike
    group, reps = rounding._twin_groups(w, probe=colliding)
    assert group[0] == group[2] and group[0] != group[1] and len(reps) == 3
    np.testing.assert_array_equal(w[:, reps[group]], w)


@pytest.mark.parametrize("width", [2, 7, 16, 33, 130])
def test_equal_columns_are_twins_wherever_they_sit(width):
    """A column and its copy, one first and one last (a BLAS kernel's main loop and its
    tail), fall in one twin group; the groups are exactly those of np.unique."""
    rng = np.random.default_rng(width)
    w = rng.standard_normal((23, width)) * rng.integers(1, 1000, (23, 1))
    w[:, -1] = w[:, 0]
    group, reps = rounding._twin_groups(w)
    assert group[0] == group[-1]
    _, exact = np.unique(w.T, axis=0, return_inverse=True)
    exact = np.asarray(exact).ravel()
    same = group[:, None] == group[None, :]
    np.testing.assert_array_equal(same, exact[:, None] == exact[None, :])
    np.testing.assert_array_equal(w, w[:, reps[group]])
