"""Assemble a layered craft model into transformer weights and a runnable model.

The compiler's last pass, `assemble_craft_model`: one residual space for all blocks, the
parameter arrays with the reference's names, the encoders. The model it returns lives in
`assembled_model`; its names are re-exported here, where the reference's users import them
(`assemble.AssembledTransformerModel`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from tracr.compiler import assembled_model, bound_cache, craft_graph_to_model, kept_blocks
from tracr.craft import bases
from tracr.transformer import encoder, model

# The runnable model and its helpers, importable from here as in the reference.
Params = assembled_model.Params
NONE_THRESHOLD = assembled_model.NONE_THRESHOLD
MIXTURE_TOLERANCE = assembled_model.MIXTURE_TOLERANCE
MANY_POSITIONS = assembled_model.MANY_POSITIONS
_MappableDataclass = assembled_model._MappableDataclass
AssembledTransformerModelOutput = assembled_model.AssembledTransformerModelOutput
CompiledTransformerModelOutput = assembled_model.CompiledTransformerModelOutput
CompiledTransformerModel = assembled_model.CompiledTransformerModel
AssembledTransformerModel = assembled_model.AssembledTransformerModel
unembed = assembled_model.unembed
read_scores = assembled_model.read_scores
decode = assembled_model.decode
build_model = assembled_model.build_model


def _linear(rows: int, cols: int, dtype) -> dict[str, np.ndarray]:
    return {"w": np.zeros((rows, cols), dtype=dtype), "b": np.zeros((cols,), dtype=dtype)}


def _head_widths(head) -> tuple[int, int]:
    """(k, v): the widths of W_Q, W_K and of W_V, W_O for one head (the narrower sides)."""
    qk, ov = head.w_qk, head.w_ov
    return (
        min(qk.left_space.num_dims, qk.right_space.num_dims),
        min(ov.input_space.num_dims, ov.output_space.num_dims),
    )


def _write_head(head, columns, attn, start: int, scale: float) -> None:
    """Writes one head's W_Q (times `scale`), W_K [D, k], W_V [D, v] and W_O [v, D] into
    the layer's zero arrays, at columns (W_O: rows) start on; the narrower side of each
    bilinear map becomes the copy (ones). `columns(space)`: its residual indices."""
    qk, ov = head.w_qk, head.w_ov
    query, key = attn["query"]["w"], attn["key"]["w"]
    left, right = columns(qk.left_space), columns(qk.right_space)
    if len(left) <= len(right):
        query[left, start + np.arange(len(left))] = 1.0 * scale
        key[right, start : start + len(left)] = qk.matrix.T
    else:
        query[left, start : start + len(right)] = qk.matrix * scale
        key[right, start + np.arange(len(right))] = 1.0
    value, linear = attn["value"]["w"], attn["linear"]["w"]
    src, dst = columns(ov.input_space), columns(ov.output_space)
    if len(src) <= len(dst):
        value[src, start + np.arange(len(src))] = 1.0
        linear[start : start + len(src)][:, dst] = ov.matrix
    else:
        value[src, start : start + len(dst)] = ov.matrix
        linear[start + np.arange(len(dst)), dst] = 1.0


def assemble_craft_model(
    craft_model: craft_graph_to_model.CraftModel,
    *,
    tokens_space: bases.VectorSpaceWithBasis,
    indices_space: bases.VectorSpaceWithBasis,
    output_space: bases.VectorSpaceWithBasis,
    categorical_output: bool,
    causal: bool,
    token_constants: Mapping[bases.BasisDirection, float],
    categorical_spaces: Mapping[str, bases.VectorSpaceWithBasis],
    mixture_tolerances: Mapping[str, float] | None = None,
    bos_token: Any,
    pad_token: Any,
    max_seq_len: int,
    dtype=np.float32,
) -> assembled_model.AssembledTransformerModel:
    """Builds parameter arrays with the reference's names and wraps them in a model.

    token_constants: directions every non-BOS token writes (the `one` direction writes 1
    for BOS too), with their values: constant SOps live in the token embedding.

    The arrays are kept across compiles by everything they are made from (`_key`), for
    layers of blocks kept across compiles (kept_blocks.py); each model gets copies.
    """
    inputs = dict(
        tokens_space=tokens_space,
        indices_space=indices_space,
        output_space=output_space,
        causal=causal,
        token_constants=token_constants,
        categorical_spaces=categorical_spaces,
        bos_token=bos_token,
        max_seq_len=max_seq_len,
        dtype=dtype,
    )
    key = _key(craft_model, inputs)
    kept = None if key is None else _ASSEMBLED.get(key)
    if isinstance(kept, _Arrays):
        arrays = kept.copy()
    else:  # this model's own arrays; kept (a copy) from the second time they are made
        arrays = _arrays(craft_model, **inputs)
        if key is not None:
            copy = kept_blocks.SEEN if kept is None else arrays.copy(read_only=True)
            _ASSEMBLED.put(key, copy, 1024 if kept is None else arrays.nbytes())
    input_encoder = encoder.CategoricalEncoder(
        basis=tokens_space.basis,
        enforce_bos=True,
        bos_token=bos_token,
        pad_token=pad_token,
        max_seq_len=max_seq_len + 1,
    )
    if categorical_output:
        output_encoder: encoder.Encoder = encoder.CategoricalEncoder(basis=output_space.basis)
    else:
        output_encoder = encoder.NumericalEncoder()
    return assembled_model.build_model(
        params=arrays.params,
        config=arrays.config,
        unembed=arrays.unembed,
        categorical_output=categorical_output,
        input_encoder=input_encoder,
        output_encoder=output_encoder,
        residual_labels=list(arrays.residual_labels),
        categorical_sops=arrays.categorical_sops,
        mixture_tolerances=mixture_tolerances,
    )


@dataclasses.dataclass(frozen=True)
class _Arrays:
    """What `assemble_craft_model` builds from the blocks (read-only, kept by `_key`)."""

    params: Params
    config: model.TransformerConfig
    unembed: np.ndarray
    residual_labels: tuple[str, ...]
    categorical_sops: dict[str, np.ndarray]

    def copy(self, read_only: bool = False) -> _Arrays:
        """A copy with arrays of its own (read-only ones to keep, writable ones for a
        model)."""
        arrays = _Arrays(
            {m: {name: a.copy() for name, a in p.items()} for m, p in self.params.items()},
            dataclasses.replace(self.config),
            self.unembed.copy(),
            self.residual_labels,
            {label: a.copy() for label, a in self.categorical_sops.items()},
        )
        for a in arrays.arrays():
            a.flags.writeable = not read_only
        return arrays

    def arrays(self) -> list[np.ndarray]:
        found = [a for p in self.params.values() for a in p.values()]
        return found + [self.unembed, *self.categorical_sops.values()]

    def nbytes(self) -> int:
        arrays = self.arrays()
        return sum(a.nbytes for a in arrays) + 64 * (len(arrays) + len(self.residual_labels))


#: Arrays kept across compiles (least recently used dropped beyond this many bytes).
_ASSEMBLED = bound_cache.Known(max_bytes=64 << 20)


def _key(craft_model, inputs: dict) -> bound_cache.Key | None:
    """Everything `_arrays` reads, exactly: the layers' blocks, each kept across compiles
    (kept_blocks.py: immutable, so the same object is the same block), and the other
    inputs by their exact contents; None where a block is not kept or an input has no
    exact key (the blocks come first: a first compile's are not kept yet, and its key
    stops there)."""
    layers = tuple((layer.heads, layer.mlps) for layer in craft_model.layers)
    contents = kept_blocks.Contents
    parts = (
        layers,
        contents(craft_model.residual_space),
        *(contents(inputs[name]) for name in ("tokens_space", "indices_space", "output_space")),
        inputs["causal"],
        tuple(((d.name, d.value), v) for d, v in inputs["token_constants"].items()),
        tuple((label, contents(space)) for label, space in inputs["categorical_spaces"].items()),
        inputs["bos_token"],
        inputs["max_seq_len"],
        kept_blocks.Same(inputs["dtype"]),
    )
    return kept_blocks.key(parts)


def _arrays(
    craft_model: craft_graph_to_model.CraftModel,
    *,
    tokens_space: bases.VectorSpaceWithBasis,
    indices_space: bases.VectorSpaceWithBasis,
    output_space: bases.VectorSpaceWithBasis,
    causal: bool,
    token_constants: Mapping[bases.BasisDirection, float],
    categorical_spaces: Mapping[str, bases.VectorSpaceWithBasis],
    bos_token: Any,
    max_seq_len: int,
    dtype,
) -> _Arrays:
    """The parameter arrays with the reference's names, the unembedding, the residual
    labels and each categorical SOp's residual columns."""
    one = bases.BasisDirection("one")
    uses_one = one in craft_model.residual_space
    residual = bases.join_vector_spaces(
        craft_model.residual_space,
        tokens_space,
        indices_space,
        output_space,
        bases.VectorSpaceWithBasis([*([one] if uses_one else []), *token_constants]),
    )
    dim = residual.num_dims
    layers = craft_model.layers
    known_columns: dict[int, tuple] = {}

    def columns(space: bases.VectorSpaceWithBasis) -> np.ndarray:
        """The residual indices of a space's directions, once per space."""
        known = known_columns.get(id(space))
        if known is None or known[0] is not space:
            known = known_columns[id(space)] = (space, residual.indices(space.basis))
        return known[1]

    num_heads = max([len(layer.heads) for layer in layers] + [1])
    key_size = max([w for layer in layers for h in layer.heads for w in _head_widths(h)] + [1])
    mlp_size = max([sum(m.fst.output_space.num_dims for m in layer.mlps) for layer in layers] + [1])
    config = model.TransformerConfig(
        num_heads=num_heads,
        num_layers=len(layers),
        key_size=key_size,
        mlp_hidden_size=mlp_size,
        causal=causal,
        d_model=dim,
    )

    token_embed = np.zeros((tokens_space.num_dims, dim))
    token_embed[np.arange(tokens_space.num_dims), residual.indices(tokens_space.basis)] = 1.0
    if uses_one:
        token_embed[:, residual.index(one)] = 1.0
    non_bos = [i for i, d in enumerate(tokens_space.basis) if d.value != bos_token]
    for direction, value in token_constants.items():
        token_embed[non_bos, residual.index(direction)] = value
    pos_embed = np.zeros((max_seq_len + 1, dim))
    pos_embed[1 + np.arange(indices_space.num_dims), residual.indices(indices_space.basis)] = 1.0
    params: assembled_model.Params = {
        "token_embed": {"embeddings": token_embed},
        "pos_embed": {"embeddings": pos_embed},
    }

    scale = float(np.sqrt(key_size))
    for index, layer in enumerate(layers):
        prefix = f"transformer/layer_{index}"
        attn = {
            name: _linear(dim, num_heads * key_size, dtype) for name in ("query", "key", "value")
        }
        attn["linear"] = _linear(num_heads * key_size, dim, dtype)
        for h, head in enumerate(layer.heads):
            # The standard convention: the forward pass divides q.k by sqrt(key_size), so
            # the query carries that factor (scaled in float64, rounded once) and the
            # logits stay the craft model's w_qk scores. The biases are 0.
            _write_head(head, columns, attn, h * key_size, scale)
        for name, value in attn.items():
            params[f"{prefix}/attn/{name}"] = value
        first, second = _linear(dim, mlp_size, dtype), _linear(mlp_size, dim, dtype)
        start = 0
        for mlp in layer.mlps:
            hidden = mlp.fst.output_space.num_dims
            first["w"][columns(mlp.fst.input_space), start : start + hidden] = mlp.fst.matrix
            second["w"][start : start + hidden, columns(mlp.snd.output_space)] = mlp.snd.matrix
            start += hidden
        params[f"{prefix}/mlp/linear_1"] = first
        params[f"{prefix}/mlp/linear_2"] = second
    for arrays in params.values():  # the embeddings (the layers' arrays are dtype already)
        for name, a in arrays.items():
            if a.dtype != dtype:
                arrays[name] = a.astype(dtype)

    unembed = np.zeros((dim, output_space.num_dims), dtype=dtype)
    unembed[residual.indices(output_space.basis), np.arange(output_space.num_dims)] = 1.0
    categorical_sops = {
        label: residual.indices(space.basis)
        for label, space in categorical_spaces.items()
        if space.num_dims
    }
    return _Arrays(params, config, unembed, tuple(str(d) for d in residual.basis), categorical_sops)
