"""Save a compiled or compressed model to one `.safetensors` file and load it back, numpy only.

The file holds the weights as tensors named `<module>/<name>` (the keys of `model.params`,
e.g. `transformer/layer_0/attn/query/w`) plus `unembed`, and, in the header's
`__metadata__` under the key "tracr", one JSON document:

    format: "tracr-model"            what the file is
    format_version: 1                bumped when a reader must change; newer files are refused
    tracr_version                    the package that wrote it
    model_kind                       which model class to rebuild: "assembled" or "compressed"
    config                           TransformerConfig fields (activation: "relu")
    input_encoder, output_encoder    the token lists in id order, BOS, PAD, max_seq_len
    residual_labels, categorical_sops, circuit

A compressed model (`tracr.compress.CompressedModel`, kind "compressed") is its compiled
model stored exactly as above, plus the tensor `compressed/W` [d, d_model] and, under the
key "compressed", `d`, `unembed_at_every_layer`, the training `history` and the held-out
`report` (the two dataclasses as JSON objects, or null; a float that is not finite is
written as the string "NaN", "Infinity" or "-Infinity").

The kind "compressed" came after version 1 and is still version 1: every version-1 file
written before it is "assembled" and reads as before, and a reader that predates it
checks `model_kind` and refuses the file, naming the kind it does not know, rather than
misreading it.

Tokens and output values must be JSON scalars (str, int, float, bool, None) so that they come
back as the same Python values; anything else is refused when saving. The round trip is
bit-exact: the tensors are stored in their own dtype.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import os
import struct
from typing import Any

import numpy as np

from tracr.compiler import assembled_model, circuit
from tracr.compress import compressed_model, scoring
from tracr.craft import bases
from tracr.transformer import encoder, model

FORMAT = "tracr-model"
FORMAT_VERSION = 1
METADATA_KEY = "tracr"
UNEMBED = "unembed"
ASSEMBLED = "assembled"
COMPRESSED = "compressed"
KINDS = (ASSEMBLED, COMPRESSED)
W_TENSOR = "compressed/W"


class ModelFileError(ValueError):
    """A file that is not a readable tracr model; the message names the file and the problem."""


def _safetensors_numpy():
    from tracr import export

    return export.require("safetensors.numpy", "export")


def _version() -> str:
    try:
        return importlib.metadata.version("tracr")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _json_value(value: Any, what: str, path: Any) -> Any:
    """`value` if JSON gives it back unchanged, else a ModelFileError."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise ModelFileError(
        f"cannot save {path}: the {what} {value!r} ({type(value).__name__}) has no exact "
        "JSON form; tokens and output values must be str, int, finite float, bool or None"
    )


def _tokens(enc: encoder.CategoricalEncoder, what: str, path: Any) -> list[Any]:
    return [_json_value(enc.decoding_map[i], what, path) for i in range(len(enc.decoding_map))]


def _metadata(m: assembled_model.AssembledTransformerModel, path: Any) -> dict[str, Any]:
    config = m.model_config
    if config.activation_function is not model.relu:
        raise ModelFileError(f"cannot save {path}: only ReLU models can be saved")
    enc = m.input_encoder
    out_enc = m.output_encoder
    if isinstance(out_enc, encoder.CategoricalEncoder):
        output = {"kind": "categorical", "values": _tokens(out_enc, "output value", path)}
    elif out_enc is None:
        output = None
    else:
        output = {"kind": "numerical"}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tracr_version": _version(),
        "model_kind": ASSEMBLED,
        "config": {
            "num_heads": config.num_heads,
            "num_layers": config.num_layers,
            "key_size": config.key_size,
            "mlp_hidden_size": config.mlp_hidden_size,
            "dropout_rate": config.dropout_rate,
            "layer_norm": config.layer_norm,
            "causal": config.causal,
            "d_model": config.d_model,
            "activation": "relu",
        },
        "input_encoder": {
            "kind": "categorical",
            "tokens": _tokens(enc, "token", path),
            "bos_token": _json_value(enc.bos_token, "BOS token", path),
            "pad_token": _json_value(enc.pad_token, "PAD token", path),
            "enforce_bos": enc.enforce_bos,
            "max_seq_len": enc.max_seq_len,
        },
        "output_encoder": output,
        "residual_labels": list(m.residual_labels),
        "categorical_sops": {k: [int(i) for i in v] for k, v in m.categorical_sops.items()},
        "mixture_tolerances": {k: float(v) for k, v in m.mixture_tolerances.items()},
        "circuit": None if m.circuit is None else m.circuit.to_json(),
    }


def save(m: Any, path: str | os.PathLike) -> None:
    """Writes the weights and the metadata of `m` (an AssembledTransformerModel or a
    CompressedModel) to the `.safetensors` file `path`."""
    st = _safetensors_numpy()
    meta, tensors = contents(m, path)
    metadata = json.dumps(meta, allow_nan=False)
    st.save_file(tensors, os.fspath(path), metadata={METADATA_KEY: metadata})


def contents(m: Any, path: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(metadata, tensors) of a model file, numpy only: what `save` writes, and what
    tracr.compress writes into a .npz file. `path` only names the file in errors."""
    if isinstance(m, compressed_model.CompressedModel):
        return _compressed_contents(m, path)
    if isinstance(m, assembled_model.AssembledTransformerModel):
        return _metadata(m, path), _tensors(m)
    raise TypeError(
        f"save expects an AssembledTransformerModel or a CompressedModel, got {type(m).__name__}"
    )


def _tensors(m: assembled_model.AssembledTransformerModel) -> dict[str, np.ndarray]:
    tensors = {
        f"{module}/{name}": np.ascontiguousarray(array)
        for module, arrays in m.params.items()
        for name, array in arrays.items()
    }
    tensors[UNEMBED] = np.ascontiguousarray(m.get_compiled_model().unembed_matrix)
    return tensors


def _compressed_contents(cm: compressed_model.CompressedModel, path: Any):
    """(metadata, tensors): the compiled model's, plus W and the "compressed" entry."""
    meta = _metadata(cm.model, path)
    meta["model_kind"] = COMPRESSED
    meta[COMPRESSED] = {
        "d": cm.d,
        "unembed_at_every_layer": bool(cm.unembed_at_every_layer),
        "history": _record(cm.history, path),
        "report": _record(cm.report, path),
    }
    tensors = _tensors(cm.model)
    tensors[W_TENSOR] = np.ascontiguousarray(cm.W)
    return meta, tensors


# JSON has no NaN or infinity; these names (Python's own) stand for them in records.
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _record(record: Any, path: Any) -> dict[str, Any] | None:
    """A TrainingHistory or FaithfulnessReport as a JSON object, every value checked to
    come back unchanged: bool, int, str, float (non-finite ones by name), and lists and
    str-keyed dicts of those."""
    if record is None:
        return None

    def plain(value: Any, where: str) -> Any:
        if isinstance(value, np.generic):  # a numpy scalar: its Python value
            value = value.item()
        if isinstance(value, float):
            if math.isfinite(value):
                return float(value)  # np.float64 is a float; JSON writes the Python one
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        if value is None or type(value) in (bool, int, str):
            return value
        if isinstance(value, list):
            return [plain(v, where) for v in value]
        if isinstance(value, dict) and all(type(k) is str for k in value):
            return {k: plain(v, where) for k, v in value.items()}
        raise ModelFileError(
            f"cannot save {path}: the {type(record).__name__} field {where!r} holds "
            f"{value!r} ({type(value).__name__}); fields must be bool, int, float, str, "
            "or lists and str-keyed dicts of them"
        )

    return {f.name: plain(getattr(record, f.name), f.name) for f in dataclasses.fields(record)}


def _unrecord(cls: type, data: dict[str, Any] | None) -> Any:
    """The dataclass `cls` from `_record`'s JSON object; float fields get their non-finite
    values back."""
    if data is None:
        return None

    def restore(value: Any) -> Any:
        if isinstance(value, str):
            return _NON_FINITE[value]
        if isinstance(value, list):
            return [restore(v) for v in value]
        if isinstance(value, dict):
            return {k: restore(v) for k, v in value.items()}
        return value

    # The annotations are strings (from __future__ import annotations): "list[float]", ...
    floats = {f.name for f in dataclasses.fields(cls) if "float" in str(f.type)}
    return cls(**{k: restore(v) if k in floats else v for k, v in data.items()})


def _read_header(data: bytes, path: Any) -> dict[str, Any]:
    if len(data) < 8:
        raise ModelFileError(f"{path}: {len(data)} bytes, too short for a safetensors file")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise ModelFileError(
            f"{path}: truncated or not a safetensors file (its header claims {size} bytes, "
            f"the file has {len(data) - 8} after the length)"
        )
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{path}: corrupt safetensors header ({err})") from err
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: corrupt safetensors header (not a JSON object)")
    return header


def _read_metadata(header: dict[str, Any], path: Any) -> dict[str, Any]:
    raw = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if raw is None:
        raise ModelFileError(
            f"{path}: a safetensors file, but not a tracr model (no {METADATA_KEY!r} entry "
            "in its metadata); write models with tracr.export.save"
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{path}: corrupt tracr metadata ({err})") from err
    return check_metadata(meta, path)


def check_metadata(meta: Any, path: Any) -> dict[str, Any]:
    """`meta` if it is the metadata of a model this tracr reads, else a ModelFileError
    naming the file and the problem (another format, a newer version, an unknown kind)."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: the metadata is not that of a {FORMAT!r} file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{path}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: written in format version {version} by tracr "
            f"{meta.get('tracr_version')}; this tracr ({_version()}) reads versions up to "
            f"{FORMAT_VERSION}: upgrade tracr"
        )
    if meta.get("model_kind") not in KINDS:
        raise ModelFileError(
            f"{path}: holds a model of kind {meta.get('model_kind')!r}; this tracr loads "
            f"{' and '.join(map(repr, KINDS))} models"
        )
    return meta


def _params(tensors: dict[str, np.ndarray], config: model.TransformerConfig, path: Any):
    expected = ["token_embed/embeddings", "pos_embed/embeddings", UNEMBED]
    for layer in range(config.num_layers):
        for part in ("attn/query", "attn/key", "attn/value", "attn/linear"):
            expected += [f"transformer/layer_{layer}/{part}/{n}" for n in ("w", "b")]
        for part in ("mlp/linear_1", "mlp/linear_2"):
            expected += [f"transformer/layer_{layer}/{part}/{n}" for n in ("w", "b")]
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ModelFileError(
            f"{path}: the tensors do not match the config (missing {missing}, unexpected {extra})"
        )
    params: assembled_model.Params = {
        "token_embed": {"embeddings": tensors["token_embed/embeddings"]},
        "pos_embed": {"embeddings": tensors["pos_embed/embeddings"]},
    }
    for key in expected[3:]:
        module, name = key.rsplit("/", 1)
        params.setdefault(module, {})[name] = tensors[key]
    return params


def load(path: str | os.PathLike) -> Any:
    """Reads a model written by `save`: an AssembledTransformerModel or a CompressedModel,
    as the file's model_kind says. Raises ModelFileError naming the file and the problem."""
    st = _safetensors_numpy()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise ModelFileError(f"{path}: cannot read the file ({err})") from err
    meta = _read_metadata(_read_header(data, path), path)
    try:
        tensors = st.load(data)
    except Exception as err:  # safetensors raises its own error types for bad files
        raise ModelFileError(f"{path}: corrupt safetensors data ({err})") from err
    return from_contents(meta, tensors, path)


def from_contents(meta: dict[str, Any], tensors: dict[str, np.ndarray], path: Any) -> Any:
    """The model of `contents`' (metadata, tensors), checked by `check_metadata`: an
    AssembledTransformerModel or a CompressedModel, as model_kind says."""
    try:
        if meta["model_kind"] == COMPRESSED:
            return _build_compressed(meta, tensors, path)
        return _build(meta, tensors, path)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: inconsistent tracr metadata ({err!r})") from err


def _build(meta: dict[str, Any], tensors: dict[str, np.ndarray], path: Any):
    c = meta["config"]
    if c["activation"] != "relu":
        raise ModelFileError(f"{path}: unknown activation {c['activation']!r}")
    config = model.TransformerConfig(
        num_heads=c["num_heads"],
        num_layers=c["num_layers"],
        key_size=c["key_size"],
        mlp_hidden_size=c["mlp_hidden_size"],
        dropout_rate=c["dropout_rate"],
        layer_norm=c["layer_norm"],
        causal=c["causal"],
        d_model=c["d_model"],
    )
    e = meta["input_encoder"]
    input_encoder = encoder.CategoricalEncoder(
        basis=[bases.BasisDirection("tokens", t) for t in e["tokens"]],
        enforce_bos=e["enforce_bos"],
        bos_token=e["bos_token"],
        pad_token=e["pad_token"],
        max_seq_len=e["max_seq_len"],
    )
    o = meta["output_encoder"]
    if o is None:
        output_encoder = None
    elif o["kind"] == "categorical":
        output_encoder = encoder.CategoricalEncoder(
            basis=[bases.BasisDirection("output", v) for v in o["values"]]
        )
    else:
        output_encoder = encoder.NumericalEncoder()
    loaded = assembled_model.build_model(
        params=_params(tensors, config, path),
        config=config,
        unembed=tensors[UNEMBED],
        categorical_output=isinstance(output_encoder, encoder.CategoricalEncoder),
        input_encoder=input_encoder,
        output_encoder=output_encoder,
        residual_labels=list(meta["residual_labels"]),
        categorical_sops={
            k: np.asarray(v, dtype=np.int64) for k, v in meta["categorical_sops"].items()
        },
        mixture_tolerances=meta.get("mixture_tolerances", {}),
    )
    if meta["circuit"] is not None:
        loaded.circuit = circuit.Circuit.from_json(meta["circuit"])
    return loaded


def _build_compressed(meta: dict[str, Any], tensors: dict[str, np.ndarray], path: Any):
    """A CompressedModel: the compiled model from every tensor but W, then W."""
    tensors = dict(tensors)
    W = tensors.pop(W_TENSOR, None)
    if W is None:
        raise ModelFileError(f"{path}: a compressed model without its tensor {W_TENSOR!r}")
    entry = meta.get(COMPRESSED)
    if not isinstance(entry, dict):
        raise ModelFileError(f"{path}: a compressed model without its {COMPRESSED!r} metadata")
    base = _build(meta, tensors, path)
    expected = (entry["d"], len(base.residual_labels))
    if W.shape != expected:
        raise ModelFileError(
            f"{path}: the tensor {W_TENSOR!r} has shape {list(W.shape)}, expected "
            f"[d, d_model] = {list(expected)}"
        )
    return compressed_model.CompressedModel(
        model=base,
        W=W,
        unembed_at_every_layer=entry["unembed_at_every_layer"],
        history=_unrecord(compressed_model.TrainingHistory, entry["history"]),
        report=_unrecord(scoring.FaithfulnessReport, entry["report"]),
    )
