"""ONNX export: onnxruntime on the CPU against PyTorch eager (dlparts ops), and the popular-repository style's export.

For ``pointnet_cls``, ``pointnet2_cls_ssg``, ``pointnet2_cls_msg`` and ``pointnet2_partseg_ssg`` (registered sizes,
random weights, eval mode), in one run on ``--threads`` threads (torch and onnxruntime alike):

* export time (``dlparts.train.export.export_model``: trace, inline the point operators, write, load back and check
  3 seeds) and file size;
* latency of one 1024-point cloud (median of ``--repeat`` runs after a warm-up) in eager and in onnxruntime, ratio;
* clouds/s at batch 16, both, ratio.

The peer: the SSG classifier written as the popular PyTorch port writes it (``benchmarks/models.py``:
``PeerPointNet2``, farthest point sampling as a Python loop), traced by ``torch.onnx.export``: whether it exports,
its export time, file size and node count, whether the file equals its eager outputs, its latency.

    .venv/bin/python benchmarks/export.py [--threads 2] [--repeat 20]
"""

from __future__ import annotations

import argparse
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


def session(path: Path, threads: int, quiet: bool = False) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    options.log_severity_level = 4 if quiet else 2  # quiet: the peer's failing runs are reported in its line
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def timings(model, feeds: dict[int, dict], sess, repeat: int) -> dict[str, float]:
    """Eager and onnxruntime latency at batch 1 (ms) and clouds/s at :data:`BATCH`."""
    out = {}
    for batch, feed in feeds.items():
        arrays = {k: v.numpy() for k, v in feed.items()}
        with torch.no_grad():
            eager = median_seconds(lambda: model(*feed.values()), repeat if batch == 1 else max(3, repeat // 4))
        ort = median_seconds(lambda: sess.run(None, arrays), repeat if batch == 1 else max(3, repeat // 4))
        out |= {f"eager_{batch}": eager, f"ort_{batch}": ort}
    return out


def ours(name: str, folder: Path, threads: int, repeat: int) -> None:
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
    print(f"{name:22s} export {seconds:5.1f} s  {report.path.stat().st_size / 2**20:5.1f} MiB  "
          f"max|diff| {report.max_abs_diff:.1e}  |  1 cloud: eager {1e3 * t['eager_1']:7.1f} ms, onnxruntime "
          f"{1e3 * t['ort_1']:7.1f} ms ({t['ort_1'] / t['eager_1']:.2f}x)  |  batch {BATCH}: eager "
          f"{BATCH / t[f'eager_{BATCH}']:6.1f}, onnxruntime {BATCH / t[f'ort_{BATCH}']:6.1f} clouds/s "
          f"({t[f'eager_{BATCH}'] / t[f'ort_{BATCH}']:.2f}x)", flush=True)


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {args.threads} threads, N={N}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            ours(name, Path(tmp), args.threads, args.repeat)
        peer(Path(tmp), args.threads, args.repeat)


if __name__ == "__main__":
    main()
