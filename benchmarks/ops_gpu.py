"""The Triton point operators on a GPU, in one run: parity with the reference and the CPU backend, then timings.

The first command to run on a lent GPU.  It checks the machine first (``nvidia-smi``, the driver, torch's CUDA build,
Triton) and says what is missing.  Then, at the sizes of issue 20, it checks that the Triton kernels
(``backend="cuda"``) return exactly what the plain PyTorch reference returns on the same GPU and what the numba CPU
backend returns (indices equal, distances bit-identical), counts the GPU operations (kernels, copies, fills) one call
launches, and times them (median of several runs after a warm-up whose time, the Triton compile included, is printed
too) against the pure-PyTorch loop FPS and dense-distance-plus-sort ball query of the popular PyTorch PointNet++ code
(our own equivalent, ``_peers.py``); without ``--quick`` the reference on the GPU and the CPU backend are timed too.
Last, one PointNet++ SSG training step (B=32, N=1024, fp32 and bf16 autocast) of ``pointnet2_cls_ssg`` against the
popular-repository-style model of ``benchmarks/models.py``.  Each case runs on its own: a failure prints one line and
the script goes on.  Runs from a plain checkout with the machine's own torch:

    PYTHONPATH=src python benchmarks/ops_gpu.py --quick   # the issue's cases, ours and the peers (a few minutes)
    PYTHONPATH=src python benchmarks/ops_gpu.py           # also the reference and CPU backends, larger ball queries
    PYTHONPATH=src python benchmarks/ops_gpu.py --json out.json

In the same GPU session, the test bodies on the GPU: ``pytest tests/ops -k "cuda and not interpreter"`` (the shared
operator tests with the ``cuda`` backend and the GPU cases of tests/ops/test_cuda_backend.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
import traceback

import torch
from torch.nn import functional as F

from dlparts import ops
from dlparts.models import create_model

from _peers import torch_loop_fps

QUICK = {
    "fps": [(16, 1024, 512), (16, 4096, 1024), (1, 100_000, 10_000), (1, 1_000_000, 4096)],
    "ball": [(16, 1024, 512, 0.2, 32, "index"), (16, 1024, 512, 0.2, 32, "nearest")],
    "knn": [(16, 1024, 16), (16, 4096, 16)],
}
FULL = {
    "fps": QUICK["fps"],
    "ball": QUICK["ball"] + [(1, 100_000, 10_000, 0.1, 32, "index"), (1, 100_000, 10_000, 0.1, 32, "nearest")],
    "knn": QUICK["knn"],
}
QUICK_RUN = False  # set by --quick: time only ours and the peers


def machine() -> list[str]:
    """What this machine lacks for the GPU benchmarks (empty: nothing); prints what it has."""
    missing = []
    smi = shutil.which("nvidia-smi")
    if smi is None:
        missing.append("nvidia-smi is not on PATH: no NVIDIA driver installed, or not visible in this container")
    else:
        run = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=60)
        if run.returncode != 0:
            missing.append(f"nvidia-smi fails (exit {run.returncode}): {(run.stderr or run.stdout).strip()[:300]}")
        else:
            print("nvidia-smi:", "; ".join(line.strip() for line in run.stdout.splitlines()))
    print(f"torch {torch.__version__}, built for CUDA {torch.version.cuda}")
    if torch.version.cuda is None:
        missing.append("this torch is a CPU-only build (torch.version.cuda is None)")
    elif not torch.cuda.is_available():
        missing.append(f"torch sees no usable GPU (torch.cuda.is_available() is False): no driver, a driver older "
                       f"than CUDA {torch.version.cuda} needs, or CUDA_VISIBLE_DEVICES hides the GPUs")
    try:
        import triton

        print(f"triton {triton.__version__}")
    except Exception as exc:  # any import failure: the cuda backend would fall back to the reference
        missing.append(f"triton cannot be imported ({type(exc).__name__}: {exc}): backend='cuda' would run the "
                       "reference")
    return missing


def gpu_ops(fn) -> int:
    """GPU operations (kernels, copies, fills) that one call of ``fn`` launches, counted by the profiler."""
    fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


def clock(fn, budget: float = 1.0, most: int = 20) -> tuple[float, float]:
    """``(first call s, median s of the following calls)``, synchronizing the GPU around each call."""
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    first = time.perf_counter() - t
    times: list[float] = []
    while len(times) < most and (len(times) < 3 or sum(times) < budget):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return first, statistics.median(times)


def dense_ball(xyz: torch.Tensor, centers: torch.Tensor, radius: float, k: int) -> torch.Tensor:
    """The popular repository's ball query: all distances, out-of-ball indices set to N, sort, keep k."""
    n = xyz.shape[1]
    d = torch.cdist(centers, xyz) ** 2  # [B, S, N]
    idx = torch.arange(n, device=xyz.device).expand_as(d).clone()  # [B, S, N]
    idx[d > radius * radius] = n
    idx = idx.sort(dim=-1).values[:, :, :k]  # [B, S, k]
    first = idx[:, :, :1].expand_as(idx)  # [B, S, k]
    return torch.where(idx == n, first, idx)


def cloud(b: int, n: int, seed: int) -> torch.Tensor:
    return torch.rand(b, n, 3, generator=torch.Generator().manual_seed(seed))


def same(a, b) -> bool:
    return all(torch.equal(x.cpu(), y.cpu()) for x, y in zip(a, b))


def case_fps(b: int, n: int, m: int) -> dict:
    from dlparts.ops import cuda

    x = cloud(b, n, n)
    g = x.cuda()
    run = {be: (lambda be=be, t=t: ops.farthest_point_sample(t, m, backend=be))
           for be, t in (("cuda", g), ("reference", g), ("cpu", x))}
    peers = {"torch loop (GPU)": lambda: torch_loop_fps(g, m)}
    # Both large-cloud kernels, whichever fps() picks, to place _FPS_STREAM_MAX; and the steps replayed from a CUDA
    # graph (DLPARTS_FPS_GRAPH=1; the first call captures).  The streaming kernel is the one-block-per-cloud design.
    paths = ("_fps_streaming", "_fps_steps", "_fps_steps_graphed")
    if n > cuda._FPS_REGISTER_MAX:
        lens = torch.full((b,), n, device=g.device)
        start = torch.zeros(b, dtype=torch.int64, device=g.device)
        for path in paths:
            peers[f"cuda {path}"] = lambda path=path: fps_path(path, g, lens, m, start)
    row = measure(f"fps B={b} N={n:,} m={m:,}", run, peers, lambda r: (r,))
    if n > cuda._FPS_REGISTER_MAX:
        want = run["reference"]()
        row["equal_reference"] &= all(torch.equal(fps_path(p, g, lens, m, start), want) for p in paths)
    return row


def fps_path(path: str, xyz, lengths, m: int, start) -> torch.Tensor:
    from dlparts.ops import cuda

    idx = torch.empty(xyz.shape[0], m, dtype=torch.int64, device=xyz.device)
    getattr(cuda, path)(xyz, lengths, m, start, idx, cuda._FPS_CHUNK)
    return idx


def case_ball(b: int, n: int, s: int, radius: float, k: int, order: str) -> dict:
    x, c = cloud(b, n, n), cloud(b, s, s)
    g, gc = x.cuda(), c.cuda()
    run = {be: (lambda be=be, t=t, tc=tc: ops.ball_query(t, tc, radius, k, order=order, backend=be))
           for be, t, tc in (("cuda", g, gc), ("reference", g, gc), ("cpu", x, c))}
    small = order == "index" and b * s * n <= 2**26  # the dense peer holds B*S*N distances and indices
    peers = {"dense torch (GPU)": lambda: dense_ball(g, gc, radius, k)} if small else {}
    return measure(f"ball_query B={b} N={n:,} S={s:,} r={radius} k={k} {order}", run, peers, tuple)


def case_knn(b: int, n: int, k: int) -> dict:
    x = cloud(b, n, n)
    g = x.cuda()
    run = {be: (lambda be=be, t=t: ops.knn(t, t, k, backend=be)) for be, t in (("cuda", g), ("reference", g),
                                                                              ("cpu", x))}
    peers = {"dense cdist+topk (GPU)": lambda: torch.topk(torch.cdist(g, g), k, largest=False)}
    return measure(f"knn B={b} N={n:,} k={k} self", run, peers, tuple)


def measure(name: str, run: dict, peers: dict, parts) -> dict:
    """Parity of cuda with reference and cpu, GPU operations per call, then (first, median) times of ours, the peers
    and (unless ``QUICK_RUN``) the reference and cpu backends."""
    out = {"case": name}
    results = {be: fn() for be, fn in run.items()}
    torch.cuda.synchronize()
    out["equal_reference"] = same(parts(results["cuda"]), parts(results["reference"]))
    out["equal_cpu"] = same(parts(results["cuda"]), parts(results["cpu"]))
    timed = {f"dlparts {be}": fn for be, fn in run.items() if be == "cuda" or not QUICK_RUN}
    for label, fn in {**timed, **peers}.items():
        if label != "dlparts cpu":
            out[f"launches: {label}"] = gpu_ops(fn)
        out[label] = clock(fn)
    return out


def case_train(bf16: bool, b: int = 32, n: int = 1024) -> dict:
    """One SGD step (forward, cross-entropy, backward, update) of PointNet++ SSG, ours and the popular style."""
    from models import PeerPointNet2

    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(b, n, 3, generator=gen) * 2 - 1).cuda()
    y = torch.randint(0, 40, (b,), generator=gen).cuda()

    def stepper(model):
        model = model.cuda().train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step():
            # The peer makes its index tensors without a device (torch.arange(n)): the default device puts them here.
            with torch.device("cuda"), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    ours, peer = stepper(create_model("pointnet2_cls_ssg")), stepper(PeerPointNet2())
    out = {"case": f"pointnet2_cls_ssg training step B={b} N={n} {'bf16' if bf16 else 'fp32'}",
           "equal_reference": True, "equal_cpu": True}  # no indices to compare: the operators' cases check them
    out["launches: dlparts cuda"] = gpu_ops(ours)
    out["dlparts cuda"] = clock(ours)
    out["launches: peer (popular repository style)"] = gpu_ops(peer)
    out["peer (popular repository style)"] = clock(peer)
    return out


def report(row: dict) -> None:
    ours = row["dlparts cuda"][1]
    parity = f"equal to reference: {row['equal_reference']}, to cpu: {row['equal_cpu']}"
    print(f"\n{row['case']}  ({parity})")
    print(f"  {'':<34} {'first call ms':>14} {'median ms':>11} {'time/cuda':>10} {'GPU ops/call':>13}")
    for label, value in row.items():
        if isinstance(value, tuple):
            first, med = value
            ops_per_call = row.get(f"launches: {label}", "")
            print(f"  {label:<34} {first * 1e3:>14.2f} {med * 1e3:>11.3f} {med / ours:>9.2f}x {ops_per_call:>13}")


def main() -> None:
    global QUICK_RUN
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the issue's cases, ours and the peers only")
    p.add_argument("--json", help="also write the rows to this JSON file")
    args = p.parse_args()
    missing = machine()
    if missing:
        print("\nops_gpu.py cannot run here:\n  - " + "\n  - ".join(missing), file=sys.stderr)
        print("Without a GPU the Triton kernels are tested by tests/ops/test_cuda_backend.py in Triton's interpreter.",
              file=sys.stderr)
        raise SystemExit(2)
    QUICK_RUN = args.quick
    print(f"{torch.cuda.get_device_name()}, CPU threads {torch.get_num_threads()}")
    sizes = QUICK if args.quick else FULL
    rows = []
    cases = ([(case_fps, c) for c in sizes["fps"]] + [(case_ball, c) for c in sizes["ball"]]
             + [(case_knn, c) for c in sizes["knn"]] + [(case_train, (False,)), (case_train, (True,))])
    for fn, c in cases:
        try:
            rows.append(fn(*c))
            report(rows[-1])
        except Exception as exc:  # one broken case must not cost the rest of a scarce GPU session
            print(f"\n{fn.__name__}{c}: FAILED {type(exc).__name__}: {exc}")
            traceback.print_exc(limit=3)
            rows.append({"case": f"{fn.__name__}{c}", "error": f"{type(exc).__name__}: {exc}"})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
