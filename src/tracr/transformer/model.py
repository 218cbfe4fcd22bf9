"""The numpy forward pass: the one definition of what a compiled model computes.

A decoder-style transformer without layer norm: token + position embedding, then per
layer a multi-head attention block and a ReLU MLP block, each added to the residual
stream. Attention logits are q.k / sqrt(d_head), the standard convention of the reference,
PyTorch's scaled_dot_product_attention and TransformerLens (the compiler multiplies W_Q and
b_Q by sqrt(d_head), so the logits are the scores it built). Parameter names are the
reference Tracr's.

Shapes: B batch, T positions, D d_model, H heads, K d_head, M d_mlp.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping

import numpy as np

from tracr import caches
from tracr.transformer import plan, query_table, runtime

# Kept here for callers of the forward pass's BLAS setting.
blas_single_thread = runtime.blas_single_thread

# Logit given to masked keys; finite so that a fully masked row stays well defined.
MASKED_LOGIT = -1e30

# Magnitudes below this are set to zero after each step, as flush-to-zero hardware does.
# Attention leaves weights like e^-60 on unselected keys; their products reach the
# subnormal range, where CPU arithmetic is about 100 times slower. Values this small are
# far below every error budget, so flushing them changes no decoded output.
FLUSH_BELOW = 1e-30


def _flush(x: np.ndarray) -> np.ndarray:
    return _zero_small(x, np.abs(x) < FLUSH_BELOW)


def _zero_small(x: np.ndarray, small: np.ndarray) -> np.ndarray:
    """x with its non-zero entries where `small` holds set to 0, in place."""
    small &= x != 0  # most entries are exactly 0: scatter only where there is work
    if np.count_nonzero(small):  # (ndarray.any goes through Python-level wrappers)
        x[small] = 0
    return x


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax along the last axis [..., T]; weights that would be below FLUSH_BELOW
    (before normalising) are 0, so no subnormal number is ever formed.

    Computed keys first, on a [T, ...] copy (`_softmax_keys_first`); the result is a view
    with the keys last again.
    """
    last = logits.ndim - 1  # transposes with explicit axes: np.moveaxis costs more here
    weights = logits.transpose(last, *range(last)).copy()  # [T, ...], C-contiguous
    return _softmax_keys_first(weights).transpose(*range(1, last + 1), 0)


def _softmax_keys_first(weights: np.ndarray) -> np.ndarray:
    """`_softmax` along the first axis of a C-contiguous [T, ...], in place: the maximum
    and the sum then run elementwise across contiguous rows (numpy is several times
    slower along a short last axis). The maximum is exact in any order; the sum is one
    summation order, which the compiler's error bounds allow (they hold in every order).
    """
    weights -= weights.max(axis=0)
    # exp is slow where its result is subnormal: clamp to exp(-80) (normal in float32, and
    # below FLUSH_BELOW), then zero every weight below FLUSH_BELOW; all in place.
    np.maximum(weights, np.asarray(-80.0, dtype=weights.dtype), out=weights)
    np.exp(weights, out=weights)
    np.multiply(weights, weights >= FLUSH_BELOW, out=weights)
    weights /= weights.sum(axis=0)
    return weights


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def _activate(activation: Callable[[np.ndarray], np.ndarray], hidden: np.ndarray) -> np.ndarray:
    """_flush(activation(hidden)), for a `hidden` the caller owns: relu in place, its
    output (>= 0, or NaN) flushed without taking absolute values."""
    if activation is not relu:
        return _flush(activation(hidden))
    np.maximum(hidden, 0, out=hidden)
    return _zero_small(hidden, hidden < FLUSH_BELOW)


@dataclasses.dataclass
class TransformerConfig:
    """Model shape, with the reference's field names and TransformerLens aliases."""

    num_heads: int
    num_layers: int
    key_size: int
    mlp_hidden_size: int
    dropout_rate: float = 0.0
    activation_function: Callable[[np.ndarray], np.ndarray] = relu
    layer_norm: bool = False
    causal: bool = False
    d_model: int | None = None  # residual width; set by the compiler

    @property
    def n_heads(self) -> int:
        return self.num_heads

    @property
    def n_layers(self) -> int:
        return self.num_layers

    @property
    def d_head(self) -> int:
        return self.key_size

    @property
    def d_mlp(self) -> int:
        return self.mlp_hidden_size


class Deferred:
    """Lets a dataclass leave some fields unset until first read: `deferred(fill, ...)`
    makes an instance whose `_DEFERRED` fields `fill()` returns by name, called on the
    first read of any of them (and before copying or pickling). Reading a field then is a plain
    attribute read, the same arrays every time."""

    _DEFERRED: tuple[str, ...] = ()

    @classmethod
    def deferred(cls, fill: Callable[[], dict], **fields):
        """An instance with `fields` set and the `_DEFERRED` ones from `fill()` when one
        is first read."""
        out = cls.__new__(cls)
        out.__dict__.update(fields)
        out.__dict__["_fill"] = fill
        return out

    def __getattr__(self, name: str):  # only called for attributes not set
        fill = self.__dict__.get("_fill")
        if fill is None or name not in type(self)._DEFERRED:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        self._materialise()
        return self.__dict__[name]

    def _materialise(self) -> None:
        fill = self.__dict__.pop("_fill", None)
        if fill is not None:
            self.__dict__.update(fill())

    def __getstate__(self):
        self._materialise()
        return self.__dict__


@dataclasses.dataclass
class TransformerOutput(Deferred):
    """Everything a forward pass computes. `forward` fills `output` and `attn_logits`;
    the embeddings, each block's output and the residual after each block, are built
    from the blocks' (mostly narrow) outputs when one of them is first read: a batch
    through a small model spends a third of its time writing those arrays out."""

    _DEFERRED = ("layer_outputs", "residuals", "input_embeddings")

    layer_outputs: list[np.ndarray]  # 2 per layer (attn, mlp), each [B, T, D]
    residuals: list[np.ndarray]  # residual after each block, [B, T, D]
    attn_logits: list[np.ndarray]  # per layer [B, H, T, T]
    output: np.ndarray  # [B, T, D]
    input_embeddings: np.ndarray  # [B, T, D]


def attention_mask(config: TransformerConfig, key_mask: np.ndarray) -> np.ndarray:
    """[B, 1, T, T] bool: which key each query may attend to (a read-only view of
    key_mask where the model is not causal)."""
    batch, seq_len = key_mask.shape
    mask = np.broadcast_to(key_mask[:, None, None, :], (batch, 1, seq_len, seq_len))
    if config.causal:
        mask = mask & np.tril(np.ones((seq_len, seq_len), dtype=bool))
    return mask


def embed(params: Mapping[str, Mapping[str, np.ndarray]], token_ids: np.ndarray) -> np.ndarray:
    """[B, T] ids -> [B, T, D] token plus position embeddings."""
    tokens, positions = params["token_embed"]["embeddings"], params["pos_embed"]["embeddings"]
    batch, seq_len = token_ids.shape
    distinct = _distinct_rows(params, token_ids)
    if distinct is None:
        return tokens[token_ids] + positions[:seq_len]
    table, rows = distinct  # one gather from the table, smaller than the batch
    return np.take(table, rows, axis=0).reshape(batch, seq_len, -1)


def _distinct_rows(params, token_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """For a batch with more positions than there are (position, token) pairs: the table
    of their embeddings [T V, D] and each position's row in it [B T]; else None."""
    tokens, positions = params["token_embed"]["embeddings"], params["pos_embed"]["embeddings"]
    batch, seq_len = token_ids.shape
    if batch <= tokens.shape[0]:
        return None
    table = (positions[:seq_len, None, :] + tokens[None, :, :]).reshape(-1, tokens.shape[1])
    rows = token_ids + tokens.shape[0] * np.arange(seq_len)
    return table, rows.reshape(-1)


@functools.lru_cache(maxsize=64)
def _root(d_head: int, dtype) -> np.generic:
    """sqrt(d_head) in the model's dtype: logits are one division after the dot product."""
    return np.sqrt(np.asarray(d_head, dtype=dtype))[()]  # a scalar: immutable, shareable


caches.register(_root.cache_clear)


class Write:
    """What a block adds to the residual stream [N, D]: `values` [N, C] in the columns
    `index` (a slice or ascending indices) and zero elsewhere; index None: `values` is
    the whole [N, D]; values None: nothing."""

    __slots__ = ("index", "values")

    def __init__(self, index, values: np.ndarray | None):
        self.index, self.values = index, values

    def add_to(self, residual: np.ndarray) -> None:
        """residual [N, D] += this, in place (the columns it writes only)."""
        if self.values is None:
            return
        if self.index is None:
            residual += self.values
        else:
            residual[:, self.index] += self.values

    def full(self, shape: tuple[int, int], dtype) -> np.ndarray:
        """This as a whole [N, D] array."""
        if self.index is None and self.values is not None:
            return self.values
        out = np.zeros(shape, dtype=dtype)
        if self.values is not None:
            out[:, self.index] = self.values
        return out


# The sparse paths (`_attention`, `_mlp`) multiply only the non-zero blocks of each
# weight matrix (as `plan` lays them out); the dense ones (`_dense_*`) the whole matrices.
# Each returns a `Write`.


def _attention(params, prefix, config, x, mask, distinct=None, unmasked=None):
    """One multi-head attention block on x [N, D] (N = B * T): (its Write, logits).

    distinct: (table [P, D], rows [N]) where x = table[rows] (layer 0, whose input is
    the embedding): the projections are computed on the table's rows and gathered; heads
    with few distinct queries read their logits off the table (`query_table`).
    unmasked: see `_masked`."""
    batch, _, seq_len, _ = mask.shape
    planned = plan.attention(params, prefix, config.key_size)
    linears = [params[f"{prefix}/{name}"] for name in planned.projections]
    root = _root(config.key_size, x.dtype)
    table_heads = {}  # head -> its query_table.TableHead
    if planned.fused is not None and distinct is not None:
        found = planned.fused(distinct[0], linears)
        on_table = dict(zip(planned.projections, found))  # "query": [P, qk columns], ...
        if not config.causal:
            rows = distinct[1].reshape(batch, seq_len)
            key = (prefix,)  # the block's remembered queries (checked by their bytes)
            table_heads = query_table.heads(planned.qk_heads, on_table, rows, root, key)
        if len(table_heads) == len(planned.qk_heads):  # q and k are not needed by row
            on_table = {name: p for name, p in on_table.items() if name == "value"}
        projected = {name: np.take(p, distinct[1], axis=0) for name, p in on_table.items()}
    else:
        if planned.fused is not None and x.shape[0] >= plan.FUSE_ROWS:
            found = planned.fused(x, linears)
        else:
            found = [p(x, linear) for p, linear in zip(planned.projections.values(), linears)]
        projected = dict(zip(planned.projections, found))  # "query": [N, qk columns], ...
    logits = np.zeros((batch, config.num_heads, seq_len, seq_len), dtype=x.dtype)
    for head, cols in planned.qk_heads:
        if head in table_heads:
            logits[:, head] = table_heads[head].logits()
            continue
        q_h = projected["query"][:, cols].reshape(batch, seq_len, -1)
        k_h = projected["key"][:, cols].reshape(batch, seq_len, -1)
        np.divide(q_h @ k_h.transpose(0, 2, 1), root, out=logits[:, head])  # q.k/sqrt(K)
    logits = _masked(logits, mask, unmasked)
    if not planned.writes:
        return Write(None, None), logits
    v = projected["value"]  # [N, value columns]
    mixed = np.empty((batch, seq_len, v.shape[1]), dtype=x.dtype)
    for head, cols in planned.v_heads:
        v_h = v[:, cols].reshape(batch, seq_len, -1)
        by_table = table_heads.get(head)
        if by_table is not None and by_table.narrow:  # the distinct queries' softmax, [T, B, Q]
            weights = _softmax_keys_first(by_table.keys_first(mask[:, 0, 0], MASKED_LOGIT))
            mixed[..., cols] = by_table.spread(weights.transpose(1, 2, 0) @ v_h)
        else:
            np.matmul(_softmax(logits[:, head]), v_h, out=mixed[..., cols])
    mixed = mixed.reshape(x.shape[0], v.shape[1])
    linear = planned.linear(mixed, params[f"{prefix}/linear"], compact=True)
    return Write(planned.out_index, _flush(linear)), logits


def _mlp(params, prefix, config, x, width=None):
    """One MLP block on x [N, D]: its Write."""
    planned = plan.mlp(params, prefix, config.activation_function, width)
    if not planned.writes:
        return Write(None, None)
    hidden = planned.first(x, params[f"{prefix}/linear_1"])
    if planned.expand is not None:  # units without weights or bias: activation(0)
        full = np.zeros((x.shape[0], planned.n_used), dtype=x.dtype)
        full[:, planned.expand] = hidden
        hidden = full
    hidden = _activate(config.activation_function, hidden)
    second = planned.second(hidden, params[f"{prefix}/linear_2"], compact=True)
    return Write(planned.out_index, _flush(second))


# Below this much work per layer the dense products are cheaper than finding the
# non-zero blocks (one apply of a small model); both compute the same sums. The work is
# the dense multiply-adds plus ROW_WORK per row for the dense path's reshaping and
# transposing, which makes the sparse path pay for batches of small models too.
DENSE_WORK = 2_000_000
ROW_WORK = 1_500


def _sparse_pays(params, prefix, x) -> bool:
    weights = params[f"{prefix}/mlp/linear_1"]["w"].size + params[f"{prefix}/attn/query"]["w"].size
    return x.shape[0] * (weights * 3 + ROW_WORK) >= DENSE_WORK


def _masked(logits: np.ndarray, mask: np.ndarray, unmasked: bool | None) -> np.ndarray:
    """logits [B, H, T, T] with MASKED_LOGIT where mask [B, 1, T, T] is False.
    unmasked: whether mask is all True, where the caller knows (else it is counted)."""
    if unmasked is None:
        unmasked = np.count_nonzero(mask) == mask.size
    if unmasked:  # a batch of full-length sequences, say, masks nothing
        return logits
    return np.where(mask, logits, np.asarray(MASKED_LOGIT, dtype=logits.dtype))


def _dense_attention(params, prefix, config, x, mask, unmasked=None):
    """`_attention` with the full weight matrices (for small inputs)."""
    batch, _, seq_len, _ = mask.shape
    heads, d_head = config.num_heads, config.key_size

    def project(name):  # [B, H, T, K]
        p = params[f"{prefix}/{name}"]
        out = _add_bias(x @ p["w"].astype(x.dtype, copy=False), p["b"])
        return out.reshape(batch, seq_len, heads, d_head).transpose(0, 2, 1, 3)

    q, k, v = project("query"), project("key"), project("value")
    logits = _masked((q @ k.transpose(0, 1, 3, 2)) / _root(d_head, x.dtype), mask, unmasked)
    weights = _softmax(logits)
    mixed = (weights @ v).transpose(0, 2, 1, 3).reshape(batch * seq_len, heads * d_head)
    linear = params[f"{prefix}/linear"]
    out = _add_bias(mixed @ linear["w"].astype(x.dtype, copy=False), linear["b"])
    return Write(None, _flush(out)), logits


def _dense_mlp(params, prefix, config, x, width=None):
    """`_mlp` with the full weight matrices (for small inputs)."""
    first, second = params[f"{prefix}/linear_1"], params[f"{prefix}/linear_2"]
    w1, b1, w2 = first["w"], first["b"], second["w"]
    if width is not None:  # skip hidden units past `width`
        w1, b1, w2 = w1[:, :width], b1[:width], w2[:width]
    hidden = _add_bias(x @ w1.astype(x.dtype, copy=False), b1)
    hidden = _activate(config.activation_function, hidden)
    return Write(None, _flush(_add_bias(hidden @ w2.astype(x.dtype, copy=False), second["b"])))


def _add_bias(out: np.ndarray, b: np.ndarray) -> np.ndarray:
    """out + b, in place; compiled models' biases are mostly zero, which adds nothing."""
    if np.count_nonzero(b):
        out += b.astype(out.dtype, copy=False)
    return out


def used_mlp_widths(
    params: Mapping[str, Mapping[str, np.ndarray]], config: TransformerConfig
) -> list[int]:
    """Per layer, 1 + the last hidden unit with any non-zero weight or bias.

    Hidden units past it compute relu(0) = 0 and write nothing, so `forward` may skip
    them; compiled models pad every layer's MLP to the widest one.
    """
    widths = []
    for layer in range(config.num_layers):
        prefix = f"transformer/layer_{layer}/mlp"
        w1, b1 = params[f"{prefix}/linear_1"]["w"], params[f"{prefix}/linear_1"]["b"]
        w2 = params[f"{prefix}/linear_2"]["w"]
        used = np.flatnonzero(np.any(w1 != 0, axis=0) | (b1 != 0) | np.any(w2 != 0, axis=1))
        widths.append(int(used[-1]) + 1 if used.size else 0)
    return widths


def attention_block(params, prefix: str, config: TransformerConfig, x, mask, distinct=None):
    """Layer `prefix`'s attention on x [N, D] (N = B T; mask [B, 1, T, T]):
    (output [N, D], logits [B, H, T, T]). Sparse or dense, whichever pays.
    `distinct`: see `_attention` (the sparse path's)."""
    write, logits = _attention_write(params, prefix, config, x, mask, distinct)
    return write.full(x.shape, x.dtype), logits


def mlp_block(params, prefix: str, config: TransformerConfig, x, width: int | None = None):
    """Layer `prefix`'s MLP on x [N, D] -> [N, D]. Sparse or dense, whichever pays."""
    return _mlp_write(params, prefix, config, x, width).full(x.shape, x.dtype)


def _attention_write(params, prefix, config, x, mask, distinct=None, unmasked=None):
    if _sparse_pays(params, prefix, x):
        return _attention(params, f"{prefix}/attn", config, x, mask, distinct, unmasked)
    return _dense_attention(params, f"{prefix}/attn", config, x, mask, unmasked)


def _mlp_write(params, prefix, config, x, width=None):
    mlp = _mlp if _sparse_pays(params, prefix, x) else _dense_mlp
    return mlp(params, f"{prefix}/mlp", config, x, width)


def forward(
    params: Mapping[str, Mapping[str, np.ndarray]],
    config: TransformerConfig,
    token_ids: np.ndarray,
    key_mask: np.ndarray | None = None,
    mlp_widths: list[int] | None = None,
    dtype=None,
) -> TransformerOutput:
    """Runs the transformer on `token_ids` [B, T]; `key_mask` [B, T] hides padding.

    `mlp_widths` (from `used_mlp_widths(params, config)`) makes each layer skip the
    hidden units past it; the result is the same, since those units are zero.
    `dtype`: the float type to compute in (default: that of the embeddings).
    """
    token_ids = np.asarray(token_ids)
    if key_mask is None:
        key_mask = np.ones(token_ids.shape, dtype=bool)
    batch, seq_len = token_ids.shape
    runtime.keep_freed_memory()
    mask = attention_mask(config, key_mask)
    unmasked = not config.causal and bool(key_mask.all())
    distinct = _distinct_rows(params, token_ids)
    if distinct is not None and dtype is not None:
        distinct = distinct[0].astype(dtype, copy=False), distinct[1]

    if distinct is None:  # few sequences: keep the embeddings as they are now
        start = embed(params, token_ids).reshape(batch * seq_len, -1)
        start = start if dtype is None else start.astype(dtype, copy=False)

        def embedded() -> np.ndarray:
            return start

        residual = start.copy()  # the residual stream [N, D]: every product is 2-D
    else:  # gathered from the batch's own table, again when the stages are read

        def embedded() -> np.ndarray:
            return np.take(distinct[0], distinct[1], axis=0)

        residual = embedded()
    # Each block adds its Write to the residual in place.
    writes, attn_logits = [], []
    with runtime.blas_single_thread():
        for layer in range(config.num_layers):
            prefix = f"transformer/layer_{layer}"
            write, logits = _attention_write(
                params, prefix, config, residual, mask, distinct if layer == 0 else None, unmasked
            )
            write.add_to(residual)
            width = None if mlp_widths is None else mlp_widths[layer]
            mlp_write = _mlp_write(params, prefix, config, residual, width)
            mlp_write.add_to(residual)
            writes += [write, mlp_write]
            attn_logits.append(logits)
    shape = (batch, seq_len, residual.shape[1])
    output = residual.reshape(shape)

    def stages() -> dict:
        """The embeddings, each block's output and the residual after each block, as
        `forward` computed them (the same operations in the same order)."""
        first = embedded()
        stream = first.copy()
        residuals = []
        for write in writes[:-1]:
            write.add_to(stream)
            residuals.append(stream.reshape(shape))
            stream = stream.copy()
        return {
            "input_embeddings": first.reshape(shape),
            "layer_outputs": [w.full(stream.shape, stream.dtype).reshape(shape) for w in writes],
            "residuals": [*residuals, output] if writes else [],
        }

    return TransformerOutput.deferred(stages, attn_logits=attn_logits, output=output)
