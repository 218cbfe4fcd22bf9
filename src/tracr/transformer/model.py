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
    x[np.abs(x) < FLUSH_BELOW] = 0
    return x


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
    positions = np.arange(token_ids.shape[1])
    return (
        params["token_embed"]["embeddings"][token_ids]
        + params["pos_embed"]["embeddings"][positions]
    )


def _attention(params, prefix, config, x, mask):
    batch, seq_len, _ = x.shape
    heads, d_head = config.num_heads, config.key_size

    def project(name):  # [B, T, H, K]
        p = params[f"{prefix}/{name}"]
        return (x @ p["w"] + p["b"]).reshape(batch, seq_len, heads, d_head)

    q, k, v = project("query"), project("key"), project("value")
    # [B, H, T, T]; one division after the dot product, in the model's dtype.
    logits = np.einsum("bthk,bshk->bhts", q, k) / np.sqrt(np.asarray(d_head, dtype=q.dtype))
    logits = np.where(mask, logits, np.asarray(MASKED_LOGIT, dtype=logits.dtype))
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    _flush(weights)
    mixed = np.einsum("bhts,bshk->bthk", weights, v).reshape(batch, seq_len, heads * d_head)
    linear = params[f"{prefix}/linear"]
    return _flush(mixed @ linear["w"] + linear["b"]), logits


def _mlp(params, prefix, config, x, width=None):
    first, second = params[f"{prefix}/linear_1"], params[f"{prefix}/linear_2"]
    w1, b1, w2 = first["w"], first["b"], second["w"]
    if width is not None:  # skip hidden units that are zero in and out
        w1, b1, w2 = w1[:, :width], b1[:width], w2[:width]
    hidden = _flush(config.activation_function(x @ w1 + b1))  # [B, T, M]
    return _flush(hidden @ w2 + second["b"])


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


def forward(
    params: Mapping[str, Mapping[str, np.ndarray]],
    config: TransformerConfig,
    token_ids: np.ndarray,
    key_mask: np.ndarray | None = None,
    mlp_widths: list[int] | None = None,
) -> TransformerOutput:
    """Runs the transformer on `token_ids` [B, T]; `key_mask` [B, T] hides padding.

    `mlp_widths` (from `used_mlp_widths(params, config)`) lets each layer skip the hidden
    units that are zero; the result is the same.
    """
    token_ids = np.asarray(token_ids)
    if key_mask is None:
        key_mask = np.ones(token_ids.shape, dtype=bool)
    mask = attention_mask(config, key_mask)
    residual = embed(params, token_ids)
    input_embeddings = residual
    layer_outputs, residuals, attn_logits = [], [], []
    for layer in range(config.num_layers):
        prefix = f"transformer/layer_{layer}"
        attn_out, logits = _attention(params, f"{prefix}/attn", config, residual, mask)
        residual = residual + attn_out
        layer_outputs.append(attn_out)
        residuals.append(residual)
        attn_logits.append(logits)
        width = None if mlp_widths is None else mlp_widths[layer]
        mlp_out = _mlp(params, f"{prefix}/mlp", config, residual, width)
        residual = residual + mlp_out
        layer_outputs.append(mlp_out)
        residuals.append(residual)
    return TransformerOutput(
        layer_outputs=layer_outputs,
        residuals=residuals,
        attn_logits=attn_logits,
        output=residual,
        input_embeddings=input_embeddings,
    )
