"""compiler/traced: a program's graph is kept while its expressions are unchanged, and
traced again, with its static checks, when one of them changes."""

from __future__ import annotations

import pytest

from tracr.compiler import compiling, lib, traced, validating
from tracr.rasp import rasp


def _frac_prevs():
    bools = rasp.numerical(rasp.Map(lambda t: t == "a", rasp.tokens))
    prefix = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    return rasp.numerical(rasp.Aggregate(prefix, bools, default=0))


def test_an_unchanged_program_keeps_its_graph():
    program = lib.make_reverse(rasp.tokens)
    assert traced.trace(program) is traced.trace(program)


def test_another_object_with_the_same_structure_is_traced_afresh():
    assert traced.trace(_frac_prevs()) is not traced.trace(_frac_prevs())


def test_a_reassigned_default_is_checked_again():
    program = _frac_prevs()
    compiling.compile_rasp_to_model(program, vocab={"a", "b"}, max_seq_len=3)
    program.default = 1  # a numerical Aggregate needs default 0
    with pytest.raises(validating.UnsupportedProgramError, match="default=0"):
        compiling.compile_rasp_to_model(program, vocab={"a", "b"}, max_seq_len=3)


def test_a_changed_annotation_of_a_child_is_checked_again():
    program = _frac_prevs()
    compiling.compile_rasp_to_model(program, vocab={"a", "b"}, max_seq_len=3)
    bools = program.sop
    bools.annotations = {**bools.annotations, "encoding": rasp.Encoding.CATEGORICAL}
    with pytest.raises(validating.UnsupportedProgramError, match="encoding"):
        compiling.compile_rasp_to_model(program, vocab={"a", "b"}, max_seq_len=3)


def test_a_replaced_child_is_traced_again():
    program = lib.make_length()
    first = traced.trace(program)
    program.selector = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    second = traced.trace(program)
    assert second is not first
    assert program.selector.label in second.graph and program.selector.label not in first.graph


def test_a_refused_program_is_refused_every_time():
    program = rasp.numerical(
        rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ), rasp.tokens)
    )
    for _ in range(2):
        with pytest.raises(validating.UnsupportedProgramError):
            traced.trace(program)
