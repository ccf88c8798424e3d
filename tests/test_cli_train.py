"""dlparts fit / test / predict / export / demo from the command line (in process, tiny sizes)."""

import json

import numpy as np
import pytest

from dlparts.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["model.name=pointnet_cls_vanilla", "data.name=synthetic_shapes", "data.args.tiny=true",
        "data.num_points=128", "data.batch_size=8", "trainer.max_epochs=1", "trainer.progress=false",
        "trainer.accelerator=cpu", "trainer.devices=1", "plots.enabled=false", "trainer.limit_train_batches=3"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    assert main(["fit", *TINY, f"run.dir={folder}", "run.name=tiny"]) == 0
    return folder / "tiny"


def test_fit_writes_the_run_folder(run, capsys):
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "checkpoints", "logs", "tb", "results.json"}
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}
    result = json.loads((run / "results.json").read_text())
    assert result["model"] == "pointnet_cls_vanilla" and 0 <= result["test"]["acc"] <= 1
    assert (run / "logs" / "metrics.csv").read_text().startswith("epoch")
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())


def test_fit_refuses_an_existing_run_without_resume(run, capsys):
    assert main(["fit", *TINY, f"run.dir={run.parent}", "run.name=tiny"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds a run; continue it with --resume" in err


@pytest.mark.parametrize("argv, message", [
    (["fit", *TINY, "optim.lrr=1"], "unknown key 'optim.lrr'; did you mean optim.lr"),
    (["fit", *TINY, "trainer.max_epochs=x"], "trainer.max_epochs='x' must be int"),
    (["fit", *TINY, "model.name=pointnet_cls_v"], "unknown model 'pointnet_cls_v'; did you mean"),
    (["fit", *TINY, "model.name=pointnet_semseg"], "'pointnet_semseg' is a point_semseg model but data.name="),
    (["fit", "--config", "no/such.yaml"], "config file no/such.yaml does not exist"),
    (["fit", "--config", "no_such_recipe"], "no_such_recipe does not exist and is not a recipe name (one of "),
    (["fit", "data.name=synthetic_shapes"], "model.name is not set; give it in the config or as model.name=NAME"),
    (["test", "--ckpt", "no/such.ckpt"], "checkpoint no/such.ckpt does not exist"),
])
def test_user_mistakes_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert main([*argv, f"run.dir={tmp_path}"] if argv[0] == "fit" and "--config" not in argv else argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not any(tmp_path.iterdir())  # nothing was trained or written


def test_checkpoint_of_another_model_is_refused(run, capsys):
    assert main(["test", "--ckpt", str(run / "checkpoints" / "best.ckpt"), "model.name=pointnet_cls"]) == 2
    assert "holds weights of another model than 'pointnet_cls'" in capsys.readouterr().err


def test_test_command_reproduces_the_fit_metrics(run, capsys):
    assert main(["test", "--ckpt", str(run / "checkpoints" / "best.ckpt")]) == 0
    out = capsys.readouterr().out
    acc = json.loads((run / "results.json").read_text())["test"]["acc"]
    assert f"top-1 {100 * acc:.1f}%" in out


def test_test_command_writes_beside_the_fit_and_says_which_checkpoint(run, capsys):
    from dlparts.train import engine
    from dlparts.train.report import checkpoint_line, result_rows

    fit_results = (run / "results.json").read_text()
    result = engine.test(run / "checkpoints" / "last.ckpt", ["plots.enabled=true", "plots.examples=2"])
    assert (result["ckpt_kind"], result["data"], result["epochs"]) == ("last", "synthetic_shapes", 1)
    assert json.loads((run / "test-last.json").read_text())["test"] == result["test"]
    assert (run / "results.json").read_text() == fit_results  # the fit's results stay
    assert result["plots"] and all(p.startswith(str(run / "plots" / "test-last")) for p in result["plots"])
    model, data, epochs, best, test, seconds = result_rows([result])[0]
    assert (data, epochs) == ("synthetic_shapes", "1") and best.endswith("(epoch 1)") and seconds.endswith(" s")
    assert checkpoint_line(result).endswith("last.ckpt: the last epoch's)")


def test_default_run_names_do_not_collide_and_progress_is_told(tmp_path, capsys):
    quick = [*TINY, "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", f"run.dir={tmp_path}"]
    assert main(["fit", *quick]) == 0
    assert main(["fit", *quick, "trainer.progress=true"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pointnet_cls_vanilla-synthetic_shapes",
                                                         "pointnet_cls_vanilla-synthetic_shapes-2"]
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("dlparts: ")]
    assert [line.split(" ")[1] for line in lines] == ["preparing", "data", "training;", "first"]


def test_a_time_cap_that_ended_the_fit_is_said_in_the_table():
    from dlparts.train.report import result_rows

    result = {"task": "point_cls", "model": "m", "data": "d", "epochs": 3, "max_epochs": 8, "time_cap": 100,
              "test": {"acc": 0.5}, "fit_seconds": 101.0}
    assert result_rows([result])[0][2] == "3 of 8 (time cap 100 s)"
    assert result_rows([{**result, "epochs": 8, "time_cap": None}])[0][2] == "8"


def test_predict_prints_top5_for_a_point_file(run, tmp_path, capsys):
    cloud = tmp_path / "ball.xyz"
    xyz = np.random.default_rng(0).normal(size=(300, 3))
    np.savetxt(cloud, xyz / np.linalg.norm(xyz, axis=1, keepdims=True))
    assert main(["predict", "--ckpt", str(run / "checkpoints" / "best.ckpt"), str(cloud)]) == 0
    line = capsys.readouterr().out.strip()
    probs = [float(part.rsplit(" ", 1)[1].rstrip("%")) for part in line.split(": ", 1)[1].split(", ")]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True) and sum(probs) <= 100.01


def test_predict_json_over_a_folder_reports_a_bad_file_and_goes_on(run, tmp_path, capsys):
    (tmp_path / "shapes" / "sub").mkdir(parents=True)
    for k in range(3):
        np.savetxt(tmp_path / "shapes" / "sub" / f"c{k}.xyz", np.random.default_rng(k).normal(size=(200, 3)))
    (tmp_path / "shapes" / "broken.off").write_text("OFF\n3 1 0\n0 0 0\n")
    (tmp_path / "shapes" / "notes.md").write_text("not a cloud")  # not a point file: never read
    ckpt = str(run / "checkpoints" / "best.ckpt")
    assert main(["predict", "--ckpt", ckpt, str(tmp_path / "shapes"), "--format", "json"]) == 2
    out, err = capsys.readouterr()
    rows = json.loads(out)
    assert [r["path"] for r in rows] == [str(tmp_path / "shapes" / "sub" / f"c{k}.xyz") for k in range(3)]
    assert all(len(r["top"]) == 5 and r["top"][0][1] >= r["top"][-1][1] for r in rows)
    assert err.splitlines()[-1] == f"dlparts predict: 1 of 4 files failed: {tmp_path / 'shapes' / 'broken.off'}"
    assert main(["predict", "--ckpt", ckpt, str(tmp_path / "shapes" / "sub"), "--format", "json", "--out",
                 str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "predictions.json").read_text())[0]["top"] == rows[0]["top"]


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("torchscript", ".pt")])
def test_export_checks_the_file_against_pytorch(run, tmp_path, capsys, fmt, suffix):
    out = tmp_path / f"model{suffix}"
    assert main(["export", "--ckpt", str(run / "checkpoints" / "best.ckpt"), "--format", fmt, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    diff = float(text.rsplit("PyTorch", 1)[1].split()[0])
    assert out.stat().st_size > 0 and diff < 1e-4


def test_help_carries_examples(capsys):
    for command in ("fit", "test", "predict", "export", "demo"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "examples:" in capsys.readouterr().out


def test_demo_runs_the_shipped_cpu_recipes():
    from pathlib import Path

    from dlparts.train.config import load_config
    from dlparts.train.demo import OVERRIDES, PRESETS, SHOWS, TIME_CAPS, demo_notes, preset_config

    configs = Path(__file__).resolve().parents[1] / "configs"  # the repository's link to the package data
    for name, recipe in PRESETS.items():
        assert preset_config(name) == load_config(configs / f"{recipe}.yaml", OVERRIDES.get(name, [])), name
    assert set(SHOWS) == set(TIME_CAPS) == set(PRESETS)
    # PointNet runs PointNet++'s recipe with only the model changed
    pointnet, pointnet2 = preset_config("pointnet"), preset_config("pointnet2")
    assert pointnet["model"]["name"] == "pointnet_cls" and pointnet2["model"]["name"] == "pointnet2_cls_ssg"
    assert {k: v for k, v in pointnet.items() if k != "model"} == {k: v for k, v in pointnet2.items() if k != "model"}
    notes = demo_notes([{"part": "pointnet2", "test": {"acc": 0.9}}, {"part": "pointnet", "test": {"acc": 0.85}}])
    assert notes[:2] == [f"pointnet2: {SHOWS['pointnet2']}", f"pointnet: {SHOWS['pointnet']}"]
    assert notes[2].endswith("+5.0 points test top-1")
    # one source per recipe: alexnet_small's 15 epochs (README's demo figures) live in its YAML alone
    assert preset_config("alexnet_small")["trainer"]["max_epochs"] == 15
    assert preset_config("pointnet2", ["trainer.max_time=5"])["trainer"]["max_time"] == 5
