"""Tests for tracr.compiler.lib, evaluated with rasp.evaluate (no compiler involved).

Three kinds of checks:
* literal outputs worked out by hand (here and in the shared table tests/cases.py);
* every input up to a small length against a plain-Python statement of what the program means;
* the program's shape: labels, encodings, and a layer count no larger than the reference's.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Iterator, Sequence
from fractions import Fraction

import pytest

from tests import cases
from tracr.compiler import lib
from tracr.rasp import rasp

T, F, N = True, False, None


def _evaluate(program: rasp.SOp, xs: Sequence) -> list:
    return list(rasp.evaluate(program, list(xs)))


def _all_inputs(vocab: Sequence, max_len: int) -> Iterator[tuple]:
    for n in range(1, max_len + 1):
        yield from itertools.product(vocab, repeat=n)


def _walk(expr: rasp.RASPExpr) -> Iterator[rasp.RASPExpr]:
    """Every expression reachable from `expr` (each object once)."""
    seen: set[int] = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        stack.extend(node.children)


def _by_name(program: rasp.SOp) -> dict[str, rasp.RASPExpr]:
    return {node.name: node for node in _walk(program)}


# --------------------------------------------------------------------------------------------
# The shared case table, checked against the evaluator.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", cases.CASES, ids=[c.name for c in cases.CASES])
def test_case_table_matches_evaluator(case: cases.Case) -> None:
    for xs, expected in zip(case.inputs, case.expected, strict=True):
        actual = _evaluate(case.make_program(), xs)
        assert cases.outputs_match(actual, expected), (xs, actual, expected)


def test_case_table_covers_every_lib_program() -> None:
    names = {c.name for c in cases.CASES}
    for required in [
        "length",
        "reverse",
        "pair_balance",
        "shuffle_dyck2",
        "shuffle_dyck3",
        "hist",
        "sort_unique",
        "sort",
        "sort_freq",
        "frac_prevs",
        "shift_by_1",
        "detect_pattern_abc",
        "count_less_freq_2",
        "count_a",
        "nary_sequencemap",
    ]:
        assert required in names


def test_case_table_builds_fresh_programs() -> None:
    for case in cases.CASES:
        assert case.make_program() is not case.make_program(), case.name


def test_case_rejects_mismatched_expected_length() -> None:
    with pytest.raises(ValueError, match="does not match the length"):
        cases.Case("bad", lib.make_hist, {"a"}, 3, inputs=[["a", "a"]], expected=[[2]])


def test_case_rejects_token_outside_vocab() -> None:
    with pytest.raises(ValueError, match="outside the vocab"):
        cases.Case("bad", lib.make_hist, {"a"}, 3, inputs=[["b"]], expected=[[1]])


def test_outputs_match_tolerates_small_numeric_error_only() -> None:
    assert cases.outputs_match([1 / 3, 0.0, None, "a"], [0.3333334, 1e-9, None, "a"])
    assert not cases.outputs_match([0.34], [1 / 3])
    assert not cases.outputs_match([None], [0])
    assert not cases.outputs_match([1, 2], [1])


# --------------------------------------------------------------------------------------------
# Hand-worked outputs, program by program.
# --------------------------------------------------------------------------------------------


def test_length() -> None:
    length = lib.make_length()
    assert _evaluate(length, "abcdefg") == [7] * 7
    assert _evaluate(length, "x") == [1]


def test_module_level_length_is_shared_by_reverse() -> None:
    assert lib.length.name == "length"
    assert _evaluate(lib.length, "abc") == [3, 3, 3]
    reverse = lib.make_reverse(rasp.tokens)
    assert any(node is lib.length for node in _walk(reverse))


@pytest.mark.parametrize(
    ("xs", "expected"),
    [
        ("Hello", ["o", "l", "l", "e", "H"]),
        ("x", ["x"]),
        ("aab", ["b", "a", "a"]),
        ([3, 1, 2, 2], [2, 2, 1, 3]),
    ],
)
def test_reverse(xs: Sequence, expected: list) -> None:
    assert _evaluate(lib.make_reverse(rasp.tokens), xs) == expected


def test_reverse_of_a_derived_sop() -> None:
    doubled = rasp.Map(lambda x: 2 * x, rasp.tokens)
    assert _evaluate(lib.make_reverse(doubled), [1, 2, 3]) == [6, 4, 2]


@pytest.mark.parametrize(
    ("xs", "expected"),
    [
        ("a()b(c))", [0, 1 / 2, 0, 0, 1 / 5, 1 / 6, 0, -1 / 8]),
        (")", [-1]),
        ("(", [1]),
        ("())(", [1, 0, -1 / 3, 0]),
        ("xyz", [0, 0, 0]),
    ],
)
def test_pair_balance(xs: str, expected: list) -> None:
    actual = _evaluate(lib.make_pair_balance(rasp.tokens, "(", ")"), xs)
    assert actual == pytest.approx(expected)


@pytest.mark.parametrize(
    ("xs", "balanced"),
    [
        ("({)}", T),  # kinds interleave: still shuffle-Dyck balanced
        ("(){}", T),
        ("{()}", T),
        ("(){)}", F),  # ")" closes more than was opened
        ("{}(", F),  # "(" never closed
        ("(", F),
        (")", F),
        (")(", F),  # ends at zero but dips below it
        ("}{", F),
    ],
)
def test_shuffle_dyck2(xs: str, balanced: bool) -> None:
    assert _evaluate(lib.make_shuffle_dyck2(), xs) == [balanced] * len(xs)


@pytest.mark.parametrize(
    ("xs", "balanced"),
    [
        ("({)[}]", T),
        ("[]{}()", T),
        ("(){)}", F),
        ("{}[(]", F),
        ("[", F),
        ("[(])", T),
    ],
)
def test_shuffle_dyck3(xs: str, balanced: bool) -> None:
    program = lib.make_shuffle_dyck(pairs=["()", "{}", "[]"])
    assert _evaluate(program, xs) == [balanced] * len(xs)


def test_shuffle_dyck_single_pair() -> None:
    program = lib.make_shuffle_dyck(["ab"])
    assert _evaluate(program, "aabb") == [T] * 4
    assert _evaluate(program, "abba") == [F] * 4
    assert _evaluate(program, "b") == [F]


@pytest.mark.parametrize(
    ("xs", "expected"),
    [("abac", [2, 1, 2, 1]), ("z", [1]), ("bbbb", [4, 4, 4, 4]), ("abcd", [1, 1, 1, 1])],
)
def test_hist(xs: str, expected: list) -> None:
    assert _evaluate(lib.make_hist(), xs) == expected


@pytest.mark.parametrize(
    ("xs", "expected"),
    [([2, 4, 3, 1], [1, 2, 3, 4]), ([5], [5]), ([9, 0], [0, 9])],
)
def test_sort_unique(xs: list, expected: list) -> None:
    assert _evaluate(lib.make_sort_unique(rasp.tokens, rasp.tokens), xs) == expected


def test_sort_unique_by_other_keys() -> None:
    # keys 1 - i descend with i, so the values come out reversed.
    program = lib.make_sort_unique(vals=rasp.tokens, keys=1 - rasp.indices)
    assert _evaluate(program, "abcd") == ["d", "c", "b", "a"]


def test_sort_unique_with_repeated_keys_leaves_holes() -> None:
    # Documented limitation: both 2s target position 0, so position 1 selects nothing.
    assert _evaluate(lib.make_sort_unique(rasp.tokens, rasp.tokens), [2, 2]) == [2, None]


@pytest.mark.parametrize(
    ("xs", "expected"),
    [
        ([2, 4, 3, 1], [1, 2, 3, 4]),
        ([2, 4, 1, 2], [1, 2, 2, 4]),
        ([3, 3, 3], [3, 3, 3]),
        ([1], [1]),
    ],
)
def test_sort(xs: list, expected: list) -> None:
    program = lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1)
    assert _evaluate(program, xs) == expected


def test_sort_is_stable() -> None:
    # Sorting the positions by token: equal tokens keep their input order.
    program = lib.make_sort(rasp.indices, rasp.tokens, max_seq_len=5, min_key=1)
    assert _evaluate(program, [2, 1, 2, 1, 0]) == [4, 1, 3, 0, 2]


@pytest.mark.parametrize(
    ("xs", "expected"),
    [
        ([2, 4, 2, 1], [2, 2, 4, 1]),
        ([1, 2, 3], [1, 2, 3]),
        ([3, 1, 1, 1, 3], [1, 1, 1, 3, 3]),
        ([4], [4]),
        ([1, 2, 2, 1], [1, 2, 2, 1]),
    ],
)
def test_sort_freq(xs: list, expected: list) -> None:
    assert _evaluate(lib.make_sort_freq(max_seq_len=5), xs) == expected


@pytest.mark.parametrize(
    ("token", "xs", "expected"),
    [
        ("l", "hello", [0, 0, 1 / 3, 1 / 2, 2 / 5]),
        ("(", "a()b(c))", [0, 1 / 2, 1 / 3, 1 / 4, 2 / 5, 2 / 6, 2 / 7, 2 / 8]),
        (")", "a()b(c))", [0, 0, 1 / 3, 1 / 4, 1 / 5, 1 / 6, 2 / 7, 3 / 8]),
        ("x", "x", [1]),
        ("x", "y", [0]),
    ],
)
def test_frac_prevs(token: str, xs: str, expected: list) -> None:
    actual = _evaluate(lib.make_frac_prevs(rasp.tokens == token), xs)
    assert actual == pytest.approx(expected)


@pytest.mark.parametrize(
    ("offset", "xs", "expected"),
    [
        (1, "abcd", [N, "a", "b", "c"]),
        (2, "abcd", [N, N, "a", "b"]),
        (1, "a", [N]),
        (3, "ab", [N, N]),
        (0, "ab", ["a", "b"]),
    ],
)
def test_shift_by(offset: int, xs: str, expected: list) -> None:
    assert _evaluate(lib.shift_by(offset, rasp.tokens), xs) == expected


@pytest.mark.parametrize(
    ("pattern", "xs", "expected"),
    [
        ("a", "bacd", [F, T, F, F]),
        ("ab", "aaba", [N, F, T, F]),
        ("ab", "abaa", [N, T, F, F]),
        ("ab", "aaaa", [N, F, F, F]),
        ("ab", "a", [N]),
        ("abc", "abcabc", [N, N, T, F, F, T]),
        ("aa", "aaa", [N, T, T]),
        ([1, 2], [1, 2, 1, 2], [N, T, F, T]),
    ],
)
def test_detect_pattern(pattern: Sequence, xs: Sequence, expected: list) -> None:
    assert _evaluate(lib.detect_pattern(rasp.tokens, pattern), xs) == expected


def test_detect_pattern_rejects_empty_pattern() -> None:
    with pytest.raises(ValueError, match="length >= 1"):
        lib.detect_pattern(rasp.tokens, "")


@pytest.mark.parametrize(
    ("n", "xs", "expected"),
    [
        (2, "aaabbc", [3] * 6),  # "b", "b", "c" occur at most twice
        (2, "aacbbc", [6] * 6),
        (1, "aaabbc", [1] * 6),
        (0, "abc", [0] * 3),
        (3, "a", [1]),
    ],
)
def test_count_less_freq(n: int, xs: str, expected: list) -> None:
    assert _evaluate(lib.make_count_less_freq(n), xs) == expected


@pytest.mark.parametrize(
    ("token", "xs", "expected"),
    [
        ("a", "aaabbc", [3] * 6),
        ("a", "cabc", [1] * 4),
        ("a", "bbc", [0] * 3),
        ("c", "c", [1]),
        (2, [2, 1, 2], [2, 2, 2]),
    ],
)
def test_count(token: object, xs: Sequence, expected: list) -> None:
    assert _evaluate(lib.make_count(rasp.tokens, token), xs) == expected


def test_nary_sequencemap_three_arguments() -> None:
    program = lib.make_nary_sequencemap(
        lambda x, y, z: x + y - z, rasp.tokens, rasp.tokens, rasp.indices
    )
    assert _evaluate(program, [1, 2, 3]) == [2, 3, 4]


def test_nary_sequencemap_argument_order() -> None:
    program = lib.make_nary_sequencemap(
        lambda x, y, z: x * y / z, rasp.indices, rasp.indices, rasp.tokens
    )
    assert _evaluate(program, [1, 2, 3]) == pytest.approx([0, 1 / 2, 4 / 3])
    joined = lib.make_nary_sequencemap(
        lambda a, b, c, d: f"{a}{b}{c}{d}",
        rasp.tokens,
        rasp.indices,
        rasp.Map(lambda t: t.upper(), rasp.tokens),
        rasp.indices,
    )
    assert _evaluate(joined, "ab") == ["a0A0", "b1B1"]


def test_nary_sequencemap_two_and_one_arguments() -> None:
    pair = lib.make_nary_sequencemap(lambda x, i: x * i, rasp.tokens, rasp.indices)
    assert _evaluate(pair, [3, 3, 3]) == [0, 3, 6]
    single = lib.make_nary_sequencemap(lambda x: x + 1, rasp.tokens)
    assert _evaluate(single, [1, 5]) == [2, 6]


def test_nary_sequencemap_keeps_tuple_valued_first_argument_whole() -> None:
    pairs = rasp.Map(lambda t: (t, t), rasp.tokens)
    program = lib.make_nary_sequencemap(lambda p, i: (p, i), pairs, rasp.indices)
    assert _evaluate(program, [7]) == [((7, 7), 0)]


def test_nary_sequencemap_needs_an_argument() -> None:
    with pytest.raises(ValueError, match="at least one SOp"):
        lib.make_nary_sequencemap(lambda: 0)


@pytest.mark.parametrize("pairs", [[], ["("], ["(]]"]])
def test_shuffle_dyck_rejects_bad_pairs(pairs: list[str]) -> None:
    with pytest.raises(ValueError, match="make_shuffle_dyck"):
        lib.make_shuffle_dyck(pairs)


# --------------------------------------------------------------------------------------------
# Every input up to a small length against a plain-Python statement of the meaning.
# --------------------------------------------------------------------------------------------


def _is_shuffle_dyck(xs: Sequence[str], pairs: Sequence[str]) -> bool:
    for open_token, close_token in pairs:
        depth = 0
        for x in xs:
            depth += (x == open_token) - (x == close_token)
            if depth < 0:
                return False
        if depth != 0:
            return False
    return True


def test_exhaustive_reverse_hist_length_count() -> None:
    reverse = lib.make_reverse(rasp.tokens)
    hist = lib.make_hist()
    length = lib.make_length()
    count_b = lib.make_count(rasp.tokens, "b")
    for xs in _all_inputs("abc", 5):
        n = len(xs)
        assert _evaluate(reverse, xs) == list(xs[::-1])
        assert _evaluate(hist, xs) == [xs.count(x) for x in xs]
        assert _evaluate(length, xs) == [n] * n
        assert _evaluate(count_b, xs) == [xs.count("b")] * n


def test_exhaustive_count_less_freq() -> None:
    for n_max in [1, 2, 3]:
        program = lib.make_count_less_freq(n_max)
        for xs in _all_inputs("abc", 5):
            rare = sum(1 for x in xs if xs.count(x) <= n_max)
            assert _evaluate(program, xs) == [rare] * len(xs)


def test_exhaustive_sorts() -> None:
    sort = lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1)
    stable = lib.make_sort(rasp.indices, rasp.tokens, max_seq_len=5, min_key=1)
    by_freq = lib.make_sort_freq(max_seq_len=5)
    for xs in _all_inputs([1, 2, 3], 5):
        order = sorted(range(len(xs)), key=lambda i: (xs[i], i))
        by_count = sorted(range(len(xs)), key=lambda i: (-xs.count(xs[i]), i))
        assert _evaluate(sort, xs) == sorted(xs)
        assert _evaluate(stable, xs) == order
        assert _evaluate(by_freq, xs) == [xs[i] for i in by_count]


def test_exhaustive_sort_unique_on_permutations() -> None:
    program = lib.make_sort_unique(rasp.tokens, rasp.tokens)
    for n in range(1, 6):
        for xs in itertools.permutations(range(10, 10 + n)):
            assert _evaluate(program, xs) == sorted(xs)


def test_exhaustive_frac_prevs_and_pair_balance() -> None:
    frac = lib.make_frac_prevs(rasp.tokens == "(")
    balance = lib.make_pair_balance(rasp.tokens, "(", ")")
    for xs in _all_inputs("()x", 5):
        opens = [Fraction(xs[: i + 1].count("("), i + 1) for i in range(len(xs))]
        closes = [Fraction(xs[: i + 1].count(")"), i + 1) for i in range(len(xs))]
        assert _evaluate(frac, xs) == pytest.approx([float(o) for o in opens])
        expected = [float(o - c) for o, c in zip(opens, closes, strict=True)]
        assert _evaluate(balance, xs) == pytest.approx(expected)


def test_exhaustive_shuffle_dyck() -> None:
    for pairs, alphabet, max_len in [(["()", "{}"], "(){}", 5), (["()", "{}", "[]"], "({[)}]", 4)]:
        program = lib.make_shuffle_dyck(pairs)
        for xs in _all_inputs(alphabet, max_len):
            expected = [_is_shuffle_dyck(xs, pairs)] * len(xs)
            assert _evaluate(program, xs) == expected, xs


def test_exhaustive_shift_and_detect_pattern() -> None:
    for pattern in ["a", "ab", "aba", "bba"]:
        program = lib.detect_pattern(rasp.tokens, pattern)
        k = len(pattern)
        for xs in _all_inputs("ab", 6):
            text = "".join(xs)
            expected = [
                N if i < k - 1 else text[i - k + 1 : i + 1] == pattern for i in range(len(xs))
            ]
            assert _evaluate(program, xs) == expected, (pattern, text)
    shift = lib.shift_by(2, rasp.tokens)
    for xs in _all_inputs("ab", 5):
        assert _evaluate(shift, xs) == [N, N, *xs][: len(xs)]


def test_exhaustive_nary_sequencemap() -> None:
    program = lib.make_nary_sequencemap(
        lambda x, y, z: 100 * x + 10 * y + z, rasp.tokens, rasp.indices, rasp.tokens
    )
    for xs in _all_inputs([1, 2, 3], 4):
        assert _evaluate(program, xs) == [100 * x + 10 * i + x for i, x in enumerate(xs)]


# --------------------------------------------------------------------------------------------
# Shape: signatures, labels, encodings, depth.
# --------------------------------------------------------------------------------------------

_POS = inspect.Parameter.POSITIONAL_ONLY
_POS_OR_KW = inspect.Parameter.POSITIONAL_OR_KEYWORD
_KW = inspect.Parameter.KEYWORD_ONLY
_VAR = inspect.Parameter.VAR_POSITIONAL


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("make_length", []),
        ("make_reverse", [("sop", _POS_OR_KW)]),
        (
            "make_pair_balance",
            [("sop", _POS_OR_KW), ("open_token", _POS_OR_KW), ("close_token", _POS_OR_KW)],
        ),
        ("make_shuffle_dyck", [("pairs", _POS_OR_KW)]),
        ("make_shuffle_dyck2", []),
        ("make_hist", []),
        ("make_sort_unique", [("vals", _POS_OR_KW), ("keys", _POS_OR_KW)]),
        (
            "make_sort",
            [("vals", _POS_OR_KW), ("keys", _POS_OR_KW), ("max_seq_len", _KW), ("min_key", _KW)],
        ),
        ("make_sort_freq", [("max_seq_len", _POS_OR_KW)]),
        ("make_frac_prevs", [("bools", _POS_OR_KW)]),
        ("shift_by", [("offset", _POS), ("sop", _POS_OR_KW)]),
        ("detect_pattern", [("sop", _POS_OR_KW), ("pattern", _POS_OR_KW)]),
        ("make_count_less_freq", [("n", _POS_OR_KW)]),
        ("make_count", [("sop", _POS_OR_KW), ("token", _POS_OR_KW)]),
        ("make_nary_sequencemap", [("f", _POS_OR_KW), ("sops", _VAR)]),
    ],
)
def test_signature_matches_reference(name: str, params: list[tuple[str, object]]) -> None:
    signature = inspect.signature(getattr(lib, name))
    actual = [(p.name, p.kind) for p in signature.parameters.values()]
    assert actual == params
    assert all(p.default is inspect.Parameter.empty for p in signature.parameters.values())


@pytest.mark.parametrize(
    ("build", "output_name", "inner_names"),
    [
        (lib.make_length, "length", ["all_true_selector"]),
        (
            lambda: lib.make_reverse(rasp.tokens),
            "reverse",
            ["reverse_selector", "opp_idx-1", "opp_idx", "length"],
        ),
        (
            lambda: lib.make_pair_balance(rasp.tokens, "(", ")"),
            "pair_balance",
            ["opens", "closes", "bools_open", "bools_close"],
        ),
        (
            lib.make_shuffle_dyck2,
            "shuffle_dyck2",
            [
                "balance_()",
                "balance_{}",
                "any_negative",
                "select_all",
                "has_neg",
                "select_last",
                "last_zero",
                "not_has_neg",
                "length",
            ],
        ),
        (lambda: lib.make_shuffle_dyck(["()"]), "shuffle_dyck", ["balance_()", "has_neg"]),
        (lib.make_hist, "hist", ["same_tok"]),
        (
            lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens),
            "sort",
            ["target_pos", "smaller"],
        ),
        (
            lambda: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1),
            "sort",
            ["target_pos", "smaller"],
        ),
        (lambda: lib.make_sort_freq(5), "sort_freq", ["hist", "same_tok", "target_pos"]),
        (lambda: lib.make_frac_prevs(rasp.tokens == "x"), "frac_prevs", []),
        (lambda: lib.shift_by(2, rasp.tokens), "shift_by(2)", []),
        (
            lambda: lib.detect_pattern(rasp.tokens, "abc"),
            "detect_pattern(abc)",
            ["shift_by(1)", "shift_by(2)"],
        ),
        (lambda: lib.make_count_less_freq(2), "count_less_freq", ["select_less", "hist"]),
        (lambda: lib.make_count(rasp.tokens, "a"), "count_a", []),
    ],
)
def test_labels_match_reference(build, output_name: str, inner_names: list[str]) -> None:
    program = build()
    assert program.name == output_name
    names = _by_name(program)
    for inner in inner_names:
        assert inner in names, inner


@pytest.mark.parametrize(
    ("build", "numerical", "categorical"),
    [
        (lib.make_length, [], ["length"]),
        (lib.make_hist, [], ["hist"]),
        (lambda: lib.make_reverse(rasp.tokens), [], ["reverse", "opp_idx", "opp_idx-1"]),
        (lambda: lib.make_frac_prevs(rasp.tokens == "x"), ["frac_prevs"], []),
        (
            lambda: lib.make_pair_balance(rasp.tokens, "(", ")"),
            ["pair_balance", "opens", "closes", "bools_open", "bools_close"],
            [],
        ),
        (
            lib.make_shuffle_dyck2,
            ["balance_()", "balance_{}", "any_negative", "has_neg"],
            ["shuffle_dyck2", "last_zero", "not_has_neg", "length"],
        ),
        (lambda: lib.make_sort_freq(5), [], ["sort_freq", "hist", "target_pos"]),
        (lambda: lib.detect_pattern(rasp.tokens, "ab"), [], ["detect_pattern(ab)", "shift_by(1)"]),
        (lambda: lib.make_count_less_freq(2), [], ["count_less_freq", "hist"]),
        (lambda: lib.make_count(rasp.tokens, "a"), [], ["count_a"]),
    ],
)
def test_encodings_match_reference(build, numerical: list[str], categorical: list[str]) -> None:
    names = _by_name(build())
    for name in numerical:
        assert rasp.is_numerical(names[name]), name
    for name in categorical:
        assert rasp.is_categorical(names[name]), name


def test_frac_prevs_reads_its_input_numerically() -> None:
    program = lib.make_frac_prevs(rasp.tokens == "x")
    assert isinstance(program, rasp.Aggregate)
    assert rasp.is_numerical(program.sop)
    assert program.default == 0


def test_nary_sequencemap_shape() -> None:
    program = lib.make_nary_sequencemap(lambda x, y, z: 0, rasp.tokens, rasp.tokens, rasp.indices)
    assert isinstance(program, rasp.Map)
    assert isinstance(program.inner, rasp.SequenceMap)
    assert isinstance(program.inner.fst, rasp.SequenceMap)
    assert program.inner.snd is rasp.indices


def _layer_count(program: rasp.SOp) -> int:
    """The fewest layers a compiler can fit `program` into, given its dependency chains.

    Sub-layers alternate attention (even) and MLP (odd). Aggregate takes the first attention
    sub-layer after its inputs are ready; SelectorWidth does too and finishes in the MLP right
    after it; Map and SequenceMap take the first MLP sub-layer after their inputs. Selectors
    only pass their inputs' readiness through.
    """
    ready: dict[int, int] = {}

    def visit(expr: rasp.RASPExpr) -> int:
        if id(expr) in ready:
            return ready[id(expr)]
        deps = max((visit(child) for child in expr.children), default=-1)
        if isinstance(expr, rasp.Selector) or not expr.children:
            result = deps
        elif isinstance(expr, (rasp.Aggregate, rasp.SelectorWidth)):
            attention = deps + 1 if deps % 2 else deps + 2
            result = attention + 1 if isinstance(expr, rasp.SelectorWidth) else attention
        else:
            assert isinstance(expr, (rasp.Map, rasp.SequenceMap)), expr
            result = deps + 2 if deps % 2 else deps + 1
        ready[id(expr)] = result
        return result

    return visit(program) // 2 + 1


@pytest.mark.parametrize(
    ("build", "reference_layers"),
    [
        (lib.make_length, 1),
        (lambda: lib.make_reverse(rasp.tokens), 4),
        (lib.make_hist, 1),
        (lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens), 2),
        (lambda: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1), 3),
        (lambda: lib.make_sort_freq(5), 5),
        (lambda: lib.make_frac_prevs(rasp.tokens == "l"), 2),
        (lambda: lib.make_pair_balance(rasp.tokens, "(", ")"), 2),
        (lib.make_shuffle_dyck2, 8),
        (lambda: lib.make_shuffle_dyck(["()", "{}", "[]"]), 9),
        (lambda: lib.detect_pattern(rasp.tokens, "abc"), 3),
        (
            lambda: lib.make_nary_sequencemap(
                lambda x, y, z: x + y - z, rasp.tokens, rasp.tokens, rasp.indices
            ),
            3,
        ),
    ],
)
def test_depth_is_at_most_the_references(build, reference_layers: int) -> None:
    assert 1 <= _layer_count(build()) <= reference_layers


def test_layer_count_helper_on_known_chains() -> None:
    # Checks the helper itself: attention then two MLPs then attention is three layers.
    width = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE))
    plus = rasp.SequenceMap(lambda x, y: x + y, width, rasp.indices)
    minus = rasp.Map(lambda x: x - 1, plus)
    gather = rasp.Aggregate(rasp.Select(rasp.indices, minus, rasp.Comparison.EQ), rasp.tokens)
    assert _layer_count(width) == 1
    assert _layer_count(plus) == 2
    assert _layer_count(minus) == 3
    assert _layer_count(gather) == 4
