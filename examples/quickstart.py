"""Compile the reverse program and run it: the README's quick start, with a summary."""

from __future__ import annotations

from tracr.compiler import compiling, lib
from tracr.rasp import rasp


def main() -> None:
    program = lib.make_reverse(rasp.tokens)
    model = compiling.compile_rasp_to_model(
        program, vocab={1, 2, 3}, max_seq_len=5, compiler_bos="BOS"
    )
    out = model.apply(["BOS", 1, 2, 3])
    print("input:    ['BOS', 1, 2, 3]")
    print(f"decoded:  {out.decoded}")
    print(f"evaluate: {rasp.evaluate(program, [1, 2, 3])}")
    config = model.model_config
    print(
        f"model:    {config.num_layers} layers, {config.num_heads} heads of width "
        f"{config.key_size}, MLP width {config.mlp_hidden_size}, "
        f"d_model {config.d_model}"
    )
    print("residual: " + ", ".join(model.residual_labels))


if __name__ == "__main__":
    main()
