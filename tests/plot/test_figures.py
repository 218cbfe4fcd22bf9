"""tracr.plot figures show the model's own numbers, labelled with tokens and residual labels."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from tests.plot import programs
from tracr import plot


def _panels(fig):
    """The axes that hold a heatmap (colorbars left out), top to bottom."""
    return [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts + [ax.title]]


def _ticks(labels) -> list[str]:
    return [t.get_text() for t in labels]


def test_importing_tracr_plot_does_not_import_matplotlib():
    code = (
        "import sys, tracr, tracr.plot, tracr.reporting, tracr.cli, tracr.verifying\n"
        "print(sorted(m for m in ('matplotlib', 'tqdm', 'playwright') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_residual_stream_shows_every_stage_with_labels():
    _, model, names = programs.compiled()
    out = model.apply(programs.INPUT)
    fig = plot.residual_stream(model, programs.INPUT)
    panels = _panels(fig)
    assert [ax.get_title(loc="left") for ax in panels] == [
        "embedding",
        "residual after layer 0 attn",
        "residual after layer 0 mlp",
        "residual after layer 1 attn",
        "residual after layer 1 mlp",
    ]
    expected = [out.input_embeddings[0]] + [r[0] for r in out.residuals]
    for ax, data in zip(panels, expected):
        np.testing.assert_array_equal(ax.images[0].get_array(), data)
        assert _ticks(ax.get_yticklabels()) == ["BOS", "2", "4", "3", "1"]
    # the residual labels under the last panel (the panels share their columns)
    assert _ticks(panels[-1].get_xticklabels()) == model.residual_labels
    # the SOps with several dimensions are named above their columns
    assert {names["sort"], names["target_pos"], "tokens", "indices"} <= set(_texts(fig))
    # the last panel holds the sorted tokens in the sort columns: row i is one-hot at i
    sort_cols = [i for i, lbl in enumerate(model.residual_labels) if lbl.startswith(names["sort"])]
    np.testing.assert_allclose(expected[-1][1:, sort_cols], np.eye(4), atol=1e-5)


def test_layer_outputs_show_what_each_block_writes():
    _, model, _ = programs.compiled()
    out = model.apply(programs.INPUT)
    panels = _panels(plot.layer_outputs(model, programs.INPUT))
    assert len(panels) == 4
    assert panels[3].get_title(loc="left") == "output of layer 1 mlp"
    np.testing.assert_array_equal(panels[2].images[0].get_array(), out.layer_outputs[2][0])
    assert not np.any(out.layer_outputs[3])  # layer 1 has an empty MLP


def test_attention_shows_each_head_with_query_and_key_tokens():
    _, model, names = programs.compiled()
    fig = plot.attention(model, programs.INPUT)
    panels = _panels(fig)
    assert [ax.get_title() for ax in panels] == [
        f"layer 0 head 0: {names['target_pos']}",
        f"layer 1 head 0: {names['sort']}",
    ]
    for ax in panels:
        pattern = np.asarray(ax.images[0].get_array())
        np.testing.assert_allclose(pattern.sum(axis=1), 1, rtol=1e-6)
        assert _ticks(ax.get_xticklabels()) == ["BOS", "2", "4", "3", "1"]
        assert _ticks(ax.get_yticklabels()) == ["BOS", "2", "4", "3", "1"]
    # layer 1 moves the token with k smaller tokens to index k: query 1 (index 0) reads
    # key 4 (token 1), query 2 reads key 1 (token 2), query 3 key 3, query 4 key 2.
    moved = np.asarray(panels[1].images[0].get_array())
    assert [int(np.argmax(row)) for row in moved[1:]] == [4, 1, 3, 2]
    assert moved[1, 4] > 0.999
    # layer 0 (counting smaller tokens) spreads the query of token 2 over BOS and token 1
    counting = np.asarray(panels[0].images[0].get_array())
    # (the SelectorWidth head is soft: a little weight leaks to the other keys)
    np.testing.assert_allclose(counting[1], [0.5, 0, 0, 0, 0.5], atol=0.01)
    assert counting[1, 0] == counting[1, 4]
    assert "0.50" in _texts(fig)


def test_mlp_activations_per_layer():
    _, model, names = programs.compiled()
    out = model.apply(programs.INPUT)
    fig = plot.mlp_activations(model, programs.INPUT)
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert titles == ["layer 0 mlp", "layer 1 mlp"]
    assert "no hidden units in use" in _texts(fig)
    assert names["target_pos"] in _texts(fig)
    (panel,) = _panels(fig)
    hidden = np.asarray(panel.images[0].get_array())
    first = model.params["transformer/layer_0/mlp/linear_1"]
    expected = np.maximum(out.residuals[0][0] @ first["w"] + first["b"], 0)
    np.testing.assert_allclose(hidden, expected[:, : hidden.shape[1]], rtol=1e-6)
    assert np.all(hidden >= 0) and np.any(hidden > 0)


def test_program_graph_lays_sops_out_by_layer():
    program, model, names = programs.compiled()
    fig = plot.program_graph(model, program)
    texts = _texts(fig)
    for stage in ("embedding", "layer 0 attn", "layer 0 mlp", "layer 1 attn", "layer 1 mlp"):
        assert stage in texts
    assert f"{names['sort']}\ncategorical, 5 values\nL1 attn head 0" in texts
    assert "tokens\ncategorical, 4 values\ninput embedding" in texts
    target = [t for t in texts if t.startswith(names["target_pos"] + "\n")]
    assert len(target) == 1 and "L0 attn head 0 + L0 mlp units" in target[0]
    arrows = [c for ax in fig.axes for c in ax.texts if getattr(c, "arrow_patch", None)]
    assert len(arrows) == 4  # tokens->target_pos, tokens/indices/target_pos->sort


def test_a_figure_is_not_kept_by_pyplot():
    _, model, _ = programs.compiled()
    from matplotlib import pyplot as plt

    before = plt.get_fignums()
    plot.attention(model, programs.INPUT)
    assert plt.get_fignums() == before


def test_causal_attention_never_looks_ahead():
    from tracr.compiler import compiling, lib
    from tracr.rasp import rasp

    program = lib.make_frac_prevs(rasp.tokens == "x")
    model = compiling.compile_rasp_to_model(
        program, vocab={"x", "y"}, max_seq_len=5, causal=True, compiler_bos="BOS"
    )
    panels = _panels(plot.attention(model, ["BOS", "x", "y", "x"]))
    assert panels[1].get_title() == f"layer 1 head 0: {program.label}"
    pattern = np.asarray(panels[1].images[0].get_array())
    assert np.all(np.triu(pattern, k=1) == 0)
    # frac_prevs averages over the prefix: query 3 spreads evenly over keys 1..3
    np.testing.assert_allclose(pattern[3], [0, 1 / 3, 1 / 3, 1 / 3], atol=1e-6)


def test_bos_is_added_where_missing():
    _, model, _ = programs.compiled()
    with_bos = _panels(plot.residual_stream(model, programs.INPUT))
    without = _panels(plot.residual_stream(model, programs.INPUT[1:]))
    assert _ticks(without[0].get_yticklabels()) == ["BOS", "2", "4", "3", "1"]
    np.testing.assert_array_equal(
        without[-1].images[0].get_array(), with_bos[-1].images[0].get_array()
    )
