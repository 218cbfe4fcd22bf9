"""The sparse forward pass's rectangles and per-layer plans: remembered, and still exact
after any edit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tracr.compiler import assemble, compiling, lib
from tracr.rasp import rasp
from tracr.transformer import model, plan, query_table, sparse


@pytest.fixture(autouse=True)
def sparse_path(monkeypatch):
    monkeypatch.setattr(model, "DENSE_WORK", 0)


def _compiled_sort():
    return compiling.compile_rasp_to_model(
        lib.make_sort_unique(rasp.tokens, rasp.tokens), vocab={1, 2, 3, 4, 5}, max_seq_len=5
    )


def _batch(rng, count=40):
    return [
        ["compiler_bos", *rng.permutation([1, 2, 3, 4, 5])[: rng.integers(1, 6)]]
        for _ in range(count)
    ]


def test_a_plan_is_reused_while_nothing_changes_and_rebuilt_when_an_array_is_replaced():
    compiled = _compiled_sort()
    compiled.apply([compiled.input_encoder.bos_token, 3, 1])
    prefix = "transformer/layer_0/attn"
    first = plan.attention(compiled.params, prefix, compiled.model_config.key_size)
    again = plan.attention(compiled.params, prefix, compiled.model_config.key_size)
    assert again is first
    linear = compiled.params[f"{prefix}/value"]
    linear["w"] = linear["w"].copy()  # same values, another array
    assert plan.attention(compiled.params, prefix, compiled.model_config.key_size) is not first


def test_a_non_zero_in_a_gap_of_a_box_checked_rectangle_is_noticed():
    """A rectangle with gaps may be checked as its bounding box plus its gap rows and
    columns; a non-zero written into a gap (inside the box) must make a new rectangle."""
    w = np.zeros((12, 10), dtype=np.float32)
    w[[1, 2, 3, 5, 6, 7, 8, 9, 10]] = 1.0  # rows 1..10 but row 4, every column
    w[:, 6] = 0.0  # and a gap column
    found = sparse.rectangle(w)
    assert found.box is not None  # the case under test
    assert sparse.rectangle(w) is found
    w[1, 0], w[4, 2] = 0.0, 3.0  # moved into a gap row, inside the box: same count
    again = sparse.rectangle(w)
    assert again is not found and 4 in again.rows
    w[4, 2], w[2, 6] = 0.0, -1.0  # moved into the gap column
    third = sparse.rectangle(w)
    assert 6 in third.cols and 4 not in third.rows


def test_an_array_reshaped_in_place_gets_a_new_rectangle():
    w = np.zeros((6, 4), dtype=np.float32)
    w[[0, 5], 0] = 1.0
    found = sparse.rectangle(w)
    with warnings.catch_warnings():  # numpy 2.5 deprecates it; users may still do it
        warnings.simplefilter("ignore", DeprecationWarning)
        w.shape = (4, 6)  # the same array object: row 5 is gone
    again = sparse.rectangle(w)
    assert again is not found
    assert list(again.rows) == [0, 3] and list(again.cols) == [0, 2]


@pytest.mark.parametrize("fuse_rows", [0, 10**9])
def test_a_bias_edited_in_place_takes_effect(monkeypatch, fuse_rows):
    monkeypatch.setattr(plan, "FUSE_ROWS", fuse_rows)
    params = {
        "token_embed": {"embeddings": np.eye(2)},
        "pos_embed": {"embeddings": np.zeros((3, 2))},
    }
    for name, (rows, cols) in {
        "attn/query": (2, 1),
        "attn/key": (2, 1),
        "attn/value": (2, 1),
        "attn/linear": (1, 2),
        "mlp/linear_1": (2, 1),
        "mlp/linear_2": (1, 2),
    }.items():
        params[f"transformer/layer_0/{name}"] = {"w": np.zeros((rows, cols)), "b": np.zeros(cols)}
    params["transformer/layer_0/mlp/linear_2"]["w"][0, 1] = 1.0
    params["transformer/layer_0/attn/linear"]["w"][0, 0] = 1.0
    config = model.TransformerConfig(num_heads=1, num_layers=1, key_size=1, mlp_hidden_size=1)
    ids = np.array([[0, 1, 1]])

    def mlp_out():  # [T, 2]
        return model.forward(params, config, ids).layer_outputs[1][0]

    np.testing.assert_array_equal(mlp_out(), 0.0)
    params["transformer/layer_0/mlp/linear_1"]["b"][0] = 2.0  # the hidden unit: relu(2)
    np.testing.assert_allclose(mlp_out(), [[0, 2]] * 3)
    params["transformer/layer_0/mlp/linear_2"]["b"][0] = 5.0
    np.testing.assert_allclose(mlp_out(), [[5, 2]] * 3)
    params["transformer/layer_0/attn/value"]["b"][0] = 4.0  # every value is 4
    attn_out = model.forward(params, config, ids).layer_outputs[0][0]
    np.testing.assert_allclose(attn_out, [[4, 0]] * 3)


@pytest.mark.parametrize("setting", ["fuse", "box", "distinct"])
def test_fused_and_boxed_products_compute_what_the_plain_ones_do(monkeypatch, setting):
    """q, k and v in one product (many rows), products over bounding boxes (views, with
    zero rows and columns multiplied), and layer 0's projections of the distinct embedding
    rows, gathered, give the same outputs as the exact products of every row."""
    distinct_rows = model._distinct_rows
    compiled = _compiled_sort()
    batch = _batch(np.random.default_rng(3))
    runs = {}
    for on in (False, True):
        if setting == "fuse":
            monkeypatch.setattr(plan, "FUSE_ROWS", 0 if on else 10**9)
        elif setting == "distinct":
            monkeypatch.setattr(model, "_distinct_rows", distinct_rows if on else _no_rows)
        else:
            monkeypatch.setattr(plan, "COPY_COST", 10**9 if on else 0)
        runs[on] = compiled.apply_batch(batch)
    assert runs[True].decoded == runs[False].decoded
    for a, b in zip(runs[True].residuals, runs[False].residuals):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    for a, b in zip(runs[True].attn_logits, runs[False].attn_logits):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-3)


def _no_rows(params, token_ids):
    return None


def test_an_edit_inside_a_fused_projection_takes_effect(monkeypatch):
    monkeypatch.setattr(plan, "FUSE_ROWS", 0)
    compiled = compiling.compile_rasp_to_model(
        lib.make_length(), vocab={"a", "b"}, max_seq_len=4, compiler_bos="BOS"
    )
    batch = [["BOS", "a", "b"], ["BOS", "b"]]
    assert compiled.apply_batch(batch).decoded == [["BOS", 2, 2], ["BOS", 1, "compiler_pad"]]
    compiled.params["transformer/layer_0/attn/value"]["w"][:] = 0
    assert compiled.apply_batch(batch, strict=False).decoded != [
        ["BOS", 2, 2],
        ["BOS", 1, "compiler_pad"],
    ]


@pytest.mark.parametrize("positions", [5, assemble.MANY_POSITIONS])
def test_read_scores_picks_the_first_maximum_and_reads_nan_as_absent(positions):
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(6, positions)).astype(np.float32)  # many ties
    scores[:, 0] = np.nan
    ids, present = assemble.read_scores(scores, (positions,))
    expected = np.argmax(scores, axis=0)
    expected[0] = scores.shape[0]
    np.testing.assert_array_equal(ids, expected)
    assert ids.dtype == np.int64
    np.testing.assert_array_equal(present[1:], scores[:, 1:].max(axis=0) >= 0.5)


def test_a_changed_mixture_tolerance_takes_effect():
    compiled = _compiled_sort()
    tokens = ["compiler_bos", 3, 1]
    compiled.apply(tokens)  # remembers the one-hot check's layout
    label = next(iter(compiled.categorical_sops))
    compiled.mixture_tolerances[label] = -1.0  # nothing is clean any more
    with pytest.raises(ValueError, match=label):
        compiled.apply(tokens)


def _bits_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("mixed_lengths", [False, True])
def test_heads_with_few_distinct_queries_give_the_per_sequence_numbers(monkeypatch, mixed_lengths):
    """make_length's query is the same at every position but BOS: its layer-0 head runs
    from the embedding table (`query_table`), logits gathered and the softmax on the
    distinct queries; every output is bit for bit that of one product per sequence."""
    compiled = compiling.compile_rasp_to_model(
        lib.make_length(), vocab={"a", "b", "c"}, max_seq_len=8, compiler_bos="BOS"
    )
    rng = np.random.default_rng(5)
    widths = rng.integers(0, 9, size=60) if mixed_lengths else [8] * 60
    batch = [["BOS", *rng.choice(["a", "b", "c"], size=w).tolist()] for w in widths]
    made = _table_heads_give_the_plain_bits(monkeypatch, compiled, batch)
    assert made  # the case under test


def test_a_head_with_as_many_distinct_queries_as_positions_reads_its_logits_off_the_table(
    monkeypatch,
):
    """make_hist's query is the token: 4 distinct queries (3 tokens and BOS) at 4 positions.
    Its logits come from the table's scores, gathered; the softmax runs per position
    (not `narrow`); every output is bit for bit that of one product per sequence."""
    compiled = compiling.compile_rasp_to_model(
        lib.make_hist(), vocab={"a", "b", "c"}, max_seq_len=3, compiler_bos="BOS"
    )
    rng = np.random.default_rng(7)
    batch = [["BOS", *rng.choice(["a", "b", "c"], size=3).tolist()] for _ in range(50)]
    made = _table_heads_give_the_plain_bits(monkeypatch, compiled, batch)
    assert made and not any(head.narrow for head in made)  # the case under test


def _table_heads_give_the_plain_bits(monkeypatch, compiled, batch) -> list:
    """Runs `batch` with layer 0's table heads, then without (one product per sequence),
    asserts every output is the same bit for bit, and returns the table heads made."""
    made = []
    monkeypatch.setattr(query_table, "TableHead", _recording(query_table.TableHead, made))
    table = compiled.apply_batch(batch)
    monkeypatch.setattr(query_table, "heads", lambda *args: {})
    plain = compiled.apply_batch(batch)
    assert table.decoded == plain.decoded
    for name in ("attn_logits", "layer_outputs", "residuals"):
        assert all(_bits_equal(a, b) for a, b in zip(table[name], plain[name])), name
    assert _bits_equal(table.transformer_output, plain.transformer_output)
    return made


def _recording(cls, made):
    def make(*args):
        made.append(cls(*args))
        return made[-1]

    return make


def test_an_edited_query_weight_changes_the_distinct_queries(monkeypatch):
    """The distinct queries are remembered by the bytes of the table's queries: an edit
    in place that makes the token's query differ must be seen on the next call (a stale
    grouping would give positions with different queries the same logits)."""
    compiled = compiling.compile_rasp_to_model(
        lib.make_length(), vocab={"a", "b", "c"}, max_seq_len=6, compiler_bos="BOS"
    )
    batch = [["BOS", "a", "b", "b", "c", "c", "c"]] * 20
    compiled.apply_batch(batch)  # remembers the distinct queries
    token_a = compiled.residual_labels.index("tokens:a")
    compiled.params["transformer/layer_0/attn/query"]["w"][token_a] += 3.0
    table = compiled.apply_batch(batch, strict=False).attn_logits[0]
    monkeypatch.setattr(query_table, "heads", lambda *args: {})
    plain = compiled.apply_batch(batch, strict=False).attn_logits[0]
    assert not np.array_equal(plain[0, 0, 1], plain[0, 0, 2])  # a's query differs now
    assert _bits_equal(table, plain)


def test_an_edit_inside_a_snapshotted_rectangle_takes_effect():
    """A small array's rectangle is first checked against a copy of its bytes; an edit
    that keeps the non-zeros in place is a change of bytes, so the value is read anew
    (and the rectangle, still right, is kept)."""
    w = np.zeros((4, 3), dtype=np.float32)
    w[1, 2] = 1.0
    found = sparse.rectangle(w)
    assert found.snapshot is not None and sparse.rectangle(w) is found
    w[1, 2] = 5.0
    assert sparse.rectangle(w) is found
    assert found.snapshot == w.tobytes()
    w[3, 0] = 1.0
    moved = sparse.rectangle(w)
    assert moved is not found and list(moved.rows) == [1, 3]


def _gathers(monkeypatch, every: bool) -> list:
    """Every product whose weight has one non-zero per column a gather (or none), with
    no plan made before; returns a list that records each gather done."""
    monkeypatch.setattr(plan, "GATHER_FROM", 1 if every else 10**9)
    monkeypatch.setattr(plan, "_PLANS", {})
    monkeypatch.setattr(plan, "_FROZEN_PLANS", {})
    return _products_taking(monkeypatch, "_gathered")


def _products_taking(monkeypatch, path: str) -> list:
    """Records each Product whose method `path` (a faster way to its product) gave a
    result rather than None."""
    taken = []
    method = getattr(plan.Product, path)

    def recording(self, *args):
        found = method(self, *args)
        if found is not None:
            taken.append(self)
        return found

    monkeypatch.setattr(plan.Product, path, recording)
    return taken


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("count", [1, 40])
def test_gathers_compute_what_the_products_do_bit_for_bit(monkeypatch, frozen, count):
    """A weight with one non-zero per column (make_sort_unique's keys, values, output
    matrices) multiplies as a gather and a scaling: each sum has a single non-zero term,
    so every output is bit for bit the product's. 40 sequences take the fused path."""
    monkeypatch.setattr(plan, "FUSE_ROWS", 64)
    compiled = _compiled_sort()
    if frozen:
        compiled.freeze()
    batch = _batch(np.random.default_rng(11), count)
    runs = {}
    for every in (True, False):
        done = _gathers(monkeypatch, every)
        runs[every] = compiled.apply_batch(batch)
        runs[every] = compiled.apply_batch(batch)  # a second call reuses the plans
        assert bool(done) == every  # the case under test
    assert runs[True].decoded == runs[False].decoded
    for name in ("attn_logits", "layer_outputs", "residuals"):
        assert all(_bits_equal(a, b) for a, b in zip(runs[True][name], runs[False][name])), name


def _one_per_column(compiled) -> tuple[str, np.ndarray, sparse.Rectangle]:
    """A weight of the model with one non-zero per column, in at least 3 columns."""
    for name, linear in compiled.params.items():
        w = linear.get("w")
        if w is not None and w.ndim == 2:
            rect = sparse.rectangle(w)
            if rect.one_per_column and rect.cols.size >= 3 and rect.rows.size >= 3:
                return name, w, rect
    raise AssertionError("no such weight")


def _dense_run(monkeypatch, compiled, batch):
    monkeypatch.setattr(model, "DENSE_WORK", 10**18)
    out = compiled.apply_batch(batch, strict=False)
    monkeypatch.setattr(model, "DENSE_WORK", 0)
    return out


@pytest.mark.parametrize("edit", ["moved", "two in a column"])
def test_a_gather_sees_its_weights_move_inside_the_rectangle(monkeypatch, edit):
    """An edit that keeps the count of non-zeros and the rectangle (a non-zero moved to
    another row of its column; or one added to a column while another column loses its
    own) must be seen on the next call: a stale gather would read the old rows."""
    compiled = _compiled_sort()
    batch = _batch(np.random.default_rng(12), 30)
    done = _gathers(monkeypatch, every=True)
    name, w, rect = _one_per_column(compiled)
    before = compiled.apply_batch(batch)
    assert any(p.rect is rect for p in done)  # this weight's product was a gather
    col, other = rect.cols[0], rect.cols[1]
    src = int(np.flatnonzero(w[:, col])[0])
    free = int(next(r for r in rect.rows if w[r, col] == 0))
    w[free, col] = 2.5
    if edit == "moved":
        w[src, col] = 0.0
    else:
        w[int(np.flatnonzero(w[:, other])[0]), other] = 0.0
    assert sparse.rectangle(w) is rect  # same count, all inside: the rectangle stands
    after = compiled.apply_batch(batch, strict=False)
    dense = _dense_run(monkeypatch, compiled, batch)
    changed = [not np.array_equal(a, b) for a, b in zip(before.residuals, after.residuals)]
    assert any(changed)
    for a, b in zip(after.residuals, dense.residuals):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("argmax", [True, False])
def test_an_unembedding_with_one_direction_per_value_reads_them_bit_for_bit(monkeypatch, argmax):
    """Each value reading one residual direction (in any order, scaled): its scores are
    gathered, the same numbers as the product's, and an edit moving a value's direction
    is seen on the next call."""
    rng = np.random.default_rng(13)
    output = rng.standard_normal((4, 5, 6)).astype(np.float32)
    unembed = np.zeros((6, 3 if argmax else 1), dtype=np.float32)
    if argmax:
        unembed[[4, 1, 2], [0, 1, 2]] = [1.0, 2.0, 0.5]
    else:
        unembed[3, 0] = 1.5

    def both():
        gathered = assemble.unembed(output, unembed, argmax)
        with monkeypatch.context() as m:
            m.setattr(sparse.Rectangle, "one_per_column", property(lambda self: False))
            product = assemble.unembed(output, unembed, argmax)
        return gathered, product

    for _ in range(2):
        (ids, present), (ids_p, present_p) = both()
        assert _bits_equal(ids, ids_p) and _bits_equal(present, present_p)
        expected = (output @ unembed).reshape(-1, unembed.shape[1])
        if argmax:
            np.testing.assert_array_equal(ids.reshape(-1), expected.argmax(axis=1))
        else:
            np.testing.assert_array_equal(ids.reshape(-1), expected[:, 0])
        column = 0
        row = int(np.flatnonzero(unembed[:, column])[0])
        unembed[(row + 1) % 6, column], unembed[row, column] = unembed[row, column], 0.0


@pytest.mark.parametrize("frozen", [False, True])
def test_a_product_over_the_non_zero_columns_of_x_computes_the_same(monkeypatch, frozen):
    """For a few rows of x, a product reads only the columns of x that hold a non-zero
    (the terms it drops are exact zeros): the same outputs as the full product, and an
    edit of a weight in a used row is seen on the next call."""
    compiled = _compiled_sort()
    if frozen:
        compiled.freeze()
    monkeypatch.setattr(plan, "GATHER_FROM", 10**9)  # every product a product
    monkeypatch.setattr(plan, "_PLANS", {})
    monkeypatch.setattr(plan, "_FROZEN_PLANS", {})
    used = _products_taking(monkeypatch, "_sparse_x")
    batch = _batch(np.random.default_rng(14), 3)
    runs = {}
    for on in (True, False):
        monkeypatch.setattr(plan, "SPARSE_X_FROM", 1 if on else 10**9)
        monkeypatch.setattr(plan, "SPARSE_X_SHARE", 1)  # wherever some column is all zero
        runs[on] = compiled.apply_batch(batch)
        assert bool(used) == on  # the case under test
        used.clear()
    assert runs[True].decoded == runs[False].decoded
    for name in ("attn_logits", "layer_outputs", "residuals"):
        for a, b in zip(runs[True][name], runs[False][name]):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    if not frozen:  # a weight of a used row of w, edited in place
        monkeypatch.setattr(plan, "SPARSE_X_FROM", 1)
        name = "transformer/layer_0/attn/query"
        w = compiled.params[name]["w"]
        before = compiled.apply_batch(batch, strict=False).attn_logits[0].copy()
        w[w != 0] *= 3.0
        after = compiled.apply_batch(batch, strict=False).attn_logits[0]
        dense = _dense_run(monkeypatch, compiled, batch).attn_logits[0]
        assert not np.allclose(before, after)
        np.testing.assert_allclose(after, dense, rtol=1e-6, atol=1e-3)
