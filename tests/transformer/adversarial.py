"""A float32 forward pass that adds the terms of every dot product in orders a matrix
library does not use, to show that exactness does not hang on BLAS's order.

Same computation as `tracr.transformer.model.forward` (the one definition), with every
matrix product, the attention logits and the attention-weighted sums replaced by one of:

* "reversed": terms added one by one from the last to the first;
* "pairwise": a balanced tree of additions;
* "sorted": terms added from the largest magnitude down (large partial sums early);
* "fma": reversed, each step a fused multiply-add (one rounding per step).
"""

from __future__ import annotations

import numpy as np

from tracr.transformer import model

ORDERS = ("reversed", "pairwise", "sorted", "fma")
_F32 = np.float32
_CELLS = 1 << 22  # products held at once by the "sorted" order


def matmul(a: np.ndarray, b: np.ndarray, order: str) -> np.ndarray:
    """a [..., K] @ b [K, N] in float32, terms added in `order`."""
    a, b = a.astype(_F32), b.astype(_F32)
    lead, k = a.shape[:-1], a.shape[-1]
    flat = a.reshape(-1, k)
    if order == "reversed":
        out = np.zeros((flat.shape[0], b.shape[1]), _F32)
        for i in reversed(range(k)):
            out = out + flat[:, i : i + 1] * b[i]
    elif order == "fma":
        out = np.zeros((flat.shape[0], b.shape[1]), _F32)
        for i in reversed(range(k)):  # exact product, one rounding per step
            out = (out.astype(np.float64) + flat[:, i : i + 1].astype(np.float64) * b[i]).astype(
                _F32
            )
    elif order == "pairwise":
        out = _pairwise(flat, b)
    elif order == "sorted":
        rows = max(1, _CELLS // max(1, k * b.shape[1]))
        parts = []
        for s in range(0, flat.shape[0], rows):
            terms = flat[s : s + rows, :, None] * b[None]  # [rows, K, N] float32 products
            idx = np.argsort(-np.abs(terms), axis=1, kind="stable")
            terms = np.take_along_axis(terms, idx, axis=1)
            acc = np.zeros((terms.shape[0], b.shape[1]), _F32)
            for i in range(k):
                acc = acc + terms[:, i]
            parts.append(acc)
        out = np.concatenate(parts) if parts else np.zeros((0, b.shape[1]), _F32)
    else:
        raise ValueError(f"unknown order {order!r}, expected one of {ORDERS}")
    return out.reshape(*lead, b.shape[1])


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    k = a.shape[1]
    if k == 1:
        return a * b[0]
    half = k // 2
    return _pairwise(a[:, :half], b[:half]) + _pairwise(a[:, half:], b[half:])


def _batched(x: np.ndarray, y: np.ndarray, order: str) -> np.ndarray:
    """x [B, H, T, K] @ y [B, H, K, S] with the custom order, one (b, h) at a time."""
    out = np.empty(x.shape[:-1] + (y.shape[-1],), _F32)
    for bi in range(x.shape[0]):
        for h in range(x.shape[1]):
            out[bi, h] = matmul(x[bi, h], y[bi, h], order)
    return out


def forward(params, config: model.TransformerConfig, token_ids, key_mask, order: str):
    """model.forward in float32 with every sum in `order`; returns the final residual."""
    mask = model.attention_mask(config, key_mask)
    x = model.embed(params, token_ids).astype(_F32)
    batch, seq, _ = x.shape
    heads, d_head = config.num_heads, config.key_size

    def linear(name, inp):
        p = params[name]
        return matmul(inp, p["w"], order) + p["b"].astype(_F32)

    for layer in range(config.num_layers):
        prefix = f"transformer/layer_{layer}"

        def project(name, inp, prefix=prefix):  # [B, H, T, K]
            y = linear(f"{prefix}/attn/{name}", inp).reshape(batch, seq, heads, d_head)
            return y.transpose(0, 2, 1, 3)

        q, k, v = (project(name, x) for name in ("query", "key", "value"))
        scale = np.sqrt(np.asarray(d_head, dtype=_F32))  # as model.forward: q.k / sqrt(d_head)
        logits = _batched(q, k.transpose(0, 1, 3, 2), order) / scale
        logits = np.where(mask, logits, _F32(model.MASKED_LOGIT))
        weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
        weights = weights / weights.sum(axis=-1, keepdims=True)
        mixed = _batched(weights, v, order).transpose(0, 2, 1, 3).reshape(batch, seq, -1)
        x = x + linear(f"{prefix}/attn/linear", mixed)
        hidden = np.maximum(linear(f"{prefix}/mlp/linear_1", x), 0)
        x = x + linear(f"{prefix}/mlp/linear_2", hidden)
    return x
