"""The evaluators on the shared end-to-end table (tests/cases.py), whose outputs were worked out
by hand."""

from __future__ import annotations

import pytest

from tests import cases
from tracr.rasp import causal_eval, rasp


@pytest.mark.parametrize("case", cases.CASES, ids=[case.name for case in cases.CASES])
def test_evaluate_matches_shared_case(case):
    program = case.make_program()
    for xs, expected in zip(case.inputs, case.expected, strict=True):
        assert cases.outputs_match(rasp.evaluate(program, xs), expected), (xs, expected)


@pytest.mark.parametrize("case", cases.CASES, ids=[case.name for case in cases.CASES])
def test_causal_evaluate_at_position_zero_sees_one_token(case):
    # At the first position the causal mask leaves only key 0 for every selector, exactly what
    # the full evaluator sees on the one-token prefix. `length` is not masked, so it differs.
    program = case.make_program()
    if _uses_length(program):
        pytest.skip("the program reads `length`, which the causal evaluator does not mask")
    for xs in case.inputs:
        first = causal_eval.evaluate(program, xs)[0]
        assert cases.outputs_match([first], rasp.evaluate(program, xs[:1])), xs


def _uses_length(expr: rasp.RASPExpr) -> bool:
    stack, seen = [expr], set()
    while stack:
        node = stack.pop()
        if isinstance(node, rasp.LengthType):
            return True
        if id(node) not in seen:
            seen.add(id(node))
            stack.extend(node.children)
    return False
