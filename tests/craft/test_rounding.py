"""craft.rounding: every bound holds for sums computed in orders a BLAS does not use."""

from __future__ import annotations

import numpy as np
import pytest

from tests.transformer import adversarial
from tracr.craft import rounding

F32 = np.float32


def _sum_in_order(terms: np.ndarray, order: str, rng) -> float:
    """float32 sum of exact float64 products `terms` (each a float32 product), in order."""
    if order == "fma":  # products never rounded, one rounding per step
        acc = F32(0)
        for t in terms[::-1]:
            acc = F32(np.float64(acc) + t)
        return float(acc)
    values = terms.astype(F32)
    if order == "sorted":
        values = values[np.argsort(-np.abs(values))]
    elif order == "random":
        values = values[rng.permutation(len(values))]
    elif order == "pairwise":
        while len(values) > 1:
            pad = np.append(values, F32(0)) if len(values) % 2 else values
            values = (pad[0::2] + pad[1::2]).astype(F32)
        return float(values[0]) if len(values) else 0.0
    acc = F32(0)
    for v in values:
        acc = F32(acc + v)
    return float(acc)


@pytest.mark.parametrize("seed", range(6))
def test_sum_bound_holds_in_every_order(seed):
    """Large cancelling terms plus small ones: the exact sum (float64 of float32 values)
    and every float32 order stay within sum_bound."""
    rng = np.random.default_rng(seed)
    large = rng.uniform(-100, 100, 12).astype(F32)
    large = np.concatenate([large, -large[:6] * F32(0.999)])
    small = rng.uniform(-1e-6, 1e-6, 30).astype(F32)
    x = np.concatenate([large, small]).astype(np.float64)
    w = rng.choice([1.0, -1.0, 0.5, 3.0, 0.1], len(x)).astype(F32).astype(np.float64)
    terms = x * w
    exact = float(np.sum(terms))  # float64 is exact enough here (60 terms of 48 bits)
    bound = rounding.sum_bound(
        np.sum(np.abs(terms)),
        np.sum(np.abs(terms[len(large) :])),
        len(large),
        len(terms),
        extent=max(terms[terms > 0].sum(), -terms[terms < 0].sum()),
    )
    for order in ("sequential", "sorted", "random", "pairwise", "fma"):
        for _ in range(5):
            got = _sum_in_order(terms, order, rng)
            assert abs(got - exact) <= bound * (1 + 1e-9) + 1e-30, order


def test_grid_bits_and_exact_sums():
    assert rounding.grid_bits(np.array([1.0, 2.5, -0.25])) == 2
    assert rounding.grid_bits(np.array([3.0, 8.0])) == 0
    assert rounding.grid_bits(np.zeros(3)) < -100
    assert rounding.exact_sums(np.array([2.0**20]), 3)
    assert not rounding.exact_sums(np.array([2.0**22]), 3)


def _random_mlp(rng, n_in, n_hidden, n_out):
    fst = rng.choice([0.0, 0.0, 1.0, -1.0, 2.0, 0.37, -5.5], (n_in, n_hidden))
    snd = rng.choice([0.0, 1.0, -1.0, 0.25, 7.1], (n_hidden, n_out))
    return fst, snd


@pytest.mark.parametrize("seed", range(5))
def test_mlp_bound_holds_for_perturbed_inputs_in_every_order(seed):
    rng = np.random.default_rng(seed)
    fst, snd = _random_mlp(rng, 6, 20, 4)
    inputs = rng.choice([0.0, 1.0, 0.5, -3.0, 1 / 3], (10, 6))
    errors = rng.choice([0.0, 1e-6, 1e-4], (10, 6))
    result = rounding.mlp_bound(fst, snd, inputs, errors)
    w1, w2 = fst.astype(F32), snd.astype(F32)
    for _ in range(20):
        x = (inputs + errors * rng.uniform(-1, 1, inputs.shape)).astype(F32)
        for order in adversarial.ORDERS:
            hidden = np.maximum(adversarial.matmul(x, w1, order), 0)
            out = adversarial.matmul(hidden, w2, order).astype(np.float64)
            ok = np.abs(out - result.ideal) <= result.bound * (1 + 1e-9) + 1e-30
            assert np.all(ok | result.unstable[:, None]), order


def test_mlp_bound_flags_inputs_beyond_a_units_margin():
    fst = np.array([[1.0], [-0.5]])  # unit relu(x - 0.5 one), switches at x = 0.5
    snd = np.array([[1.0]])
    x = np.array([[0.6, 1.0], [0.6, 1.0]])
    e = np.array([[0.05, 0.0], [0.2, 0.0]])
    assert rounding.mlp_bound(fst, snd, x, e).unstable.tolist() == [False, True]


def test_a_unit_that_writes_nothing_may_switch():
    """Unit 0 switches at x = 0.5, unit 1 at x = 0.9; x = 0.6 +- 0.2 may cross only the
    first. Where unit 0's second-layer row is zero (a discretiser's step between equal
    outputs) it cannot move the output, and the input is not unstable."""
    fst = np.array([[1.0, 1.0], [-0.5, -0.9]])
    x = np.array([[0.6, 1.0]])
    e = np.array([[0.2, 0.0]])
    unit_0_writes = np.array([[1.0], [0.0]])
    unit_1_writes = np.array([[0.0], [1.0]])
    assert rounding.mlp_bound(fst, unit_0_writes, x, e).unstable.tolist() == [True]
    result = rounding.mlp_bound(fst, unit_1_writes, x, e)
    assert result.unstable.tolist() == [False] and result.bound.tolist() == [[0.0]]


def test_a_block_whose_units_are_all_off_is_bounded_by_zero():
    """Every unit surely off on every row, and a second layer sparse enough to be
    multiplied cell by cell: no live cell at all (np.bincount of nothing is int64, which
    once made the bound fail with a casting error instead of returning 0)."""
    hidden = 200
    fst = np.zeros((2, hidden))
    fst[1] = -1.0  # relu(-one): off
    snd = np.zeros((hidden, 1))
    snd[7, 0] = 1.0  # one nonzero in 200: multiplied over the nonzeros
    x = np.array([[0.5, 1.0], [0.25, 1.0]])
    e = np.array([[1e-3, 0.0], [1e-3, 0.0]])
    result = rounding.mlp_bound(fst, snd, x, e)
    assert result.bound.dtype == np.float64
    assert result.bound.tolist() == [[0.0], [0.0]] and not result.unstable.any()


def test_exact_block_recognises_lookup_tables():
    fst = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    snd = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert rounding.exact_block(fst, snd, np.ones(3), 0)
    assert not rounding.exact_block(fst, snd * 0.1, np.ones(3), 0)


@pytest.mark.parametrize("seed", range(4))
def test_attention_logit_error_holds(seed):
    """Logits of one-hot queries and keys moved by noise, in every order, stay within D
    of the ideal ones; equal ideal logits stay within D_tie of each other."""
    rng = np.random.default_rng(seed)
    rows, cols = 8, 7  # query dims (6 SOp values + one + bos), key dims (6 + bos)
    w = np.zeros((rows, cols))
    w[:6, :6] = 23.25 * (rng.random((6, 6)) < 0.5)
    w[6, 6], w[7, 6] = 11.5, 23.25
    noisy_q, noisy_k = np.r_[np.ones(6, bool), False, False], np.r_[np.ones(6, bool), False]
    e = 1e-5
    d, tie = rounding.attention_logit_error(w, noisy_q, noisy_k, 1, 1, e, e, 6 * e, 6 * e)
    for _ in range(50):
        q, k = np.zeros(rows), np.zeros(cols)
        q[rng.integers(6)], q[6] = 1.0, 1.0
        k[rng.integers(6)] = 1.0
        ideal = q @ w @ k
        qn = (q + noisy_q * rng.uniform(-e, e, rows)).astype(F32)
        kn = (k + noisy_k * rng.uniform(-e, e, cols)).astype(F32)
        for order in adversarial.ORDERS:
            for side in ("query", "key"):
                if side == "query":
                    left = adversarial.matmul(qn[None], w.astype(F32), order)[0]
                    logit = adversarial.matmul(left[None], kn[:, None], order)[0, 0]
                else:
                    right = adversarial.matmul(kn[None], w.T.astype(F32), order)[0]
                    logit = adversarial.matmul(qn[None], right[:, None], order)[0, 0]
                assert abs(float(logit) - ideal) <= d
    assert tie == 2 * d
    exact = rounding.attention_logit_error(w, noisy_q, noisy_k, 1, 1, 0.0, 0.0, 0.0, 0.0)
    assert exact[1] == 0.0  # a single-term selector's ties are bit-identical
    conjunction = rounding.attention_logit_error(w, noisy_q, noisy_k, 1, 1, 0, 0, 0, 0, 3)
    assert conjunction[1] > 0
