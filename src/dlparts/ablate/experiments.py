"""The ten experiments of ``dlparts ablate``: each idea of AlexNet (Krizhevsky et al. 2012), PointNet (Qi et al. 2017)
and PointNet++ (Qi et al. 2017) switched on and off on the embedded data, everything else equal.

AlexNet's six run ``alexnet_small`` (the paper's design narrowed for 40 px crops) on the embedded images with the
``alexnet_small_cpu`` recipe; the point-cloud four run on the embedded shapes with the ``pointnet2_cls_ssg_cpu`` recipe
(PointNet models swap in with ``model.name``).  The default sizes fit 5 minutes per experiment on 2 idle CPU cores,
``quick`` under one; what they measure is reported as it comes out, never tuned towards the paper.
"""

from __future__ import annotations

import torch

from dlparts.ablate import show
from dlparts.ablate.runner import Claim, Experiment, Run, Setting, accuracy

ALEXNET = "Krizhevsky et al. 2012"
POINTNET = "PointNet (Qi et al. 2017)"
POINTNET2 = "PointNet++ (Qi et al. 2017)"

_TINY_IMAGES = ("trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                "trainer.limit_test_batches=1", "data.batch_size=8", "data.eval_batch_size=16",
                "data.args.train_per_class=4", "data.args.val_per_class=2", "data.args.stats_images=20")
IMAGE_SIZES = {
    "default": (("trainer.max_epochs=6",), 3),
    "quick": (("trainer.max_epochs=2", "trainer.limit_train_batches=12", "trainer.limit_val_batches=2"), 2),
    "tiny": (_TINY_IMAGES, 2),
}
_TINY_POINTS = ("trainer.max_epochs=1", "data.args.tiny=true", "data.num_points=128", "data.batch_size=8",
                "data.eval_batch_size=16", "trainer.limit_train_batches=2")
POINT_SIZES = {
    "default": (("trainer.max_epochs=3",), 3),
    "quick": (("trainer.max_epochs=1", "data.args.per_class=[16,4,10]"), 2),
    "tiny": (_TINY_POINTS, 2),
}
#: ``density`` trains at PointNet++ Fig. 4's 1024 points (the recipe's 512 would thin to 64).  At twice the points
#: (MSG's three scales cost twice SSG) one run with 50/20/30 clouds per class and 2 epochs took 62 CPU seconds (SSG)
#: and 133 (MSG), fit and measure, so 12 of them would take 10-13 minutes on 2 idle cores; the default size trains
#: 40/10/20 clouds per class for 2 epochs over 2 seeds: 342 CPU seconds in all (7 min 13 s on a loaded machine).
DENSITY_SIZES = {
    "default": (("data.num_points=1024", "trainer.max_epochs=2", "data.args.per_class=[40,10,20]"), 2),
    "quick": (("data.num_points=1024", "trainer.max_epochs=1", "data.args.per_class=[16,4,10]"), 2),
    "tiny": (_TINY_POINTS, 2),
}

#: The fixed training-error threshold of AlexNet's figure 1.
THRESHOLD = 25.0


def test_error(run: Run) -> dict:
    return {"value": 100.0 * (1.0 - run.result["test"]["acc"])}


def test_accuracy(run: Run) -> dict:
    return {"value": 100.0 * run.result["test"]["acc"]}


def time_to_threshold(run: Run) -> dict:
    """Epochs and seconds until the running training error first reaches :data:`THRESHOLD`; a run that never does
    counts as one epoch (and its last epoch's seconds) past the end, flagged ``reached: 0``."""
    rows = run.recorder.rows
    hit = next((r for r in rows if r["train_error"] <= THRESHOLD), None)
    epochs = hit["epoch"] if hit else len(rows) + 1
    seconds = hit["seconds"] if hit else rows[-1]["seconds"]
    return {"value": float(epochs), "seconds": seconds, "reached": float(hit is not None), "threshold": THRESHOLD,
            "final_train_error": rows[-1]["train_error"], "curve": [[r["epoch"], r["train_error"]] for r in rows]}


def overfitting(run: Run) -> dict:
    """Training accuracy (eval mode, over the training split as served in training) minus test accuracy."""
    train = accuracy(run, run.splits.train)
    test = 100.0 * run.result["test"]["acc"]
    return {"value": train - test, "train_acc": train, "test_acc": test}


def keep(points: torch.Tensor, count: int, generator: torch.Generator, furthest: bool = False) -> torch.Tensor:
    """``[B, N, C]`` clouds with only ``count`` distinct points of each left (chosen at random, or by farthest point
    sampling), the other ``N - count`` slots repeating them: PointNet's max pool sees exactly the thinned cloud, and
    PointNet++'s levels keep the input size they were built for (its random input dropout fills slots the same way)."""
    b, n, _ = points.shape
    if furthest:
        from dlparts.ops import farthest_point_sample

        idx = farthest_point_sample(points[..., :3].contiguous(), count)  # [B, count]
    else:
        idx = torch.rand(b, n, generator=generator).argsort(dim=1)[:, :count]  # [B, count]
    slots = idx[:, torch.arange(n) % count]  # [B, N]
    return torch.gather(points, 1, slots[..., None].expand(-1, -1, points.shape[-1]))  # [B, N, C]


MISSING = (0.0, 0.25, 0.5, 0.75, 0.9)


def missing_points(run: Run) -> dict:
    """Test accuracy as a fraction of each cloud is deleted (random, and keeping the farthest-point sample), the drop
    at half the points deleted at random, and the critical points (Sec. 4.3) of the first test cloud."""
    test = run.splits.test
    n = test[0]["points"].shape[0]
    curves = {}
    for how in ("random", "furthest"):
        curves[how] = [[r, accuracy(run, test, lambda x, g: keep(x, max(1, round(n * (1 - r))), g, how == "furthest"))]
                       for r in MISSING]
    full, half = curves["random"][0][1], curves["random"][MISSING.index(0.5)][1]
    cloud = test[0]["points"][None]  # [1, N, C]
    critical, _ = run.module.model.critical_points(cloud)
    return {"value": full - half, "full_acc": full, "curves": curves, "critical_count": int(len(critical[0])),
            "cloud": cloud[0, :, :3].tolist(), "critical": critical[0].tolist()}


DENSITY = (1, 2, 4, 8)


def density(run: Run) -> dict:
    """Test accuracy with each cloud thinned to N, N/2, N/4 and N/8 random points: 1024 -> 128 as in PointNet++
    Fig. 4 (:data:`DENSITY_SIZES` trains at N = 1024)."""
    test = run.splits.test
    n = test[0]["points"].shape[0]
    curve = [[n // d, accuracy(run, test, lambda x, g, k=n // d: keep(x, k, g))] for d in DENSITY]
    return {"value": curve[-1][1], "full_acc": curve[0][1], "curve": curve}


def tower_costs(settings) -> dict:
    """Parameters and MACs of one 40 px image for each setting of ``two-towers`` (``dlparts.summary``)."""
    from dlparts.models import create_model
    from dlparts.summary import summarize

    out = {}
    for s in settings:
        towers = int(next(o for o in s.overrides if o.startswith("model.args.towers=")).split("=")[1])
        summary = summarize(create_model("alexnet_small", towers=towers), (3, 40, 40), device="meta")
        out[s.label] = {"params": summary.total_params, "macs": summary.macs}
    return out


def _alexnet(name, title, settings, metric, claim, measure=test_error, figure=show.bars, **kw) -> Experiment:
    return Experiment(name, title, "alexnet_small_cpu", settings, metric, claim, IMAGE_SIZES, measure, figure, **kw)


def _points(name, title, settings, metric, claim, measure=test_accuracy, figure=show.bars, sizes=POINT_SIZES,
            **kw) -> Experiment:
    return Experiment(name, title, "pointnet2_cls_ssg_cpu", settings, metric, claim, sizes, measure, figure, **kw)


_POINTNET = ("model.name=pointnet_cls", "model.variant=null")
_MSG = ("model.name=pointnet2_cls_msg", "model.variant={levels: [[128, [0.1, 0.2, 0.4], [8, 16, 32], [[16, 16, 32], "
        "[32, 32, 64], [32, 48, 64]]], [32, [0.2, 0.4, 0.8], [16, 32, 64], [[32, 32, 64], [64, 64, 128], [64, 64, "
        "128]]], [null, [], [], [[128, 256, 512]]]], head: [256, 128]}")
_DP = ("data.transforms=[{rotate_up: {normals: true}}, scale, shift, jitter, dropout]",)
ERROR = "test top-1 error (%)"
ACC = "test accuracy (%)"

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    _alexnet("relu-vs-tanh", "ReLU vs tanh: epochs to 25% training error",
             (Setting("ReLU", ("model.args.activation=relu",)), Setting("tanh", ("model.args.activation=tanh",))),
             "epochs to 25% training error",
             Claim(f"{ALEXNET} Sec. 3.1, Fig. 1", "ReLUs reach 25% training error about 6x sooner than tanh units",
                   "6x fewer epochs", a=1, b=0, sign=-1),
             measure=time_to_threshold, figure=show.epoch_curves,
             columns=(("seconds", "seconds to 25%"), ("final_train_error", "last training error (%)"))),
    _alexnet("dropout", "Dropout: the train/test gap with and without",
             (Setting("dropout 0.5", ("model.args.dropout=0.5",)), Setting("no dropout", ("model.args.dropout=0.0",))),
             "train - test accuracy (points)",
             Claim(f"{ALEXNET} Sec. 4.2", "without dropout the network overfits substantially",
                   "a larger train/test gap without dropout", a=1, b=0, sign=-1),
             measure=overfitting, figure=show.train_test_bars,
             columns=(("train_acc", "train accuracy (%)"), ("test_acc", "test accuracy (%)"))),
    _alexnet("overlapping-pooling", "Overlapping pooling: 3x3 stride 2 vs 2x2 stride 2",
             (Setting("3x3 stride 2", ("model.args.pool_kernel=3",)),
              Setting("2x2 stride 2", ("model.args.pool_kernel=2",))),
             ERROR, Claim(f"{ALEXNET} Sec. 3.4", "overlapping pooling lowers top-1 error", "-0.4 points", a=1, b=0,
                          sign=-1)),
    _alexnet("lrn", "Local response normalization on vs off",
             (Setting("LRN", ("model.args.lrn=true",)), Setting("no LRN", ("model.args.lrn=false",))),
             ERROR, Claim(f"{ALEXNET} Sec. 3.3", "response normalization lowers top-1 error", "-1.4 points", a=1, b=0,
                          sign=-1)),
    _alexnet("pca-lighting", "PCA lighting augmentation on vs off",
             (Setting("PCA lighting 0.1", ("data.args.lighting_std=0.1",)),
              Setting("no PCA lighting", ("data.args.lighting_std=0.0",))),
             ERROR, Claim(f"{ALEXNET} Sec. 4.1", "PCA colour augmentation lowers top-1 error", "over -1 point", a=1,
                          b=0, sign=-1)),
    _alexnet("two-towers", "Two towers vs one tower with half the kernels",
             (Setting("two towers", ("model.args.towers=2",)),
              Setting("one tower, half kernels", ("model.args.towers=1",))),
             ERROR, Claim(f"{ALEXNET} Sec. 3.2", "the two-GPU net has lower top-1 error than a one-GPU net with half "
                          "the kernels in each convolutional layer", "-1.7 points", a=1, b=0, sign=-1),
             notes=tower_costs),
    _points("transforms", "PointNet with and without input/feature transforms",
            (Setting("no transforms", (*_POINTNET, "model.args.input_transform=false",
                                       "model.args.feature_transform=false")),
             Setting("input + feature transforms", _POINTNET)),
            ACC, Claim(f"{POINTNET} Table 5", "input and feature transforms with the orthogonality regularizer raise "
                       "accuracy", "+2.1 points (87.1 -> 89.2)", sign=1)),
    _points("missing-points", "PointNet accuracy as input points are deleted",
            (Setting("PointNet", _POINTNET),),
            "accuracy drop at 50% deleted (points)",
            Claim(f"{POINTNET} Sec. 5.2, Fig. 6", "with half the points deleted at random accuracy drops by only "
                  "3.8 points (2.4 with furthest sampling)", "<= 3.8 points", b=None, bound=3.8),
            measure=missing_points, figure=show.missing_curves,
            columns=(("full_acc", "accuracy, all points (%)"), ("critical_count", "critical points"))),
    _points("density", "PointNet++ SSG / MSG, with and without random input dropout, on thinned test clouds",
            (Setting("SSG", ()), Setting("MSG", _MSG), Setting("SSG+DP", _DP), Setting("MSG+DP", (*_MSG, *_DP))),
            "accuracy at N/8 points (%)",
            Claim(f"{POINTNET2} Sec. 4.1, Fig. 4", "MSG with random input dropout stays accurate on sparse clouds "
                  "where SSG without it falls", "MSG+DP above SSG on the sparsest clouds (Fig. 4: 1024 -> 128)",
                  a=0, b=3, sign=1),
            measure=density, figure=show.density_curves, columns=(("full_acc", "accuracy, N points (%)"),),
            sizes=DENSITY_SIZES),
    _points("local-features", "PointNet vs PointNet++ SSG on the same data and budget",
            (Setting("PointNet", _POINTNET), Setting("PointNet++ SSG", ())),
            ACC, Claim(f"{POINTNET2} Sec. 4.1, Table 2", "hierarchical local features beat one global max pool",
                       "+2.7 points on ModelNet40 (89.2 -> 90.7 / 91.9)", sign=1)),
)}
