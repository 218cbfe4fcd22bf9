"""What a compiled model computes where, read off its residual labels and its weights.

Everything here is plain numpy (no matplotlib), so the plots and the HTML report share it.

The residual stream is a row of labelled dimensions (`model.residual_labels`): a
categorical SOp owns one dimension per value (`"tokens:3"`), a numerical SOp one
dimension (`"frac_x"`), `"one"` is the constant direction, and a SelectorWidth's
attention output (`"..._selector_width_attn_output"`) is a block's private intermediate.
`residual_groups` groups the dimensions by SOp.

`circuit` says which block computes each SOp: from the compiler's record (`model.circuit`)
when the model carries one, else from the weights alone (`circuit_from_weights`). An
attention head writes a SOp when a row of its output matrix is non-zero on the SOp's
dimensions; an MLP hidden unit does when its row of `linear_2` is. A block reads the SOps
on whose dimensions its input weights (query, key, value; `linear_1`) are non-zero,
leaving out the auxiliary directions every head uses (`one`, the BOS token's dimension).
A block that writes only a hidden dimension is the first half of the block that reads it
(SelectorWidth: head, then MLP), so it is listed with that SOp, and the reads go through
it. Read off the weights, the circuit describes the model as it is, edits included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

CATEGORICAL, NUMERICAL, CONSTANT, HIDDEN = "categorical", "numerical", "constant", "hidden"
ATTN, MLP = "attn", "mlp"
HIDDEN_PREFIX = "_hidden"
# A SelectorWidth's attention output: "_hidden_<label>_selector_width_attn_output" here,
# "<label>_selector_width_attn_output" in the reference's naming.
HIDDEN_SUFFIX = "_selector_width_attn_output"
ONE = "one"
# Numbers smaller than this are shown as 0: far below every exactness budget (1e-5).
NUMBER_FLOOR = 1e-7


def is_hidden(name: str) -> bool:
    """Whether a residual group is a block's private intermediate rather than an SOp."""
    return name.startswith(HIDDEN_PREFIX) or name.endswith(HIDDEN_SUFFIX)


@dataclasses.dataclass(frozen=True)
class ResidualGroup:
    """The residual dimensions of one SOp (or of `one`, or of a hidden intermediate)."""

    label: str
    columns: tuple[int, ...]  # indices into residual_labels, in order
    values: tuple[str, ...]  # the value part of each label; () for a numerical SOp
    encoding: str  # CATEGORICAL, NUMERICAL, CONSTANT or HIDDEN


@dataclasses.dataclass(frozen=True)
class CircuitPart:
    """One block computing (part of) one SOp.

    `head` is set for an attention head, `units` (first, last hidden unit, inclusive) for
    an MLP; `written` are the residual columns it writes, `reads` the SOps it reads.
    """

    sop: str
    layer: int
    kind: str  # ATTN or MLP
    head: int | None
    units: tuple[int, int] | None
    written: tuple[int, ...]
    reads: tuple[str, ...]

    @property
    def block(self) -> str:
        """A short name: "L0 attn head 1" or "L2 mlp units 0-11"."""
        if self.kind == ATTN:
            return f"L{self.layer} attn head {self.head}"
        return f"L{self.layer} mlp units {self.units[0]}-{self.units[1]}"


def _split(label: str) -> tuple[str, str | None]:
    name, sep, value = label.partition(":")
    return (name, value) if sep else (label, None)


def residual_groups(residual_labels: Sequence[str]) -> list[ResidualGroup]:
    """Groups the residual labels by SOp, in order of first appearance."""
    columns: dict[str, list[int]] = {}
    values: dict[str, list[str]] = {}
    for index, label in enumerate(residual_labels):
        name, value = _split(label)
        columns.setdefault(name, []).append(index)
        if value is not None:
            values.setdefault(name, []).append(value)
    groups = []
    for name, cols in columns.items():
        if name == ONE:
            encoding = CONSTANT
        elif is_hidden(name):
            encoding = HIDDEN
        elif name in values:
            encoding = CATEGORICAL
        else:
            encoding = NUMERICAL
        groups.append(ResidualGroup(name, tuple(cols), tuple(values.get(name, ())), encoding))
    return groups


def _nonzero_rows(matrix: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.any(matrix != 0, axis=1))


@dataclasses.dataclass
class _Block:
    layer: int
    kind: str
    head: int | None
    units: tuple[int, int] | None
    reads: set[str]
    writes: dict[str, list[int]]  # group -> columns written


def _raw_blocks(model) -> list[_Block]:
    """Every head and every group of MLP units, with the groups it reads and writes."""
    labels = model.residual_labels
    group_of = {}
    for group in residual_groups(labels):
        for col in group.columns:
            group_of[col] = group.label
    bos = model.input_encoder.bos_token if model.input_encoder else None
    auxiliary = {i for i, label in enumerate(labels) if label in (ONE, f"tokens:{bos}")}

    def groups_read(rows: np.ndarray) -> set[str]:
        return {group_of[int(r)] for r in rows if int(r) not in auxiliary}

    config = model.model_config
    params = model.params
    blocks = []
    for layer in range(config.num_layers):
        prefix = f"transformer/layer_{layer}"
        d_head = config.key_size
        for head in range(config.num_heads):
            cols = slice(head * d_head, (head + 1) * d_head)
            out = params[f"{prefix}/attn/linear"]["w"][cols]  # [K, D]
            written = np.flatnonzero(np.any(out != 0, axis=0))
            if not written.size:
                continue
            reads = set()
            for name in ("query", "key", "value"):
                reads |= groups_read(_nonzero_rows(params[f"{prefix}/attn/{name}"]["w"][:, cols]))
            blocks.append(_Block(layer, ATTN, head, None, reads, _by_group(written, group_of)))
        w_in = params[f"{prefix}/mlp/linear_1"]["w"]  # [D, M]
        w_out = params[f"{prefix}/mlp/linear_2"]["w"]  # [M, D]
        blocks.extend(_mlp_blocks(layer, w_in, w_out, group_of, groups_read))
    return blocks


def _mlp_blocks(layer, w_in, w_out, group_of, groups_read) -> list[_Block]:
    """The MLP's hidden units grouped by the SOp they write.

    Units that write only a hidden dimension (a SelectorWidth's clean-up of its head's
    output) join the SOp whose units read that dimension.
    """
    by_target: dict[str, list[int]] = {}
    for unit in range(w_out.shape[0]):
        written = np.flatnonzero(w_out[unit] != 0)
        if not written.size:
            continue
        targets = sorted(_by_group(written, group_of))
        visible = [t for t in targets if not is_hidden(t)] or targets
        by_target.setdefault(visible[0], []).append(unit)
    reads = {t: groups_read(_nonzero_rows(w_in[:, units])) for t, units in by_target.items()}
    for hidden in [t for t in by_target if is_hidden(t)]:
        readers = [t for t in by_target if hidden in reads[t] and t != hidden]
        if readers:
            by_target[readers[0]] += by_target.pop(hidden)
            reads[readers[0]] |= reads.pop(hidden)
    blocks = []
    for target, units in by_target.items():
        units = sorted(units)
        written = np.flatnonzero(np.any(w_out[units] != 0, axis=0))
        writes = {g: c for g, c in _by_group(written, group_of).items() if g == target}
        blocks.append(_Block(layer, MLP, None, (units[0], units[-1]), reads[target], writes))
    return blocks


def _by_group(columns: np.ndarray, group_of: dict[int, str]) -> dict[str, list[int]]:
    result: dict[str, list[int]] = {}
    for col in columns:
        result.setdefault(group_of[int(col)], []).append(int(col))
    return result


def circuit(model) -> list[CircuitPart]:
    """Which block computes each SOp, ordered by layer.

    From the compiler's record (`model.circuit`) where the model has one, else read off
    the weights (`circuit_from_weights`). A SOp computed by a head and an MLP
    (SelectorWidth) has two parts; a SOp that no block writes (tokens, indices) has none.
    """
    recorded = getattr(model, "circuit", None)
    if recorded is None:
        return circuit_from_weights(model)
    return _sort(_parts_from_record(recorded, model.residual_labels))


def _parts_from_record(recorded, residual_labels: Sequence[str]) -> list[CircuitPart]:
    """CircuitParts from a `tracr.compiler.circuit.Circuit` (SOp nodes only)."""
    parts = []
    for node in recorded.nodes:
        if node.kind != "sop":
            continue
        blocks = [b for b in node.blocks if b.kind in (ATTN, MLP)]
        hidden = tuple(c for c in node.writes if is_hidden(_split(residual_labels[c])[0]))
        visible = tuple(c for c in node.writes if c not in hidden)
        both = len({b.kind for b in blocks}) == 2  # a SelectorWidth: head, then MLP
        for block in blocks:
            written = hidden if both and block.kind == ATTN else visible if both else node.writes
            parts.append(
                CircuitPart(
                    sop=node.label,
                    layer=block.layer,
                    kind=block.kind,
                    head=block.head,
                    units=None if block.units is None else (block.units[0], block.units[1] - 1),
                    written=tuple(written),
                    reads=tuple(sorted(set(node.reads) - {node.label})),
                )
            )
    return parts


def _sort(parts: list[CircuitPart]) -> list[CircuitPart]:
    return sorted(
        parts, key=lambda p: (p.layer, p.kind != ATTN, p.head or 0, p.units or (0, 0), p.sop)
    )


def circuit_from_weights(model) -> list[CircuitPart]:
    """`circuit` read off the weights alone (see the module docstring), so it follows
    weights a user has edited."""
    blocks = _raw_blocks(model)
    hidden_writers: dict[str, list[_Block]] = {}
    for block in blocks:
        for group in block.writes:
            if is_hidden(group):
                hidden_writers.setdefault(group, []).append(block)
    parts: list[CircuitPart] = []
    for block in blocks:
        visible = [g for g in block.writes if not is_hidden(g)]
        for sop in visible:
            chain = [block]
            for group in sorted(block.reads):
                chain[:0] = hidden_writers.get(group, [])
            reads = set()
            for member in chain:
                reads |= {g for g in member.reads if not is_hidden(g)}
            for member in chain:
                written = member.writes.get(sop) or [c for cs in member.writes.values() for c in cs]
                parts.append(
                    CircuitPart(
                        sop=sop,
                        layer=member.layer,
                        kind=member.kind,
                        head=member.head,
                        units=member.units,
                        written=tuple(written),
                        reads=tuple(sorted(reads - {sop})),
                    )
                )
    return _sort(parts)


@dataclasses.dataclass(frozen=True)
class GraphNode:
    """A SOp of the program graph, placed at the sub-layer where its value appears.

    `stage` 0 is the embedding; the attention of layer l is stage 2l + 1 and its MLP
    stage 2l + 2. `size` is the size of the value set: the compiler's (which counts None
    where an SOp can be None) when the program is given, else, for a categorical SOp, its
    number of dimensions (None has none), and for a numerical one unknown (None).
    """

    label: str
    encoding: str
    size: int | None
    stage: int
    blocks: tuple[str, ...]  # e.g. ("L0 attn head 0", "L0 mlp units 0-11")


@dataclasses.dataclass(frozen=True)
class ProgramGraph:
    nodes: tuple[GraphNode, ...]
    edges: tuple[tuple[str, str], ...]  # (read SOp, computed SOp)
    num_layers: int


def stage_name(stage: int) -> str:
    if stage == 0:
        return "embedding"
    layer, half = divmod(stage - 1, 2)
    return f"layer {layer} {'attn' if half == 0 else 'mlp'}"


def program_graph(model, value_set_sizes: dict[str, int] | None = None) -> ProgramGraph:
    """The SOps of the model, where each is computed, and which SOps each reads.

    `value_set_sizes` (label -> size, e.g. from the compiler's basis inference) fills in
    the sizes the weights cannot tell (numerical SOps).
    """
    sizes = dict(value_set_sizes or {})
    parts = circuit(model)
    by_sop: dict[str, list[CircuitPart]] = {}
    for part in parts:
        by_sop.setdefault(part.sop, []).append(part)
    specials = set()
    if model.input_encoder is not None:
        specials = {str(model.input_encoder.bos_token), str(model.input_encoder.pad_token)}
    nodes, edges = [], []
    for group in residual_groups(model.residual_labels):
        if group.encoding in (CONSTANT, HIDDEN):
            continue
        sop_parts = by_sop.get(group.label, [])
        if group.label == "tokens":
            size = len([v for v in group.values if v not in specials])
        elif group.encoding == CATEGORICAL:
            size = len(group.values)
        else:
            size = None
        size = sizes.get(group.label, size)
        if sop_parts:
            last = sop_parts[-1]
            stage = 2 * last.layer + (1 if last.kind == ATTN else 2)
        else:
            stage = 0
        nodes.append(
            GraphNode(group.label, group.encoding, size, stage, tuple(p.block for p in sop_parts))
        )
        if sop_parts:
            edges.extend((read, group.label) for read in sop_parts[-1].reads)
    return ProgramGraph(tuple(nodes), tuple(edges), model.model_config.num_layers)


def decode_group(group: ResidualGroup, vectors: np.ndarray) -> list[str]:
    """The value a group holds at each position of `vectors` [T, D], as text.

    Categorical: the value whose dimension is largest, if it is at least 0.5, else "None".
    Numerical: the number to 4 digits, "0" below NUMBER_FLOOR (the attention's leakage).
    This mirrors how the model's output is decoded.
    """
    values = vectors[:, list(group.columns)]  # [T, V]
    if group.encoding == CATEGORICAL:
        best = values.argmax(axis=1)
        return [group.values[b] if row[b] >= 0.5 else "None" for b, row in zip(best, values)]
    return [f"{v:.4g}" if abs(v) >= NUMBER_FLOOR else "0" for v in values[:, 0]]


def attention_patterns(logits: np.ndarray) -> np.ndarray:
    """Softmax over keys of the model's attention logits [..., T, T] (masked keys get 0)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=-1, keepdims=True)


def parameter_count(model) -> int:
    return int(sum(a.size for block in model.params.values() for a in block.values()))


def mlp_hidden(model, residual: np.ndarray, layer: int) -> np.ndarray:
    """ReLU hidden activations [T, M] of layer `layer`'s MLP for the residual [T, D] it reads."""
    first = model.params[f"transformer/layer_{layer}/mlp/linear_1"]
    return np.maximum(residual @ first["w"] + first["b"], 0)


def graph_positions(graph: ProgramGraph) -> dict[str, tuple[int, int]]:
    """(column, row) of every node: column = stage; rows ordered by the mean row of the
    SOps each node reads, so that arrows cross little."""
    sources: dict[str, list[str]] = {}
    for source, target in graph.edges:
        sources.setdefault(target, []).append(source)
    positions: dict[str, tuple[int, int]] = {}
    for stage in sorted({node.stage for node in graph.nodes}):
        column = [node.label for node in graph.nodes if node.stage == stage]

        def mean_row(label: str) -> float:
            rows = [positions[s][1] for s in sources.get(label, []) if s in positions]
            return sum(rows) / len(rows) if rows else 0.0

        for row, label in enumerate(sorted(column, key=lambda lbl: (mean_row(lbl), lbl))):
            positions[label] = (stage, row)
    return positions


def node_caption(node: GraphNode) -> str:
    """Three lines: the SOp, its encoding and value-set size, and the block computing it."""
    size = "? values" if node.size is None else f"{node.size} values"
    where = " + ".join(node.blocks) if node.blocks else "input embedding"
    return f"{node.label}\n{node.encoding}, {size}\n{where}"


def value_set_sizes(model, program) -> dict[str, int]:
    """The size of every SOp's value set, from the compiler's basis inference.

    The vocab and max_seq_len are read off the model (its token encoder and its position
    embedding), so `program` must be the program the model was compiled from.
    """
    from tracr.compiler import basis_inference, rasp_to_graph

    encoder = model.input_encoder
    specials = {encoder.bos_token, encoder.pad_token}
    vocab = {t for t in encoder.encoding_map if t not in specials}
    max_seq_len = model.params["pos_embed"]["embeddings"].shape[0] - 1
    extracted = rasp_to_graph.extract_rasp_graph(program)
    value_sets = basis_inference.infer_bases(extracted, vocab=vocab, max_seq_len=max_seq_len)
    return {label: len(values) for label, values in value_sets.items()}


def output_sop(model) -> str:
    """The label of the SOp the model outputs (the residual columns it unembeds)."""
    unembed = model.get_compiled_model().unembed_matrix  # [D, V]
    columns = np.flatnonzero(np.any(unembed != 0, axis=1))
    names = {_split(model.residual_labels[int(c)])[0] for c in columns}
    return ", ".join(sorted(names)) if names else "(none)"
