"""The subcommands that work on model files: compile, run, show, export.

A model file is what `tracr.export.save` writes (one .safetensors file with the weights
and the metadata: config, encoders, residual labels, circuit); `tracr compile` writes one.
A compressed model saved the same way (`tracr.compress.save(cm, "m.safetensors")`) runs
(and says whether it decoded the input as its compiled model does; exit status 1 if not),
shows (its width and held-out faithfulness, then the compiled model inside) and exports
(its d-wide transformer); `tracr report` draws compiled models only and refuses it.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any

from tracr.cli import references
from tracr.plot import structure

# How many inputs `tracr export` runs through both models to check the export.
EXPORT_CHECK_INPUTS = 256


def compile_program(args: argparse.Namespace):
    """(program, model, vocab) from the PROGRAM, --vocab, --max-seq-len, --causal and --bos
    arguments."""
    from tracr.compiler import compiling

    if args.vocab is None or args.max_seq_len is None:
        raise references.InputError("compiling a PROGRAM needs --vocab and --max-seq-len")
    program = references.load_program(args.program)
    vocab = references.parse_vocab(args.vocab)
    model = compiling.compile_rasp_to_model(
        program,
        vocab=vocab,
        max_seq_len=args.max_seq_len,
        causal=args.causal,
        compiler_bos=args.bos,
    )
    return program, model, vocab


def add_commands(commands, program_arguments) -> None:
    """Registers compile, run, show and export on the subparsers `commands`."""
    compile_ = commands.add_parser(
        "compile",
        help="compile a program and save the model to a .safetensors file",
        description="Compile PROGRAM and write the model (weights and metadata) to one "
        ".safetensors file that `tracr run`, `show`, `report` and `export` read.",
    )
    program_arguments(compile_)
    compile_.add_argument("-o", "--output", required=True, help="the .safetensors file")
    compile_.set_defaults(run=compile_command)

    run = commands.add_parser(
        "run",
        help="run a saved model on one input",
        description="Run MODEL on the TOKENs (BOS is added) and print the decoded output, one "
        "value per input token.",
    )
    run.add_argument("model", metavar="MODEL", help="a .safetensors file from `tracr compile`")
    run.add_argument("tokens", nargs="+", metavar="TOKEN", help="'1 2 3' or '1,2,3'")
    run.set_defaults(run=run_command)

    show = commands.add_parser(
        "show",
        help="print a saved model's shape, residual layout and circuit",
        description="Print MODEL's layers, heads, widths and parameters, the residual layout "
        "(which dimensions each SOp owns) and which block computes each SOp.",
    )
    show.add_argument("model", metavar="MODEL")
    show.set_defaults(run=show_command)

    export = commands.add_parser(
        "export",
        help="convert a saved model to PyTorch or TransformerLens",
        description="Convert MODEL with tracr.export.to_torch or to_transformer_lens, check "
        f"that it decodes like the numpy model on up to {EXPORT_CHECK_INPUTS} inputs, and "
        "save its state_dict with torch.save.",
    )
    export.add_argument("model", metavar="MODEL")
    export.add_argument("--to", choices=["torch", "lens"], required=True)
    export.add_argument("-o", "--output", required=True, help="the .pt file to write")
    export.set_defaults(run=export_command)


def load_model(path: str):
    """The model saved at `path`; a missing or foreign file is an InputError."""
    from tracr import export

    if not pathlib.Path(path).is_file():
        raise references.InputError(f"no such model file: {path}")
    return export.load(path)


def is_compressed(model) -> bool:
    from tracr.compress import compressed_model

    return isinstance(model, compressed_model.CompressedModel)


def compiled_model(model):
    """The compiled model: `model` itself, or the one inside a compressed model (its
    encoders, shape and circuit)."""
    return model.model if is_compressed(model) else model


def compressed_lines(cm) -> list[str]:
    """What `show` prints about a compressed model before its compiled model."""
    report = cm.report.table().splitlines() if cm.report else ["no held-out report"]
    return [
        f"compressed     d = {cm.d} of d_model {cm.d_model} (W [{cm.d}, {cm.d_model}])",
        f"layout         unembed_at_every_layer={cm.unembed_at_every_layer}",
        *report,
        "",
        "the compiled model inside:",
    ]


def summary_lines(model) -> list[str]:
    config = model.model_config
    from tracr import verifying

    return [
        f"output SOp     {structure.output_sop(model)}",
        f"layers         {config.num_layers}",
        f"heads          {config.num_heads} per layer",
        f"d_model        {len(model.residual_labels)}",
        f"d_head         {config.key_size}",
        f"d_mlp          {config.mlp_hidden_size}",
        f"parameters     {structure.parameter_count(model):,}",
        f"vocab          {' '.join(map(str, verifying.model_vocab(model)))}",
        f"max_seq_len    {verifying.model_max_seq_len(model)}",
        f"BOS token      {model.input_encoder.bos_token}",
        f"causal         {config.causal}",
    ]


def compile_command(args: argparse.Namespace) -> int:
    from tracr import export

    _, model, _ = compile_program(args)
    export.save(model, args.output)
    config = model.model_config
    print(
        f"wrote {args.output}: {config.num_layers} layers, {config.num_heads} heads, "
        f"d_model {len(model.residual_labels)}, {structure.parameter_count(model):,} parameters"
    )
    return 0


def run_command(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    tokens = references.parse_tokens(args.tokens)
    bos = compiled_model(model).input_encoder.bos_token
    if tokens[0] != bos:
        tokens = [bos, *tokens]
    decoded = model.apply(tokens).decoded
    print(" ".join(str(v) for v in decoded[1:]))
    if not is_compressed(model):
        return 0
    # A compressed model approximates its compiled one: say whether it did on this input.
    compiled = model.model.apply(tokens).decoded
    width = f"compressed to d = {model.d} of {model.d_model}"
    if _same(decoded, compiled):
        print(f"({width}: decodes as the compiled model does)", file=sys.stderr)
        return 0
    wrong = sum(not _same([a], [b]) for a, b in zip(decoded[1:], compiled[1:]))
    print(
        f"({width}: {wrong} of {len(compiled) - 1} positions differ from the compiled "
        f"model, which decodes: {' '.join(str(v) for v in compiled[1:])})",
        file=sys.stderr,
    )
    return 1


def show_command(args: argparse.Namespace) -> int:
    loaded = load_model(args.model)
    model = compiled_model(loaded)
    lines = compressed_lines(loaded) if is_compressed(loaded) else []
    lines += summary_lines(model) + ["", "residual layout:"]
    for group in structure.residual_groups(model.residual_labels):
        first, last = group.columns[0], group.columns[-1]
        where = f"{first}" if first == last else f"{first}-{last}"
        values = f"  values {' '.join(group.values)}" if group.values else ""
        lines.append(f"  {where:>7}  {group.label} ({group.encoding}){values}")
    lines += ["", "circuit:"]
    for part in structure.circuit(model):
        lines.append(f"  {part.sop:<24} {part.block:<24} reads {', '.join(part.reads) or '-'}")
    print("\n".join(lines))
    return 0


def export_command(args: argparse.Namespace) -> int:
    import torch

    from tracr import export

    model = load_model(args.model)  # a compressed model exports as its d-wide transformer
    inputs = _check_inputs(compiled_model(model))
    expected = model.apply_batch(inputs).decoded
    if args.to == "torch":
        net = export.to_torch(model)
        actual = net.run(inputs)
    else:
        from tracr.export import lens

        net = export.to_transformer_lens(model)
        actual = lens.run(net, model, inputs)
    agree = sum(_same(a, e) for a, e in zip(actual, expected))
    torch.save(net.state_dict(), args.output)
    print(f"wrote {args.output}: the {args.to} model's state_dict")
    print(f"{agree} of {len(inputs)} inputs decode like the numpy model")
    return 0 if agree == len(inputs) else 1


def _check_inputs(model) -> list[list[Any]]:
    from tracr import verifying

    vocab = verifying.model_vocab(model)
    max_seq_len = verifying.model_max_seq_len(model)
    total = verifying.count_inputs(len(vocab), max_seq_len)
    if total <= EXPORT_CHECK_INPUTS:
        inputs = verifying.all_inputs(vocab, max_seq_len)
    else:
        inputs = verifying.sampled_inputs(vocab, max_seq_len, EXPORT_CHECK_INPUTS, seed=0)
    bos = model.input_encoder.bos_token
    return [[bos, *x] for x in inputs]


def _same(actual: list, expected: list) -> bool:
    from tracr import verifying

    return len(actual) == len(expected) and all(
        verifying.same_value(a, e) for a, e in zip(actual, expected)
    )
