"""`compress`: learn W [d, D] so that the compressed model keeps the program's computation.

The loss follows Section 5 of the Tracr report (arXiv 2301.05062): the compiled weights
are frozen, only W is trained, and

    loss = L_out + layer_weight * L_layer

- L_out: the compressed model's output against the compiled model's: cross-entropy over
  the output values for a categorical output (positions where the program's value is None
  are left out: they have no class), mean squared error for a numerical one;
- L_layer: for every attention and MLP block, the squared error between its output in the
  compressed model, read back through W, and in the compiled model, summed over the D
  directions and averaged over positions. One addition to the report: the embedding
  counts as a layer too (e Wᵀ W against e), so that tokens and indices, which no block
  writes, are also kept readable.

Training inputs are drawn with `seed` from the valid inputs (see `inputs`); a held-out
set is kept apart when the input space is large enough, otherwise every input is used for
both and the report says so. Adam; every `eval_every` steps the held-out loss and
faithfulness are measured and the W with the best held-out faithfulness (then loss) is
kept; training stops when the held-out loss has not improved by 1% in `patience`
evaluations.

The step rule, chosen by measurement (benchmarks/compress.py; reverse at d 27 and
sort_unique at d 19 with W0 perturbed by 1e-6): the compiled weights are large and the
attention sharp, so from the PCA start a few steps of 1e-2 per entry leave the basin (the
first Adam step moves every entry by the full rate, whatever its gradient).
- `learning_rate` 1e-3 (was 1e-2), reached by a linear `warmup_steps` 100.
- `adam_eps` 1e-3 (torch's default is 1e-8): with eps far below the gradients, entries
  whose gradient is only float32 rounding noise still move by the full rate, in a direction
  set by that noise; a 1e-6 change of W0 (or CUDA's summation order against the CPU's) then
  changed the loss by O(1) within ten steps. With eps 1e-3 such entries barely move: the
  held-out losses of runs from W0 and from W0 perturbed by 1e-6 stay within 5% for 300
  steps (reverse: within 2% to step 600; sort_unique: 24% apart at step 600, both 100x
  below the start) instead of 170% apart at step 7.
- `backoff` 1.2: an evaluation whose held-out loss exceeds 1.2 times the lowest so far
  restores the best W, restarts Adam's moments and halves the rate.
These suit the PCA start; from `init="random"`, which must travel much further, the default
rate is 1e-2 (`learning_rate=None` picks by `init`; a number overrides either).
"""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np

from tracr.compiler import assembled_model
from tracr.compress import compressed_model as cm_lib
from tracr.compress import inputs as inputs_lib
from tracr.compress import scoring, torch_forward


@dataclasses.dataclass(frozen=True)
class Options:
    """The knobs of `compress`."""

    unembed_at_every_layer: bool = True  # the layout, see `compressed_model`
    max_steps: int = 2000  # Adam steps at most
    batch_size: int = 128  # sequences per step
    # Adam's rate, halved after every second evaluation without progress; None: 1e-3 from
    # the PCA start, 1e-2 from a random one (which has further to go)
    learning_rate: float | None = None
    warmup_steps: int = 100  # the rate rises linearly from lr / warmup_steps to lr
    adam_eps: float = 1e-3  # Adam's eps: entries with gradients far below it barely move
    backoff: float = 1.2  # held-out loss above backoff x the lowest: restore best W, halve lr
    layer_weight: float = 1.0  # weight of L_layer against L_out
    embedding_weight: float = 1.0  # weight of the embedding's term inside L_layer
    eval_every: int = 100  # steps between held-out evaluations
    patience: int = 5  # evaluations without a 1% better held-out loss before stopping
    n_held_out: int = 512  # held-out inputs, when at least 4 times as many exist
    input_limit: int = 20_000  # enumerate the inputs up to this many, else sample this many
    atol: float = scoring.ATOL  # tolerance for numerical values when scoring
    seed: int = 0  # seeds input sampling, batches and the random init
    init: str = "pca"  # "pca" (top principal directions of the activations) or "random"


def compress(
    model: assembled_model.AssembledTransformerModel,
    d: int,
    *,
    device: str | None = None,
    progress: bool | None = None,
    **options,
) -> cm_lib.CompressedModel:
    """Learns a compression of `model`'s residual stream to width `d`; see the module doc.

    Args:
      model: a compiled model (`compile_rasp_to_model`).
      d: the compressed width, 1 <= d < d_model.
      device: a torch device; by default "cuda" when torch has one, else "cpu".
      progress: show a tqdm bar with the loss and faithfulness; by default only when
        stderr is a terminal.
      **options: the fields of `Options`: unembed_at_every_layer, max_steps, batch_size,
        learning_rate, warmup_steps, adam_eps, backoff, layer_weight, embedding_weight,
        eval_every, patience, n_held_out, input_limit, atol, seed, init.
    """
    torch = torch_forward.import_torch()
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(Options)})
    if unknown:
        raise TypeError(
            f"compress got unknown options {unknown}; known: "
            f"{[f.name for f in dataclasses.fields(Options)]}"
        )
    opts = Options(**options)
    _check_arguments(model, d, opts)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    threads = torch.get_num_threads()
    if str(device) == "cpu":  # tiny tensors: threads cost more than they save
        torch.set_num_threads(1)
    try:
        return _train(torch, model, d, opts, device, progress)
    finally:
        torch.set_num_threads(threads)


def _train(torch, model, d, opts: Options, device, progress) -> cm_lib.CompressedModel:
    rng = np.random.default_rng(opts.seed)
    train, held_out = _split(inputs_lib.valid_inputs(model, rng, opts.input_limit), rng, opts)
    targets, loss_fn = _loss_function(torch, model, opts, device)
    W = torch.as_tensor(_initial_W(torch, model, train, d, opts), dtype=torch.float32)
    W = W.to(device).requires_grad_()
    lr = learning_rate(opts)  # the rate after warm-up; halvings and back-offs lower it
    optimizer = torch.optim.Adam([W], lr=lr, eps=opts.adam_eps)
    held_batch = _to_batch(torch, held_out, device)
    held_want = targets(held_batch)  # the compiled model's, the same at every evaluation
    held_scored = scoring.compiled_outputs(model, held_out)  # the same, in numpy
    history = cm_lib.TrainingHistory(device=str(device))
    tracker = _Tracker()
    started = time.perf_counter()
    bar = _progress_bar(opts.max_steps, progress)

    def evaluate(step: int) -> bool:
        """Scores W on the held-out inputs; True when training should stop."""
        with torch.no_grad():
            loss = loss_fn(W, held_batch, held_want).item()
        W_now = W.detach().cpu().numpy().copy()
        candidate = cm_lib.CompressedModel(model, W_now, opts.unembed_at_every_layer)
        faithful = scoring.score(candidate, held_out, atol=opts.atol, want=held_scored)
        faithful = faithful.output_accuracy
        history.eval_steps.append(step)
        history.eval_loss.append(loss)
        history.eval_faithfulness.append(faithful)
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{loss:.3g}", faithful=f"{faithful:.1%}")
        nonlocal lr, optimizer
        backed_off = loss > opts.backoff * tracker.lowest_loss
        if backed_off:  # a blow-up: go back, step shorter
            lr /= 2
            with torch.no_grad():
                W.copy_(torch.as_tensor(tracker.best_W, device=device))
            optimizer = torch.optim.Adam([W], lr=lr, eps=opts.adam_eps)  # fresh moments
            W_now, loss, faithful = tracker.best_W, tracker.best_loss, tracker.best_key[0]
        # A stale evaluation halves lr (Adam steps stay about lr long), once per evaluation:
        # a back-off has halved it already.
        if tracker.record(step, W_now, loss, faithful) and not backed_off:
            lr /= 2
        history.eval_learning_rate.append(lr)
        return tracker.stale >= opts.patience

    stop = evaluate(0)
    for step in range(1, opts.max_steps + 1):
        if stop:
            history.stopped_early = True
            break
        rows = rng.integers(0, len(train), size=opts.batch_size)
        loss = loss_fn(W, _to_batch(torch, train.subset(rows), device))
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the compression loss is {loss.item()} at step {step} (d={d}): the "
                "compiled model's large weights amplify errors in W; lower learning_rate "
                f"(set to {learning_rate(opts):g}, now {lr:g} after halvings) or "
                "try another seed"
            )
        for group in optimizer.param_groups:  # linear warm-up, then lr
            group["lr"] = lr * min(1.0, step / max(opts.warmup_steps, 1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.step_loss.append(loss.item())
        if step % opts.eval_every == 0 or step == opts.max_steps:
            stop = evaluate(step)
    bar.close()
    history.seconds = time.perf_counter() - started
    history.best_step = tracker.best_step
    result = cm_lib.CompressedModel(model, tracker.best_W, opts.unembed_at_every_layer, history)
    result.report = scoring.score(result, held_out, atol=opts.atol, want=held_scored)
    return result


@dataclasses.dataclass
class _Tracker:
    """The best W so far (by held-out faithfulness, then loss) and the evaluations since
    the held-out loss last improved by 1%."""

    best_key: tuple[float, float] = (-1.0, -np.inf)
    best_W: np.ndarray | None = None
    best_step: int = 0
    best_loss: float = np.inf
    lowest_loss: float = np.inf
    stale: int = 0

    def record(self, step: int, W: np.ndarray, loss: float, faithful: float) -> bool:
        """Notes one evaluation; True when the learning rate should halve (every second
        evaluation without progress)."""
        if (faithful, -loss) > self.best_key:
            self.best_key, self.best_W, self.best_step = (faithful, -loss), W, step
            self.best_loss = loss
        self.stale = 0 if loss < 0.99 * self.lowest_loss else self.stale + 1
        self.lowest_loss = min(self.lowest_loss, loss)
        return self.stale > 0 and self.stale % 2 == 0


def _initial_W(torch, model, train: inputs_lib.InputSet, d: int, opts: Options) -> np.ndarray:
    """[d, D]: "random" N(0, 1/d) entries, or "pca": the top d principal directions of
    what the blocks write (the embedding and every block's output at real positions).

    When the compiled activations span at most d dimensions, the "pca" W is already an
    exact compression (Wᵀ W is the identity on that span), and training starts there.
    """
    if opts.init == "random":
        generator = torch.Generator().manual_seed(opts.seed)
        return (
            torch.randn(d, len(model.residual_labels), generator=generator) / np.sqrt(d)
        ).numpy()
    rows = []
    for start in range(0, len(train), inputs_lib.CHUNK):
        part = train.subset(np.arange(start, min(start + inputs_lib.CHUNK, len(train))))
        out = model.forward(model.params, part.token_ids).transformer_output
        real = part.key_mask
        rows += [a[real] for a in (out.input_embeddings, *out.layer_outputs)]
    activations = np.concatenate(rows).astype(np.float64)  # [rows, D]
    _, _, vt = np.linalg.svd(activations, full_matrices=False)
    return vt[:d]


def _loss_function(torch, model, opts: Options, device):
    """(targets, loss): targets(batch) -> the compiled model's (embedded, layer outputs,
    output) on the batch, without gradients; loss(W, batch, want=None) -> scalar tensor,
    against those targets (computed when not given)."""
    config = model.model_config
    compiled = model.get_compiled_model()
    frozen = torch_forward.frozen_weights(model.params, config, device)
    unembed = torch.as_tensor(compiled.unembed_matrix, dtype=torch.float32, device=device)

    def targets(batch):
        with torch.no_grad():
            return torch_forward.forward(frozen, None, batch.ids, batch.key_mask)

    def loss_fn(W, batch, want=None):
        want_embedded, want_layers, want = targets(batch) if want is None else want
        got_embedded, got_layers, got = torch_forward.forward(
            frozen,
            W,
            batch.ids,
            batch.key_mask,
            unembed_at_every_layer=opts.unembed_at_every_layer,
        )
        real = batch.key_mask.float()[..., None]  # padding is left out
        layer = sum(((g - w) ** 2 * real).sum() for g, w in zip(got_layers, want_layers))
        layer = layer + opts.embedding_weight * ((got_embedded - want_embedded) ** 2 * real).sum()
        layer = layer / real.sum()
        out = _output_loss(
            torch, got @ unembed, want @ unembed, batch.positions, compiled.use_unembed_argmax
        )
        return out + opts.layer_weight * layer

    return targets, loss_fn


def _output_loss(torch, got_scores, want_scores, positions, categorical):
    """Cross-entropy to the compiled output value, or squared error for a number."""
    if categorical:
        present = positions & (want_scores.max(dim=-1).values >= assembled_model.NONE_THRESHOLD)
        if not bool(present.any()):
            return got_scores.sum() * 0.0
        target = want_scores.argmax(dim=-1)
        return torch.nn.functional.cross_entropy(got_scores[present], target[present])
    where = positions.float()
    return (((got_scores[..., 0] - want_scores[..., 0]) ** 2) * where).sum() / where.sum()


@dataclasses.dataclass(frozen=True)
class _Batch:
    ids: object  # [B, T] long tensor
    key_mask: object  # [B, T] bool tensor: real tokens, BOS included
    positions: object  # [B, T] bool tensor: real tokens after BOS


def _to_batch(torch, data: inputs_lib.InputSet, device) -> _Batch:
    ids = torch.as_tensor(data.token_ids, device=device)
    key_mask = torch.as_tensor(data.key_mask, device=device)
    positions = key_mask.clone()
    positions[:, 0] = False
    return _Batch(ids, key_mask, positions)


def _split(data: inputs_lib.InputSet, rng, opts: Options):
    """(train, held-out); both every input when there are too few to keep some apart."""
    if len(data) == 0:
        raise ValueError("the model has no valid input to train on")
    if len(data) < 4 * opts.n_held_out:
        return data, data
    order = rng.permutation(len(data))
    return data.subset(order[opts.n_held_out :]), data.subset(order[: opts.n_held_out])


def _progress_bar(total: int, progress: bool | None):
    try:
        from tqdm.auto import tqdm
    except ImportError as err:
        raise ImportError(
            "tracr.compress shows progress with tqdm: pip install 'tracr[torch]'"
        ) from err
    if progress is None:
        progress = sys.stderr.isatty()
    return tqdm(total=total, disable=not progress, desc="compress", unit="step")


# The default rates by start (see the module docstring).
PCA_RATE, RANDOM_RATE = 1e-3, 1e-2


def learning_rate(opts: Options) -> float:
    """The rate training reaches after warm-up: `opts.learning_rate`, or the default for
    `opts.init` when that is None."""
    if opts.learning_rate is not None:
        return opts.learning_rate
    return PCA_RATE if opts.init == "pca" else RANDOM_RATE


def _is_number(value) -> bool:
    """A real number (int, float or a numpy one), not a bool, a str or None."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check_arguments(model, d, opts: Options) -> None:
    if not isinstance(model, assembled_model.AssembledTransformerModel):
        raise TypeError(
            f"compress takes a compiled model (AssembledTransformerModel), got "
            f"{type(model).__name__}"
        )
    d_model = len(model.residual_labels)
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 1 <= d < d_model:
        raise ValueError(
            f"d must be an int with 1 <= d < d_model = {d_model} (a compression), got {d!r}"
        )
    for name in ("max_steps", "batch_size", "eval_every", "patience", "n_held_out"):
        value = getattr(opts, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if opts.init not in ("pca", "random"):
        raise ValueError(f'init must be "pca" or "random", got {opts.init!r}')
    warmup = opts.warmup_steps
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup_steps must be an int >= 0, got {opts.warmup_steps!r}")
    if not _is_number(opts.backoff) or not opts.backoff > 1:
        raise ValueError(f"backoff must be above 1 (inf: never back off), got {opts.backoff!r}")
    for name in ("learning_rate", "adam_eps", "atol"):
        value = getattr(opts, name)
        if name == "learning_rate" and value is None:
            continue
        if not _is_number(value) or not value > 0:
            raise ValueError(f"{name} must be positive (a number), got {value!r}")
    compiled = model.get_compiled_model()
    if compiled.use_unembed_argmax and compiled.unembed_matrix.shape[1] == 0:
        raise ValueError(
            "the program's output has no value the compiled model can hold (an empty "
            "categorical output space), so there is nothing to score the compression on"
        )
