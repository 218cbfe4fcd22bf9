"""A compressed model in the exports: one .safetensors file with its W, and PyTorch."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors import numpy as st_numpy

from tests.compress import helpers
from tracr import export
from tracr.compiler import assemble
from tracr.compress import compressed_model
from tracr.export import files

NAMES = ["frac_prevs", "reverse"]

# Torch against numpy, both float32, on the compressed model: the same function in
# another summation order. Each float32 operation rounds to 6e-8 relative; the outputs
# and residual entries stay below 2 and each is a sum of tens of rounded terms, so the
# two differ by a few 1e-6 (1.9e-6 measured). 1e-4 leaves a margin of 50 and is 100
# times below scoring.ATOL, the distance at which a compressed number counts as wrong.
TORCH_TOLERANCE = 1e-4


def _saved(tmp_path, cm, name="cm.safetensors"):
    path = tmp_path / name
    export.save(cm, path)
    return path


def _metadata(path) -> dict:
    return json.loads(st_numpy.safe_open(str(path), "np").metadata()["tracr"])


def _rewrite(path, change_meta=lambda meta: None, change_tensors=lambda tensors: None):
    """Rewrites the file at `path` with its metadata and tensors changed in place."""
    meta = _metadata(path)
    tensors = st_numpy.load(path.read_bytes())
    change_meta(meta)
    change_tensors(tensors)
    st_numpy.save_file(tensors, str(path), metadata={"tracr": json.dumps(meta)})


@pytest.mark.parametrize("layout", [True, False], ids=["through_W", "folded"])
@pytest.mark.parametrize("name", NAMES)
def test_a_compressed_model_round_trips_bit_for_bit(tmp_path, name, layout):
    cm = helpers.trained(name, unembed_at_every_layer=layout)
    loaded = export.load(_saved(tmp_path, cm))
    assert isinstance(loaded, compressed_model.CompressedModel)
    assert loaded.W.dtype == cm.W.dtype and np.array_equal(loaded.W, cm.W)
    assert loaded.unembed_at_every_layer is layout
    assert dataclasses.asdict(loaded.history) == dataclasses.asdict(cm.history)
    assert loaded.report == cm.report
    assert loaded.residual_labels == cm.residual_labels
    assert loaded.model.circuit == cm.model.circuit
    sequences = helpers.every_input(helpers.vocab(cm.model), 3)
    got, want = loaded.apply_batch(sequences), cm.apply_batch(sequences)
    assert got.decoded == want.decoded
    np.testing.assert_array_equal(got.transformer_output, want.transformer_output)
    for a, b in zip(got.residuals, want.residuals):
        np.testing.assert_array_equal(a, b)


def test_the_file_is_the_compiled_model_plus_W_and_a_compressed_entry(tmp_path):
    cm = helpers.trained("reverse")
    path = _saved(tmp_path, cm)
    meta = _metadata(path)
    assert meta["format"] == "tracr-model" and meta["format_version"] == 1
    assert meta["model_kind"] == "compressed"
    assert meta["residual_labels"] == cm.model.residual_labels  # the compiled model's
    entry = meta["compressed"]
    assert entry["d"] == cm.d and entry["unembed_at_every_layer"] is True
    assert entry["history"]["eval_steps"] == cm.history.eval_steps
    assert entry["report"]["sop_accuracy"] == cm.report.sop_accuracy
    tensors = st_numpy.load(path.read_bytes())
    assert tensors[files.W_TENSOR].shape == (cm.d, cm.d_model)
    compiled_file = tmp_path / "compiled.safetensors"
    export.save(cm.model, compiled_file)
    assert set(tensors) - set(st_numpy.load(compiled_file.read_bytes())) == {files.W_TENSOR}
    # The compiled model's file is unchanged by all this: it still loads as one.
    assert _metadata(compiled_file)["model_kind"] == "assembled"
    assert isinstance(export.load(compiled_file), assemble.AssembledTransformerModel)


def test_records_keep_numpy_scalars_and_non_finite_floats(tmp_path):
    model = helpers.frac_prevs()
    history = compressed_model.TrainingHistory(
        step_loss=[np.float32(0.25), math.inf],
        eval_steps=[np.int64(0)],
        eval_loss=[math.nan],
        eval_faithfulness=[1.0],
        best_step=np.int64(0),
    )
    cm = compressed_model.CompressedModel(model, np.eye(10)[:8], history=history)
    loaded = export.load(_saved(tmp_path, cm))
    h = loaded.history
    assert h.step_loss == [0.25, math.inf] and type(h.step_loss[0]) is float
    assert h.eval_steps == [0] and type(h.eval_steps[0]) is int
    assert math.isnan(h.eval_loss[0]) and h.best_step == 0 and h.device == "cpu"
    assert loaded.report is None


def test_a_record_that_has_no_json_form_is_refused(tmp_path):
    model = helpers.frac_prevs()
    history = compressed_model.TrainingHistory(step_loss=[(1.0, 2.0)])
    cm = compressed_model.CompressedModel(model, np.eye(10)[:8], history=history)
    with pytest.raises(files.ModelFileError, match=r"'step_loss' holds \(1.0, 2.0\) \(tuple\)"):
        export.save(cm, tmp_path / "m.safetensors")


def test_saving_something_else_names_its_type(tmp_path):
    with pytest.raises(TypeError, match="AssembledTransformerModel or a CompressedModel, got dict"):
        export.save({"W": np.zeros(3)}, tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()


def test_a_file_without_W_is_refused(tmp_path):
    path = _saved(tmp_path, helpers.trained("reverse"))
    _rewrite(path, change_tensors=lambda tensors: tensors.pop(files.W_TENSOR))
    with pytest.raises(files.ModelFileError, match="without its tensor 'compressed/W'"):
        export.load(path)


def test_a_W_of_the_wrong_shape_is_refused(tmp_path):
    cm = helpers.trained("reverse")
    path = _saved(tmp_path, cm)
    _rewrite(path, change_tensors=lambda t: t.update({files.W_TENSOR: t[files.W_TENSOR][:, 1:]}))
    wanted = rf"shape \[{cm.d}, {cm.d_model - 1}\], expected \[d, d_model\] = \[{cm.d}, "
    with pytest.raises(files.ModelFileError, match=wanted):
        export.load(path)


def test_a_file_without_the_compressed_entry_is_refused(tmp_path):
    path = _saved(tmp_path, helpers.trained("reverse"))
    _rewrite(path, change_meta=lambda meta: meta.pop("compressed"))
    with pytest.raises(files.ModelFileError, match="without its 'compressed' metadata"):
        export.load(path)


def test_an_unknown_model_kind_is_refused_by_name(tmp_path):
    """What a reader that predates a kind does: it names the kind and loads nothing."""
    path = _saved(tmp_path, helpers.trained("reverse"))
    _rewrite(path, change_meta=lambda meta: meta.update(model_kind="sparse"))
    with pytest.raises(files.ModelFileError, match="kind 'sparse'; this tracr loads 'assembled'"):
        export.load(path)


def test_loading_a_compressed_model_needs_only_numpy(tmp_path):
    path = _saved(tmp_path, helpers.trained("reverse"))
    code = (
        "import sys; from tracr import export; "
        f"cm = export.load({str(path)!r}); "
        "assert cm.apply(['BOS', 1, 2]).decoded == ['BOS', 2, 1]; "
        "assert type(cm).__name__ == 'CompressedModel'; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", NAMES)
def test_torch_computes_the_compressed_model(name):
    cm = helpers.trained(name)
    sequences = helpers.every_input(helpers.vocab(cm.model), 3)
    net = export.to_torch(cm)
    assert net.W_E.shape[1] == cm.d  # the stream is d wide
    ids, mask = net.encode(sequences)
    with torch.no_grad():
        out = net(ids, mask, return_activations=True)
    want = cm.forward(ids.numpy(), mask.numpy())  # the numpy compressed forward, read-through
    real = mask.numpy()
    residual = out.residual.numpy().astype(np.float64)
    assert np.abs(residual - want.residuals[-1])[real].max() <= TORCH_TOLERANCE
    unembed = cm.model.get_compiled_model().unembed_matrix
    logits = out.logits.numpy().astype(np.float64)  # [B, T, V]: r W U
    assert np.abs(logits - want.output @ unembed)[real].max() <= TORCH_TOLERANCE
    decoded = net.decode(out.logits, mask)
    expected = cm.apply_batch(sequences).decoded
    if name == "reverse":
        assert decoded == expected
    else:
        assert all(
            a == b or abs(a - b) <= TORCH_TOLERANCE
            for row, want_row in zip(decoded, expected)
            for a, b in zip(row, want_row)
        )
