"""compress(): training raises faithfulness, is reproducible, and refuses bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.compress import helpers
from tracr import compress
from tracr.compress import training

# Random init, so that training (not the PCA start) has to find the compression (at the
# default rate for a random start, 1e-2).
QUICK = dict(init="random", max_steps=600, eval_every=50, patience=100, seed=0)


def test_training_raises_faithfulness_above_ninety_percent():
    model = helpers.frac_prevs()  # d_model 10
    cm = compress.compress(model, 9, **QUICK)
    # Before any step, a random W computes almost nothing right ...
    assert cm.history.eval_steps[0] == 0
    assert cm.history.eval_faithfulness[0] < 0.5
    # ... after at most 600 steps, at least 90% of the inputs decode exactly as compiled.
    assert cm.report.output_accuracy >= 0.9
    assert cm.report.exhaustive  # 14 inputs: every one is scored
    assert cm.report.n_inputs == 2 + 4 + 8


def test_pca_start_is_exact_when_d_covers_the_activations():
    # frac_prevs at max_seq_len 3 writes into a 9-dimensional span of its 10 directions
    # (the PAD token is never embedded at a real position).
    cm = compress.compress(helpers.frac_prevs(), 9, max_steps=1, learning_rate=1e-9)
    assert cm.history.eval_faithfulness[0] == 1.0
    assert set(cm.report.sop_accuracy.values()) == {1.0}


def test_training_from_the_pca_start_improves_on_it():
    # reverse at d = d_model - 2: the PCA start decodes every input, with held-out loss 0.31.
    # With Adam at 1e-2 and no warm-up (the defaults before), the first steps threw W out of
    # that basin (loss 1.8, 57% faithful) and the start was returned untouched.
    history = helpers.trained("reverse").history
    start = history.eval_loss[0]
    assert history.eval_faithfulness[0] == 1.0
    assert history.best_step > 0
    best = history.eval_loss[history.eval_steps.index(history.best_step)]
    assert best < 0.9 * start
    assert max(history.eval_loss) <= start  # never worse than the start, at any evaluation
    assert min(history.eval_faithfulness) == 1.0


def test_a_float32_sized_change_of_the_start_changes_the_run_little(monkeypatch):
    # CUDA and the CPU sum in different orders, as if W0 differed by ~1e-6 relative. With
    # the defaults before (Adam at 1e-2 from step 1, eps 1e-8) two such runs here were 24%
    # apart at the first evaluation (reverse over {a, b, c, d}: 170% after 7 steps).
    model = helpers.reverse()
    reference = helpers.trained("reverse")
    start = training._initial_W

    def perturbed(*args):
        W = start(*args)
        return W * (1 + 1e-6 * np.random.default_rng(1).standard_normal(W.shape))

    monkeypatch.setattr(training, "_initial_W", perturbed)
    again = compress.compress(
        model, reference.d, max_steps=100, eval_every=20, seed=0, progress=False
    )
    np.testing.assert_allclose(again.history.eval_loss, reference.history.eval_loss, rtol=0.05)
    assert again.history.best_step == reference.history.best_step


def test_a_fixed_seed_reproduces_a_run():
    model = helpers.frac_prevs()
    options = dict(QUICK, max_steps=60, eval_every=20)
    first = compress.compress(model, 7, **options)
    again = compress.compress(model, 7, **options)
    other = compress.compress(model, 7, **dict(options, seed=1))
    assert np.array_equal(first.W, again.W)
    assert first.history.step_loss == again.history.step_loss
    assert not np.array_equal(first.W, other.W)


def test_history_records_every_step_and_every_evaluation():
    cm = compress.compress(helpers.frac_prevs(), 8, **dict(QUICK, max_steps=30, eval_every=10))
    assert len(cm.history.step_loss) == 30
    assert cm.history.eval_steps == [0, 10, 20, 30]
    assert cm.history.best_step in cm.history.eval_steps
    import torch

    assert cm.history.device == ("cuda" if torch.cuda.is_available() else "cpu")


def test_both_layouts_train_and_run():
    model = helpers.reverse()
    d = len(model.residual_labels) - 2
    for layout in (True, False):
        cm = compress.compress(model, d, unembed_at_every_layer=layout, max_steps=20)
        assert cm.unembed_at_every_layer is layout
        assert cm.W.shape == (d, len(model.residual_labels))


@pytest.mark.parametrize("d", [0, -1, 10, 11, 2.5, True])
def test_d_outside_one_to_d_model_is_refused(d):
    with pytest.raises(ValueError, match=r"1 <= d < d_model = 10"):
        compress.compress(helpers.frac_prevs(), d)


def test_unknown_option_is_named():
    with pytest.raises(TypeError, match="learning_rat"):
        compress.compress(helpers.frac_prevs(), 5, learning_rat=0.1)


def test_a_model_is_required():
    with pytest.raises(TypeError, match="AssembledTransformerModel"):
        compress.compress("frac_prevs", 5)


def test_an_output_that_cannot_be_scored_is_refused():
    model = helpers.reverse()
    compiled = model.get_compiled_model()
    empty = dataclasses.replace(compiled, unembed_matrix=compiled.unembed_matrix[:, :0])
    broken = dataclasses.replace(model, get_compiled_model=lambda: empty)
    with pytest.raises(ValueError, match="nothing to score"):
        compress.compress(broken, 3)


def test_a_loss_that_is_no_longer_finite_stops_training():
    with pytest.raises(FloatingPointError, match=r"lower learning_rate \(set to 1e\+30, now"):
        compress.compress(helpers.frac_prevs(), 5, learning_rate=1e30, max_steps=50)


def test_the_rate_halves_at_most_once_per_evaluation():
    """A back-off (held-out loss above backoff x the lowest) halves the rate; the same
    evaluation, stale as well, must not halve it a second time. With a large rate and a
    tight back-off both happen in the first evaluations."""
    cm = compress.compress(
        helpers.frac_prevs(),
        5,
        learning_rate=0.3,
        backoff=1.01,
        max_steps=60,
        eval_every=10,
        warmup_steps=1,
        patience=100,
    )
    rates = cm.history.eval_learning_rate
    assert len(rates) == len(cm.history.eval_steps)
    steps = [b / a for a, b in zip([0.3, *rates], rates)]
    assert 0.5 in steps
    assert set(steps) <= {1.0, 0.5}


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="max_steps must be a positive int"):
        compress.compress(helpers.frac_prevs(), 5, max_steps=0)
    with pytest.raises(ValueError, match='init must be "pca" or "random"'):
        compress.compress(helpers.frac_prevs(), 5, init="zeros")


def test_torch_threads_are_restored():
    import torch

    before = torch.get_num_threads()
    compress.compress(helpers.frac_prevs(), 5, max_steps=2)
    assert torch.get_num_threads() == before


def test_options_match_the_documented_knobs():
    documented = training.compress.__doc__
    for field in dataclasses.fields(training.Options):
        assert field.name in documented


def test_importing_tracr_compress_loads_neither_torch_nor_matplotlib():
    import subprocess
    import sys

    code = (
        "import sys, tracr, tracr.compress, tracr.compress.plots\n"
        "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_default_rate_follows_the_start():
    """1e-3 from the PCA start, 1e-2 from a random one; a given number wins."""
    assert training.learning_rate(training.Options()) == 1e-3
    assert training.learning_rate(training.Options(init="random")) == 1e-2
    assert training.learning_rate(training.Options(init="random", learning_rate=5e-4)) == 5e-4
    with pytest.raises(ValueError, match="learning_rate must be positive"):
        compress.compress(helpers.frac_prevs(), 5, learning_rate=0.0)


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("backoff", "2", "backoff must be above 1"),
        ("backoff", None, "backoff must be above 1"),
        ("backoff", 1.0, "backoff must be above 1"),
        ("adam_eps", "1e-3", "adam_eps must be positive"),
        ("adam_eps", 0.0, "adam_eps must be positive"),
        ("learning_rate", "0.01", "learning_rate must be positive"),
        ("atol", True, "atol must be positive"),
        ("warmup_steps", -1, "warmup_steps must be an int >= 0"),
        ("warmup_steps", 1.5, "warmup_steps must be an int >= 0"),
    ],
)
def test_new_step_rule_options_of_the_wrong_type_or_range_are_refused(option, value, message):
    """A clear ValueError naming the option, not Python's own TypeError from a comparison."""
    with pytest.raises(ValueError, match=message):
        compress.compress(helpers.frac_prevs(), 5, **{option: value})
