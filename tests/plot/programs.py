"""A small program with hand-picked labels, shared by the plot, report and notebook tests.

`sort_unique` is lib.make_sort_unique written out with `.named` labels, so tests can name
SOps without relying on generated label numbers. Compiled for vocab {1, 2, 3, 4} and
max_seq_len 5 it has two layers of one head: layer 0 counts the smaller tokens
(SelectorWidth: head 0, then MLP), layer 1 head 0 moves each token to that position.
"""

from __future__ import annotations

import functools

from tracr.compiler import compiling
from tracr.rasp import rasp

VOCAB = {1, 2, 3, 4}
MAX_SEQ_LEN = 5
INPUT = ["BOS", 2, 4, 3, 1]
SORTED = ["BOS", 1, 2, 3, 4]


def sort_unique() -> tuple[rasp.SOp, rasp.SOp]:
    """(the program, its target_pos SOp). Labels are `{name}_{unique id}`: read them from
    the SOps (`program.label`), never write the numbers in a test."""
    smaller = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT).named("smaller")
    target_pos = rasp.SelectorWidth(smaller).named("target_pos")
    move = rasp.Select(target_pos, rasp.indices, rasp.Comparison.EQ).named("move")
    return rasp.Aggregate(move, rasp.tokens).named("sort"), target_pos


@functools.cache
def compiled():
    """(program, model, labels); labels maps "sort" and "target_pos" to the SOp labels.

    Cached: tests must not edit the model (copy its params first)."""
    program, target_pos = sort_unique()
    model = compiling.compile_rasp_to_model(
        program, vocab=VOCAB, max_seq_len=MAX_SEQ_LEN, compiler_bos="BOS"
    )
    return program, model, {"sort": program.label, "target_pos": target_pos.label}
