"""ONNX export: onnxruntime on the CPU against PyTorch eager (dlparts ops), and the popular-repository style's export.

For ``pointnet_cls``, ``pointnet2_cls_ssg``, ``pointnet2_cls_msg`` and ``pointnet2_partseg_ssg`` (registered sizes,
random weights, eval mode), in one run on ``--threads`` threads (torch and onnxruntime alike):

* export time (``dlparts.train.export.export_model``: trace, inline the point operators, write, load back and check
  3 seeds) and file size;
* latency of one 1024-point cloud (median of ``--repeat`` runs after a warm-up) in eager and in onnxruntime;
* clouds/s at batch 16, both;
* "speed": onnxruntime's speed relative to eager (eager time / onnxruntime time; above 1, onnxruntime is faster),
  the median of the per-round ratios with their quartiles (how noisy the machine was).

The peer: the SSG classifier written as the popular PyTorch port writes it (``benchmarks/models.py``:
``PeerPointNet2``, farthest point sampling as a Python loop), traced by ``torch.onnx.export``: whether it exports,
its export time, file size and node count, whether the file equals its eager outputs, its latency.

With ``--profile``, also onnxruntime's own profile of three batch-16 runs per model: the share of the run spent in
top-level ``Loop`` nodes (farthest point sampling) and the costliest operator types inside it.

The eager and onnxruntime timings alternate within each measured pair, so machine load hits both alike.

    .venv/bin/python benchmarks/export.py [--threads 2] [--repeat 20] [--profile] [--models NAME ...] [--no-peer]
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch

from dlparts.models import create_model, get_model_info
from dlparts.train.export import export_model, model_inputs

from models import PeerPointNet2

MODELS = ("pointnet_cls", "pointnet2_cls_ssg", "pointnet2_cls_msg", "pointnet2_partseg_ssg")
N, BATCH = 1024, 16


def median_seconds(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def session(path: Path, threads: int, quiet: bool = False, profile: str | None = None) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    if profile is not None:
        options.enable_profiling, options.profile_file_prefix = True, profile
    options.log_severity_level = 4 if quiet else 2  # quiet: the peer's failing runs are reported in its line
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def paired(fns: dict, repeat: int) -> dict[str, list[float]]:
    """Seconds of each of ``fns`` over ``repeat`` rounds that call each in turn (after one warm-up call each), so a
    change of machine load hits every entry of a round alike."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def timings(model, feeds: dict[int, dict], sess, repeat: int) -> dict[int, dict]:
    """Per batch size: the medians of eager and onnxruntime (s) and the quartiles of the per-round ratios
    eager / onnxruntime (above 1: onnxruntime is faster)."""
    out = {}
    for batch, feed in feeds.items():
        arrays = {k: v.numpy() for k, v in feed.items()}
        with torch.no_grad():
            t = paired({"eager": lambda: model(*feed.values()), "ort": lambda: sess.run(None, arrays)},
                       repeat if batch == 1 else max(5, repeat // 2))
        ratios = statistics.quantiles([e / o for e, o in zip(t["eager"], t["ort"])], n=4)
        out[batch] = {"eager": statistics.median(t["eager"]), "ort": statistics.median(t["ort"]), "ratio": ratios}
    return out


def profile(path: Path, feed: dict, threads: int, folder: Path) -> str:
    """onnxruntime's profile of three runs of ``feed``: the share of the run time in top-level ``Loop`` nodes and the
    three costliest operator types inside the loops."""
    sess = session(path, threads, profile=str(folder / "profile"))
    arrays = {k: v.numpy() for k, v in feed.items()}
    for _ in range(3):
        sess.run(None, arrays)
    events = json.loads(Path(sess.end_profiling()).read_text())
    total = sum(e["dur"] for e in events if e.get("name") == "model_run")
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    loops = sum(e["dur"] for e in nodes if e["args"].get("op_name") == "Loop" and "/body/" not in e["name"])
    inside = collections.Counter()
    for e in nodes:
        if "/body/" in e["name"]:
            inside[e["args"].get("op_name", "?")] += e["dur"]
    top = ", ".join(f"{op} {100 * dur / max(loops, 1):.0f}%" for op, dur in inside.most_common(3))
    return f"FPS loops {100 * loops / max(total, 1):.0f}% of onnxruntime's time" + (f" (inside: {top})" if top else "")


def ours(name: str, folder: Path, threads: int, repeat: int, profiled: bool) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    task = get_model_info(name).task
    channels = get_model_info(name).input_spec[-1]
    checks = [model_inputs(model, task, 2, (N, channels), seed) for seed in range(3)]
    start = time.perf_counter()
    report = export_model(model, folder / f"{name}.onnx", "onnx", checks)
    seconds = time.perf_counter() - start
    feeds = {b: model_inputs(model, task, b, (N, channels), 7) for b in (1, BATCH)}
    t = timings(model, feeds, session(report.path, threads), repeat)
    one, many = t[1], t[BATCH]
    print(f"{name:22s} export {seconds:5.1f} s  {report.path.stat().st_size / 2**20:5.1f} MiB  "
          f"max|diff| {report.max_abs_diff:.1e}  |  1 cloud: eager {1e3 * one['eager']:7.1f} ms, onnxruntime "
          f"{1e3 * one['ort']:7.1f} ms, speed {one['ratio'][1]:.2f}x (quartiles {one['ratio'][0]:.2f}-"
          f"{one['ratio'][2]:.2f})  |  batch {BATCH}: eager {BATCH / many['eager']:6.1f}, onnxruntime "
          f"{BATCH / many['ort']:6.1f} clouds/s, speed {many['ratio'][1]:.2f}x (quartiles "
          f"{many['ratio'][0]:.2f}-{many['ratio'][2]:.2f})", flush=True)
    if profiled:
        print(f"{'':22s} batch {BATCH}: {profile(report.path, feeds[BATCH], threads, folder)}", flush=True)


def peer(folder: Path, threads: int, repeat: int) -> None:
    torch.manual_seed(0)
    model = PeerPointNet2().eval()
    x = torch.rand(1, N, 3) * 2 - 1
    path = folder / "peer.onnx"
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(path), input_names=["points"], output_names=["logits"],
                              opset_version=17, dynamo=False)
    except Exception as exc:  # the peer's failure is the finding
        print(f"popular style: does not export ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
        return
    seconds = time.perf_counter() - start
    sess = session(path, threads, quiet=True)
    y = torch.rand(1, N, 3) * 2 - 1
    with torch.no_grad():
        same_input = float(np.abs(sess.run(None, {"points": x.numpy()})[0] - model(x).numpy()).max())
        try:
            other = f"{float(np.abs(sess.run(None, {'points': y.numpy()})[0] - model(y).numpy()).max()):.1e}"
        except Exception as exc:  # the traced masks hold the traced input's counts
            other = f"fails ({str(exc).split('Status Message:')[0].strip()[-60:]})"
        eager = median_seconds(lambda: model(x), repeat)
    ort = median_seconds(lambda: sess.run(None, {"points": x.numpy()}), repeat)
    nodes = len(onnx.load(str(path)).graph.node)
    print(f"popular style (Python FPS loop, traced): exports in {seconds:.1f} s, "
          f"{path.stat().st_size / 2**20:.1f} MiB, {nodes} nodes, batch and points fixed; max|diff| on the traced "
          f"input {same_input:.1e}, on another input: {other}; 1 cloud on the traced input: eager "
          f"{1e3 * eager:.1f} ms, onnxruntime {1e3 * ort:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--profile", action="store_true", help="onnxruntime's profile of the batch runs")
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS, metavar="NAME")
    parser.add_argument("--no-peer", dest="peer", action="store_false", help="skip the popular style's export")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {args.threads} threads, N={N}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            ours(name, Path(tmp), args.threads, args.repeat, args.profile)
        if args.peer:
            peer(Path(tmp), args.threads, args.repeat)


if __name__ == "__main__":
    main()
