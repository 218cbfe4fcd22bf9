"""Test helpers: residual inputs with a BOS position, and every way to run a craft block.

A block runs three ways: its craft `apply` (float64), and a plain-numpy forward pass over
the whole residual stream, in float32 and in float64, with weights laid out the way an
assembled model holds them (W_Q / W_K / W_OV, W_in / W_out). Outputs come back as
arrays in the residual order, so tests compare them with one expectation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tracr.craft import bases, transformers

ONE = bases.BasisDirection("one")
BOS = bases.BasisDirection("tokens", "compiler_bos")
ONE_SPACE = bases.VectorSpaceWithBasis([ONE])
BOS_SPACE = bases.VectorSpaceWithBasis([BOS])
DTYPES = (np.float32, np.float64)


def sequences(
    residual: bases.VectorSpaceWithBasis,
    rows: Sequence[Sequence[Mapping[bases.BasisDirection, float]]],
) -> np.ndarray:
    """[batch, 1 + seq, d]: position 0 is BOS (one = bos = 1), then one row per mapping
    (one = 1 plus the given components). All sequences must have the same length."""
    batch, seq = len(rows), len(rows[0])
    x = np.zeros((batch, 1 + seq, residual.num_dims))
    x[:, :, residual.index(ONE)] = 1.0
    x[:, 0, residual.index(BOS)] = 1.0
    for b, row in enumerate(rows):
        for p, components in enumerate(row):
            for direction, value in components.items():
                x[b, 1 + p, residual.index(direction)] += value
    return x


def rows_with_bos(
    residual: bases.VectorSpaceWithBasis, rows: Sequence[Mapping[bases.BasisDirection, float]]
) -> np.ndarray:
    """[1 + len(rows), d]: the BOS position, then one position per mapping (for MLPs,
    which act on each position alone)."""
    return sequences(residual, [rows])[0]


def _embed_rows(residual, space, matrix, cols):
    out = np.zeros((residual.num_dims, cols))
    out[residual.indices(space.basis)] = matrix
    return out


def _mlp_np(mlp: transformers.MLP, residual, x, dtype):
    w_in = _embed_rows(residual, mlp.fst.input_space, mlp.fst.matrix, mlp.hidden_space.num_dims)
    w_out = np.zeros((mlp.hidden_space.num_dims, residual.num_dims))
    w_out[:, residual.indices(mlp.snd.output_space.basis)] = mlp.snd.matrix
    hidden = np.maximum(x @ w_in.astype(dtype), 0)  # [..., d_mlp]
    return hidden @ w_out.astype(dtype)


def _softmax(logits):
    weights = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
    return weights / np.sum(weights, axis=-1, keepdims=True)


def _head_np(head: transformers.AttentionHead, residual, x, dtype):
    qk, ov = head.w_qk, head.w_ov
    w_q = _embed_rows(residual, qk.left_space, qk.matrix, qk.right_space.num_dims)
    w_k = _embed_rows(
        residual, qk.right_space, np.eye(qk.right_space.num_dims), qk.right_space.num_dims
    )
    w_ov = np.zeros((residual.num_dims, residual.num_dims))
    w_ov[
        np.ix_(residual.indices(ov.input_space.basis), residual.indices(ov.output_space.basis))
    ] = ov.matrix
    logits = (x @ w_q.astype(dtype)) @ np.swapaxes(x @ w_k.astype(dtype), -1, -2)
    if head.causal:
        seq = x.shape[-2]
        logits = np.where(np.triu(np.ones((seq, seq), bool), 1), -np.inf, logits)
    return _softmax(logits) @ (x @ w_ov.astype(dtype))


def numpy_forward(block, residual, x, dtype):
    """The block's output (a residual delta) computed in plain numpy at dtype."""
    x = x.astype(dtype)
    if isinstance(block, transformers.MLP):
        return _mlp_np(block, residual, x, dtype)
    if isinstance(block, transformers.AttentionHead):
        return _head_np(block, residual, x, dtype)
    if isinstance(block, transformers.SeriesWithResiduals):
        start = x
        for sub in block.blocks:
            x = x + numpy_forward(sub, residual, x, dtype)
        return x - start
    raise TypeError(type(block))


def craft_forward(block, residual, x):
    """The block's output delta from its craft `apply`, in residual order."""
    vec = residual.make_vector(x).project(block.residual_space)
    out = block.apply(vec)
    if isinstance(block, transformers.SeriesWithResiduals):
        out = out - vec
    return out.project(residual).magnitudes


def run_all(block, x, residual=None):
    """{"craft": ..., "float32": ..., "float64": ...} outputs of block on x."""
    residual = residual or block.residual_space
    outs = {"craft": craft_forward(block, residual, x)}
    for dtype in DTYPES:
        outs[np.dtype(dtype).name] = numpy_forward(block, residual, x, dtype).astype(np.float64)
    return outs


def residual_with(block, *spaces: bases.VectorSpaceWithBasis) -> bases.VectorSpaceWithBasis:
    return bases.join_vector_spaces(block.residual_space, ONE_SPACE, BOS_SPACE, *spaces)


def assert_one_hot(out: np.ndarray, expected_cols: np.ndarray, cleanliness: float = 1e-3):
    """out [rows, k] is the one-hot of expected_cols (-1 = the zero vector): argmax
    agrees and every entry is within `cleanliness` of the one-hot."""
    target = np.zeros_like(out)
    hot = expected_cols >= 0
    target[np.nonzero(hot)[0], expected_cols[hot]] = 1.0
    error = np.max(np.abs(out - target)) if out.size else 0.0
    assert error < cleanliness, f"one-hot error {error}"
    if np.any(hot):
        assert np.array_equal(np.argmax(out[hot], axis=-1), expected_cols[hot])


def assert_numbers(out: np.ndarray, expected: np.ndarray, rel=1e-5, abs_=1e-6):
    """math.isclose(rel_tol=1e-5, abs_tol=1e-6) elementwise, as the end-to-end tests use."""
    bound = np.maximum(rel * np.abs(expected), abs_)
    error = np.abs(out - expected)
    worst = np.argmax(error - bound) if error.size else 0
    assert np.all(error <= bound), f"error {error.flat[worst]} at expected {expected.flat[worst]}"
