"""Predictions of a trained model on files: images, point files or meshes; segmentations label every input point.

Classification gives the top-5 classes with probabilities.  Segmentation writes ``<stem>.seg.ply`` (a binary PLY of
exactly the input's points, in order, coloured per class, with an integer ``label`` property), a PNG render with a
legend and an interactive HTML view next to the input (or into ``out_dir``), and counts the points per class; when the
input carries labels, the overall accuracy and mIoU of the full-resolution prediction too.

- Objects (classification, part segmentation) are resampled to the run's ``data.num_points`` and brought to the
  frame the datasets use (centred, inside the unit sphere); a model that takes normals gets them estimated for files
  that hold only xyz.  Part labels of the sampled cloud are carried to every point of the file by inverse-distance
  3-NN interpolation of the logits (:func:`dlparts.ops.three_interpolate`), as PointNet++'s feature propagation does.
- Scenes (semantic segmentation) are labelled block by block over the whole scene
  (:func:`dlparts.train.whole_scene.label_scene`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

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
    scores: dict[str, float] = field(default_factory=dict)  # "oa", "miou" against the input's own labels


class Cloud(NamedTuple):
    points: np.ndarray  # float32 [num_points, channels]
    note: str | None  # how the input was completed (normals it lacked), or None


class Predictor(NamedTuple):
    """What prediction needs of a model, from a checkpoint (:func:`from_module`) or an ONNX file
    (:func:`from_onnx`): ``logits(points float32 [B, n, C], category int64 [B] or None)`` gives ``[B, K]`` or
    ``[B, n, K]``; ``part_mask [categories, parts]`` restricts part labels to the shape's category."""

    task: str
    classes: list[str]
    num_points: int
    channels: int
    logits: Callable[[np.ndarray, np.ndarray | None], torch.Tensor]
    categories: tuple[str, ...] | list[str] = ()
    part_mask: torch.Tensor | None = None
    data: dict | None = None  # the run's data config (block_size, label_field, columns); None: the defaults


#: Neighbours per point for the normals of files that hold only xyz (:func:`dlparts.data.normals.estimate_normals`).
NORMAL_NEIGHBOURS = 16
#: Points drawn in the PNG and HTML views of a large input (the PLY keeps all of them).
VIEW_POINTS = 50_000


def read_cloud(path: Path, num_points: int, channels: int, seed: int = 0) -> Cloud:
    """``num_points`` points of ``channels`` (3: xyz, 6: xyz + normals) from a mesh or point file, centred and
    inside the unit sphere (:func:`dlparts.data.clouds.load_points`: a mesh's normals are its faces'); a file that
    holds only xyz gets normals estimated from each point's nearest neighbours, and the note says so."""
    from dlparts.data.clouds import load_points

    if channels not in (3, 6):
        raise DataError(f"{path}: an object model takes 3 or 6 channels per point, this one {channels}")
    try:
        return Cloud(load_points(path, num_points, normals=channels == 6, seed=seed).numpy(), None)
    except DataError:
        if channels == 3:
            raise
        xyz = load_points(path, num_points, seed=seed)  # the file's own error again when xyz fails too
    return Cloud(*_with_normals(xyz))


def _with_normals(xyz: torch.Tensor) -> tuple[np.ndarray, str]:
    from dlparts.data.normals import estimate_normals

    note = f"normals estimated from the {NORMAL_NEIGHBOURS} nearest neighbours of each point (the file has none)"
    return torch.cat([xyz, estimate_normals(xyz, NORMAL_NEIGHBOURS)], dim=1).numpy(), note


class WholeObject(NamedTuple):
    """An object file for part segmentation: the model's input ``sample float32 [num_points, C]`` (centred, inside
    the unit sphere), ``xyz float32 [M, 3]`` every point of the file as it has them, ``unit float32 [M, 3]`` the same
    points in the sample's frame, the file's ``labels int64 [M]`` or None, and a note on normals (or None)."""

    sample: np.ndarray
    xyz: np.ndarray
    unit: np.ndarray
    labels: np.ndarray | None
    note: str | None


def read_whole_object(path: Path, num_points: int, channels: int, data: dict, seed: int = 0) -> WholeObject:
    """Every point of a mesh (its vertices) or point file, and a sample of it drawn as
    :func:`dlparts.data.clouds.load_points` draws one (a mesh's surface, else a random subset of the points), both
    moved by the sample's centring and scaling so that the sample's logits can be carried to every point."""
    from dlparts.data.labelled import TABLE_SUFFIXES, read_labelled
    from dlparts.data.meshes import MESH_SUFFIXES, read_mesh, sample_surface
    from dlparts.data.points import read_points

    suffix, gen = path.suffix.lower(), torch.Generator().manual_seed(seed)
    labels, normals, mesh = None, None, None
    if suffix in MESH_SUFFIXES:
        mesh = read_mesh(path)
        xyz = mesh.vertices
        if suffix == ".ply":  # a labelled point PLY keeps its labels
            labels = read_labelled(path, label_field=data.get("label_field"), need_labels=False).labels
    elif suffix in TABLE_SUFFIXES and data.get("columns"):
        cloud = read_labelled(path, columns=data["columns"], need_labels=False)
        xyz, labels = torch.from_numpy(cloud.xyz), cloud.labels
    else:
        found = read_points(path)
        xyz, normals = found.points, found.normals
        labels = None if found.labels is None else found.labels.numpy()
    if mesh is not None and mesh.faces.numel():
        sample, sample_normals, _ = sample_surface(mesh, num_points, generator=gen, name=str(path))
    else:
        m = len(xyz)
        idx = torch.randperm(m, generator=gen)[:num_points] if m >= num_points else torch.cat(
            [torch.randperm(m, generator=gen), torch.randint(m, (num_points - m,), generator=gen)])  # [num_points]
        sample, sample_normals = xyz[idx], None if normals is None else normals[idx]
    centre = sample.double().mean(dim=0)
    radius = float((sample.double() - centre).norm(dim=1).max()) or 1.0
    unit_sample = ((sample.double() - centre) / radius).float()  # [num_points, 3]
    unit = ((xyz.double() - centre) / radius).float().numpy()  # [M, 3]
    note = None
    if channels == 6 and sample_normals is None:
        points, note = _with_normals(unit_sample)
    else:
        points = (unit_sample if channels == 3 else torch.cat([unit_sample, sample_normals.float()], dim=1)).numpy()
    return WholeObject(points, xyz.numpy(), unit, labels, note)


def expand_inputs(paths: list[str], task: str) -> list[Path]:
    """The files named by ``paths``: files as given, folders searched recursively (sorted) for the files ``task``
    reads (images, or point files, meshes and labelled scenes), leaving out the ``*.seg.*`` outputs of earlier runs."""
    from dlparts.data.labelled import LABELLED_SUFFIXES
    from dlparts.data.meshes import MESH_SUFFIXES
    from dlparts.data.points import POINT_SUFFIXES

    if task == "image_cls":
        from PIL import Image

        suffixes = set(Image.registered_extensions())
    else:
        suffixes = set(POINT_SUFFIXES + MESH_SUFFIXES + LABELLED_SUFFIXES)
    found: list[Path] = []
    for name in map(Path, paths):
        if name.is_dir():
            found += sorted(p for p in name.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
                            and ".seg." not in p.name)
        else:
            found.append(name)
    return found


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


def from_module(module, precision: str = "fp32") -> Predictor:
    """The :class:`Predictor` of a loaded checkpoint's module; its model runs with batch norm folded into the
    layers before it (:func:`dlparts.layers.fold.fold_batch_norm`: the same logits up to float rounding), at
    ``precision`` (:func:`dlparts.train.whole_scene.precision_autocast`)."""
    from dlparts.layers.fold import fold_batch_norm
    from dlparts.train.inference import task_forward
    from dlparts.train.whole_scene import precision_autocast

    info, cfg = module.info, module.cfg
    model = fold_batch_norm(module.model)
    autocast = precision_autocast(next(model.parameters()).device, precision)

    @torch.inference_mode()
    def logits(points: np.ndarray, category: np.ndarray | None) -> torch.Tensor:
        batch = {"points": torch.from_numpy(points)}
        if category is not None:
            batch["category"] = torch.from_numpy(category)
        with autocast:
            return task_forward(model, info["task"], batch).float()

    mask = getattr(module, "part_mask", None)
    data = {**cfg["data"], **cfg["data"].get("args", {})}
    return Predictor(info["task"], info["classes"], cfg["data"]["num_points"], info["input_spec"][-1], logits,
                     info.get("categories", []), mask, data)


def from_onnx(deployed) -> Predictor:
    """The :class:`Predictor` of an ONNX file written by ``dlparts export`` (:func:`load_onnx`)."""
    meta = deployed.meta

    def logits(points: np.ndarray, category: np.ndarray | None) -> torch.Tensor:
        feed = {"points": points} if category is None else {"points": points, "category": category}
        return torch.from_numpy(deployed.session.run(None, feed)[0])

    mask = None
    if meta["task"] == "point_partseg":
        from dlparts.train.inference import category_part_mask

        classes = json.loads(meta["classes"])
        mask = category_part_mask(json.loads(meta["parts_of_category"]), len(classes))  # [categories, parts]
    return Predictor(meta["task"], json.loads(meta["classes"]), int(meta["num_points"]), int(meta["channels"]),
                     logits, json.loads(meta.get("categories", "[]")), mask, json.loads(meta.get("data", "{}")))


def predict_file(module, path: str | Path, *, category: str | None = None, out_dir: str | Path | None = None,
                 seed: int = 0, stride: float | None = None, votes: int = 1, precision: str = "fp32") -> Prediction:
    """One file through a checkpoint's module at ``precision`` (:func:`from_module`); see the module docstring."""
    path = Path(path)
    if module.info["task"] == "image_cls":
        if not path.is_file():
            raise DataNotFoundError(f"{path} does not exist")
        from dlparts.train.export import image_mean

        info = module.info
        image = read_image(path, image_mean(module), info["image_size"], info["input_spec"][-1])  # [3, crop, crop]
        from dlparts.train.whole_scene import precision_autocast

        with torch.inference_mode(), precision_autocast("cpu", precision):
            logits = module.model(image[None])[0].float()  # [K]
        return Prediction(str(path), top=_top5(logits, module.info["classes"]))
    return predict_points(from_module(module, precision), path, category=category, out_dir=out_dir, seed=seed,
                          stride=stride, votes=votes)


def predict_points(model: Predictor, path: str | Path, *, category: str | None = None,
                   out_dir: str | Path | None = None, seed: int = 0, stride: float | None = None,
                   votes: int = 1) -> Prediction:
    """One point file or mesh through a point model: top-5, every point's part, or every point of a scene."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path} does not exist")
    if model.task == "point_semseg":
        return _predict_scene(model, path, out_dir, seed, stride, votes)
    if model.task == "point_cls":
        cloud = read_cloud(path, model.num_points, model.channels, seed)
        return Prediction(str(path), top=_top5(model.logits(cloud.points[None], None)[0], model.classes),
                          notes=[cloud.note] if cloud.note else [])
    cat = _category_index(model.categories, category, path)
    whole = read_whole_object(path, model.num_points, model.channels, model.data or {}, seed)
    logits = model.logits(whole.sample[None], np.array([cat], dtype=np.int64))[0]  # [n, P]
    from dlparts.ops import three_interpolate

    carried = three_interpolate(torch.from_numpy(whole.unit)[None], torch.from_numpy(whole.sample[None, :, :3]),
                                logits.float()[None])[0]  # [M, P]: PointNet++ Eq. 2 (k = 3, p = 2)
    labels = carried.masked_fill(~model.part_mask[cat], float("-inf")).argmax(dim=-1).numpy()  # [M]
    result = _write_segmentation(path, whole.xyz, labels, model.classes, out_dir, whole.labels)
    result.notes = [whole.note] if whole.note else []
    return result


def _predict_scene(model: Predictor, path: Path, out_dir, seed: int, stride: float | None, votes: int) -> Prediction:
    """Every point of a scene file, labelled by :func:`dlparts.train.whole_scene.label_scene`."""
    from dlparts.data.labelled import read_labelled
    from dlparts.train.whole_scene import label_scene

    data = model.data or {}
    scene = read_labelled(path, label_field=data.get("label_field"), columns=data.get("columns"), need_labels=False)
    if model.channels == 9 and scene.rgb is None:
        raise DataError(f"{path}: the model takes colours (9 channels: xyz, rgb, location), and the file has none")

    def scores(features: np.ndarray) -> np.ndarray:
        return model.logits(features, None).float().softmax(dim=-1).numpy()  # [B, n, K]

    done = label_scene(scores, scene.xyz, scene.rgb if model.channels == 9 else None, num_points=model.num_points,
                       block_size=float(data.get("block_size", 1.0)), stride=stride, votes=votes, seed=seed)
    result = _write_segmentation(path, scene.xyz, done.labels, model.classes, out_dir, scene.labels)
    result.notes = [f"{done.blocks} blocks of {model.num_points} points sampled {done.sampled} of the "
                    f"{len(scene.xyz)} points; the others took their nearest sampled neighbour's scores"]
    return result


def _category_index(names: list[str], category: str | None, path: Path) -> int:
    if category is None:
        raise ConfigError(f"{path}: part segmentation needs --category, one of {', '.join(names)}")
    lowered = [n.lower() for n in names]
    if category.lower() not in lowered:
        raise ConfigError(f"--category {category!r} is not one of {', '.join(names)}")
    return lowered.index(category.lower())


def _write_segmentation(path: Path, xyz: np.ndarray, labels: np.ndarray, classes: list[str],
                        out_dir: str | Path | None, truth: np.ndarray | None = None) -> Prediction:
    """``<stem>.seg.ply`` (every point, :func:`dlparts.data.labelled.write_labelled_ply`), a PNG render (at least
    800 px, a legend of the labels) and the interactive ``<stem>.seg.html`` beside it (both of at most
    :data:`VIEW_POINTS` points); with ``truth``, the OA and mIoU of ``labels``."""
    from dlparts.data.labelled import write_labelled_ply
    from dlparts.viz import label_colors, plot_point_clouds, write_cloud_html

    folder = Path(out_dir) if out_dir else path.parent
    folder.mkdir(parents=True, exist_ok=True)
    title = f"{path.name}: predicted labels"
    colours = (label_colors(labels) * 255).round().astype(np.uint8)  # [N, 3]
    ply = write_labelled_ply(folder / f"{path.stem}.seg.ply", xyz, colours, labels)
    shown = np.sort(np.random.default_rng(0).permutation(len(xyz))[:VIEW_POINTS])  # [<= VIEW_POINTS]
    png = plot_point_clouds([(xyz[shown], labels[shown], title)], folder / f"{path.stem}.seg.png", names=classes,
                            panel=10.0)
    html = write_cloud_html(xyz[shown], labels[shown], folder / f"{path.stem}.seg.html", names=classes, title=title)
    values, counts = np.unique(labels, return_counts=True)
    result = Prediction(str(path), outputs=[str(ply), str(png), str(html)],
                        counts={classes[int(v)]: int(c) for v, c in zip(values, counts)})
    if truth is not None and len(truth) and truth.min() >= 0 and truth.max() < len(classes):
        from dlparts.train.whole_scene import confusion, confusion_figures

        figures = confusion_figures(confusion(labels, truth, len(classes)), classes)
        result.scores = {"oa": figures["oa"], "miou": figures["miou"]}
    return result


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
                      out_dir: str | Path | None = None, seed: int = 0, stride: float | None = None,
                      votes: int = 1) -> Prediction:
    """:func:`predict_file` through onnxruntime: the same points, the same outputs as the checkpoint exported."""
    path = Path(path)
    meta = deployed.meta
    if meta["task"] == "image_cls":
        from dlparts.train.export import decode_mean

        if not path.is_file():
            raise DataNotFoundError(f"{path} does not exist")
        image = read_image(path, decode_mean(meta), int(meta["image_size"]), int(meta["crop"]))  # [3, crop, crop]
        logits = torch.from_numpy(deployed.session.run(None, {"images": image[None].numpy()})[0][0])  # [K]
        return Prediction(str(path), top=_top5(logits, json.loads(meta["classes"])))
    return predict_points(from_onnx(deployed), path, category=category, out_dir=out_dir, seed=seed, stride=stride,
                          votes=votes)
