"""Plots and renders written as PNG files (matplotlib, headless): training curves, confusion matrices, point clouds
coloured by label, and PointNet's critical points (section 4.3 and figure 7 of the paper: the points whose features
reach the max pool's output).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def label_colors(labels: np.ndarray) -> np.ndarray:
    """RGB in ``[0, 1]`` per label, ``[N, 3]``: a fixed 20-colour cycle, so label ``k`` has the same colour everywhere."""
    palette = _pyplot().get_cmap("tab20").colors
    return np.asarray(palette)[np.asarray(labels) % len(palette)]


def plot_curves(history: Sequence[dict], path: str | Path) -> Path:
    """Training loss and every validation metric per epoch (``history`` rows as kept by the training module)."""
    plt = _pyplot()
    epochs = [row["epoch"] + 1 for row in history]
    metric_names = sorted({k for row in history for k in row if k not in ("epoch", "train_loss", "lr")})
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    for name in metric_names:
        ax_metric.plot(epochs, [row.get(name, np.nan) for row in history], marker="o", label=f"val {name}")
    ax_metric.set_xlabel("epoch")
    ax_metric.set_ylim(0, 1.02)
    ax_metric.legend(fontsize=8)
    fig.suptitle("training curves")
    return _save(fig, path)


def plot_confusion(confmat, classes: Sequence[str], path: str | Path, title: str = "confusion matrix") -> Path:
    """Row-normalized confusion matrix (rows truth, columns prediction) with class names; counts in the cells when
    there are at most 20 classes."""
    plt = _pyplot()
    cm = np.asarray(confmat, dtype=np.float64)
    rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(classes)
    side = min(4 + 0.35 * k, 18)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), classes, rotation=90, fontsize=7 if k > 20 else 9)
    ax.set_yticks(range(k), classes, fontsize=7 if k > 20 else 9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rows[i, j] > 0.5 else "black")
    ax.set_title(title)
    return _save(fig, path)


def _scatter3d(ax, xyz: np.ndarray, colors, size: float = 4.0) -> None:
    ax.scatter(xyz[:, 0], xyz[:, 1], xyz[:, 2], c=colors, s=size, depthshade=False, linewidths=0)
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-6)
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_zlim(centre[2] - half, centre[2] + half)
    ax.set_axis_off()


def plot_point_clouds(clouds: Sequence[tuple[np.ndarray, np.ndarray | None, str]], path: str | Path,
                      columns: int = 4) -> Path:
    """A grid of 3-D renders; each item is ``(xyz [N, 3], labels [N] or None, title)``, coloured by label."""
    plt = _pyplot()
    columns = min(columns, len(clouds))
    rows = -(-len(clouds) // columns)
    fig = plt.figure(figsize=(3.2 * columns, 3.2 * rows))
    for i, (xyz, labels, title) in enumerate(clouds):
        ax = fig.add_subplot(rows, columns, i + 1, projection="3d")
        colors = "tab:blue" if labels is None else label_colors(labels)
        _scatter3d(ax, np.asarray(xyz)[:, :3], colors)
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def plot_critical_points(items: Sequence[tuple[np.ndarray, np.ndarray, str]], path: str | Path) -> Path:
    """For each ``(xyz [N, 3], critical_index [M], title)``: the whole cloud in grey beside its critical point set
    in red, as figure 7 of the PointNet paper shows them."""
    plt = _pyplot()
    fig = plt.figure(figsize=(6.4, 3.2 * len(items)))
    for i, (xyz, critical, title) in enumerate(items):
        xyz = np.asarray(xyz)[:, :3]
        ax = fig.add_subplot(len(items), 2, 2 * i + 1, projection="3d")
        _scatter3d(ax, xyz, "0.6")
        ax.set_title(f"{title}: {len(xyz)} points", fontsize=9)
        ax = fig.add_subplot(len(items), 2, 2 * i + 2, projection="3d")
        _scatter3d(ax, xyz[np.unique(critical)], "tab:red", size=8)
        ax.set_title(f"critical points: {len(np.unique(critical))}", fontsize=9)
    return _save(fig, path)
