"""`model.freeze()`: read-only weights whose sparse rectangles are not checked again, and
every way back to a model whose edits take effect."""

from __future__ import annotations

import numpy as np
import pytest

from tracr.compiler import compiling, lib
from tracr.rasp import rasp
from tracr.transformer import model, sparse

BOS = "compiler_bos"


@pytest.fixture(autouse=True)
def sparse_path(monkeypatch):
    monkeypatch.setattr(model, "DENSE_WORK", 0)  # the path with rectangles, at any size


def _compiled():
    return compiling.compile_rasp_to_model(
        lib.make_sort_unique(rasp.tokens, rasp.tokens), vocab={1, 2, 3, 4, 5}, max_seq_len=5
    )


def _batch(seed=0, count=30):
    rng = np.random.default_rng(seed)
    return [[BOS, *rng.permutation([1, 2, 3, 4, 5])[: rng.integers(1, 6)]] for _ in range(count)]


def _arrays(compiled):
    return [a for linear in compiled.params.values() for a in linear.values()]


def _writers(compiled):
    """The output projections of the last layer's attention and MLP: between them they
    write the program's output."""
    last = f"transformer/layer_{compiled.model_config.num_layers - 1}"
    return [compiled.params[f"{last}/attn/linear"], compiled.params[f"{last}/mlp/linear_2"]]


def _sorted_rows(batch):
    """What make_sort_unique decodes: BOS, the tokens sorted, padding to the longest."""
    width = max(map(len, batch))
    return [[BOS, *sorted(s[1:])] + ["compiler_pad"] * (width - len(s)) for s in batch]


def test_a_frozen_model_computes_what_it_computed_before():
    compiled = _compiled()
    batch = _batch()
    before = compiled.apply_batch(batch)
    assert compiled.freeze() is compiled and compiled.frozen
    for _ in range(2):  # the first call finds the rectangles, the second trusts them
        after = compiled.apply_batch(batch)
        assert after.decoded == before.decoded == _sorted_rows(batch)
        for a, b in zip(after.residuals, before.residuals):
            np.testing.assert_array_equal(a, b)
    single = compiled.apply([BOS, 4, 2, 5])
    assert single.decoded == [BOS, 2, 4, 5]


def test_frozen_weights_and_their_views_cannot_be_written():
    compiled = _compiled().freeze()
    w = _writers(compiled)[0]["w"]
    with pytest.raises(ValueError, match="read-only"):
        w[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        w[:2][0, 0] = 1.0
    with pytest.raises(ValueError):
        w[:2].flags.writeable = True  # a view of a read-only array stays read-only
    assert compiled.get_compiled_model().params is compiled.params
    assert all(not a.flags.writeable for a in _arrays(compiled))


def _zero_output(compiled, batch):
    """Zeroes the last layer's output projections in place and returns the decoded batch
    (strict off: the output is no longer a one-hot): None at every real position."""
    for linear in _writers(compiled):
        linear["w"][...] = 0.0
    return compiled.apply_batch(batch, strict=False).decoded


def _nothing_decoded(decoded, batch):
    return all(v is None for row, s in zip(decoded, batch) for v in row[1 : len(s)])


def test_after_unfreeze_in_place_edits_take_effect_again():
    compiled = _compiled()
    batch = _batch()
    compiled.freeze()
    compiled.apply_batch(batch)
    assert compiled.unfreeze() is compiled and not compiled.frozen
    assert all(a.flags.writeable for a in _arrays(compiled))
    assert _nothing_decoded(_zero_output(compiled, batch), batch)


def test_a_frozen_array_cannot_be_made_writable_again():
    """The copy's memory is immutable: numpy refuses to set `writeable` on the array, on
    a view of it and on its base, so no edit can slip past the trusted rectangle."""
    compiled = _compiled().freeze()
    batch = _batch()
    before = compiled.apply_batch(batch).decoded
    w = _writers(compiled)[0]["w"]
    for array in (w, w[:2], w.base):
        with pytest.raises(ValueError, match="WRITEABLE"):
            array.flags.writeable = True
    assert compiled.frozen and compiled.apply_batch(batch).decoded == before


def test_an_array_put_into_a_frozen_model_is_checked_on_every_call():
    compiled = _compiled().freeze()
    batch = _batch()
    compiled.apply_batch(batch)
    for linear in _writers(compiled):
        linear["w"] = np.array(linear["w"])  # writable, the same values
    assert not compiled.frozen
    assert compiled.apply_batch(batch).decoded == _sorted_rows(batch)
    assert _nothing_decoded(_zero_output(compiled, batch), batch)


def test_a_frozen_rectangle_is_trusted_and_a_thawed_one_is_checked(monkeypatch):
    w = np.zeros((6, 5), dtype=np.float32)
    w[1, 2] = 1.0
    frozen = sparse.freeze(w)
    assert sparse.is_frozen(frozen) and not sparse.is_frozen(w)
    found = sparse.rectangle(frozen)
    assert list(found.rows) == [1] and list(found.cols) == [2]

    def no_check(*args):
        raise AssertionError("a frozen array's rectangle was checked again")

    monkeypatch.setattr(sparse.Rectangle, "holds_all", no_check)
    monkeypatch.setattr(sparse.Rectangle, "unchanged", no_check)
    assert sparse.rectangle(frozen) is found
    monkeypatch.undo()
    thawed = sparse.thaw(frozen)
    assert thawed.flags.writeable and not sparse.is_frozen(thawed)
    thawed[4, 0] = 2.0
    assert list(sparse.rectangle(thawed).rows) == [1, 4]


def test_a_rectangle_is_forgotten_with_its_array():
    w = np.ones((3, 3), dtype=np.float32)
    sparse.rectangle(w)
    key = id(w)
    assert key in sparse._RECTANGLES
    del w
    assert key not in sparse._RECTANGLES


def test_freeze_names_params_it_cannot_replace():
    compiled = _compiled()
    compiled.params["transformer/layer_0/mlp/linear_1"] = tuple()
    with pytest.raises(TypeError, match="layer_0/mlp/linear_1.*dict of arrays"):
        compiled.freeze()
    compiled = _compiled()
    last = f"transformer/layer_{compiled.model_config.num_layers - 1}/mlp/linear_2"
    compiled.params[last]["b"] = [0.0] * compiled.params[last]["b"].size
    with pytest.raises(TypeError, match=r"linear_2'\]\['b'\] must be a numpy array.*list"):
        compiled.freeze()
    assert not any(sparse.is_frozen(a) for a in _arrays(compiled) if isinstance(a, np.ndarray))


def test_a_frozen_model_finds_no_rectangle_twice(monkeypatch):
    """Once a frozen block's plan is known, later calls serve it without asking for the
    rectangles of its arrays (`plan._frozen_plan`)."""
    compiled = _compiled().freeze()
    batch = _batch()
    compiled.apply_batch(batch)
    weights = {id(a) for a in _arrays(compiled)}
    find = sparse.rectangle

    def only_others(w):
        assert id(w) not in weights, "a frozen weight's rectangle was looked up again"
        return find(w)

    monkeypatch.setattr(sparse, "rectangle", only_others)
    assert compiled.apply_batch(batch).decoded == _sorted_rows(batch)
    assert compiled.apply([BOS, 3, 1]).decoded == [BOS, 1, 3]


def test_a_frozen_array_replaced_by_another_gets_a_plan_of_its_own(monkeypatch):
    """A frozen weight replaced by another frozen array, with a non-zero outside the old
    one's rectangle, is multiplied as it is: the sparse path agrees with the dense one."""
    compiled = _compiled().freeze()
    batch = _batch()
    compiled.apply_batch(batch)
    linear = _writers(compiled)[0]  # the last attention's output matrix
    edited = np.array(linear["w"])
    rect = sparse.rectangle(linear["w"])
    row = int(rect.rows[0])
    col = int(np.flatnonzero(~rect.col_mask)[0])  # a column it never wrote
    edited[row, col] = 0.5
    linear["w"] = sparse.freeze(edited)
    assert compiled.frozen
    sparse_out = compiled.apply_batch(batch, strict=False)
    monkeypatch.setattr(model, "DENSE_WORK", 10**18)  # the full matrices
    dense_out = compiled.apply_batch(batch, strict=False)
    assert np.abs(sparse_out.residuals[-1][..., col]).max() > 0  # the new entry is used
    np.testing.assert_allclose(sparse_out.residuals[-1], dense_out.residuals[-1], atol=1e-6)
