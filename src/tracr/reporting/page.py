"""The HTML report: one self-contained file that shows what a compiled model computes.

`report(model, inputs, path)` writes a page with a model summary, the program graph with
its layer allocation, the circuit map, and for each input the decoded output, the value
of every SOp at every position, the residual stream after every block and the attention
pattern of every head. Everything is inline (CSS, a few lines of JS, the graph as SVG),
so the file opens from disk with no network; it needs only numpy.
"""

from __future__ import annotations

import html
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from tracr.plot import structure
from tracr.reporting import svg

CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; } h3 { font-size: 15px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 12px; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: center; }
th { background: #f4f4f4; }
table.heat td { min-width: 26px; font-size: 10px; }
table.heat th.dim { writing-mode: vertical-rl; transform: rotate(180deg); font-weight: normal; }
td.label, th.label { text-align: left; }
.graph-box { overflow-x: auto; border: 1px solid #ddd; padding: 4px; }
.scroll { overflow-x: auto; }
.heads { display: flex; flex-wrap: wrap; gap: 16px; }
.note { color: #555; font-size: 13px; max-width: 60em; }
section.input { border-top: 2px solid #888; margin-top: 24px; }
"""

JS = """
document.getElementById("toggle").addEventListener("click", function () {
  var all = document.querySelectorAll("details");
  var open = Array.prototype.some.call(all, function (d) { return !d.open; });
  all.forEach(function (d) { d.open = open; });
  this.textContent = open ? "collapse all" : "expand all";
});
document.body.dataset.ready = "1";
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(header: Sequence[Any], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    """A table of escaped cells."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><tr>{head}</tr>{body}</table>'


def _heat_cell(value: float, scale: float) -> str:
    alpha = min(1.0, abs(value) / scale) if scale else 0.0
    colour = "33,102,172" if value >= 0 else "178,24,43"
    text = f"{value:.2f}" if abs(value) >= 0.005 else ""
    ink = "#fff" if alpha > 0.6 else "#000"
    return (
        f'<td style="background:rgba({colour},{alpha:.2f});color:{ink}" '
        f'title="{value:.6g}">{text}</td>'
    )


def _with_bos(model, tokens: Sequence[Any]) -> list[Any]:
    tokens = list(tokens)
    bos = model.input_encoder.bos_token
    return tokens if tokens and tokens[0] == bos else [bos, *tokens]


def summary_section(model) -> str:
    config = model.model_config
    encoder = model.input_encoder
    specials = {encoder.bos_token, encoder.pad_token}
    vocab = sorted((t for t in encoder.encoding_map if t not in specials), key=repr)
    rows = [
        ("output SOp", structure.output_sop(model)),
        ("layers", config.num_layers),
        ("heads per layer", config.num_heads),
        ("d_model (residual width)", len(model.residual_labels)),
        ("d_head", config.key_size),
        ("d_mlp", config.mlp_hidden_size),
        ("parameters", f"{structure.parameter_count(model):,}"),
        ("vocab", " ".join(map(str, vocab))),
        ("max_seq_len", model.params["pos_embed"]["embeddings"].shape[0] - 1),
        ("BOS token", encoder.bos_token),
        ("causal", config.causal),
    ]
    return "<h2>Model summary</h2>" + _table(["property", "value"], rows, "summary")


def graph_section(model, program=None) -> str:
    sizes = structure.value_set_sizes(model, program) if program is not None else None
    graph = structure.program_graph(model, sizes)
    allocation = []
    for layer in range(graph.num_layers):
        for kind in (structure.ATTN, structure.MLP):
            sops = sorted(
                {p.sop for p in structure.circuit(model) if p.layer == layer and p.kind == kind}
            )
            allocation.append((layer, kind, ", ".join(sops) or "(empty)"))
    return (
        "<h2>Program graph</h2>"
        '<p class="note">Each SOp sits in the column of the block that computes it, with '
        "its encoding, the size of its value set and the block (attention head or MLP hidden "
        "units); arrows run from the SOps a block reads.</p>"
        f'<div class="graph-box">{svg.program_graph_svg(graph)}</div>'
        "<h3>Layer allocation</h3>"
        + _table(["layer", "block", "computes"], allocation, "allocation")
    )


def circuit_parts(model) -> list[structure.CircuitPart]:
    """The circuit map: which block computes each SOp (`structure.circuit`)."""
    return structure.circuit(model)


def circuit_section(model) -> str:
    labels = model.residual_labels
    rows = [
        (
            part.sop,
            f"layer {part.layer}",
            f"head {part.head}"
            if part.kind == structure.ATTN
            else f"MLP units {part.units[0]}-{part.units[1]}",
            " ".join(labels[c] for c in part.written),
            ", ".join(part.reads) or "-",
        )
        for part in circuit_parts(model)
    ]
    if getattr(model, "circuit", None) is not None:
        source = "From the compiler's record of the circuit (<code>model.circuit</code>)"
    else:
        source = "Read off the weights (the constant and BOS directions left out)"
    return (
        "<h2>Circuit map</h2>"
        f'<p class="note">{source}: for each SOp, the block that computes it, the residual '
        "dimensions it writes and the SOps it reads.</p>"
        + _table(["SOp", "layer", "block", "writes", "reads"], rows, "circuit")
    )


def _values_table(model, tokens, final: np.ndarray) -> str:
    """Every SOp's value at every position, decoded from the final residual stream."""
    graph = structure.program_graph(model)
    stage = {node.label: node.stage for node in graph.nodes}
    groups = [
        g
        for g in structure.residual_groups(model.residual_labels)
        if g.encoding in (structure.CATEGORICAL, structure.NUMERICAL)
    ]
    groups.sort(key=lambda g: (stage.get(g.label, 0), g.label))
    rows = [
        [g.label, structure.stage_name(stage.get(g.label, 0))] + structure.decode_group(g, final)
        for g in groups
    ]
    return _table(["SOp", "computed at"] + [f"{i}: {t}" for i, t in enumerate(tokens)], rows)


def _dim_header(group: structure.ResidualGroup, text: str) -> str:
    if group.encoding == structure.HIDDEN:  # long internal names: shown on hover
        return f'<th class="dim" title="{_e(group.label)}">hidden</th>'
    return f'<th class="dim">{_e(text)}</th>'


def _residual_table(model, tokens, data: np.ndarray) -> str:
    groups = structure.residual_groups(model.residual_labels)
    scale = float(np.abs(data).max()) or 1.0
    top = '<th class="label" rowspan="2">position</th>' + "".join(
        f'<th colspan="{len(g.columns)}">{_e(g.label if g.values else "")}</th>' for g in groups
    )
    dims = "".join(_dim_header(g, v) for g in groups for v in (g.values or (g.label,)))
    body = "".join(
        f'<tr><th class="label">{i}: {_e(t)}</th>'
        + "".join(_heat_cell(float(v), scale) for v in data[i])
        + "</tr>"
        for i, t in enumerate(tokens)
    )
    return (
        f'<div class="scroll"><table class="heat"><tr>{top}</tr><tr>{dims}</tr>{body}</table></div>'
    )


def _attention_tables(model, tokens, logits: list[np.ndarray]) -> str:
    computes = {(p.layer, p.head): p for p in circuit_parts(model) if p.kind == structure.ATTN}
    blocks = []
    for layer, layer_logits in enumerate(logits):
        patterns = structure.attention_patterns(layer_logits[0])  # [H, T, T]
        for head, pattern in enumerate(patterns):
            part = computes.get((layer, head))
            if part is None:
                continue
            head_row = "<th>query \\ key</th>" + "".join(f"<th>{_e(t)}</th>" for t in tokens)
            body = "".join(
                f"<tr><th>{_e(t)}</th>" + "".join(_heat_cell(float(w), 1.0) for w in row) + "</tr>"
                for t, row in zip(tokens, pattern)
            )
            blocks.append(
                f'<div class="head"><h3>layer {layer} head {head}: {_e(part.sop)}</h3>'
                f'<table class="heat attention"><tr>{head_row}</tr>{body}</table></div>'
            )
    return '<div class="heads">' + "".join(blocks) + "</div>"


def input_section(model, tokens: Sequence[Any], index: int) -> str:
    out = model.apply(tokens)
    decoded = out.decoded
    stages = [out.input_embeddings[0]] + [r[0] for r in out.residuals]
    residuals = "".join(
        f"<details{' open' if stage == len(stages) - 1 else ''}><summary>"
        f"{'embedding' if stage == 0 else 'after ' + structure.stage_name(stage)}</summary>"
        f"{_residual_table(model, tokens, data)}</details>"
        for stage, data in enumerate(stages)
    )
    shown = " ".join(map(str, tokens))
    return (
        f'<section class="input" id="input-{index}"><h2>Input {index}: {_e(shown)}</h2>'
        "<h3>Decoded output</h3>"
        + _table(
            ["position", "input", "output"],
            [(i, t, d) for i, (t, d) in enumerate(zip(tokens, decoded))],
            "decoded",
        )
        + "<h3>Every SOp at every position</h3>"
        + _values_table(model, tokens, out.transformer_output[0])
        + "<h3>Residual stream</h3>"
        + residuals
        + "<h3>Attention patterns</h3>"
        + _attention_tables(model, tokens, out.attn_logits)
        + "</section>"
    )


def render(
    model, inputs: Sequence[Sequence[Any]], *, program=None, title: str | None = None
) -> str:
    """The report's HTML text; see `report`."""
    if isinstance(inputs, (str, bytes)) or any(
        isinstance(t, (str, bytes)) or not isinstance(t, Sequence) for t in inputs
    ):
        raise TypeError(
            f"inputs must be a list of token sequences, e.g. [[1, 2, 3]], got {inputs!r}"
        )
    sequences = [_with_bos(model, tokens) for tokens in inputs]
    title = title or f"tracr model: {structure.output_sop(model)}"
    body = (
        f"<h1>{_e(title)}</h1>"
        '<p><button id="toggle" type="button">expand all</button></p>'
        + summary_section(model)
        + graph_section(model, program)
        + circuit_section(model)
        + "".join(input_section(model, seq, i) for i, seq in enumerate(sequences))
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>"
        f"<body>{body}<script>{JS}</script></body></html>"
    )


def report(
    model,
    inputs: Sequence[Sequence[Any]] = (),
    path: str | pathlib.Path = "report.html",
    *,
    program=None,
    title: str | None = None,
) -> pathlib.Path:
    """Writes a self-contained HTML report of `model` run on `inputs` to `path`.

    Args:
      model: a compiled model (`compiling.compile_rasp_to_model`).
      inputs: token sequences to show; the BOS token is prepended where missing.
      path: the .html file to write.
      program: the RASP program the model was compiled from, to show value-set sizes
        of numerical SOps in the program graph (optional).
      title: the page title (default: the output SOp's label).

    Returns the path written.
    """
    path = pathlib.Path(path)
    path.write_text(render(model, inputs, program=program, title=title), encoding="utf-8")
    return path
