"""The Triton point operators on a GPU, in one run: parity with the reference and the CPU backend, then timings.

For a session that has a CUDA GPU.  At the sizes of issue 4 it checks that the Triton kernels (``backend="cuda"``)
return exactly what the plain PyTorch reference returns on the same GPU and what the numba CPU backend returns
(indices equal, distances bit-identical), then times them (median of several runs after a warm-up whose time, the
Triton compile included, is printed too) against the reference on the GPU, the pure-PyTorch loop FPS and
dense-distance-plus-sort ball query of the popular PyTorch PointNet++ code (our own equivalent), and the CPU backend.
Each case runs on its own: a failure prints one line and the script goes on.

    .venv/bin/python benchmarks/ops_gpu.py            # the issue's sizes (a few minutes, most of it the CPU side)
    .venv/bin/python benchmarks/ops_gpu.py --quick    # small sizes, to smoke-test the kernels
    .venv/bin/python benchmarks/ops_gpu.py --json out.json

In the same GPU session, the test bodies on the GPU: ``pytest tests/ops -k "cuda and not interpreter"`` (the shared
operator tests with the ``cuda`` backend and the GPU cases of tests/ops/test_cuda_backend.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import traceback

import torch

from dlparts import ops
from dlparts.ops import cuda

from _peers import torch_loop_fps

FULL = {
    "fps": [(16, 1024, 512), (16, 4096, 1024), (1, 100_000, 10_000), (1, 1_000_000, 4096)],
    "ball": [(16, 1024, 512, 0.2, 32, "index"), (1, 100_000, 10_000, 0.1, 32, "index"),
             (1, 100_000, 10_000, 0.1, 32, "nearest")],
    "knn": [(16, 4096, 16)],
}
QUICK = {
    "fps": [(4, 1000, 100), (2, 9000, 300)],
    "ball": [(4, 1000, 200, 0.2, 32, "index"), (4, 1000, 200, 0.2, 32, "nearest")],
    "knn": [(4, 1000, 16)],
}


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
    x = cloud(b, n, n)
    g = x.cuda()
    run = {be: (lambda be=be, t=t: ops.farthest_point_sample(t, m, backend=be))
           for be, t in (("cuda", g), ("reference", g), ("cpu", x))}
    peers = {"torch loop (GPU)": lambda: torch_loop_fps(g, m)}
    if n > cuda._FPS_REGISTER_MAX:  # both large-cloud kernels, whichever fps() picks, to place _FPS_STREAM_MAX
        lens = torch.full((b,), n, device=g.device)
        start = torch.zeros(b, dtype=torch.int64, device=g.device)
        for path in ("_fps_streaming", "_fps_steps"):
            peers[f"cuda {path}"] = lambda path=path: fps_path(path, g, lens, m, start)
    row = measure(f"fps B={b} N={n:,} m={m:,}", run, peers, lambda r: (r,))
    if n > cuda._FPS_REGISTER_MAX:
        want = run["reference"]()
        row["equal_reference"] &= all(torch.equal(fps_path(p, g, lens, m, start), want)
                                      for p in ("_fps_streaming", "_fps_steps"))
    return row


def fps_path(path: str, xyz, lengths, m: int, start) -> torch.Tensor:
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
    """Parity of cuda with reference and cpu, then (first, median) times of every backend and peer."""
    out = {"case": name}
    results = {be: fn() for be, fn in run.items()}
    torch.cuda.synchronize()
    out["equal_reference"] = same(parts(results["cuda"]), parts(results["reference"]))
    out["equal_cpu"] = same(parts(results["cuda"]), parts(results["cpu"]))
    for label, fn in {**{f"dlparts {be}": fn for be, fn in run.items()}, **peers}.items():
        out[label] = clock(fn)
    return out


def report(row: dict) -> None:
    ours = row["dlparts cuda"][1]
    parity = f"equal to reference: {row['equal_reference']}, to cpu: {row['equal_cpu']}"
    print(f"\n{row['case']}  ({parity})")
    print(f"  {'':<26} {'first call ms':>14} {'median ms':>11} {'time/cuda':>10}")
    for label, value in row.items():
        if isinstance(value, tuple):
            first, med = value
            print(f"  {label:<26} {first * 1e3:>14.2f} {med * 1e3:>11.3f} {med / ours:>9.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test of every kernel")
    p.add_argument("--json", help="also write the rows to this JSON file")
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("ops_gpu.py needs a CUDA GPU; without one the Triton kernels are tested by "
                         "tests/ops/test_cuda_backend.py in Triton's interpreter")
    import triton

    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}, "
          f"CPU threads {torch.get_num_threads()}")
    sizes = QUICK if args.quick else FULL
    rows = []
    cases = ([(case_fps, c) for c in sizes["fps"]] + [(case_ball, c) for c in sizes["ball"]]
             + [(case_knn, c) for c in sizes["knn"]])
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
