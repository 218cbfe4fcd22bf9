"""tracr.export.save / load: a bit-exact round trip, and clear errors for bad files."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import numpy as np
import pytest
from safetensors import numpy as st_numpy

from tests.export import programs
from tracr import export
from tracr.compiler import compiling, lib
from tracr.export import files
from tracr.rasp import rasp


@pytest.mark.parametrize("name", programs.NAMES)
def test_round_trip_is_bit_exact(name, tmp_path):
    _, model, _, _ = programs.compiled(name)
    path = tmp_path / "model.safetensors"
    export.save(model, path)
    loaded = export.load(path)
    assert loaded.params.keys() == model.params.keys()
    for module, arrays in model.params.items():
        for key, array in arrays.items():
            got = loaded.params[module][key]
            assert got.dtype == array.dtype and np.array_equal(got, array), (module, key)
    assert loaded.residual_labels == model.residual_labels
    assert loaded.model_config == model.model_config
    assert loaded.circuit == model.circuit
    assert loaded.input_encoder.encoding_map == model.input_encoder.encoding_map
    seqs = programs.inputs(name, 4)[-3:]
    out, ref = loaded.apply_batch(seqs), model.apply_batch(seqs)
    assert out.decoded == ref.decoded
    for got, want in zip(out.residuals, ref.residuals):
        np.testing.assert_array_equal(got, want)


def test_loaded_model_keeps_the_input_checks(tmp_path):
    model = programs.compiled("reverse")[1]
    export.save(model, tmp_path / "m.safetensors")
    loaded = export.load(tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="not in the vocab"):
        loaded.apply(["BOS", "z"])
    with pytest.raises(ValueError, match="more than"):
        loaded.apply(["BOS", *"abcdab"])


def test_numerical_and_causal_models_round_trip(tmp_path):
    model = compiling.compile_rasp_to_model(
        lib.make_frac_prevs(rasp.tokens == "a"), {"a", "b"}, 5, causal=True, compiler_bos="BOS"
    )
    export.save(model, tmp_path / "m.safetensors")
    loaded = export.load(tmp_path / "m.safetensors")
    assert loaded.model_config.causal
    tokens = ["BOS", "a", "b", "b", "a"]
    assert loaded.apply(tokens).decoded == model.apply(tokens).decoded
    assert programs.same_outputs([loaded.apply(tokens).decoded], [["BOS", 1, 0.5, 1 / 3, 0.5]])


def _saved(tmp_path, name="reverse"):
    path = tmp_path / "model.safetensors"
    export.save(programs.compiled(name)[1], path)
    return path


def test_truncated_file_is_refused(tmp_path):
    path = _saved(tmp_path)
    data = path.read_bytes()
    for cut in (4, 200, len(data) - 10):
        path.write_bytes(data[:cut])
        with pytest.raises(files.ModelFileError, match=str(path)):
            export.load(path)


def test_corrupt_header_is_refused(tmp_path):
    path = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[8:20] = b"#" * 12
    path.write_bytes(bytes(data))
    with pytest.raises(files.ModelFileError, match="corrupt safetensors header"):
        export.load(path)


def test_foreign_safetensors_file_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    st_numpy.save_file({"weight": np.zeros((2, 2), dtype=np.float32)}, str(path))
    with pytest.raises(files.ModelFileError, match="not a tracr model"):
        export.load(path)


def test_a_file_that_is_no_safetensors_file_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not a model")
    with pytest.raises(files.ModelFileError, match="notes.txt"):
        export.load(path)
    with pytest.raises(files.ModelFileError, match="cannot read"):
        export.load(tmp_path / "missing.safetensors")


def _rewrite_metadata(path, change):
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    meta = json.loads(header["__metadata__"]["tracr"])
    change(meta)
    tensors = st_numpy.load(data)
    st_numpy.save_file(tensors, str(path), metadata={"tracr": json.dumps(meta)})


def test_newer_format_version_is_refused(tmp_path):
    path = _saved(tmp_path)
    _rewrite_metadata(path, lambda meta: meta.update(format_version=files.FORMAT_VERSION + 1))
    with pytest.raises(files.ModelFileError, match="format version 2.*upgrade tracr"):
        export.load(path)


def test_missing_tensor_is_refused(tmp_path):
    path = _saved(tmp_path)
    tensors = st_numpy.load(path.read_bytes())
    meta = json.loads(st_numpy.safe_open(str(path), "np").metadata()["tracr"])
    meta["config"]["num_layers"] += 1
    st_numpy.save_file(tensors, str(path), metadata={"tracr": json.dumps(meta)})
    with pytest.raises(files.ModelFileError, match="missing.*transformer/layer_"):
        export.load(path)


def test_token_without_json_form_is_refused(tmp_path):
    model = compiling.compile_rasp_to_model(
        lib.make_length(), vocab={(1, 2), (3, 4)}, max_seq_len=3, compiler_bos="BOS"
    )
    path = tmp_path / "tuples.safetensors"
    with pytest.raises(files.ModelFileError, match=r"tuples.safetensors.*\(1, 2\).*tuple"):
        export.save(model, path)
    assert not path.exists()


def test_metadata_is_json_with_a_format_version(tmp_path):
    path = _saved(tmp_path, "sort_freq")
    meta = json.loads(st_numpy.safe_open(str(path), "np").metadata()["tracr"])
    assert meta["format"] == "tracr-model" and meta["format_version"] == 1
    assert meta["input_encoder"]["bos_token"] == "BOS"
    assert meta["output_encoder"] == {"kind": "categorical", "values": [1, 2, 3, 4]}
    assert meta["circuit"]["output"] == programs.compiled("sort_freq")[1].circuit.output


def test_save_and_load_need_only_numpy(tmp_path):
    path = _saved(tmp_path)
    code = (
        "import sys; from tracr import export; "
        f"m = export.load({str(path)!r}); "
        "assert m.apply(['BOS', 'a', 'b']).decoded == ['BOS', 'b', 'a']; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_missing_extra_is_named():
    with pytest.raises(ImportError, match=r"pip install 'tracr\[torch\]'"):
        export.require("tracr_no_such_module", "torch")


def test_import_tracr_export_imports_no_framework():
    code = (
        "import sys, tracr, tracr.export, tracr.compiler.compiling; "
        "assert not {'torch', 'safetensors', 'transformer_lens'} & set(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
