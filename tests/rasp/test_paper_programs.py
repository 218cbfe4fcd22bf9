"""Programs from the RASP paper (Weiss et al. 2021), written in our DSL, on hand-worked inputs.

`PAPER_CASES` is a plain table (name, program, input, expected output) other test suites can reuse.
"""

from __future__ import annotations

import operator

import pytest

from tracr.rasp import causal_eval, rasp

EQ, LT, LEQ, TRUE = (
    rasp.Comparison.EQ,
    rasp.Comparison.LT,
    rasp.Comparison.LEQ,
    rasp.Comparison.TRUE,
)


def make_length() -> rasp.SOp:
    """`length` from attention alone: the width of a select-everything selector."""
    return rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, TRUE)).named("length")


def make_reverse(sop: rasp.SOp, length: rasp.SOp) -> rasp.SOp:
    opp_index = (length - rasp.indices).named("opp_index")
    opp_index = (opp_index - 1).named("opp_index-1")
    flip = rasp.Select(rasp.indices, opp_index, EQ).named("flip")
    return rasp.Aggregate(flip, sop).named("reverse")


def make_histogram(sop: rasp.SOp) -> rasp.SOp:
    """How many times each position's token occurs in the whole sequence."""
    return rasp.SelectorWidth(rasp.Select(sop, sop, EQ)).named("histogram")


def make_sort(vals: rasp.SOp, keys: rasp.SOp) -> rasp.SOp:
    """`vals` ordered by `keys`, stable: equal keys keep their order (the paper's `sort`)."""
    smaller = rasp.Select(keys, keys, LT) | (
        rasp.Select(keys, keys, EQ) & rasp.Select(rasp.indices, rasp.indices, LT)
    )
    target_pos = rasp.SelectorWidth(smaller).named("target_pos")
    move = rasp.Select(target_pos, rasp.indices, EQ).named("move")
    return rasp.Aggregate(move, vals).named("sort")


def make_has_prev(sop: rasp.SOp) -> rasp.SOp:
    """Whether the same token occurs at an earlier position."""
    earlier_same = rasp.Select(sop, sop, EQ) & rasp.Select(rasp.indices, rasp.indices, LT)
    return rasp.numerical(rasp.Aggregate(earlier_same, rasp.Full(1), default=0)) > 0


def make_double_histogram(sop: rasp.SOp) -> rasp.SOp:
    """For each position, how many distinct tokens occur as often as its own token."""
    hist = make_histogram(sop)
    is_first = ~make_has_prev(sop)
    same_count_first = rasp.Select(hist, hist, EQ) & rasp.Select(is_first, rasp.Full(True), EQ)
    return rasp.SelectorWidth(same_count_first).named("double_histogram")


def make_sort_by_most_frequent(sop: rasp.SOp) -> rasp.SOp:
    """Tokens ordered from most to least frequent; ties keep their input order."""
    return make_sort(sop, -1 * make_histogram(sop)).named("sort_by_most_frequent")


def make_frac_prevs(bools: rasp.SOp) -> rasp.SOp:
    """At each position, the fraction of positions so far (itself included) where `bools`."""
    prefix = rasp.Select(rasp.indices, rasp.indices, LEQ)
    return rasp.numerical(rasp.Aggregate(prefix, rasp.numerical(bools), default=0))


def make_dyck1_balance(sop: rasp.SOp) -> rasp.SOp:
    """(opens - closes) / (position + 1) for each prefix."""
    opens = make_frac_prevs(sop == "(")
    closes = make_frac_prevs(sop == ")")
    return rasp.numerical(rasp.LinearSequenceMap(opens, closes, 1, -1)).named("balance")


def make_dyck1(sop: rasp.SOp, length: rasp.SOp) -> rasp.SOp:
    """True at every position iff the whole sequence of parentheses is balanced."""
    balance = make_dyck1_balance(sop)
    everything = rasp.Select(rasp.indices, rasp.indices, TRUE)
    any_negative = rasp.numerical(rasp.Aggregate(everything, balance < 0, default=0)) > 0
    last = rasp.Select(rasp.indices, length - 1, EQ)
    ends_at_zero = rasp.Aggregate(last, balance == 0)
    return rasp.SequenceMap(lambda neg, zero: zero and not neg, any_negative, ends_at_zero)


def _pairs(keys: list[int], letters: str) -> list[tuple[int, str]]:
    return list(zip(keys, letters, strict=True))


KEY = rasp.Map(operator.itemgetter(0), rasp.tokens)
LETTER = rasp.Map(operator.itemgetter(1), rasp.tokens)

PAPER_CASES = [
    ("reverse", make_reverse(rasp.tokens, rasp.length), list("abc"), list("cba")),
    ("reverse", make_reverse(rasp.tokens, rasp.length), [1, 2, 3, 4], [4, 3, 2, 1]),
    ("reverse_attn_length", make_reverse(rasp.tokens, make_length()), "hello", list("olleh")),
    ("reverse_one", make_reverse(rasp.tokens, rasp.length), [7], [7]),
    ("length", make_length(), "hello", [5, 5, 5, 5, 5]),
    ("histogram", make_histogram(rasp.tokens), "hello", [1, 1, 2, 2, 1]),
    ("histogram", make_histogram(rasp.tokens), "aaabbc", [3, 3, 3, 2, 2, 1]),
    ("sort_unique", make_sort(rasp.tokens, rasp.tokens), [5, 2, 8, 1], [1, 2, 5, 8]),
    # keys 2 1 2 1 with letters w x y z: the 1s (x, z) first, then the 2s (w, y), each in order.
    ("sort_stable", make_sort(LETTER, KEY), _pairs([2, 1, 2, 1], "wxyz"), list("xzwy")),
    ("sort_strings", make_sort(rasp.tokens, rasp.tokens), list("dcab"), list("abcd")),
    ("has_prev", make_has_prev(rasp.tokens), "hello", [False, False, False, True, False]),
    ("has_prev", make_has_prev(rasp.tokens), [0, 2, 3, 2, 1, 0, 2], [0, 0, 0, 1, 0, 1, 1]),
    # a occurs 3 times (1 token with count 3); b, c twice (2 tokens); d, e, f once (3 tokens).
    (
        "double_histogram",
        make_double_histogram(rasp.tokens),
        "aaabbccdef",
        [1, 1, 1, 2, 2, 2, 2, 3, 3, 3],
    ),
    ("double_histogram", make_double_histogram(rasp.tokens), "abab", [2, 2, 2, 2]),
    # counts h1 e1 l2 l2 o1: l l first, then h e o in input order.
    ("sort_by_most_frequent", make_sort_by_most_frequent(rasp.tokens), "hello", list("llheo")),
    ("sort_by_most_frequent", make_sort_by_most_frequent(rasp.tokens), "abbccc", list("cccbba")),
    ("sort_by_most_frequent", make_sort_by_most_frequent(rasp.tokens), "abab", list("abab")),
    ("dyck1", make_dyck1(rasp.tokens, rasp.length), "()", [True, True]),
    ("dyck1", make_dyck1(rasp.tokens, rasp.length), "(())()", [True] * 6),
    ("dyck1", make_dyck1(rasp.tokens, rasp.length), "(()", [False] * 3),
    ("dyck1", make_dyck1(rasp.tokens, rasp.length), ")(", [False] * 2),
    ("dyck1", make_dyck1(rasp.tokens, rasp.length), "())(", [False] * 4),
    ("dyck1", make_dyck1(rasp.tokens, rasp.length), "(", [False]),
    ("dyck1_attn_length", make_dyck1(rasp.tokens, make_length()), "(()())", [True] * 6),
]


@pytest.mark.parametrize(
    ("program", "xs", "expected"),
    [case[1:] for case in PAPER_CASES],
    ids=[case[0] for case in PAPER_CASES],
)
def test_paper_program(program, xs, expected):
    assert rasp.evaluate(program, xs) == expected


@pytest.mark.parametrize(
    ("xs", "expected"),
    [
        # opens/closes so far, divided by the prefix length.
        ("(()", [1.0, 1.0, 1 / 3]),
        ("())", [1.0, 0.0, -1 / 3]),
        (")(", [-1.0, 0.0]),
    ],
)
def test_dyck1_balance(xs, expected):
    assert rasp.evaluate(make_dyck1_balance(rasp.tokens), xs) == pytest.approx(expected)


def test_frac_prevs():
    # "l" so far in "hello": 0/1, 0/2, 1/3, 2/4, 2/5.
    frac = make_frac_prevs(rasp.tokens == "l")
    assert rasp.evaluate(frac, "hello") == pytest.approx([0.0, 0.0, 1 / 3, 1 / 2, 2 / 5])
    assert rasp.is_numerical(frac)


def test_frac_prevs_is_causal():
    # Only earlier positions are read, so the causal evaluator agrees everywhere.
    frac = make_frac_prevs(rasp.tokens == "l")
    assert causal_eval.evaluate(frac, "hello") == rasp.evaluate(frac, "hello")


def test_named_program_parts_keep_their_names():
    program = make_sort(rasp.tokens, rasp.tokens)
    assert program.name == "sort"
    assert program.selector.name == "move"
    assert program.selector.keys.name == "target_pos"
    assert program.label.startswith("sort_")
