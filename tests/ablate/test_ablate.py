"""``dlparts ablate``: the verdict rule on hand-made numbers, every experiment's machinery at the tiny size (configs,
models, measurements, table, JSON, figures) and one experiment end to end through the engine.  No paper effect is
asserted: at these sizes the numbers are noise."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from dlparts.ablate import EXPERIMENTS, Stat, effect, run_experiment, stat, table, verdict
from dlparts.ablate import runner
from dlparts.ablate.experiments import keep
from dlparts.errors import ConfigError


# ------------------------------------------------------------------------------------------------ the verdict rule
def test_stat_is_mean_and_sample_std():
    s = stat([1.0, 2.0, 3.0])
    assert (s.mean, s.std, s.n) == (2.0, 1.0, 3)
    assert stat([5.0]).std is None and stat([5.0]).text() == "5.0 +- n/a"


def test_effect_and_its_standard_error():
    e = effect(Stat(10.0, 2.0, 4), Stat(13.0, 4.0, 4))  # se = sqrt(4/4 + 16/4) = sqrt(5)
    assert e.diff == 3.0 and e.se == pytest.approx(math.sqrt(5))
    single = effect(Stat(3.0, 2.0, 4))  # one setting's own value: se = 2 / sqrt(4)
    assert (single.diff, single.se) == (3.0, 1.0)
    assert effect(Stat(1.0, None, 1), Stat(2.0, 0.5, 3)).se is None
    assert effect(Stat(3.0, None, 1)).se is None


@pytest.mark.parametrize("diff, se, sign, expected", [
    (3.0, 1.0, 1, "agrees"), (-3.0, 1.0, 1, "disagrees"), (-3.0, 1.0, -1, "agrees"), (3.0, 1.0, -1, "disagrees"),
    (1.9, 1.0, 1, "inconclusive"), (2.0, 1.0, 1, "inconclusive"), (2.1, 1.0, 1, "agrees"),
    (0.0, 0.0, 1, "inconclusive"), (0.5, 0.0, -1, "disagrees"), (5.0, None, 1, "inconclusive"),
])
def test_direction_rule_is_twice_the_standard_error(diff, se, sign, expected):
    assert verdict(runner.stats.Effect(diff, se), sign=sign) == expected


@pytest.mark.parametrize("diff, se, expected", [
    (1.0, 1.0, "agrees"), (1.8, 1.0, "agrees"), (2.0, 1.0, "inconclusive"), (6.0, 1.0, "disagrees"),
    (5.8, 1.0, "inconclusive"), (1.0, None, "inconclusive"),
])
def test_bound_rule(diff, se, expected):
    assert verdict(runner.stats.Effect(diff, se), bound=3.8) == expected


def test_verdict_needs_exactly_one_kind_of_claim():
    with pytest.raises(ValueError):
        verdict(runner.stats.Effect(1.0, 0.1))
    with pytest.raises(ValueError):
        verdict(runner.stats.Effect(1.0, 0.1), sign=1, bound=2.0)


def test_keep_leaves_that_many_distinct_points_of_the_cloud():
    points = torch.arange(2 * 16 * 3, dtype=torch.float32).reshape(2, 16, 3)
    thinned = keep(points, 4, torch.Generator().manual_seed(0))
    assert thinned.shape == points.shape
    for b in range(2):
        rows = {tuple(r) for r in thinned[b].tolist()}
        assert len(rows) == 4 and rows <= {tuple(r) for r in points[b].tolist()}
    far = keep(points, 2, torch.Generator(), furthest=True)
    assert {tuple(r) for r in far[0].tolist()} == {tuple(points[0, 0].tolist()), tuple(points[0, 15].tolist())}


# ----------------------------------------------------------------------------- each experiment at the tiny size
def _untrained_run(experiment, setting, seed, size, folder):
    """What ``fit_one`` returns, without the training: the run's config, splits and model, made-up curves."""
    from dlparts.train.data import build_splits
    from dlparts.train.modules import build_module

    cfg = runner.run_config(experiment, setting, seed, size, folder)
    splits = build_splits(cfg)
    module = build_module(cfg, splits.info).eval()
    recorder = runner.Recorder()
    recorder.datamodule = SimpleNamespace(splits=splits)
    recorder.rows = [{"epoch": e + 1, "train_error": 80.0 - 30 * e - seed, "seconds": 1.0 + e} for e in range(3)]
    result = {"run_dir": str(folder / "x"), "fit_seconds": 0.5, "test": {"acc": 0.25 + 0.1 * seed}}
    return runner.Run(setting, seed, result, module, recorder, cfg)


@pytest.fixture
def tiny_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DLPARTS_CACHE", str(tmp_path_factory.getbasetemp() / "ablate-cache"))


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_experiment_machinery(name, tmp_path, monkeypatch, tiny_cache, one_thread):
    monkeypatch.setattr(runner, "fit_one", _untrained_run)
    results = run_experiment(EXPERIMENTS[name], size="tiny", out=tmp_path, seeds=1)  # two: test_relu_vs_tanh_...
    folder = tmp_path / name
    assert results["folder"] == str(folder)
    text = (folder / "results.json").read_text()
    saved = json.loads(text, parse_constant=lambda name: pytest.fail(f"results.json holds {name}: not strict JSON"))
    assert saved["experiment"] == name and saved["seeds"] == 1 and saved["verdict"] == "inconclusive"  # no std
    assert saved["effect"]["se"] is None and all(s["stat"]["std"] is None for s in saved["settings"])
    assert [s["label"] for s in saved["settings"]] == [s.label for s in EXPERIMENTS[name].settings]
    for s in saved["settings"]:
        assert len(s["runs"]) == 1 and s["stat"]["n"] == 1 and math.isfinite(s["runs"][0]["value"])
    assert saved["figures"] and all((folder / p.rsplit("/", 1)[1]).stat().st_size > 1000 for p in saved["figures"])
    header, rows, lines = table(saved)
    assert header[1] == EXPERIMENTS[name].metric and len(rows) == len(EXPERIMENTS[name].settings)
    assert all(len(row) == len(header) for row in rows)
    assert EXPERIMENTS[name].claim.source in lines[0] and saved["verdict"].upper() in lines[2]
    assert all(row[1].endswith("+- n/a") for row in rows) and "(standard error n/a)" in lines[1]


def test_two_towers_reports_parameters_and_macs(tmp_path, monkeypatch, tiny_cache, one_thread):
    monkeypatch.setattr(runner, "fit_one", _untrained_run)
    saved = run_experiment(EXPERIMENTS["two-towers"], size="tiny", out=tmp_path, seeds=1)
    two, one = (s["notes"] for s in saved["settings"])
    assert two["params"] == 1_109_194 and one["params"] < two["params"] and one["macs"] < two["macs"]


def test_relu_vs_tanh_counts_epochs_to_the_threshold(tmp_path, monkeypatch, tiny_cache, one_thread):
    monkeypatch.setattr(runner, "fit_one", _untrained_run)
    saved = run_experiment(EXPERIMENTS["relu-vs-tanh"], size="tiny", out=tmp_path)
    runs = saved["settings"][0]["runs"]  # errors 80, 50, 20 (seed 0) and 79, 49, 19: 25% is reached at epoch 3
    assert [r["value"] for r in runs] == [3.0, 3.0] and [r["seconds"] for r in runs] == [3.0, 3.0]
    assert saved["effect"] == {"diff": 0.0, "se": 0.0} and saved["verdict"] == "inconclusive"


def test_folder_is_never_reused_and_sizes_are_checked(tmp_path, monkeypatch, tiny_cache, one_thread):
    monkeypatch.setattr(runner, "fit_one", _untrained_run)
    run_experiment(EXPERIMENTS["lrn"], size="tiny", out=tmp_path, seeds=1)
    again = run_experiment(EXPERIMENTS["lrn"], size="tiny", out=tmp_path, seeds=1)
    assert again["folder"] == str(tmp_path / "lrn-2")
    with pytest.raises(ConfigError, match="size='huge'"):
        run_experiment(EXPERIMENTS["lrn"], size="huge", out=tmp_path)
    with pytest.raises(ConfigError, match="--seeds 0"):
        run_experiment(EXPERIMENTS["lrn"], size="tiny", out=tmp_path, seeds=0)


def test_density_trains_at_1024_points_and_thins_to_128(tmp_path):
    from dlparts.ablate.experiments import DENSITY

    experiment = EXPERIMENTS["density"]
    for size in ("default", "quick"):
        for setting in experiment.settings:
            cfg = runner.run_config(experiment, setting, 0, size, tmp_path)
            assert cfg["data"]["num_points"] == 1024  # PointNet++ Fig. 4's input, not the recipe's 512
    assert [1024 // d for d in DENSITY] == [1024, 512, 256, 128]
    assert runner.run_config(EXPERIMENTS["transforms"], experiment.settings[0], 0, "default",
                             tmp_path)["data"]["num_points"] == 512


# ------------------------------------------------------------------------------------------------ end to end
def test_one_run_through_the_engine(tmp_path, tiny_cache, one_thread):
    """The real ``fit_one`` (the other tests replace it): the engine trains, the recorder keeps the training error of
    each epoch, and the experiment measures the run."""
    experiment = EXPERIMENTS["relu-vs-tanh"]
    run = runner.fit_one(experiment, experiment.settings[1], 0, "tiny", tmp_path)
    assert run.cfg["model"]["args"]["activation"] == "tanh" and run.cfg["trainer"]["max_epochs"] == 1
    assert any(isinstance(m, torch.nn.Tanh) for m in run.module.modules())
    (row,) = run.recorder.rows
    assert row["epoch"] == 1 and 0.0 <= row["train_error"] <= 100.0 and row["seconds"] > 0
    measured = experiment.measure(run)
    assert measured["curve"] == [[1, row["train_error"]]] and measured["value"] in (1.0, 2.0)
    assert (tmp_path / "tanh-seed0" / "results.json").exists()


def test_cli_lists_and_refuses(capsys):
    from dlparts.cli import main

    assert main(["ablate", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in EXPERIMENTS) and "Sec. 3.1" in listed
    assert main(["ablate", "no-such"]) == 2
    assert "experiment 'no-such' is not one of relu-vs-tanh" in capsys.readouterr().err
    assert main(["ablate"]) == 2
    with pytest.raises(SystemExit):
        main(["ablate", "--help"])
    assert "examples:" in capsys.readouterr().out
