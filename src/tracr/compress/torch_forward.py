"""The compressed forward pass in PyTorch, used to train W (extra `torch`).

It computes what `compressed_model.compressed_forward` computes in numpy (the tests
check this), with the compiled model's blocks from `tracr.export.torch_model` frozen
(no gradients): the stream is d wide and each block reads it through W and writes
through Wᵀ. With W None it is the compiled model itself, which gives the training
targets.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tracr.compiler import assembled_model
from tracr.transformer import model as model_lib


def import_torch():
    """torch, or an ImportError naming the extra (`tracr.compress` trains with PyTorch)."""
    from tracr import export

    return export.require("torch", "torch")


@dataclasses.dataclass
class FrozenModel:
    """The compiled weights as tensors without gradients: embeddings and one Block per layer."""

    token_embed: Any  # [d_vocab, D]
    pos_embed: Any  # [n_ctx, D]
    blocks: list  # tracr.export.torch_model.Block
    causal: bool


def frozen_weights(
    params: assembled_model.Params, config: model_lib.TransformerConfig, device, dtype=None
) -> FrozenModel:
    """The compiled model on `device` (float32 unless `dtype`), its weights frozen."""
    torch = import_torch()
    from tracr.export import torch_model

    if config.activation_function is not model_lib.relu or config.layer_norm:
        raise NotImplementedError("the torch forward supports the compiled models' ReLU MLPs")
    dtype = dtype or torch.float32
    blocks = [
        torch_model.Block(params, f"transformer/layer_{i}", config, dtype).to(device)
        for i in range(config.num_layers)
    ]
    for block in blocks:
        block.requires_grad_(False)

    def tensor(array):
        return torch.as_tensor(array, dtype=dtype, device=device)

    return FrozenModel(
        tensor(params["token_embed"]["embeddings"]),
        tensor(params["pos_embed"]["embeddings"]),
        blocks,
        bool(config.causal),
    )


def forward(frozen: FrozenModel, W, token_ids, key_mask, *, unembed_at_every_layer: bool = True):
    """-> (embedded, layer_outputs, output), all read back into the D directions:
    the embedding as the stream holds it (e Wᵀ W), each block's output, the final residual.

    W [d, D] or None. The stream is r [B, T, d]; each block reads r W, writes o Wᵀ.
    layer_outputs are o (unembed_at_every_layer) or o Wᵀ W, as in `compressed_forward`.
    """
    torch = import_torch()
    from tracr.export import torch_model

    write = (lambda x: x) if W is None else (lambda x: x @ W.T)
    read = (lambda x: x) if W is None else (lambda x: x @ W)
    logged = (lambda o: o) if (W is None or unembed_at_every_layer) else (lambda o: read(write(o)))
    seq_len = token_ids.shape[1]
    mask = torch_model.attention_mask(key_mask, frozen.causal)  # [B, 1, T, T]
    positions = torch.arange(seq_len, device=token_ids.device)
    residual = write(frozen.token_embed[token_ids] + frozen.pos_embed[positions])
    embedded = read(residual)
    layer_outputs = []
    for block in frozen.blocks:
        _, _, attn_out = block.attention(read(residual), mask)
        residual = residual + write(attn_out)
        layer_outputs.append(logged(attn_out))
        _, mlp_out = block.mlp(read(residual))
        residual = residual + write(mlp_out)
        layer_outputs.append(logged(mlp_out))
    return embedded, layer_outputs, read(residual)
