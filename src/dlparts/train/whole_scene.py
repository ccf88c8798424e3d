"""Every point of a scene labelled: the whole-scene protocol of PointNet++ (Qi et al., NeurIPS 2017) on S3DIS.

The scene is cut into blocks of the training ``block_size`` with overlap (``stride``, default half a block), each
block sampled to ``num_points`` and prepared exactly as training prepared it (:func:`dlparts.data.s3dis.room_blocks`
and :func:`~dlparts.data.s3dis.block_features`, the code :func:`~dlparts.data.s3dis.room_to_blocks` runs).  A
sampled point's class probabilities are averaged over every block (and every one of ``votes`` passes) that sampled
it; a point no block sampled takes the probabilities of its nearest sampled neighbour (:func:`dlparts.ops.knn`).

Memory: blocks go through the model ``batch_size`` at a time, and the probabilities are kept for the sampled points
only (their number depends on the scene's floor area, not on how many points the scanner took); the arrays that
grow with the scene are its own coordinates, colours and the labels returned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch

from dlparts.data.s3dis import block_features, room_blocks, room_extent
from dlparts.errors import ConfigError
from dlparts.layers.fold import fold_batch_norm

#: Scene points searched for their nearest sampled neighbour at a time (bounds the kNN's own memory).
KNN_CHUNK = 1 << 19


class SceneLabels(NamedTuple):
    """``labels int64 [N]`` for every point of a scene; how many distinct points blocks ``sampled``; ``blocks``
    run through the model (over all votes)."""

    labels: np.ndarray
    sampled: int
    blocks: int


def _sampled_blocks(xyz: np.ndarray, rgb: np.ndarray | None, rng: np.random.Generator, num_points: int,
                    block_size: float, stride: float, votes: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(pick int64 [num_points], features float32 [num_points, C])`` of every block of every vote."""
    low, extent = room_extent(xyz)
    for _ in range(votes):
        for origin, inside in room_blocks(xyz, low, block_size, stride):
            pick = rng.choice(inside, num_points, replace=len(inside) < num_points)
            yield pick, block_features(xyz, rgb, pick, origin, block_size, low, extent)


def label_scene(scores: Callable[[np.ndarray], np.ndarray], xyz: np.ndarray, rgb: np.ndarray | None, *,
                num_points: int, block_size: float = 1.0, stride: float | None = None, votes: int = 1,
                batch_size: int = 16, seed: int = 0) -> SceneLabels:
    """Label every point of the scene ``xyz float32 [N, 3]`` (``rgb uint8 [N, 3]`` or None for 6-channel models).

    ``scores(features float32 [B, num_points, C]) -> float32 [B, num_points, K]`` class probabilities of a batch of
    blocks (:func:`module_scores`).  See the module docstring for the protocol.
    """
    stride = block_size / 2 if stride is None else stride
    if votes < 1 or batch_size < 1 or stride <= 0 or block_size <= 0:
        raise ConfigError(f"whole-scene labelling needs votes >= 1, batch_size >= 1, block_size > 0 and stride > 0; "
                          f"got {votes}, {batch_size}, {block_size}, {stride}")
    picks, probs, batch, blocks = [], [], [], 0
    rng = np.random.default_rng(seed)
    for item in _sampled_blocks(xyz, rgb, rng, num_points, block_size, stride, votes):
        batch.append(item)
        if len(batch) == batch_size:
            blocks += _run(scores, batch, picks, probs)
    blocks += _run(scores, batch, picks, probs)
    samples, rows = np.concatenate(picks), np.concatenate(probs)  # [S], [S, K]
    picks.clear()  # each array below is freed once used: none is held beside the scene's labels
    probs.clear()
    index, sums = _sum_by_point(samples, rows)  # [U], [U, K]
    del samples, rows
    best = sums.argmax(axis=1)  # [U]: the mean's argmax (every sample of a point has weight 1)
    del sums
    labels = np.full(len(xyz), -1, np.int64)
    labels[index] = best  # a sampled point keeps its own scores even where another point has its coordinates
    ref = torch.from_numpy(np.ascontiguousarray(xyz[index]))[None]  # [1, U, 3]
    for lo in range(0, len(xyz), KNN_CHUNK):
        rest = lo + np.flatnonzero(labels[lo:lo + KNN_CHUNK] < 0)  # the chunk's unsampled points: only they search
        if len(rest):
            labels[rest] = best[_nearest(xyz[rest], ref)]
    return SceneLabels(labels, len(index), blocks)


def _sum_by_point(picks: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(index [U], sums float32 [U, K])``: the distinct points of ``picks int64 [S]`` (sorted) and the sum of their
    rows of ``probs [S, K]``, added one sample at a time in the order of ``picks``, so bit for bit what ``np.add.at``
    gives, several times faster (a point is sampled a handful of times: one vectorized add per occurrence)."""
    order = np.argsort(picks, kind="stable")  # [S]: the samples of a point stay in their order
    ordered, rows = picks[order], probs[order]  # [S], [S, K]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # [U]
    counts = np.diff(np.r_[starts, len(ordered)])  # [U]
    sums = rows[starts].copy()  # [U, K]
    for r in range(1, int(counts.max(initial=1))):
        more = counts > r  # [U]: the points sampled more than r times
        sums[more] += rows[starts[more] + r]
    return ordered[starts], sums


def _run(scores, batch: list, picks: list, probs: list) -> int:
    """Score the blocks of ``batch`` (then empty it), adding their picks and probabilities to the lists."""
    if not batch:
        return 0
    features = np.stack([f for _, f in batch])  # [B, num_points, C]
    picks.extend(p for p, _ in batch)
    probs.extend(np.asarray(scores(features), dtype=np.float32))  # B arrays [num_points, K]
    done = len(batch)
    batch.clear()
    return done


def _nearest(query: np.ndarray, ref: torch.Tensor) -> np.ndarray:
    """Index into ``ref [1, U, 3]`` of the nearest point of each ``query [n, 3]``, ``int64 [n]``."""
    from dlparts.ops import knn

    return knn(torch.from_numpy(np.ascontiguousarray(query))[None], ref, 1).idx[0, :, 0].numpy()  # [n]


#: Inference ``precision`` (:func:`precision_autocast`): float32 (the default, what training ran in) or bfloat16.
PRECISIONS = ("fp32", "bf16")


def precision_autocast(device: torch.device | str, precision: str) -> torch.autocast:
    """The context to run a model in at ``precision``: ``"bf16"`` is bfloat16 autocast on ``device`` (matrix
    products on the CPU's AMX/AVX-512 bf16 units where it has them; other CPUs run it too, without that gain),
    ``"fp32"`` a disabled autocast.  Its labels can differ from float32's where two classes score nearly alike
    (``benchmarks/scenes.py`` reports the agreement)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")


def module_scores(model: Callable[[torch.Tensor], torch.Tensor], device: torch.device | str = "cpu", *,
                  precision: str = "fp32"):
    """``scores`` for :func:`label_scene` from a semantic segmentation model (``[B, n, C] -> [B, n, K]`` logits):
    softmax probabilities, computed without gradients on ``device`` at ``precision`` (:func:`precision_autocast`)."""
    autocast, device = precision_autocast(device, precision), torch.device(device)  # refused before any block

    @torch.inference_mode()
    def scores(features: np.ndarray) -> np.ndarray:
        with autocast:
            logits = model(torch.from_numpy(features).to(device))  # [B, n, K]
        return logits.float().softmax(dim=-1).cpu().numpy()

    return scores


def confusion(labels: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """``int64 [K, K]`` confusion matrix of a scene (rows truth, columns prediction)."""
    return np.bincount(truth * num_classes + labels, minlength=num_classes * num_classes).reshape(num_classes,
                                                                                                  num_classes)


def confusion_figures(confmat: np.ndarray, classes: list[str]) -> dict:
    """``{"miou", "oa", "per_class_iou": {class: IoU or None}}`` of a confusion matrix (classes in neither truth
    nor prediction get None and stay out of the mean), :func:`dlparts.train.metrics.iou_from_confmat`."""
    from dlparts.train.metrics import iou_from_confmat

    figures = iou_from_confmat(torch.from_numpy(confmat))
    per_class = {name: (None if np.isnan(v) else float(v)) for name, v in zip(classes, figures.per_class_iou.tolist())}
    return {"miou": float(figures.miou), "oa": float(figures.oa), "per_class_iou": per_class}


#: The datasets whose test split is a set of whole scenes that ``dlparts test`` also scores point by point.
SCENE_DATASETS = ("s3dis", "scene_folder")


def scenes_to_test(cfg: dict) -> Iterator[tuple[str, np.ndarray, np.ndarray | None, np.ndarray]]:
    """``(name, xyz [N, 3], rgb [N, 3] or None, labels [N])`` of every test scene of the run's dataset, at full
    resolution: S3DIS's rooms of ``test_area``, or the test files of a scene folder (the split the run trained on)."""
    d = cfg["data"]
    if d["name"] == "s3dis":
        from dlparts.data.s3dis import area_rooms

        area = d["args"].get("test_area", 5)
        for k, r in enumerate(area_rooms(d["root"], area)):
            yield f"Area_{area} room {k}", r.xyz, r.rgb, r.labels
        return
    from dlparts.data.scene_folder import UNREADABLE, read_classes, read_scene, scene_files

    classes = read_classes(Path(d["root"]), d["classes"])
    for path in scene_files(d["root"], "test", test_fraction=d["test_fraction"], seed=cfg["seed"]):
        try:
            scene = read_scene(path, classes, label_field=d["label_field"], columns=d["columns"],
                               drop_nonfinite=d["drop_nonfinite"])
        except UNREADABLE:  # reported and counted when the test split was built
            continue
        yield str(path), scene.xyz, scene.rgb, scene.labels


def evaluate_scenes(module, cfg: dict, *, stride: float | None = None, votes: int = 1,
                    precision: str = "fp32") -> dict:
    """mIoU, OA and per-class IoU over every point of every test scene (:func:`label_scene` on each, the model at
    ``precision``), with the number of ``scenes`` and ``points`` and the ``protocol`` in words."""
    classes, channels = module.info["classes"], module.info["input_spec"][-1]
    num_points, block = cfg["data"]["num_points"], float(cfg["data"]["args"].get("block_size", 1.0))
    stride = block / 2 if stride is None else stride
    device = next(module.parameters()).device
    scores = module_scores(fold_batch_norm(module.model), device, precision=precision)
    confmat = np.zeros((len(classes), len(classes)), np.int64)
    scenes = points = 0
    for _, xyz, rgb, labels in scenes_to_test(cfg):
        done = label_scene(scores, xyz, rgb if channels == 9 else None, num_points=num_points, block_size=block,
                           stride=stride, votes=votes, seed=cfg["seed"])
        confmat += confusion(done.labels, labels, len(classes))
        scenes, points = scenes + 1, points + len(xyz)
    protocol = (f"every point of {scenes} test scenes ({points} points): {block:g} m blocks of {num_points} points "
                f"every {stride:g} m, {votes} vote(s), unsampled points from their nearest sampled neighbour"
                + ("" if precision == "fp32" else f", {precision}"))
    return {**confusion_figures(confmat, classes), "scenes": scenes, "points": points, "protocol": protocol}
