"""The ``dlparts`` console entry point, run as a user runs it: real subprocesses, exit codes, one-line errors.
Commands that import torch run once that way (a clean stderr from a fresh process), their other cases through the
same ``main`` in this process, which has torch imported already: a fresh process spends seconds importing it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

DLPARTS = str(Path(sys.executable).with_name("dlparts"))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([DLPARTS, *args], capture_output=True, text=True, timeout=120)


def run_here(capsys, *args: str) -> subprocess.CompletedProcess:
    """``dlparts ARGS`` through ``dlparts.cli.main`` in this process: its exit code (argparse's too) and output."""
    from dlparts.cli import main

    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["dlparts", *args], code, out, err)


def test_seed_example_single_layer():
    out = run("conv", "--input", "55x55x3", "--filters", "32", "--kernel", "5", "--padding", "same")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "55x55x32 (HxWxC)" in text
    assert "32 (one per output activation map)" in text
    assert "5x5x3 = 75 weights + 1 bias = 76 scalars" in text
    assert "2,432" in text
    assert "7,260,000 multiply-accumulates" in text and "14,520,000 (= 2 x MACs)" in text
    assert "height 2 before / 2 after" in text


def test_alexnet_paper_stack_json():
    out = run("conv", "--stack", "alexnet-paper", "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["totals"]["params"] == 60_965_224 and data["totals"]["macs"] == 724_406_816
    pool5 = data["layers"][14]
    assert (pool5["receptive_field"], pool5["jump"]) == (195, 32.0)


def test_stack_file(tmp_path):
    spec = tmp_path / "net.yaml"
    spec.write_text("layers:\n  - conv(8, k=3, p=same)\n  - relu\n  - {type: maxpool, kernel: 2}\n  - fc(10)\n")
    out = run("conv", "--input", "3x16x16", "--channels-first", "--stack-file", str(spec), "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["totals"]["params"] == 8 * 28 + 8 * 8 * 8 * 10 + 10


@pytest.mark.parametrize(
    "args, message, here",
    [
        (["conv", "--input", "10x10x3", "--filters", "4", "--kernel", "12"], "larger than the padded input", False),
        (["conv", "--input", "10x10x3", "--filters", "4", "--groups", "2"], "groups 2 must divide", False),
        (["conv", "--input", "10x10x3", "--filters", "4", "--transposed", "--stride", "2", "--output-padding", "2"],
         "output_padding 2 must be smaller than stride 2", False),
        (["conv", "--input", "0x10x3", "--filters", "4"], "non-positive size", False),
        (["conv", "--input", "10x10x3", "--filters", "-1"], "filters -1 must be positive", False),
        (["conv", "--input", "10x10x3", "--stack", "conv(4, k=3"], "unmatched '('", False),
        (["conv", "--input", "10x10x3", "--stack", "conv(4, k=3), fc(0)"], "layer 2 (fc(0))", False),
        (["conv", "--input", "10x10x3"], "--filters is required", False),
        (["conv", "--input", "10x10x3", "--stack-file", "/nonexistent.yaml"], "/nonexistent.yaml does not exist",
         False),
        (["conv", "--input", "10x10x3", "--filters", "4", "--padding", "wide"], "--padding 'wide'", False),
        (["summary", "no_such_model"], "unknown model 'no_such_model'", False),
        (["summary", "torchvision.models:nope", "--input", "3x8x8"], "cannot load 'nope'", True),
        (["summary", "torchvision.models:alexnet", "--input", "3xax8"], "--input '3xax8'", True),
    ],
)
def test_user_errors_are_one_line_exit_2(args, message, here, capsys):
    out = run_here(capsys, *args) if here else run(*args)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert message in lines[0]


def test_predict_help_lists_exactly_what_predict_reads():
    from dlparts.data.meshes import MESH_SUFFIXES
    from dlparts.data.points import POINT_SUFFIXES

    out = run("predict", "--help")
    assert out.returncode == 0, out.stderr
    files = out.stdout[out.stdout.index("Images:"):out.stdout.index("positional arguments")]
    listed = {word.rstrip(".;,)") for word in files.split() if word.startswith(".")}
    assert listed == set(POINT_SUFFIXES) | set(MESH_SUFFIXES)  # no .csv: load_points refuses it


def test_arithmetic_commands_do_not_import_torch():
    code = ("import sys; from dlparts.cli import main; main(['conv', '--stack', 'alexnet-paper', '--format', 'json']); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_summary_torchvision_alexnet_json():
    out = run("summary", "torchvision.models:alexnet", "--input", "3x224x224", "--format", "json")
    assert out.returncode == 0, out.stderr
    totals = json.loads(out.stdout)["totals"]
    assert totals["params"] == 61_100_840 and totals["macs"] == 714_188_480


def test_summary_csv_and_table(capsys):
    out = run_here(capsys, "summary", "torchvision.models:alexnet", "--input", "3x224x224", "--format", "csv")
    assert out.returncode == 0 and out.stdout.splitlines()[-1].startswith("TOTAL,")
    out = run_here(capsys, "summary", "torchvision.models:alexnet", "--input", "3x224x224", "--depth", "0")
    assert out.returncode == 0 and "MACs 714,188,480" in out.stdout.replace("\n", " ")


@pytest.mark.parametrize("command", ["conv", "summary", "models"])
def test_every_command_has_help_with_examples(command):
    out = run(command, "--help")
    assert out.returncode == 0 and "dlparts " + command in out.stdout and "example" in out.stdout.lower()


def test_no_command_prints_help_and_exits_2():
    out = run()
    assert out.returncode == 2 and "conv" in out.stdout


@pytest.mark.parametrize(
    "args, warning",
    [
        (["--input", "1x3x224x224", "--channels-first"],
         "if the leading 1 is a batch, write --input 3x224x224 --batch 1"),
        (["--input", "1x224x224x3"], "if the leading 1 is a batch, write --input 224x224x3 --batch 1"),
        (["--input", "224x224"], "1-D signal of length 224 with 224 channels; for a one-channel image write "
                                 "--input 224x224x1"),
        (["--input", "224x224", "--channels-first"], "for a one-channel image write --input 1x224x224"),
    ],
)
def test_conv_warns_about_likely_misread_inputs(args, warning, capsys):
    from dlparts.cli import main

    assert main(["conv", *args, "--filters", "4", "--kernel", "1"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].split()[:2] == ["input", "volume"]  # the first line says how the input was read
    assert err.count("\n") == 1 and err.startswith("dlparts conv: warning: input ") and warning in err


@pytest.mark.parametrize("text, channels_first", [("55x55x3", False), ("1x224x224", True), ("1024x3", False),
                                                  ("1024x64", False), ("3x224x224", True), ("8x32x32x3", False)])
def test_conv_plain_inputs_do_not_warn(text, channels_first, capsys):
    from dlparts.cli import main

    flags = ["--channels-first"] if channels_first else []
    assert main(["conv", "--input", text, "--filters", "4", "--kernel", "1", *flags]) == 0
    assert capsys.readouterr().err == ""


def test_models_with_no_match_says_so_and_exits_2(capsys):
    from dlparts.cli import main

    assert main(["models", "zzz*"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "dlparts models: error: no model matches 'zzz*'; `dlparts models` lists them all\n"
    assert main(["models", "alexnet*"]) == 0 and "alexnet_paper" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, hint",
    [
        (["fit", "--max_epochs", "1"], "unrecognized arguments: --max_epochs; config keys are set as key=value: "
                                       "trainer.max_epochs=1"),
        (["fit", "--config", "x.yaml", "--max-epochs=3", "--lr", "0.1"], "trainer.max_epochs=3 optim.lr=0.1"),
        (["test", "--ckpt", "a.ckpt", "--votes", "12"], "eval.votes=12"),
        (["fit", "--seed", "3"], "key=value: seed=3"),
    ],
)
def test_argparse_style_config_keys_hint_at_key_value(args, hint, capsys):
    from dlparts.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and err.startswith(f"dlparts {args[0]}: error: ")
    assert hint in err


@pytest.mark.parametrize("args, line", [(["fit", "--bogus", "1"], "dlparts fit: error: unrecognized arguments: --bogus"),
                                        (["--bogus"], "dlparts: error: unrecognized arguments: --bogus")])
def test_unknown_option_that_is_no_config_key_has_no_hint(args, line, capsys):
    from dlparts.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2 and capsys.readouterr().err == line + "\n"


def test_summary_passes_a_batch_first_input_unchanged(monkeypatch, capsys):
    import dlparts.summary
    from dlparts.cli import main
    from dlparts.errors import ShapeError

    seen = []

    def fake(model, shape, **kwargs):
        seen.append((list(shape), kwargs["batch_size"]))
        raise ShapeError("the model does not run on input shape [1, 3, 224, 224]:\nsome\ndetail")

    monkeypatch.setattr(dlparts.summary, "summarize", fake)
    assert main(["summary", "torchvision.models:alexnet", "--input", "1x3x224x224"]) == 2
    assert seen == [([1, 3, 224, 224], 1)]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "[1, 3, 224, 224]: some detail;" in err
    assert err.rstrip().endswith("if 1 is the batch, write --input 3x224x224 --batch 1")


def test_summary_input_no_model_takes_is_one_line_with_the_form_to_use(capsys):
    out = run_here(capsys, "summary", "torchvision.models:alexnet", "--input", "1x3x8x8")
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("if 1 is the batch, write --input 3x8x8 --batch 1")
