"""The library programs the benchmarks measure, at "small" (max_seq_len 5, 4-token vocabs)
or "16/16" sizes. `lib` and `rasp` are passed in, so the reference Tracr's modules can build
the very same programs (benchmarks/reference.py runs it in its own venv)."""

from __future__ import annotations


def programs(lib, rasp, size: str, n: int):
    """(name, program, vocab) for every library program; the same on both sides."""
    small = size == "small"
    numbers = set(range(1, 5)) if small else set(range(16))
    letters = {"a", "b", "c", "d"} if small else {chr(ord("a") + i) for i in range(16)}
    return [
        ("make_length", lib.make_length(), letters),
        ("make_reverse", lib.make_reverse(rasp.tokens), letters),
        ("make_hist", lib.make_hist(), letters),
        ("make_sort_unique", lib.make_sort_unique(rasp.tokens, rasp.tokens), numbers),
        ("make_sort", lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=n, min_key=1), numbers),
        ("make_sort_freq", lib.make_sort_freq(n), numbers),
        ("make_frac_prevs", lib.make_frac_prevs(rasp.tokens == "a"), letters),
        ("make_pair_balance", lib.make_pair_balance(rasp.tokens, "(", ")"), set("abc()")),
        ("make_shuffle_dyck", lib.make_shuffle_dyck(["()", "{}", "[]"]), set("(){}[]")),
        ("make_shuffle_dyck2", lib.make_shuffle_dyck2(), set("(){}")),
        ("detect_pattern", lib.detect_pattern(rasp.tokens, "abc"), set("abc")),
        ("make_count_less_freq", lib.make_count_less_freq(2), letters),
        ("make_count", lib.make_count(rasp.tokens, "a"), letters),
        ("shift_by", lib.shift_by(2, rasp.tokens), letters),
        (
            "make_nary_sequencemap",
            lib.make_nary_sequencemap(
                lambda x, y, z: x + y - z, rasp.tokens, rasp.tokens, rasp.indices
            ),
            {1, 2, 3},
        ),
    ]
