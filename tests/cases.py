"""The shared table of end-to-end cases: program, vocab, max_seq_len, inputs, expected outputs.

Every expected output was worked out by hand from the program's meaning, not by running any
code, so the table can check the evaluator (`rasp.evaluate`), the compiler (the compiled model
must decode to the same outputs) and every backend (parity on the same inputs) independently.

Import it as `from tests import cases` (tests/ is a package; pytest puts the repository root
on sys.path for test modules inside it). Iterate over `cases.CASES`; compare outputs with
`cases.outputs_match`, which allows the 1e-5 relative error that numerical outputs may carry.

The sizes follow the orientation table of the reference compiler, so the compiled models stay
small (one to nine layers, d_model below 80).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

from tracr.compiler import lib
from tracr.rasp import rasp


@dataclasses.dataclass(frozen=True)
class Case:
    """One program with inputs and the outputs it must produce.

    Attributes:
      name: unique identifier, used as the pytest id.
      make_program: builds a fresh program on every call (so tests never share mutable
        expression objects or annotations).
      vocab: the token set to compile with.
      max_seq_len: the longest input to compile for.
      inputs: 2-4 input sequences (without BOS), each over `vocab` and at most `max_seq_len`.
      expected: the output for each input, position by position; None where the program is
        undefined (e.g. an aggregate whose selector is empty).
    """

    name: str
    make_program: Callable[[], rasp.SOp]
    vocab: set
    max_seq_len: int
    inputs: list[list]
    expected: list[list]

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.expected):
            raise ValueError(
                f"case {self.name!r}: {len(self.inputs)} inputs but "
                f"{len(self.expected)} expected outputs."
            )
        for xs, ys in zip(self.inputs, self.expected, strict=True):
            if not 1 <= len(xs) <= self.max_seq_len:
                raise ValueError(
                    f"case {self.name!r}: input {xs!r} has length {len(xs)}, expected 1 to "
                    f"max_seq_len={self.max_seq_len}."
                )
            if len(ys) != len(xs):
                raise ValueError(
                    f"case {self.name!r}: expected output {ys!r} does not match the length of "
                    f"input {xs!r}."
                )
            outside = [x for x in xs if x not in self.vocab]
            if outside:
                raise ValueError(
                    f"case {self.name!r}: input {xs!r} has tokens {outside!r} outside the vocab "
                    f"{sorted(self.vocab, key=repr)!r}."
                )


def _value_matches(actual: Any, expected: Any, rel_tol: float, abs_tol: float) -> bool:
    if expected is None or actual is None:
        return actual is None and expected is None
    numbers = (int, float)
    if isinstance(expected, numbers) and isinstance(actual, numbers):
        return math.isclose(actual, expected, rel_tol=rel_tol, abs_tol=abs_tol)
    return actual == expected


def outputs_match(
    actual: Sequence[Any],
    expected: Sequence[Any],
    *,
    rel_tol: float = 1e-5,
    abs_tol: float = 1e-6,
) -> bool:
    """Whether an output sequence equals the expected one.

    Numbers (bools included, True == 1) compare with `math.isclose` at the given tolerances;
    `abs_tol` covers expected zeros. None matches only None; everything else compares by ==.
    """
    if len(actual) != len(expected):
        return False
    return all(
        _value_matches(a, e, rel_tol, abs_tol) for a, e in zip(actual, expected, strict=True)
    )


T, F, N = True, False, None

_LETTERS = {"a", "b", "c", "d"}
_NUMBERS = {1, 2, 3, 4}
_DYCK2 = {"(", ")", "{", "}"}
_DYCK3 = {"(", ")", "{", "}", "[", "]"}


def _mean_of_a() -> rasp.SOp:
    """The fraction of "a" tokens in the whole input, at every position (numerical mean)."""
    is_a = rasp.numerical(rasp.Map(lambda t: 1 if t == "a" else 0, rasp.tokens))
    select_all = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)
    return rasp.numerical(rasp.Aggregate(select_all, is_a, default=0))


def _inverse_length() -> rasp.SOp:
    """1 / length: a numerical Map whose input is itself numerical."""
    length = rasp.numerical(lib.make_length())
    return rasp.numerical(rasp.Map(lambda n: 1 / n, length))


def _next_token() -> rasp.SOp:
    """Each position reads the next token; the last position selects nothing and gets None."""
    next_pos = rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == q + 1)
    return rasp.Aggregate(next_pos, rasp.tokens)


def _gather_by_token() -> rasp.SOp:
    """Position q reads the token at index tokens[q]; None where that index is past the end."""
    at_index = rasp.Select(rasp.indices, rasp.tokens, rasp.Comparison.EQ)
    return rasp.Aggregate(at_index, rasp.tokens)


def _value_neighbours() -> rasp.SOp:
    """How many tokens differ from this position's token by exactly 1 (custom predicate)."""
    return rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, lambda k, q: abs(k - q) == 1))


def _earlier_same_token() -> rasp.SOp:
    """How many earlier positions hold this position's token: a conjunction of selectors
    over different SOps (indices and tokens)."""
    earlier = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT)
    same = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    return rasp.SelectorWidth(earlier & same)


def _previous_same_token_index() -> rasp.SOp:
    """Index of the nearest earlier position holding the same token; None where none does.

    The conjunction picks the earlier positions with the same token, of which the
    nearest is the one with no same-token position between: aggregated as
    "the earlier same-token position whose later same-token count is zero"."""
    earlier = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT)
    same = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    seen = rasp.SelectorWidth(earlier & same)
    # The previous occurrence is the same-token earlier position whose own count is one
    # less than ours.
    prev = rasp.Select(seen, seen, lambda k, q: k == q - 1) & same & earlier
    return rasp.Aggregate(prev, rasp.indices)


CASES: list[Case] = [
    # ---- lib programs ------------------------------------------------------------------------
    Case(
        name="length",
        make_program=lib.make_length,
        vocab=_LETTERS,
        max_seq_len=3,
        inputs=[list("abc"), list("ad"), list("c"), list("bbb")],
        expected=[[3, 3, 3], [2, 2], [1], [3, 3, 3]],
    ),
    Case(
        name="length_numerical",
        make_program=lambda: rasp.numerical(lib.make_length()),
        vocab=_LETTERS,
        max_seq_len=3,
        inputs=[list("abc"), list("ad"), list("c")],
        expected=[[3, 3, 3], [2, 2], [1]],
    ),
    Case(
        name="reverse",
        make_program=lambda: lib.make_reverse(rasp.tokens),
        vocab=_LETTERS,
        max_seq_len=5,
        inputs=[list("abcd"), list("abc"), list("c"), list("aabdc")],
        expected=[list("dcba"), list("cba"), list("c"), list("cdbaa")],
    ),
    Case(
        name="hist",
        make_program=lib.make_hist,
        vocab=_LETTERS,
        max_seq_len=5,
        inputs=[list("abac"), list("aaaaa"), list("d"), list("dcbd")],
        expected=[[2, 1, 2, 1], [5, 5, 5, 5, 5], [1], [2, 1, 1, 2]],
    ),
    Case(
        name="sort_unique",
        make_program=lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens),
        vocab=_NUMBERS,
        max_seq_len=5,
        inputs=[[2, 4, 3, 1], [3], [4, 1], [3, 2, 1]],
        expected=[[1, 2, 3, 4], [3], [1, 4], [1, 2, 3]],
    ),
    Case(
        name="sort",
        make_program=lambda: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1),
        vocab=_NUMBERS,
        max_seq_len=5,
        inputs=[[2, 4, 1, 2], [2, 4, 3, 1], [3, 3, 3], [4, 4, 1, 1, 2]],
        expected=[[1, 2, 2, 4], [1, 2, 3, 4], [3, 3, 3], [1, 1, 2, 4, 4]],
    ),
    Case(
        name="sort_freq",
        make_program=lambda: lib.make_sort_freq(max_seq_len=5),
        vocab=_NUMBERS,
        max_seq_len=5,
        inputs=[[2, 4, 2, 1], [1, 2, 3], [3, 1, 1, 1, 3], [4]],
        expected=[[2, 2, 4, 1], [1, 2, 3], [1, 1, 1, 3, 3], [4]],
    ),
    Case(
        name="frac_prevs",
        make_program=lambda: lib.make_frac_prevs(rasp.tokens == "l"),
        vocab={"h", "e", "l", "o"},
        max_seq_len=5,
        inputs=[list("hello"), list("l"), list("lol"), list("he")],
        expected=[[0, 0, 1 / 3, 1 / 2, 2 / 5], [1], [1, 1 / 2, 2 / 3], [0, 0]],
    ),
    Case(
        name="pair_balance",
        make_program=lambda: lib.make_pair_balance(rasp.tokens, "(", ")"),
        vocab={"a", "b", "c", "(", ")"},
        max_seq_len=10,
        inputs=[list("a()b(c))"), list(")("), list("("), list("((c")],
        expected=[
            [0, 1 / 2, 0, 0, 1 / 5, 1 / 6, 0, -1 / 8],
            [-1, 0],
            [1],
            [1, 1, 2 / 3],
        ],
    ),
    Case(
        name="shuffle_dyck2",
        make_program=lib.make_shuffle_dyck2,
        vocab=_DYCK2,
        max_seq_len=5,
        inputs=[list("({)}"), list("(){)}"), list("{}("), list("}{")],
        expected=[[T] * 4, [F] * 5, [F] * 3, [F] * 2],
    ),
    Case(
        name="shuffle_dyck3",
        make_program=lambda: lib.make_shuffle_dyck(["()", "{}", "[]"]),
        vocab=_DYCK3,
        max_seq_len=6,
        inputs=[list("({)[}]"), list("(){)}"), list("{}[(]"), list("[]{}()")],
        expected=[[T] * 6, [F] * 5, [F] * 5, [T] * 6],
    ),
    Case(
        name="detect_pattern_abc",
        make_program=lambda: lib.detect_pattern(rasp.tokens, "abc"),
        vocab={"a", "b", "c"},
        max_seq_len=6,
        inputs=[list("abcabc"), list("ab"), list("cab"), list("aabc")],
        expected=[[N, N, T, F, F, T], [N, N], [N, N, F], [N, N, F, T]],
    ),
    Case(
        name="shift_by_1",
        make_program=lambda: lib.shift_by(1, rasp.tokens),
        vocab=_LETTERS,
        max_seq_len=5,
        inputs=[list("abcd"), list("a"), list("ba")],
        expected=[[N, "a", "b", "c"], [N], [N, "b"]],
    ),
    Case(
        name="shift_by_2",
        make_program=lambda: lib.shift_by(2, rasp.tokens),
        vocab=_LETTERS,
        max_seq_len=5,
        inputs=[list("abcd"), list("dd"), list("abcda")],
        expected=[[N, N, "a", "b"], [N, N], [N, N, "a", "b", "c"]],
    ),
    Case(
        name="count_less_freq_2",
        make_program=lambda: lib.make_count_less_freq(2),
        vocab=_LETTERS,
        max_seq_len=6,
        inputs=[list("aaabbc"), list("aacbbc"), list("aaa"), list("d")],
        expected=[[3] * 6, [6] * 6, [0] * 3, [1]],
    ),
    Case(
        name="count_a",
        make_program=lambda: lib.make_count(rasp.tokens, "a"),
        vocab={"a", "b", "c"},
        max_seq_len=5,
        inputs=[list("cabc"), list("bbc"), list("aaa"), list("a")],
        expected=[[1] * 4, [0] * 3, [3] * 3, [1]],
    ),
    Case(
        name="nary_sequencemap",
        make_program=lambda: lib.make_nary_sequencemap(
            lambda x, y, z: x + y - z, rasp.tokens, rasp.tokens, rasp.indices
        ),
        vocab={1, 2, 3},
        max_seq_len=5,
        inputs=[[1, 2, 3], [3], [3, 3, 3, 3, 3], [1, 1]],
        expected=[[2, 3, 4], [6], [6, 5, 4, 3, 2], [2, 1]],
    ),
    # ---- hand-written programs -------------------------------------------------------------
    Case(
        name="numerical_map_of_tokens",
        make_program=lambda: rasp.numerical(rasp.Map(lambda x: x / 2 + 1, rasp.tokens)),
        vocab={1, 2, 3},
        max_seq_len=4,
        inputs=[[1, 2, 3], [3, 3], [2]],
        expected=[[1.5, 2.0, 2.5], [2.5, 2.5], [2.0]],
    ),
    Case(
        name="numerical_map_of_numerical",
        make_program=_inverse_length,
        vocab={"a", "b"},
        max_seq_len=4,
        inputs=[list("ab"), list("a"), list("abba"), list("bbb")],
        expected=[[0.5, 0.5], [1.0], [0.25] * 4, [1 / 3] * 3],
    ),
    Case(
        name="sequence_map_tokens_indices",
        make_program=lambda: rasp.SequenceMap(lambda t, i: t - i, rasp.tokens, rasp.indices),
        vocab={1, 2, 3},
        max_seq_len=4,
        inputs=[[1, 2, 3], [3, 3, 3, 3], [2], [1, 3]],
        expected=[[1, 1, 1], [3, 2, 1, 0], [2], [1, 2]],
    ),
    Case(
        name="aggregate_next_token",
        make_program=_next_token,
        vocab={"a", "b", "c"},
        max_seq_len=4,
        inputs=[list("abc"), list("a"), list("cab"), list("aa")],
        expected=[["b", "c", N], [N], ["a", "b", N], ["a", N]],
    ),
    Case(
        name="aggregate_gather_by_token",
        make_program=_gather_by_token,
        vocab={0, 1, 2, 3},
        max_seq_len=4,
        inputs=[[1, 0], [3, 0], [0], [2, 2, 1]],
        expected=[[0, 1], [N, 3], [0], [1, 1, 2]],
    ),
    Case(
        name="numerical_mean_of_a",
        make_program=_mean_of_a,
        vocab={"a", "b"},
        max_seq_len=4,
        inputs=[list("ab"), list("aaab"), list("b"), list("aa")],
        expected=[[0.5, 0.5], [0.75] * 4, [0], [1, 1]],
    ),
    Case(
        name="selector_width_value_neighbours",
        make_program=_value_neighbours,
        vocab=_NUMBERS,
        max_seq_len=5,
        inputs=[[3, 1, 2], [2, 2], [4, 1, 4, 1, 3], [1]],
        expected=[[1, 1, 2], [0, 0], [1, 0, 1, 0, 2], [0]],
    ),
    # ---- conjunctions of selectors over different SOps --------------------------------------
    Case(
        name="earlier_same_token",
        make_program=_earlier_same_token,
        vocab={"a", "b"},
        max_seq_len=6,
        inputs=[["a", "b", "a", "a"], ["b"], ["a", "a", "b", "b", "a", "b"]],
        expected=[[0, 0, 1, 2], [0], [0, 1, 0, 1, 2, 2]],
    ),
    Case(
        name="previous_same_token_index",
        make_program=_previous_same_token_index,
        vocab={"a", "b"},
        max_seq_len=6,
        inputs=[["a", "b", "a", "a"], ["a", "a", "b", "b", "a", "b"]],
        expected=[[N, N, 0, 2], [N, 0, N, 2, 1, 3]],
    ),
]

CASES_BY_NAME: dict[str, Case] = {case.name: case for case in CASES}
assert len(CASES_BY_NAME) == len(CASES), "case names must be unique"
