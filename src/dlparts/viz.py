"""Plots and renders written as PNG files (matplotlib, headless): training curves, confusion matrices, point clouds
coloured by label with a legend of label names, and PointNet's critical points (section 4.3 and figure 7 of the paper:
the points whose features reach the max pool's output).  :func:`write_cloud_html` writes the interactive view of a
cloud: one self-contained HTML file (its data and a small 2-D canvas renderer inline, nothing fetched), openable
offline in any browser.
"""

from __future__ import annotations

import json
from pathlib import Path
from string import Template
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _figure(**kwargs):
    """A figure outside pyplot (saved by the Agg canvas, nothing to close): ``dlparts predict`` draws one per file, and
    importing pyplot would add its backend set-up to every prediction's start-up."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    if fig.canvas.manager is not None:  # made by pyplot, which keeps it until closed
        _pyplot().close(fig)
    return path


def label_colors(labels: np.ndarray) -> np.ndarray:
    """RGB in ``[0, 1]`` per label, ``[N, 3]``: a fixed 20-colour cycle, so label ``k`` has the same colour everywhere."""
    import matplotlib

    palette = matplotlib.colormaps["tab20"].colors
    return np.asarray(palette)[np.asarray(labels) % len(palette)]


def plot_curves(history: Sequence[dict], path: str | Path, title: str = "training curves",
                labels: dict[str, str] | None = None) -> Path:
    """Training loss and every validation metric per epoch (``history`` rows as kept by the training module), under
    ``title`` (name the model, run and dataset there), metrics named by ``labels`` (key -> label) where it has them;
    epochs are whole numbers on the axes."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] + 1 for row in history]
    metric_names = sorted({k for row in history for k in row if k not in ("epoch", "train_loss", "lr")})
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train loss")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    for name in metric_names:
        ax_metric.plot(epochs, [row.get(name, np.nan) for row in history], marker="o",
                       label=f"val {(labels or {}).get(name, name)}")
    ax_metric.set_ylim(0, 1.02)
    ax_metric.legend(fontsize=8)
    for ax in (ax_loss, ax_metric):
        ax.set_xlabel("epoch")
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)  # a whole epoch in view, even after one
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    fig.suptitle(title)
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
                      columns: int = 4, *, names: Sequence[str] | None = None, title: str | None = None,
                      note: str | None = None, panel: float = 3.2) -> Path:
    """A grid of 3-D renders; each item is ``(xyz [N, 3], labels [N] or None, title)``, coloured by label.

    ``names`` (one per label) adds a legend of the labels shown, name per colour; ``title`` goes above the grid and
    ``note`` below it; ``panel`` is each render's side in inches (at the 110 dpi of the files: 3.2 is 352 px).
    """
    from matplotlib.lines import Line2D

    columns = min(columns, len(clouds))
    rows = -(-len(clouds) // columns)
    fig = _figure(figsize=(panel * columns, panel * rows))
    for i, (xyz, labels, caption) in enumerate(clouds):
        ax = fig.add_subplot(rows, columns, i + 1, projection="3d")
        colors = "tab:blue" if labels is None else label_colors(labels)
        _scatter3d(ax, np.asarray(xyz)[:, :3], colors, size=4.0 * (panel / 3.2) ** 2)
        ax.set_title(caption, fontsize=9 * max(1.0, panel / 4.8))
    if names is not None:
        shown = np.unique(np.concatenate([np.asarray(lab) for _, lab, _ in clouds if lab is not None] or [[]]))
        handles = [Line2D([], [], linestyle="", marker="o", color=label_colors([int(k)])[0], label=names[int(k)])
                   for k in shown.astype(int)]
        size = 9 * max(1.0, panel / 4.8)
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), title="label", fontsize=size,
                   title_fontsize=size)
    if title:
        fig.suptitle(title)
    if note:
        fig.text(0.5, 0.0, note, ha="center", va="top", fontsize=9, wrap=True)
    return _save(fig, path)


def plot_critical_points(items: Sequence[tuple[np.ndarray, np.ndarray, str]], path: str | Path,
                         title: str | None = None) -> Path:
    """For each ``(xyz [N, 3], critical_index [M], caption)``: the whole cloud in grey beside its critical point set
    in red, as figure 7 of the PointNet paper shows them; ``title`` above them all."""
    plt = _pyplot()
    fig = plt.figure(figsize=(6.4, 3.2 * len(items)))
    for i, (xyz, critical, caption) in enumerate(items):
        xyz = np.asarray(xyz)[:, :3]
        ax = fig.add_subplot(len(items), 2, 2 * i + 1, projection="3d")
        _scatter3d(ax, xyz, "0.6")
        ax.set_title(f"{caption}: {len(xyz)} points", fontsize=9)
        ax = fig.add_subplot(len(items), 2, 2 * i + 2, projection="3d")
        _scatter3d(ax, xyz[np.unique(critical)], "tab:red", size=8)
        ax.set_title(f"critical points: {len(np.unique(critical))}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


_HTML = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>$title</title>
<style>
body { font-family: sans-serif; margin: 1em; }
canvas { border: 1px solid #ccc; cursor: grab; touch-action: none; }
.key { display: inline-block; width: 0.9em; height: 0.9em; margin: 0 0.3em 0 1em; vertical-align: middle; }
</style>
</head>
<body>
<h3>$title</h3>
<canvas id="view" width="$size" height="$size"></canvas>
<div id="legend">$legend</div>
<p>$count points. Drag to rotate, scroll to zoom.</p>
<script id="cloud" type="application/json">$data</script>
<script>
"use strict";
const cloud = JSON.parse(document.getElementById("cloud").textContent);
const canvas = document.getElementById("view");
const ctx = canvas.getContext("2d");
let yaw = 0.6, pitch = 0.35, zoom = 1, last = null;

function draw() {
  const cy = Math.cos(yaw), sy = Math.sin(yaw), cp = Math.cos(pitch), sp = Math.sin(pitch);
  const half = canvas.width / 2, scale = 0.9 * half * zoom / cloud.radius;
  const points = cloud.xyz.map(function (p, i) {
    const x = p[0] * cy + p[2] * sy, z = p[2] * cy - p[0] * sy;  // turned about the vertical (y) axis
    const y = p[1] * cp - z * sp, depth = p[1] * sp + z * cp;  // then tilted towards the viewer
    return [half + x * scale, half - y * scale, depth, i];
  });
  points.sort(function (a, b) { return a[2] - b[2]; });  // far points first, near ones painted over them
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (const p of points) {
    ctx.fillStyle = cloud.colors[cloud.labels[p[3]]];
    ctx.fillRect(p[0] - 2, p[1] - 2, 4, 4);
  }
}

canvas.addEventListener("pointerdown", function (e) { last = [e.clientX, e.clientY]; });
canvas.addEventListener("pointerup", function () { last = null; });
canvas.addEventListener("pointermove", function (e) {
  if (last === null) return;
  yaw += 0.01 * (e.clientX - last[0]);
  pitch = Math.max(-1.5, Math.min(1.5, pitch + 0.01 * (e.clientY - last[1])));
  last = [e.clientX, e.clientY];
  draw();
});
canvas.addEventListener("wheel", function (e) {
  e.preventDefault();
  zoom = Math.max(0.2, Math.min(20, zoom * Math.exp(-0.001 * e.deltaY)));
  draw();
});
draw();
</script>
</body>
</html>
""")


def _hex(rgb) -> str:
    return "#" + "".join(f"{round(255 * float(c)):02x}" for c in rgb[:3])


def write_cloud_html(xyz: np.ndarray, labels: np.ndarray | None, path: str | Path, *,
                     names: Sequence[str] | None = None, title: str = "point cloud", size: int = 800) -> Path:
    """An interactive view of ``xyz [N, 3]`` coloured by ``labels [N]`` (the colours of :func:`label_colors`), as one
    self-contained HTML file: the points and a small renderer inline (a 2-D canvas; drag rotates about the vertical
    y axis and tilts, the wheel zooms), a legend naming each label shown (``names``, one per label) with its count.
    Nothing is fetched, so it opens offline."""
    from html import escape

    xyz = np.asarray(xyz, dtype=np.float64)[:, :3]
    labels = np.zeros(len(xyz), dtype=np.int64) if labels is None else np.asarray(labels).astype(np.int64)
    centred = xyz - xyz.mean(axis=0)
    shown, counts = np.unique(labels, return_counts=True)
    colors = {int(k): _hex(c) for k, c in zip(shown, label_colors(shown))}
    data = {"xyz": np.round(centred, 4).tolist(), "labels": labels.tolist(), "colors": colors,
            "radius": max(float(np.linalg.norm(centred, axis=1).max()), 1e-6)}
    legend = "".join(f'<span class="key" style="background:{colors[int(k)]}"></span>'
                     f"{escape(names[int(k)] if names is not None else f'label {int(k)}')} ({int(n)})"
                     for k, n in zip(shown, counts))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # "</" cannot end the inline JSON early: it is written "<\/", which JSON reads back as "</"
    text = _HTML.substitute(title=escape(title), size=int(size), legend=legend, count=len(xyz),
                            data=json.dumps(data, separators=(",", ":")).replace("</", "<\\/"))
    path.write_text(text, encoding="utf-8")
    return path
