"""The compressed forward pass in PyTorch, used to train W (extra `torch`).

It computes what `compressed_model.compressed_forward` computes in numpy (the tests
check this), on the compiled weights as frozen tensors. With W None it is the compiled
model itself, which gives the training targets.
"""

from __future__ import annotations

import math

import numpy as np

from tracr.compiler import assemble
from tracr.transformer import model as model_lib


def import_torch():
    try:
        import torch
    except ImportError as err:
        raise ImportError("tracr.compress trains with PyTorch: pip install 'tracr[torch]'") from err
    return torch


def attention_logit_scale(config: model_lib.TransformerConfig) -> float:
    """The factor on q.k in the attention logits: the one place this module sets it.

    It must equal what `tracr.transformer.model` uses: 1 / sqrt(d_head), the standard
    convention (the compiler folds sqrt(d_head) into the query weights).
    """
    return 1.0 / math.sqrt(config.key_size)


def frozen_weights(params: assemble.Params, device, dtype=None) -> dict:
    """The compiled weights as tensors (float32 unless `dtype`) on `device`, no gradients."""
    torch = import_torch()
    dtype = dtype or torch.float32
    return {
        name: {k: torch.as_tensor(np.asarray(v), dtype=dtype, device=device) for k, v in a.items()}
        for name, a in params.items()
    }


def forward(
    weights,
    config: model_lib.TransformerConfig,
    W,
    token_ids,
    key_mask,
    *,
    unembed_at_every_layer: bool = True,
):
    """-> (embedded, layer_outputs, output), all read back into the D directions:
    the embedding as the stream holds it (e Wᵀ W), each block's output, the final residual.

    W [d, D] or None. The stream is r [B, T, d]; each block reads r W, writes o Wᵀ.
    layer_outputs are o (unembed_at_every_layer) or o Wᵀ W, as in `compressed_forward`.
    """
    torch = import_torch()
    if config.activation_function is not model_lib.relu:
        raise NotImplementedError("the torch forward supports the compiled models' ReLU MLPs")
    write = (lambda x: x) if W is None else (lambda x: x @ W.T)
    read = (lambda x: x) if W is None else (lambda x: x @ W)
    logged = (lambda o: o) if (W is None or unembed_at_every_layer) else (lambda o: read(write(o)))
    seq_len = token_ids.shape[1]
    mask = key_mask[:, None, None, :].expand(-1, 1, seq_len, -1)  # [B, 1, T, T]
    if config.causal:
        mask = mask & torch.ones(seq_len, seq_len, dtype=torch.bool, device=mask.device).tril()
    positions = torch.arange(seq_len, device=token_ids.device)
    embeddings = (
        weights["token_embed"]["embeddings"][token_ids]
        + weights["pos_embed"]["embeddings"][positions]
    )
    residual = write(embeddings)
    embedded = read(residual)
    layer_outputs = []
    for layer in range(config.num_layers):
        prefix = f"transformer/layer_{layer}"
        attn_out = _attention(weights, f"{prefix}/attn", config, read(residual), mask)
        residual = residual + write(attn_out)
        layer_outputs.append(logged(attn_out))
        first, second = weights[f"{prefix}/mlp/linear_1"], weights[f"{prefix}/mlp/linear_2"]
        hidden = torch.relu(read(residual) @ first["w"] + first["b"])
        mlp_out = hidden @ second["w"] + second["b"]
        residual = residual + write(mlp_out)
        layer_outputs.append(logged(mlp_out))
    return embedded, layer_outputs, read(residual)


def _attention(weights, prefix, config, x, mask):
    torch = import_torch()
    batch, seq_len, _ = x.shape
    heads, d_head = config.num_heads, config.key_size

    def project(name):  # [B, T, H, K]
        p = weights[f"{prefix}/{name}"]
        return (x @ p["w"] + p["b"]).reshape(batch, seq_len, heads, d_head)

    q, k, v = project("query"), project("key"), project("value")
    logits = torch.einsum("bthk,bshk->bhts", q, k) * attention_logit_scale(config)
    logits = logits.masked_fill(~mask, model_lib.MASKED_LOGIT)
    weights_ = torch.softmax(logits, dim=-1)
    mixed = torch.einsum("bhts,bshk->bthk", weights_, v).reshape(batch, seq_len, heads * d_head)
    linear = weights[f"{prefix}/linear"]
    return mixed @ linear["w"] + linear["b"]
