"""Matplotlib figures of a compiled model: residual stream, attention, MLPs, program graph.

Every function takes the model and (except `program_graph`) one input (BOS first as
`model.apply` takes it; it is added where missing), runs the model, and returns a
`matplotlib.figure.Figure` that it does not show or save. Each image's data is the array
it depicts, so `fig.axes[i].images[0].get_array()` gives the numbers back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tracr.plot import structure

# Cell values are printed inside attention patterns up to this many positions.
ANNOTATE_UP_TO = 12


def new_figure(width: float, height: float):
    """A new Figure, not registered with pyplot (so nothing is shown or kept alive)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("plots need matplotlib: pip install 'tracr[plot]'") from err
    return Figure(figsize=(width, height), layout="constrained")


def _run(model, tokens: Sequence[Any]):
    """(tokens with BOS first, the model's output); strict=False so edited models plot."""
    tokens = list(tokens)
    bos = model.input_encoder.bos_token
    if not tokens or tokens[0] != bos:
        tokens = [bos, *tokens]
    return tokens, model.apply(tokens, strict=False)


def _token_labels(tokens: Sequence[Any]) -> list[str]:
    return [str(t) for t in tokens]


def _heatmap(ax, data: np.ndarray, *, symmetric: bool = True, cmap: str = "RdBu_r"):
    limit = float(np.abs(data).max()) or 1.0
    low = -limit if symmetric else 0.0
    return ax.imshow(data, cmap=cmap, vmin=low, vmax=limit, aspect="auto", interpolation="none")


def _mark_groups(ax, groups: list[structure.ResidualGroup]) -> None:
    """Vertical lines between SOps, and each SOp's name above its columns."""
    for group in groups:
        start, stop = group.columns[0], group.columns[-1]
        if start > 0:
            ax.axvline(start - 0.5, color="black", linewidth=0.8)
        if len(group.columns) > 1:  # a single column's tick label already names it
            ax.text((start + stop) / 2, -0.6, group.label, ha="center", va="bottom", fontsize=7)


def _stream(model, tokens, arrays: list[np.ndarray], titles: list[str], width_per_dim=0.22):
    labels = model.residual_labels
    groups = structure.residual_groups(labels)
    rows = len(tokens)
    fig = new_figure(
        max(6.0, 1.5 + width_per_dim * len(labels)), len(arrays) * (1.0 + 0.3 * rows) + 1.5
    )
    axes = fig.subplots(len(arrays), 1, squeeze=False)[:, 0]
    for ax, data, title in zip(axes, arrays, titles):
        image = _heatmap(ax, data)
        ax.set_title(title, fontsize=9, loc="left", pad=14)
        ax.set_yticks(range(rows), _token_labels(tokens), fontsize=7)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.tick_params(labelbottom=ax is axes[-1])
        _mark_groups(ax, groups)
        fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01)
    return fig


def residual_stream(model, tokens: Sequence[Any]):
    """The residual stream of `tokens` at the embedding and after every block.

    One panel per stage (embedding, layer 0 attn, layer 0 mlp, ...), each a heatmap of
    positions (rows, labelled with the tokens) x residual dimensions (columns, labelled
    with `model.residual_labels`, separated and named by SOp).
    """
    tokens, out = _run(model, tokens)
    arrays = [out.input_embeddings[0]] + [r[0] for r in out.residuals]
    titles = ["embedding"] + [
        f"residual after {structure.stage_name(stage)}" for stage in range(1, len(arrays))
    ]
    return _stream(model, tokens, arrays, titles)


def layer_outputs(model, tokens: Sequence[Any]):
    """What each block adds to the residual stream, laid out as in `residual_stream`."""
    tokens, out = _run(model, tokens)
    arrays = [o[0] for o in out.layer_outputs]
    titles = [f"output of {structure.stage_name(s)}" for s in range(1, len(arrays) + 1)]
    return _stream(model, tokens, arrays, titles)


def _head_titles(model) -> dict[tuple[int, int], str]:
    titles = {}
    for part in structure.circuit(model):
        if part.kind == structure.ATTN:
            titles[(part.layer, part.head)] = part.sop
    return titles


def attention(model, tokens: Sequence[Any]):
    """The attention pattern of every head of every layer for `tokens`.

    A grid of layers (rows) x heads (columns); each panel is softmax(attn_logits) of the
    model's own output, queries down the side and keys along the top, labelled with the
    tokens, and titled with the SOp the head computes ("unused" for an idle head).
    """
    tokens, out = _run(model, tokens)
    config = model.model_config
    names = _head_titles(model)
    labels = _token_labels(tokens)
    size = 1.2 + 0.35 * len(tokens)
    fig = new_figure(size * config.num_heads + 0.5, size * config.num_layers + 0.3)
    axes = fig.subplots(config.num_layers, config.num_heads, squeeze=False)
    for layer in range(config.num_layers):
        patterns = structure.attention_patterns(out.attn_logits[layer][0])  # [H, T, T]
        for head in range(config.num_heads):
            ax = axes[layer, head]
            pattern = patterns[head]
            ax.imshow(pattern, cmap="Blues", vmin=0, vmax=1, interpolation="none")
            sop = names.get((layer, head), "unused")
            ax.set_title(f"layer {layer} head {head}: {sop}", fontsize=8)
            ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=90)
            ax.set_yticks(range(len(labels)), labels, fontsize=7)
            ax.set_xlabel("key", fontsize=7)
            ax.set_ylabel("query", fontsize=7)
            ax.xaxis.set_label_position("top")
            ax.xaxis.tick_top()
            if len(labels) <= ANNOTATE_UP_TO:
                for (q, k), w in np.ndenumerate(pattern):
                    if w >= 0.005:
                        color = "white" if w > 0.6 else "black"
                        ax.text(k, q, f"{w:.2f}", ha="center", va="center", fontsize=6, color=color)
    return fig


def mlp_activations(model, tokens: Sequence[Any]):
    """The ReLU hidden activations of every layer's MLP for `tokens`.

    One panel per layer: positions x the hidden units in use, each SOp's units named
    above them. Layers whose MLP has no units in use say so.
    """
    tokens, out = _run(model, tokens)
    config = model.model_config
    parts = [p for p in structure.circuit(model) if p.kind == structure.MLP]
    fig = new_figure(8.0, config.num_layers * (1.0 + 0.25 * len(tokens)))
    axes = fig.subplots(config.num_layers, 1, squeeze=False)[:, 0]
    for layer, ax in enumerate(axes):
        layer_parts = [p for p in parts if p.layer == layer]
        ax.set_title(f"layer {layer} mlp", fontsize=9, loc="left", pad=14)
        if not layer_parts:
            ax.text(0.5, 0.5, "no hidden units in use", ha="center", va="center")
            ax.set_axis_off()
            continue
        width = max(p.units[1] for p in layer_parts) + 1
        residual = out.residuals[2 * layer][0]  # what the MLP reads: after this layer's attn
        hidden = structure.mlp_hidden(model, residual, layer)[:, :width]  # [T, M]
        image = _heatmap(ax, hidden, symmetric=False, cmap="viridis")
        ax.set_yticks(range(len(tokens)), _token_labels(tokens), fontsize=7)
        ax.set_xlabel("hidden unit", fontsize=8)
        for part in layer_parts:
            first, last = part.units
            if first > 0:
                ax.axvline(first - 0.5, color="white", linewidth=1)
            ax.text((first + last) / 2, -0.6, part.sop, ha="center", va="bottom", fontsize=7)
        fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01)
    return fig


def program_graph(model, program=None):
    """The program graph laid out by layer.

    Columns are the stages (embedding, then each layer's attention and MLP); each SOp is a
    box in the column of the block that computes it, saying its encoding, the size of its
    value set and the block; arrows run from each SOp read to the SOp computed. With
    `program` (the RASP SOp the model was compiled from) numerical value-set sizes are
    filled in too.
    """
    sizes = structure.value_set_sizes(model, program) if program is not None else None
    graph = structure.program_graph(model, sizes)
    positions = structure.graph_positions(graph)
    stages = 2 * graph.num_layers + 1
    rows = max((y for _, y in positions.values()), default=0) + 1
    fig = new_figure(1.9 * stages, 1.2 * rows + 1.2)
    ax = fig.add_subplot()
    ax.set_xlim(-0.6, stages - 0.4)
    ax.set_ylim(rows - 0.4, -1.0)
    ax.set_axis_off()
    for stage in range(stages):
        if stage % 2 == 1:
            ax.axvspan(stage - 0.5, stage + 0.5, color="#f0f0f0", zorder=0)
        ax.text(stage, -0.7, structure.stage_name(stage), ha="center", fontsize=9, weight="bold")
    for source, target in graph.edges:
        span = positions[target][0] - positions[source][0]
        ax.annotate(
            "",
            xy=positions[target],
            xytext=positions[source],
            arrowprops={
                "arrowstyle": "->",
                "color": "#555555",
                "shrinkA": 20,
                "shrinkB": 20,
                # Arrows that skip stages bow up by a fixed height, clear of the boxes.
                "connectionstyle": f"arc3,rad={0.0 if span <= 1 else -0.5 / span}",
            },
            zorder=1,
        )
    for node in graph.nodes:
        x, y = positions[node.label]
        ax.text(
            x,
            y,
            structure.node_caption(node),
            ha="center",
            va="center",
            fontsize=7,
            zorder=2,
            bbox={"boxstyle": "round", "facecolor": _COLORS[node.encoding], "edgecolor": "#333"},
        )
    return fig


_COLORS = {structure.CATEGORICAL: "#dbe9f6", structure.NUMERICAL: "#fde0c5"}
