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
])
def test_a_mistake_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "junk.ckpt").write_bytes(b"\x00\x01junk")
    (tmp_path / "cloud.npz").write_bytes(b"\x93NUMPY\x01\x00" + bytes(100))
    (tmp_path / "dir.xyz").mkdir()
    (tmp_path / "big.xyz").write_text("1e39 0 0\n0 1 0\n0 0 1\n")
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
