"""The inputs a compression is trained and scored on: valid sequences over the model's vocab.

An input is valid when the compiled model computes the program on it, which is what
`AssembledTransformerModel.apply` checks in strict mode: every categorical SOp holds one
value at every position (programs like sort_unique assume, for example, distinct keys).
Small input spaces are enumerated; larger ones are sampled uniformly by length, then by token.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np

from tracr.compiler import assembled_model

# Forward passes run in chunks of this many sequences to bound memory.
CHUNK = 2048


@dataclasses.dataclass(frozen=True)
class InputSet:
    """Encoded sequences, BOS first, padded: what a forward pass takes."""

    token_ids: np.ndarray  # [N, T] int64, padded with the PAD id
    lengths: np.ndarray  # [N] tokens per sequence, BOS included
    exhaustive: bool  # every valid input of every length is here

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def key_mask(self) -> np.ndarray:  # [N, T] bool: real tokens (BOS included)
        return np.arange(self.token_ids.shape[1])[None, :] < self.lengths[:, None]

    def subset(self, rows: np.ndarray) -> InputSet:
        return InputSet(self.token_ids[rows], self.lengths[rows], exhaustive=False)


def vocab_and_max_len(model: assembled_model.AssembledTransformerModel) -> tuple[list[Any], int]:
    """The input tokens (BOS and PAD left out), in id order, and the longest input."""
    enc = model.input_encoder
    special = {enc.bos_token, enc.pad_token}
    vocab = [t for t, _ in sorted(enc.encoding_map.items(), key=lambda kv: kv[1])]
    max_len = model.params["pos_embed"]["embeddings"].shape[0] - 1
    return [t for t in vocab if t not in special], max_len


def valid_inputs(
    model: assembled_model.AssembledTransformerModel, rng: np.random.Generator, limit: int
) -> InputSet:
    """Every valid input if there are at most `limit` inputs, otherwise about `limit` sampled."""
    vocab, max_len = vocab_and_max_len(model)
    total = sum(len(vocab) ** n for n in range(1, max_len + 1))
    if total <= limit:
        rows = [
            seq
            for n in range(1, max_len + 1)
            for seq in itertools.product(range(len(vocab)), repeat=n)
        ]
        exhaustive = True
    else:
        lengths = rng.integers(1, max_len + 1, size=limit)
        drawn = {tuple(rng.integers(0, len(vocab), size=n).tolist()) for n in lengths}
        rows = sorted(drawn, key=lambda s: (len(s), s))
        exhaustive = False
    enc = model.input_encoder
    token_ids = np.full((len(rows), max_len + 1), enc.pad_encoding, dtype=np.int64)
    token_ids[:, 0] = enc.bos_encoding
    vocab_ids = np.asarray([enc.encoding_map[t] for t in vocab], dtype=np.int64)
    for row, seq in enumerate(rows):
        token_ids[row, 1 : 1 + len(seq)] = vocab_ids[list(seq)]
    lengths = np.asarray([1 + len(seq) for seq in rows], dtype=np.int64)
    keep = _computes_program(model, token_ids, lengths)
    return InputSet(token_ids[keep], lengths[keep], exhaustive=exhaustive)


def _computes_program(model, token_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """[N] bool: the strict one-hot check of `apply` passes on each sequence."""
    keep = np.ones(len(lengths), dtype=bool)
    for start in range(0, len(lengths), CHUNK):
        final = model.forward(model.params, token_ids[start : start + CHUNK])
        final = final.transformer_output.output
        for row in range(final.shape[0]):
            try:
                model._check_one_hot(final[row : row + 1], [int(lengths[start + row])])
            except ValueError:
                keep[start + row] = False
    return keep


def decode_inputs(
    model: assembled_model.AssembledTransformerModel, inputs: InputSet
) -> list[list[Any]]:
    """The token lists (BOS first) of an InputSet."""
    decode = model.input_encoder.decoding_map
    return [
        [decode[int(i)] for i in ids[:length]]
        for ids, length in zip(inputs.token_ids, inputs.lengths)
    ]
