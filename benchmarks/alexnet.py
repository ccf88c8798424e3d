"""AlexNet side by side with torchvision, in one run, printing ratios (issue 3).

1. Training step throughput of ``alexnet`` vs ``torchvision.models.alexnet`` at the same batch (target >= 1.0x).
2. The cost of the paper's LRN and grouping: ``alexnet_paper`` (227 px) vs ``alexnet`` (224 px) step time; and, for
   the LRN alone, ``alexnet_paper`` with our LRN vs the same net with ``torch.nn.LocalResponseNorm``.
3. Input pipeline throughput (images/s, 2 DataLoader workers) on the same JPEG files: our training transform with
   PCA lighting and mean-image subtraction vs torchvision v2 Resize + CenterCrop + RandomCrop + RandomHorizontalFlip
   (target >= 0.9x).

    .venv/bin/python benchmarks/alexnet.py                 # defaults: batch 32, 5 timed steps, 384 JPEGs
    .venv/bin/python benchmarks/alexnet.py --batch 64 --steps 8

Steps are timed alternately (ours, theirs, ours, ...) and the median is kept, so load from other processes hits both
sides alike.  Nothing is downloaded: the JPEGs are generated in a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from dlparts.data.imagefolder import ImageFolderDataset
from dlparts.data.images import build_transform, compute_rgb_stats
from dlparts.layers.lrn import LocalResponseNorm
from dlparts.models import create_model


def _step_fn(model: nn.Module, batch: int, side: int):
    """One SGD training step of ``model`` on a fixed random batch, as a closure."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, side, side, generator=gen)
    y = torch.randint(0, 1000, (batch,), generator=gen)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def time_alternating(fns: dict[str, callable], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, calling them in turn ``repeats`` times after one warm-up each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _torch_lrn(model: nn.Module) -> nn.Module:
    """The same net with ``torch.nn.LocalResponseNorm`` (alpha times n, groups as separate calls) in place of ours."""

    class TorchLRN(nn.Module):
        def __init__(self, ours: LocalResponseNorm):
            super().__init__()
            self.groups = ours.groups
            self.lrn = nn.LocalResponseNorm(ours.size, ours.alpha * ours.size, ours.beta, ours.k)

        def forward(self, x):
            return torch.cat([self.lrn(part) for part in x.chunk(self.groups, 1)], 1)

    for name in ("norm1", "norm2"):
        setattr(model.features, name, TorchLRN(getattr(model.features, name)))
    return model


def bench_models(batch: int, steps: int) -> None:
    torch.manual_seed(0)
    tv = torchvision.models.alexnet(weights=None)
    ours = create_model("alexnet")
    ours.load_state_dict(tv.state_dict())
    paper = create_model("alexnet_paper")
    paper_torch_lrn = _torch_lrn(create_model("alexnet_paper"))
    med = time_alternating({
        "alexnet": _step_fn(ours, batch, 224), "torchvision": _step_fn(tv, batch, 224),
        "alexnet_paper": _step_fn(paper, batch, 227), "paper+torch LRN": _step_fn(paper_torch_lrn, batch, 227),
    }, steps)
    print(f"\n1-2. training step (forward, backward, SGD), batch {batch}, median of {steps}, "
          f"{torch.get_num_threads()} threads")
    for name, seconds in med.items():
        print(f"  {name:18s} {seconds * 1000:8.1f} ms/step  {batch / seconds:7.1f} images/s")
    print(f"  alexnet vs torchvision.models.alexnet throughput: {med['torchvision'] / med['alexnet']:.3f}x "
          "(target >= 1.0)")
    print(f"  alexnet_paper step time / alexnet step time:      {med['alexnet_paper'] / med['alexnet']:.3f}x "
          "(the cost of the paper's LRN, groups, 227 px and wider conv1/conv2)")
    print(f"  our LRN vs torch.nn.LocalResponseNorm in alexnet_paper: step {med['paper+torch LRN'] / med['alexnet_paper']:.3f}x faster")


def _make_jpegs(root: Path, count: int) -> None:
    """``count`` ImageNet-sized JPEGs (500x375 and 375x500, smooth random content) in 4 class folders."""
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / "train" / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        w, h = (500, 375) if i % 3 else (375, 500)
        small = rng.integers(0, 256, (h // 25, w // 25, 3), dtype=np.uint8)
        Image.fromarray(small).resize((w, h), Image.BICUBIC).save(folder / f"{i:05d}.jpg", quality=90)


class _TorchvisionItems(torch.utils.data.Dataset):
    """torchvision's ImageFolder with the v2 pipeline, returning the same dict items as ours."""

    def __init__(self, root: Path, crop: int):
        pipeline = v2.Compose([v2.Resize(256), v2.CenterCrop(256), v2.RandomCrop(crop), v2.RandomHorizontalFlip(),
                               v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])
        self.folder = torchvision.datasets.ImageFolder(str(root / "train"), transform=pipeline)

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i):
        image, label = self.folder[i]
        return {"image": image, "label": torch.tensor(label)}


def _images_per_second(dataset, batch: int, workers: int, epochs: int) -> float:
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=True)
    next(iter(loader))  # start the workers
    start, count = time.perf_counter(), 0
    for _ in range(epochs):
        for b in loader:
            count += len(b["label"])
    return count / (time.perf_counter() - start)


def bench_pipeline(count: int, batch: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _make_jpegs(root, count)
        ours = ImageFolderDataset(root, "train")
        stats = compute_rgb_stats(ours.decode(i) for i in range(0, len(ours), 8))
        ours.transform = build_transform(True, crop=227, stats=stats, mean="image", lighting_std=0.1)
        theirs = _TorchvisionItems(root, 227)
        rates: dict[str, list[float]] = {"ours": [], "torchvision": []}
        for _ in range(2):  # alternate, twice
            rates["ours"].append(_images_per_second(ours, batch, workers, 1))
            rates["torchvision"].append(_images_per_second(theirs, batch, workers, 1))
        best = {k: max(v) for k, v in rates.items()}
        print(f"\n3. input pipeline, {count} JPEGs of 500x375, {workers} workers, batch {batch}, best of 2")
        print(f"  ours (resize 256, centre 256, mean image, crop 227, flip, PCA lighting): {best['ours']:7.1f} images/s")
        print(f"  torchvision v2 (Resize 256, CenterCrop 256, RandomCrop 227, flip):      "
              f"{best['torchvision']:7.1f} images/s")
        print(f"  ratio ours / torchvision: {best['ours'] / best['torchvision']:.3f}x (target >= 0.9)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--images", type=int, default=384)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bench_models(args.batch, args.steps)
    bench_pipeline(args.images, args.batch, args.workers)


if __name__ == "__main__":
    main()
