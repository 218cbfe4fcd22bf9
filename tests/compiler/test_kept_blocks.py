"""compiler/kept_blocks: a block kept across compiles is served only where the build would
make the same block, its functions are called as a build calls them, and no compile's
model shares arrays with another's."""

from __future__ import annotations

import numpy as np
import pytest

from tracr.compiler import (
    assemble,
    basis_inference,
    circuit,
    compiling,
    expr_to_craft_graph,
    kept_blocks,
    rasp_to_graph,
)
from tracr.craft import bases, transformers, vectorspace_fns
from tracr.rasp import rasp


@pytest.fixture(autouse=True)
def empty_kept(monkeypatch):
    monkeypatch.setattr(kept_blocks, "_BLOCKS", kept_blocks.bound_cache.Known(1 << 30))


def _kept_space(name, values):
    space = bases.sorted_space(name, values)
    bases.keep(space)
    return space


class _Builds:
    """A builder that calls f on each value of a space (`answers`: what it got), counting
    its builds; its block is an identity MLP on the space."""

    def __init__(self, space):
        self.space, self.builds, self.answers = space, 0, None

    def __call__(self, f):
        self.builds += 1
        self.answers = [f(d.value) for d in self.space.basis]
        eye = vectorspace_fns.Linear(self.space, self.space, np.eye(self.space.num_dims))
        return transformers.MLP(eye, eye)


def _counted(answers: dict, calls: list):
    def f(v):
        calls.append(v)
        return answers[v]

    return f


def test_the_kept_result_is_served_while_every_answer_is_the_same():
    space = _kept_space("x", [1, 2, 3])
    builder, calls = _Builds(space), []
    f = _counted({1: "a", 2: "b", 3: "a"}, calls)
    first = kept_blocks.built(("t", space), builder, [f])  # noted
    second = kept_blocks.built(("t", space), builder, [f])  # kept
    again = kept_blocks.built(("t", space), builder, [f])
    assert first is not second and again is second and builder.builds == 2
    assert calls == [1, 2, 3] * 3  # each compile calls f as a build does


def test_a_changed_answer_builds_afresh_and_calls_each_argument_once():
    space = _kept_space("x", [1, 2, 3])
    builder, calls = _Builds(space), []
    answers = {1: "a", 2: "b", 3: "a"}
    for _ in range(2):
        first = kept_blocks.built(("t", space), builder, [_counted(answers, calls)])
    answers[2] = "c"
    calls.clear()
    second = kept_blocks.built(("t", space), builder, [_counted(answers, calls)])
    assert second is not first and builder.answers == ["a", "c", "a"]
    assert builder.builds == 3
    assert calls == [1, 2, 3]  # 1 and 2 replayed (2 differs), then served: 3 called once


@pytest.mark.parametrize(
    "old, new",
    [(0.0, -0.0), (1, 1.0), (1, True), ("1", 1), ((1, 2), (1, 2.0)), (None, 0)],
)
def test_answers_equal_under_eq_but_not_the_same_build_afresh(old, new):
    space = _kept_space("x", [1])
    builder = _Builds(space)
    for _ in range(2):
        kept_blocks.built(("t", space), builder, [lambda v: old])
    kept_blocks.built(("t", space), builder, [lambda v: new])
    assert builder.builds == 3
    assert type(builder.answers[0]) is type(new) and repr(builder.answers[0]) == repr(new)


def test_answers_no_key_stands_for_are_not_kept():
    space = _kept_space("x", [1])
    builder = _Builds(space)
    for _ in range(3):
        kept_blocks.built(("t", space), builder, [lambda v: [v]])  # a list may change
    assert builder.builds == 3


def test_spaces_not_kept_by_their_contents_build_afresh():
    space = bases.sorted_space("x", [1, 2])  # no cache holds it: a compile's own
    builder = _Builds(space)
    for _ in range(3):
        kept_blocks.built(("t", space), builder, [lambda v: v])
    assert builder.builds == 3


def test_other_key_parts_build_afresh():
    space = _kept_space("x", [1])
    builder = _Builds(space)
    parts = (5, 5.0, "5", -0.0, 0.0, (5,), (5.0,))
    for _ in range(2):
        for part in parts:
            kept_blocks.built(("t", part, space), builder, [lambda v: v])
    assert builder.builds == 2 * len(parts)  # each part noted, then kept
    for part in parts:
        kept_blocks.built(("t", part, space), builder, [lambda v: v])
    assert builder.builds == 2 * len(parts)  # each found: no other part stands for it


def _tokens_map(table):
    program = rasp.categorical(rasp.Map(lambda x: table[x], rasp.tokens))
    return program


def _compile(program, vocab):
    return compiling.compile_rasp_to_model(program, vocab=vocab, max_seq_len=3, compiler_bos="BOS")


def _compiled_with_pads(program, pads):
    """`_compile` over {"a", "b"} once for each pad token, in order."""
    return [
        compiling.compile_rasp_to_model(
            program, vocab={"a", "b"}, max_seq_len=3, compiler_bos="BOS", compiler_pad=pad
        )
        for pad in pads
    ]


def test_a_map_whose_function_changed_is_compiled_afresh():
    table = {"a": 1, "b": 2}
    program = _tokens_map(table)
    for _ in range(2):  # the Map's block is kept
        assert _compile(program, {"a", "b"}).apply(["BOS", "a", "b"]).decoded[1:] == [1, 2]
    table["a"], table["b"] = 2, 1  # the same value set: only the answers tell
    assert _compile(program, {"a", "b"}).apply(["BOS", "a", "b"]).decoded[1:] == [2, 1]


def test_a_selector_whose_predicate_changed_is_compiled_afresh():
    shift = {"by": 1}
    select = rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == q - shift["by"])
    program = rasp.categorical(rasp.Aggregate(select, rasp.tokens))
    for _ in range(2):  # the head is kept
        model = _compile(program, {"a", "b", "c"})
        assert model.apply(["BOS", "a", "b", "c"]).decoded[1:] == [None, "a", "b"]
    shift["by"] = 2
    model = _compile(program, {"a", "b", "c"})
    assert model.apply(["BOS", "a", "b", "c"]).decoded[1:] == [None, None, "a"]


def test_a_changed_width_value_set_is_compiled_afresh():
    selector = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    program = rasp.categorical(rasp.SelectorWidth(selector))
    for n in (3, 4, 3, 4, 3, 4):  # the width's values, and its head's coldness, change with n
        model = compiling.compile_rasp_to_model(
            program, vocab={"a"}, max_seq_len=n, compiler_bos="BOS"
        )
        assert model.apply(["BOS"] + ["a"] * n).decoded[1:] == [n] * n


def test_every_compile_returns_arrays_of_its_own():
    program = _tokens_map({"a": 1, "b": 2})
    for _ in range(3):  # kept arrays, then found
        first = _compile(program, {"a", "b"})
    original = {m: {k: a.copy() for k, a in p.items()} for m, p in first.params.items()}
    for params in first.params.values():
        for a in params.values():
            a += 1.0  # a user's edit of one model
    second = _compile(program, {"a", "b"})
    for module, params in second.params.items():
        for name, a in params.items():
            assert np.array_equal(a, original[module][name]) and a.flags.writeable
    assert second.apply(["BOS", "a", "b"]).decoded[1:] == [1, 2]


def test_lowered_blocks_handed_out_are_copies():
    program = _tokens_map({"a": 1, "b": 2})
    extracted = rasp_to_graph.extract_rasp_graph(program)
    sets = basis_inference.infer_bases(extracted, vocab={"a", "b"}, max_seq_len=3)
    options = dict(
        value_sets=sets,
        vocab=frozenset("ab"),
        bos_dir=bases.BasisDirection("tokens", "BOS"),
        max_seq_len=3,
    )
    for _ in range(2):  # noted, then kept
        kept, _ = expr_to_craft_graph.lower_with_bounds(extracted, **options)
    handed = expr_to_craft_graph.add_craft_components_to_rasp_graph(extracted, **options)
    block, copy = kept[program.label].block, handed[program.label].block
    assert not block.fst.matrix.flags.writeable  # shared with later compiles
    assert copy.fst.matrix.flags.writeable and not np.shares_memory(
        copy.fst.matrix, block.fst.matrix
    )
    assert np.array_equal(copy.snd.matrix, block.snd.matrix)


def test_assembled_arrays_are_kept_by_every_input(monkeypatch):
    monkeypatch.setattr(assemble, "_ASSEMBLED", kept_blocks.bound_cache.Known(1 << 30))
    program = _tokens_map({"a": 1, "b": 2})
    models = _compiled_with_pads(program, ("P", "Q", "P", "Q", "P"))  # noted, kept, found
    # the pad token is read by assembly only: a kept entry of another pad would show it
    assert "tokens:Q" in models[1].residual_labels and "tokens:P" not in models[1].residual_labels
    assert models[0].residual_labels == models[2].residual_labels == models[4].residual_labels
    assert models[3].residual_labels == models[1].residual_labels
    assert models[1].input_encoder.pad_token == "Q"
    assert len(assemble._ASSEMBLED._entries) == 2


def test_a_changed_constant_is_assembled_afresh():
    fill = rasp.numerical(rasp.Full(2))
    one = rasp.numerical(rasp.Map(lambda t: 1, rasp.tokens))
    program = rasp.numerical(rasp.LinearSequenceMap(one, fill, 1, 1))
    for _ in range(3):  # the arrays are kept, and found
        first = _compile(program, {"a"}).apply(["BOS", "a"]).decoded[1:]
    fill.fill = 3  # traced afresh: the token embedding writes the new constant
    second = _compile(program, {"a"}).apply(["BOS", "a"]).decoded[1:]
    assert (first, second) == ([3], [4])


def test_circuits_are_kept_by_every_input(monkeypatch):
    monkeypatch.setattr(circuit, "_CIRCUITS", kept_blocks.bound_cache.Known(1 << 30))
    program = _tokens_map({"a": 1, "b": 2})
    # the pad sorts before or after the vocab
    models = _compiled_with_pads(program, ("0", "z", "0", "z", "0"))
    for model in models:
        writes = model.circuit["tokens"].writes
        assert [model.residual_labels[c] for c in writes] == ["tokens:a", "tokens:b"]
    assert models[0].circuit.nodes != models[1].circuit.nodes
    assert models[4].circuit is models[2].circuit  # immutable: shared (blocks kept)
    program.annotations = {**program.annotations, "encoding": rasp.Encoding.NUMERICAL}
    again = _compile(program, {"a", "b"}).circuit  # traced afresh: a numerical Map now
    assert again[program.label].encoding == "numerical"


def test_a_builder_that_declines_is_kept_declining_while_the_answers_are_the_same():
    space = _kept_space("x", [1, 2])
    builds, answers = [], {1: 1, 2: 2}

    def decline(f):  # a separable builder that does not apply, say
        builds.append([f(d.value) for d in space.basis])
        return None

    for _ in range(3):
        assert kept_blocks.built(("d", space), decline, [lambda v: answers[v]]) is None
    assert len(builds) == 2  # noted, kept, found
    answers[2] = 3
    assert kept_blocks.built(("d", space), decline, [lambda v: answers[v]]) is None
    assert builds[-1] == [1, 3]
