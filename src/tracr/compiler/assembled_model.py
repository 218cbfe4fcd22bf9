"""The runnable compiled model: `AssembledTransformerModel` and the outputs of its forward
pass, with the embedding and one-hot checks around `transformer.model`; the unembedding and
decoding it calls are in `compiler/readout.py`.

`compiler/assemble.py` builds these from a layered craft model (and re-exports every name
here, the reference's import path); loading a saved model builds them with `build_model`.
"""

from __future__ import annotations

import dataclasses
import itertools
import operator
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np

from tracr.compiler import readout
from tracr.transformer import encoder, model, sparse

Params = dict[str, dict[str, np.ndarray]]

# Reading the output (compiler/readout.py), importable from here as well.
NONE_THRESHOLD = readout.NONE_THRESHOLD
unembed = readout.unembed
read_scores = readout.read_scores
decode = readout.decode

# How far a categorical SOp's vector may be from a one-hot (or zero) vector at a real
# position before `apply` calls it a mixture: this, or twice the SOp's worst-case float32
# error bound (compiler/float_bounds.py) where that is larger.
MIXTURE_TOLERANCE = 0.01

# From this many positions in a batch, the one-hot check reduces column-major.
MANY_POSITIONS = 512


class _MappableDataclass(Mapping):
    """A dataclass that is also a read-only mapping of its fields, like the reference's chex
    dataclasses: `out["decoded"]`, `out.keys()`, `dict(out)` and `out.replace(...)` work."""

    def __getitem__(self, name: str) -> Any:
        if name not in self._names():
            raise KeyError(f"{name!r} is not a field; the fields are {self._names()}")
        return getattr(self, name)

    def __iter__(self):
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def _names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]

    def replace(self, **changes: Any):
        """A copy with the given fields replaced."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(eq=False)
class AssembledTransformerModelOutput(model.Deferred, _MappableDataclass):
    """What a forward pass returns; the reference's fields, numpy arrays, batch first.
    The embeddings, layer outputs and residuals are built when first read (see
    `model.TransformerOutput`)."""

    _DEFERRED = ("layer_outputs", "residuals", "input_embeddings")

    decoded: list[Any]  # [T], or one list per sequence from apply_batch
    unembedded: np.ndarray  # [B, T]
    layer_outputs: list[np.ndarray]  # [B, T, D]
    residuals: list[np.ndarray]  # [B, T, D]
    attn_logits: list[np.ndarray]  # [B, H, T, T]
    transformer_output: np.ndarray  # [B, T, D]
    input_embeddings: np.ndarray  # [B, T, D]


@dataclasses.dataclass
class CompiledTransformerModelOutput:
    transformer_output: model.TransformerOutput
    unembedded_output: np.ndarray  # [B, T]: argmax ids, or the numbers
    output_present: np.ndarray  # [B, T] bool: False where a categorical output is None


@dataclasses.dataclass
class CompiledTransformerModel:
    """The forward pass with its embedding and unembedding; callable on [B, T] ids."""

    params: Params
    config: model.TransformerConfig
    unembed_matrix: np.ndarray  # [D, V] residual -> output space
    use_unembed_argmax: bool
    pad_encoding: int | None = None

    def unembed(self, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`unembed` with this model's unembedding."""
        return unembed(output, self.unembed_matrix, self.use_unembed_argmax)

    def __call__(self, token_ids: np.ndarray) -> CompiledTransformerModelOutput:
        token_ids = np.asarray(token_ids)
        if self.pad_encoding is None:
            key_mask = np.ones(token_ids.shape, dtype=bool)
        else:
            key_mask = token_ids != self.pad_encoding
        out = model.forward(self.params, self.config, token_ids, key_mask)
        unembedded, present = self.unembed(out.output)
        return CompiledTransformerModelOutput(out, unembedded, present)


@dataclasses.dataclass
class AssembledTransformerModel:
    """A compiled model: weights, shape, residual labels and its encoders."""

    forward: Callable[[Params, np.ndarray], CompiledTransformerModelOutput]
    get_compiled_model: Callable[[], CompiledTransformerModel]
    params: Params
    model_config: model.TransformerConfig
    residual_labels: list[str]
    input_encoder: encoder.CategoricalEncoder | None = None
    output_encoder: encoder.Encoder | None = None
    # SOp label -> residual columns of each categorical SOp, checked by every apply.
    categorical_sops: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    # SOp label -> the one-hot check's tolerance (MIXTURE_TOLERANCE where absent).
    mixture_tolerances: dict[str, float] = dataclasses.field(default_factory=dict)
    # Which head or MLP units compute each SOp and selector (a `circuit.Circuit`).
    circuit: Any = None

    def apply(
        self, tokens: Sequence[Any], *, strict: bool = True, dtype: Any = np.float32
    ) -> AssembledTransformerModelOutput:
        """Runs one sequence (BOS first); outputs carry a batch dimension of 1.

        dtype: the arithmetic of the forward pass, numpy.float32 (the default, as exported
        models run) or numpy.float64 (more headroom; the compiler's guarantees are proven
        for float32 and hold a fortiori).

        strict: check that every categorical SOp holds a single value at every position
        and raise ValueError otherwise (see `_check_one_hot`). Pass False to run weights
        you have edited (ablations, patching), where mixtures are expected.
        """
        batch, lengths = self._encode_batch([tokens])
        out = self.forward(self._params_in(dtype), batch)
        return self._output(out, lengths, strict=strict)

    def apply_batch(
        self, sequences: Sequence[Sequence[Any]], *, strict: bool = True, dtype: Any = np.float32
    ) -> AssembledTransformerModelOutput:
        """Runs many sequences in one forward pass, padding them to a common length.

        `decoded` is one list per sequence, as long as the longest, padded positions
        decoded as the pad token; the arrays are padded too.
        `strict` as in `apply`.
        """
        if len(sequences) == 0:
            raise ValueError("apply_batch needs at least one sequence")
        batch, lengths = self._encode_batch(sequences)
        out = self.forward(self._params_in(dtype), batch)
        return self._output(out, lengths, batched=True, strict=strict)

    def freeze(self) -> AssembledTransformerModel:
        """Makes the weights read-only, so that forward passes skip the per-call check
        that finds weights edited in place; returns the model.

        Every array in `params` is replaced by a read-only copy (writing into one raises
        ValueError). Each call otherwise reads every weight once to notice edits, which
        for one sequence through a large model costs about as much as the products (the
        reference's jax arrays are immutable too). Arrays you put into `params` later are
        checked as before; `unfreeze` makes the weights writable again.
        """
        self._replace_arrays(sparse.freeze)
        return self

    def unfreeze(self) -> AssembledTransformerModel:
        """Undoes `freeze`: writable copies of the weights, checked on every call again;
        returns the model."""
        self._replace_arrays(sparse.thaw)
        return self

    @property
    def frozen(self) -> bool:
        """Whether every weight is an array `freeze` made."""
        return all(
            isinstance(a, np.ndarray) and sparse.is_frozen(a)
            for p in self.params.values()
            for a in p.values()
        )

    def _replace_arrays(self, make) -> None:
        # Everything is checked before anything is replaced: no half-frozen model.
        for name, linear in self.params.items():
            if not isinstance(linear, MutableMapping):
                raise TypeError(
                    f"params[{name!r}] must be a dict of arrays to be replaced, got "
                    f"{type(linear).__name__}"
                )
            for key, a in linear.items():
                if not isinstance(a, np.ndarray):
                    raise TypeError(
                        f"params[{name!r}][{key!r}] must be a numpy array to be replaced, "
                        f"got {type(a).__name__}"
                    )
        # In place, in the same dicts: get_compiled_model() and forward() share them.
        for linear in self.params.values():
            for key in list(linear):
                linear[key] = make(linear[key])

    def _params_in(self, dtype: Any) -> Params:
        """self.params in `dtype` (float32 or float64), cast on every call so that
        weights edited in place take effect."""
        try:
            dtype = np.dtype(dtype)
        except TypeError as err:
            raise TypeError(f"dtype must be numpy.float32 or numpy.float64, got {dtype!r}") from err
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be numpy.float32 or numpy.float64, got {dtype}")
        arrays = [a for p in self.params.values() for a in p.values()]
        if set(map(type, arrays)) == {np.ndarray} and {a.dtype for a in arrays} == {dtype}:
            return self.params
        # Weights a user replaced by other array types (lists, other libraries' arrays)
        # become numpy arrays here too.
        return {k: {n: np.asarray(a, dtype) for n, a in p.items()} for k, p in self.params.items()}

    def _encode_batch(self, sequences: Sequence[Sequence[Any]]) -> tuple[np.ndarray, list[int]]:
        """[B, T] ids, PAD-filled, and each sequence's length without its trailing PADs.

        One dictionary lookup per token and a few array checks for valid input; any
        input these checks reject goes through `_encode`, which names the problem.
        """
        enc = self.input_encoder
        batch = None
        if set(map(type, sequences)) <= {list, tuple}:
            widths = list(map(len, sequences))
            width = max(widths)
            limit = enc._max_seq_len
            if 0 < width and (limit is None or width <= limit):
                batch = self._lookup(sequences, widths, width)
        if batch is not None:
            is_bos = batch == enc.bos_encoding
            if is_bos[:, 0].all() and np.count_nonzero(is_bos) == len(batch):  # BOS first only
                is_pad = batch == enc.pad_encoding
                if not is_pad.any():
                    return batch, [width] * len(batch)
                if not (is_pad[:, :-1] & ~is_pad[:, 1:]).any():  # PAD only at the end
                    return batch, (width - is_pad.sum(axis=1)).tolist()
        encoded = [self._encode(seq) for seq in sequences]  # raises on the bad input
        width = max(len(row) for row, _ in encoded)
        batch = np.full((len(encoded), width), self.input_encoder.pad_encoding, dtype=np.int64)
        for row, (ids_, _) in enumerate(encoded):
            batch[row, : len(ids_)] = ids_
        return batch, [length for _, length in encoded]

    def _lookup(
        self, sequences: Sequence[Sequence[Any]], widths: list[int], width: int
    ) -> np.ndarray | None:
        """[B, width] ids, PAD-filled, from one dictionary lookup per token (all in one
        `operator.itemgetter` call, the fastest loop Python has for this); None if a token
        is unknown or unhashable."""
        count = sum(widths)
        tokens = itertools.chain.from_iterable(sequences)
        try:
            if count == 1:  # itemgetter of one key returns the id itself
                ids = [self.input_encoder.encoding_map[next(tokens)]]
            else:
                ids = operator.itemgetter(*tokens)(self.input_encoder.encoding_map)
        except (KeyError, TypeError):
            return None
        if count >= 256 and len(self.input_encoder.encoding_map) <= 256:
            # ids below 256 read as bytes: 2.5 times as fast for a batch, slower for one
            flat = np.frombuffer(bytes(ids), dtype=np.uint8).astype(np.int64)
        else:
            flat = np.fromiter(ids, dtype=np.int64, count=count)
        if widths.count(width) == len(widths):
            return flat.reshape(len(widths), width)
        if self.input_encoder.pad_encoding is None:
            return None
        batch = np.full((len(widths), width), self.input_encoder.pad_encoding, dtype=np.int64)
        batch[np.arange(width) < np.asarray(widths)[:, None]] = flat
        return batch

    def _encode(self, tokens: Sequence[Any]) -> tuple[list[int], int]:
        if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
            raise TypeError(
                f"a model input must be a list of tokens starting with BOS, got "
                f"{type(tokens).__name__}: {tokens!r}"
            )
        tokens = list(tokens)
        pad = self.input_encoder.pad_token
        length = len(tokens)
        while length and tokens[length - 1] == pad:
            length -= 1
        if pad in tokens[:length]:
            raise ValueError(
                f"the PAD token {pad!r} may only end a sequence, found it at position "
                f"{tokens.index(pad)} before other tokens"
            )
        return self.input_encoder.encode(tokens), length

    def _check_one_hot(self, final: np.ndarray, lengths: list[int]) -> None:
        """Every categorical SOp must hold one value (or None) at every real position.

        A mixture means a categorical Aggregate selected positions holding different
        values: `rasp.evaluate` averages them (or raises), and no one-hot encoding can
        hold that, so the input is outside what the program can be compiled for.
        """
        if not self.categorical_sops:
            return
        labels, cols, starts, tolerances = self._one_hot_layout()
        flat = final.reshape(-1, final.shape[-1])
        if len(flat) < MANY_POSITIONS:  # few rows: one reduceat per quantity
            values = flat[:, cols]
            top = np.maximum.reduceat(values, starts, axis=1).T  # [S, B T]
            rest = np.add.reduceat(values, starts, axis=1).T
        else:
            # [C, B T]: the SOps' columns as rows, each SOp's block reduced along axis 0
            # (numpy's reductions along a short last axis, reduceat too, are slow).
            values = flat.T[cols]
            top = np.empty((len(labels), len(flat)), dtype=values.dtype)  # [S, B T]
            rest = np.empty_like(top)
            ends = [*starts[1:].tolist(), len(cols)]
            for sop, (a, b) in enumerate(zip(starts.tolist(), ends)):
                np.max(values[a:b], axis=0, out=top[sop])
                np.sum(values[a:b], axis=0, out=rest[sop])
        np.maximum(top, 0.0, out=top)
        rest -= top
        tol = tolerances.astype(values.dtype)  # [S, 1]
        clean = ((top > 1 - tol) | (top < tol)) & (np.abs(rest, out=rest) < tol)
        if clean.all():
            return
        positions = np.arange(final.shape[1])
        real = (positions >= 1) & (positions < np.asarray(lengths)[:, None])  # [B, T]
        if (clean | ~real.reshape(1, -1)).all():
            return
        bad = (real.reshape(1, -1) & ~clean).T.reshape(*real.shape, len(labels))  # [B, T, S]
        sop = int(np.flatnonzero(bad.any(axis=(0, 1)))[0])  # the first SOp, in order
        row, position = (int(i) for i in np.argwhere(bad[..., sop])[0])
        label, cols = labels[sop], self.categorical_sops[labels[sop]]
        names = [self.residual_labels[c] for c in cols]
        mixture = {
            names[i].split(":", 1)[1]: round(float(v), 3)
            for i, v in enumerate(final[row, position, cols])
            if abs(v) > tol[sop]
        }
        where = f"sequence {row}, " if len(lengths) > 1 else ""
        raise ValueError(
            f"{where}position {position}: the categorical SOp {label!r} holds the "
            f"mixture {mixture} instead of one value: a categorical Aggregate "
            "selected positions with different values, which no one-hot encoding "
            "can represent (validating.dynamic_validate(program, input) names it; "
            "strict=False skips this check)"
        )

    def _one_hot_layout(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """The categorical SOps' labels, their columns one after another, where each SOp's
        columns start among them, and their tolerances [S, 1]; remembered while
        categorical_sops and mixture_tolerances hold the same entries (the columns
        compared by value: an array edited in place, or a new one at a freed one's
        address, must not be served the old layout)."""
        key = (
            tuple(
                (label, np.asarray(cols).tobytes()) for label, cols in self.categorical_sops.items()
            ),
            tuple(self.mixture_tolerances.items()),
        )
        cached = self.__dict__.get("_one_hot_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        labels = list(self.categorical_sops)
        sizes = [len(self.categorical_sops[label]) for label in labels]
        starts = np.cumsum([0, *sizes[:-1]])
        cols = np.concatenate([self.categorical_sops[lb] for lb in labels])
        tol = np.array([self.mixture_tolerances.get(lb, MIXTURE_TOLERANCE) for lb in labels])
        layout = labels, cols, starts, tol[:, None]
        self.__dict__["_one_hot_cache"] = (key, layout)
        return layout

    def _output(
        self,
        out: CompiledTransformerModelOutput,
        lengths: list[int],
        batched: bool = False,
        strict: bool = True,
    ) -> AssembledTransformerModelOutput:
        if strict:
            self._check_one_hot(out.transformer_output.output, lengths)
        decoded_rows = decode(
            self.input_encoder,
            self.output_encoder,
            out.unembedded_output,
            out.output_present,
            lengths,
        )
        result = out.transformer_output
        names = AssembledTransformerModelOutput._DEFERRED
        return AssembledTransformerModelOutput.deferred(
            lambda: {name: getattr(result, name) for name in names},
            decoded=decoded_rows if batched else decoded_rows[0],
            unembedded=out.unembedded_output,
            attn_logits=result.attn_logits,
            transformer_output=result.output,
        )


def build_model(
    *,
    params: Params,
    config: model.TransformerConfig,
    unembed: np.ndarray,
    categorical_output: bool,
    input_encoder: encoder.CategoricalEncoder,
    output_encoder: encoder.Encoder | None,
    residual_labels: list[str],
    categorical_sops: dict[str, np.ndarray],
    mixture_tolerances: Mapping[str, float] | None = None,
) -> AssembledTransformerModel:
    """Wraps finished arrays in a runnable model (used by the compiler and by loading)."""

    def compiled_with(params_: Params) -> CompiledTransformerModel:
        return CompiledTransformerModel(
            params=params_,
            config=config,
            unembed_matrix=unembed,
            use_unembed_argmax=categorical_output,
            pad_encoding=input_encoder.pad_encoding,
        )

    def get_compiled_model() -> CompiledTransformerModel:
        return compiled_with(params)

    def forward(params_: Params, token_ids: np.ndarray) -> CompiledTransformerModelOutput:
        return compiled_with(params_)(token_ids)

    return AssembledTransformerModel(
        forward=forward,
        get_compiled_model=get_compiled_model,
        params=params,
        model_config=config,
        residual_labels=residual_labels,
        input_encoder=input_encoder,
        output_encoder=output_encoder,
        categorical_sops=categorical_sops,
        mixture_tolerances=dict(mixture_tolerances or {}),
    )
