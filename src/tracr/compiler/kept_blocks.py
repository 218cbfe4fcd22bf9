"""Blocks kept across compiles, by what they are built from and what their functions answer.

A program compiled again lowers its SOps to the same blocks: the builders
(tracr.craft.chamber) get the same spaces and numbers and call the same functions (a
Map's f, a selector's predicate) on the same values. A builder is deterministic: its
block follows from its arguments and from what its functions answer. `built` keeps a
block under a key made of every argument but the functions, exactly (`_exact`: spaces
and kept blocks by identity, names and numbers with their types, floats by their bits),
with the log of the builder's calls of its functions: which function, the arguments and
the answer, in order (plain values only: str, int, bool, float, None and tuples of them).
Asked again under that key, it calls the functions again as the log says; where every
answer is exactly the one logged (`_same`), the builder would make the very
same calls and build the same block, which is the kept one.

A block is kept from its second build on (the first build of a key only notes it:
logging every call costs a compile that is not repeated). The functions are called
exactly as a fresh build calls them: once per logged call, in
the logged order. At the first answer that differs the builder runs, served the answers
already had, and calls on from there, so a function with state sees no extra call.

A kept block is shared by the compiles that find it, so its arrays are made read-only;
the assembled model's arrays are fresh (assemble.py writes the blocks into new arrays),
and `expr_to_craft_graph.add_craft_components_to_rasp_graph` hands out copies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tracr.compiler import bound_cache
from tracr.craft import bases, transformers, vectorspace_fns

#: Blocks kept (least recently used dropped first beyond this many bytes, as `_size`
#: counts them).
_BLOCKS = bound_cache.Known(max_bytes=32 << 20)
_BYTES_PER_DIRECTION = 256


class Same:
    """A key part equal only to a part holding the very same object (which it keeps
    alive, so its id is not reused): spaces and blocks are immutable, and a space kept
    by its contents (`bases.keep`) is the one object of those contents."""

    __slots__ = ("obj",)

    def __init__(self, obj: object):
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Same) and other.obj is self.obj


#: What a cache holds under a key seen once: the result is kept when it is made again.
SEEN = object()


_Unkeyed = bound_cache.Inexact  # a part no key stands for: the block is built afresh


def _exact(part):
    """A key part equal to another exactly where the parts are the same: plain values as
    `bound_cache.exact_value` tells them apart, tuples part by part, kept spaces and
    kept blocks (`Same`), and the chamber's own functions (module level, never changed)
    by identity; spaces as `Contents` says. Raises _Unkeyed for anything else."""
    kind = type(part)
    if kind is float or kind in _PLAIN:
        return bound_cache.exact_value(part)
    if kind is tuple:  # (its parts may be spaces or blocks too)
        return (tuple, tuple(map(_exact, part)))
    if kind is frozenset:  # a value set: its members exactly, in no order
        return (frozenset, frozenset(map(_exact, part)))
    if isinstance(part, bases.VectorSpaceWithBasis):
        if not part.__dict__.get("_kept"):
            raise _Unkeyed  # made anew by each compile: no later compile would find it
        return Same(part)
    if isinstance(part, transformers.Block):
        if not part.__dict__.get("_kept_block"):
            raise _Unkeyed
        return Same(part)
    if isinstance(part, Same):
        return part
    if isinstance(part, Contents):
        return part.exact()
    raise _Unkeyed


_PLAIN = (str, int, bool, type(None))


def built(parts: tuple, build: Callable, functions: Sequence[Callable]):
    """build(*functions), kept under `parts` (every other input of the build, see
    `_exact`; the chamber builder called is one of them) and the answers of `functions`
    (module docstring). The functions may be called on anything; a call whose arguments
    or answer no key stands for leaves the block unkept."""
    found = key(parts)
    if found is None:
        return build(*functions)
    kept = _BLOCKS.get(found)
    if kept is None:  # kept from its second build on: a block built once costs no log
        _BLOCKS.put(found, SEEN, _BYTES_PER_DIRECTION)
        return build(*functions)
    answers: list = []
    if kept is not SEEN:
        block, log = kept
        for index, args, answer in log:
            now = functions[index](*args)
            answers.append(now)
            if not _same(now, answer):
                break
        else:
            return block
    log = _Log(functions, answers)
    block = build(*log.recorders())
    if log.keyed:
        size = _BYTES_PER_DIRECTION * (1 + len(log.entries))
        if block is not None:  # (a builder's None says its block does not apply)
            kept_block(block)
            size += _size(block)
        _BLOCKS.put(found, (block, tuple(log.entries)), size)
    return block


def _same(a, b) -> bool:
    """Whether two plain answers (`_plain`) are the same: of one type, and equal (floats
    by their bits, tuples item by item)."""
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is float:
        return a.hex() == b.hex()
    if kind is tuple:
        return len(a) == len(b) and all(map(_same, a, b))
    return a == b  # str, int, bool, None: == is exact within one type


def _plain(x) -> bool:
    """Whether x is a str, int, bool, float, None or a tuple of such (which `_same`
    compares exactly, and which no one can change)."""
    kind = type(x)
    return kind in _SIMPLE or (kind is tuple and all(map(_plain, x)))


_SIMPLE = frozenset({str, int, bool, float, type(None)})


class _Log:
    """The calls a build makes of its functions: (function index, arguments, answer),
    in order. The first answers are `served` (had already, for these calls). `keyed`:
    every argument and answer is plain (`_plain`), so a later compile can compare them."""

    def __init__(self, functions: Sequence[Callable], served: list):
        self.functions, self.served = functions, served
        self.entries: list[tuple] = []
        self.keyed = True

    def recorders(self) -> list[Callable]:
        return [self._recorder(i) for i in range(len(self.functions))]

    def _recorder(self, index: int) -> Callable:
        f, entries, served = self.functions[index], self.entries, self.served

        def logged(*args):
            at = len(entries)
            # the build's calls before the one that differed are the logged ones
            answer = served[at] if at < len(served) else f(*args)
            entries.append((index, args, answer))
            if self.keyed and not (_plain(answer) and _plain(args)):
                self.keyed = False
            return answer

        return logged


def kept_block(block: transformers.Block) -> None:
    """Makes a block's arrays read-only and marks it, and each block in it, as kept
    (shared by compiles: a key part, `_exact`)."""
    for fn in _functions(block):
        fn.matrix.flags.writeable = False
    if isinstance(block, transformers.SeriesWithResiduals):
        for sub in block.blocks:
            kept_block(sub)
    block.__dict__["_kept_block"] = True


class Contents:
    """A key part standing for a space by its contents: the space itself where it is
    kept by its contents (`bases.keep`), otherwise its directions in order, exactly
    (names and values as `bound_cache.exact_value` tells them apart)."""

    __slots__ = ("space",)

    def __init__(self, space: bases.VectorSpaceWithBasis):
        self.space = space

    def exact(self):
        if self.space.__dict__.get("_kept"):
            return Same(self.space)
        exact = bound_cache.exact_value
        return tuple((exact(d.name), exact(d.value)) for d in self.space.basis)


def key(parts: tuple) -> bound_cache.Key | None:
    """The key of `parts` (as `built` keys them), or None where no key stands for one."""
    try:
        return bound_cache.Key(_exact(parts))
    except _Unkeyed:
        return None


def _functions(block) -> list:
    """The linear and bilinear maps of a block."""
    if isinstance(block, transformers.MLP):
        return [block.fst, block.snd]
    if isinstance(block, transformers.AttentionHead):
        return [block.w_qk, block.w_ov]
    if isinstance(block, transformers.SeriesWithResiduals):
        return [fn for sub in block.blocks for fn in _functions(sub)]
    raise TypeError(f"no kept form for a block of type {type(block).__name__}")


def _size(block) -> int:
    fns = _functions(block)
    directions = sum(s.num_dims for fn in fns for s in _spaces(fn))
    return sum(fn.matrix.nbytes for fn in fns) + _BYTES_PER_DIRECTION * directions


def _spaces(fn) -> tuple:
    if isinstance(fn, vectorspace_fns.Linear):
        return fn.input_space, fn.output_space
    return fn.left_space, fn.right_space


def copied(block: transformers.Block) -> transformers.Block:
    """A copy of a block with fresh, writable arrays (for callers outside the compile)."""
    if isinstance(block, transformers.MLP):
        return transformers.MLP(_copy(block.fst), _copy(block.snd), block.residual_space)
    if isinstance(block, transformers.AttentionHead):
        return transformers.AttentionHead(
            _copy(block.w_qk), _copy(block.w_ov), block.residual_space, block.causal
        )
    if isinstance(block, transformers.SeriesWithResiduals):
        return transformers.SeriesWithResiduals([copied(b) for b in block.blocks])
    raise TypeError(f"no copy for a block of type {type(block).__name__}")


def _copy(fn):
    if isinstance(fn, vectorspace_fns.Linear):
        return vectorspace_fns.Linear(fn.input_space, fn.output_space, fn.matrix.copy())
    return vectorspace_fns.ScalarBilinear(fn.left_space, fn.right_space, fn.matrix.copy())
