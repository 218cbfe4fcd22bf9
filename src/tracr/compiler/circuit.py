"""The compiled circuit as data: which block computes each SOp and selector of a program.

Every SOp owns a labelled subspace of the residual stream and is written by one block (or
by an embedding), so the ground-truth circuit of a compiled model is known exactly. For
each SOp and selector, `model.circuit` records

- `blocks`: where it is computed: an attention head (layer, head index), a range of MLP
  hidden units (layer, [start, stop)), or the token / position embedding. A selector is
  computed by the query-key part of the heads of the SOps that use it;
- `writes`: the residual dimensions it writes (indices into `model.residual_labels`, with
  their labels); a SelectorWidth also writes its head's column
  `<label>_selector_width_attn_output`; selectors write nothing;
- `reads`: the SOps it reads, selectors resolved to the SOps they compare, and
  `selectors`: the selectors it uses directly.

Zero-ablating the blocks of an SOp (`ablate`) changes its residual dimensions and those of
the SOps downstream of it (`downstream`), and no others. `to_json` / `from_json` give the
JSON form that `tracr.export.save` stores.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tracr.compiler import bound_cache, craft_graph_to_model, kept_blocks, nodes, rasp_to_graph
from tracr.craft import transformers
from tracr.rasp import rasp

ATTN, MLP, TOKEN_EMBED, POS_EMBED = "attn", "mlp", "token_embed", "pos_embed"
SOP, SELECTOR = "sop", "selector"


@dataclasses.dataclass(frozen=True)
class Block:
    """One part of the transformer.

    kind: "attn" (one head), "mlp" (a range of hidden units), "token_embed" or "pos_embed".
    layer: the layer index, None for an embedding.
    head: the head index within the layer, for "attn".
    units: [start, stop) hidden units of the layer's MLP, for "mlp".
    """

    kind: str
    layer: int | None = None
    head: int | None = None
    units: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.kind not in (ATTN, MLP, TOKEN_EMBED, POS_EMBED):
            raise ValueError(f"unknown block kind {self.kind!r}")
        if (self.kind == ATTN) != (self.head is not None):
            raise ValueError(f"a head index is given exactly for attention blocks: {self}")
        if (self.kind == MLP) != (self.units is not None):
            raise ValueError(f"a unit range is given exactly for MLP blocks: {self}")
        if (self.kind in (ATTN, MLP)) != (self.layer is not None):
            raise ValueError(f"a layer is given exactly for attention and MLP blocks: {self}")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.layer is not None:
            out["layer"] = self.layer
        if self.head is not None:
            out["head"] = self.head
        if self.units is not None:
            out["units"] = list(self.units)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Block:
        units = data.get("units")
        return cls(
            kind=data["kind"],
            layer=data.get("layer"),
            head=data.get("head"),
            units=None if units is None else (int(units[0]), int(units[1])),
        )


@dataclasses.dataclass(frozen=True)
class Node:
    """One SOp or selector of the program (see the module docstring)."""

    label: str
    kind: str  # "sop" or "selector"
    expr: str  # the RASP class, e.g. "Aggregate"
    encoding: str | None  # "categorical" / "numerical" for SOps, None for selectors
    blocks: tuple[Block, ...]
    writes: tuple[int, ...]
    write_labels: tuple[str, ...]
    reads: tuple[str, ...]
    selectors: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "kind": self.kind,
            "expr": self.expr,
            "encoding": self.encoding,
            "blocks": [b.to_json() for b in self.blocks],
            "writes": list(self.writes),
            "write_labels": list(self.write_labels),
            "reads": list(self.reads),
            "selectors": list(self.selectors),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Node:
        return cls(
            label=data["label"],
            kind=data["kind"],
            expr=data["expr"],
            encoding=data["encoding"],
            blocks=tuple(Block.from_json(b) for b in data["blocks"]),
            writes=tuple(int(i) for i in data["writes"]),
            write_labels=tuple(data["write_labels"]),
            reads=tuple(data["reads"]),
            selectors=tuple(data["selectors"]),
        )


@dataclasses.dataclass(frozen=True)
class Circuit:
    """The nodes of a compiled program in dependency order; `output` is the program's label."""

    nodes: tuple[Node, ...]
    output: str

    def __post_init__(self) -> None:
        labels = [n.label for n in self.nodes]
        if len(set(labels)) != len(labels):
            raise ValueError("circuit node labels must be unique")
        if self.output not in labels:
            raise ValueError(f"the output {self.output!r} is not a node of the circuit")

    def __getitem__(self, label: str) -> Node:
        for node in self.nodes:
            if node.label == label:
                return node
        raise KeyError(f"{label!r} is not an SOp or selector of the circuit; it has {self.labels}")

    def __contains__(self, label: object) -> bool:
        return any(n.label == label for n in self.nodes)

    @property
    def labels(self) -> list[str]:
        return [n.label for n in self.nodes]

    def downstream(self, label: str) -> list[str]:
        """Labels of the nodes that read `label`, directly or through others, in order."""
        below = {self[label].label}
        out = []
        for node in self.nodes:
            if below & (set(node.reads) | set(node.selectors)):
                below.add(node.label)
                out.append(node.label)
        return out

    def ablate(self, model: Any, label: str) -> dict[str, dict[str, np.ndarray]]:
        """A copy of `model.params` with the heads and MLP units that compute `label` zeroed.

        A head is silenced through its rows of W_O (attn/linear), MLP units through their
        columns of W_in and b_in and their rows of W_out. Embeddings are left alone. Run
        the result with `model.forward(params, ids)` or `apply(..., strict=False)` after
        assigning it to a copy of the model.
        """
        d_head = model.model_config.key_size
        out = {k: {n: np.array(a) for n, a in v.items()} for k, v in model.params.items()}
        for block in self[label].blocks:
            prefix = f"transformer/layer_{block.layer}"
            if block.kind == ATTN:
                out[f"{prefix}/attn/linear"]["w"][
                    block.head * d_head : (block.head + 1) * d_head
                ] = 0
            elif block.kind == MLP:
                start, stop = block.units
                out[f"{prefix}/mlp/linear_1"]["w"][:, start:stop] = 0
                out[f"{prefix}/mlp/linear_1"]["b"][start:stop] = 0
                out[f"{prefix}/mlp/linear_2"]["w"][start:stop] = 0
        return out

    def to_json(self) -> dict[str, Any]:
        return {"output": self.output, "nodes": [n.to_json() for n in self.nodes]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Circuit:
        return cls(nodes=tuple(Node.from_json(n) for n in data["nodes"]), output=data["output"])


def _leaves(block) -> list:
    if isinstance(block, transformers.SeriesWithResiduals):
        return [leaf for sub in block.blocks for leaf in _leaves(sub)]
    return [block]


def _block_positions(craft_model: craft_graph_to_model.CraftModel) -> dict[int, Block]:
    """id(craft block) -> where it sits in the assembled transformer."""
    where: dict[int, Block] = {}
    for index, layer in enumerate(craft_model.layers):
        for head, block in enumerate(layer.heads):
            where[id(block)] = Block(ATTN, layer=index, head=head)
        start = 0
        for block in layer.mlps:
            width = block.fst.output_space.num_dims
            where[id(block)] = Block(MLP, layer=index, units=(start, start + width))
            start += width
    return where


def _written(leaf) -> list:
    if isinstance(leaf, transformers.AttentionHead):
        return list(leaf.w_ov.output_space.basis)
    return list(leaf.snd.output_space.basis)


def extract_circuit(
    extracted: rasp_to_graph.ExtractRaspGraphOutput,
    lowered: Mapping[str, Any],
    craft_model: craft_graph_to_model.CraftModel,
    residual_labels: Sequence[str],
) -> Circuit:
    """The circuit of a compiled program, from the passes' results and the residual labels.

    A Circuit is immutable: one is kept across compiles by everything it is read from
    (`_key`) and shared by the models of those compiles."""
    key = _key(extracted, lowered, craft_model, residual_labels)
    found = None if key is None else _CIRCUITS.get(key)
    if found is None:
        found = _extract(extracted, lowered, craft_model, residual_labels)
        if key is not None:
            _CIRCUITS.put(key, found, 256 * (len(found.nodes) + len(residual_labels)))
    return found


#: Circuits kept across compiles (least recently used dropped beyond about this many bytes).
_CIRCUITS = bound_cache.Known(max_bytes=16 << 20)


def _key(extracted, lowered, craft_model, residual_labels) -> bound_cache.Key | None:
    """Everything `_extract` reads, exactly: the traced graph (the same object while its
    program is unchanged, traced.py, and no pass changes it), each SOp's block (kept
    across compiles, kept_blocks.py: immutable) or, for an embedded SOp, its space, the
    layers (where each block sits) and the residual labels; None where a block is not
    kept."""
    nodes_read = tuple(
        (label, kept_blocks.Contents(node.space) if node.block is None else node.block)
        for label, node in lowered.items()
    )
    layers = tuple((layer.heads, layer.mlps) for layer in craft_model.layers)
    parts = (kept_blocks.Same(extracted), nodes_read, layers, tuple(residual_labels))
    return kept_blocks.key(parts)


def _extract(
    extracted: rasp_to_graph.ExtractRaspGraphOutput,
    lowered: Mapping[str, Any],
    craft_model: craft_graph_to_model.CraftModel,
    residual_labels: Sequence[str],
) -> Circuit:
    graph = extracted.graph
    column = {label: i for i, label in enumerate(residual_labels)}
    where = _block_positions(craft_model)
    order = graph.topological_order()
    exprs = {label: graph.nodes[label][nodes.EXPR] for label in order}
    read: dict[str, list[str]] = {}  # sops_read of each label, worked out once

    def sops_read(label: str) -> list[str]:
        found = read.get(label)
        if found is not None:
            return found
        found = []
        for child in graph.predecessors(label):
            more = [child] if isinstance(exprs[child], rasp.SOp) else sops_read(child)
            found += [m for m in more if m not in found]
        read[label] = found
        return found

    blocks: dict[str, list[Block]] = {}
    writes: dict[str, list[int]] = {}
    for label in order:
        expr = exprs[label]
        if not isinstance(expr, rasp.SOp):
            continue
        node = lowered.get(label)
        leaves = [] if node is None or node.block is None else _leaves(node.block)
        if isinstance(expr, rasp.IndicesType):
            blocks[label] = [Block(POS_EMBED)]
        elif node is None or node.block is None:
            blocks[label] = [Block(TOKEN_EMBED)]
        else:
            blocks[label] = [where[id(leaf)] for leaf in leaves]
        if node is not None and node.block is None:
            directions = node.space.basis
        else:
            directions = [d for leaf in leaves for d in _written(leaf)]
        cols = set(map(column.get, map(str, directions)))
        cols.discard(None)
        writes[label] = sorted(cols)

    def heads_using(selector_label: str) -> list[Block]:
        found: list[Block] = []
        for user in graph.successors(selector_label):
            if isinstance(exprs[user], rasp.SOp):  # its head (after any input cleanup)
                more = [b for b in blocks[user] if b.kind == "attn"][:1]
            else:
                more = heads_using(user)
            found += [b for b in more if b not in found]
        return found

    out = []
    for label in order:
        expr = exprs[label]
        is_sop = isinstance(expr, rasp.SOp)
        cols = writes.get(label, [])
        out.append(
            Node(
                label=label,
                kind=SOP if is_sop else SELECTOR,
                expr=type(expr).__name__,
                encoding=rasp.get_encoding(expr).value if is_sop else None,
                blocks=tuple(blocks[label] if is_sop else heads_using(label)),
                writes=tuple(cols),
                write_labels=tuple(residual_labels[c] for c in cols),
                reads=tuple(sops_read(label)),
                selectors=tuple(
                    c for c in graph.predecessors(label) if isinstance(exprs[c], rasp.Selector)
                ),
            )
        )
    return Circuit(nodes=tuple(out), output=extracted.sink[nodes.ID])
