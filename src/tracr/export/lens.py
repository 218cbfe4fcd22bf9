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

Where TransformerLens 3.x is installed (it has no TransformerBridge), the same function
returns a `HookedTransformer` built from the same config and weights (its own names: W_E,
W_pos, W_Q [n_heads, d_model, d_head], ..., W_U), with the same hooks; `make test-lens3`
tests it in a second virtual environment.

A compressed model (`tracr.compress.CompressedModel`) exports as its d-wide transformer
`cm.as_model()`: the bridge's residual stream is the compressed one, d_model = d. The
helpers here take the CompressedModel itself; `read_sop(cm, residual, label)` reads an
SOp back through W.
"""

from __future__ import annotations

import importlib.metadata
import warnings
from typing import Any

import numpy as np

from tracr import export
from tracr.compiler import assembled_model
from tracr.compress import compressed_model

torch = export.require("torch", "lens")


def major_version() -> int:
    """The installed TransformerLens's major version."""
    export.require("transformer_lens", "lens")
    return int(importlib.metadata.version("transformer_lens").split(".")[0])


def _bridge_classes():
    export.require("transformer_lens", "lens")
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge
    from transformer_lens.model_bridge.sources import native  # noqa: F401  (adds boot_native)

    return TransformerBridge, TransformerBridgeConfig


def bridge_config(compiled: assembled_model.AssembledTransformerModel) -> dict[str, Any]:
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


def _tensor(array: np.ndarray, dtype):  # a view where it can be: loading copies anyway
    return torch.from_numpy(np.asarray(array)).to(dtype)


def state_dict(compiled: assembled_model.AssembledTransformerModel, dtype=None) -> dict[str, Any]:
    """Every weight and bias under the installed TransformerLens's keys: the bridge's
    (nn.Linear [out, in] layout) for 4.x, HookedTransformer's for 3.x."""
    dtype = torch.float32 if dtype is None else dtype
    if major_version() < 4:
        return _hooked_state_dict(compiled, dtype)

    def t(array: np.ndarray):
        return _tensor(array, dtype)

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


def _hooked_state_dict(
    compiled: assembled_model.AssembledTransformerModel, dtype
) -> dict[str, Any]:
    """HookedTransformer (TransformerLens 3.x) parameters."""
    config, params = compiled.model_config, compiled.params
    heads, d_head, d_model = config.num_heads, config.key_size, config.d_model

    def t(array: np.ndarray):
        return _tensor(array, dtype)

    def per_head(w):  # [d_model, heads * d_head] -> [heads, d_model, d_head]
        return t(w).reshape(d_model, heads, d_head).permute(1, 0, 2)

    unembed = compiled.get_compiled_model().unembed_matrix
    out = {
        "embed.W_E": t(params["token_embed"]["embeddings"]),
        "pos_embed.W_pos": t(params["pos_embed"]["embeddings"]),
        "unembed.W_U": t(unembed),
        "unembed.b_U": t(np.zeros(unembed.shape[1])),
    }
    for layer in range(config.num_layers):
        attn = {n: params[f"transformer/layer_{layer}/attn/{n}"] for n in ("query", "key", "value")}
        linear = params[f"transformer/layer_{layer}/attn/linear"]
        prefix = f"blocks.{layer}"
        for short, p in zip("QKV", attn.values()):
            out[f"{prefix}.attn.W_{short}"] = per_head(p["w"])
            out[f"{prefix}.attn.b_{short}"] = t(p["b"]).reshape(heads, d_head)
        out[f"{prefix}.attn.W_O"] = t(linear["w"]).reshape(heads, d_head, d_model)
        out[f"{prefix}.attn.b_O"] = t(linear["b"])
        first = params[f"transformer/layer_{layer}/mlp/linear_1"]
        second = params[f"transformer/layer_{layer}/mlp/linear_2"]
        out[f"{prefix}.mlp.W_in"], out[f"{prefix}.mlp.b_in"] = t(first["w"]), t(first["b"])
        out[f"{prefix}.mlp.W_out"], out[f"{prefix}.mlp.b_out"] = t(second["w"]), t(second["b"])
    return out


def load_weights(tl_model: Any, weights: dict[str, Any]) -> None:
    """`tl_model.load_state_dict(..., strict=True)` with `weights` (from `state_dict`); a
    HookedTransformer's non-weight buffers (attention masks) are kept as they are."""
    full = dict(weights)
    if major_version() < 4:
        buffers = dict(tl_model.named_buffers())
        full |= {k: v for k, v in tl_model.state_dict().items() if k in buffers}
    tl_model.load_state_dict(full, strict=True)


def _hooked_transformer(compiled: assembled_model.AssembledTransformerModel, dtype) -> Any:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    fields = bridge_config(compiled)
    fields.pop("original_architecture")
    config = HookedTransformerConfig(
        **fields, dtype=dtype, init_weights=False, default_prepend_bos=False
    )
    with warnings.catch_warnings():  # 3.9 announces its removal in 4.0; that is known
        warnings.simplefilter("ignore", DeprecationWarning)
        hooked = HookedTransformer(config)
    load_weights(hooked, _hooked_state_dict(compiled, dtype))
    hooked.eval()
    return hooked


def to_transformer_lens(compiled: Any, *, dtype=None) -> Any:
    """A TransformerBridge (TransformerLens 4; a HookedTransformer under 3.x) computing
    exactly what `compiled` computes (float32 default).

    A CompressedModel becomes its d-wide transformer (`as_model()`); `encode`, `decode`,
    `run` and `read_sop` below take the CompressedModel itself.
    """
    compiled = export.as_assembled(compiled, "to_transformer_lens")
    if compiled.model_config.layer_norm:
        raise ValueError("to_transformer_lens supports models without layer norm")
    dtype = torch.float32 if dtype is None else dtype
    if major_version() < 4:
        return _hooked_transformer(compiled, dtype)
    bridge_cls, config_cls = _bridge_classes()
    # No random initialisation: every weight is overwritten by load_state_dict.
    config = config_cls(**bridge_config(compiled), dtype=dtype, init_weights=False)
    bridge = bridge_cls.boot_native(config)
    load_weights(bridge, state_dict(compiled, dtype))
    bridge.eval()
    return bridge


def encode(compiled: Any, sequences) -> tuple[Any, Any]:
    """Token lists (BOS first) -> (ids, pad_mask) for `bridge(ids, attention_mask=pad_mask)`."""
    from tracr.export import torch_model

    return torch_model.encode(_compiled(compiled).input_encoder, sequences)


def decode(compiled: Any, logits: Any, pad_mask: Any) -> list:
    """The bridge's logits -> output values per sequence, as `apply_batch` decodes them."""
    from tracr.export import torch_model

    compiled = _compiled(compiled)
    return torch_model.decode(compiled.input_encoder, compiled.output_encoder, logits, pad_mask)


def batches(compiled: Any, sequences) -> list[tuple]:
    """(rows, ids, pad_mask) batches to run: one padded batch; but TransformerLens 3.x's
    HookedTransformer ignores the padding mask in bidirectional attention, so there each
    batch holds sequences of one length (rows: their indices in `sequences`)."""
    if major_version() >= 4 or _compiled(compiled).model_config.causal:
        return [(list(range(len(sequences))), *encode(compiled, sequences))]
    by_length: dict[int, list[int]] = {}
    for row, seq in enumerate(sequences):
        by_length.setdefault(len(seq), []).append(row)
    return [(rows, *encode(compiled, [sequences[r] for r in rows])) for rows in by_length.values()]


def run(tl_model: Any, compiled: Any, sequences) -> list:
    """Encode, run the TransformerLens model and decode, in the order of `sequences`."""
    out: list = [None] * len(sequences)
    width = max(len(seq) for seq in sequences)
    pad = _compiled(compiled).input_encoder.pad_token
    for rows, ids, mask in batches(compiled, sequences):
        with torch.no_grad():
            decoded = decode(compiled, tl_model(ids, attention_mask=mask.long()), mask)
        for row, values in zip(rows, decoded):
            out[row] = values + [pad] * (width - len(values))
    return out


def read_sop(compiled: Any, residual: Any, label: str) -> Any:
    """The columns of SOp `label` in a residual [..., d_model] (a tensor or an array),
    in the order of `compiled.residual_labels`: one per value, or one for a number.

    For a CompressedModel the residual is the compressed one [..., d]: it is read back
    through W first (residual @ W), as `CompressedModel.read` does.
    """
    cols = [
        i
        for i, name in enumerate(compiled.residual_labels)
        if name == label or name.startswith(f"{label}:")
    ]
    if not cols:
        raise KeyError(f"no residual dimension belongs to the SOp {label!r}")
    if isinstance(compiled, compressed_model.CompressedModel):
        W = compiled.W[:, cols]  # [d, len(cols)]: read back only these columns
        if isinstance(residual, torch.Tensor):
            return residual @ torch.as_tensor(W, dtype=residual.dtype, device=residual.device)
        return np.asarray(residual) @ W
    return residual[..., cols]


def value_labels(compiled: Any, label: str) -> list[str]:
    """The residual labels of the columns that `read_sop` returns for `label`."""
    return [
        name for name in compiled.residual_labels if name == label or name.startswith(f"{label}:")
    ]


def _compiled(model: Any) -> assembled_model.AssembledTransformerModel:
    """The compiled model, whose encoders and masking a compressed model shares."""
    if isinstance(model, compressed_model.CompressedModel):
        return model.model
    return model
