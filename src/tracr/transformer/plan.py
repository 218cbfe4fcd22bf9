"""Per-layer plans of the sparse forward pass: which slices of which weights to multiply.

A sparse block needs index arrays derived from its weights' rectangles
(`sparse.rectangle`): the residual columns each projection reads, the output columns that
can be non-zero, how these group into heads, where the block writes. Deriving them takes
dozens of small numpy calls, more time than the products themselves for one sequence, so
a plan derives them once per set of rectangles and is reused for as long as every weight's
and every bias's rectangle is the same object. The rectangles are checked on every call
(`sparse.rectangle`): an edit that puts a non-zero outside one makes a new rectangle, and
so a new plan (a block whose arrays are all frozen, `sparse.freeze`, skips even the
lookups while its arrays are the same objects). Plans hold indices only, never weight
values: the products read the weights as they are at each call, so edits inside the
rectangles take effect too.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping

import numpy as np

from tracr import caches
from tracr.transformer import sparse

Linear = Mapping[str, np.ndarray]  # {"w": [I, O], "b": [O]}


# A product may multiply the bounding box of its rows and columns instead: views of x and
# w, the extra rows and columns of w being zero, so the extra products are exact zeros.
# It does so where the extra multiply-adds cost less than the copies the exact rows and
# columns need (gathering x's columns, w's block), counting a copied number as this many
# multiply-adds.
COPY_COST = 16

# A product whose weight has one non-zero per column (a key or value reading one SOp's
# one-hot, a cleanup after a lookup table) is a gather and a scaling instead, from this
# many multiply-adds per row of x (below, the product's call costs less than the gather's).
GATHER_FROM = 64

# Up to SPARSE_X_ROWS rows of x (one sequence, a few), a product of at least
# SPARSE_X_FROM multiply-adds per row of x reads only the columns of x that hold a non-zero
# (one-hot categorical SOps leave most of them zero), where they are at most
# 1 / SPARSE_X_SHARE of its columns: make_sort's query at max_seq_len 16, 17 rows by 257
# by 256, multiplies 18 columns of x by 18 rows of w. Below SPARSE_X_FROM, finding the
# columns costs more than it saves.
SPARSE_X_ROWS = 64
SPARSE_X_SHARE = 8
SPARSE_X_FROM = 16384


class Product:
    """x @ w[rows][:, cols] + b[cols]: one projection restricted to the non-zero part of
    w and b. Every output column outside `cols` is exactly zero."""

    __slots__ = (
        *("rows", "cols", "row_index", "col_index", "reads_all", "bias"),
        *("row_box", "col_box", "box_cols", "box_extra", "x_copies", "w_copies"),
        *("rect", "pick", "gather"),
    )

    def __init__(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        in_dim: int,
        bias_mask: np.ndarray,
        rect: sparse.Rectangle | None = None,
    ):
        """rect: the weight's rectangle, where the product may be a gather (its matrix
        having one non-zero per column, `sparse.Rectangle.sources`)."""
        self.rows, self.cols = rows, cols
        # The gather: cols' positions among rect.cols; the last sources seen and what
        # x's columns and w's rows they make, with w's entries for a frozen w
        # (`_gathered`).
        self.rect = self.pick = self.gather = None
        if rect is not None and rect.one_per_column and rows.size * cols.size >= GATHER_FROM:
            pick = np.searchsorted(rect.cols, cols)
            if np.array_equal(rect.cols[np.minimum(pick, rect.cols.size - 1)], cols):
                self.rect, self.pick = rect, pick
        self.row_index, self.col_index = sparse.span(rows), sparse.span(cols)
        self.reads_all = rows.size == in_dim  # every input column, in order
        self.bias = bool(bias_mask[cols].any())  # whether b[cols] has a non-zero entry
        self.row_box, self.col_box = sparse.enclosing(rows), sparse.enclosing(cols)
        exact = isinstance(self.col_index, slice)
        self.box_cols = None if exact else cols - self.col_box.start  # cols within the box
        area = rows.size * cols.size
        box_area = (self.row_box.stop - self.row_box.start) * (
            self.col_box.stop - self.col_box.start
        )
        self.box_extra = box_area - area  # per row of x
        # Per row of x, the numbers the exact product gathers from x (its rows, when not a
        # run), and from w (its block, when not a view) or from the box's output columns.
        self.x_copies = 0 if isinstance(self.row_index, slice) else rows.size
        exact_view = isinstance(self.row_index, slice) and isinstance(self.col_index, slice)
        self.w_copies = 0 if exact_view else area

    def _boxed(self, n_rows: int, compact: bool) -> bool:
        """Whether multiplying the box costs less than gathering (see COPY_COST)."""
        if not self.box_extra:
            return False
        extra = n_rows * self.box_extra
        if self.box_cols is not None:
            extra += COPY_COST * n_rows * self.box_cols.size  # picking the columns
        copies = self.w_copies + (0 if compact or self.reads_all else n_rows * self.x_copies)
        return extra < COPY_COST * copies

    def _gathered(self, w: np.ndarray, compact: bool):
        """(x's columns, w's entries) whose products are the outputs, or None."""
        sources = self.rect.sources(w)
        if sources is None:
            return None
        known = self.gather
        if known is None or known[0] is not sources or known[1] != compact:
            used = sources[self.pick]  # the row of each output column's one weight
            read = used
            if compact:  # x holds the columns `rows`: each source's place among them
                where = np.minimum(np.searchsorted(self.rows, used), self.rows.size - 1)
                read = where if np.array_equal(self.rows[where], used) else None
            read = None if read is None else sparse.run(read)
            known = self.gather = [sources, compact, read, used, None]
        if known[2] is None:  # a source x does not hold: the product instead
            return None
        weights = known[4]
        if weights is None:
            weights = w[known[3], self.cols]
            if self.rect.found[1]:  # a frozen array's entries cannot change
                known[4] = weights
        return known[2], weights

    def _sparse_x(self, x: np.ndarray, w: np.ndarray, compact: bool) -> np.ndarray | None:
        """x @ w[rows][:, cols] over only the columns of x (rows of w) that hold a
        non-zero in some row of x; None where more than 1 / SPARSE_X_SHARE of them do.
        The terms dropped are exact zeros, as those of w outside its rectangle."""
        xs = x if compact or self.reads_all else sparse.columns(x, self.row_index)
        used = np.flatnonzero(xs.any(axis=0))
        if used.size * SPARSE_X_SHARE > xs.shape[1]:
            return None
        block = w[self.rows[used]][:, self.col_index]
        return xs[:, used] @ block.astype(x.dtype, copy=False)

    def __call__(self, x: np.ndarray, linear: Linear, compact: bool = False) -> np.ndarray:
        """x [N, I] (or [N, len(rows)] when compact: x holds just those columns) ->
        [N, len(cols)], in x's dtype."""
        gathered = None if self.rect is None else self._gathered(linear["w"], compact)
        out = None
        if gathered is not None:
            read, weights = gathered
            out = np.multiply(sparse.columns(x, read), weights.astype(x.dtype, copy=False))
        elif x.shape[0] <= SPARSE_X_ROWS and self.rows.size * self.cols.size >= SPARSE_X_FROM:
            out = self._sparse_x(x, linear["w"], compact)
        if out is None:
            out = self._product(x, linear["w"], compact)
        if self.bias:
            out += linear["b"][self.col_index].astype(x.dtype, copy=False)
        return out

    def _product(self, x: np.ndarray, w: np.ndarray, compact: bool) -> np.ndarray:
        """x @ w[rows][:, cols] by BLAS, over the box or the exact rows and columns."""
        dtype = x.dtype
        if self._boxed(x.shape[0], compact):
            if compact:  # rows exactly, columns through their box
                w = w[:, self.col_box][self.row_index]
            else:
                w = w[self.row_box, self.col_box]
                x = x[:, self.row_box]
            out = x @ w.astype(dtype, copy=False)
            return out if self.box_cols is None else out[:, self.box_cols]
        w = sparse.block(w, self.rows, self.cols, self.row_index, self.col_index)
        if not (compact or self.reads_all):
            x = sparse.columns(x, self.row_index)
        return x @ w.astype(dtype, copy=False)


# From this many rows of x, attention computes q, k and v in one product. Each product
# that reads a few columns of a large x touches nearly every cache line of it; one product
# reads x once.
FUSE_ROWS = 512


class Fused:
    """Products that read the same x, as one: x[:, rows] @ [w_1 | w_2 | ...], each w_i
    restricted to its product's columns, `rows` the union of the products' rows (all of
    the rows of their bounding box where that costs less than gathering x's columns).
    Each w_i's rows outside its own product's are zero, so every sum is the product's.
    Products that may be gathers (`Product.rect`) are left out and called on their own."""

    def __init__(self, products: list[Product], in_dim: int):
        self.products = products
        self.joint = [i for i, p in enumerate(products) if p.rect is None]
        joint = [products[i] for i in self.joint]
        if not joint:
            return
        rows = np.unique(np.concatenate([p.rows for p in joint]))
        width = sum(p.cols.size for p in joint)
        box = sparse.enclosing(rows)
        extra = (box.stop - box.start - rows.size) * width  # multiply-adds per row of x
        self.read = sparse.span(rows)
        if rows.size == in_dim:
            self.read = slice(None)  # every row, in order
        elif not isinstance(self.read, slice) and extra < COPY_COST * rows.size:
            self.read = box
        ends = np.cumsum([p.cols.size for p in joint])
        self.parts = [slice(int(a), int(b)) for a, b in zip([0, *ends[:-1]], ends)]

    def __call__(self, x: np.ndarray, linears: list[Linear]) -> list[np.ndarray]:
        """x [N, I] -> each product's output [N, len(cols)], in order."""
        dtype = x.dtype
        outs: list = [None] * len(self.products)
        if self.joint:
            blocks = [linears[i]["w"][self.read][:, self.products[i].col_index] for i in self.joint]
            out = x[:, self.read] @ np.concatenate(blocks, axis=1).astype(dtype, copy=False)
            for i, part in zip(self.joint, self.parts):
                outs[i] = result = out[:, part]
                p = self.products[i]
                if p.bias:
                    result += linears[i]["b"][p.col_index].astype(dtype, copy=False)
        for i, p in enumerate(self.products):
            if outs[i] is None:
                outs[i] = p(x, linears[i])
        return outs


def _head_runs(cols: np.ndarray, d_head: int) -> list[tuple[int, slice]]:
    """(head, the run of positions in `cols` that belong to it), for ascending `cols`."""
    heads = cols // d_head
    starts = np.flatnonzero(np.diff(heads, prepend=-1))
    ends = [*starts[1:], cols.size]
    return [(int(heads[a]), slice(int(a), int(b))) for a, b in zip(starts, ends)]


def _out_mask(w: sparse.Rectangle, b: sparse.Rectangle) -> np.ndarray:
    """[O] bool: the output columns with a weight or a bias."""
    return w.col_mask | b.col_mask


class AttentionPlan:
    """A multi-head attention block on its non-zero parts.

    query, key: the q and k columns where both can be non-zero (q.k sums over these only),
    grouped into heads by `qk_heads`; value: the v columns the output matrix reads, grouped
    by `v_heads` (their positions in v, which are also their positions in the mixed values
    the output reads); linear: mixed values -> the output columns `out_index`."""

    def __init__(self, rects: tuple[sparse.Rectangle, ...], d_model: int, d_head: int):
        q, q_b, k, k_b, v, v_b, o, o_b = rects
        qk_cols = np.flatnonzero(_out_mask(q, q_b) & _out_mask(k, k_b))
        self.query = Product(q.rows, qk_cols, d_model, q_b.col_mask, q)
        self.key = Product(k.rows, qk_cols, d_model, k_b.col_mask, k)
        self.qk_heads = _head_runs(qk_cols, d_head)  # empty: every logit is 0
        v_cols = np.flatnonzero(_out_mask(v, v_b) & o.row_mask)  # values that reach the output
        self.value = Product(v.rows, v_cols, d_model, v_b.col_mask, v)
        self.v_heads = _head_runs(v_cols, d_head)
        out_cols = np.flatnonzero(_out_mask(o, o_b))
        self.linear = Product(v_cols, out_cols, o.row_mask.size, o_b.col_mask, o)
        self.out_index = sparse.span(out_cols)
        self.writes = out_cols.size > 0
        # The projections of x the block needs, by parameter name; for many rows, `fused`.
        self.projections = {
            **({"query": self.query, "key": self.key} if self.qk_heads else {}),
            **({"value": self.value} if self.writes else {}),
        }
        projections = list(self.projections.values())
        self.fused = Fused(projections, d_model) if projections else None


class MLPPlan:
    """An MLP block on its non-zero parts: first computes the hidden units that have a
    weight or bias and that the second matrix reads (when activation(0) = 0; otherwise
    every unit the second reads, `expand` placing the computed ones among them), second
    maps them to the output columns `out_index`."""

    def __init__(
        self, rects: tuple[sparse.Rectangle, ...], d_model: int, zero_at_zero: bool, width
    ):
        first, first_b, second, second_b = rects
        used = second.row_mask.copy()  # hidden units something reads
        computed = _out_mask(first, first_b)
        if zero_at_zero:
            used &= computed  # the others are activation(0) = 0
        if width is not None:  # skip hidden units past `width`
            used[width:] = False
        first_cols = np.flatnonzero(computed & used)
        used_units = np.flatnonzero(used)
        self.first = Product(first.rows, first_cols, d_model, first_b.col_mask, first)
        self.n_used = used_units.size
        self.expand = None  # every used unit is computed
        if first_cols.size < used_units.size:  # units without weights or bias: activation(0)
            self.expand = np.searchsorted(used_units, first_cols)
        out_cols = np.flatnonzero(_out_mask(second, second_b))
        self.second = Product(used_units, out_cols, used.size, second_b.col_mask, second)
        self.out_index = sparse.span(out_cols)
        self.writes = out_cols.size > 0


_PLANS: dict[tuple, AttentionPlan | MLPPlan] = {}
# Plans for arrays that no longer exist are dropped by clearing once this many are kept.
_MAX_PLANS = 1024


def _arrays(linears: list[Linear]) -> list[np.ndarray]:
    """Each linear's weight and bias, in order."""
    return [a for linear in linears for a in (linear["w"], linear["b"])]


# Plans of blocks whose weights and biases are all frozen (`sparse.freeze`), by the ids of
# those arrays: (weak references to the arrays, their shapes, the plan). Frozen arrays
# cannot change, so while each is the very array the plan was made for, in the same shape,
# their rectangles are the same and need no lookup (a dozen per layer add up for one
# sequence through a small model).
_FROZEN_PLANS: dict[tuple, tuple[list, list, AttentionPlan | MLPPlan]] = {}
caches.register(_PLANS.clear)
caches.register(_FROZEN_PLANS.clear)


def _frozen_plan(key: tuple, arrays: list[np.ndarray]):
    known = _FROZEN_PLANS.get(key)
    if known is None:
        return None
    refs, shapes, plan = known
    for ref, shape, a in zip(refs, shapes, arrays):
        if ref() is not a or a.shape != shape:
            return None
    return plan


def _remember_frozen(key: tuple, arrays: list[np.ndarray], plan) -> None:
    if not all(map(sparse.is_frozen, arrays)):
        return
    if len(_FROZEN_PLANS) >= _MAX_PLANS:
        _FROZEN_PLANS.clear()
    _FROZEN_PLANS[key] = ([weakref.ref(a) for a in arrays], [a.shape for a in arrays], plan)


def _remember(key: tuple, plan):
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    _PLANS[key] = plan
    return plan


def attention(params: Mapping[str, Linear], prefix: str, d_head: int) -> AttentionPlan:
    """The plan of attention block `prefix` (".../attn") for its weights as they are now."""
    linears = [params[f"{prefix}/{name}"] for name in ("query", "key", "value", "linear")]
    arrays = _arrays(linears)
    frozen_key = ("attn", d_head, *map(id, arrays))
    plan = _frozen_plan(frozen_key, arrays)
    if plan is not None:
        return plan
    rects = tuple(map(sparse.rectangle, arrays))
    key = ("attn", d_head, *rects)  # rectangles compare by identity
    plan = _PLANS.get(key)
    if plan is None:
        d_model = linears[0]["w"].shape[0]
        plan = _remember(key, AttentionPlan(rects, d_model, d_head))
    _remember_frozen(frozen_key, arrays, plan)
    return plan


def mlp(
    params: Mapping[str, Linear], prefix: str, activation: Callable, width: int | None
) -> MLPPlan:
    """The plan of MLP block `prefix` (".../mlp") for its weights as they are now."""
    arrays = _arrays([params[f"{prefix}/linear_1"], params[f"{prefix}/linear_2"]])
    frozen_key = ("mlp", activation, width, *map(id, arrays))
    plan = _frozen_plan(frozen_key, arrays)
    if plan is not None:
        return plan
    rects = tuple(map(sparse.rectangle, arrays))
    key = ("mlp", activation, width, *rects)
    plan = _PLANS.get(key)
    if plan is None:
        zero_at_zero = float(np.asarray(activation(np.zeros(1)))[0]) == 0
        d_model = arrays[0].shape[0]
        plan = _remember(key, MLPPlan(rects, d_model, zero_at_zero, width))
    _remember_frozen(frozen_key, arrays, plan)
    return plan
