"""Products with only the non-zero blocks of a weight matrix (the sparse forward pass).

Compiled models are very sparse: an MLP reads the few residual directions of its inputs
and writes those of its output, a query reads one or two SOps, and every layer is padded
to the widest one. Dropping a product whose weight is exactly zero changes no sum (it adds
+0), so the result is the dense product's up to the order of summation.

Which rows and columns of a matrix hold its non-zeros (its "rectangle") is remembered per
array object and checked on every call, so that weights users edit in place take effect on
the next call, whatever they change: the check counts the matrix's non-zero bit patterns
(one fast pass, cheaper than reading the matrix into a product) and those inside the
rectangle (or, for a rectangle with few gaps, those inside its bounding box and none in the
gaps); the rectangle is found afresh when the two counts differ or differ from the
remembered count, or when the array's shape changed. -0.0 counts as non-zero here, which
only adds products that are exactly zero. Biases (vectors) have rectangles too: one row.
`plan` derives what each layer multiplies from these rectangles.

Frozen arrays (`freeze`: copies in immutable memory, whose `writeable` flag numpy refuses
to set) cannot change, so once such an array's rectangle has been found, it is not checked
again. That saves reading every weight on every call (for one sequence through a
large model, about as long as the products themselves). Any other small array is first
compared with a copy of its bytes from the last check: when they are equal nothing
changed, which is cheaper to see than the counts (a dozen numpy calls per layer add up for
a small model).
"""

from __future__ import annotations

import functools
import weakref

import numpy as np

from tracr import caches


class Rectangle:
    """The rows and columns of a matrix (or the entries of a vector, one row) that hold
    its non-zero entries."""

    __slots__ = (
        *("ref", "shape", "rows", "cols", "row_mask", "col_mask", "count"),
        *("row_index", "col_index", "box", "gap_rows", "gap_cols", "snapshot", "found"),
    )

    def __init__(self, w: np.ndarray, bits: np.ndarray):
        nonzero = (bits.reshape(1, -1) if bits.ndim == 1 else bits) != 0  # a vector: one row
        self.ref = weakref.ref(w, functools.partial(_forget, id(w)))
        self.shape = bits.shape
        self.snapshot = None if is_frozen(w) else _snapshot(w)
        self.row_mask = nonzero.any(axis=1)
        self.col_mask = nonzero.any(axis=0)
        self.rows = np.flatnonzero(self.row_mask)
        self.cols = np.flatnonzero(self.col_mask)
        self.row_index, self.col_index = span(self.rows), span(self.cols)
        self.count = int(np.count_nonzero(bits))
        self.found = None  # `sources`: (the rows, whether trusted without a check)
        # A rectangle much larger than its gaps is checked as its bounding box (a view)
        # with no non-zero in the box's rows and columns outside the rectangle: the gaps,
        # as indices into the box. None: checked as the gathered rectangle.
        self.box = self.gap_rows = self.gap_cols = None
        if self.count and bits.ndim == 2:
            box = enclosing(self.rows), enclosing(self.cols)
            gap_rows = np.flatnonzero(~self.row_mask[box[0]])
            gap_cols = np.flatnonzero(~self.col_mask[box[1]])
            height, width = self.row_mask[box[0]].size, self.col_mask[box[1]].size
            gaps = gap_rows.size * width + gap_cols.size * height
            if gaps and gaps < self.rows.size * self.cols.size:
                self.box, self.gap_rows, self.gap_cols = box, gap_rows, gap_cols

    def holds_all(self, w: np.ndarray, bits: np.ndarray) -> bool:
        """Whether w is the matrix this was found for and its non-zeros are still inside."""
        if self.ref() is not w or bits.shape != self.shape:  # `w.shape = ...` reshapes w
            return False
        count = np.count_nonzero(bits)
        if count != self.count:
            return False
        if count == 0:
            return True
        if bits.ndim == 1:
            inside = bits[self.col_index]
        elif self.box is not None:
            box = bits[self.box]
            return (
                np.count_nonzero(box) == count
                and not np.count_nonzero(box[self.gap_rows])
                and not np.count_nonzero(box[:, self.gap_cols])
            )
        else:
            inside = block(bits, self.rows, self.cols, self.row_index, self.col_index)
        return inside.size == bits.size or np.count_nonzero(inside) == count

    @property
    def one_per_column(self) -> bool:
        """Whether the matrix had exactly one non-zero in each of `cols` when found."""
        return self.count > 0 and self.count == self.cols.size and len(self.shape) == 2

    def sources(self, w: np.ndarray) -> np.ndarray | None:
        """For a matrix found with one non-zero per column (`one_per_column`), the row
        of each column's non-zero [len(cols)], as w is now (which `rectangle(w)` has
        just checked); None where some column now holds more than one.

        Then x @ w is x[:, sources] * w[sources, cols] in those columns: a gather, each
        sum having a single non-zero term. Found once for a frozen array; otherwise
        checked on every call: the rectangle check saw `count` non-zeros, all inside
        it, so when every remembered position still holds one, nothing has moved."""
        if self.found is not None and self.found[1]:
            return self.found[0]
        bits = w.view(f"u{w.itemsize}") if w.dtype.kind == "f" else w
        if self.found is not None:
            rows = self.found[0]
            if np.count_nonzero(bits[rows, self.cols]) == self.count:
                return rows
        self.found = None
        nonzero = block(bits, self.rows, self.cols, self.row_index, self.col_index) != 0
        if np.count_nonzero(nonzero.sum(axis=0) != 1):
            return None
        rows = self.rows[nonzero.argmax(axis=0)]
        self.found = rows, is_frozen(w)
        return rows

    def unchanged(self, w: np.ndarray) -> bool:
        """Whether w is the matrix this was last checked for, with the same bytes."""
        return (
            self.snapshot is not None
            and self.ref() is w
            and w.shape == self.shape
            and w.tobytes() == self.snapshot
        )


# Arrays up to this size keep a copy of their bytes for `Rectangle.unchanged`.
SNAPSHOT_BYTES = 1 << 15


def _snapshot(w: np.ndarray) -> bytes | None:
    return w.tobytes() if w.nbytes <= SNAPSHOT_BYTES else None


def enclosing(indices: np.ndarray) -> slice:
    """The shortest slice holding ascending `indices` (their bounding run)."""
    return slice(int(indices[0]), int(indices[-1]) + 1) if indices.size else slice(0, 0)


# Rectangles by array id; an entry goes when its array is freed (`_forget`).
_RECTANGLES: dict[int, Rectangle] = {}
# Most rectangles remembered (of live arrays); beyond, all are forgotten.
_MAX_RECTANGLES = 4096
caches.register(_RECTANGLES.clear)  # (not _FROZEN below: it says which arrays are frozen)


def _forget(key: int, ref: weakref.ref) -> None:
    """Drops the rectangle of the array with id `key`, just freed (its weak reference
    `ref`), unless a newer array with that id has one already."""
    known = _RECTANGLES.get(key)
    if known is not None and known.ref is ref:
        del _RECTANGLES[key]


def rectangle(w: np.ndarray) -> Rectangle:
    """w's rectangle, remembered across calls and checked as described above (never
    checked again for a frozen array once found)."""
    known = _RECTANGLES.get(id(w))
    if known is not None and known.ref() is w and w.shape == known.shape and is_frozen(w):
        return known
    if known is not None and known.unchanged(w):
        return known
    bits = w.view(f"u{w.itemsize}") if w.dtype.kind == "f" else w
    if known is not None and known.holds_all(w, bits):
        known.snapshot = _snapshot(w)
        return known
    if len(_RECTANGLES) >= _MAX_RECTANGLES:
        _RECTANGLES.clear()
    found = _RECTANGLES[id(w)] = Rectangle(w, bits)
    return found


# id -> weak reference of the arrays `freeze` made (forgotten as they are freed).
_FROZEN: dict[int, weakref.ref] = {}


def freeze(w: np.ndarray) -> np.ndarray:
    """A read-only copy of w whose rectangle, once found, is trusted without checks.

    The copy's memory is an immutable bytes object: numpy refuses to make the copy, any
    view of it, or its base writable, so its values cannot change.
    """
    frozen = np.frombuffer(w.tobytes(), dtype=w.dtype).reshape(w.shape)
    key = id(frozen)
    _FROZEN[key] = weakref.ref(frozen, lambda _, key=key: _FROZEN.pop(key, None))
    return frozen


def thaw(w: np.ndarray) -> np.ndarray:
    """A writable copy of w, checked on every call like any array."""
    return np.array(w, copy=True)


def is_frozen(w: np.ndarray) -> bool:
    """Whether w is an array `freeze` made."""
    ref = _FROZEN.get(id(w))
    return ref is not None and ref() is w


# From this many columns, `columns` gathers with np.take along each row: numpy's fancy
# indexing walks a tall array column by column (256 of 256 columns of 4352 rows: 4.9 ms,
# np.take 0.9 ms), which is faster for a few columns only (3 of 53: 8 us against 22).
TAKE_FROM = 48


def columns(x: np.ndarray, index) -> np.ndarray:
    """x[:, index] [N, C]: a view for a slice, else a gather (see TAKE_FROM)."""
    if isinstance(index, slice) or index.size < TAKE_FROM:
        return x[:, index]
    return np.take(x, index, axis=1)


def block(w: np.ndarray, rows: np.ndarray, cols: np.ndarray, row_span=None, col_span=None):
    """w[rows][:, cols]: a view where the rows or columns form a run, else a gather.
    `row_span`, `col_span`: span(rows), span(cols) where the caller has them."""
    row_span = span(rows) if row_span is None else row_span
    col_span = span(cols) if col_span is None else col_span
    if isinstance(row_span, slice):
        return w[row_span][:, col_span]
    if isinstance(col_span, slice):
        return w[:, col_span][row_span]
    return w[rows][:, cols]  # two 1-D gathers: several times faster than one 2-D gather


def run(indices: np.ndarray):
    """A slice for indices a, a + 1, ..., in that order (any order: `span` needs them
    ascending), else the indices."""
    if indices.size and np.array_equal(indices, np.arange(indices[0], indices[0] + indices.size)):
        return slice(int(indices[0]), int(indices[0]) + indices.size)
    return indices


def span(indices: np.ndarray):
    """A slice for ascending indices without gaps (cheaper to gather and scatter)."""
    if indices.size and indices[-1] - indices[0] + 1 == indices.size:
        return slice(int(indices[0]), int(indices[-1]) + 1)
    return indices
