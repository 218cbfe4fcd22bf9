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

import contextlib
import ctypes
import dataclasses
import os
import sys
import weakref
from collections.abc import Callable, Mapping

import numpy as np

# Logit given to masked keys; finite so that a fully masked row stays well defined.
MASKED_LOGIT = -1e30

# Magnitudes below this are set to zero after each step, as flush-to-zero hardware does.
# Attention leaves weights like e^-60 on unselected keys; their products reach the
# subnormal range, where CPU arithmetic is about 100 times slower. Values this small are
# far below every error budget, so flushing them changes no decoded output.
FLUSH_BELOW = 1e-30


def _flush(x: np.ndarray) -> np.ndarray:
    tiny = np.abs(x) < FLUSH_BELOW
    tiny &= x != 0  # most entries are exactly 0: scatter only where there is work
    if tiny.any():
        x[tiny] = 0
    return x


# Rows at most this long take their softmax maximum column by column (numpy's
# reductions along a short last axis are several times slower than elementwise passes)...
SHORT_ROW = 64
# ... when there are at least this many rows (for a few rows, one call is quicker).
MANY_ROWS = 1024


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax along the last axis [..., T]; weights that would be below FLUSH_BELOW
    (before normalising) are 0, so no subnormal number is ever formed.

    The maximum is exact in any order; the row sums are one matrix-vector product,
    another summation order, which the compiler's error bounds allow (they hold in every
    order).
    """
    seq_len = logits.shape[-1]
    if seq_len <= SHORT_ROW and logits.size >= MANY_ROWS * seq_len:
        top = logits[..., 0].copy()
        for key in range(1, seq_len):
            np.maximum(top, logits[..., key], out=top)
    else:
        top = logits.max(axis=-1)
    shifted = logits - top[..., None]
    # exp is slow where its result is subnormal: clamp to exp(-80) (normal in float32),
    # then zero every weight below FLUSH_BELOW.
    weights = np.exp(np.maximum(shifted, np.asarray(-80.0, dtype=shifted.dtype)))
    weights *= shifted >= _LOG_FLUSH
    total = weights.reshape(-1, seq_len) @ np.ones(seq_len, dtype=weights.dtype)
    weights /= total.reshape(top.shape)[..., None]
    return weights


_LOG_FLUSH = float(np.log(FLUSH_BELOW))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


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


@dataclasses.dataclass
class TransformerOutput:
    layer_outputs: list[np.ndarray]  # 2 per layer (attn, mlp), each [B, T, D]
    residuals: list[np.ndarray]  # residual after each block, [B, T, D]
    attn_logits: list[np.ndarray]  # per layer [B, H, T, T]
    output: np.ndarray  # [B, T, D]
    input_embeddings: np.ndarray  # [B, T, D]


def attention_mask(config: TransformerConfig, key_mask: np.ndarray) -> np.ndarray:
    """[B, 1, T, T] bool: which key each query may attend to."""
    _, seq_len = key_mask.shape
    mask = np.repeat(key_mask[:, None, None, :], seq_len, axis=2)
    if config.causal:
        mask = mask & np.tril(np.ones((seq_len, seq_len), dtype=bool))
    return mask


def embed(params: Mapping[str, Mapping[str, np.ndarray]], token_ids: np.ndarray) -> np.ndarray:
    """[B, T] ids -> [B, T, D] token plus position embeddings."""
    tokens, positions = params["token_embed"]["embeddings"], params["pos_embed"]["embeddings"]
    batch, seq_len = token_ids.shape
    if batch * seq_len <= tokens.shape[0] * seq_len:
        return tokens[token_ids] + positions[:seq_len]
    # One gather from the (position, token) sum table, smaller than the batch.
    table = (positions[:seq_len, None, :] + tokens[None, :, :]).reshape(-1, tokens.shape[1])
    flat = token_ids + tokens.shape[0] * np.arange(seq_len)
    return np.take(table, flat.reshape(-1), axis=0).reshape(batch, seq_len, -1)


# The forward pass multiplies only the non-zero blocks of each weight matrix. Compiled
# models are very sparse: an MLP reads the few residual directions of its inputs and
# writes those of its output, a query reads one or two SOps, and every layer is padded
# to the widest one. Dropping a product whose weight is exactly zero changes no sum (it
# adds +0), so the result is the dense forward's up to the order of summation.
#
# Which rows and columns of a matrix hold its non-zeros (its "rectangle") is remembered
# per array object and checked on every call, so that weights users edit in place take
# effect on the next call, whatever they change: the check counts the matrix's non-zero
# bit patterns (one fast pass, cheaper than reading the matrix into a product) and those
# inside the rectangle; the rectangle is found afresh when the two counts differ or
# differ from the remembered count. -0.0 counts as non-zero here, which only adds
# products that are exactly zero.


class _Rectangle:
    """The rows and columns of a matrix that hold its non-zero entries."""

    __slots__ = ("ref", "rows", "cols", "row_mask", "col_mask", "count")

    def __init__(self, w: np.ndarray, bits: np.ndarray):
        nonzero = bits != 0
        self.ref = weakref.ref(w)
        self.row_mask = nonzero.any(axis=1)
        self.col_mask = nonzero.any(axis=0)
        self.rows = np.flatnonzero(self.row_mask)
        self.cols = np.flatnonzero(self.col_mask)
        self.count = int(np.count_nonzero(bits))

    def holds_all(self, w: np.ndarray, bits: np.ndarray) -> bool:
        """Whether w is the matrix this was found for and its non-zeros are still inside."""
        if self.ref() is not w:
            return False
        count = np.count_nonzero(bits)
        if count != self.count:
            return False
        return np.count_nonzero(_block(bits, self.rows, self.cols)) == count


_RECTANGLES: dict[int, _Rectangle] = {}
# Forget rectangles of arrays that no longer exist once this many are remembered.
_MAX_RECTANGLES = 4096


def _rectangle(w: np.ndarray) -> _Rectangle:
    """w's rectangle, remembered across calls and checked as described above."""
    bits = w.view(f"u{w.itemsize}") if w.dtype.kind == "f" else w
    known = _RECTANGLES.get(id(w))
    if known is not None and known.holds_all(w, bits):
        return known
    if len(_RECTANGLES) >= _MAX_RECTANGLES:
        for key in [k for k, r in _RECTANGLES.items() if r.ref() is None]:
            del _RECTANGLES[key]
        if len(_RECTANGLES) >= _MAX_RECTANGLES:
            _RECTANGLES.clear()
    found = _RECTANGLES[id(w)] = _Rectangle(w, bits)
    return found


def _block(w: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """w[rows][:, cols]: a view where the rows or columns form a run, else a gather."""
    row_span, col_span = _span(rows), _span(cols)
    if isinstance(row_span, slice):
        return w[row_span][:, col_span]
    if isinstance(col_span, slice):
        return w[:, col_span][row_span]
    return w[rows][:, cols]  # two 1-D gathers: several times faster than one 2-D gather


def _root(d_head: int, dtype) -> np.ndarray:
    """sqrt(d_head) in the model's dtype: logits are one division after the dot product."""
    return np.sqrt(np.asarray(d_head, dtype=dtype))


def _span(indices: np.ndarray):
    """A slice for ascending indices without gaps (cheaper to gather and scatter)."""
    if indices.size and indices[-1] - indices[0] + 1 == indices.size:
        return slice(int(indices[0]), int(indices[-1]) + 1)
    return indices


def _columns(x: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """x[:, indices]: a view for a run of columns (rows of unit stride, which BLAS reads
    in place), else a gathered copy."""
    if indices.size == x.shape[1]:
        return x  # all of them, in order
    return x[:, _span(indices)]


class _Linear:
    """x @ w + b restricted to the non-zero part of w (and b).

    `rows` are the input directions it reads, `cols` the output columns it computes;
    every other output column is exactly zero. Rows and columns come from w's rectangle
    (see `_rectangle`), so they may include some whose products are all zero.
    """

    def __init__(self, linear: Mapping[str, np.ndarray]):
        self.w, self.b = linear["w"], linear["b"]
        rectangle = _rectangle(self.w)
        self.in_mask = rectangle.row_mask  # rows with a weight
        self.out_mask = rectangle.col_mask | (self.b != 0)
        self.rows = rectangle.rows
        self.cols = np.flatnonzero(self.out_mask)

    def keep_outputs(self, keep: np.ndarray) -> None:
        """Computes only the output columns where `keep` [O] bool is True."""
        self.out_mask = self.out_mask & keep
        self.cols = np.flatnonzero(self.out_mask)

    def keep_inputs(self, keep: np.ndarray) -> None:
        """Reads exactly the input rows where `keep` [I] bool is True; the caller passes
        x holding just those columns, in order (`compact=True`)."""
        self.rows = np.flatnonzero(keep)

    def __call__(self, x: np.ndarray, dtype, compact: bool = False) -> np.ndarray:
        """x [N, I] (or [N, len(rows)] when compact) -> [N, len(cols)]."""
        block = _block(self.w, self.rows, self.cols).astype(dtype, copy=False)
        out = (x if compact else _columns(x, self.rows)) @ block
        bias = self.b[self.cols]
        if bias.any():
            out += bias.astype(dtype, copy=False)
        return out


def _attention(params, prefix, config, x, mask):
    """One multi-head attention block on x [N, D] (N = B * T): (output [N, D], logits)."""
    batch, _, seq_len, _ = mask.shape
    d_head = config.key_size
    query, key = _Linear(params[f"{prefix}/query"]), _Linear(params[f"{prefix}/key"])
    value, linear = _Linear(params[f"{prefix}/value"]), _Linear(params[f"{prefix}/linear"])
    both = query.out_mask & key.out_mask  # q.k sums over these columns only
    query.keep_outputs(both)
    key.keep_outputs(both)
    carried = value.out_mask & linear.in_mask  # value columns that reach the output
    value.keep_outputs(carried)
    linear.keep_inputs(carried)

    q, k = query(x, x.dtype), key(x, x.dtype)
    head_of_qk = query.cols // d_head
    logits = np.zeros((batch, config.num_heads, seq_len, seq_len), dtype=x.dtype)
    for head in np.unique(head_of_qk):
        sel = np.flatnonzero(head_of_qk == head)
        q_h = _columns(q, sel).reshape(batch, seq_len, -1)
        k_h = _columns(k, sel).reshape(batch, seq_len, -1)
        logits[:, head] = (q_h @ k_h.transpose(0, 2, 1)) / _root(d_head, x.dtype)  # q.k/sqrt(K)
    logits = np.where(mask, logits, np.asarray(MASKED_LOGIT, dtype=x.dtype))

    out = np.zeros(x.shape, dtype=x.dtype)
    if linear.cols.size:
        v = value(x, x.dtype)
        head_of_v = value.cols // d_head
        mixed = np.empty((batch, seq_len, value.cols.size), dtype=x.dtype)
        for head in np.unique(head_of_v):
            weights = _softmax(logits[:, head])
            sel = np.flatnonzero(head_of_v == head)
            mixed[..., _span(sel)] = weights @ _columns(v, sel).reshape(batch, seq_len, -1)
        mixed = mixed.reshape(x.shape[0], -1)
        out[:, _span(linear.cols)] = _flush(linear(mixed, x.dtype, compact=True))
    return out, logits


def _mlp(params, prefix, config, x, width=None):
    """One MLP block on x [N, D] -> [N, D]."""
    first, second = _Linear(params[f"{prefix}/linear_1"]), _Linear(params[f"{prefix}/linear_2"])
    used = second.in_mask.copy()  # hidden units that something reads
    if _activation_of_zero(config.activation_function) == 0:
        used &= first.out_mask  # the others are activation(0) = 0
    if width is not None:  # skip hidden units past `width`
        used[width:] = False
    first.keep_outputs(used)
    second.keep_inputs(used)
    out = np.zeros(x.shape, dtype=x.dtype)
    if second.cols.size:
        hidden = first(x, x.dtype)
        if first.cols.size < used.sum():  # units without weights or bias: activation(0)
            full = np.zeros((x.shape[0], used.size), dtype=x.dtype)
            full[:, _span(first.cols)] = hidden
            hidden = full[:, used]
        hidden = _flush(config.activation_function(hidden))
        out[:, _span(second.cols)] = _flush(second(hidden, x.dtype, compact=True))
    return out


# Below this many multiply-adds per layer the dense products are cheaper than finding
# the non-zero blocks (one apply of a small model); both compute the same sums.
DENSE_WORK = 2_000_000


def _sparse_pays(params, prefix, x) -> bool:
    weights = params[f"{prefix}/mlp/linear_1"]["w"].size + params[f"{prefix}/attn/query"]["w"].size
    return x.shape[0] * weights * 3 >= DENSE_WORK


def _dense_attention(params, prefix, config, x, mask):
    """`_attention` with the full weight matrices (for small inputs)."""
    batch, _, seq_len, _ = mask.shape
    heads, d_head = config.num_heads, config.key_size

    def project(name):  # [B, H, T, K]
        p = params[f"{prefix}/{name}"]
        out = x @ p["w"].astype(x.dtype, copy=False) + p["b"].astype(x.dtype, copy=False)
        return out.reshape(batch, seq_len, heads, d_head).transpose(0, 2, 1, 3)

    q, k, v = project("query"), project("key"), project("value")
    logits = (q @ k.transpose(0, 1, 3, 2)) / _root(d_head, x.dtype)  # q.k / sqrt(K)
    logits = np.where(mask, logits, np.asarray(MASKED_LOGIT, dtype=x.dtype))
    weights = _softmax(logits)
    mixed = (weights @ v).transpose(0, 2, 1, 3).reshape(batch * seq_len, heads * d_head)
    linear = params[f"{prefix}/linear"]
    out = mixed @ linear["w"].astype(x.dtype, copy=False)
    out += linear["b"].astype(x.dtype, copy=False)
    return _flush(out), logits


def _dense_mlp(params, prefix, config, x, width=None):
    """`_mlp` with the full weight matrices (for small inputs)."""
    first, second = params[f"{prefix}/linear_1"], params[f"{prefix}/linear_2"]
    w1, b1, w2 = first["w"], first["b"], second["w"]
    if width is not None:  # skip hidden units past `width`
        w1, b1, w2 = w1[:, :width], b1[:width], w2[:width]
    hidden = x @ w1.astype(x.dtype, copy=False) + b1.astype(x.dtype, copy=False)
    hidden = _flush(config.activation_function(hidden))
    out = hidden @ w2.astype(x.dtype, copy=False)
    out += second["b"].astype(x.dtype, copy=False)
    return _flush(out)


def _activation_of_zero(activation) -> float:
    return float(np.asarray(activation(np.zeros(1)))[0])


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


def attention_block(params, prefix: str, config: TransformerConfig, x, mask):
    """Layer `prefix`'s attention on x [N, D] (N = B T; mask [B, 1, T, T]):
    (output [N, D], logits [B, H, T, T]). Sparse or dense, whichever pays."""
    attention = _attention if _sparse_pays(params, prefix, x) else _dense_attention
    return attention(params, f"{prefix}/attn", config, x, mask)


def mlp_block(params, prefix: str, config: TransformerConfig, x, width: int | None = None):
    """Layer `prefix`'s MLP on x [N, D] -> [N, D]. Sparse or dense, whichever pays."""
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
    keep_freed_memory()
    mask = attention_mask(config, key_mask)
    embedded = embed(params, token_ids)
    if dtype is not None:
        embedded = embedded.astype(dtype, copy=False)
    residual = embedded.reshape(batch * seq_len, -1)  # [N, D]: every product is 2-D
    shape = embedded.shape
    layer_outputs, residuals, attn_logits = [], [], []
    with blas_single_thread():
        for layer in range(config.num_layers):
            prefix = f"transformer/layer_{layer}"
            attn_out, logits = attention_block(params, prefix, config, residual, mask)
            residual = residual + attn_out
            width = None if mlp_widths is None else mlp_widths[layer]
            mlp_out = mlp_block(params, prefix, config, residual, width)
            layer_outputs += [attn_out.reshape(shape), mlp_out.reshape(shape)]
            residuals.append(residual.reshape(shape))
            residual = residual + mlp_out
            residuals.append(residual.reshape(shape))
            attn_logits.append(logits)
    return TransformerOutput(
        layer_outputs=layer_outputs,
        residuals=residuals,
        attn_logits=attn_logits,
        output=residual.reshape(shape),
        input_embeddings=embedded,
    )


_BLAS_CONTROLLER: list = []  # empty before the first call, then [controller or None]


def blas_single_thread():
    """A context that keeps BLAS on one thread, when threadpoolctl is installed.

    The products of the sparse forward pass are small; a multi-threaded BLAS spends more
    time waking and syncing its threads than computing them (on a busy 2-core machine a
    batch took 1.5 to 28 s instead of 0.8 s). Without threadpoolctl this does nothing.
    """
    if not _BLAS_CONTROLLER:
        try:
            import threadpoolctl
        except ImportError:
            _BLAS_CONTROLLER.append(None)
        else:
            _BLAS_CONTROLLER.append(threadpoolctl.ThreadpoolController())
    controller = _BLAS_CONTROLLER[0]
    if controller is None:
        return contextlib.nullcontext()
    return controller.limit(limits=1, user_api="blas")


# glibc hands freed blocks above its (dynamic) trim threshold back to the system, so every
# forward pass would fault its arrays' pages in afresh: for a batch of 256 through a small
# model that is over half the time (six 1 MB arrays: 1.3 ms freshly mapped, 0.24 ms reused).
# Raising the thresholds keeps up to RETAIN_BYTES of freed memory for reuse.
RETAIN_BYTES = 128 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>
_MALLOC_TUNED: list[bool] = []


def keep_freed_memory() -> bool:
    """Once per process, on Linux with glibc: let freed arrays be reused (see above).

    Set the environment variable TRACR_KEEP_FREED_MEMORY=0 to leave glibc's settings
    alone. Returns whether the settings were changed.
    """
    if not _MALLOC_TUNED:
        _MALLOC_TUNED.append(_tune_malloc())
    return _MALLOC_TUNED[0]


def _tune_malloc() -> bool:
    if os.environ.get("TRACR_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith(
        "linux"
    ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, say)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Blocks up to RETAIN_BYTES / 4 come from the heap, which keeps up to RETAIN_BYTES free.
    return bool(
        mallopt(_M_MMAP_THRESHOLD, RETAIN_BYTES // 4) and mallopt(_M_TRIM_THRESHOLD, RETAIN_BYTES)
    )
