"""The example notebook runs from top to bottom in a fresh kernel, and shows its figures."""

from __future__ import annotations

import os
import pathlib

# jupyter_core warns (DeprecationWarning) about its old data paths unless told which to use.
os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

NOTEBOOK = pathlib.Path(__file__).parent.parent / "examples" / "visualize_tracr_models.ipynb"


def test_notebook_executes_and_shows_its_figures(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    texts = [
        "".join(
            o.get("text", "")
            for o in cell.outputs
            if o.output_type == "stream" and o.get("name") == "stdout"
        )
        for cell in code
    ]
    assert "['BOS', 1, 2, 3, 4]" in texts[1]
    figures = [
        cell
        for cell in code
        if cell.source.lstrip().startswith("plot.") or "\nplot." in cell.source
    ]
    assert len(figures) == 6
    for cell in figures:
        assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source
    assert any("1364 inputs: 1364 agree, 0 mismatches" in text for text in texts)
    # saved, loaded and exported to TransformerLens: the same output three times
    assert "['BOS', 1, 2, 3, 4]\n[['BOS', 1, 2, 3, 4]]" in "".join(texts)
    # compressed to 19 of 23 dimensions, still faithful on held-out inputs
    assert "d = 19 of 23: held-out faithfulness 100%" in "".join(texts)
    assert texts[-1].strip() == "sort_unique.html True"
