"""Reading a compiled model's output: the unembedding of the final residual (`unembed`,
`read_scores`: which categorical value, or which number, each position holds) and
`decode`, from output ids to the values `apply` returns. `assembled_model` runs these after
the forward pass; they are re-exported there and from `compiler/assemble.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tracr.transformer import encoder, runtime, sparse

# A categorical output whose largest one-hot entry is below this decodes to None.
NONE_THRESHOLD = 0.5


def unembed(
    output: np.ndarray, unembed_matrix: np.ndarray, use_argmax: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Residual [B, T, D] -> (output ids or numbers [B, T], present [B, T] bool)."""
    # Only the residual directions the unembedding reads (usually a few).
    unembed_matrix = np.asarray(unembed_matrix)
    rect = sparse.rectangle(unembed_matrix)  # checked on every call
    rows = rect.rows
    shape = output.shape[:2]
    final = output.reshape(-1, output.shape[-1])
    # [V, N]: one row per output value (see `read_scores`), written by a product of the
    # [N, V] layout, BLAS's fastest for these shapes.
    scores = np.empty(
        unembed_matrix.shape[1:] + final.shape[:1], np.result_type(final, unembed_matrix)
    )
    sources = rect.sources(unembed_matrix) if rect.one_per_column else None
    if sources is not None and rect.cols.size == scores.shape[0]:
        # Each value reads one residual direction (the usual unembedding): a gather and
        # a scaling, each score the product's single non-zero term.
        weights = unembed_matrix[sources, rect.cols].astype(scores.dtype)[:, None]
        np.multiply(sparse.columns(final, sparse.run(sources)).T, weights, out=scores)
        return _read(scores, shape, use_argmax)
    with runtime.blas_single_thread():
        np.matmul(final[:, sparse.span(rows)], unembed_matrix[rows], out=scores.T)
    return _read(scores, shape, use_argmax)


def _read(scores: np.ndarray, shape, use_argmax: bool) -> tuple[np.ndarray, np.ndarray]:
    if not use_argmax:
        return scores[0].reshape(shape), np.ones(shape, dtype=bool)
    return read_scores(scores, shape)


def read_scores(scores: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Scores [V, N] of V categorical values at N positions -> (the first value with the
    largest score, as argmax picks it; whether that score reaches NONE_THRESHOLD), each
    reshaped to `shape`. No value at all reads as absent.

    Values are rows, so the reductions run along axis 0, elementwise across positions
    (numpy is several times slower along a short last axis); pass `x.reshape(-1, V).T`
    for scores laid out [..., V]."""
    if scores.shape[0] == 0:
        return np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=bool)
    top = scores.max(axis=0)
    n_values = scores.shape[0]
    # Value v counts n_values - v where it reaches the maximum: the largest count is the
    # first such value; no value reaching it (NaN) gives n_values, absent.
    countdown = np.arange(n_values, 0, -1, dtype=np.int16 if n_values < 2**15 else np.int64)
    ids = n_values - ((scores == top) * countdown[:, None]).max(axis=0).astype(np.int64)
    return ids.reshape(shape), (top >= NONE_THRESHOLD).reshape(shape)


def decode(
    input_encoder: encoder.CategoricalEncoder,
    output_encoder: encoder.Encoder | None,
    raw: np.ndarray,
    present: np.ndarray,
    lengths: Sequence[int],
) -> list[list[Any]]:
    """Output ids or numbers [B, T] and their presence [B, T] -> the values of each
    sequence, as `apply_batch(...).decoded` holds them: BOS first, None where absent, PAD
    past the sequence's length."""
    if isinstance(output_encoder, encoder.CategoricalEncoder):
        table = np.empty(len(output_encoder.decoding_map) + 1, dtype=object)
        table[:-1] = [output_encoder.decoding_map[i] for i in range(len(table) - 1)]
        values = table[np.where(present, raw, len(table) - 1)]  # the last entry is None
    elif output_encoder is None or type(output_encoder) is encoder.NumericalEncoder:
        values = np.where(present, raw, np.nan).astype(object)
        values[~present] = None
    else:
        values = np.empty(raw.shape, dtype=object)
        values[:] = [
            [output_encoder.decode([v])[0] if p else None for v, p in zip(r, pr)]
            for r, pr in zip(raw.tolist(), present.tolist())
        ]
    if input_encoder.bos_token is not None:
        values[:, 0] = input_encoder.bos_token
    if min(lengths) < values.shape[1]:
        values[np.arange(values.shape[1]) >= np.asarray(lengths)[:, None]] = input_encoder.pad_token
    return values.tolist()
