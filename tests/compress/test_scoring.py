"""Faithfulness scoring: SOp grouping, value codes, and what counts as a hit."""

from __future__ import annotations

import numpy as np

from tests.compress import helpers
from tracr.compress import compressed_model, inputs, scoring


def test_sop_columns_group_categorical_directions_and_skip_one():
    labels = ["frac", "indices:0", "indices:1", "one", "tokens:a", "tokens:b"]
    groups = scoring.sop_columns(labels)
    assert list(groups) == ["frac", "indices", "tokens"]
    assert groups["frac"][0].tolist() == [0] and groups["frac"][1] is False
    assert groups["indices"][0].tolist() == [1, 2] and groups["indices"][1] is True
    assert groups["tokens"][0].tolist() == [4, 5]


def test_categorical_codes_are_argmax_or_none_below_one_half():
    values = np.asarray([[0.1, 0.9, 0.0], [0.2, 0.3, 0.4], [0.6, 0.0, 0.55]])
    assert scoring.categorical_codes(values).tolist() == [1, -1, 0]


def test_a_zero_W_gets_exactly_the_positions_whose_value_is_zero():
    # Reading everything as 0: frac_prevs is right exactly where no x came yet.
    model = helpers.frac_prevs()
    cm = compressed_model.CompressedModel(model, np.zeros((2, 10)))
    data = inputs.valid_inputs(model, np.random.default_rng(0), 100)
    report = scoring.score(cm, data)
    # Sequences over {x, y} of length 1..3 whose decoded frac_prevs is 0 everywhere:
    # the all-y ones, y, yy, yyy: 3 of 14.
    assert report.output_accuracy == 3 / 14
    # Categorical SOps read as None (all zero) are wrong at every real position.
    assert report.sop_accuracy["tokens"] == 0.0


def test_report_table_names_every_sop():
    report = scoring.FaithfulnessReport(
        n_inputs=5, exhaustive=False, output_accuracy=0.4, sop_accuracy={"a": 1.0}, atol=0.01
    )
    text = report.table()
    assert "5 inputs" in text and "40.00%" in text and "a" in text


def test_a_given_compiled_output_scores_the_same_as_computing_it():
    model = helpers.frac_prevs()
    data = inputs.valid_inputs(model, np.random.default_rng(0), 200)
    rng = np.random.default_rng(1)
    cm = compressed_model.CompressedModel(model, rng.normal(size=(4, len(model.residual_labels))))
    want = scoring.compiled_outputs(model, data)
    assert want.shape == (len(data), data.token_ids.shape[1], len(model.residual_labels))
    assert scoring.score(cm, data, want=want) == scoring.score(cm, data)
