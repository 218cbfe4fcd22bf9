"""Pictures of a compression (extra `plot`, matplotlib). Each returns a Figure.

Figures are made with `matplotlib.figure.Figure`, not pyplot: no backend or global
state is touched; save them with `fig.savefig(path)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tracr.plot import figures

if TYPE_CHECKING:
    from tracr.compress.compressed_model import CompressedModel
    from tracr.compress.sweep import SweepResult


def _figure(ax, size):
    """(figure, axes): those of `ax`, or a new figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    fig = figures.new_figure(*size)
    return fig, fig.add_subplot()


def plot_embedding_gram(cm: CompressedModel, *, normalise: bool = False, ax=None):
    """Heatmap of Wᵀ W: the dot products (cosines if `normalise`) between the embedding
    vectors of the residual directions, labelled by residual label."""
    gram = cm.embedding_gram(normalise=normalise)
    labels = cm.residual_labels
    size = max(4.0, 0.35 * len(labels) + 2)
    fig, ax = _figure(ax, (size + 1, size))
    limit = max(float(np.abs(gram).max()), 1e-12)
    image = ax.imshow(gram, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    kind = "cosines" if normalise else "dot products"
    ax.set_title(f"embedding {kind} (WᵀW), d = {cm.d} of {cm.d_model}")
    fig.colorbar(image, ax=ax)
    return fig


def plot_history(cm: CompressedModel):
    """Training loss (per step and held out) and held-out faithfulness against step."""
    history = cm.history
    if history is None:
        raise ValueError("this compressed model has no training history to plot")
    fig = figures.new_figure(9, 3.5)
    loss_ax, faith_ax = fig.subplots(1, 2)
    loss_ax.plot(range(1, len(history.step_loss) + 1), history.step_loss, label="training batch")
    loss_ax.plot(history.eval_steps, history.eval_loss, "o-", label="held out")
    loss_ax.set_yscale("log")
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("loss")
    loss_ax.legend()
    faith_ax.plot(history.eval_steps, history.eval_faithfulness, "o-")
    faith_ax.set_ylim(-0.02, 1.02)
    faith_ax.set_xlabel("step")
    faith_ax.set_ylabel("held-out faithfulness")
    return fig


def plot_sweep(result: SweepResult, ax=None):
    """Output accuracy (and each SOp's) against the compressed width d."""
    fig, ax = _figure(ax, (6, 4))
    dims = sorted(result.models)
    reports = [result.models[d].report for d in dims]
    ax.plot(dims, [r.output_accuracy for r in reports], "o-", linewidth=2.5, label="output")
    for sop in reports[0].sop_accuracy:
        ax.plot(dims, [r.sop_accuracy[sop] for r in reports], ".--", label=sop)
    ax.set_xticks(dims)
    ax.set_xlabel("compressed width d")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"faithfulness against d (d_model = {result.d_model})")
    ax.legend()
    return fig
