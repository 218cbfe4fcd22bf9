"""A library of RASP programs that the compiler supports.

Every function here builds a RASP expression out of the primitives the compiler can lower
(Select, Aggregate, SelectorWidth, Map, SequenceMap), so each result compiles to a transformer.
Names, signatures, defaults and results follow the reference Tracr library, and so does each
program's shape: which primitives feed which, with which encoding and which `.named` label.
That shape fixes the compiled model (every Select + Aggregate or SelectorWidth is an attention
layer, every Map or SequenceMap an MLP, the longest chain sets the depth), and the labels are
what users read in `residual_labels`; changing either changes the model users get.

Programs split in two groups: those that need to see the whole sequence (length, reverse,
sorting, dyck, histograms, counts) and those that only look at earlier positions and therefore
also work under causal evaluation (`make_frac_prevs`, `shift_by`, `detect_pattern`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tracr.rasp import rasp

# --------------------------------------------------------------------------------------------
# Programs that need the whole sequence (non-causal evaluation only).
# --------------------------------------------------------------------------------------------


def make_length() -> rasp.SOp:
    """Returns a categorical SOp holding the input length at every position.

    A selector that is true everywhere selects all n positions from every query, so its width
    is n. This is the usual way to get the length into the residual stream, since a
    transformer has no built-in length.

    Example: `make_length()("abcd") == [4, 4, 4, 4]`.
    """
    everything = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)
    return rasp.SelectorWidth(everything.named("all_true_selector")).named("length")


# One shared `length`, as in the reference: programs built from this module (make_reverse,
# make_shuffle_dyck) reuse this one SOp, so combining several of them computes length once.
length = make_length()


def make_reverse(sop: rasp.SOp) -> rasp.SOp:
    """Returns `sop` read back to front.

    Position i reads the value at position n - 1 - i. The target index is computed in two MLP
    steps, "opp_idx" = length - i and then "opp_idx-1", and one attention head selects the key
    position whose index equals it.

    Example: `make_reverse(rasp.tokens)("Hello") == ["o", "l", "l", "e", "H"]`.
    """
    opp_idx = (length - rasp.indices).named("opp_idx")
    opp_idx = (opp_idx - 1).named("opp_idx-1")
    flip = rasp.Select(rasp.indices, opp_idx, rasp.Comparison.EQ).named("reverse_selector")
    return rasp.Aggregate(flip, sop).named("reverse")


def make_pair_balance(sop: rasp.SOp, open_token: str, close_token: str) -> rasp.SOp:
    """Returns, per position, the share of opening minus the share of closing tokens so far.

    Both shares are over the prefix up to and including the position (the RASP paper's
    construction). A bracket string is balanced for this pair exactly when the result is never
    negative and is 0 at the last position. Numerically encoded throughout: two `frac_prevs`
    means ("opens", "closes") combined by a linear SequenceMap.

    Example: `make_pair_balance(rasp.tokens, "(", ")")("a()b(c))")
    == [0, 1/2, 0, 0, 1/5, 1/6, 0, -1/8]`.
    """
    is_open = rasp.numerical(sop == open_token).named("bools_open")
    opens = rasp.numerical(make_frac_prevs(is_open)).named("opens")
    is_close = rasp.numerical(sop == close_token).named("bools_close")
    closes = rasp.numerical(make_frac_prevs(is_close)).named("closes")
    balance = rasp.numerical(rasp.LinearSequenceMap(opens, closes, 1, -1))
    return balance.named("pair_balance")


def make_shuffle_dyck(pairs: list[str]) -> rasp.SOp:
    """Returns a SOp that is true at every position iff the input is shuffle-Dyck balanced.

    Shuffle-Dyck-k: each of the k bracket kinds is balanced on its own (kinds may interleave,
    so "({)}" counts as balanced). Following the RASP paper, a kind is balanced when its
    `make_pair_balance` is never negative and ends at 0. The program checks

    * "has_neg": the mean over all positions of "some kind is negative here" (numerical), which
      is 0 exactly when no prefix ever closes more than it opened;
    * "last_zero": whether every kind's balance is 0 at the last position;

    and returns "last_zero and not has_neg" at every position. The result is a bool.

    Args:
      pairs: one two-character string (opening then closing token) per bracket kind.

    Raises:
      ValueError: when `pairs` is empty or an entry is not exactly two tokens.
    """
    if len(pairs) < 1:
        raise ValueError("make_shuffle_dyck needs at least one bracket pair, got none.")
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(
                "make_shuffle_dyck: each pair must be one opening and one closing token, "
                f"got {pair!r}."
            )

    balances = []
    for pair in pairs:
        open_token, close_token = pair
        balance = make_pair_balance(rasp.tokens, open_token=open_token, close_token=close_token)
        balances.append(balance.named(f"balance_{pair}"))

    # Is some kind's balance negative at this position? (categorical, one MLP per extra kind)
    any_negative = balances[0] < 0
    for balance in balances[1:]:
        any_negative = any_negative | (balance < 0)
    # Re-encode as a number so that a numerical mean can spread it over all positions.
    any_negative = rasp.numerical(rasp.Map(lambda x: x, any_negative)).named("any_negative")
    select_all = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.TRUE).named("select_all")
    has_neg = rasp.numerical(rasp.Aggregate(select_all, any_negative, default=0)).named("has_neg")

    # Are all kinds closed at the end? Read "all balances are 0" from the last position.
    all_zero = balances[0] == 0
    for balance in balances[1:]:
        all_zero = all_zero & (balance == 0)
    select_last = rasp.Select(rasp.indices, length - 1, rasp.Comparison.EQ).named("select_last")
    last_zero = rasp.Aggregate(select_last, all_zero).named("last_zero")

    not_has_neg = (~has_neg).named("not_has_neg")
    return (last_zero & not_has_neg).named("shuffle_dyck")


def make_shuffle_dyck2() -> rasp.SOp:
    """Returns shuffle-Dyck-2 over "()" and "{}", labelled "shuffle_dyck2".

    Example: `make_shuffle_dyck2()("({)}") == [True] * 4`, `make_shuffle_dyck2()("{}(")
    == [False] * 3`.
    """
    return make_shuffle_dyck(pairs=["()", "{}"]).named("shuffle_dyck2")


def make_hist() -> rasp.SOp:
    """Returns, at every position, how often that position's token occurs in the input.

    The width of the "same token" selector is the count (the RASP paper's histogram).

    Example: `make_hist()("abac") == [2, 1, 2, 1]`.
    """
    same_tok = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ).named("same_tok")
    return rasp.SelectorWidth(same_tok).named("hist")


def make_sort_unique(vals: rasp.SOp, keys: rasp.SOp) -> rasp.SOp:
    """Returns `vals` reordered so that their `keys` ascend; keys must be pairwise distinct.

    The target position of each element is the number of keys smaller than its own
    ("target_pos", a SelectorWidth); output position i then reads the element whose target is
    i. With repeated keys two elements share a target and some position gets none, so the
    result is wrong there; `make_sort` makes keys distinct first.

    Example: `make_sort_unique(rasp.tokens, rasp.tokens)([2, 4, 3, 1]) == [1, 2, 3, 4]`.
    """
    smaller = rasp.Select(keys, keys, rasp.Comparison.LT).named("smaller")
    target_pos = rasp.SelectorWidth(smaller).named("target_pos")
    sel_new = rasp.Select(target_pos, rasp.indices, rasp.Comparison.EQ)
    return rasp.Aggregate(sel_new, vals).named("sort")


def make_sort(vals: rasp.SOp, keys: rasp.SOp, *, max_seq_len: int, min_key: float) -> rasp.SOp:
    """Returns `vals` sorted by ascending, possibly repeated, numeric `keys`; ties keep order.

    Instead of the RASP paper's selector composition, ties are broken by adding a small
    position-dependent offset, key + min_key * i / max_seq_len, and sorting on that with
    `make_sort_unique`. The offsets grow with the position, so equal keys keep their input
    order; they stay below `min_key`, so, as long as distinct keys differ by at least
    `min_key`, they never reorder distinct keys.

    Args:
      vals: the values to reorder.
      keys: numeric sort keys.
      max_seq_len: the longest input the program will see.
      min_key: the smallest gap between distinct keys (1 for integer keys).

    Example: `make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1)([2, 4, 1, 2])
    == [1, 2, 2, 4]`.
    """
    unique_keys = rasp.SequenceMap(
        lambda key, index: key + min_key * index / max_seq_len, keys, rasp.indices
    )
    return make_sort_unique(vals, unique_keys)


def make_sort_freq(max_seq_len: int) -> rasp.SOp:
    """Returns the tokens ordered from most to least frequent; equal counts keep input order.

    Sorts the tokens on the key -hist with `make_sort`, so every occurrence of a frequent
    token comes before those of rarer ones.

    Example: `make_sort_freq(max_seq_len=5)([2, 4, 2, 1]) == [2, 2, 4, 1]`.
    """
    neg_hist = -1 * make_hist().named("hist")
    return make_sort(rasp.tokens, neg_hist, max_seq_len=max_seq_len, min_key=1).named("sort_freq")


# --------------------------------------------------------------------------------------------
# Programs that only look backwards (valid under causal and non-causal evaluation).
# --------------------------------------------------------------------------------------------


def make_frac_prevs(bools: rasp.SOp) -> rasp.SOp:
    """Returns, per position, the fraction of positions up to and including it where `bools`
    is true.

    One attention head averages the numerically encoded `bools` over the prefix selector
    key <= query. The output is numerical and labelled "frac_prevs".

    Example: `make_frac_prevs(rasp.tokens == "l")("hello") == [0, 0, 1/3, 1/2, 2/5]`.
    """
    bools = rasp.numerical(bools)
    prefix = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    return rasp.numerical(rasp.Aggregate(prefix, bools, default=0)).named("frac_prevs")


def shift_by(offset: int, /, sop: rasp.SOp) -> rasp.SOp:
    """Returns `sop` moved `offset` positions to the right; the first `offset` are None.

    Position q reads position q - offset; where that does not exist the selector is empty and
    the aggregate gives its default, None.

    Example: `shift_by(1, rasp.tokens)("abcd") == [None, "a", "b", "c"]`.
    """
    earlier = rasp.Select(rasp.indices, rasp.indices, lambda k, q: q == k + offset)
    return rasp.Aggregate(earlier, sop, default=None).named(f"shift_by({offset})")


def detect_pattern(sop: rasp.SOp, pattern: Sequence[rasp.Value]) -> rasp.SOp:
    """Returns a SOp that is true where `pattern` ends in `sop`, false elsewhere.

    The first len(pattern) - 1 positions, where the pattern cannot fit, are None. For the
    element k places from the end of the pattern, one MLP tests `sop == element` and, for
    k > 0, one attention head shifts that test right by k; the tests are then and-ed together.

    Example: `detect_pattern(rasp.tokens, "abc")("abcabc")
    == [None, None, True, False, False, True]`.

    Raises:
      ValueError: when `pattern` is empty.
    """
    if len(pattern) < 1:
        raise ValueError(f"detect_pattern needs a pattern of length >= 1, got {pattern!r}.")

    # matches[k] is true at position j iff sop[j - k] equals the k-th element from the end.
    matches = []
    for k, element in enumerate(reversed(pattern)):
        match = sop == element
        if k > 0:
            match = shift_by(k, match)
        matches.append(match)

    # And them together starting from the pattern's first element.
    detected = matches.pop()
    while matches:
        detected = detected & matches.pop()
    return detected.named(f"detect_pattern({pattern})")


def make_count_less_freq(n: int) -> rasp.SOp:
    """Returns, at every position, how many positions hold a token occurring at most n times.

    Counts positions, not distinct tokens, and uses "at most" (hist <= n), as the reference
    does despite its name. Built as the width of a selector whose predicate tests the key
    position's "hist".

    Example: `make_count_less_freq(2)(["a", "a", "a", "b", "b", "c"]) == [3] * 6` (the two
    "b"s and the "c").
    """
    hist = make_hist().named("hist")
    select_less = rasp.Select(hist, hist, lambda x, y: x <= n).named("select_less")
    return rasp.SelectorWidth(select_less).named("count_less_freq")


def make_count(sop: rasp.SOp, token: rasp.Value) -> rasp.SOp:
    """Returns, at every position, the number of positions where `sop` equals `token`.

    Labelled f"count_{token}".

    Example: `make_count(rasp.tokens, "a")(["c", "a", "b", "c"]) == [1, 1, 1, 1]`.
    """
    is_token = rasp.Select(sop, sop, lambda k, q: k == token)
    return rasp.SelectorWidth(is_token).named(f"count_{token}")


def make_nary_sequencemap(f: Callable[..., rasp.Value], *sops: rasp.SOp) -> rasp.SOp:
    """Returns a SOp computing `f(x_1, ..., x_n)` elementwise over `sops`.

    RASP's SequenceMap takes two arguments. This chains n - 1 SequenceMaps that collect the
    arguments into a tuple, (x_1, x_2), then (x_1, x_2, x_3), ..., and finishes with a Map
    that applies `f` to the tuple. Every tuple SOp is categorical, with one value per
    reachable combination, so compiled models grow quickly with n.

    Raises:
      ValueError: when no SOp is given.
    """
    if not sops:
        raise ValueError("make_nary_sequencemap needs at least one SOp, got none.")
    first, *rest = sops
    if not rest:
        return rasp.Map(f, first)
    # Pair up the first two arguments, then append one argument per further SequenceMap. (The
    # reference decides by isinstance(x, tuple), which breaks when the first SOp holds tuples.)
    args = rasp.SequenceMap(lambda x, y: (x, y), first, rest[0])
    for sop in rest[1:]:
        args = rasp.SequenceMap(lambda xs, y: (*xs, y), args, sop)
    return rasp.Map(lambda xs: f(*xs), args)
