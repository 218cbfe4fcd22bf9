"""save / load: a compressed model comes back whole and applies without the program."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.compress import helpers
from tracr import compress
from tracr.compress import compressed_model


@pytest.mark.parametrize("make", [helpers.frac_prevs, helpers.reverse], ids=["numerical", "cat"])
def test_a_saved_model_loads_and_computes_the_same(tmp_path, make):
    model = make()
    cm = compress.compress(model, len(model.residual_labels) - 2, max_steps=20, eval_every=10)
    path = tmp_path / "model.npz"
    compress.save(cm, path)
    loaded = compress.load(path)
    assert np.array_equal(loaded.W, cm.W)
    assert loaded.residual_labels == cm.residual_labels
    assert loaded.unembed_at_every_layer == cm.unembed_at_every_layer
    assert loaded.report == cm.report
    assert dataclasses.asdict(loaded.history) == dataclasses.asdict(cm.history)
    sequences = helpers.every_input(_vocab(model), 3)
    want, got = cm.apply_batch(sequences), loaded.apply_batch(sequences)
    assert got.decoded == want.decoded
    np.testing.assert_array_equal(got.transformer_output, want.transformer_output)
    # The compiled model inside comes back too, with its encoders and strict checks.
    assert loaded.model.apply(sequences[-1]).decoded == model.apply(sequences[-1]).decoded


def _vocab(model):
    enc = model.input_encoder
    return {t for t in enc.encoding_map if t not in (enc.bos_token, enc.pad_token)}


def test_a_model_without_history_round_trips(tmp_path):
    model = helpers.frac_prevs()
    cm = compressed_model.CompressedModel(model, np.ones((4, 10)))
    compress.save(cm, tmp_path / "m.npz")
    loaded = compress.load(tmp_path / "m.npz")
    assert loaded.history is None and loaded.report is None
    assert loaded.apply(["BOS", "x"]).decoded == cm.apply(["BOS", "x"]).decoded


def test_a_file_that_is_not_a_compressed_model_is_refused(tmp_path):
    np.savez(tmp_path / "other.npz", W=np.zeros(3))
    with pytest.raises(ValueError, match="not a tracr.compress file"):
        compress.load(tmp_path / "other.npz")
