"""Map between user tokens / outputs and the integer ids and values a model works on."""

from __future__ import annotations

import abc
from collections.abc import Hashable, Sequence
from typing import Any


class Encoder(abc.ABC):
    """Turns a token sequence into model inputs, and model outputs back into values."""

    @abc.abstractmethod
    def encode(self, inputs: Sequence[Any]) -> list[Any]:
        """Model inputs for `inputs`."""

    @abc.abstractmethod
    def decode(self, encodings: Sequence[Any]) -> list[Any]:
        """Values for model outputs `encodings`."""

    @property
    def pad_token(self) -> str | None:
        return None

    @property
    def bos_token(self) -> str | None:
        return None

    @property
    def pad_encoding(self) -> int | None:
        return None

    @property
    def bos_encoding(self) -> int | None:
        return None


class NumericalEncoder(Encoder):
    """Numbers pass through unchanged."""

    def encode(self, inputs: Sequence[float]) -> list[float]:
        return list(inputs)

    def decode(self, encodings: Sequence[float]) -> list[float]:
        return list(encodings)


class CategoricalEncoder(Encoder):
    """A fixed vocabulary: token <-> its index in `basis` (a sequence of directions).

    `encoding_map` maps each value to its id, in the order of the basis directions.
    """

    def __init__(
        self,
        basis: Sequence[Any],
        enforce_bos: bool = False,
        bos_token: str | None = None,
        pad_token: str | None = None,
        max_seq_len: int | None = None,
    ):
        if enforce_bos and bos_token is None:
            raise ValueError("a BOS token must be given when enforce_bos is set")
        self.encoding_map: dict[Hashable, int] = {d.value: i for i, d in enumerate(basis)}
        for role, token in (("BOS", bos_token), ("PAD", pad_token)):
            if token is not None and token not in self.encoding_map:
                raise ValueError(f"{role} token {token!r} is not among the encoded values")
        self.decoding_map = {i: v for v, i in self.encoding_map.items()}
        self.enforce_bos = enforce_bos
        self._bos_token = bos_token
        self._pad_token = pad_token
        self._max_seq_len = max_seq_len

    def encode(self, inputs: Sequence[Any]) -> list[int]:
        inputs = list(inputs)
        if self.enforce_bos and (not inputs or inputs[0] != self._bos_token):
            first = repr(inputs[0]) if inputs else "an empty sequence"
            raise ValueError(
                f"the first token must be the BOS token {self._bos_token!r}, got {first}"
            )
        if self._max_seq_len is not None and len(inputs) > self._max_seq_len:
            raise ValueError(
                f"the input has {len(inputs)} tokens (BOS included), more than the "
                f"{self._max_seq_len} the model was compiled for"
            )
        unknown = [t for t in inputs if not _known(t, self.encoding_map)]
        if unknown:
            vocab = sorted(
                (v for v in self.encoding_map if v not in (self._bos_token, self._pad_token)),
                key=repr,
            )
            raise ValueError(f"tokens {unknown!r} are not in the vocab {vocab!r}")
        if self._bos_token is not None and self._bos_token in inputs[1:]:
            raise ValueError(
                f"the BOS token {self._bos_token!r} may only stand at position 0, found it "
                f"at position {inputs.index(self._bos_token, 1)}"
            )
        return [self.encoding_map[t] for t in inputs]

    def decode(self, encodings: Sequence[int]) -> list[Any]:
        unknown = [e for e in encodings if e not in self.decoding_map]
        if unknown:
            raise ValueError(f"ids {unknown!r} are not in 0..{len(self.decoding_map) - 1}")
        return [self.decoding_map[e] for e in encodings]

    @property
    def max_seq_len(self) -> int | None:
        """The longest input accepted, BOS included."""
        return self._max_seq_len

    @property
    def vocab_size(self) -> int:
        return len(self.encoding_map)

    @property
    def bos_token(self) -> str | None:
        return self._bos_token

    @property
    def pad_token(self) -> str | None:
        return self._pad_token

    @property
    def bos_encoding(self) -> int | None:
        return None if self._bos_token is None else self.encoding_map[self._bos_token]

    @property
    def pad_encoding(self) -> int | None:
        return None if self._pad_token is None else self.encoding_map[self._pad_token]


def _known(token: Any, encoding_map: dict) -> bool:
    try:
        return token in encoding_map
    except TypeError:  # unhashable
        return False
