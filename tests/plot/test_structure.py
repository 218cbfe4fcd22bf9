"""The weight-derived circuit, program graph and decoding of tracr.plot.structure."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from tests import cases
from tests.plot import programs
from tracr.compiler import compiling, lib
from tracr.plot import structure
from tracr.rasp import rasp


def test_residual_groups_split_labels_by_sop():
    groups = structure.residual_groups(
        ["a:1", "a:2", "one", "x", "_hidden_y", "t_selector_width_attn_output", "tokens:BOS"]
    )
    assert [(g.label, g.columns, g.values, g.encoding) for g in groups] == [
        ("a", (0, 1), ("1", "2"), "categorical"),
        ("one", (2,), (), "constant"),
        ("x", (3,), (), "numerical"),
        ("_hidden_y", (4,), (), "hidden"),
        ("t_selector_width_attn_output", (5,), (), "hidden"),
        ("tokens", (6,), ("BOS",), "categorical"),
    ]


def test_circuit_of_sort_unique():
    _, model, names = programs.compiled()
    parts = structure.circuit(model)
    sort, target_pos = names["sort"], names["target_pos"]
    assert [(p.sop, p.block, p.reads) for p in parts] == [
        (target_pos, "L0 attn head 0", ("tokens",)),
        (target_pos, f"L0 mlp units 0-{parts[1].units[1]}", ("tokens",)),
        (sort, "L1 attn head 0", tuple(sorted(["indices", target_pos, "tokens"]))),
    ]
    labels = model.residual_labels
    assert [labels[c] for c in parts[2].written] == [f"{sort}:{v}" for v in (1, 2, 3, 4)]
    # the MLP writes target_pos's one-hot: 0..5 smaller tokens
    assert [labels[c] for c in parts[1].written] == [f"{target_pos}:{i}" for i in range(6)]


def test_circuit_follows_edited_weights():
    _, model, names = programs.compiled()
    edited = copy.copy(model)
    edited.params = copy.deepcopy(model.params)
    edited.params["transformer/layer_1/attn/linear"]["w"][:] = 0
    assert names["sort"] not in {p.sop for p in structure.circuit_from_weights(edited)}
    assert names["sort"] in {p.sop for p in structure.circuit_from_weights(model)}


def test_program_graph_places_each_sop_at_its_block():
    program, model, names = programs.compiled()
    graph = structure.program_graph(model, structure.value_set_sizes(model, program))
    sort, target_pos = names["sort"], names["target_pos"]
    nodes = {n.label: n for n in graph.nodes}
    assert {label: n.stage for label, n in nodes.items()} == {
        "tokens": 0,
        "indices": 0,
        target_pos: 2,  # layer 0 mlp
        sort: 3,  # layer 1 attn
    }
    assert nodes["tokens"].size == 4
    assert nodes[sort].size == 5  # the compiler's value set: 1..4, and None where none moves
    assert nodes["indices"].size == 5  # max_seq_len
    assert nodes[target_pos].size == 6  # a SelectorWidth can count 0..max_seq_len
    assert set(graph.edges) == {
        ("tokens", target_pos),
        ("tokens", sort),
        ("indices", sort),
        (target_pos, sort),
    }
    assert structure.node_caption(nodes[sort]) == f"{sort}\ncategorical, 5 values\nL1 attn head 0"


def test_numerical_value_set_size_needs_the_program():
    program = lib.make_frac_prevs((rasp.tokens == "x").named("is_x"))
    model = compiling.compile_rasp_to_model(program, vocab={"x", "y"}, max_seq_len=3)
    without = {n.label: n.size for n in structure.program_graph(model).nodes}
    sizes = structure.value_set_sizes(model, program)
    with_program = {n.label: n.size for n in structure.program_graph(model, sizes).nodes}
    assert without[program.label] is None
    # fractions k/n for n = 1..3: 0, 1/3, 1/2, 2/3, 1
    assert with_program[program.label] == 5


def test_decode_group_reads_the_output_off_the_residual():
    _, model, names = programs.compiled()
    final = model.apply(programs.INPUT).transformer_output[0]
    groups = {g.label: g for g in structure.residual_groups(model.residual_labels)}
    assert structure.decode_group(groups[names["sort"]], final) == ["None", "1", "2", "3", "4"]
    # target_pos: how many tokens are smaller than each of 2, 4, 3, 1
    assert structure.decode_group(groups[names["target_pos"]], final)[1:] == ["1", "3", "2", "0"]


def test_attention_patterns_are_softmax_rows():
    logits = np.array([[0.0, np.log(3.0)], [-1e30, 0.0]])
    np.testing.assert_allclose(structure.attention_patterns(logits), [[0.25, 0.75], [0, 1]])


def test_output_sop_and_parameter_count():
    _, model, names = programs.compiled()
    assert structure.output_sop(model) == names["sort"]
    config = model.model_config
    d, k, m = len(model.residual_labels), config.key_size, config.mlp_hidden_size
    per_layer = (3 * (d * k + k) + (k * d + d)) + (d * m + m) + (m * d + d)
    embeddings = 6 * d + 6 * d  # 6 token ids (4 + BOS + PAD), 6 positions (BOS + 5)
    assert structure.parameter_count(model) == 2 * per_layer + embeddings


@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.name)
def test_weights_give_the_compilers_circuit(case):
    """Read off the weights, the circuit names the same blocks and reads as the compiler's
    record (`model.circuit`); an MLP's units that write something lie inside the range the
    compiler reserved (which may hold units whose weights are all zero)."""
    model = compiling.compile_rasp_to_model(
        case.make_program(), vocab=case.vocab, max_seq_len=case.max_seq_len
    )
    recorded = structure.circuit(model)
    found = structure.circuit_from_weights(model)
    assert model.circuit is not None
    assert [(p.sop, p.layer, p.kind, p.head, p.reads) for p in found] == [
        (p.sop, p.layer, p.kind, p.head, p.reads) for p in recorded
    ]
    for weights, record in zip(found, recorded):
        if record.units is not None:
            assert record.units[0] <= weights.units[0] <= weights.units[1] <= record.units[1]
