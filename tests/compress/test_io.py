"""save / load: a compressed model comes back whole and applies without the program, from
a .npz file or a .safetensors one."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tests.compress import helpers
from tracr import compress, export
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


def test_compress_save_writes_safetensors_by_name_and_load_reads_by_content(tmp_path):
    cm = helpers.trained("reverse")
    compress.save(cm, tmp_path / "cm.safetensors")
    compress.save(cm, tmp_path / "cm.npz")
    assert (tmp_path / "cm.safetensors").read_bytes()[8:9] == b"{"
    assert (tmp_path / "cm.npz").read_bytes()[:2] == b"PK"
    # The names do not matter to load: each file is recognised by its first bytes.
    (tmp_path / "cm.safetensors").rename(tmp_path / "a.npz")
    (tmp_path / "cm.npz").rename(tmp_path / "b.safetensors")
    sequences = helpers.every_input(helpers.vocab(cm.model), 3)
    want = cm.apply_batch(sequences).transformer_output
    for path in (tmp_path / "a.npz", tmp_path / "b.safetensors"):
        loaded = compress.load(path)
        assert np.array_equal(loaded.W, cm.W) and loaded.report == cm.report
        np.testing.assert_array_equal(loaded.apply_batch(sequences).transformer_output, want)


def test_compress_load_refuses_a_compiled_model_and_other_files(tmp_path):
    export.save(helpers.reverse(), tmp_path / "compiled.safetensors")
    with pytest.raises(ValueError, match="holds a compiled model, not a compressed one"):
        compress.load(tmp_path / "compiled.safetensors")
    (tmp_path / "notes.txt").write_text("not a model at all")
    with pytest.raises(ValueError, match=r"notes.txt is neither a .npz nor a .safetensors file"):
        compress.load(tmp_path / "notes.txt")


def test_a_npz_file_keeps_the_one_hot_tolerances_and_the_circuit(tmp_path):
    """The .npz holds what the safetensors file holds: a loaded compiled model checks its
    one-hots at the compiler's tolerances (not the default) and knows its circuit."""
    cm = helpers.trained("reverse")
    compress.save(cm, tmp_path / "cm.npz")
    loaded = compress.load(tmp_path / "cm.npz").model
    assert loaded.mixture_tolerances == cm.model.mixture_tolerances
    assert loaded.mixture_tolerances  # the compiler sets one per categorical SOp
    assert loaded.circuit is not None and loaded.circuit.to_json() == cm.model.circuit.to_json()


def _save_v1(cm, path):
    """The first .npz layout (tracr.compress/1), as the first release wrote it."""
    base, enc = cm.model, cm.model.input_encoder

    def value(v):
        return [type(v).__name__ if v is not None else "none", v]

    by_id = [t for t, _ in sorted(enc.encoding_map.items(), key=lambda kv: kv[1])]
    out = base.output_encoder
    meta = {
        "format": "tracr.compress/1",
        "config": {
            f: getattr(base.model_config, f)
            for f in ("num_heads", "num_layers", "key_size", "mlp_hidden_size", "causal", "d_model")
        },
        "residual_labels": base.residual_labels,
        "input_encoder": {
            "values": [value(v) for v in by_id],
            "bos": value(enc.bos_token),
            "pad": value(enc.pad_token),
            "max_seq_len": enc._max_seq_len,
        },
        "output_values": [value(out.decoding_map[i]) for i in range(len(out.decoding_map))],
        "categorical_sops": {k: [int(i) for i in v] for k, v in base.categorical_sops.items()},
        "unembed_at_every_layer": cm.unembed_at_every_layer,
        "history": dataclasses.asdict(cm.history),
        "report": dataclasses.asdict(cm.report),
    }
    arrays = {"W": cm.W, "unembed": base.get_compiled_model().unembed_matrix}
    for name, group in base.params.items():
        for key, array in group.items():
            arrays[f"params/{name}/{key}"] = array
    with open(path, "wb") as f:
        np.savez(f, metadata=np.asarray(json.dumps(meta)), **arrays)


def test_a_file_of_the_first_npz_layout_still_loads(tmp_path):
    cm = helpers.trained("reverse")
    _save_v1(cm, tmp_path / "old.npz")
    loaded = compress.load(tmp_path / "old.npz")
    assert np.array_equal(loaded.W, cm.W) and loaded.report == cm.report
    sequences = helpers.every_input(helpers.vocab(cm.model), 3)
    np.testing.assert_array_equal(
        loaded.apply_batch(sequences).transformer_output,
        cm.apply_batch(sequences).transformer_output,
    )
