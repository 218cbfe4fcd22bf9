"""The `tracr` command: round trips on lib programs, and one-line errors for bad input."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tests.compress import helpers
from tracr import cli, compress
from tracr.rasp import rasp

TRACR = pathlib.Path(sys.executable).parent / "tracr"  # the installed console script

LIB = "tracr.compiler.lib"
PROGRAMS = [
    # (reference, vocab, max_seq_len, inputs checked: sum of |vocab|**n)
    (f"{LIB}:make_sort_unique(tokens, tokens)", "1,2,3", 3, 39),
    (f"{LIB}:make_hist", "a b c", 3, 39),
    (f'{LIB}:make_frac_prevs(tokens == "x")', "x,y", 4, 30),
]


def _tracr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(TRACR), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("reference", "vocab", "max_seq_len", "count"), PROGRAMS)
def test_verify_round_trip(reference, vocab, max_seq_len, count):
    result = _tracr(
        "verify", reference, "--vocab", *vocab.split(), "--max-seq-len", str(max_seq_len)
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert (
        lines[0] == f"checked {count} inputs (every input of length 1-{max_seq_len} over "
        f"{len(vocab.replace(',', ' ').split())} tokens)"
    )
    assert lines[1].startswith(f"agree: {count} (100.00%)  mismatch: 0")
    assert result.stderr == ""  # no progress bar when stderr is not a terminal


def test_report_from_the_command_line(tmp_path):
    out = tmp_path / "sort.html"
    result = _tracr(
        "report",
        f"{LIB}:make_sort_unique(tokens, tokens)",
        "--vocab",
        "1,2,3",
        "--max-seq-len",
        "3",
        "--input",
        "3,1,2",
        "--input",
        "2 1",
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {out}"
    text = out.read_text(encoding="utf-8")
    assert ">Input 0: BOS 3 1 2<" in text and ">Input 1: BOS 2 1<" in text


def test_sampled_verify_and_causal(capsys):
    status = cli.main(
        [
            "verify",
            f"{LIB}:shift_by(1, tokens)",
            "--vocab",
            "1,2,3",
            "--max-seq-len",
            "5",
            "--exhaustive-limit",
            "10",
            "--samples",
            "40",
            "--seed",
            "7",
            "--causal",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert out.splitlines()[0] == "checked 40 inputs (a sample with seed 7 of the 363 inputs)"


def test_a_mismatch_exits_with_1_and_is_printed(monkeypatch, capsys):
    real = rasp.evaluate

    def wrong_on_long_inputs(program, xs):
        out = real(program, xs)
        return out if len(xs) < 3 else [None] * len(xs)

    monkeypatch.setattr(rasp, "evaluate", wrong_on_long_inputs)
    status = cli.main(
        ["verify", f"{LIB}:make_hist", "--vocab", "1", "2", "--max-seq-len", "3", "--show", "2"]
    )
    out = capsys.readouterr().out.splitlines()
    assert status == 1
    assert out[1].startswith("agree: 6 (42.86%)  mismatch: 8")
    assert out[2] == "MISMATCH input [1, 1, 1]: evaluator [None, None, None], model [3, 3, 3]"
    assert len([line for line in out if line.startswith("MISMATCH")]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["verify", "nofile.py:p", "--vocab", "1", "--max-seq-len", "2"],
            "tracr: error: no such Python file: nofile.py",
        ),
        (
            ["verify", f"{LIB}:nope", "--vocab", "1", "--max-seq-len", "2"],
            f"tracr: error: 'nope' is not defined in {LIB}",
        ),
        (
            ["verify", f"{LIB}:make_hist", "--vocab", ",", "--max-seq-len", "2"],
            "tracr: error: the vocab is empty",
        ),
        (
            ["verify", f"{LIB}:make_hist", "--vocab", "BOS", "--max-seq-len", "2"],
            "tracr: error: the compiler BOS token 'BOS' must not be in the vocab",
        ),
        (
            ["verify", f"{LIB}:make_hist", "--vocab", "1", "--max-seq-len", "0"],
            "tracr: error: max_seq_len must be a positive int",
        ),
        (
            ["report", f"{LIB}:make_hist", "--vocab", "1", "--max-seq-len", "2", "--input", "7"],
            "tracr: error: tokens [7] are not in the vocab [1]",
        ),
        (
            [
                "verify",
                "tracr.rasp.rasp:Aggregate(Select(tokens, tokens, Comparison.LEQ), tokens)",
                "--vocab",
                "1,2",
                "--max-seq-len",
                "2",
            ],
            "tracr: error: the compiler refuses the program:",
        ),
    ],
)
def test_bad_input_gets_one_line_and_status_2(args, message, capsys):
    assert cli.main(args) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(message)
    assert "Traceback" not in captured.err


def test_bad_vocab_from_the_console_script_is_one_line():
    result = _tracr("verify", f"{LIB}:make_hist", "--vocab", "1", "--max-seq-len", "x")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "tracr verify: error: argument --max-seq-len: invalid int value: 'x'"
    ]


@pytest.mark.parametrize(
    "command", [[], ["verify"], ["report"], ["compile"], ["run"], ["show"], ["export"]]
)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: tracr {' '.join(command)}".rstrip())


def test_progress_bar_on_a_terminal():
    import fcntl
    import os
    import pty
    import struct
    import termios
    import threading

    leader, follower = pty.openpty()
    # a terminal of 24 x 100 characters (tqdm draws nothing on one without a size)
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    shown = []

    def read_terminal():
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=read_terminal)
    reader.start()
    process = subprocess.Popen(
        [str(TRACR), "verify", f"{LIB}:make_hist", "--vocab", "1,2", "--max-seq-len", "3"],
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    )
    stdout, _ = process.communicate(timeout=120)
    os.close(follower)
    reader.join(timeout=10)
    os.close(leader)
    assert process.returncode == 0
    assert stdout.startswith("checked 14 inputs")
    terminal = b"".join(shown)
    assert b"0/14 [" in terminal and b"input/s" in terminal  # tqdm draws its bar on stderr


def test_compile_run_show_and_report_a_model_file(tmp_path, capsys):
    path = tmp_path / "sort.safetensors"
    reference = f"{LIB}:make_sort_unique(tokens, tokens)"
    args = ["--vocab", "1,2,3,4", "--max-seq-len", "4", "-o", str(path)]
    assert cli.main(["compile", reference, *args]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {path}: 2 layers, 1 heads, d_model ")
    assert cli.main(["run", str(path), "3", "1", "4", "2"]) == 0
    assert capsys.readouterr().out == "1 2 3 4\n"
    assert cli.main(["run", str(path), "BOS,2,1"]) == 0
    assert capsys.readouterr().out == "1 2\n"
    assert cli.main(["show", str(path)]) == 0
    shown = capsys.readouterr().out
    assert "layers         2\n" in shown and "vocab          1 2 3 4\n" in shown
    assert "max_seq_len    4\n" in shown
    assert "  tokens (categorical)  values 1 2 3 4 BOS compiler_pad" in shown
    assert "L1 attn head 0" in shown
    report = tmp_path / "r.html"
    assert cli.main(["report", str(path), "--input", "4,3", "-o", str(report)]) == 0
    assert ">Input 0: BOS 4 3<" in report.read_text(encoding="utf-8")


def test_a_file_that_is_not_a_model(tmp_path, capsys):
    junk = tmp_path / "junk.safetensors"
    junk.write_text("hello")
    assert cli.main(["run", str(junk), "1"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"tracr: error: {junk}: ") and error.count("\n") == 1
    assert cli.main(["show", str(tmp_path / "missing.safetensors")]) == 2
    assert capsys.readouterr().err.startswith("tracr: error: no such model file: ")


ROUND_TRIPS = [
    # (reference, vocab, max_seq_len, input, decoded output)
    (f"{LIB}:make_sort_unique(tokens, tokens)", "1,2,3,4", 4, "3 1 4 2", "1 2 3 4"),
    (f"{LIB}:make_hist", "a,b,c", 4, "a b a c", "2 1 2 1"),
    (f'{LIB}:make_frac_prevs(tokens == "x")', "x,y", 4, "x y y x", "1 0.5 0.333333 0.5"),
]


@pytest.mark.parametrize(("reference", "vocab", "max_seq_len", "tokens", "expected"), ROUND_TRIPS)
def test_compile_run_verify_round_trip(tmp_path, reference, vocab, max_seq_len, tokens, expected):
    path = tmp_path / "model.safetensors"
    size = ["--vocab", vocab, "--max-seq-len", str(max_seq_len)]
    compiled = _tracr("compile", reference, *size, "-o", str(path))
    assert compiled.returncode == 0, compiled.stderr
    assert compiled.stdout.startswith(f"wrote {path}: ")
    run = _tracr("run", str(path), *tokens.split())
    assert run.returncode == 0, run.stderr
    actual, wanted = run.stdout.split(), expected.split()
    assert len(actual) == len(wanted)
    for a, e in zip(actual, wanted):
        assert a == e or abs(float(a) - float(e)) < 1e-5
    verified = _tracr("verify", reference, *size)
    assert verified.returncode == 0 and "  mismatch: 0  " in verified.stdout


@pytest.mark.parametrize("target", ["torch", "lens"])
def test_export_checks_and_saves_the_state_dict(tmp_path, capsys, target):
    import torch

    path, out = tmp_path / "hist.safetensors", tmp_path / f"hist_{target}.pt"
    size = ["--vocab", "a,b", "--max-seq-len", "3"]
    assert cli.main(["compile", f"{LIB}:make_hist", *size, "-o", str(path)]) == 0
    capsys.readouterr()
    assert cli.main(["export", str(path), "--to", target, "-o", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"wrote {out}: the {target} model's state_dict",
        "14 of 14 inputs decode like the numpy model",
    ]
    state = torch.load(out)
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())


def test_a_compressed_model_file_runs_shows_exports_and_is_refused_by_report(tmp_path, capsys):
    cm = helpers.trained("reverse")  # reverse over {1, 2}, max_seq_len 3, d = 19 of 21
    path = tmp_path / "reverse.safetensors"
    compress.save(cm, path)
    assert cli.main(["run", str(path), "1", "2", "2"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "2 2 1\n"
    assert captured.err == "(compressed to d = 19 of 21: decodes as the compiled model does)\n"
    assert cli.main(["show", str(path)]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("compressed     d = 19 of d_model 21 (W [19, 21])\n")
    assert "  output (whole sequence)      100.00%\n" in shown  # the held-out report
    assert "the compiled model inside:\n" in shown and "d_model        21\n" in shown
    out = tmp_path / "reverse.pt"
    assert cli.main(["export", str(path), "--to", "torch", "-o", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "14 of 14 inputs decode like the numpy model"
    import torch

    assert torch.load(out)["W_E"].shape[1] == 19  # the d-wide transformer
    report = tmp_path / "r.html"
    assert cli.main(["report", str(path), "--input", "1,2", "-o", str(report)]) == 2
    error = capsys.readouterr().err
    assert error == (
        f"tracr: error: {path} holds a compressed model; tracr report draws compiled models "
        "(tracr show describes a compressed one)\n"
    )
    assert not report.exists()


def test_running_a_compressed_model_that_decodes_wrongly_says_so(tmp_path, capsys):
    """W = 0 reads nothing back: every position decodes as None (numbers 0), not as the
    compiled model does; the output is printed, the difference told, the status 1."""
    model = helpers.reverse()
    cm = compress.CompressedModel(model, np.zeros((3, len(model.residual_labels))))
    path = tmp_path / "broken.safetensors"
    compress.save(cm, path)
    assert cli.main(["run", str(path), "1", "2", "2"]) == 1
    captured = capsys.readouterr()
    assert captured.out.split() != ["2", "2", "1"]
    assert captured.err == (
        "(compressed to d = 3 of 21: 3 of 3 positions differ from the compiled model, which "
        "decodes: 2 2 1)\n"
    )
