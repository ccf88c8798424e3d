"""The table and the figures of an experiment's results (the dict :func:`dlparts.ablate.runner.summarize` returns).

Figures follow the paper they test: AlexNet's figure 1 (training error rate per epoch, solid ReLU, dashed tanh),
PointNet's figure 6 (accuracy against the missing-data ratio, random and furthest sampling) with figure 7's critical
points, PointNet++'s figure 4 (accuracy against the number of test points); the papers' table rows become bars
(mean over seeds, one dot per seed, the error bar one standard deviation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlparts.ablate.stats import Stat
from dlparts.viz import _pyplot, _save, plot_critical_points

_STYLES = ("-", "--", "-.", ":")


def table(results: dict) -> tuple[list[str], list[list[str]], list[str]]:
    """``(header, rows, lines)``: one row per setting (the metric as mean +- std over seeds, then the experiment's
    columns and notes) and the lines under it: the claim, the measured effect, the verdict and its rule."""
    notes = sorted({k for s in results["settings"] for k in s["notes"]})
    header = ["setting", results["metric"], *(title for _, title in results["columns"]), *notes]
    rows = []
    for s in results["settings"]:
        cols = [Stat(**s["columns"][key]).text() for key, _ in results["columns"]]
        rows.append([s["label"], Stat(**s["stat"]).text(), *cols, *(f"{s['notes'][k]:,}" for k in notes)])
    c, e = results["claim"], results["effect"]
    what = f"{c['b']} - {c['a']}" if c["b"] is not None else c["a"]
    se = "n/a" if e["se"] is None else f"{e['se']:.2f}"
    lines = [f"paper ({c['source']}): {c['text']}; the paper's effect: {c['paper_effect']}",
             f"measured effect ({what}, {results['metric']}): {e['diff']:+.2f} (standard error {se}) over "
             f"{results['seeds']} seed(s), size {results['size']}",
             f"verdict: {results['verdict'].upper()} (rule: {results['rule']})"]
    return header, rows, lines


def _title(results: dict) -> str:
    return f"{results['title']}\n{results['claim']['source']}: {results['verdict']}"


def _bar_axes(ax, results: dict, key: str | None, offset: float = 0.0, width: float = 0.6, label=None) -> None:
    """Bars of ``key`` (None: the metric) per setting, error bar one std, one dot per seed."""
    for i, s in enumerate(results["settings"]):
        st = s["stat"] if key is None else s["columns"][key]
        std = st["std"] or 0.0
        ax.bar(i + offset, st["mean"], width, yerr=std, capsize=4, color=f"C{int(offset > 0)}",
               alpha=0.7, label=label if i == 0 else None)
        values = [r["value" if key is None else key] for r in s["runs"]]
        ax.plot([i + offset] * len(values), values, "k.", markersize=5)
    ax.set_xticks(range(len(results["settings"])), [s["label"] for s in results["settings"]])


def bars(results: dict, folder: Path) -> list[Path]:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    _bar_axes(ax, results, None)
    ax.set_ylabel(results["metric"])
    ax.set_title(_title(results), fontsize=9)
    return [_save(fig, folder / "figure.png")]


def train_test_bars(results: dict, folder: Path) -> list[Path]:
    """Training and test accuracy side by side per setting (the gap is what section 4.2 is about)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    _bar_axes(ax, results, "train_acc", -0.2, 0.4, "train (eval mode)")
    _bar_axes(ax, results, "test_acc", 0.2, 0.4, "test")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8)
    ax.set_title(_title(results), fontsize=9)
    return [_save(fig, folder / "figure.png")]


def _mean_curve(curves: list[list[list[float]]]) -> tuple[np.ndarray, np.ndarray]:
    """The pointwise mean of curves ``[[x, y], ...]`` over seeds, to the length of the shortest."""
    n = min(len(c) for c in curves)
    arr = np.array([c[:n] for c in curves], dtype=float)  # [seeds, n, 2]
    return arr[0, :, 0], arr[:, :, 1].mean(axis=0)


def epoch_curves(results: dict, folder: Path) -> list[Path]:
    """AlexNet figure 1: training error rate against epochs, one line style per setting, thin lines per seed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for i, s in enumerate(results["settings"]):
        style = _STYLES[i % len(_STYLES)]
        for r in s["runs"]:
            xy = np.array(r["curve"], dtype=float)
            ax.plot(xy[:, 0], xy[:, 1] / 100, style, color="k", alpha=0.2, linewidth=0.8)
        x, y = _mean_curve([r["curve"] for r in s["runs"]])
        ax.plot(x, y / 100, style, color="k", label=s["label"])
    ax.axhline(results["settings"][0]["runs"][0]["threshold"] / 100, color="0.5", linewidth=0.8)
    ax.set_xlabel("Epochs")
    ax.set_ylabel("Training error rate")
    ax.legend(fontsize=8)
    ax.set_title(_title(results), fontsize=9)
    return [_save(fig, folder / "figure.png")]


def missing_curves(results: dict, folder: Path) -> list[Path]:
    """PointNet figure 6 (left): accuracy against the missing-data ratio; and figure 7's critical points of the
    first test cloud (first seed)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    runs = results["settings"][0]["runs"]
    for i, how in enumerate(("furthest", "random")):
        x, y = _mean_curve([r["curves"][how] for r in runs])
        ax.plot(x, y, _STYLES[i], marker="o", label=f"{how} input sampling")
    ax.set_xlabel("Missing data ratio")
    ax.set_ylabel("Accuracy (%)")
    ax.legend(fontsize=8)
    ax.set_title(_title(results), fontsize=9)
    first = runs[0]
    critical = plot_critical_points([(np.array(first["cloud"]), np.array(first["critical"], dtype=np.int64),
                                      "first test cloud")], folder / "critical_points.png",
                                    title="PointNet Sec. 4.3 / Fig. 7: critical point set (seed 0)")
    return [_save(fig, folder / "figure.png"), critical]


def density_curves(results: dict, folder: Path) -> list[Path]:
    """PointNet++ figure 4 (right): accuracy against the number of points in each test cloud, one line per setting."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for i, s in enumerate(results["settings"]):
        x, y = _mean_curve([r["curve"] for r in s["runs"]])
        ax.plot(x, y, _STYLES[i % len(_STYLES)], marker="o", label=s["label"])
    ax.set_xscale("log", base=2)
    ax.invert_xaxis()
    ax.set_xlabel("Number of points")
    ax.set_ylabel("Accuracy (%)")
    ax.legend(fontsize=8)
    ax.set_title(_title(results), fontsize=9)
    return [_save(fig, folder / "figure.png")]
