"""A compiled model as a TransformerLens 4 `TransformerBridge` (extra `lens`).

TransformerLens 4 holds a model built from weights as `TransformerBridge.boot_native(
TransformerBridgeConfig(...))` followed by `load_state_dict`. The config here is the
compiled model's shape: n_layers, d_model, n_heads, d_head (heads padded to the widest),
d_mlp (padded across layers), d_vocab (the input vocabulary with BOS and PAD), d_vocab_out
(the output space: one column per categorical value, or 1 for a numerical output),
n_ctx = max_seq_len + 1, act_fn "relu", no normalization, attention "causal" or
"bidirectional". TransformerLens scales attention by 1/sqrt(d_head), the convention of our
params, so the weights go in unchanged; they load with strict=True, every key set. The
unembedding `W_U` maps the residual to the output space in the output encoder's order.

    bridge = to_transformer_lens(model)
    ids, mask = encode(model, [["BOS", 1, 2]])
    logits, cache = bridge.run_with_cache(ids, attention_mask=mask.long())
    read_sop(model, cache["blocks.0.hook_resid_post"], "hist")   # [batch, pos, values]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracr import export
from tracr.compiler import assemble

torch = export.require("torch", "lens")


def _bridge_classes():
    export.require("transformer_lens", "lens")
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge
    from transformer_lens.model_bridge.sources import native  # noqa: F401  (adds boot_native)

    return TransformerBridge, TransformerBridgeConfig


def bridge_config(compiled: assemble.AssembledTransformerModel) -> dict[str, Any]:
    """The TransformerBridgeConfig fields of the compiled model's shape."""
    config = compiled.model_config
    d_vocab_out = compiled.get_compiled_model().unembed_matrix.shape[1]
    if d_vocab_out == 0:
        raise ValueError("the model's output space is empty: there is nothing to unembed")
    return {
        "n_layers": config.num_layers,
        "d_model": config.d_model,
        "n_heads": config.num_heads,
        "d_head": config.key_size,
        "d_mlp": config.mlp_hidden_size,
        "d_vocab": compiled.params["token_embed"]["embeddings"].shape[0],
        "d_vocab_out": d_vocab_out,
        "n_ctx": compiled.params["pos_embed"]["embeddings"].shape[0],
        "act_fn": "relu",
        "normalization_type": None,
        "attention_dir": "causal" if config.causal else "bidirectional",
        "positional_embedding_type": "standard",
        "original_architecture": "tracr",
    }


def state_dict(compiled: assemble.AssembledTransformerModel, dtype=None) -> dict[str, Any]:
    """The bridge's state dict (TransformerLens keys, nn.Linear [out, in] layout)."""
    dtype = torch.float32 if dtype is None else dtype

    def t(array: np.ndarray):  # a view where it can be: load_state_dict copies anyway
        return torch.from_numpy(np.asarray(array)).to(dtype)

    params = compiled.params
    unembed = compiled.get_compiled_model().unembed_matrix  # [d_model, d_vocab_out]
    out = {
        "embed.weight": t(params["token_embed"]["embeddings"]),
        "pos_embed.weight": t(params["pos_embed"]["embeddings"]),
        "unembed.weight": t(unembed).T,
        "unembed.bias": t(np.zeros(unembed.shape[1])),
    }
    names = {"q": "attn/query", "k": "attn/key", "v": "attn/value", "o": "attn/linear"}
    names |= {"in": "mlp/linear_1", "out": "mlp/linear_2"}
    for layer in range(compiled.model_config.num_layers):
        for short, ours in names.items():
            part = "attn" if ours.startswith("attn") else "mlp"
            p = params[f"transformer/layer_{layer}/{ours}"]
            out[f"blocks.{layer}.{part}.{short}.weight"] = t(p["w"]).T
            out[f"blocks.{layer}.{part}.{short}.bias"] = t(p["b"])
    return out


def to_transformer_lens(compiled: assemble.AssembledTransformerModel, *, dtype=None) -> Any:
    """A TransformerBridge computing exactly what `compiled` computes (float32 default)."""
    if not isinstance(compiled, assemble.AssembledTransformerModel):
        raise TypeError(
            f"to_transformer_lens expects an AssembledTransformerModel, got "
            f"{type(compiled).__name__}"
        )
    if compiled.model_config.layer_norm:
        raise ValueError("to_transformer_lens supports models without layer norm")
    bridge_cls, config_cls = _bridge_classes()
    dtype = torch.float32 if dtype is None else dtype
    # No random initialisation: every weight is overwritten by load_state_dict.
    config = config_cls(**bridge_config(compiled), dtype=dtype, init_weights=False)
    bridge = bridge_cls.boot_native(config)
    bridge.load_state_dict(state_dict(compiled, dtype), strict=True)
    bridge.eval()
    return bridge


def encode(compiled: assemble.AssembledTransformerModel, sequences) -> tuple[Any, Any]:
    """Token lists (BOS first) -> (ids, pad_mask) for `bridge(ids, attention_mask=pad_mask)`."""
    from tracr.export import torch_model

    return torch_model.encode(compiled.input_encoder, sequences)


def decode(compiled: assemble.AssembledTransformerModel, logits: Any, pad_mask: Any) -> list:
    """The bridge's logits -> output values per sequence, as `apply_batch` decodes them."""
    from tracr.export import torch_model

    return torch_model.decode(compiled.input_encoder, compiled.output_encoder, logits, pad_mask)


def run(bridge: Any, compiled: assemble.AssembledTransformerModel, sequences) -> list:
    """Encode, run the bridge and decode in one call."""
    ids, mask = encode(compiled, sequences)
    with torch.no_grad():
        return decode(compiled, bridge(ids, attention_mask=mask.long()), mask)


def read_sop(compiled: assemble.AssembledTransformerModel, residual: Any, label: str) -> Any:
    """The columns of SOp `label` in a residual [..., d_model] (a tensor or an array),
    in the order of `compiled.residual_labels`: one per value, or one for a number."""
    cols = [
        i
        for i, name in enumerate(compiled.residual_labels)
        if name == label or name.startswith(f"{label}:")
    ]
    if not cols:
        raise KeyError(f"no residual dimension belongs to the SOp {label!r}")
    return residual[..., cols]


def value_labels(compiled: assemble.AssembledTransformerModel, label: str) -> list[str]:
    """The residual labels of the columns that `read_sop` returns for `label`."""
    return [
        name for name in compiled.residual_labels if name == label or name.startswith(f"{label}:")
    ]
