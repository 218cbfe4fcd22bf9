"""Layer 0's attention heads with few distinct queries, read off the embedding table.

At layer 0 a position's query and key are functions of its row of the embedding table
(its (position, token) pair, `model._distinct_rows`). With q_t, k_t [P, K] the table's
queries and keys, Q the distinct rows of q_t (compared bit for bit) and
scores = q_t[Q] k_t^T / sqrt(K) [Q, P], the logit of position i for position j is
scores[query id of row i, row j]: gathers, where the batch would take one product per
sequence; each score has the terms the per-sequence product sums (BLAS may add them in
another order, which the compiler's bounds allow: they hold in every order). A softmax row
depends only on its query's logits, so where the mask does not depend on the query (not
causal) and Q < T, the softmax runs on each sequence's Q distinct query rows, [T, B, Q]
instead of [T, B, T], and each position's mixed values are gathered from its query's
(`TableHead.narrow`). With more distinct queries, the table still gives the logits where
its scores take fewer multiply-adds than the batch's products (Q P < B T T).
`model._attention` runs the softmax and the products; this module holds the indices.
"""

from __future__ import annotations

import numpy as np

from tracr import caches


class TableHead:
    """One head of layer 0 whose queries take Q distinct values."""

    def __init__(self, queries, k_t, ids, rows: np.ndarray, root: np.ndarray):
        """queries: the distinct rows of q_t [Q, K]; k_t: the table's keys [P, K]; ids:
        each table row's distinct query [P]; rows: each position's table row [B, T];
        root: sqrt(K)."""
        self.scores = np.divide(queries @ k_t.T, root)  # [Q, P]
        self.n_queries = queries.shape[0]
        self.rows = rows
        self.query_ids = ids[rows]  # [B, T]
        # Whether the softmax runs on the distinct queries (`keys_first`, `spread`).
        self.narrow = self.n_queries < rows.shape[1]

    def logits(self) -> np.ndarray:
        """[B, T, T]: scores[query id of i, row of j]."""
        batch, seq_len = self.rows.shape
        by_query = np.take(self.scores, self.rows, axis=1).reshape(-1, seq_len)  # [Q B, T]
        return np.take(by_query, self.query_ids * batch + np.arange(batch)[:, None], axis=0)

    def keys_first(self, key_mask: np.ndarray, masked_logit: float) -> np.ndarray:
        """The logits of each sequence's distinct queries, keys first [T, B, Q]; keys
        where key_mask [B, T] is False hold masked_logit."""
        logits = np.take(self.scores.T, self.rows.T, axis=0)
        if key_mask.all():
            return logits
        return np.where(key_mask.T[:, :, None], logits, np.asarray(masked_logit, logits.dtype))

    def spread(self, mixed: np.ndarray) -> np.ndarray:
        """Each distinct query's row of mixed [B, Q, Kv] at the positions that hold it:
        [B, T, Kv]."""
        batch = np.arange(mixed.shape[0])[:, None] * self.n_queries
        return np.take(mixed.reshape(-1, mixed.shape[2]), self.query_ids + batch, axis=0)


def heads(qk_heads, on_table, rows: np.ndarray, root: np.ndarray, key: tuple) -> dict:
    """{head: TableHead} for the heads (of `qk_heads`: (head, its columns)) whose table
    queries on_table["query"] [P, ...] take fewer distinct values than there are
    positions, or few enough that their scores cost less than the batch's products
    (rows: each position's table row [B, T]); `key` names the block."""
    found = {}
    batch, seq_len = rows.shape
    for head, cols in qk_heads:
        q_t, k_t = on_table["query"][:, cols], on_table["key"][:, cols]
        first, ids = distinct_queries(q_t, (*key, head))
        if first.size < seq_len or first.size * q_t.shape[0] <= batch * seq_len * seq_len:
            found[head] = TableHead(q_t[first], k_t, ids, rows, root)
    return found


# Each head's latest distinct queries, by (block name, head, shape, dtype): (the table's
# bytes, the first row of each distinct row, each row's distinct row). Layer 0's queries
# change only with the weights, so finding them (a sort) is mostly skipped; the bytes are
# compared every call, so models with the same block names only take turns.
_DISTINCT_QUERIES: dict[tuple, tuple[bytes, np.ndarray, np.ndarray]] = {}
_MAX_DISTINCT_QUERIES = 256
caches.register(_DISTINCT_QUERIES.clear)


def distinct_queries(q_t: np.ndarray, key: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(the first row of each distinct row of q_t [P, K], compared bit for bit: [Q];
    each row's distinct row: [P]). `key` names the head whose queries these are."""
    q_rows = np.ascontiguousarray(q_t)
    as_bytes = q_rows.tobytes()
    key = (*key, q_rows.shape, q_rows.dtype.str)
    known = _DISTINCT_QUERIES.get(key)
    if known is not None and known[0] == as_bytes:
        return known[1], known[2]
    rows = q_rows.view(np.dtype((np.void, q_rows.itemsize * q_rows.shape[1]))).ravel()
    _, first, ids = np.unique(rows, return_index=True, return_inverse=True)
    if len(_DISTINCT_QUERIES) >= _MAX_DISTINCT_QUERIES:
        _DISTINCT_QUERIES.clear()
    _DISTINCT_QUERIES[key] = as_bytes, first, ids.reshape(-1)
    return first, ids.reshape(-1)
