"""The plots show what they say: labels, values, curves."""

from __future__ import annotations

import numpy as np
import pytest

from tests.compress import helpers
from tracr import compress
from tracr.compress import compressed_model, plots


def _cm():
    W = np.arange(20, dtype=float).reshape(2, 10) % 7 - 3
    return compressed_model.CompressedModel(helpers.frac_prevs(), W)


def test_heatmap_is_labelled_by_residual_labels_and_shows_the_gram_matrix():
    cm = _cm()
    fig = plots.plot_embedding_gram(cm)
    ax = fig.axes[0]
    labels = cm.residual_labels
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
    shown = ax.get_images()[0].get_array()
    np.testing.assert_allclose(shown, cm.W.T @ cm.W, rtol=1e-6)
    assert "d = 2 of 10" in ax.get_title()


def test_normalised_heatmap_shows_cosines():
    fig = plots.plot_embedding_gram(_cm(), normalise=True)
    shown = np.asarray(fig.axes[0].get_images()[0].get_array())
    np.testing.assert_allclose(np.diag(shown), 1.0, rtol=1e-6)
    assert "cosines" in fig.axes[0].get_title()


def test_history_plot_shows_the_recorded_curves():
    cm = compress.compress(helpers.frac_prevs(), 6, max_steps=20, eval_every=10)
    fig = plots.plot_history(cm)
    loss_ax, faith_ax = fig.axes
    step_line = loss_ax.get_lines()[0]
    assert list(step_line.get_ydata()) == cm.history.step_loss
    assert list(faith_ax.get_lines()[0].get_xdata()) == [0, 10, 20]
    assert list(faith_ax.get_lines()[0].get_ydata()) == cm.history.eval_faithfulness


def test_sweep_table_and_plot_show_accuracy_against_d():
    result = compress.sweep(helpers.frac_prevs(), [9, 4], max_steps=10, eval_every=10)
    assert result.dims == [9, 4]
    accuracy = result.output_accuracy()
    assert accuracy[9] == 1.0  # the PCA start is exact at d = 9 (see test_training)
    assert result.smallest(0.99) == 9
    table = result.table().splitlines()
    assert table[0] == "d_model = 10"
    assert table[1].split()[:2] == ["d", "output"]
    assert [row.split()[0] for row in table[2:]] == ["4", "9"]
    fig = result.plot()
    output_line = fig.axes[0].get_lines()[0]
    assert list(output_line.get_xdata()) == [4, 9]
    assert list(output_line.get_ydata()) == [accuracy[4], accuracy[9]]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()][0] == "output"


def test_missing_extras_are_named(monkeypatch):
    """Without matplotlib or torch, the error says which extra to install."""
    import sys

    from tracr.compress import torch_forward
    from tracr.plot import figures

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'tracr\[plot\]'"):
        figures.new_figure(1.0, 1.0)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pip install 'tracr\[torch\]'"):
        torch_forward.import_torch()
