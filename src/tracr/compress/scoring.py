"""Faithfulness: does the compressed model compute what the compiled model computes?

The compiled model computes the program exactly on every valid input (the compiler's
promise), so the compiled model's values are the program's values. Two counts:

- output accuracy: the fraction of input sequences whose decoded output equals the
  compiled model's at every position (numbers within `atol`);
- per-SOp accuracy: for each SOp in the residual stream, the fraction of (sequence,
  position) pairs where its value read back through W equals the compiled value:
  categorical SOps by argmax over their directions (None when the largest entry is below
  0.5, as the output decoder does), numerical SOps within `atol`.

Positions are the real tokens after BOS; padding is not counted.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from tracr.compiler import assembled_model
from tracr.compress import inputs as inputs_lib

if TYPE_CHECKING:
    from tracr.compress.compressed_model import CompressedModel

# Default tolerance for numerical values. The lib programs' numerical values differ by at
# least 0.05 (frac_prevs at max_seq_len 5: 1/5 vs 1/4), so 0.01 tells them all apart.
ATOL = 0.01


@dataclasses.dataclass(frozen=True)
class FaithfulnessReport:
    n_inputs: int
    exhaustive: bool  # the inputs were every valid input of the model
    output_accuracy: float
    sop_accuracy: dict[str, float]  # SOp label -> accuracy of its read-back value
    atol: float

    def table(self) -> str:
        """A plain-text table: one row for the output, one per SOp."""
        where = "every valid input" if self.exhaustive else f"{self.n_inputs} inputs"
        rows = [f"faithfulness on {where} (numbers within {self.atol:g})"]
        rows.append(f"  {'output (whole sequence)':<28} {self.output_accuracy:7.2%}")
        rows += [f"  {name:<28} {acc:7.2%}" for name, acc in self.sop_accuracy.items()]
        return "\n".join(rows)


def sop_columns(residual_labels: list[str]) -> dict[str, tuple[np.ndarray, bool]]:
    """SOp label -> (its residual columns, categorical?). The constant `one` is left out.

    Categorical directions are labelled "name:value", numerical ones "name".
    """
    groups: dict[str, tuple[list[int], bool]] = {}
    for col, label in enumerate(residual_labels):
        name, sep, _ = label.partition(":")
        if label == "one":
            continue
        groups.setdefault(name, ([], bool(sep)))[0].append(col)
    return {name: (np.asarray(cols), cat) for name, (cols, cat) in groups.items()}


def categorical_codes(values: np.ndarray) -> np.ndarray:
    """[..., V] -> [...] argmax index, or -1 where the largest entry is below 0.5 (None)."""
    ids, present = assembled_model.read_scores(
        values.reshape(-1, values.shape[-1]).T, values.shape[:-1]
    )
    return np.where(present, ids, -1)


def compiled_outputs(
    model: assembled_model.AssembledTransformerModel, data: inputs_lib.InputSet
) -> np.ndarray:
    """The compiled model's final residuals on `data` (at least one input), [N, T, D]:
    what `score` compares against, computed once where the same inputs are scored again
    and again (training's held-out set, at every evaluation)."""
    compiled = model.get_compiled_model()
    chunks = [
        compiled(data.token_ids[start : start + inputs_lib.CHUNK]).transformer_output.output
        for start in range(0, len(data), inputs_lib.CHUNK)
    ]
    return np.concatenate(chunks)


def score(
    cm: CompressedModel,
    data: inputs_lib.InputSet,
    *,
    atol: float = ATOL,
    want: np.ndarray | None = None,
) -> FaithfulnessReport:
    """Compares the compressed and the compiled model on `data`; `want` is
    `compiled_outputs(cm.model, data)` where the caller already has it."""
    positions = data.key_mask.copy()
    positions[:, 0] = False  # [N, T]: real tokens after BOS
    compiled = cm.model.get_compiled_model()
    seq_ok = np.ones(len(data), dtype=bool)
    columns = sop_columns(cm.residual_labels)
    hits = {name: 0 for name in columns}
    for start in range(0, len(data), inputs_lib.CHUNK):
        rows = slice(start, start + inputs_lib.CHUNK)
        ids, mask, where = data.token_ids[rows], data.key_mask[rows], positions[rows]
        # [n, T, D]; computed chunk by chunk when not given, to bound memory
        wanted = compiled(ids).transformer_output.output if want is None else want[rows]
        got = cm.forward(ids, mask).output  # [n, T, D], read back
        ok = _same_output(wanted, got, compiled, atol)  # [n, T]
        seq_ok[rows] = np.all(ok | ~where, axis=1)
        for name, (cols, categorical) in columns.items():
            if categorical:
                same = categorical_codes(wanted[..., cols]) == categorical_codes(got[..., cols])
            else:
                same = np.abs(wanted[..., cols[0]] - got[..., cols[0]]) <= atol
            hits[name] += int(np.sum(same & where))
    count = max(int(positions.sum()), 1)
    return FaithfulnessReport(
        n_inputs=len(data),
        exhaustive=data.exhaustive,
        output_accuracy=float(seq_ok.mean()) if len(data) else 0.0,
        sop_accuracy={name: hit / count for name, hit in hits.items()},
        atol=atol,
    )


def _same_output(want, got, compiled: assembled_model.CompiledTransformerModel, atol) -> np.ndarray:
    want_ids, want_present = assembled_model.unembed(
        want, compiled.unembed_matrix, compiled.use_unembed_argmax
    )
    got_ids, got_present = assembled_model.unembed(
        got, compiled.unembed_matrix, compiled.use_unembed_argmax
    )
    if compiled.use_unembed_argmax:
        return (want_present == got_present) & (~want_present | (want_ids == got_ids))
    return np.abs(want_ids - got_ids) <= atol
