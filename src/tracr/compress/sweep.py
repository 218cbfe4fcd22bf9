"""`sweep(model, dims)`: faithfulness against the compressed width d."""

from __future__ import annotations

import dataclasses

from tracr.compiler import assembled_model
from tracr.compress import compressed_model as cm_lib
from tracr.compress import training


@dataclasses.dataclass
class SweepResult:
    """One compression per d, in the order of `dims`."""

    d_model: int
    models: dict[int, cm_lib.CompressedModel]

    @property
    def dims(self) -> list[int]:
        return list(self.models)

    def output_accuracy(self) -> dict[int, float]:
        return {d: cm.report.output_accuracy for d, cm in self.models.items()}

    def smallest(self, threshold: float = 0.99) -> int | None:
        """The smallest d whose held-out output accuracy is at least `threshold`."""
        good = [d for d, acc in self.output_accuracy().items() if acc >= threshold]
        return min(good) if good else None

    def table(self) -> str:
        """Plain text: one row per d, the output and per-SOp accuracies, training time."""
        first = next(iter(self.models.values()))
        sops = list(first.report.sop_accuracy)
        head = ["d", "output", *sops, "steps", "seconds"]
        rows = [head]
        for d, cm in sorted(self.models.items()):
            rows.append(
                [
                    str(d),
                    f"{cm.report.output_accuracy:.1%}",
                    *(f"{cm.report.sop_accuracy[s]:.1%}" for s in sops),
                    str(len(cm.history.step_loss)),
                    f"{cm.history.seconds:.1f}",
                ]
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
        return f"d_model = {self.d_model}\n" + "\n".join(lines)

    def plot(self, ax=None):
        """Output and per-SOp accuracy against d (extra `plot`); returns the Figure."""
        from tracr.compress import plots

        return plots.plot_sweep(self, ax=ax)


def sweep(
    model: assembled_model.AssembledTransformerModel, dims: list[int], **compress_options
) -> SweepResult:
    """Compresses `model` to each width in `dims` with the same options and seed."""
    dims = list(dims)
    if not dims:
        raise ValueError("sweep needs at least one width in dims")
    models = {d: training.compress(model, d, **compress_options) for d in dims}
    return SweepResult(d_model=len(model.residual_labels), models=models)
