"""Named basis directions, vector spaces spanned by them, and vectors in those spaces.

A `BasisDirection` is `(name, value)`: `("tokens", 3)` is the one-hot direction of the
value 3 of the SOp `tokens`; `("frac_prevs", None)` is the single direction of a numerical
SOp. A `VectorSpaceWithBasis` is an ordered tuple of distinct directions with an O(1)
direction -> index map, so every linear map between spaces is one numpy matrix whose
rows and columns follow the two bases.

Ordering: `VectorSpaceWithBasis` keeps the order it is given (so `direct_sum` is plain
concatenation); `join_vector_spaces` sorts, which makes residual layouts deterministic.
Directions are totally ordered even when names or values mix types (see `sort_key`).
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import operator
import weakref
from collections.abc import Hashable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

Name = str | int
Value = Hashable


def _order_key(x: Any) -> tuple:
    """A key that orders any mix of None, numbers, strings and tuples without TypeError.

    Kinds rank None < numbers < strings < tuples < anything else; inside a kind the
    natural order applies (tuples element-wise, other objects by type name then repr).
    Equal objects (1 == 1.0 == True) get equal keys, so the order agrees with `==`.
    """
    kind = type(x)
    if kind is int or kind is bool or (kind is float and x == x):  # the usual values
        return (1, 0, x)
    if kind is str:
        return (2, x)
    if x is None:
        return (0,)
    if isinstance(x, numbers.Real):
        if x != x:  # NaN: after every other number
            return (1, 1, 0)
        return (1, 0, x)
    if isinstance(x, str):
        return (2, x)
    if isinstance(x, tuple):
        return (3, tuple(_order_key(e) for e in x))
    return (4, type(x).__qualname__, repr(x))


@functools.total_ordering
@dataclasses.dataclass(frozen=True, init=False)
class BasisDirection:
    """One direction of the residual stream: `name` alone, or `name` one-hot at `value`.

    `str(d)` is the residual label: `"name"` when value is None, else `"name:value"`.
    """

    name: Name
    value: Value | None = None

    def __init__(self, name: Name, value: Value | None = None) -> None:
        # Directions are made by the thousand: the fields go straight into __dict__ (a
        # frozen dataclass's own __init__ calls object.__setattr__ per field), and they
        # are dict keys everywhere in the compiler, so the hash is computed once.
        fields = self.__dict__
        fields["name"] = name
        fields["value"] = value
        try:
            fields["_hash"] = hash((name, value))
        except TypeError:  # an unhashable value fails where it is hashed, as before
            fields["_hash"] = None

    def __reduce__(self):
        # Rebuilt from its fields, so the hash is computed afresh: a cached hash of a str
        # name would be wrong in another process (string hashes are salted per process).
        return (BasisDirection, (self.name, self.value))

    def __hash__(self) -> int:
        known = self._hash
        return hash((self.name, self.value)) if known is None else known

    def __str__(self) -> str:
        label = self.__dict__.get("_str")  # residual labels are asked for again and again
        if label is None:
            label = str(self.name) if self.value is None else f"{self.name}:{self.value}"
            self.__dict__["_str"] = label
        return label

    def __lt__(self, other: BasisDirection) -> bool:
        if not isinstance(other, BasisDirection):
            return NotImplemented
        return sort_key(self) < sort_key(other)


def sort_key(direction: BasisDirection) -> tuple:
    """The total order on directions: by name, then value, across mixed types."""
    key = direction.__dict__.get("_key")
    if key is None:  # computed once per direction: spaces are sorted again and again
        key = (_order_key(direction.name), _order_key(direction.value))
        object.__setattr__(direction, "_key", key)
    return key


_known_key = operator.attrgetter("_key")  # sort_key, once it has been computed


def _duplicates(directions: Iterable[BasisDirection]) -> list[BasisDirection]:
    seen: set[BasisDirection] = set()
    dups: list[BasisDirection] = []
    for d in directions:
        if d in seen:
            dups.append(d)
        seen.add(d)
    return dups


@dataclasses.dataclass(frozen=True, eq=False, init=False)
class VectorSpaceWithBasis:
    """The span of an ordered tuple of distinct basis directions.

    Equality (and hashing) compares the SET of directions, as in the reference Tracr
    (whose spaces are always sorted, so its list comparison is a set comparison);
    the order only fixes the layout of matrices built on the space.
    """

    basis: tuple[BasisDirection, ...]
    _index: dict[BasisDirection, int] = dataclasses.field(init=False, repr=False, compare=False)

    def __init__(self, basis: Iterable[BasisDirection]) -> None:
        # fields written straight into __dict__, as in BasisDirection: spaces are many
        basis = tuple(basis)
        for d in basis:
            if type(d) is not BasisDirection and not isinstance(d, BasisDirection):
                raise TypeError(f"basis entries must be BasisDirection, got {d!r}")
        index = dict(zip(basis, range(len(basis))))
        if len(index) != len(basis):
            raise ValueError(f"duplicate basis directions: {_duplicates(basis)}")
        fields = self.__dict__
        fields["basis"] = basis
        fields["_index"] = index

    @classmethod
    def _of_distinct(cls, basis: tuple[BasisDirection, ...]) -> VectorSpaceWithBasis:
        """The space of directions known to be distinct BasisDirections (no checks)."""
        space = object.__new__(cls)
        space.__dict__.update(basis=basis, _index=dict(zip(basis, range(len(basis)))))
        return space

    def __getstate__(self) -> dict:
        # Joins kept with the space (`join_vector_spaces`) are keyed by the ids of this
        # process's spaces: a copy or a pickle leaves them out.
        state = dict(self.__dict__)
        state.pop("_joins", None)
        state.pop("_kept", None)  # a copy is in no cache
        return state

    @property
    def num_dims(self) -> int:
        return len(self.basis)

    def pairs(self) -> tuple[tuple[Name, Value | None], ...]:
        """The directions as (name, value) pairs, in order: equal exactly where the
        directions are, and hashed and compared without a method call per direction
        (worked out once per space)."""
        known = self.__dict__.get("_pairs")
        if known is None:
            known = self.__dict__["_pairs"] = tuple([(d.name, d.value) for d in self.basis])
        return known

    def index(self, direction: BasisDirection) -> int:
        """Position of `direction` in the basis; ValueError if it is not there."""
        try:
            return self._index[direction]
        except KeyError:
            raise ValueError(f"{direction} is not in this space") from None

    def indices(self, directions: Iterable[BasisDirection]) -> np.ndarray:
        """Positions of many directions at once, as an int array."""
        try:
            return np.fromiter(map(self._index.__getitem__, directions), dtype=np.int64)
        except KeyError as e:
            raise ValueError(f"{e.args[0]} is not in this space") from None

    def __contains__(self, item: object) -> bool:
        if isinstance(item, BasisDirection):
            return item in self._index
        if isinstance(item, VectorInBasis):
            return set(item.basis_directions) == self._index.keys()
        return False

    def __iter__(self) -> Iterator[BasisDirection]:
        return iter(self.basis)

    def __len__(self) -> int:
        return len(self.basis)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VectorSpaceWithBasis):
            return NotImplemented
        return self._index.keys() == other._index.keys()

    def __hash__(self) -> int:
        return hash(frozenset(self.basis))

    def issubspace(self, other: VectorSpaceWithBasis) -> bool:
        return self._index.keys() <= other._index.keys()

    def make_vector(self, magnitudes: np.ndarray) -> VectorInBasis:
        """A vector (or array of vectors, [..., num_dims]) in this basis."""
        return VectorInBasis(self.basis, magnitudes)

    def vector_from_basis_direction(self, direction: BasisDirection) -> VectorInBasis:
        magnitudes = np.zeros(self.num_dims)
        magnitudes[self.index(direction)] = 1.0
        return self.make_vector(magnitudes)

    def null_vector(self) -> VectorInBasis:
        return self.make_vector(np.zeros(self.num_dims))

    def basis_vectors(self) -> list[VectorInBasis]:
        return [self.make_vector(row) for row in np.eye(self.num_dims)]

    @classmethod
    def from_names(cls, names: Iterable[Name]) -> VectorSpaceWithBasis:
        return cls(tuple(BasisDirection(n) for n in names))

    @classmethod
    def from_values(cls, name: Name, values: Iterable[Value]) -> VectorSpaceWithBasis:
        basis = tuple([BasisDirection(name, v) for v in values])
        space = cls._of_distinct(basis)  # BasisDirections by construction
        if len(space._index) != len(basis):
            raise ValueError(f"duplicate basis directions: {_duplicates(basis)}")
        return space


def join_vector_spaces(*spaces: VectorSpaceWithBasis) -> VectorSpaceWithBasis:
    """The union of the spaces' directions, sorted by `sort_key` (deterministic layout).

    Where one of the spaces is itself a join holding every direction, it is the result
    (spaces are immutable). A new join is kept with the first space, by the other
    spaces (lowering joins the same spaces again: the heads reading one SOp, say), but
    not with a space `keep` marked unless every other one is marked too (then so is the
    join): what is kept across compiles holds no space of one compile."""
    if len(spaces) < 2:
        return _join(spaces)
    first, others = spaces[0], spaces[1:]
    key = tuple(map(id, others))
    fields = first.__dict__
    joins = fields.get("_joins")
    found = None if joins is None else joins.get(key)
    # The others are held weakly (no cycles); alive, they are the spaces of those ids.
    if found is not None and all(ref() is not None for ref in found[0]):
        return found[1]
    joined = _join(spaces)
    if any(joined is space for space in spaces):
        return joined
    if fields.get("_kept"):
        if not all(space.__dict__.get("_kept") for space in others):
            return joined
        keep(joined)
    if joins is None:
        joins = fields["_joins"] = {}
    elif len(joins) >= _JOINS_KEPT:  # start afresh (one step: safe with threads)
        joins.clear()
    joins[key] = (tuple(map(weakref.ref, others)), joined)
    return joined


def keep(space: VectorSpaceWithBasis) -> None:
    """Marks a space as kept across compiles (by a cache of spaces by their contents):
    joins of it with spaces not so marked are not kept with it (`join_vector_spaces`)."""
    space.__dict__["_kept"] = True


#: Joins kept per first space (`join_vector_spaces`).
_JOINS_KEPT = 32


def _join(spaces: tuple[VectorSpaceWithBasis, ...]) -> VectorSpaceWithBasis:
    union: dict[BasisDirection, int] = {}
    for space in spaces:
        union.update(space._index)
    for space in spaces:
        if len(space.basis) == len(union) and space.__dict__.get("_sorted"):
            return space
    try:  # most directions have their key already: read it without a Python call
        ordered = sorted(union, key=_known_key)
    except AttributeError:
        ordered = sorted(union, key=sort_key)
    joined = VectorSpaceWithBasis._of_distinct(tuple(ordered))
    object.__setattr__(joined, "_sorted", True)
    return joined


def sorted_space(name: Name, values: Iterable[Value]) -> VectorSpaceWithBasis:
    """The space of the directions (name, v) for the distinct values, in `sort_key` order:
    `join_vector_spaces(VectorSpaceWithBasis.from_values(name, values))`, made at once."""
    name_key = _order_key(name)
    distinct = list(dict.fromkeys(values))  # (name, v) == (name, w) exactly when v == w
    keys = [_order_key(v) for v in distinct]
    basis = []
    for i in sorted(range(len(distinct)), key=keys.__getitem__):  # stable, as a join's sort
        d = BasisDirection(name, distinct[i])
        d.__dict__["_key"] = (name_key, keys[i])
        basis.append(d)
    space = VectorSpaceWithBasis._of_distinct(tuple(basis))
    object.__setattr__(space, "_sorted", True)
    return space


def direct_sum(*spaces: VectorSpaceWithBasis) -> VectorSpaceWithBasis:
    """The concatenation of disjoint spaces, in order; ValueError naming any overlap."""
    total = tuple(d for space in spaces for d in space.basis)
    shared = _duplicates(total)
    if shared:
        raise ValueError(f"direct_sum needs disjoint spaces; shared directions: {shared}")
    return VectorSpaceWithBasis(total)


def ensure_dims(space: VectorSpaceWithBasis, num_dims: int, name: str = "vector space") -> None:
    """Raises ValueError unless `space` has exactly `num_dims` directions."""
    if space.num_dims != num_dims:
        raise ValueError(
            f"{name} must have {num_dims} dimension(s), got {space.num_dims}: "
            f"{[str(d) for d in space.basis]}"
        )


@dataclasses.dataclass(frozen=True, eq=False)
class VectorInBasis:
    """A vector, or an array of vectors, over named directions.

    `magnitudes` has shape [..., len(basis_directions)]: the last axis follows the basis.
    Arithmetic between vectors needs the same SET of directions; the other operand is
    re-ordered to this one's basis. `==` is `np.allclose` after that alignment.
    """

    basis_directions: tuple[BasisDirection, ...]
    magnitudes: np.ndarray
    _index: dict[BasisDirection, int] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        basis = tuple(self.basis_directions)
        magnitudes = np.asarray(self.magnitudes)
        if magnitudes.ndim == 0 or magnitudes.shape[-1] != len(basis):
            raise ValueError(
                f"magnitudes must have shape [..., {len(basis)}] (one entry per basis "
                f"direction), got shape {magnitudes.shape}"
            )
        index = {d: i for i, d in enumerate(basis)}
        if len(index) != len(basis):
            raise ValueError(f"duplicate basis directions: {_duplicates(basis)}")
        object.__setattr__(self, "basis_directions", basis)
        object.__setattr__(self, "magnitudes", magnitudes)
        object.__setattr__(self, "_index", index)

    @property
    def space(self) -> VectorSpaceWithBasis:
        """The space spanned by this vector's basis (same order)."""
        return VectorSpaceWithBasis(self.basis_directions)

    def _aligned(self, other: VectorInBasis, op: str) -> np.ndarray:
        """other's magnitudes in self's basis order; TypeError if the sets differ."""
        if other.basis_directions == self.basis_directions:
            return other.magnitudes
        if other._index.keys() != self._index.keys():
            raise TypeError(
                f"cannot {op} vectors over different directions: "
                f"{sorted(set(self.basis_directions) ^ set(other.basis_directions), key=sort_key)}"
            )
        order = np.fromiter((other._index[d] for d in self.basis_directions), dtype=np.int64)
        return other.magnitudes[..., order]

    def _with(self, magnitudes: np.ndarray) -> VectorInBasis:
        return VectorInBasis(self.basis_directions, magnitudes)

    def __add__(self, other: VectorInBasis) -> VectorInBasis:
        return self._with(self.magnitudes + self._aligned(other, "add"))

    def __sub__(self, other: VectorInBasis) -> VectorInBasis:
        return self._with(self.magnitudes - self._aligned(other, "subtract"))

    def __neg__(self) -> VectorInBasis:
        return self._with(-self.magnitudes)

    def __mul__(self, scalar: float) -> VectorInBasis:
        if isinstance(scalar, VectorInBasis):
            return NotImplemented
        return self._with(self.magnitudes * scalar)

    __rmul__ = __mul__

    def __truediv__(self, scalar: float) -> VectorInBasis:
        return self._with(self.magnitudes / scalar)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VectorInBasis):
            return NotImplemented
        if other._index.keys() != self._index.keys():
            return False
        theirs = self._aligned(other, "compare")
        return theirs.shape == self.magnitudes.shape and bool(np.allclose(self.magnitudes, theirs))

    __hash__ = None  # type: ignore[assignment]  # mutable-array payload

    def project(self, target: VectorSpaceWithBasis | Sequence[BasisDirection]) -> VectorInBasis:
        """The components along `target`'s directions (zero for those this vector lacks);
        components along other directions are dropped. The result uses target's order."""
        directions = target.basis if isinstance(target, VectorSpaceWithBasis) else tuple(target)
        if directions == self.basis_directions:
            return self
        src = np.fromiter((self._index.get(d, -1) for d in directions), dtype=np.int64)
        present = src >= 0
        out = np.zeros(self.magnitudes.shape[:-1] + (len(directions),), self.magnitudes.dtype)
        out[..., present] = self.magnitudes[..., src[present]]
        return VectorInBasis(directions, out)

    @classmethod
    def stack(cls, vectors: Sequence[VectorInBasis], axis: int = 0) -> VectorInBasis:
        """Stacks vectors over the same directions along a new leading axis."""
        first = vectors[0]
        mags = [first._aligned(v, "stack") for v in vectors]
        return first._with(np.stack(mags, axis=axis))

    @classmethod
    def sum(cls, vectors: Sequence[VectorInBasis]) -> VectorInBasis:
        """The sum of vectors over the same directions."""
        first = vectors[0]
        total = first.magnitudes
        for v in vectors[1:]:
            total = total + first._aligned(v, "add")
        return first._with(total)
