"""Pictures of a compiled model (extra `plot`: pip install 'tracr[plot]').

Each function returns a matplotlib Figure:

- `residual_stream(model, tokens)`: positions x residual labels at every stage, by SOp;
- `layer_outputs(model, tokens)`: what each attention and MLP block writes;
- `attention(model, tokens)`: the pattern of every head of every layer;
- `mlp_activations(model, tokens)`: the hidden units of every MLP;
- `program_graph(model, program=None)`: the SOps laid out by the layer computing them.

`tracr.plot.structure` holds the numpy analysis behind them (no matplotlib needed).
matplotlib is imported when a figure is made, not when this package is imported.
"""

from tracr.plot.figures import (
    attention,
    layer_outputs,
    mlp_activations,
    program_graph,
    residual_stream,
)

__all__ = ["attention", "layer_outputs", "mlp_activations", "program_graph", "residual_stream"]
