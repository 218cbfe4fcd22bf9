"""Save and load a CompressedModel: a .npz file (numpy only) or a .safetensors file.

Both hold the same thing: the metadata and tensors of `tracr.export`'s model file
(`tracr.export.files.contents`, model_kind "compressed"): the compiled model with its
config, encoders, residual labels, one-hot tolerances and circuit, plus W, the training
history and the held-out report, so that a loaded model applies without the RASP program.

`save` writes a `.safetensors` file when the path ends in `.safetensors` (extra `export`),
which `tracr.export.load`, the `tracr` command and other safetensors readers open too. Any
other path gets a .npz file, which needs nothing but numpy: the tensors under their file
names and the metadata as JSON under "metadata". Nothing is pickled (`np.load` runs with
allow_pickle=False). `load` tells the two apart by their first bytes (a .npz file is a zip
archive), whatever the file is called. It also reads the first .npz layout
("tracr.compress/1"), which kept less of the compiled model (see `_load_npz_v1`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from tracr.compiler import assembled_model
from tracr.compress import compressed_model as cm_lib
from tracr.compress import scoring
from tracr.craft import bases
from tracr.transformer import encoder
from tracr.transformer import model as model_lib

SAFETENSORS_SUFFIX = ".safetensors"
_ZIP_MAGIC = b"PK"  # every zip archive, hence every .npz file, starts with these bytes
_METADATA = "metadata"  # the .npz entry holding the metadata JSON
_FORMAT_V1 = "tracr.compress/1"


def save(cm: cm_lib.CompressedModel, path: str | os.PathLike) -> None:
    """Writes `cm` to `path`: a .safetensors file where the name ends in `.safetensors`
    (through `tracr.export.save`), otherwise a .npz file."""
    if not isinstance(cm, cm_lib.CompressedModel):
        raise TypeError(f"tracr.compress.save expects a CompressedModel, got {type(cm).__name__}")
    if os.fspath(path).endswith(SAFETENSORS_SUFFIX):
        from tracr import export

        export.save(cm, path)
        return
    from tracr.export import files

    meta, tensors = files.contents(cm, path)
    with open(path, "wb") as f:
        np.savez(f, **{_METADATA: np.asarray(json.dumps(meta, allow_nan=False))}, **tensors)


def load(path: str | os.PathLike) -> cm_lib.CompressedModel:
    """Reads a CompressedModel written by `save`, from a .npz or a .safetensors file."""
    with open(path, "rb") as f:
        start = f.read(9)
    if start.startswith(_ZIP_MAGIC):
        return _load_npz(path)
    # A safetensors file: an 8-byte header length, then the JSON header.
    if len(start) == 9 and start[8:9] == b"{":
        return _load_safetensors(path)
    raise ValueError(
        f"{path} is neither a .npz nor a .safetensors file written by tracr.compress.save "
        f"(it starts with the bytes {start!r})"
    )


def _compressed(loaded: Any, path: Any) -> cm_lib.CompressedModel:
    if not isinstance(loaded, cm_lib.CompressedModel):
        raise ValueError(
            f"{path} holds a compiled model, not a compressed one: tracr.export.load reads "
            "it, and tracr.compress.compress(model, d) compresses it"
        )
    return loaded


def _load_safetensors(path: str | os.PathLike) -> cm_lib.CompressedModel:
    from tracr import export

    return _compressed(export.load(path), path)


def _load_npz(path: str | os.PathLike) -> cm_lib.CompressedModel:
    from tracr.export import files

    with np.load(path, allow_pickle=False) as data:
        if _METADATA not in data.files:
            raise ValueError(f"{path} is not a tracr.compress file: it has no metadata")
        try:
            meta = json.loads(str(data[_METADATA]))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: corrupt tracr.compress metadata ({err})") from err
        arrays = {k: data[k] for k in data.files if k != _METADATA}
    if isinstance(meta, dict) and meta.get("format") == _FORMAT_V1:
        return _load_npz_v1(meta, arrays)
    return _compressed(files.from_contents(files.check_metadata(meta, path), arrays, path), path)


def _load_npz_v1(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> cm_lib.CompressedModel:
    """A .npz file of the first layout: params under "params/<module>/<name>", W and
    unembed, and tokens and values as [type name, value] pairs. It kept no one-hot
    tolerances and no circuit: the loaded model checks one-hots at the default tolerance."""
    params: assembled_model.Params = {}
    for key, value in arrays.items():
        if key.startswith("params/"):
            name, _, leaf = key[len("params/") :].rpartition("/")
            params.setdefault(name, {})[leaf] = value
    enc = meta["input_encoder"]
    input_encoder = encoder.CategoricalEncoder(
        basis=[bases.BasisDirection("tokens", _unvalue(v)) for v in enc["values"]],
        enforce_bos=True,
        bos_token=_unvalue(enc["bos"]),
        pad_token=_unvalue(enc["pad"]),
        max_seq_len=enc["max_seq_len"],
    )
    categorical = meta["output_values"] is not None
    if categorical:
        values = [bases.BasisDirection("output", _unvalue(v)) for v in meta["output_values"]]
        output_encoder: encoder.Encoder = encoder.CategoricalEncoder(basis=values)
    else:
        output_encoder = encoder.NumericalEncoder()
    base = assembled_model.build_model(
        params=params,
        config=model_lib.TransformerConfig(**meta["config"]),
        unembed=arrays["unembed"],
        categorical_output=categorical,
        input_encoder=input_encoder,
        output_encoder=output_encoder,
        residual_labels=meta["residual_labels"],
        categorical_sops={k: np.asarray(v) for k, v in meta["categorical_sops"].items()},
    )
    history = meta["history"] and cm_lib.TrainingHistory(**meta["history"])
    report = meta["report"] and scoring.FaithfulnessReport(**meta["report"])
    return cm_lib.CompressedModel(
        base, arrays["W"], meta["unembed_at_every_layer"], history or None, report or None
    )


_TYPES = {"none": type(None), "bool": bool, "int": int, "float": float, "str": str}


def _unvalue(pair: list) -> Any:
    name, value = pair
    return None if name == "none" else _TYPES[name](value)
