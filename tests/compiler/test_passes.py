"""Unit tests of the compiler passes, each on a small program worked out by hand."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tracr.compiler import (
    basis_inference,
    craft_graph_to_model,
    expr_to_craft_graph,
    nodes,
    rasp_to_graph,
    selector_logic,
)
from tracr.craft import bases
from tracr.rasp import rasp


def _reverse_parts():
    """The reverse program, returning every named part so tests can use their labels."""
    p = {}
    p["everything"] = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE).named("all")
    p["len"] = rasp.SelectorWidth(p["everything"]).named("len")
    p["opp"] = (p["len"] - rasp.indices).named("opp")
    p["opp_minus_one"] = (p["opp"] - 1).named("opp_minus_one")
    p["flip"] = rasp.Select(rasp.indices, p["opp_minus_one"], rasp.Comparison.EQ).named("flip")
    p["reverse"] = rasp.Aggregate(p["flip"], rasp.tokens).named("reverse")
    return p


def test_extract_graph_has_one_node_per_expression_and_data_flow_edges():
    p = _reverse_parts()
    extracted = rasp_to_graph.extract_rasp_graph(p["reverse"])
    graph = extracted.graph
    assert extracted.sink[nodes.ID] == p["reverse"].label
    assert extracted.sink[nodes.EXPR] is p["reverse"]
    assert set(graph.nodes) == {"tokens", "indices"} | {e.label for e in p.values()}
    assert set(graph.predecessors(p["flip"].label)) == {"indices", p["opp_minus_one"].label}
    assert set(graph.predecessors(p["reverse"].label)) == {p["flip"].label, "tokens"}
    assert {s[nodes.ID] for s in extracted.sources} == {"tokens", "indices"}


def test_extract_graph_rejects_two_expressions_with_one_label():
    a = rasp.Map(lambda x: x, rasp.tokens)
    b = rasp.Map(lambda x: x + 1, rasp.tokens)
    b._unique_id = a.unique_id  # forge a clash, as hand-made expressions could
    with pytest.raises(ValueError, match=f"both labelled '{a.label}'"):
        rasp_to_graph.extract_rasp_graph(rasp.SequenceMap(lambda x, y: x, a, b))


def test_value_sets_of_reverse():
    p = _reverse_parts()
    extracted = rasp_to_graph.extract_rasp_graph(p["reverse"])
    sets = basis_inference.infer_bases(extracted, vocab={"a", "b"}, max_seq_len=3)
    assert sets["tokens"] == {"a", "b"}
    assert sets["indices"] == {0, 1, 2}
    assert sets[p["len"].label] == {0, 1, 2, 3}
    # the index is below the length at every position: len - indices is 1..3
    assert sets[p["opp"].label] == {1, 2, 3}
    assert sets[p["opp_minus_one"].label] == {0, 1, 2}
    assert sets[p["reverse"].label] == {"a", "b", None}
    assert p["flip"].label not in sets  # selectors have no values


def test_value_sets_propagate_none_and_skip_arithmetic_errors():
    inv = rasp.Map(lambda x: 1 / x, rasp.tokens)
    none_for_two = rasp.Map(lambda x: None if x == 2 else x, rasp.tokens)
    after = rasp.Map(lambda x: x * 10, none_for_two, simplify=False)
    program = rasp.SequenceMap(lambda a, b: (a, b), inv, after)
    sets = basis_inference.infer_bases(
        rasp_to_graph.extract_rasp_graph(program), vocab={0, 1, 2}, max_seq_len=2
    )
    assert sets[inv.label] == {1.0, 0.5}
    assert sets[none_for_two.label] == {0, 1, None}
    assert sets[after.label] == {0, 10, None}
    assert sets[program.label] == {(1.0, 0), (1.0, 10), (0.5, 0), (0.5, 10), None}


def test_numerical_mean_value_set():
    ones = rasp.numerical(rasp.Map(lambda t: int(t == "x"), rasp.tokens)).named("is_x")
    select = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)
    program = rasp.numerical(rasp.Aggregate(select, ones, default=0)).named("frac")
    sets = basis_inference.infer_bases(
        rasp_to_graph.extract_rasp_graph(program), vocab={"x", "y"}, max_seq_len=3
    )
    assert sets[program.label] == {0, 1, 1 / 2, 1 / 3, 2 / 3}


def test_conjuncts_fold_same_sops_and_negate():
    lt = rasp.Select(rasp.tokens, rasp.indices, rasp.Comparison.LT)
    eq = rasp.Select(rasp.tokens, rasp.indices, rasp.Comparison.EQ)
    (flat,) = selector_logic.conjuncts(rasp.SelectorOr(lt, rasp.SelectorNot(eq)))
    assert flat.keys is rasp.tokens and flat.queries is rasp.indices
    # key < query or key != query  ==  key != query
    table = {(k, q): flat.predicate(k, q) for k in range(3) for q in range(3)}
    assert table == {(k, q): k != q for k in range(3) for q in range(3)}


def test_conjuncts_of_different_sops_are_kept_apart():
    a = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    b = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT)
    c = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.NEQ)
    terms = selector_logic.conjuncts(rasp.SelectorAnd(rasp.SelectorAnd(a, b), rasp.SelectorNot(c)))
    assert [t.pair for t in terms] == [("tokens", "tokens"), ("indices", "indices")]
    # EQ and not NEQ fold into EQ on the tokens pair.
    assert [terms[0].predicate(k, q) for k, q in [(1, 1), (1, 2)]] == [True, False]


@pytest.mark.parametrize(
    "combine", [rasp.SelectorOr, lambda a, b: rasp.SelectorNot(rasp.SelectorAnd(a, b))]
)
def test_conjuncts_refuse_either_over_different_sops(combine):
    a = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    b = rasp.Select(rasp.indices, rasp.tokens, rasp.Comparison.EQ)
    with pytest.raises(selector_logic.UnsupportedSelectorError, match="different SOps"):
        selector_logic.conjuncts(combine(a, b))


def _lower(program, vocab, max_seq_len):
    extracted = rasp_to_graph.extract_rasp_graph(program)
    sets = basis_inference.infer_bases(extracted, vocab=vocab, max_seq_len=max_seq_len)
    lowered = expr_to_craft_graph.add_craft_components_to_rasp_graph(
        extracted,
        value_sets=sets,
        vocab=frozenset(vocab),
        bos_dir=bases.BasisDirection("tokens", "bos"),
        max_seq_len=max_seq_len,
    )
    return extracted, lowered


def test_lowering_gives_each_sop_its_labelled_subspace():
    p = _reverse_parts()
    _, lowered = _lower(p["reverse"], {"a", "b"}, 3)
    reverse, length = p["reverse"].label, p["len"].label
    assert [str(d) for d in lowered[reverse].space.basis] == [f"{reverse}:a", f"{reverse}:b"]
    assert [str(d) for d in lowered[length].space.basis] == [f"{length}:{w}" for w in range(4)]
    assert lowered["tokens"].block is None and lowered["indices"].block is None


def test_layer_allocation_follows_the_longest_chain():
    p = _reverse_parts()
    extracted, lowered = _lower(p["reverse"], {"a", "b"}, 3)
    model = craft_graph_to_model.craft_graph_to_model(extracted, lowered)
    # len: attention + MLP (layer 0); opp: MLP (layer 1); opp_minus_one: MLP (layer 2);
    # reverse: attention (layer 3).
    placement = {
        p[k].label: s for k, s in {"len": 0, "opp": 3, "opp_minus_one": 5, "reverse": 6}.items()
    }
    assert model.placement == placement
    assert [(len(layer.heads), len(layer.mlps)) for layer in model.layers] == [
        (1, 1),
        (0, 1),
        (0, 1),
        (1, 0),
    ]


def test_independent_blocks_share_a_layer():
    a = rasp.Map(lambda x: x + 1, rasp.tokens)
    b = rasp.Map(lambda x: x * 2, rasp.tokens)
    program = rasp.SequenceMap(lambda x, y: x + y, a, b)
    extracted, lowered = _lower(program, {1, 2}, 3)
    model = craft_graph_to_model.craft_graph_to_model(extracted, lowered)
    assert model.placement == {a.label: 1, b.label: 1, program.label: 3}
    assert [len(layer.mlps) for layer in model.layers] == [2, 1]


def test_program_graph_orders_children_first_and_converts_to_networkx():
    p = _reverse_parts()
    graph = rasp_to_graph.extract_rasp_graph(p["reverse"]).graph
    order = graph.topological_order()
    assert sorted(order) == sorted(graph.nodes)
    for child, parent in graph.edges:
        assert order.index(child) < order.index(parent)
    assert set(graph.successors("indices")) == {p["opp"].label, p["flip"].label}
    as_nx = graph.to_networkx()
    assert set(as_nx.edges) == set(graph.edges)
    assert as_nx.nodes[p["flip"].label][nodes.EXPR] is p["flip"]


def test_compiling_does_not_import_networkx():
    code = (
        "import sys\n"
        "from tracr.compiler import compiling, lib\n"
        "compiling.compile_rasp_to_model(lib.make_reverse(lib.rasp.tokens), {1, 2}, 3)\n"
        "assert 'networkx' not in sys.modules, 'networkx was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pair_constraint_only_for_length_like_and_indices():
    everything = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)
    some = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT)
    width = rasp.SelectorWidth(everything)
    assert basis_inference.pair_constraint(width, rasp.indices)(3, 2)
    assert not basis_inference.pair_constraint(width, rasp.indices)(2, 2)
    assert basis_inference.pair_constraint(rasp.indices, rasp.length)(0, 1)
    assert basis_inference.pair_constraint(rasp.SelectorWidth(some), rasp.indices) is None
    assert basis_inference.pair_constraint(rasp.tokens, rasp.indices) is None
