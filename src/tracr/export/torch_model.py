"""A compiled model as a `torch.nn.Module` (extra `torch`).

The same forward pass as `tracr.transformer.model`, in PyTorch: token + position embedding,
then per layer multi-head attention (logits q.k / sqrt(d_head), padding and, for causal
models, future keys masked) and a ReLU MLP, each added to the residual stream; no layer
norm. Weights keep the TransformerLens names and shapes (`W_E` [d_vocab, d_model], `W_pos`
[n_ctx, d_model], per block `W_Q`/`W_K`/`W_V` [n_heads, d_model, d_head], `W_O` [n_heads,
d_head, d_model], `W_in` [d_model, d_mlp], `W_out` [d_mlp, d_model], `W_U` [d_model,
d_vocab_out] and the biases `b_*`).

    net = to_torch(model)                       # float32
    ids, mask = net.encode([["BOS", 1, 2]])     # [batch, pos] ids and the padding mask
    out = net(ids, mask, return_activations=True)
    net.decode(out.logits, mask)                # [["BOS", ...]], like model.apply_batch
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tracr import export

torch = export.require("torch", "torch")
nn = torch.nn

from tracr.compiler import assembled_model  # noqa: E402
from tracr.transformer import encoder, model  # noqa: E402


@dataclasses.dataclass
class TorchOutput:
    """residual: the final residual stream [batch, pos, d_model]; logits [batch, pos,
    d_vocab_out] (the output space: one-hot scores, or the number in column 0);
    activations: name -> tensor (TransformerLens hook names) when requested."""

    residual: Any
    logits: Any
    activations: dict[str, Any] | None = None


def _param(array: np.ndarray, dtype) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(np.ascontiguousarray(array)).to(dtype))


class Block(nn.Module):
    """One layer: attention then MLP, each added to the residual stream (`attention` and
    `mlp` are the two halves, which tracr.compress runs with its stream in between)."""

    def __init__(self, params, prefix: str, config: model.TransformerConfig, dtype):
        super().__init__()
        heads, d_head, d_model = config.num_heads, config.key_size, config.d_model

        def per_head(w):  # [d_model, heads * d_head] -> [heads, d_model, d_head]
            return np.asarray(w).reshape(d_model, heads, d_head).transpose(1, 0, 2)

        attn = {n: params[f"{prefix}/attn/{n}"] for n in ("query", "key", "value", "linear")}
        self.W_Q = _param(per_head(attn["query"]["w"]), dtype)
        self.W_K = _param(per_head(attn["key"]["w"]), dtype)
        self.W_V = _param(per_head(attn["value"]["w"]), dtype)
        self.b_Q = _param(np.reshape(attn["query"]["b"], (heads, d_head)), dtype)
        self.b_K = _param(np.reshape(attn["key"]["b"], (heads, d_head)), dtype)
        self.b_V = _param(np.reshape(attn["value"]["b"], (heads, d_head)), dtype)
        self.W_O = _param(np.reshape(attn["linear"]["w"], (heads, d_head, d_model)), dtype)
        self.b_O = _param(attn["linear"]["b"], dtype)
        self.W_in = _param(params[f"{prefix}/mlp/linear_1"]["w"], dtype)
        self.b_in = _param(params[f"{prefix}/mlp/linear_1"]["b"], dtype)
        self.W_out = _param(params[f"{prefix}/mlp/linear_2"]["w"], dtype)
        self.b_out = _param(params[f"{prefix}/mlp/linear_2"]["b"], dtype)
        self.scale = math.sqrt(d_head)

    def attention(self, x, mask):
        """x [B, T, D], mask [B, 1, T, S] -> (scores, pattern [B, H, T, S], output [B, T, D])."""
        q = torch.einsum("btd,hdk->bhtk", x, self.W_Q) + self.b_Q[:, None]  # [B, H, T, K]
        k = torch.einsum("btd,hdk->bhtk", x, self.W_K) + self.b_K[:, None]
        v = torch.einsum("btd,hdk->bhtk", x, self.W_V) + self.b_V[:, None]
        scores = torch.einsum("bhtk,bhsk->bhts", q, k) / self.scale  # [B, H, T, S]
        scores = scores.masked_fill(~mask, model.MASKED_LOGIT)
        pattern = torch.softmax(scores, dim=-1)
        z = torch.einsum("bhts,bhsk->bhtk", pattern, v)
        return scores, pattern, torch.einsum("bhtk,hkd->btd", z, self.W_O) + self.b_O

    def mlp(self, x):
        """x [B, T, D] -> (post [B, T, M], output [B, T, D])."""
        post = torch.relu(x @ self.W_in + self.b_in)
        return post, post @ self.W_out + self.b_out

    def forward(self, x, mask, record: dict | None, name: str):
        scores, pattern, attn_out = self.attention(x, mask)
        mid = x + attn_out
        post, mlp_out = self.mlp(mid)
        out = mid + mlp_out
        if record is not None:
            record.update(
                {
                    f"{name}.hook_resid_pre": x,
                    f"{name}.attn.hook_attn_scores": scores,
                    f"{name}.attn.hook_pattern": pattern,
                    f"{name}.hook_attn_out": attn_out,
                    f"{name}.hook_resid_mid": mid,
                    f"{name}.mlp.hook_post": post,
                    f"{name}.hook_mlp_out": mlp_out,
                    f"{name}.hook_resid_post": out,
                }
            )
        return out


def attention_mask(pad_mask, causal: bool):
    """pad_mask [B, T] bool (True at real tokens) -> the mask [B, 1, T, S] of which key
    each query attends to: real keys, and with `causal` only those at or before it."""
    batch, seq = pad_mask.shape
    mask = pad_mask[:, None, None, :].expand(batch, 1, seq, seq)
    if causal:
        mask = mask & torch.ones(seq, seq, dtype=torch.bool, device=mask.device).tril()
    return mask


class TracrTorchModel(nn.Module):
    """A compiled model in PyTorch; see the module docstring."""

    def __init__(self, compiled: assembled_model.AssembledTransformerModel, dtype=None):
        super().__init__()
        dtype = torch.float32 if dtype is None else dtype
        params, config = compiled.params, compiled.model_config
        self.causal = bool(config.causal)
        self.input_encoder = compiled.input_encoder
        self.output_encoder = compiled.output_encoder
        self.residual_labels = list(compiled.residual_labels)
        unembed = compiled.get_compiled_model()
        self.W_E = _param(params["token_embed"]["embeddings"], dtype)
        self.W_pos = _param(params["pos_embed"]["embeddings"], dtype)
        self.blocks = nn.ModuleList(
            Block(params, f"transformer/layer_{i}", config, dtype) for i in range(config.num_layers)
        )
        self.W_U = _param(unembed.unembed_matrix, dtype)

    def forward(self, token_ids, pad_mask=None, *, return_activations: bool = False):
        """token_ids [batch, pos] (long); pad_mask [batch, pos] bool, True at real tokens
        (default: everything but the PAD id). Returns a TorchOutput."""
        device = self.W_E.device
        token_ids = torch.as_tensor(token_ids, device=device)
        if pad_mask is None:
            pad_mask = token_ids != self.input_encoder.pad_encoding
        mask = attention_mask(torch.as_tensor(pad_mask, device=device), self.causal)
        x = self.W_E[token_ids] + self.W_pos[: token_ids.shape[1]]  # [B, T, D]
        record: dict | None = {"hook_embed": x} if return_activations else None
        for i, block in enumerate(self.blocks):
            x = block(x, mask, record, f"blocks.{i}")
        return TorchOutput(residual=x, logits=x @ self.W_U, activations=record)

    def encode(self, sequences: Sequence[Sequence[Any]]):
        """Token lists (each starting with BOS) -> (ids [batch, pos], pad_mask [batch, pos])."""
        return encode(self.input_encoder, sequences)

    def decode(self, logits, pad_mask) -> list[list[Any]]:
        """Output values per sequence, as `model.apply_batch(...).decoded` gives them."""
        return decode(self.input_encoder, self.output_encoder, logits, pad_mask)

    @torch.no_grad()
    def run(self, sequences: Sequence[Sequence[Any]]) -> list[list[Any]]:
        """Encode, forward and decode in one call."""
        ids, mask = self.encode(sequences)
        return self.decode(self(ids, mask).logits, mask)


def encode(input_encoder: encoder.CategoricalEncoder, sequences: Sequence[Sequence[Any]]):
    """Token lists (each starting with BOS) -> (ids [batch, pos] long, pad_mask [batch, pos]
    bool, True at real tokens), padded with the PAD id; bad tokens raise ValueError."""
    if isinstance(sequences, (str, bytes)) or len(sequences) == 0:
        raise ValueError("encode needs a non-empty list of token lists")
    rows = [input_encoder.encode(list(seq)) for seq in sequences]
    pad = input_encoder.pad_encoding
    ids = torch.full((len(rows), max(len(r) for r in rows)), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return ids, ids != pad


def decode(
    input_encoder: encoder.CategoricalEncoder,
    output_encoder: encoder.Encoder | None,
    logits,
    pad_mask,
) -> list[list[Any]]:
    """Logits [batch, pos, d_vocab_out] -> output values per sequence, decoded as
    `model.apply_batch(...).decoded` is: argmax (None below 0.5) for a categorical output,
    column 0 for a numerical one; BOS at position 0, PAD past each sequence's end."""
    logits = logits.detach().to(torch.float64).cpu().numpy()  # [B, T, V]
    lengths = torch.as_tensor(pad_mask).sum(dim=-1).cpu().tolist()
    shape = logits.shape[:2]
    if isinstance(output_encoder, encoder.CategoricalEncoder):
        raw, present = assembled_model.read_scores(logits.reshape(-1, logits.shape[-1]).T, shape)
    else:
        raw, present = logits[..., 0], np.ones(shape, dtype=bool)
    return assembled_model.decode(input_encoder, output_encoder, raw, present, lengths)


def to_torch(compiled: Any, *, dtype=None) -> TracrTorchModel:
    """The compiled model as a TracrTorchModel (float32 unless `dtype` says otherwise).

    A CompressedModel becomes its d-wide transformer (`as_model()`): the module's residual
    stream is the compressed one, and `cm.read_back` maps it to the compiled directions.
    """
    compiled = export.as_assembled(compiled, "to_torch")
    if compiled.model_config.layer_norm or compiled.model_config.activation_function is not (
        model.relu
    ):
        raise ValueError("to_torch supports ReLU models without layer norm (what tracr compiles)")
    if not isinstance(compiled.input_encoder, encoder.CategoricalEncoder):
        raise ValueError("to_torch needs a model with a categorical input encoder")
    return TracrTorchModel(compiled, dtype=dtype)
