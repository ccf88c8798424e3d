"""PointNet++ training throughput and PointNet / PointNet++ inference latency on the CPU, against the popular style.

The peer is the SSG classifier written the way the most used PyTorch port (yanx27/Pointnet_Pointnet2_pytorch) writes
it, re-implemented here: farthest point sampling as a Python loop over the samples, ball query as a dense
``[B, S, N]`` distance matrix sorted per centre, grouping by fancy indexing, ``Conv2d`` 1x1 + ``BatchNorm2d`` on
``[B, C, k, S]``.  Same layers and parameter count (1,475,688) as ``pointnet2_cls_ssg``.

Measured in one run, on 2 threads (``torch.set_num_threads(2)``), B=16 clouds of 1024 points, SGD steps
(forward, cross-entropy, backward, update):

* training clouds/s of the peer and of ``pointnet2_cls_ssg`` in fp32 and under bf16 autocast, and the ratios; ours
  also with the fused batch norm kernels off (``dlparts.layers.fused.disabled``), to show what they bring;
  configurations interleaved over ``--rounds``, the median round of each reported (and the best);
* model FLOPs utilization: ``3 x`` the paper-order forward FLOPs (the 0.84 GMACs of the docstring, 2 FLOPs per MAC)
  per cloud times clouds/s, over the fp32 matmul peak measured here (2048^3 products; the best of one measurement
  before the rounds and one after each, since the machine's speed drifts within a run); beside it the same by CPU
  time: FLOPs per CPU-second of this process (all its threads) over the matmul's FLOPs per CPU-second.  On a shared
  machine a thread that waits for a core costs wall time and no CPU time, so this one measures the work and stays
  comparable under load (threads that spin while they wait still count, so with several threads it is a lower bound);
  the wall-time figure is the one that counts on idle cores.  On one thread (``--threads 1``: nothing spins) the
  CPU-time figure is the work alone;
* the same per block (set abstractions 1-3, head): each block alone on the inputs it gets in the model, forward and
  backward of a random output gradient (inputs that the model differentiates need gradients here too), the median
  of ``--steps`` calls per round, rounds and configurations interleaved, the median round reported; FLOPs of the
  block's rows of the summary (paper order);
* inference latency (eval, no grad) of one 1024-point cloud for ``pointnet_cls``, ``pointnet2_cls_ssg`` and the
  peer, each in a fresh process of its own after warm-up calls (see :func:`latency_alone`).  Beside it, the old
  method: the same timing in this process after the training above, which leaves more threads (numba's workqueue
  beside torch's pool: 7 instead of 4) and a heap twice the size behind; it came out 2-3x slower than a model timed
  alone (and up to 40x on a loaded 2-core machine), which is why the latency lines disagreed with timing a model
  alone.  The warm-up was already outside the timed region; one call is now five.

    .venv/bin/python benchmarks/models.py [--steps 5] [--rounds 3] [--no-latency] [--threads 2]
    .venv/bin/python benchmarks/models.py --profile --threads 1 --steps 3    # where a step's time goes
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from typing import NamedTuple

import dlparts  # noqa: F401  first: its OMP_WAIT_POLICY default (dlparts/__init__.py) is read as torch loads
import torch
from torch import nn
from torch.nn import functional as F

from dlparts import summarize
from dlparts.layers import fused
from dlparts.models import create_model
from dlparts.train.allocator import keep_freed_memory

from _peers import torch_loop_fps

B, N, CLASSES = 16, 1024, 40


# ------------------------------------------------------------------------------------------- the popular-repo style
def square_distance(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """``[B, S, 3]``, ``[B, N, 3]`` -> ``[B, S, N]`` squared distances by the expanded dot product."""
    d = -2 * src @ dst.transpose(1, 2)  # [B, S, N]
    return d + src.square().sum(-1)[:, :, None] + dst.square().sum(-1)[:, None, :]


def dense_ball_query(radius: float, k: int, xyz: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """All ``[B, S, N]`` distances, out-of-ball indices set to ``N``, sorted, the first ``k`` kept, the rest filled
    with the first: ``-> [B, S, k]``."""
    b, n, _ = xyz.shape
    s = centres.shape[1]
    idx = torch.arange(n).view(1, 1, n).repeat(b, s, 1)  # [B, S, N]
    idx[square_distance(centres, xyz) > radius**2] = n
    idx = idx.sort(dim=-1)[0][:, :, :k]  # [B, S, k]
    first = idx[:, :, :1].expand(-1, -1, k)  # [B, S, k]
    mask = idx == n
    idx[mask] = first[mask]
    return idx


def index_points(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``[B, N, C]``, ``[B, ...]`` -> ``[B, ..., C]`` by advanced indexing."""
    rows = torch.arange(points.shape[0]).view(-1, *([1] * (idx.dim() - 1))).expand_as(idx)  # [B, ...]
    return points[rows, idx]


class PeerSA(nn.Module):
    def __init__(self, npoint, radius, k, in_channels, mlp, group_all=False):
        super().__init__()
        self.npoint, self.radius, self.k, self.group_all = npoint, radius, k, group_all
        self.convs, self.bns = nn.ModuleList(), nn.ModuleList()
        for width in mlp:
            self.convs.append(nn.Conv2d(in_channels, width, 1))
            self.bns.append(nn.BatchNorm2d(width))
            in_channels = width

    def forward(self, xyz, points):
        if self.group_all:
            centres = xyz.new_zeros(xyz.shape[0], 1, 3)
            grouped = xyz[:, None] if points is None else torch.cat([xyz, points], -1)[:, None]  # [B, 1, N, C]
        else:
            centres = index_points(xyz, torch_loop_fps(xyz, self.npoint))  # [B, S, 3]
            idx = dense_ball_query(self.radius, self.k, xyz, centres)  # [B, S, k]
            grouped = index_points(xyz, idx) - centres[:, :, None]  # [B, S, k, 3]
            if points is not None:
                grouped = torch.cat([grouped, index_points(points, idx)], -1)  # [B, S, k, 3 + D]
        h = grouped.permute(0, 3, 2, 1)  # [B, C, k, S]
        for conv, bn in zip(self.convs, self.bns):
            h = F.relu(bn(conv(h)))
        return centres, h.max(2)[0].transpose(1, 2)  # [B, S, C]


class PeerPointNet2(nn.Module):
    def __init__(self, num_classes=CLASSES):
        super().__init__()
        self.sa1 = PeerSA(512, 0.2, 32, 3, [64, 64, 128])
        self.sa2 = PeerSA(128, 0.4, 64, 128 + 3, [128, 128, 256])
        self.sa3 = PeerSA(None, None, None, 256 + 3, [256, 512, 1024], group_all=True)
        self.head = nn.Sequential(nn.Linear(1024, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Dropout(0.5),
                                  nn.Linear(512, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.5),
                                  nn.Linear(256, num_classes))

    def forward(self, points):
        xyz, feats = self.sa1(points, None)
        xyz, feats = self.sa2(xyz, feats)
        _, feats = self.sa3(xyz, feats)
        return self.head(feats[:, 0])


# -------------------------------------------------------------------------------------------------- measurements
class Seconds(NamedTuple):
    """Wall-clock seconds and this process's CPU seconds (all threads) of one measurement."""

    wall: float
    cpu: float


def train_rate(model: nn.Module, steps: int, bf16: bool) -> Seconds:
    """Seconds per cloud (wall and CPU) over ``steps`` SGD steps after one warm-up step."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(B, N, 3, generator=gen) * 2 - 1
    y = torch.randint(0, CLASSES, (B,), generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    total = _timed(lambda: [step() for _ in range(steps)])
    return Seconds(total.wall / (B * steps), total.cpu / (B * steps))


def matmul_peak(dtype=torch.float32, size: int = 2048, repeat: int = 5) -> Seconds:
    """FLOPs per second of a ``size``-cubed product: ``(per wall second, per CPU second)``, the best of each."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    times = [_timed(lambda: a @ b) for _ in range(repeat)]
    return Seconds(2 * size**3 / min(t.wall for t in times), 2 * size**3 / min(t.cpu for t in times))


def _timed(fn) -> Seconds:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return Seconds(time.perf_counter() - wall, time.process_time() - cpu)


def blocks(model: nn.Module) -> list[tuple[str, nn.Module, int]]:
    """``(name, block, index of its first input that needs a gradient)`` of ours or the peer, in the order run:
    the set abstractions take ``(xyz, features)`` (no gradient for ``xyz``), the head the global feature."""
    if isinstance(model, PeerPointNet2):
        return [("sa1", model.sa1, 1), ("sa2", model.sa2, 1), ("sa3 (group all)", model.sa3, 1),
                ("head", model.head, 0)]
    return [("sa1", model.sa[0], 1), ("sa2", model.sa[1], 1), ("sa3 (group all)", model.sa[2], 1),
            ("head", model.head, 0)]


BLOCK_ROWS = {"sa1": "sa.0.", "sa2": "sa.1.", "sa3 (group all)": "sa.2.", "head": "head."}


def block_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, tuple]:
    """The positional inputs each block of ``model`` gets in one training-mode forward of ``x``."""
    seen: dict[str, tuple] = {}
    hooks = [block.register_forward_pre_hook(lambda _, args, name=name: seen.setdefault(name, args))
             for name, block, _ in blocks(model)]
    model.train()
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return {name: tuple(a.detach().clone() if torch.is_tensor(a) else a for a in args) for name, args in seen.items()}


def block_seconds(block: nn.Module, args: tuple, first_grad: int, bf16: bool, steps: int) -> Seconds:
    """Median seconds (wall and CPU, each its own median) of a forward and backward of ``block`` on ``args`` after
    one untimed call."""
    args = tuple(a.detach().requires_grad_(i >= first_grad and a.is_floating_point()) if torch.is_tensor(a) else a
                 for i, a in enumerate(args))
    block.train()

    def call():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = block(*args)
        out = out[1] if isinstance(out, tuple) else out  # a set abstraction's features [B, S, C]
        out.float().backward(torch.ones(out.shape) / out.numel())
        block.zero_grad(set_to_none=True)

    call()
    times = [_timed(call) for _ in range(steps)]
    return Seconds(statistics.median(t.wall for t in times), statistics.median(t.cpu for t in times))


def per_block(peer: nn.Module, ours: nn.Module, flops: dict[str, float], peak: Seconds, steps: int,
              rounds: int) -> None:
    """Print each block's fp32 and bf16 times, ratios to the peer's fp32 and MFU against the fp32 matmul peak (by
    wall time, and ours in fp32 by CPU time)."""
    x = torch.rand(B, N, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    configs = (("peer fp32", peer, False), ("ours fp32", ours, False), ("ours bf16", ours, True))
    inputs = {label: block_inputs(model, x) for label, model, _ in configs}
    times: dict[tuple[str, str], list[Seconds]] = {}
    for _ in range(rounds):
        for label, model, bf16 in configs:
            for name, block, first_grad in blocks(model):
                seconds = block_seconds(block, inputs[label][name], first_grad, bf16, steps)
                times.setdefault((label, name), []).append(seconds)
    print(f"\nper block, B={B}, forward + backward alone, median of {steps} calls, median of {rounds} rounds; MFU: "
          f"3 x the block's forward FLOPs (paper order) / time / fp32 peak; by CPU time: the same over CPU seconds")
    print(f"  {'block':<16} {'GFLOP/step':>10} {'peer fp32':>10} {'ours fp32':>10} {'ours bf16':>10}   "
          f"{'fp32 vs peer':>12} {'bf16 vs peer fp32':>17}   {'MFU fp32':>8} {'MFU bf16':>8} {'fp32 by CPU':>11}")
    for name, _, _ in blocks(ours):
        t = {label: statistics.median(s.wall for s in times[label, name]) for label, _, _ in configs}
        cpu = statistics.median(s.cpu for s in times["ours fp32", name])
        work = 3 * flops[name] * B
        print(f"  {name:<16} {work / 1e9:>10.2f} {t['peer fp32'] * 1e3:>7.0f} ms {t['ours fp32'] * 1e3:>7.0f} ms "
              f"{t['ours bf16'] * 1e3:>7.0f} ms   {t['peer fp32'] / t['ours fp32']:>11.2f}x "
              f"{t['peer fp32'] / t['ours bf16']:>16.2f}x   {work / t['ours fp32'] / peak.wall:>8.1%} "
              f"{work / t['ours bf16'] / peak.wall:>8.1%} {work / cpu / peak.cpu:>11.1%}")


def profile_step(steps: int) -> None:
    """Profile ``steps`` fp32 training steps of ours (torch.profiler) and print the CPU seconds per step, the MFU by
    CPU time against the matmul's FLOPs per CPU-second, and the share of each op's self time (matrix products and the
    fused batch norm functions summed)."""
    model, peak = create_model("pointnet2_cls_ssg"), matmul_peak()
    flops = 3 * 2 * summarize(create_model("pointnet2_cls_ssg", first_layer_per_point=False), (N, 3)).macs * B
    train_rate(model, 1, False)
    seconds = train_rate(model, steps, False).cpu * B  # per step
    print(f"ours fp32, {torch.get_num_threads()} threads: {seconds:.3f} CPU s per step, MFU by CPU time "
          f"{flops / seconds / peak.cpu:.1%} (peak {peak.cpu / 1e9:.1f} GFLOP per CPU-second)")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        train_rate(model, steps, False)
    shares: dict[str, float] = {}
    for event in prof.key_averages():
        name = event.key
        name = ("matrix products (mm, addmm)" if name in ("aten::mm", "aten::addmm") else
                "fused batch norm functions (self)" if "BNReLU" in name else name)
        shares[name] = shares.get(name, 0.0) + event.self_cpu_time_total
    total = sum(shares.values())
    for name, value in sorted(shares.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {value / total:>6.1%}  {name}")


LATENCY_MODELS = ("pointnet_cls", "pointnet2_cls_ssg", "peer pointnet2 ssg")
WARMUP, REPEAT = 5, 30


def latency(model: nn.Module, channels: int = 3) -> tuple[float, float]:
    """``(median, best)`` seconds of one eval forward of one cloud, no grad, after :data:`WARMUP` untimed calls
    (numba compiles, lazy initialization), over :data:`REPEAT` calls."""
    model.eval()
    x = torch.rand(1, N, channels, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for _ in range(WARMUP):
            model(x)
        times = [_timed(lambda: model(x)).wall for _ in range(REPEAT)]
    return statistics.median(times), min(times)


def _latency_model(name: str) -> nn.Module:
    return PeerPointNet2() if name.startswith("peer") else create_model(name)


def latency_alone(name: str, threads: int) -> tuple[float, float]:
    """:func:`latency` of model ``name`` in a fresh Python process of its own: nothing of this process's training
    (the thread pools it woke, its heap) is there."""
    done = subprocess.run([sys.executable, __file__, "--latency-of", name, "--threads", str(threads)],
                          capture_output=True, text=True, check=True)
    median, best = json.loads(done.stdout.splitlines()[-1])
    return median, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per configuration and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all configurations (the median counts)")
    parser.add_argument("--default-malloc", action="store_true", help="leave glibc's mmap threshold as it is")
    parser.add_argument("--no-latency", action="store_true", help="training rows only")
    parser.add_argument("--profile", action="store_true", help="profile ours fp32 (CPU time, ops) and stop")
    parser.add_argument("--latency-of", help=argparse.SUPPRESS)  # the child process of latency_alone
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.latency_of:
        print(json.dumps(latency(_latency_model(args.latency_of))))
        return
    if not args.default_malloc:  # both implementations run in this process, so the setting is fair to each
        print(f"glibc keeps freed memory: {keep_freed_memory()}")
    if args.profile:
        profile_step(args.steps)
        return
    torch.manual_seed(0)
    peaks = [matmul_peak()]  # measured again after every round below; the best of them is the denominator
    paper_order = summarize(create_model("pointnet2_cls_ssg", first_layer_per_point=False), (N, 3))
    flops = 2 * paper_order.macs  # per cloud
    block_flops = {name: 2 * sum(r.macs for r in paper_order.rows if r.name.startswith(prefix))
                   for name, prefix in BLOCK_ROWS.items()}
    bf16_peak = matmul_peak(torch.bfloat16)
    print(f"fp32 matmul peak (2048^3, {args.threads} threads): {peaks[0].wall / 1e9:.1f} GFLOP/s, "
          f"{peaks[0].cpu / 1e9:.1f} per CPU-second; bf16: {bf16_peak.wall / 1e9:.1f}; "
          f"pointnet2_cls_ssg forward: {flops / 1e9:.3f} GFLOP per cloud (MAC FLOPs, paper order)")
    peer = PeerPointNet2()
    ours = create_model("pointnet2_cls_ssg")
    assert sum(p.numel() for p in peer.parameters()) == sum(p.numel() for p in ours.parameters())
    configs = (("peer fp32", peer, False, True), ("peer bf16", peer, True, True),
               ("ours fp32", ours, False, True), ("ours bf16", ours, True, True),
               ("ours fp32, plain modules", ours, False, False), ("ours bf16, plain modules", ours, True, False))
    rounds: dict[str, list[Seconds]] = {}
    for _ in range(args.rounds):  # interleaved: drifts in machine speed hit every entry alike
        for label, model, bf16, kernels in configs:
            with contextlib.nullcontext() if kernels else fused.disabled():
                rounds.setdefault(label, []).append(train_rate(model, args.steps, bf16))
        peaks.append(matmul_peak())
    # The machine's speed drifts within a run: the highest peak it showed is the strictest denominator.
    peak = Seconds(max(p.wall for p in peaks), max(p.cpu for p in peaks))
    print(f"fp32 matmul peak over the run ({len(peaks)} measurements, before and after every round): best "
          f"{peak.wall / 1e9:.1f} GFLOP/s (lowest {min(p.wall for p in peaks) / 1e9:.1f}), {peak.cpu / 1e9:.1f} per "
          f"CPU-second; the MFU columns divide by the best")
    rates = {label: 1 / statistics.median(s.wall for s in values) for label, values in rounds.items()}
    cpu_rates = {label: 1 / statistics.median(s.cpu for s in values) for label, values in rounds.items()}
    print(f"\ntraining, B={B}, N={N}, SGD step, median (best) of {args.rounds} rounds   clouds/s   vs peer fp32   "
          f"MFU (3 x forward FLOPs / fp32 peak)   MFU by CPU time")
    for label, rate in rates.items():
        best = 1 / min(s.wall for s in rounds[label])
        print(f"  {label:<32} {rate:>8.2f} ({best:>6.2f})   {rate / rates['peer fp32']:>10.2f}x   "
              f"{rate * 3 * flops / peak.wall:>6.1%}   {cpu_rates[label] * 3 * flops / peak.cpu:>6.1%}")
    print(f"  ours fp32 vs peer fp32: {rates['ours fp32'] / rates['peer fp32']:.2f}x; "
          f"ours bf16 vs peer fp32: {rates['ours bf16'] / rates['peer fp32']:.2f}x; "
          f"ours bf16 vs peer bf16: {rates['ours bf16'] / rates['peer bf16']:.2f}x")
    per_block(peer, ours, block_flops, peak, args.steps, args.rounds)
    if args.no_latency:
        return
    print(f"\ninference latency, one 1024-point cloud, eval, no grad, {args.threads} threads: each model timed in a "
          f"fresh process of its own, {WARMUP} untimed warm-up calls (numba compiles, lazy init), then median and best "
          f"of {REPEAT} calls, models interleaved over the rounds (best round); beside it the same timing in this "
          f"process after the training above (more threads, a larger heap: slower, the old method)")
    alone: dict[str, tuple[float, float]] = {}
    for _ in range(args.rounds):
        for name in LATENCY_MODELS:
            median, best = latency_alone(name, args.threads)
            alone[name] = min(alone.get(name, (median, best)), (median, best))
    here = {"pointnet_cls": create_model("pointnet_cls"), "pointnet2_cls_ssg": ours, "peer pointnet2 ssg": peer}
    print(f"  {'model':<22} {'alone median':>12} {'best':>8}   {'in this process, median':>24}")
    for name in LATENCY_MODELS:
        median, best = alone[name]
        print(f"  {name:<22} {median * 1e3:>9.2f} ms {best * 1e3:>5.2f} ms   {latency(here[name])[0] * 1e3:>21.2f} ms")

if __name__ == "__main__":
    main()
