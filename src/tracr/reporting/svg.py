"""The program graph as an inline SVG picture (no plotting library needed)."""

from __future__ import annotations

import html

from tracr.plot import structure

COLUMN_WIDTH = 215  # px between stage centres
ROW_HEIGHT = 84  # px between rows
BOX_WIDTH, BOX_HEIGHT = 200, 52
TOP = 60  # px for the stage names

FILL = {structure.CATEGORICAL: "#dbe9f6", structure.NUMERICAL: "#fde0c5"}


def program_graph_svg(graph: structure.ProgramGraph) -> str:
    """The graph laid out by stage (columns) as an <svg> element.

    Each SOp is a box with its label, encoding, value-set size and block; arrows run from
    the SOps a block reads to the SOp it computes; attention columns are shaded.
    """
    positions = structure.graph_positions(graph)
    stages = 2 * graph.num_layers + 1
    rows = max((row for _, row in positions.values()), default=0) + 1
    width = stages * COLUMN_WIDTH
    height = TOP + rows * ROW_HEIGHT + 20

    def centre(label: str) -> tuple[float, float]:
        stage, row = positions[label]
        return (stage + 0.5) * COLUMN_WIDTH, TOP + (row + 0.5) * ROW_HEIGHT

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="program graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#555"/></marker></defs>',
    ]
    for stage in range(stages):
        x = stage * COLUMN_WIDTH
        if stage % 2 == 1:
            parts.append(
                f'<rect x="{x}" y="0" width="{COLUMN_WIDTH}" height="{height}" fill="#f2f2f2"/>'
            )
        parts.append(
            f'<text x="{x + COLUMN_WIDTH / 2}" y="22" text-anchor="middle" '
            f'font-weight="bold" font-size="13">{structure.stage_name(stage)}</text>'
        )
    for source, target in graph.edges:
        (x0, y0), (x1, y1) = centre(source), centre(target)
        x0 += BOX_WIDTH / 2
        x1 -= BOX_WIDTH / 2
        if positions[target][0] - positions[source][0] <= 1:
            path = f"M {x0:.1f} {y0:.1f} L {x1:.1f} {y1:.1f}"
        else:  # skipping stages: up over the boxes between, and down into the target
            top = min(y0, y1) - 0.95 * ROW_HEIGHT
            path = (
                f"M {x0:.1f} {y0:.1f} C {x0 + 70:.1f} {top:.1f} {x1 - 70:.1f} {top:.1f} "
                f"{x1:.1f} {y1:.1f}"
            )
        parts.append(
            f'<path d="{path}" fill="none" stroke="#555" stroke-width="1.2" '
            'marker-end="url(#arrow)"/>'
        )
    for node in graph.nodes:
        x, y = centre(node.label)
        lines = structure.node_caption(node).split("\n")
        parts.append(
            f'<g class="sop" data-sop="{html.escape(node.label)}">'
            f'<rect x="{x - BOX_WIDTH / 2}" y="{y - BOX_HEIGHT / 2}" width="{BOX_WIDTH}" '
            f'height="{BOX_HEIGHT}" rx="8" fill="{FILL.get(node.encoding, "#eee")}" '
            'stroke="#333"/>'
        )
        for i, line in enumerate(lines):
            weight = ' font-weight="bold"' if i == 0 else ""
            parts.append(
                f'<text x="{x}" y="{y - 12 + 14 * i}" text-anchor="middle" '
                f'font-size="{12 if i == 0 else 10}"{weight}>{html.escape(line)}</text>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)
