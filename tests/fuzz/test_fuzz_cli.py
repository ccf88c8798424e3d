"""A table of command-line mistakes: each ends in one line naming the argument, file or value at fault and exit code
2; an unexpected exception is one line saying it is a bug (exit 1), with the traceback only under ``--debug``."""

import re

import pytest

from dlparts import cli
from dlparts.cli import main

FIT = ["fit", "--config", "pointnet2_cls_ssg_cpu"]


@pytest.mark.parametrize("argv, message", [
    (FIT + ["trainer.accelerator=bogus"], "trainer.accelerator='bogus' must be one of auto, cpu"),
    (FIT + ["trainer.devices=abc"], "trainer.devices='abc' must be auto, a count"),
    (FIT + ["trainer.devices=0"], "trainer.devices=0 must be auto"),
    (FIT + ["trainer.devices=[0, -1]"], "trainer.devices=\\[0, -1\\] must be auto"),
    (FIT + ["trainer.limit_train_batches=-1"], "trainer.limit_train_batches=-1 must be in \\[0, inf\\)"),
    (FIT + ["trainer.limit_val_batches=1.5"], "a fraction must be at most 1.0"),
    (FIT + ["optim.weight_decay=-1"], "optim.weight_decay=-1 must be in \\[0, inf\\)"),
    (FIT + ["loss.label_smoothing=2"], "loss.label_smoothing=2 must be in \\[0, 1\\)"),
    (FIT + ["optim.momentum=1"], "optim.momentum=1 must be in \\[0, 1\\)"),
    (FIT + ["optim.lr=.nan"], "optim.lr=nan must be a finite number"),
    (FIT + ["optim.lr=-.inf"], "optim.lr=-inf must be a finite number"),
    (FIT + ["optim.betas=[0.9]"], "optim.betas=\\[0.9\\] must be a list of 2 numbers"),
    (FIT + ["optim.betas=[0.9, 1.5]"], "optim.betas=1.5 must be in \\[0, 1\\)"),
    (FIT + ["eval.vote_scale=[0, 1]"], "eval.vote_scale=0 must be in \\(0, inf\\)"),
    (FIT + ["data.val_fraction=1"], "data.val_fraction=1 must be in \\[0, 1\\)"),
    (FIT + ["sched.gamma=0"], "sched.gamma=0 must be in \\(0, inf\\)"),
    (FIT + ["sched.factor=1"], "sched.factor=1 must be in \\(0, 1\\)"),
    (FIT + ["bn_momentum.decay=0"], "bn_momentum.decay=0 must be in \\(0, 1\\]"),
    (FIT + ["data.workers=-2"], "data.workers=-2 must be in \\[0, inf\\)"),
    (FIT + ["seed=-1"], "seed=-1 must be in \\[0, 4294967295\\]"),
    (FIT + ["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps=0 must be in \\[1, inf\\)"),
    (["test", "--ckpt", "{tmp}"], "is a folder, not a checkpoint file"),
    (["test", "--ckpt", "{tmp}/junk.ckpt"], "junk.ckpt cannot be read"),
    (["sample", "{tmp}/junk.ckpt", "-n", "16", "-o", "{tmp}/out"], "junk.ckpt"),
    (["sample", "{tmp}/cloud.npz", "-n", "16", "-o", "{tmp}/out"], "cloud.npz: this is a single .npy array"),
    (["sample", "{tmp}/dir.xyz", "-n", "16", "-o", "{tmp}/out"], "dir.xyz: is a folder, not a file"),
    (["sample", "{tmp}/big.xyz", "-n", "16", "-o", "{tmp}/out"], "big.xyz: point 0 .* beyond the float32 range"),
    (["sample", "{tmp}/big.xyz", "-n", "16", "-o", "{tmp}/junk.ckpt"], "--out .*junk.ckpt is a file, not a folder"),
    (["sample", "{tmp}/big.xyz", "-n", "16", "-o", "{tmp}/junk.ckpt/out"], "junk.ckpt is a file, not a folder"),
    (["predict", "--ckpt", "{tmp}/junk.ckpt", "{tmp}/big.xyz", "--out", "{tmp}/junk.ckpt"],
     "--out .*junk.ckpt is a file, not a folder"),
    (["fit", "--config", "{tmp}/latin1.yaml"],
     "config file .*latin1.yaml is not UTF-8 text \\(byte 0xe9 at offset 18\\)"),
    (["conv", "--input", "55x55x3", "--stack-file", "{tmp}/latin1.yaml"], "stack file .*latin1.yaml is not UTF-8"),
    (["conv", "--input", "55x55x3", "--stack-file", "{tmp}"], "stack file .* is a folder, not a file"),
    (["conv", "--input", "55x55x3", "--stack", "conv(3, k=2.5)"], "kernel 2.5 must be a whole number"),
    (["conv", "--input", "55x55x3", "--stack", "conv(3, k=nan)"], "kernel nan must be a whole number"),
    (FIT + ["model.args.bogus=1"], "model.args.bogus: model 'pointnet2_cls_ssg' takes no argument 'bogus'"),
    (FIT + ["run.dir={tmp}/junk.ckpt"], "run.dir .*junk.ckpt is a file, not a folder"),
    (["predict", "--onnx", "{tmp}/junk.ckpt", "{tmp}/big.xyz"], "junk.ckpt: not an ONNX model onnxruntime can load"),
])
def test_a_mistake_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "junk.ckpt").write_bytes(b"\x00\x01junk")
    (tmp_path / "cloud.npz").write_bytes(b"\x93NUMPY\x01\x00" + bytes(100))
    (tmp_path / "dir.xyz").mkdir()
    (tmp_path / "big.xyz").write_text("1e39 0 0\n0 1 0\n0 0 1\n")
    (tmp_path / "latin1.yaml").write_bytes("model:\n  name: caf\u00e9\n".encode("latin-1"))
    code = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"dlparts {argv[0]}: error: ")
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_unexpected_exception_is_one_line_saying_it_is_a_bug(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("something inside\nbroke")

    parser = cli.build_parser()
    runners = parser.get_default("_runners")
    monkeypatch.setattr(cli, "build_parser", lambda: _with_runner(parser, {**runners, "models": broken}))
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == ("dlparts models: internal error (a bug in dlparts, please report it): RuntimeError: "
                           "something inside broke; run 'dlparts --debug models ...' for the traceback")
    with pytest.raises(RuntimeError, match="something inside"):
        main(["--debug", "models"])


def _with_runner(parser, runners):
    parser.set_defaults(_runners=runners)
    return parser


def test_summary_of_a_factory_needing_arguments_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "factories_for_summary.py").write_text(
        "import torch\n"
        "def needs(width):\n    return torch.nn.Linear(width, 2)\n"
        "def broken():\n    raise ValueError('no weights here')\n"
        "NOT_CALLABLE = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for attr, message in [("needs", r"needs\(\) needs arguments \(width\)"),
                          ("broken", r"broken\(\) raised ValueError: no weights here"),
                          ("NOT_CALLABLE", "NOT_CALLABLE is a int, not a callable")]:
        assert main(["summary", f"factories_for_summary:{attr}"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and re.search(message, err), err


@pytest.mark.parametrize("batch", [0, -3, 10**9, True, 1.5])
def test_export_batch_out_of_range_is_refused_first(tmp_path, batch):
    from dlparts.errors import ConfigError
    from dlparts.train.export import export

    with pytest.raises(ConfigError, match=r"--batch .* must be an integer in \[1, 1024\]"):
        export(None, tmp_path / "m.onnx", "onnx", batch)  # refused before the module is looked at


def test_export_output_that_is_a_folder_or_under_a_file_is_refused(tmp_path):
    import torch

    from dlparts.errors import ConfigError
    from dlparts.train.export import export_model

    (tmp_path / "file.txt").write_text("x")
    model, checks = torch.nn.Linear(3, 2), [{"x": torch.ones(1, 3)}]
    with pytest.raises(ConfigError, match="is a folder; give a file, e.g. .*model.onnx"):
        export_model(model, tmp_path, "onnx", checks)
    with pytest.raises(ConfigError, match="--output .*file.txt is a file, not a folder"):
        export_model(model, tmp_path / "file.txt" / "m.onnx", "onnx", checks)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]
