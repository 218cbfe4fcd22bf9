"""Transformer blocks over named vector spaces: MLPs, attention heads, and their series.

Every block exposes `residual_space`, the join of the spaces it reads and writes, and
`apply(x)`, which maps residual vectors x ([..., seq, dims] for attention, [..., dims]
for MLPs) to the block's OUTPUT (the residual connection is added by
`SeriesWithResiduals`, as in a transformer layer). These `apply` methods are the
reference semantics the numpy forward pass of an assembled model must agree with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

from tracr.craft import bases, vectorspace_fns


class Block:
    """A transformer half-layer (or a series of them) acting on the residual stream."""

    residual_space: bases.VectorSpaceWithBasis

    def apply(self, x: bases.VectorInBasis) -> bases.VectorInBasis:
        raise NotImplementedError


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _check_inside(space: bases.VectorSpaceWithBasis, residual, what: str) -> None:
    if not space.issubspace(residual):
        missing = [str(d) for d in space.basis if d not in residual]
        raise ValueError(f"{what} is not inside residual_space; missing {missing}")


@dataclasses.dataclass(frozen=True, eq=False)
class MLP(Block):
    """apply(x) = snd(relu(fst(x projected to fst.input_space))), in residual_space."""

    fst: vectorspace_fns.Linear
    snd: vectorspace_fns.Linear
    residual_space: bases.VectorSpaceWithBasis | None = None

    def __post_init__(self) -> None:
        if self.fst.output_space.basis != self.snd.input_space.basis:
            raise ValueError(
                "fst.output_space and snd.input_space must be the same hidden "
                "space in the same order"
            )
        if self.residual_space is None:  # the join holds both spaces
            _set(
                self,
                "residual_space",
                bases.join_vector_spaces(self.fst.input_space, self.snd.output_space),
            )
            return
        _check_inside(self.fst.input_space, self.residual_space, "fst.input_space")
        _check_inside(self.snd.output_space, self.residual_space, "snd.output_space")

    @property
    def hidden_space(self) -> bases.VectorSpaceWithBasis:
        return self.fst.output_space

    def apply(self, x: bases.VectorInBasis) -> bases.VectorInBasis:
        hidden = self.fst(x.project(self.fst.input_space))
        hidden = self.fst.output_space.make_vector(np.maximum(hidden.magnitudes, 0))
        return self.snd(hidden).project(self.residual_space)

    @classmethod
    def combine_in_parallel(cls, mlps: Sequence[MLP]) -> MLP:
        """One MLP computing the sum of the outputs; hidden spaces (which must be
        disjoint) are concatenated in order."""
        hidden = bases.direct_sum(*[m.fst.output_space for m in mlps])
        inputs = bases.join_vector_spaces(*[m.fst.input_space for m in mlps])
        outputs = bases.join_vector_spaces(*[m.snd.output_space for m in mlps])
        first = np.zeros((inputs.num_dims, hidden.num_dims))
        second = np.zeros((hidden.num_dims, outputs.num_dims))
        start = 0
        for m in mlps:
            end = start + m.fst.output_space.num_dims  # m's hidden units: start:end
            first[inputs.indices(m.fst.input_space.basis), start:end] = m.fst.matrix
            second[start:end, outputs.indices(m.snd.output_space.basis)] = m.snd.matrix
            start = end
        residual = bases.join_vector_spaces(*[m.residual_space for m in mlps])
        return cls(
            vectorspace_fns.Linear(inputs, hidden, first),
            vectorspace_fns.Linear(hidden, outputs, second),
            residual,
        )


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    weights = np.exp(shifted)
    return weights / np.sum(weights, axis=-1, keepdims=True)


@dataclasses.dataclass(frozen=True, eq=False)
class AttentionHead(Block):
    """One attention head on sequences x [..., seq, dims].

    logits[q, k] = x_q^T W_qk x_k (no 1/sqrt(d) scaling); when causal, keys after the
    query are masked; weights = softmax over keys; output_q = sum_k weight[q, k] w_ov(x_k).
    """

    w_qk: vectorspace_fns.ScalarBilinear
    w_ov: vectorspace_fns.Linear
    residual_space: bases.VectorSpaceWithBasis | None = None
    causal: bool = False

    def __post_init__(self) -> None:
        if self.residual_space is None:
            _set(
                self,
                "residual_space",
                bases.join_vector_spaces(
                    self.w_qk.left_space,
                    self.w_qk.right_space,
                    self.w_ov.input_space,
                    self.w_ov.output_space,
                ),
            )
            return  # the join holds every space
        _check_inside(self.w_qk.left_space, self.residual_space, "w_qk.left_space")
        _check_inside(self.w_qk.right_space, self.residual_space, "w_qk.right_space")
        _check_inside(self.w_ov.input_space, self.residual_space, "w_ov.input_space")
        _check_inside(self.w_ov.output_space, self.residual_space, "w_ov.output_space")

    @property
    def num_heads(self) -> int:
        return 1

    def heads(self) -> Iterator[AttentionHead]:
        yield self

    def as_multi(self) -> MultiAttentionHead:
        return MultiAttentionHead([self])

    def attn_logits(self, x: bases.VectorInBasis) -> np.ndarray:
        """The masked logits [..., seq_q, seq_k] (-inf where causally masked)."""
        queries = x.project(self.w_qk.left_space).magnitudes  # [..., seq, L]
        keys = x.project(self.w_qk.right_space).magnitudes  # [..., seq, R]
        logits = (queries @ self.w_qk.matrix) @ np.swapaxes(keys, -1, -2)  # [..., seq, seq]
        if self.causal:
            seq = logits.shape[-1]
            future = np.triu(np.ones((seq, seq), dtype=bool), k=1)
            logits = np.where(future, -np.inf, logits)
        return logits

    def attn_weights(self, x: bases.VectorInBasis) -> np.ndarray:
        """The attention pattern [..., seq_q, seq_k]; rows sum to 1."""
        return _softmax(self.attn_logits(x))

    def w_ov_residual(self, x: bases.VectorInBasis) -> bases.VectorInBasis:
        """w_ov read from and written to residual_space (as in the reference Tracr)."""
        return self.w_ov(x.project(self.w_ov.input_space)).project(self.residual_space)

    def apply(self, x: bases.VectorInBasis) -> bases.VectorInBasis:
        values = self.w_ov(x.project(self.w_ov.input_space)).magnitudes  # [..., seq, out]
        out = self.attn_weights(x) @ values  # [..., seq, out]
        return self.w_ov.output_space.make_vector(out).project(self.residual_space)


@dataclasses.dataclass(frozen=True, eq=False)
class MultiAttentionHead(Block):
    """Heads applied in parallel; the output is the sum of theirs.

    residual_space is the join of the sub-blocks' residual spaces.
    """

    sub_blocks: Sequence[AttentionHead | MultiAttentionHead]
    residual_space: bases.VectorSpaceWithBasis = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        _set(self, "sub_blocks", tuple(self.sub_blocks))
        for block in self.sub_blocks:
            if not isinstance(block, (AttentionHead, MultiAttentionHead)):
                raise TypeError(f"MultiAttentionHead takes heads, got {type(block).__name__}")
        _set(
            self,
            "residual_space",
            bases.join_vector_spaces(*[b.residual_space for b in self.sub_blocks]),
        )

    @property
    def num_heads(self) -> int:
        return sum(b.num_heads for b in self.sub_blocks)

    def heads(self) -> Iterator[AttentionHead]:
        for block in self.sub_blocks:
            yield from block.heads()

    def as_multi(self) -> MultiAttentionHead:
        return self

    def apply(self, x: bases.VectorInBasis) -> bases.VectorInBasis:
        total = np.zeros(x.magnitudes.shape[:-1] + (self.residual_space.num_dims,))
        for head in self.heads():
            total = total + head.apply(x).project(self.residual_space).magnitudes
        return self.residual_space.make_vector(total)


HalfLayerBlock = MLP | AttentionHead | MultiAttentionHead


@dataclasses.dataclass(frozen=True, eq=False)
class SeriesWithResiduals(Block):
    """Blocks applied one after another, each adding its output to the residual.

    apply(x) returns the final residual (x plus every block's output), not a delta; a
    nested series contributes its own residual minus its input.
    """

    blocks: Sequence[Block]
    residual_space: bases.VectorSpaceWithBasis = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        _set(self, "blocks", tuple(self.blocks))
        _set(
            self,
            "residual_space",
            bases.join_vector_spaces(*[b.residual_space for b in self.blocks]),
        )

    def apply(self, x: bases.VectorInBasis) -> bases.VectorInBasis:
        x = x.project(self.residual_space)
        for block in self.blocks:
            x_in = x.project(block.residual_space)
            out = block.apply(x_in)
            if isinstance(block, SeriesWithResiduals):  # it returns a residual, not a delta
                out = out - x_in
            x = x + out.project(self.residual_space)
        return x
