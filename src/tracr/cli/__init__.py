"""The `tracr` command: compile, check and look at RASP programs from the shell.

    tracr compile PROGRAM --vocab 1,2,3 --max-seq-len 5 [--causal] -o model.safetensors
    tracr run model.safetensors 3 1 2
    tracr verify PROGRAM --vocab 1,2,3 --max-seq-len 5 [--causal]
    tracr show model.safetensors
    tracr report PROGRAM --vocab 1,2,3 --max-seq-len 5 --input 3,1,2 -o report.html
    tracr report model.safetensors --input 3,1,2 -o report.html
    tracr export model.safetensors --to torch|lens -o model.pt

PROGRAM is `path/file.py:name` or `package.module:function(args)`; see
`tracr.cli.references` for exactly what may be written. A mistake in the command line
(a bad reference, a vocab that does not parse, a missing file) prints one line,
`tracr: error: ...`, and exits with status 2; `verify` exits with 1 when the model and
the evaluator disagree.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

from tracr.cli import model_commands, references

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and status 2, as argparse does, plus the name
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _program_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("program", metavar="PROGRAM", help="file.py:name or module:function(args)")
    parser.add_argument(
        "--vocab",
        nargs="+",
        required=required,
        metavar="TOKEN",
        help="input tokens: '1,2,3' or 'a b c' (integers are read as ints)",
    )
    parser.add_argument("--max-seq-len", type=int, required=required, metavar="N")
    parser.add_argument("--causal", action="store_true", help="compile a causally masked model")
    parser.add_argument("--bos", default="BOS", help="the BOS token (default: BOS)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tracr",
        description="Compile RASP programs into transformers; check and inspect them.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    verify = commands.add_parser(
        "verify",
        help="compile a program and check the model against the evaluator",
        description="Compile PROGRAM, then compare the model with the RASP evaluator on every "
        "input up to --exhaustive-limit inputs, or else on --samples random inputs. Exits "
        "with 1 if any output differs.",
    )
    _program_arguments(verify)
    verify.add_argument(
        "--exhaustive-limit",
        type=int,
        default=1_000_000,
        metavar="N",
        help="check every input when there are at most N (default 1000000)",
    )
    verify.add_argument(
        "--samples",
        type=int,
        default=10_000,
        metavar="N",
        help="otherwise check N random inputs (default 10000)",
    )
    verify.add_argument("--seed", type=int, default=0, help="seed of the random sample")
    verify.add_argument("--batch-size", type=int, default=2048, metavar="N")
    verify.add_argument(
        "--show", type=int, default=5, metavar="N", help="print the first N mismatches (default 5)"
    )
    verify.add_argument("--no-progress", action="store_true", help="no progress bar")
    verify.set_defaults(run=_verify)

    report = commands.add_parser(
        "report",
        help="write a self-contained HTML report of a program or a saved model",
        description="Compile PROGRAM (or load a MODEL file from `tracr compile`) and write an "
        "HTML page showing the model, its program graph, its circuit map and how each --input "
        "flows through it. --vocab and --max-seq-len are needed for a PROGRAM only.",
    )
    _program_arguments(report, required=False)
    report.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="TOKENS",
        help="an input to show, e.g. '3,1,2' (repeatable)",
    )
    report.add_argument("-o", "--output", default="report.html", help="the .html file to write")
    report.add_argument("--title", default=None)
    report.set_defaults(run=_report)
    model_commands.add_commands(commands, _program_arguments)
    for sub in commands.choices.values():
        sub.error = lambda message, sub=sub: sub.exit(EXIT_USAGE, f"{sub.prog}: error: {message}\n")
    return parser


def _verify(args) -> int:
    from tracr import verifying

    program, model, vocab = model_commands.compile_program(args)
    total = verifying.count_inputs(len(verifying.model_vocab(model)), args.max_seq_len)
    exhaustive = total <= args.exhaustive_limit
    planned = total if exhaustive else args.samples
    bar = _progress_bar(planned, disabled=args.no_progress)
    try:
        result = verifying.verify(
            model,
            program,
            exhaustive_limit=args.exhaustive_limit,
            samples=args.samples,
            seed=args.seed,
            batch_size=args.batch_size,
            keep=args.show,
            progress=bar.update if bar else None,
        )
    finally:
        if bar:
            bar.close()
    if result.exhaustive:
        how = f"every input of length 1-{args.max_seq_len} over {len(vocab)} tokens"
    else:
        how = f"a sample with seed {args.seed} of the {total:,} inputs"
    print(f"checked {result.total:,} inputs ({how})")
    share = 100 * result.agree / result.total if result.total else 100.0
    print(
        f"agree: {result.agree:,} ({share:.2f}%)  mismatch: {result.mismatch:,}  "
        f"refused by the model: {result.refused:,}  undefined: {result.undefined:,}"
    )
    for m in result.mismatches:
        print(
            f"MISMATCH input {list(m.tokens)}: evaluator {list(m.expected)}, model {list(m.actual)}"
        )
    for tokens, message in result.refusals[:1]:
        print(f"first refused input {list(tokens)}: {message}")
    return EXIT_OK if result.ok else EXIT_MISMATCH


def _progress_bar(total: int, *, disabled: bool):
    """A tqdm bar on stderr when stderr is a terminal (and tqdm is installed)."""
    if disabled or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="input", unit_scale=total >= 10_000, file=sys.stderr, leave=False)


def _report(args) -> int:
    from tracr.reporting import page

    if pathlib.Path(args.program).is_file() and not args.program.endswith(".py"):
        program, model = None, model_commands.load_model(args.program)
        if model_commands.is_compressed(model):
            raise references.InputError(
                f"{args.program} holds a compressed model; tracr report draws compiled "
                "models (tracr show describes a compressed one)"
            )
    else:
        program, model, _ = model_commands.compile_program(args)
    inputs = [references.parse_tokens([text]) for text in args.input]
    path = page.report(model, inputs, args.output, program=program, title=args.title)
    print(f"wrote {path}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    from tracr.compiler import validating

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except references.InputError as err:
        message = str(err)
    except validating.UnsupportedProgramError as err:
        message = f"the compiler refuses the program: {err}"
    except (ValueError, TypeError, OSError, ImportError) as err:
        message = str(err)
    print(f"tracr: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def console_main() -> None:  # the console script
    sys.exit(main())
