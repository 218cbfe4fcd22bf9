"""Error bounds kept across compiles, by the exact contents of what they are computed from.

Compiling a program again (or another program with the same blocks: the selector-width
readout of one max_seq_len, say) bounds the same blocks on the same inputs. The bounds
are pure functions of arrays and numbers, so `mlp_bounds` keeps them here, keyed by
those arrays' bytes (with dtype and shape) and the numbers' exact values: a key matches
only where every input is the same, and the result is the one a fresh computation gives.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from tracr import caches


class Key:
    """A tuple key whose hash is computed once (a key is looked up and stored again)."""

    __slots__ = ("parts", "_hash")

    def __init__(self, parts: tuple):
        self.parts = parts
        self._hash = hash(parts)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and self._hash == other._hash and self.parts == other.parts


def array_key(a) -> tuple:
    """An array's exact contents: (dtype, shape, bytes); for a large, mostly zero float64
    array (a lookup table's weights) its nonzero bit patterns and where they are, which
    are far fewer bytes to copy and hash (-0.0 is kept: its bits are not zero)."""
    a = np.ascontiguousarray(a)
    if a.size >= _SPARSE_FROM and a.dtype == np.float64:
        bits = a.view(np.uint64).ravel()
        where = np.flatnonzero(bits)
        if 4 * len(where) < a.size:
            return a.dtype.str, a.shape, where.tobytes(), bits[where].tobytes()
    return a.dtype.str, a.shape, a.tobytes()


#: Arrays from this many entries on are keyed by their nonzeros where most are zero.
_SPARSE_FROM = 4096


def number_key(x: float) -> str:
    """A float's exact value (-0.0 and nan told apart, unlike ==)."""
    return float(x).hex()


class Inexact(Exception):
    """A value that no exact key stands for (`exact_value`)."""


def exact_value(value):
    """A key part equal to another exactly where the values are the same: str, int, bool
    and None with their type, floats by their bits (`number_key`), tuples item by item.
    Raises Inexact for any other value."""
    kind = type(value)
    if kind is float:
        return (float, number_key(value))
    if kind in _PLAIN:
        return (kind, value)
    if kind is tuple:
        return (tuple, tuple(map(exact_value, value)))
    raise Inexact


_PLAIN = (str, int, bool, type(None))


def exact_values(values) -> frozenset | None:
    """The values told apart exactly (`exact_value`: 1, 1.0 and True differ, and 0.0
    and -0.0, which == and a frozenset conflate); None where one is of another kind."""
    try:
        return frozenset(map(exact_value, values))
    except Inexact:
        return None


def read_only(result) -> None:
    """Makes the arrays of a dataclass instance read-only (it is shared)."""
    for f in dataclasses.fields(result):
        a = getattr(result, f.name)
        if isinstance(a, np.ndarray):
            a.flags.writeable = False


def nbytes(*items) -> int:
    """The bytes held by arrays and bytes among `items` (others count a few)."""
    return sum(
        a.nbytes if isinstance(a, np.ndarray) else len(a) if isinstance(a, bytes) else 64
        for a in items
    )


class Known:
    """Results by key, the least recently used dropped first beyond `max_bytes` (as the
    callers size their entries). Safe to share between threads compiling at once."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.bytes = max_bytes, 0
        self._entries: dict[Key, tuple[int, object]] = {}
        self._lock = threading.Lock()
        caches.register_method(self.clear)

    def clear(self) -> None:
        """Drops every result."""
        with self._lock:
            self._entries.clear()
            self.bytes = 0

    def get(self, key: Key):
        """The result kept under `key` (now the most recently used), or None."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is None:
                return None
            self._entries[key] = entry
            return entry[1]

    def put(self, key: Key, result, size: int) -> None:
        with self._lock:
            self.bytes -= self._entries.pop(key, (0,))[0]
            self._entries[key] = (size, result)
            self.bytes += size
            while self.bytes > self.max_bytes and self._entries:
                self.bytes -= self._entries.pop(next(iter(self._entries)))[0]
