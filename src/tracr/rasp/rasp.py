"""The RASP language embedded in Python, and its reference evaluator.

RASP (Weiss et al. 2021, https://arxiv.org/abs/2106.06981) describes what a transformer computes
with two kinds of expression:

* an ``SOp`` (sequence operation) maps an input sequence to a sequence of values of the same
  length; it stands for one subspace of the residual stream;
* a ``Selector`` maps an input sequence to a boolean matrix ``m[query][key]``; it stands for the
  pattern of one attention head.

Expressions are built from the primitives ``tokens``, ``indices`` and ``length`` with ``Map``,
``SequenceMap``, ``Select``, ``Aggregate``, ``SelectorWidth`` and friends, and are evaluated on a
concrete input with ``evaluate(expr, xs)`` or simply ``expr(xs)``.

The public API follows DeepMind's Tracr ``tracr/rasp/rasp.py`` (our compatibility contract).
Where we deliberately behave differently, it is listed here:

1. ``Aggregate`` averages any selection of numbers (``int``, ``float`` and ``bool`` alike); a single
   selected value is returned unchanged; nothing selected gives the default.
2. A non-numerical ``Aggregate`` that selects two or more positions for one query raises
   ``EvaluationError`` naming the Aggregate's label and the selected values.
3. ``evaluate`` walks the expression graph iteratively (no recursion limit on deep programs) and
   evaluates every shared subexpression once per call (memoised by object identity, so evaluating
   never assigns ``unique_id``s and never changes the labels a later compilation sees).
4. A ``Map``/``SequenceMap`` function or a ``Select`` predicate that raises is reported as
   ``EvaluationError`` (a ``ValueError``) naming the expression's label and the offending input
   value(s), chained ``from`` the original exception.
5. Constructors check their arguments and raise ``TypeError`` naming what was expected and what was
   given (the reference uses ``assert``, or fails later during evaluation).
6. ``annotate``/``named``/``numerical``/... always return a copy with a fresh ``unique_id`` (the
   reference's copy keeps the old id if it had already been read), so distinct expression objects
   never share a label, apart from copies of the primitives, whose labels are fixed.
7. Merging ``Map(f, Map(g, x))`` into one Map keeps the None rule: where ``g`` gives ``None``, the
   merged Map gives ``None`` without calling ``f``, exactly like the unmerged pair.
8. Comparisons between two SOps (``a == b``, ``a < b``, ...) build a ``SequenceMap``; the reference
   builds a meaningless Map comparing each value with the SOp object itself.
9. ``other | sop`` computes ``other or x`` (the reference computes ``x or other``, unlike every
   other reflected operator). An operator between an SOp and a Selector raises ``TypeError``.
10. SOps are hashable (by identity) although ``==`` builds an expression.
11. Evaluator dispatch follows the class hierarchy, so subclasses of ``Map`` etc. evaluate.
"""

from __future__ import annotations

import abc
import collections.abc
import copy as _copy
import enum
import itertools
import logging
import numbers
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

_log = logging.getLogger(__name__)

SelectorValue = list[list[bool]]
NumericValue = int | float
Value = int | float | str | bool | None
VT = TypeVar("VT", bound=Value)
RASPExprT = TypeVar("RASPExprT", bound="RASPExpr")
SOpT = TypeVar("SOpT", bound="SOp")
T = TypeVar("T")

_NAME_KEY = "name"
_ENCODING_KEY = "encoding"


class EvaluationError(ValueError):
    """A RASP expression could not be evaluated on the given input."""


# ---------------------------------------------------------------------------------------------
# Argument checking.


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(value).__name__} {text}"


def _check_instance(
    value: object, expected: type | tuple[type, ...], where: str, what: str
) -> None:
    if not isinstance(value, expected):
        names = (
            " or ".join(t.__name__ for t in expected)
            if isinstance(expected, tuple)
            else expected.__name__
        )
        raise TypeError(f"{where}: {what} must be a {names}, got {_describe(value)}")


def _check_function(value: object, where: str, what: str) -> None:
    if not callable(value) or isinstance(value, RASPExpr):
        raise TypeError(
            f"{where}: {what} must be a function on values (not a RASP expression), "
            f"got {_describe(value)}"
        )


# ---------------------------------------------------------------------------------------------
# Annotations.


class Annotator(Protocol):
    """Computes the default value of one annotation key for an expression."""

    def __call__(self, expr: RASPExpr) -> Any: ...


# Default annotators, keyed by annotation name. An expression without an explicit value for a key
# asks the annotator the first time the key is read. Add entries to give custom defaults.
DEFAULT_ANNOTATORS: dict[str, Annotator] = {}


class _Annotations(collections.abc.Mapping):
    """Read-only mapping of an expression's annotations, filling in defaults on first read."""

    __slots__ = ("_expr", "_values")

    def __init__(self, expr: RASPExpr, values: Mapping[str, Any]):
        self._expr = expr
        self._values: dict[str, Any] = dict(values)

    def __getitem__(self, key: str) -> Any:
        if key in self._values:
            return self._values[key]
        annotator = DEFAULT_ANNOTATORS.get(key)
        if annotator is None:
            raise KeyError(
                f"{type(self._expr).__name__} has no annotation {key!r}; it has "
                f"{sorted(self._values)} and defaults exist for {sorted(DEFAULT_ANNOTATORS)}"
            )
        value = annotator(self._expr)
        self._values[key] = value
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"annotations({self._values!r})"


# ---------------------------------------------------------------------------------------------
# Expressions.


class _ExprMeta(abc.ABCMeta):
    """ABCMeta (abstract methods stay enforced) with the plain type checks: the compiler
    asks isinstance of expressions thousands of times per compile, and ABCMeta's checks,
    which look for registered virtual subclasses (expressions have none), cost ~10x."""

    __instancecheck__ = type.__instancecheck__
    __subclasscheck__ = type.__subclasscheck__


class RASPExpr(metaclass=_ExprMeta):
    """Base class of every RASP expression (SOps and Selectors)."""

    _ids = itertools.count(1)

    def __init__(self) -> None:
        self._annotations = _Annotations(self, {})
        self._unique_id: int | None = None

    @abc.abstractmethod
    def __call__(self, xs: Sequence[Value]) -> list[Value] | SelectorValue:
        """Evaluates this expression on the input `xs` with the default evaluator."""

    @property
    def annotations(self) -> Mapping[str, Any]:
        """This expression's annotations (read-only; use `annotate` to add some)."""
        return self._annotations

    @annotations.setter
    def annotations(self, annotations: Mapping[str, Any]) -> None:
        self._annotations = _Annotations(self, annotations)
        self.__dict__.pop("_label", None)  # the name may have changed

    @property
    def name(self) -> str:
        """The `name` annotation; by default the snake-case kind of expression, e.g. `map`."""
        return self.annotations[_NAME_KEY]

    @property
    @abc.abstractmethod
    def children(self) -> Sequence[RASPExpr]:
        """The expressions this one is computed from, in a fixed order."""

    @property
    def unique_id(self) -> int:
        """A process-wide unique number, assigned (counting from 1) when first read."""
        uid = self.__dict__.get("_unique_id")
        if uid is None:
            uid = next(RASPExpr._ids)
            self._unique_id = uid
        return uid

    @property
    def label(self) -> str:
        """`{name}_{unique_id}`: distinct for distinct expressions; used as the node id."""
        fields = self.__dict__
        cached = fields.get("_label")  # the compiler reads labels everywhere
        if cached is not None and cached[0] == fields.get("_unique_id"):
            return cached[1]
        uid = self.unique_id
        cached = self._label = (uid, f"{self.name}_{uid}")
        return cached[1]

    def copy(self: RASPExprT) -> RASPExprT:
        """A shallow copy (same children and functions) with a fresh unique id."""
        new = _copy.copy(self)
        new._unique_id = None
        new.__dict__.pop("_label", None)
        new._annotations = _Annotations(new, self._annotations._values)
        return new

    def named(self: RASPExprT, name: str) -> RASPExprT:
        """A copy of this expression with the given name."""
        return annotate(self, name=name)

    def annotated(self: RASPExprT, **annotations: Any) -> RASPExprT:
        """A copy of this expression with the given annotations added."""
        return annotate(self, **annotations)

    def __repr__(self) -> str:
        uid = self.__dict__.get("_unique_id")
        suffix = "" if uid is None else f", unique_id={uid}"
        return f"{type(self).__name__}(name={self.name!r}{suffix})"


def annotate(expr: RASPExprT, **annotations: Any) -> RASPExprT:
    """A copy of `expr` whose annotations are `expr`'s updated with `annotations`."""
    new = expr.copy()
    new.annotations = {**expr.annotations, **annotations}
    return new


# ---------------------------------------------------------------------------------------------
# SOps.


def _and(x: Any, y: Any) -> Any:
    return x and y


def _or(x: Any, y: Any) -> Any:
    return x or y


def _elementwise(op: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    """`left op right` position by position; at least one side is an SOp, the other a constant.

    Returns NotImplemented for a Selector operand, so Python reports the mismatch.
    """
    for side in (left, right):
        if isinstance(side, RASPExpr) and not isinstance(side, SOp):
            return NotImplemented
    if isinstance(left, SOp) and isinstance(right, SOp):
        return SequenceMap(op, left, right)
    if isinstance(left, SOp):
        return Map(lambda x: op(x, right), left)
    return Map(lambda x: op(left, x), right)


class SOp(RASPExpr):
    """A sequence operation: input sequence -> one value per position.

    Python operators build new SOps: with a constant operand a `Map`, with two SOps a
    `SequenceMap` (`+ - * / & |` and the comparisons). `~sop` is `Map(not x)`.
    """

    def __call__(self, xs: Sequence[Value]) -> list[Value]:
        return evaluate(self, xs)  # type: ignore[return-value]

    def __lt__(self, other: Any) -> SOp:
        return _elementwise(operator.lt, self, other)

    def __le__(self, other: Any) -> SOp:
        return _elementwise(operator.le, self, other)

    def __eq__(self, other: Any) -> SOp:  # type: ignore[override]
        return _elementwise(operator.eq, self, other)

    def __ne__(self, other: Any) -> SOp:  # type: ignore[override]
        return _elementwise(operator.ne, self, other)

    def __gt__(self, other: Any) -> SOp:
        return _elementwise(operator.gt, self, other)

    def __ge__(self, other: Any) -> SOp:
        return _elementwise(operator.ge, self, other)

    __hash__ = RASPExpr.__hash__

    def __add__(self, other: Any) -> SOp:
        return _elementwise(operator.add, self, other)

    def __radd__(self, other: Any) -> SOp:
        return _elementwise(operator.add, other, self)

    def __sub__(self, other: Any) -> SOp:
        return _elementwise(operator.sub, self, other)

    def __rsub__(self, other: Any) -> SOp:
        return _elementwise(operator.sub, other, self)

    def __mul__(self, other: Any) -> SOp:
        return _elementwise(operator.mul, self, other)

    def __rmul__(self, other: Any) -> SOp:
        return _elementwise(operator.mul, other, self)

    def __truediv__(self, other: Any) -> SOp:
        return _elementwise(operator.truediv, self, other)

    def __rtruediv__(self, other: Any) -> SOp:
        return _elementwise(operator.truediv, other, self)

    def __and__(self, other: Any) -> SOp:
        return _elementwise(_and, self, other)

    def __rand__(self, other: Any) -> SOp:
        return _elementwise(_and, other, self)

    def __or__(self, other: Any) -> SOp:
        return _elementwise(_or, self, other)

    def __ror__(self, other: Any) -> SOp:
        return _elementwise(_or, other, self)

    def __invert__(self) -> SOp:
        return Map(operator.not_, self)


class _Primitive(SOp):
    """An SOp read directly off the input; its label is its fixed kind, never numbered."""

    _kind: str = ""

    @property
    def children(self) -> Sequence[RASPExpr]:
        return []

    @property
    def label(self) -> str:
        return self._kind

    def __repr__(self) -> str:
        return self._kind


class TokensType(_Primitive):
    """The input tokens themselves."""

    _kind = "tokens"


class IndicesType(_Primitive):
    """The position of each token: 0, 1, ..., n - 1."""

    _kind = "indices"


class LengthType(_Primitive):
    """The input length n, at every position."""

    _kind = "length"


tokens = TokensType()
indices = IndicesType()
length = LengthType()


def _compose_skipping_none(
    outer: Callable[[Value], Value], inner: Callable[[Value], Value]
) -> Callable[[Value], Value]:
    def composed(x: Value) -> Value:
        y = inner(x)
        return None if y is None else outer(y)

    return composed


class Map(SOp):
    """`f` applied to each value of `inner`; `None` values stay `None` without calling `f`.

    With `simplify` (the default), a Map of a Map becomes one Map whose function is the
    composition, so `((tokens * 2) + 2) / 2` is a single Map of `tokens`.
    """

    def __init__(self, f: Callable[[Value], Value], inner: SOp, simplify: bool = True):
        super().__init__()
        _check_function(f, "Map", "f")
        _check_instance(inner, SOp, "Map", "inner")
        if simplify and isinstance(inner, Map):
            f = _compose_skipping_none(f, inner.f)
            inner = inner.inner
        self.f = f
        self.inner = inner

    @property
    def children(self) -> Sequence[RASPExpr]:
        return [self.inner]


class SequenceMap(SOp):
    """`f(x, y)` for the values `x` of `fst` and `y` of `snd` at each position.

    Where either value is `None`, the result is `None` without calling `f`.
    """

    def __init__(self, f: Callable[[Value, Value], Value], fst: SOp, snd: SOp):
        super().__init__()
        where = type(self).__name__
        _check_function(f, where, "f")
        _check_instance(fst, SOp, where, "fst")
        _check_instance(snd, SOp, where, "snd")
        if fst is snd:
            _log.warning(
                "A %s whose two inputs are the same SOp is better written as a Map.", where
            )
        self.f = f
        self.fst = fst
        self.snd = snd

    @property
    def children(self) -> Sequence[RASPExpr]:
        return [self.fst, self.snd]


class LinearSequenceMap(SequenceMap):
    """`fst_fac * x + snd_fac * y` at each position (compiles to a linear layer)."""

    def __init__(self, fst: SOp, snd: SOp, fst_fac: float, snd_fac: float):
        for what, fac in (("fst_fac", fst_fac), ("snd_fac", snd_fac)):
            if not isinstance(fac, numbers.Real):
                raise TypeError(f"LinearSequenceMap: {what} must be a number, got {_describe(fac)}")
        super().__init__(lambda x, y: fst_fac * x + snd_fac * y, fst, snd)
        self.fst_fac = fst_fac
        self.snd_fac = snd_fac


class Full(SOp):
    """The constant `fill` at every position."""

    def __init__(self, fill: Value):
        super().__init__()
        if isinstance(fill, RASPExpr):
            raise TypeError(f"Full: fill must be a value, got {_describe(fill)}")
        self.fill = fill

    @property
    def children(self) -> Sequence[RASPExpr]:
        return []


def sop_not(sop: SOp) -> SOp:
    """`not x` at each position."""
    return Map(operator.not_, sop)


class ConstantSOp(SOp, Generic[VT]):
    """A fixed sequence of values, whatever the input (for tests).

    With `check_length`, evaluating on an input of another length is an error.
    """

    def __init__(self, value: Sequence[VT], check_length: bool = True):
        super().__init__()
        if not isinstance(value, Sequence) or isinstance(value, RASPExpr):
            raise TypeError(f"ConstantSOp: value must be a sequence, got {_describe(value)}")
        self.value = value
        self.check_length = check_length

    @property
    def children(self) -> Sequence[RASPExpr]:
        return []


# ---------------------------------------------------------------------------------------------
# Selectors.


class Predicate(Protocol):
    """A two-place boolean predicate on (key, query) values, for `Select`."""

    def __call__(self, key: Value, query: Value) -> bool: ...


class Comparison(enum.Enum):
    """The predicates of RASP's `select`. Called as `predicate(key, query)`.

    `LT` selects keys smaller than the query (`key < query`), `GT` keys greater, and so on.
    """

    EQ = "=="
    LT = "<"
    LEQ = "<="
    GT = ">"
    GEQ = ">="
    NEQ = "!="
    TRUE = "True"
    FALSE = "False"

    def __call__(self, key: Value, query: Value) -> bool:
        if key is None:
            raise ValueError(f"Comparison.{self.name}: key is None")
        if query is None:
            raise ValueError(f"Comparison.{self.name}: query is None")
        return _COMPARATORS[self](key, query)


_COMPARATORS: dict[Comparison, Callable[[Any, Any], bool]] = {
    Comparison.EQ: operator.eq,
    Comparison.LT: operator.lt,
    Comparison.LEQ: operator.le,
    Comparison.GT: operator.gt,
    Comparison.GEQ: operator.ge,
    Comparison.NEQ: operator.ne,
    Comparison.TRUE: lambda key, query: True,
    Comparison.FALSE: lambda key, query: False,
}


class Selector(RASPExpr):
    """A boolean matrix `m[query][key]` over positions; `&`, `|` and `~` combine selectors."""

    def __call__(self, xs: Sequence[Value]) -> SelectorValue:
        return evaluate(self, xs)  # type: ignore[return-value]

    def __and__(self, other: Selector) -> Selector:
        return selector_and(self, other)

    def __rand__(self, other: Selector) -> Selector:
        return selector_and(other, self)

    def __or__(self, other: Selector) -> Selector:
        return selector_or(self, other)

    def __ror__(self, other: Selector) -> Selector:
        return selector_or(other, self)

    def __invert__(self) -> Selector:
        return selector_not(self)


class Select(Selector):
    """`m[q][k] = predicate(keys[k], queries[q])`."""

    def __init__(self, keys: SOp, queries: SOp, predicate: Predicate):
        super().__init__()
        _check_instance(keys, SOp, "Select", "keys")
        _check_instance(queries, SOp, "Select", "queries")
        _check_function(predicate, "Select", "predicate")
        self.keys = keys
        self.queries = queries
        self.predicate = predicate

    @property
    def children(self) -> Sequence[RASPExpr]:
        return [self.keys, self.queries]


class ConstantSelector(Selector):
    """A fixed boolean matrix, whatever the input (for tests)."""

    def __init__(self, value: SelectorValue, check_length: bool = True):
        super().__init__()
        if not isinstance(value, Sequence) or not all(isinstance(row, Sequence) for row in value):
            raise TypeError(
                f"ConstantSelector: value must be a sequence of rows, got {_describe(value)}"
            )
        self.value = value
        self.check_length = check_length

    @property
    def children(self) -> Sequence[RASPExpr]:
        return []


class SelectorWidth(SOp):
    """The number of keys the selector selects for each query."""

    def __init__(self, selector: Selector):
        super().__init__()
        _check_instance(selector, Selector, "SelectorWidth", "selector")
        self.selector = selector

    @property
    def children(self) -> Sequence[RASPExpr]:
        return [self.selector]


class _SelectorPair(Selector):
    def __init__(self, fst: Selector, snd: Selector):
        super().__init__()
        _check_instance(fst, Selector, type(self).__name__, "fst")
        _check_instance(snd, Selector, type(self).__name__, "snd")
        self.fst = fst
        self.snd = snd

    @property
    def children(self) -> Sequence[RASPExpr]:
        return [self.fst, self.snd]


class SelectorAnd(_SelectorPair):
    """Elementwise `and` of two selectors."""


class SelectorOr(_SelectorPair):
    """Elementwise `or` of two selectors."""


class SelectorNot(Selector):
    """Elementwise `not` of a selector."""

    def __init__(self, inner: Selector):
        super().__init__()
        _check_instance(inner, Selector, "SelectorNot", "inner")
        self.inner = inner

    @property
    def children(self) -> Sequence[RASPExpr]:
        return [self.inner]


def selector_not(inner: Selector, simplify: bool = True) -> Selector:
    """`~inner`: with `simplify`, the negation of a Select is one Select."""
    if simplify and isinstance(inner, Select):
        predicate = inner.predicate
        return Select(inner.keys, inner.queries, lambda key, query: not predicate(key, query))
    return SelectorNot(inner)


def selector_and(fst: Selector, snd: Selector, simplify: bool = True) -> Selector:
    """`fst & snd`: with `simplify`, one Select where both are Selects on common inputs."""
    if simplify and isinstance(fst, Select) and isinstance(snd, Select):
        merged = _merge_selects(fst, snd, _and)
        if merged is not None:
            return merged
    return SelectorAnd(fst, snd)


def selector_or(fst: Selector, snd: Selector, simplify: bool = True) -> Selector:
    """`fst | snd`: with `simplify`, one Select where both are Selects on common inputs."""
    if simplify and isinstance(fst, Select) and isinstance(snd, Select):
        merged = _merge_selects(fst, snd, _or)
        if merged is not None:
            return merged
    return SelectorOr(fst, snd)


def _with_key(predicate: Predicate, key: Value) -> Predicate:
    return lambda _key, query: predicate(key, query)


def _with_query(predicate: Predicate, query: Value) -> Predicate:
    return lambda key, _query: predicate(key, query)


def _merge_selects(
    fst: Select, snd: Select, combine: Callable[[bool, bool], bool]
) -> Select | None:
    """One Select computing `combine(fst, snd)`, or None when their inputs differ.

    Two Selects can share one Select when their keys are the same SOp and their queries are the
    same SOp. A `Full` input matches anything: its constant is baked into its own predicate, and
    the other Select's input is used.
    """
    fst_pred: Predicate = fst.predicate
    snd_pred: Predicate = snd.predicate
    keys: SOp | None = None
    queries: SOp | None = None
    if isinstance(fst.keys, Full):
        fst_pred, keys = _with_key(fst_pred, fst.keys.fill), snd.keys
    if isinstance(snd.keys, Full):
        snd_pred, keys = _with_key(snd_pred, snd.keys.fill), fst.keys
    if isinstance(fst.queries, Full):
        fst_pred, queries = _with_query(fst_pred, fst.queries.fill), snd.queries
    if isinstance(snd.queries, Full):
        snd_pred, queries = _with_query(snd_pred, snd.queries.fill), fst.queries
    if fst.keys is snd.keys:
        keys = fst.keys
    if fst.queries is snd.queries:
        queries = fst.queries
    if keys is None or queries is None:
        return None

    def predicate(key: Value, query: Value) -> bool:
        return combine(fst_pred(key, query), snd_pred(key, query))

    return Select(keys, queries, predicate)


class Aggregate(SOp, Generic[VT]):
    """For each query, the values of `sop` at the positions the selector selects, combined.

    Nothing selected gives `default`; one selected value is returned as it is; several
    selected numbers give their mean. Several non-numbers is an error.
    """

    def __init__(self, selector: Selector, sop: SOp, default: VT | None = None):
        super().__init__()
        _check_instance(selector, Selector, "Aggregate", "selector")
        _check_instance(sop, SOp, "Aggregate", "sop")
        if default is not None and not isinstance(default, (str, numbers.Real)):
            raise TypeError(
                f"Aggregate: default must be None, a number or a string, got {_describe(default)}"
            )
        self.selector = selector
        self.sop = sop
        self.default = default

    @property
    def children(self) -> Sequence[RASPExpr]:
        return [self.selector, self.sop]


# ---------------------------------------------------------------------------------------------
# Encodings.


class Encoding(enum.Enum):
    """How an SOp is stored in the residual stream: one-hot per value, or as one number."""

    CATEGORICAL = "categorical"
    NUMERICAL = "numerical"


def numerical(sop: SOpT) -> SOpT:
    """A copy of `sop` annotated to be numerically encoded."""
    return annotate(sop, encoding=Encoding.NUMERICAL)


def categorical(sop: SOpT) -> SOpT:
    """A copy of `sop` annotated to be categorically encoded."""
    return annotate(sop, encoding=Encoding.CATEGORICAL)


def get_encoding(sop: SOp) -> Encoding:
    """The encoding of `sop` (categorical unless annotated otherwise)."""
    known = sop._annotations._values.get(_ENCODING_KEY)  # read often by the compiler
    return sop.annotations[_ENCODING_KEY] if known is None else known


def is_numerical(sop: SOp) -> bool:
    """Whether `sop` is numerically encoded."""
    return get_encoding(sop) is Encoding.NUMERICAL


def is_categorical(sop: SOp) -> bool:
    """Whether `sop` is categorically encoded."""
    return get_encoding(sop) is Encoding.CATEGORICAL


def default_encoding(expr: RASPExpr) -> Encoding:
    """The default `encoding` annotation: categorical, for SOps only."""
    if not isinstance(expr, SOp):
        raise TypeError(f"only SOps have an encoding, got {_describe(expr)}")
    return Encoding.CATEGORICAL


DEFAULT_ANNOTATORS[_ENCODING_KEY] = default_encoding


# ---------------------------------------------------------------------------------------------
# Default names.

_DEFAULT_NAMES: dict[type, str] = {
    TokensType: "tokens",
    IndicesType: "indices",
    LengthType: "length",
    LinearSequenceMap: "linear_sequence_map",
    SequenceMap: "sequence_map",
    Map: "map",
    Full: "full",
    ConstantSOp: "constant_sop",
    SelectorWidth: "selector_width",
    Aggregate: "aggregate",
    SOp: "sop",
    Select: "select",
    SelectorAnd: "selector_and",
    SelectorOr: "selector_or",
    SelectorNot: "selector_not",
    ConstantSelector: "constant_selector",
    Selector: "selector",
}


def default_name(expr: RASPExpr) -> str:
    """The default `name` annotation: the kind of expression of its most specific class."""
    for cls in type(expr).__mro__:
        name = _DEFAULT_NAMES.get(cls)
        if name is not None:
            return name
    raise NotImplementedError(f"no default name for {type(expr).__name__}")


DEFAULT_ANNOTATORS[_NAME_KEY] = default_name


# ---------------------------------------------------------------------------------------------
# Evaluation.


class RASPEvaluator(abc.ABC):
    """Something that computes the value of a RASP expression on an input."""

    @abc.abstractmethod
    def evaluate(self, expr: RASPExpr, xs: Sequence[Value]) -> list[Value] | SelectorValue:
        """The value of `expr` on input `xs`: a list for an SOp, a matrix for a Selector."""


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) or isinstance(value, numbers.Real)


class DefaultRASPEvaluator(RASPEvaluator):
    """The standard semantics of RASP.

    `evaluate` visits the expression graph without recursion, computing each distinct
    expression once per call; `evaluate_node` computes one expression from its children's values
    and is the hook subclasses override (see `causal_eval`).
    """

    _HANDLERS: dict[type, str] = {
        TokensType: "_eval_tokens",
        IndicesType: "_eval_indices",
        LengthType: "_eval_length",
        SequenceMap: "_eval_sequence_map",
        Map: "_eval_map",
        Full: "_eval_full",
        ConstantSOp: "_eval_constant_sop",
        SelectorWidth: "_eval_selector_width",
        Aggregate: "_eval_aggregate",
        Select: "_eval_select",
        SelectorAnd: "_eval_selector_and",
        SelectorOr: "_eval_selector_or",
        SelectorNot: "_eval_selector_not",
        ConstantSelector: "_eval_constant_selector",
    }

    def evaluate(self, expr: RASPExpr, xs: Sequence[Value]) -> list[Value] | SelectorValue:
        if not isinstance(expr, RASPExpr):
            raise TypeError(f"evaluate: expr must be a RASPExpr, got {_describe(expr)}")
        xs = list(xs)
        done: dict[int, Any] = {}
        open_ids: set[int] = set()
        stack: list[tuple[RASPExpr, bool]] = [(expr, False)]
        while stack:
            node, children_done = stack.pop()
            key = id(node)
            if children_done:
                args = [done[id(child)] for child in node.children]
                done[key] = self.evaluate_node(node, xs, args)
                open_ids.discard(key)
                continue
            if key in done:
                continue
            if key in open_ids:
                raise ValueError(f"{node.label} depends on itself")
            open_ids.add(key)
            stack.append((node, True))
            stack.extend(
                (child, False) for child in reversed(node.children) if id(child) not in done
            )
        return done[id(expr)]

    def evaluate_node(
        self, expr: RASPExpr, xs: list[Value], child_values: list[Any]
    ) -> list[Value] | SelectorValue:
        """The value of `expr` on `xs`, given the values of `expr.children` in order."""
        for cls in type(expr).__mro__:
            method = self._HANDLERS.get(cls)
            if method is not None:
                return getattr(self, method)(expr, xs, *child_values)
        raise NotImplementedError(f"no evaluation rule for {type(expr).__name__} {expr!r}")

    # SOps.

    def _eval_tokens(self, expr: TokensType, xs: list[Value]) -> list[Value]:
        return list(xs)

    def _eval_indices(self, expr: IndicesType, xs: list[Value]) -> list[Value]:
        return list(range(len(xs)))

    def _eval_length(self, expr: LengthType, xs: list[Value]) -> list[Value]:
        return [len(xs)] * len(xs)

    def _eval_full(self, expr: Full, xs: list[Value]) -> list[Value]:
        return [expr.fill] * len(xs)

    def _eval_constant_sop(self, expr: ConstantSOp, xs: list[Value]) -> list[Value]:
        if expr.check_length and len(expr.value) != len(xs):
            raise EvaluationError(
                f"{expr.label}: Constant len {len(expr.value)} doesn't match input len {len(xs)}."
            )
        return list(expr.value)

    def _eval_map(self, expr: Map, xs: list[Value], values: list[Value]) -> list[Value]:
        f = expr.f
        out: list[Value] = []
        for x in values:
            if x is None:
                out.append(None)
                continue
            try:
                out.append(f(x))
            except Exception as err:
                raise EvaluationError(
                    f"{expr.label}: its function raised {type(err).__name__}: {err} "
                    f"on input value {x!r}"
                ) from err
        return out

    def _eval_sequence_map(
        self, expr: SequenceMap, xs: list[Value], fst: list[Value], snd: list[Value]
    ) -> list[Value]:
        f = expr.f
        out: list[Value] = []
        for x, y in zip(fst, snd, strict=False):
            if x is None or y is None:
                out.append(None)
                continue
            try:
                out.append(f(x, y))
            except Exception as err:
                raise EvaluationError(
                    f"{expr.label}: its function raised {type(err).__name__}: {err} "
                    f"on input values {x!r}, {y!r}"
                ) from err
        return out

    def _eval_selector_width(
        self, expr: SelectorWidth, xs: list[Value], matrix: SelectorValue
    ) -> list[Value]:
        return [sum(1 for selected in row if selected) for row in matrix]

    def _eval_aggregate(
        self, expr: Aggregate, xs: list[Value], matrix: SelectorValue, values: list[Value]
    ) -> list[Value]:
        out: list[Value] = []
        for query, row in enumerate(matrix):
            chosen = [value for selected, value in zip(row, values, strict=False) if selected]
            if not chosen:
                out.append(expr.default)
            elif len(chosen) == 1:
                out.append(chosen[0])
            elif all(_is_number(value) for value in chosen):
                out.append(sum(chosen) / len(chosen))
            else:
                raise EvaluationError(
                    f"{expr.label}: an Aggregate of non-numerical values must select at most "
                    f"one position, but query position {query} selects the values {chosen!r}"
                )
        return out

    # Selectors.

    def _eval_select(
        self, expr: Select, xs: list[Value], keys: list[Value], queries: list[Value]
    ) -> SelectorValue:
        predicate = expr.predicate
        matrix: SelectorValue = []
        for query in queries:
            row: list[bool] = []
            for key in keys:
                try:
                    row.append(bool(predicate(key, query)))
                except Exception as err:
                    raise EvaluationError(
                        f"{expr.label}: its predicate raised {type(err).__name__}: {err} "
                        f"on key {key!r} and query {query!r}"
                    ) from err
            matrix.append(row)
        return matrix

    def _eval_constant_selector(self, expr: ConstantSelector, xs: list[Value]) -> SelectorValue:
        if expr.check_length and len(expr.value) != len(xs):
            raise EvaluationError(
                f"{expr.label}: Constant len {len(expr.value)} doesn't match input len {len(xs)}."
            )
        return [[bool(selected) for selected in row] for row in expr.value]

    def _eval_selector_and(
        self, expr: SelectorAnd, xs: list[Value], fst: SelectorValue, snd: SelectorValue
    ) -> SelectorValue:
        return [
            [bool(a and b) for a, b in zip(r, s, strict=False)]
            for r, s in zip(fst, snd, strict=False)
        ]

    def _eval_selector_or(
        self, expr: SelectorOr, xs: list[Value], fst: SelectorValue, snd: SelectorValue
    ) -> SelectorValue:
        return [
            [bool(a or b) for a, b in zip(r, s, strict=False)]
            for r, s in zip(fst, snd, strict=False)
        ]

    def _eval_selector_not(
        self, expr: SelectorNot, xs: list[Value], inner: SelectorValue
    ) -> SelectorValue:
        return [[not selected for selected in row] for row in inner]


evaluate = DefaultRASPEvaluator().evaluate
