"""Predictions of a trained model on files: images, point files or meshes.

Classification gives the top-5 classes with probabilities; segmentation writes a coloured PLY, a PNG render with a
legend and an interactive HTML view next to the input (or into ``out_dir``).  Point clouds are resampled to the run's
``data.num_points`` and brought to the frame the datasets use (centred, inside the unit sphere); a model that takes
normals gets them estimated for files that hold only xyz.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from dlparts.errors import ConfigError, DataError, DataNotFoundError

@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]] = field(default_factory=list)  # (class, probability), best first
    outputs: list[str] = field(default_factory=list)  # files written (segmentations)
    counts: dict[str, int] = field(default_factory=dict)  # points per predicted label (segmentations)
    notes: list[str] = field(default_factory=list)  # what was done to the input (normals estimated)


class Cloud(NamedTuple):
    points: np.ndarray  # float32 [num_points, channels]
    note: str | None  # how the input was completed (normals it lacked), or None


#: Neighbours per point for the normals of files that hold only xyz (:func:`dlparts.data.normals.estimate_normals`).
NORMAL_NEIGHBOURS = 16


def read_cloud(path: Path, num_points: int, channels: int, seed: int = 0) -> Cloud:
    """``num_points`` points of ``channels`` from a mesh or point file, centred and inside the unit sphere.

    3 channels are xyz, 6 are xyz + normals (:func:`dlparts.data.clouds.load_points`: a mesh's normals are its faces');
    a file that holds only xyz gets normals estimated from each point's nearest neighbours, and the note says so.
    Other counts (S3DIS blocks' 9) are read as the first ``channels`` columns of a text or ``.npy`` table, prepared the
    way the dataset was.
    """
    from dlparts.data.clouds import load_points
    from dlparts.data.points import read_table

    if channels in (3, 6):
        try:
            return Cloud(load_points(path, num_points, normals=channels == 6, seed=seed).numpy(), None)
        except DataError:
            if channels == 3:
                raise
            xyz = load_points(path, num_points, seed=seed)  # the file's own error again when xyz fails too
        from dlparts.data.normals import estimate_normals

        note = f"normals estimated from the {NORMAL_NEIGHBOURS} nearest neighbours of each point (the file has none)"
        return Cloud(torch.cat([xyz, estimate_normals(xyz, NORMAL_NEIGHBOURS)], dim=1).numpy(), note)
    table = np.load(path) if path.suffix.lower() == ".npy" else read_table(path)
    if table.ndim != 2 or table.shape[1] < channels:
        raise DataError(f"{path}: points have shape {list(table.shape)}; the model needs [N, {channels}]")
    idx = np.random.default_rng(seed).choice(len(table), num_points, replace=len(table) < num_points)
    return Cloud(table[idx, :channels].astype(np.float32), None)  # [num_points, channels]


def read_image(path: Path, mean: torch.Tensor, image_size: int, crop: int) -> torch.Tensor:
    """``float32 [3, crop, crop]``: the run's test-time pipeline (preprocess to ``image_size``, subtract ``mean``
    (``[3, S, S]`` image or ``[3]`` colour), centre crop)."""
    from dlparts.data.images import CenterCrop, Compose, SubtractMean, ToFloat, load_rgb, preprocess

    pipeline = Compose([ToFloat(), SubtractMean(mean), CenterCrop(crop)])
    return pipeline(preprocess(load_rgb(path), image_size))


def _top5(logits: torch.Tensor, classes: list[str]) -> list[tuple[str, float]]:
    probs = logits.softmax(dim=-1)
    values, idx = probs.topk(min(5, len(classes)))
    return [(classes[int(i)], float(v)) for v, i in zip(values, idx)]


def write_ply(path: Path, xyz: np.ndarray, labels: np.ndarray) -> Path:
    """ASCII PLY of ``xyz [N, 3]`` with a colour per label (the palette of :func:`dlparts.viz.label_colors`)."""
    from dlparts.viz import label_colors

    rgb = (label_colors(labels) * 255).round().astype(int)  # [N, 3]
    header = ["ply", "format ascii 1.0", f"element vertex {len(xyz)}", "property float x", "property float y",
              "property float z", "property uchar red", "property uchar green", "property uchar blue",
              "property int label", "end_header"]
    rows = [f"{x:.6f} {y:.6f} {z:.6f} {r} {g} {b} {lab}" for (x, y, z), (r, g, b), lab in zip(xyz, rgb, labels)]
    path.write_text("\n".join(header + rows) + "\n")
    return path


@torch.no_grad()
def predict_file(module, path: str | Path, *, category: str | None = None, out_dir: str | Path | None = None,
                 seed: int = 0) -> Prediction:
    """One file through the model; see the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path} does not exist")
    info, cfg = module.info, module.cfg
    if info["task"] == "image_cls":
        from dlparts.train.export import image_mean

        image = read_image(path, image_mean(module), info["image_size"], info["input_spec"][-1])  # [3, crop, crop]
        logits = module.model(image[None])[0]  # [K]
        return Prediction(str(path), top=_top5(logits, info["classes"]))
    points, note = read_cloud(path, cfg["data"]["num_points"], info["input_spec"][-1], seed)
    notes = [note] if note else []
    batch = {"points": torch.from_numpy(points)[None]}  # [1, N, C]
    if info["task"] == "point_cls":
        return Prediction(str(path), top=_top5(module(batch)[0], info["classes"]), notes=notes)
    if info["task"] == "point_partseg":
        batch["category"] = torch.tensor([_category_index(info, category, path)])
        labels = module.predict_parts(module(batch), batch["category"])[0]  # [N]
    else:
        labels = module(batch)[0].argmax(dim=-1)  # [N]
    result = _write_segmentation(path, points, labels.numpy(), info["classes"], out_dir)
    result.notes = notes
    return result


def _category_index(info: dict, category: str | None, path: Path) -> int:
    names = info["categories"]
    if category is None:
        raise ConfigError(f"{path}: part segmentation needs --category, one of {', '.join(names)}")
    lowered = [n.lower() for n in names]
    if category.lower() not in lowered:
        raise ConfigError(f"--category {category!r} is not one of {', '.join(names)}")
    return lowered.index(category.lower())


def _write_segmentation(path: Path, points: np.ndarray, labels: np.ndarray, classes: list[str],
                        out_dir: str | Path | None) -> Prediction:
    """``<stem>.seg.ply``, a PNG render (at least 800 px, a legend of the labels) and the interactive
    ``<stem>.seg.html`` beside it."""
    from dlparts.viz import plot_point_clouds, write_cloud_html

    folder = Path(out_dir) if out_dir else path.parent
    folder.mkdir(parents=True, exist_ok=True)
    title = f"{path.name}: predicted labels"
    ply = write_ply(folder / f"{path.stem}.seg.ply", points[:, :3], labels)
    png = plot_point_clouds([(points[:, :3], labels, title)], folder / f"{path.stem}.seg.png", names=classes,
                            panel=10.0)
    html = write_cloud_html(points[:, :3], labels, folder / f"{path.stem}.seg.html", names=classes, title=title)
    values, counts = np.unique(labels, return_counts=True)
    return Prediction(str(path), outputs=[str(ply), str(png), str(html)],
                      counts={classes[int(v)]: int(c) for v, c in zip(values, counts)})


class Deployed(NamedTuple):
    """An ONNX file written by ``dlparts export``: its onnxruntime session and its metadata (task, classes, ...)."""

    session: object
    meta: dict


def load_onnx(path: str | Path) -> Deployed:
    """The ONNX file at ``path`` on onnxruntime's CPU provider, with the ``metadata_props`` that
    :func:`dlparts.train.export.metadata` wrote (task, classes; a point model's num_points and channels, an image
    model's image_size, crop and mean)."""
    import onnxruntime

    if not Path(path).is_file():
        raise DataNotFoundError(f"ONNX file {path} does not exist")
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors (InvalidProtobuf, Fail, ...) share no base class but Exception
        raise DataError(f"{path}: not an ONNX model onnxruntime can load ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    meta = session.get_modelmeta().custom_metadata_map
    needs = {"image_cls": "mean", "point_cls": "num_points", "point_partseg": "num_points",
             "point_semseg": "num_points"}
    if needs.get(meta.get("task")) not in meta:
        raise ConfigError(f"{path}: predict --onnx takes files written by dlparts export (task "
                          f"{meta.get('task')!r}, no {needs.get(meta.get('task'), 'task')!r} in its metadata)")
    return Deployed(session, meta)


def predict_file_onnx(deployed: Deployed, path: str | Path, *, category: str | None = None,
                      out_dir: str | Path | None = None, seed: int = 0) -> Prediction:
    """:func:`predict_file` through onnxruntime: the same points, the same outputs as the checkpoint exported."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path} does not exist")
    meta = deployed.meta
    classes = json.loads(meta["classes"])
    if meta["task"] == "image_cls":
        from dlparts.train.export import decode_mean

        image = read_image(path, decode_mean(meta), int(meta["image_size"]), int(meta["crop"]))  # [3, crop, crop]
        logits = torch.from_numpy(deployed.session.run(None, {"images": image[None].numpy()})[0][0])  # [K]
        return Prediction(str(path), top=_top5(logits, classes))
    points, note = read_cloud(path, int(meta["num_points"]), int(meta["channels"]), seed)
    notes = [note] if note else []
    feed = {"points": points[None]}  # [1, N, C]
    if meta["task"] == "point_partseg":
        info = {"categories": json.loads(meta["categories"])}
        feed["category"] = np.array([_category_index(info, category, path)], dtype=np.int64)
    logits = torch.from_numpy(deployed.session.run(None, feed)[0][0])  # [K] or [N, K]
    if meta["task"] == "point_cls":
        return Prediction(str(path), top=_top5(logits, classes), notes=notes)
    if meta["task"] == "point_partseg":
        from dlparts.train.metrics import category_part_mask

        mask = category_part_mask(json.loads(meta["parts_of_category"]), logits.shape[-1])  # [categories, parts]
        logits = logits.masked_fill(~mask[int(feed["category"][0])], float("-inf"))  # as the module's predict_parts
    result = _write_segmentation(path, points, logits.argmax(dim=-1).numpy(), classes, out_dir)
    result.notes = notes
    return result
