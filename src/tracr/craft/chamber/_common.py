"""Argument checks and lookups shared by the block builders."""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Hashable

import numpy as np

from tracr.craft import bases

#: Total attention weight a head may leak outside the positions it is meant to attend
#: to (see categorical_attn and selector_width for how coldness follows from it).
ATTENTION_LEAKAGE = 1e-9


def single_direction(space: bases.VectorSpaceWithBasis, what: str) -> bases.BasisDirection:
    """The one direction of a 1-d space; ValueError otherwise."""
    bases.ensure_dims(space, 1, what)
    return space.basis[0]


def is_numerical_space(space: bases.VectorSpaceWithBasis) -> bool:
    """True for the space of a numerical SOp: a single direction with value None."""
    return space.num_dims == 1 and space.basis[0].value is None


def value_index(space: bases.VectorSpaceWithBasis, what: str) -> dict[Hashable, int]:
    """value -> index for a categorical space whose directions share one name."""
    names = {d.name for d in space.basis}
    if len(names) > 1:
        raise ValueError(
            f"{what} must hold one SOp (one name), got names {sorted(map(str, names))}"
        )
    index = {d.value: i for i, d in enumerate(space.basis)}
    if len(index) != space.num_dims:  # e.g. values 1 and 1.0, or a None value
        raise ValueError(f"{what} has directions with equal values: {list(map(str, space.basis))}")
    return index


def output_index(
    index: dict[Hashable, int], result: Hashable, what: str, origin: object
) -> int | None:
    """Index of the output direction for `result` (None for the None value)."""
    if result is None:
        return None
    try:
        return index[result]
    except (KeyError, TypeError):
        raise ValueError(
            f"{what}: value {result!r} (from input {origin!r}) is not in the output space "
            f"(values {sorted(map(repr, index))})"
        ) from None


def as_number(result: object, what: str, origin: object) -> float:
    """A finite real number for a numerical output; ValueError otherwise."""
    if not isinstance(result, numbers.Real) or not math.isfinite(result):
        raise ValueError(
            f"{what}: got {result!r} for input {origin!r}; a numerical output needs a finite "
            "number (a numerical SOp has no encoding for None)"
        )
    return float(result)


def check_aux_spaces(
    bos_space: bases.VectorSpaceWithBasis,
    one_space: bases.VectorSpaceWithBasis,
    *spaces: bases.VectorSpaceWithBasis,
) -> tuple[bases.BasisDirection, bases.BasisDirection]:
    """The bos and one directions; ValueError if a data space contains either."""
    bos = single_direction(bos_space, "bos_space")
    one = single_direction(one_space, "one_space")
    if bos == one:
        raise ValueError(f"bos and one must be different directions, both are {bos}")
    for space in spaces:
        if bos in space or one in space:
            raise ValueError(f"the bos/one directions {bos}, {one} must not be in an SOp space")
    return bos, one


def check_max_seq_len(max_seq_len: int) -> int:
    if type(max_seq_len) is int and max_seq_len >= 1:  # the usual case: no ABC check
        return max_seq_len
    if isinstance(max_seq_len, bool) or not isinstance(max_seq_len, numbers.Integral):
        raise TypeError(f"max_seq_len must be an int, got {max_seq_len!r}")
    if max_seq_len < 1:
        raise ValueError(f"max_seq_len must be >= 1, got {max_seq_len}")
    return int(max_seq_len)


def selected_mask(
    query_space: bases.VectorSpaceWithBasis,
    key_space: bases.VectorSpaceWithBasis,
    attn_fn: Callable[[Hashable, Hashable], bool],
) -> np.ndarray:
    """[queries, keys] bool: whether attn_fn(query value, key value) is true.

    An attn_fn with a `numpy_op` attribute (a comparison, called as op(key, query)) is
    evaluated on arrays when every value is an int or float below 2^53 (the same answers);
    equality of other plain values (strings, say) is looked up in a dict, which finds
    exactly the equal values (equal values hash equally; NaN, unequal to itself, is left
    to the loop). An attn_fn with `selects_all` set selects every pair.
    """
    shape = (query_space.num_dims, key_space.num_dims)
    if getattr(attn_fn, "selects_all", False):
        return np.ones(shape, dtype=bool)
    op = getattr(attn_fn, "numpy_op", None)
    if op is not None:
        queries = [d.value for d in query_space.basis]
        keys = [d.value for d in key_space.basis]
        if all(type(v) in (int, float) and abs(v) < 2**53 for v in queries + keys):
            q = np.array(queries, dtype=np.float64)
            k = np.array(keys, dtype=np.float64)
            return np.asarray(op(k[None, :], q[:, None]), dtype=bool).reshape(shape)
        if op is operator.eq and all(
            type(v) in (str, int, float, bool) and v == v for v in queries + keys
        ):
            where = {k: j for j, k in enumerate(keys)}  # keys are distinct: a space's
            mask = np.zeros(shape, dtype=bool)
            for i, q in enumerate(queries):
                if q in where:
                    mask[i, where[q]] = True
            return mask
    mask = np.zeros(shape, dtype=bool)
    for i, q in enumerate(query_space.basis):
        for j, k in enumerate(key_space.basis):
            if attn_fn(q.value, k.value):
                mask[i, j] = True
    return mask
