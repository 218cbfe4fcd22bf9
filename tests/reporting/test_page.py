"""The report's HTML, read as text: every section, the model's numbers, nothing remote."""

from __future__ import annotations

import re

import pytest

import tracr
from tests.plot import programs
from tracr.reporting import page


@pytest.fixture(scope="module")
def html_text():
    program, model, _ = programs.compiled()
    return page.render(model, [[2, 4, 3, 1], ["BOS", 3, 1]], program=program)


def test_sections_and_model_summary(html_text):
    _, model, names = programs.compiled()
    for heading in ("Model summary", "Program graph", "Layer allocation", "Circuit map"):
        assert f">{heading}<" in html_text
    assert f"<td>d_model (residual width)</td><td>{len(model.residual_labels)}</td>" in html_text
    assert "<td>layers</td><td>2</td>" in html_text
    assert "<td>vocab</td><td>1 2 3 4</td>" in html_text
    assert f"<td>output SOp</td><td>{names['sort']}</td>" in html_text
    count = sum(a.size for block in model.params.values() for a in block.values())
    assert f"<td>parameters</td><td>{count:,}</td>" in html_text


def test_each_input_is_shown_with_its_decoded_output(html_text):
    # BOS is added to the first input, kept on the second
    assert ">Input 0: BOS 2 4 3 1<" in html_text and ">Input 1: BOS 3 1<" in html_text
    decoded = re.findall(r'<table class="decoded">(.*?)</table>', html_text)
    assert len(decoded) == 2
    rows = re.findall(r"<tr><td>(\d)</td><td>(\w+)</td><td>(\w+)</td></tr>", decoded[0])
    assert rows == [
        ("0", "BOS", "BOS"),
        ("1", "2", "1"),
        ("2", "4", "2"),
        ("3", "3", "3"),
        ("4", "1", "4"),
    ]


def test_circuit_map_and_allocation_name_the_blocks(html_text):
    _, _, names = programs.compiled()
    sort, target_pos = names["sort"], names["target_pos"]
    assert f"<tr><td>1</td><td>attn</td><td>{sort}</td></tr>" in html_text
    assert "<tr><td>1</td><td>mlp</td><td>(empty)</td></tr>" in html_text
    assert f"<tr><td>{sort}</td><td>layer 1</td><td>head 0</td>" in html_text
    reads = ", ".join(sorted(["indices", target_pos, "tokens"]))
    assert f"<td>{reads}</td>" in html_text


def test_attention_tables_per_head(html_text):
    _, _, names = programs.compiled()
    assert f"<h3>layer 0 head 0: {names['target_pos']}</h3>" in html_text
    assert f"<h3>layer 1 head 0: {names['sort']}</h3>" in html_text
    # the counting head's query for token 2 splits evenly between BOS and token 1
    # (to two decimals: the SelectorWidth head leaks a little weight to the other keys)
    attention = html_text[html_text.index(">Attention patterns<") :]
    assert attention.count(">0.50</td>") >= 2


def test_the_page_needs_nothing_from_outside(html_text):
    # no src= at all, every href is inline data or an in-page anchor
    assert " src=" not in html_text
    assert set(re.findall(r'href="([a-z]+):', html_text)) <= {"data"}
    assert "<script src" not in html_text and "@import" not in html_text
    urls = set(re.findall(r"https?://[^\"' )]+", html_text))
    assert urls <= {"http://www.w3.org/2000/svg"}  # the SVG namespace name, never fetched


def test_report_writes_the_file(tmp_path):
    program, model, _ = programs.compiled()
    path = tracr.report(model, inputs=[[1, 2]], path=tmp_path / "r.html", program=program)
    assert path == tmp_path / "r.html"
    assert ">Input 0: BOS 1 2<" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("inputs", [[1, 2, 3], "123", [[1, 2], "12"]])
def test_inputs_must_be_a_list_of_sequences(inputs):
    _, model, _ = programs.compiled()
    with pytest.raises(TypeError, match="inputs must be a list of token sequences"):
        page.render(model, inputs)


def test_a_token_outside_the_vocab_is_refused():
    _, model, _ = programs.compiled()
    with pytest.raises(ValueError, match="7"):
        page.render(model, [[1, 7]])


def test_a_numerical_program_shows_its_numbers():
    from tracr.compiler import compiling, lib
    from tracr.rasp import rasp

    program = lib.make_frac_prevs(rasp.tokens == "x")
    model = compiling.compile_rasp_to_model(program, {"x", "y"}, 4, compiler_bos="BOS")
    text = page.render(model, [["x", "y", "x"]], program=program)
    # decoded output and the SOp's value per position: 1, 1/2, 2/3
    assert "<td>3</td><td>x</td><td>0.666666" in text
    row = re.search(rf"<tr><td>{program.label}</td><td>layer 1 attn</td>(.*?)</tr>", text)
    assert re.findall(r"<td>([^<]*)</td>", row.group(1)) == ["0", "1", "0.5", "0.6667"]
    # k / n for n = 1..4: 0, 1, 1/2, 1/3, 2/3, 1/4, 3/4
    assert "numerical, 7 values" in text
