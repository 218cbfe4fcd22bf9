"""Program references, vocabularies and token lists as typed on the command line."""

from __future__ import annotations

import pytest

from tracr.cli import references
from tracr.compiler import lib
from tracr.rasp import rasp


def test_tokens_and_vocab():
    assert references.parse_tokens(["1,2", "3"]) == [1, 2, 3]
    assert references.parse_tokens(["a b", "-4"]) == ["a", "b", -4]
    assert references.parse_tokens(["1.5"]) == ["1.5"]  # only integers become numbers
    assert references.parse_vocab(["a", "b", "a"]) == {"a", "b"}
    with pytest.raises(references.InputError, match="vocab is empty"):
        references.parse_vocab([",", " "])


def test_module_function_called_without_arguments():
    program = references.load_program("tracr.compiler.lib:make_hist")
    assert program(["a", "b", "a"]) == [2, 1, 2]


def test_module_call_with_rasp_names_literals_and_keywords():
    program = references.load_program(
        "tracr.compiler.lib:make_sort(rasp.tokens, tokens, max_seq_len=5, min_key=1)"
    )
    assert program([3, 1, 2]) == [1, 2, 3]
    frac = references.load_program('tracr.compiler.lib:make_frac_prevs(tokens == "x")')
    assert frac(["x", "y"]) == [1, 0.5]
    pattern = references.load_program("tracr.compiler.lib:detect_pattern(tokens, [1, -2])")
    assert pattern([1, -2, 1, -2]) == lib.detect_pattern(rasp.tokens, [1, -2])([1, -2, 1, -2])
    compare = references.load_program(
        "tracr.rasp.rasp:SelectorWidth(Select(tokens, tokens, Comparison.LT))"
    )
    assert compare([3, 1, 2]) == [2, 0, 1]


def test_file_with_an_sop_and_a_function(tmp_path):
    (tmp_path / "helper.py").write_text("OFFSET = 1\n")
    (tmp_path / "progs.py").write_text(
        "from tracr.rasp import rasp\n"
        "import helper\n"
        "program = rasp.Map(lambda t: t + helper.OFFSET, rasp.tokens)\n"
        "def doubled():\n"
        "    return rasp.Map(lambda t: 2 * t, rasp.tokens)\n"
    )
    assert references.load_program(f"{tmp_path}/progs.py:program")([1, 2]) == [2, 3]
    assert references.load_program(f"{tmp_path}/progs.py:doubled")([1, 2]) == [2, 4]


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("make_hist", "must be SOURCE:NAME"),
        ("tracr.compiler.lib:", "must be SOURCE:NAME"),
        ("missing.py:x", "no such Python file: missing.py"),
        ("no_such_module_xyz:f", "no module named 'no_such_module_xyz'"),
        ("not a module:f", "neither a .py file nor a module name"),
        ("tracr.compiler.lib:nope", "'nope' is not defined in tracr.compiler.lib"),
        ("tracr.compiler.lib:make_hist(", "cannot parse"),
        ("tracr.compiler.lib:__import__('os')", "'__import__' is not defined"),
        ("tracr.compiler.lib:rasp.__dict__", "only public attributes"),
        ("tracr.compiler.lib:(lambda: 1)()", "Lambda expressions are not allowed"),
        ("tracr.compiler.lib:length.label", "only public attributes of modules and classes"),
        ("tracr.compiler.lib:make_reverse()", "calling make_reverse"),
        ("tracr.compiler.lib:make_sort_unique", "calling make_sort_unique"),
        ("tracr.compiler.lib:1 + 2", "gives a int, not a RASP SOp"),
    ],
)
def test_bad_references_say_what_is_wrong(reference, message):
    with pytest.raises(references.InputError, match=message.replace("(", r"\(")):
        references.load_program(reference)


def test_a_file_that_fails_to_import(tmp_path):
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(references.InputError, match="importing .*broken.py failed: RuntimeError"):
        references.load_program(f"{tmp_path}/broken.py:x")
