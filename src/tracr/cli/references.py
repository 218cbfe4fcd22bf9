"""Parsing what users type on the command line: program references, vocabularies, tokens.

A program reference is `SOURCE:EXPRESSION`.

- SOURCE is a Python file (`path/to/file.py`) or an importable module
  (`tracr.compiler.lib`); it is imported (its top level runs, as with any import).
- EXPRESSION names what to compile in that module: an SOp (`program`), a function called
  with no arguments (`make_hist`), or a call (`make_sort_unique(tokens, tokens)`,
  `make_frac_prevs(rasp.tokens == "x")`, `make_sort(tokens, tokens, max_seq_len=5,
  min_key=1)`).

EXPRESSION is not handed to `eval`. It is parsed with `ast` and only these forms are
evaluated: literals (numbers, strings, None, True/False, lists, tuples, sets, dicts),
negative numbers, names, attributes of modules and classes (no names starting with "_"),
calls, comparisons and arithmetic. Names resolve in the module, then in a small namespace:
`rasp` (tracr.rasp.rasp), `lib` (tracr.compiler.lib), `tokens`, `indices`, `length`.
Lambdas and other code cannot be written there; put them in a file and reference it.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import operator
import pathlib
import re
import sys
import types
from typing import Any

from tracr.rasp import rasp


class InputError(ValueError):
    """A program reference, vocab or token list that cannot be used; the message says why."""


_INT = re.compile(r"[+-]?\d+")

_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
}


def parse_token(text: str) -> int | str:
    """An integer if the text is one ("3", "-1"), else the text itself."""
    return int(text) if _INT.fullmatch(text) else text


def parse_tokens(items: list[str], what: str = "input") -> list[int | str]:
    """Tokens from arguments split on commas and spaces: ["1,2", "3"] -> [1, 2, 3]."""
    tokens = [parse_token(t) for item in items for t in re.split(r"[,\s]+", item) if t]
    if not tokens:
        raise InputError(f"the {what} is empty; give tokens like '1,2,3' or 'a b c'")
    return tokens


def parse_vocab(items: list[str]) -> set[int | str]:
    """The vocab: `--vocab 1,2,3` or `--vocab a b c`; integers become ints."""
    return set(parse_tokens(items, what="vocab"))


def load_program(reference: str) -> rasp.SOp:
    """The SOp that `reference` (`file.py:expr` or `package.module:expr`) denotes."""
    # Split after "file.py" when there is one, else at the first colon (an expression
    # may hold colons of its own, a module name never does).
    cut = reference.find(".py:")
    cut = cut + 3 if cut >= 0 else reference.find(":")
    source, expression = (reference[:cut], reference[cut + 1 :]) if cut >= 0 else ("", "")
    if not source or not expression.strip():
        raise InputError(
            f"program reference {reference!r} must be SOURCE:NAME, e.g. 'programs.py:program' "
            "or 'tracr.compiler.lib:make_hist'"
        )
    module = _load_module(source)
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as err:
        raise InputError(f"cannot parse {expression!r} in {reference!r}: {err.msg}") from None
    value = _Evaluator(module).evaluate(tree.body)
    if callable(value) and not isinstance(value, rasp.RASPExpr):
        value = _call(value, [], {}, expression)
    if not isinstance(value, rasp.SOp):
        raise InputError(
            f"{reference!r} gives a {type(value).__name__}, not a RASP SOp: name an SOp, a "
            "function returning one, or a call"
        )
    return value


def _load_module(source: str) -> types.ModuleType:
    if source.endswith(".py") or "/" in source or "\\" in source:
        path = pathlib.Path(source)
        if not path.is_file():
            raise InputError(f"no such Python file: {source}")
        name = f"_tracr_program_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.resolve().parent))  # let it import its neighbours
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # the user's file failed: say where, not a traceback
            raise InputError(f"importing {source} failed: {type(err).__name__}: {err}") from None
        finally:
            sys.path.remove(str(path.resolve().parent))
        return module
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", source):
        raise InputError(f"{source!r} is neither a .py file nor a module name like 'pkg.mod'")
    try:
        return importlib.import_module(source)
    except ModuleNotFoundError as err:
        raise InputError(f"no module named {err.name!r} (from {source!r})") from None
    except Exception as err:
        raise InputError(f"importing {source} failed: {type(err).__name__}: {err}") from None


def _call(function, args, kwargs, where: str):
    try:
        return function(*args, **kwargs)
    except Exception as err:
        name = getattr(function, "__name__", repr(function))
        raise InputError(
            f"calling {name} in {where!r} failed: {type(err).__name__}: {err}"
        ) from None


class _Evaluator:
    """Evaluates the few expression forms the module docstring lists."""

    def __init__(self, module: types.ModuleType):
        from tracr.compiler import lib

        self.module = module
        self.builtins = {
            "rasp": rasp,
            "lib": lib,
            "tokens": rasp.tokens,
            "indices": rasp.indices,
            "length": rasp.length,
        }

    def evaluate(self, node: ast.AST) -> Any:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise InputError(
                f"{ast.unparse(node)!r}: {type(node).__name__} expressions are not allowed in a "
                "program reference (only names, calls, literals, comparisons and arithmetic)"
            )
        return method(node)

    def _Constant(self, node: ast.Constant) -> Any:
        return node.value

    def _List(self, node: ast.List) -> list:
        return [self.evaluate(e) for e in node.elts]

    def _Tuple(self, node: ast.Tuple) -> tuple:
        return tuple(self.evaluate(e) for e in node.elts)

    def _Set(self, node: ast.Set) -> set:
        return {self.evaluate(e) for e in node.elts}

    def _Dict(self, node: ast.Dict) -> dict:
        return {self.evaluate(k): self.evaluate(v) for k, v in zip(node.keys, node.values)}

    def _UnaryOp(self, node: ast.UnaryOp) -> Any:
        operand = self.evaluate(node.operand)
        if isinstance(node.op, ast.USub):
            return -operand
        if isinstance(node.op, ast.UAdd):
            return +operand
        if isinstance(node.op, ast.Invert):
            return ~operand
        raise InputError(f"{ast.unparse(node)!r}: operator not allowed in a program reference")

    def _Name(self, node: ast.Name) -> Any:
        name = node.id
        if not name.startswith("_") and hasattr(self.module, name):
            return getattr(self.module, name)
        if name in self.builtins:
            return self.builtins[name]
        raise InputError(
            f"{name!r} is not defined in {self.module.__name__} (nor one of "
            f"{', '.join(sorted(self.builtins))})"
        )

    def _Attribute(self, node: ast.Attribute) -> Any:
        base = self.evaluate(node.value)
        if not isinstance(base, (types.ModuleType, type)) or node.attr.startswith("_"):
            raise InputError(
                f"{ast.unparse(node)!r}: only public attributes of modules and classes can be "
                "used in a program reference"
            )
        if not hasattr(base, node.attr):
            raise InputError(f"{ast.unparse(node.value)!r} has no attribute {node.attr!r}")
        return getattr(base, node.attr)

    def _Call(self, node: ast.Call) -> Any:
        function = self.evaluate(node.func)
        if not callable(function):
            raise InputError(f"{ast.unparse(node.func)!r} is not a function")
        args = [self.evaluate(a) for a in node.args]
        kwargs = {k.arg: self.evaluate(k.value) for k in node.keywords if k.arg is not None}
        if len(kwargs) != len(node.keywords):
            raise InputError(f"{ast.unparse(node)!r}: **kwargs are not allowed")
        return _call(function, args, kwargs, ast.unparse(node))

    def _Compare(self, node: ast.Compare) -> Any:
        if len(node.ops) != 1 or type(node.ops[0]) not in _COMPARE:
            raise InputError(f"{ast.unparse(node)!r}: use one comparison (==, !=, <, <=, >, >=)")
        left, right = self.evaluate(node.left), self.evaluate(node.comparators[0])
        return _COMPARE[type(node.ops[0])](left, right)

    def _BinOp(self, node: ast.BinOp) -> Any:
        if type(node.op) not in _BINARY:
            raise InputError(f"{ast.unparse(node)!r}: operator not allowed in a program reference")
        left, right = self.evaluate(node.left), self.evaluate(node.right)
        try:
            return _BINARY[type(node.op)](left, right)
        except Exception as err:
            raise InputError(f"{ast.unparse(node)!r} failed: {err}") from None
