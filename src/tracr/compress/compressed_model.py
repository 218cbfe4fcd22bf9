"""A compiled model whose residual stream is compressed to d dimensions by a matrix W.

W [d, D] maps the compressed residual back to the compiled model's D labelled directions:
column j of W is the d-dimensional vector that represents the direction `residual_labels[j]`.
A block's output o [D] is written into the stream as o Wᵀ [d], and the stream r [d] is read
as r W [D]; the compiled weights are not changed. Two layouts, as the reference's
CompressedTransformer offers (`unembed_at_every_layer`):

- True: every attention and MLP block keeps its compiled D-wide weights and reads the
  stream through W; `layer_outputs` are the blocks' D-wide outputs.
- False: the stream is d wide throughout and so are the blocks, whose weights are the
  compiled ones folded through W (W_Q <- W W_Q, W_O <- W_O Wᵀ, ...): `params` is a plain
  transformer with d_model = d that `tracr.transformer.model.forward` runs. The forward
  pass is the same function as with True; `layer_outputs` are the d-wide outputs read
  back through W (o Wᵀ W), which is what the per-layer training loss compares.

Shapes: B batch, T positions, D compiled d_model, d compressed width.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from tracr.compiler import assembled_model
from tracr.compress import inputs as inputs_lib
from tracr.compress import scoring
from tracr.rasp import rasp
from tracr.transformer import model as model_lib

# The residual labels of `as_model`: "compressed:0", "compressed:1", ...
COMPRESSED_LABEL = "compressed"

# The parameter modules whose weights read the residual stream (the others write it).
READ_MODULES = ("attn/query", "attn/key", "attn/value", "mlp/linear_1")


@dataclasses.dataclass
class TrainingHistory:
    """What happened during `compress`: one entry per step, and one per evaluation."""

    step_loss: list[float] = dataclasses.field(default_factory=list)
    eval_steps: list[int] = dataclasses.field(default_factory=list)
    eval_loss: list[float] = dataclasses.field(default_factory=list)  # held-out loss
    eval_faithfulness: list[float] = dataclasses.field(default_factory=list)  # held-out
    # The learning rate after each evaluation (after warm-up; halvings and back-offs).
    eval_learning_rate: list[float] = dataclasses.field(default_factory=list)
    best_step: int = 0  # the step whose W was kept
    stopped_early: bool = False
    seconds: float = 0.0
    device: str = "cpu"


@dataclasses.dataclass
class CompressedModel:
    """A compiled model run through a compressed residual stream of width d."""

    # The compiled model; its weights stay as they are.
    model: assembled_model.AssembledTransformerModel
    W: np.ndarray  # [d, D]
    unembed_at_every_layer: bool = True
    history: TrainingHistory | None = None
    report: scoring.FaithfulnessReport | None = None  # on the held-out inputs, after training

    def __post_init__(self):
        self.W = np.asarray(self.W, dtype=np.float32)
        d_model = len(self.model.residual_labels)
        if self.W.ndim != 2 or self.W.shape[1] != d_model:
            raise ValueError(f"W must have shape [d, d_model] = [d, {d_model}], got {self.W.shape}")

    @property
    def d(self) -> int:
        return self.W.shape[0]

    @property
    def d_model(self) -> int:
        return self.W.shape[1]

    @property
    def residual_labels(self) -> list[str]:
        return self.model.residual_labels

    @property
    def params(self) -> assembled_model.Params:
        """The compiled weights folded through W: a transformer with d_model = d."""
        return fold(self.model.params, self.W)

    @property
    def model_config(self) -> model_lib.TransformerConfig:
        return dataclasses.replace(self.model.model_config, d_model=self.d)

    def as_model(self) -> assembled_model.AssembledTransformerModel:
        """This compressed model as a plain transformer of width d, for saving and export.

        Its params are the compiled ones folded through W (`params`, the layout of
        `unembed_at_every_layer=False`, which computes the same function as True), its
        unembedding is W U [d, V] (U the compiled [D, V] unembedding, so that the d-wide
        output r gives r W U, the compiled model's scores of the read-back output), and
        its encoders are the compiled model's. The d residual directions are labelled
        `compressed:0` ... `compressed:{d-1}`: they belong to no SOp, so there are no
        categorical SOps to check for one-hots (compressed values are close to one-hot,
        not exactly) and no circuit; `read_back` maps its residuals to the compiled
        directions.
        """
        base = self.model
        compiled = base.get_compiled_model()
        return assembled_model.build_model(
            params=self.params,
            config=self.model_config,
            unembed=self.W @ compiled.unembed_matrix,  # [d, V]
            categorical_output=compiled.use_unembed_argmax,
            input_encoder=base.input_encoder,
            output_encoder=base.output_encoder,
            residual_labels=[f"{COMPRESSED_LABEL}:{i}" for i in range(self.d)],
            categorical_sops={},
        )

    def read_back(self, x: np.ndarray) -> np.ndarray:
        """A compressed residual [..., d] in the compiled model's directions [..., D]."""
        return np.asarray(x) @ self.W

    def read(self, x: np.ndarray, name: str | rasp.SOp) -> np.ndarray:
        """The columns of the read-back residual for a residual label, SOp label or SOp.

        `read(out.residuals[-1], program)` gives [B, T, 1] for a numerical program;
        `"tokens"` gives one column per token, `"tokens:x"` one column.
        """
        if isinstance(name, rasp.SOp):
            name = name.label
        labels = self.residual_labels
        if name in labels:
            cols = [labels.index(name)]
        else:
            cols = [i for i, label in enumerate(labels) if label.split(":", 1)[0] == name]
        if not cols:
            raise KeyError(f"no residual label or SOp named {name!r}; labels: {labels}")
        return self.read_back(x)[..., cols]

    def embedding_gram(self, normalise: bool = False) -> np.ndarray:
        """[D, D] dot products Wᵀ W of the directions' embedding vectors (cosines if normalise)."""
        gram = self.W.T @ self.W
        if normalise:
            norms = np.linalg.norm(self.W, axis=0)
            norms = np.where(norms > 0, norms, 1.0)
            gram = gram / np.outer(norms, norms)
        return gram

    def forward(
        self, token_ids: np.ndarray, key_mask: np.ndarray | None = None
    ) -> model_lib.TransformerOutput:
        """The compressed forward pass on ids [B, T]; `output` is read back, [B, T, D]."""
        return compressed_forward(
            self.model.params,
            self.model.model_config,
            self.W,
            np.asarray(token_ids),
            key_mask,
            unembed_at_every_layer=self.unembed_at_every_layer,
        )

    def apply(self, tokens: Sequence[Any]) -> assembled_model.AssembledTransformerModelOutput:
        """Runs one sequence (BOS first), as `AssembledTransformerModel.apply` does.

        `residuals` are d wide; `transformer_output` and `layer_outputs` are read back
        through W (D wide), as in the reference's CompressedTransformer.
        """
        token_ids, lengths = self.model._encode_batch([tokens])
        return self._output(token_ids, lengths, batched=False)

    def apply_batch(
        self, sequences: Sequence[Sequence[Any]]
    ) -> assembled_model.AssembledTransformerModelOutput:
        """Runs many sequences at once, padded; `decoded` holds one list per sequence."""
        if len(sequences) == 0:
            raise ValueError("apply_batch needs at least one sequence")
        token_ids, lengths = self.model._encode_batch(sequences)
        return self._output(token_ids, lengths, batched=True)

    def _output(self, token_ids, lengths, batched):
        key_mask = np.arange(token_ids.shape[1])[None, :] < np.asarray(lengths)[:, None]
        out = self.forward(token_ids, key_mask)
        compiled = self.model.get_compiled_model()
        unembedded, present = assembled_model.unembed(
            out.output, compiled.unembed_matrix, compiled.use_unembed_argmax
        )
        raw = assembled_model.CompiledTransformerModelOutput(out, unembedded, present)
        # Compressed values are close to, not exactly, one-hot: no strict check.
        return self.model._output(raw, lengths, batched=batched, strict=False)

    def faithfulness(
        self, sequences: Sequence[Sequence[Any]] | None = None, *, atol: float = scoring.ATOL
    ) -> scoring.FaithfulnessReport:
        """How often the compressed model computes what the compiled model computes.

        On `sequences` (token lists, BOS first), or else on the held-out inputs of training
        (`self.report`). See `scoring.FaithfulnessReport` for what is counted.
        """
        if sequences is None:
            if self.report is None:
                raise ValueError("this model has no held-out report; pass sequences")
            return self.report
        if len(sequences) == 0:
            raise ValueError("faithfulness needs at least one sequence (or none, for the report)")
        token_ids, lengths = self.model._encode_batch(sequences)
        data = inputs_lib.InputSet(token_ids, np.asarray(lengths), exhaustive=False)
        return scoring.score(self, data, atol=atol)


def fold(params: assembled_model.Params, W: np.ndarray) -> assembled_model.Params:
    """The compiled weights with reads through W and writes through Wᵀ folded in.

    Reading weights (token/position embeddings write, so they get Wᵀ) become
    W @ w [d, *]; writing weights and biases become w @ Wᵀ [*, d].
    """
    folded = {}
    for name, arrays in params.items():
        if name in ("token_embed", "pos_embed"):
            folded[name] = {"embeddings": arrays["embeddings"] @ W.T}
        elif name.endswith(READ_MODULES):
            folded[name] = {"w": W @ arrays["w"], "b": arrays["b"]}
        else:  # attn/linear, mlp/linear_2
            folded[name] = {"w": arrays["w"] @ W.T, "b": arrays["b"] @ W.T}
    return folded


def compressed_forward(
    params: assembled_model.Params,
    config: model_lib.TransformerConfig,
    W: np.ndarray,
    token_ids: np.ndarray,
    key_mask: np.ndarray | None = None,
    *,
    unembed_at_every_layer: bool = True,
) -> model_lib.TransformerOutput:
    """The numpy forward pass of the compressed model, from `tracr.transformer.model`'s blocks."""
    if key_mask is None:
        key_mask = np.ones(token_ids.shape, dtype=bool)
    embeddings = model_lib.embed(params, token_ids)  # [B, T, D]
    if not unembed_at_every_layer:
        out = model_lib.forward(fold(params, W), config, token_ids, key_mask)
        return model_lib.TransformerOutput(
            layer_outputs=[o @ W for o in out.layer_outputs],
            residuals=out.residuals,
            attn_logits=out.attn_logits,
            output=out.output @ W,
            input_embeddings=embeddings,
        )
    mask = model_lib.attention_mask(config, key_mask)
    residual = embeddings @ W.T  # [B, T, d]
    shape = embeddings.shape  # [B, T, D]
    layer_outputs, residuals, attn_logits = [], [], []

    def read(x):  # [B, T, d] -> [B T, D], what the compiled blocks read
        return (x @ W).reshape(-1, shape[-1])

    for layer in range(config.num_layers):
        prefix = f"transformer/layer_{layer}"
        attn_out, logits = model_lib.attention_block(params, prefix, config, read(residual), mask)
        attn_out = attn_out.reshape(shape)
        residual = residual + attn_out @ W.T
        layer_outputs.append(attn_out)
        residuals.append(residual)
        attn_logits.append(logits)
        mlp_out = model_lib.mlp_block(params, prefix, config, read(residual)).reshape(shape)
        residual = residual + mlp_out @ W.T
        layer_outputs.append(mlp_out)
        residuals.append(residual)
    return model_lib.TransformerOutput(
        layer_outputs=layer_outputs,
        residuals=residuals,
        attn_logits=attn_logits,
        output=residual @ W,
        input_embeddings=embeddings,
    )
