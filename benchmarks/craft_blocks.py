"""Build time of the craft block builders at large sizes.

Run with `python benchmarks/craft_blocks.py` (after `pip install -e .`). Prints one row per
block: what it computes, its sizes, the best-of-3 build time in seconds, and its width
(hidden units for MLPs; query x key dimensions of W_QK for attention heads).
"""

from __future__ import annotations

import time

from tracr.craft import bases, transformers
from tracr.craft.chamber import categorical_attn, categorical_mlp, numerical_mlp, selector_width

ONE = bases.VectorSpaceWithBasis([bases.BasisDirection("one")])
BOS = bases.VectorSpaceWithBasis([bases.BasisDirection("tokens", "compiler_bos")])


def _values(name, n):
    return bases.VectorSpaceWithBasis.from_values(name, range(n))


def _width(block) -> str:
    if isinstance(block, transformers.MLP):
        return f"{block.hidden_space.num_dims} hidden"
    if isinstance(block, transformers.AttentionHead):
        return f"{block.w_qk.left_space.num_dims}x{block.w_qk.right_space.num_dims} qk"
    return " + ".join(_width(b) for b in block.blocks)


def _cases():
    num = bases.VectorSpaceWithBasis([bases.BasisDirection("x")])
    out = bases.VectorSpaceWithBasis([bases.BasisDirection("y")])
    yield (
        "categorical Map MLP",
        "1000 values -> 97",
        lambda: categorical_mlp.map_categorical_mlp(
            _values("x", 1000), _values("y", 97), lambda v: v % 97, "h"
        ),
    )
    yield (
        "SequenceMap MLP",
        "300 x 20 values",
        lambda: categorical_mlp.sequence_map_categorical_mlp(
            _values("a", 300),
            _values("b", 20),
            _values("y", 50),
            lambda a, b: (a + b) % 50,
            ONE,
            "h",
        ),
    )
    yield (
        "categorical attention",
        "100 x 100 q/k, N=100",
        lambda: categorical_attn.categorical_attn(
            _values("q", 100),
            _values("k", 100),
            _values("v", 100),
            _values("o", 100),
            BOS,
            ONE,
            lambda q, k: k <= q,
            max_seq_len=100,
        ),
    )
    yield (
        "selector width",
        "max_seq_len 100",
        lambda: selector_width.selector_width(
            _values("q", 100),
            _values("k", 100),
            _values("w", 101),
            BOS,
            ONE,
            lambda q, k: k <= q,
            range(101),
            True,
            max_seq_len=100,
            hidden_name="h",
        ),
    )
    yield (
        "numerical Map MLP",
        "1000 points",
        lambda: numerical_mlp.map_numerical_mlp(
            lambda v: v * v, num, out, range(1000), ONE, BOS, "h"
        ),
    )


def main() -> None:
    rows = [("block", "sizes", "build s", "width")]
    for name, sizes, build in _cases():
        times = []
        for _ in range(3):
            start = time.perf_counter()
            block = build()
            times.append(time.perf_counter() - start)
        rows.append((name, sizes, f"{min(times):.4f}", _width(block)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
