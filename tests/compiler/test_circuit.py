"""model.circuit: where each SOp and selector is computed, what it writes and reads, tested
causally by zero-ablating the blocks it names."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests import cases
from tests.compiler import exactness
from tracr.compiler import circuit, compiling, lib
from tracr.rasp import rasp

LIB_CASES = [c for c in cases.CASES if c.name in {
    "length", "reverse", "hist", "sort_unique", "sort", "sort_freq", "frac_prevs",
    "pair_balance", "shuffle_dyck2", "shuffle_dyck3", "detect_pattern_abc", "shift_by_2",
    "count_less_freq_2", "count_a", "nary_sequencemap",
}]  # fmt: skip


def _compile(case):
    return compiling.compile_rasp_to_model(
        case.make_program(), vocab=case.vocab, max_seq_len=case.max_seq_len, compiler_bos="BOS"
    )


def test_lib_cases_cover_the_15_lib_programs():
    assert len(LIB_CASES) == 15


def test_hist_circuit():
    hist = lib.make_hist()
    model = compiling.compile_rasp_to_model(hist, vocab={"a", "b"}, max_seq_len=4)
    c = model.circuit
    assert c.output == hist.label
    node = c[hist.label]
    assert (node.kind, node.expr, node.encoding) == ("sop", "SelectorWidth", "categorical")
    # SelectorWidth is a head (layer 0, head 0) and the MLP that reads its 1/(w+1) column.
    assert node.blocks[0] == circuit.Block("attn", layer=0, head=0)
    assert node.blocks[1].kind == "mlp" and node.blocks[1].layer == 0
    assert set(node.write_labels) == {f"{hist.label}:{w}" for w in range(5)} | {
        f"{hist.label}_selector_width_attn_output"
    }
    assert [model.residual_labels[i] for i in node.writes] == list(node.write_labels)
    assert node.reads == ("tokens",)
    (selector,) = node.selectors
    assert c[selector].kind == "selector" and c[selector].writes == ()
    assert c[selector].blocks == (circuit.Block("attn", layer=0, head=0),)
    assert c[selector].reads == ("tokens",)
    assert c["tokens"].blocks == (circuit.Block("token_embed"),)
    assert "indices" not in c  # hist does not use indices


def test_aggregate_reads_the_sops_of_its_selector_and_its_input():
    program = lib.make_sort_unique(rasp.tokens, rasp.tokens)
    model = compiling.compile_rasp_to_model(program, vocab={1, 2, 3}, max_seq_len=4)
    node = model.circuit[program.label]
    assert node.expr == "Aggregate" and [b.kind for b in node.blocks] == ["attn"]
    assert set(node.reads) == {"tokens", "indices", program.selector.keys.label}
    assert node.selectors == (program.selector.label,)
    assert model.circuit["indices"].blocks == (circuit.Block("pos_embed"),)
    assert model.circuit["indices"].write_labels == tuple(f"indices:{i}" for i in range(4))


def test_units_of_one_layer_do_not_overlap():
    model = _compile(cases.CASES_BY_NAME["shuffle_dyck3"])
    used: dict[int, set] = {}
    for node in model.circuit.nodes:
        for block in node.blocks:
            if block.kind == "mlp":
                units = set(range(*block.units))
                assert not units & used.get(block.layer, set())
                used.setdefault(block.layer, set()).update(units)
    width = model.model_config.mlp_hidden_size
    assert all(max(units) < width for units in used.values())


@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.name)
def test_json_round_trip(case):
    c = _compile(case).circuit
    assert circuit.Circuit.from_json(json.loads(json.dumps(c.to_json()))) == c


@pytest.mark.parametrize("case", LIB_CASES, ids=lambda c: c.name)
def test_ablating_an_sop_changes_it_and_what_is_downstream_only(case):
    model = _compile(case)
    program = case.make_program()
    seqs = exactness.all_sequences(case.vocab, min(case.max_seq_len, 3)) + case.inputs
    seqs = [["BOS", *s] for s in seqs if exactness.expected_output(program, s, False) is not None]
    width = max(len(s) for s in seqs)
    pad = model.input_encoder.pad_encoding
    ids = np.array([model.input_encoder.encode(s) + [pad] * (width - len(s)) for s in seqs])
    real = ids != pad
    clean = model.forward(model.params, ids).transformer_output.output
    c = model.circuit
    for node in c.nodes:
        if node.kind != "sop" or node.blocks[0].kind not in ("attn", "mlp"):
            continue
        ablated = model.forward(c.ablate(model, node.label), ids).transformer_output.output
        changed = np.any(np.abs(ablated - clean)[real] > 1e-6, axis=0)  # per residual column
        allowed = set(node.writes).union(*(c[d].writes for d in c.downstream(node.label)))
        assert set(np.flatnonzero(changed)) <= allowed, node.label
        assert changed[list(node.writes)].any(), f"ablating {node.label} changed nothing"
