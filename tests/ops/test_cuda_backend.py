"""The Triton backend (``dlparts.ops.cuda``) against the reference.

The ``interpreted`` cases run the kernels in Triton's interpreter (numpy on CPU tensors: the same kernel code, masks
and reductions).  Triton reads ``TRITON_INTERPRET=1`` when it is first imported, which in a shared test process may
already have happened, so :func:`test_kernels_in_the_interpreter` runs them in a fresh process with the flag set (they
also run directly when the whole process was started with it).  The ``gpu`` cases run the compiled kernels and skip
without CUDA.  Sizes are small because the interpreter is slow.
"""

import contextlib
import re
import sys
import warnings

import pytest
import torch

triton = pytest.importorskip("triton")

from dlparts import ops  # noqa: E402
from dlparts.errors import ConfigError  # noqa: E402
from dlparts.ops import _dispatch, cuda, reference  # noqa: E402

from .conftest import cloud, ragged, run_in_interpreter  # noqa: E402

INTERPRETER = cuda.DEVICE_TYPES == ("cuda", "cpu")
interpreted = pytest.mark.skipif(not INTERPRETER, reason="runs in test_kernels_in_the_interpreter's process")
gpu = pytest.mark.skipif(INTERPRETER or not torch.cuda.is_available(), reason="no CUDA GPU")


@pytest.mark.skipif(INTERPRETER, reason="this process already interprets the kernels")
def test_kernels_in_the_interpreter():
    run_in_interpreter(__file__)


def _inputs(b, n, s, seed, *, grid=None, ragged_lengths=True):
    xyz = cloud(b, n, seed, grid=grid)
    xyz[:, n // 2:n // 2 + n // 8] = xyz[:, :n // 8]  # exact duplicates of earlier points
    centers = torch.cat([xyz[:, :s // 2], cloud(b, s - s // 2, seed + 1, grid=grid)], dim=1)  # [B, S, 3]
    lengths = ragged(b, n, seed) if ragged_lengths else torch.full((b,), n)
    return xyz, centers, lengths


@interpreted
def test_hand_computed():
    xyz = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [3, 0, 0], [7, 0, 0], [7, 0, 0]]])
    full = torch.tensor([5])
    # FPS from 0: d2 = 1, 9, 49, 49 -> 3 (tie, lower index); then 1, 9, -, 0 -> 2; then 1; then the duplicate 4.
    assert cuda.fps(xyz, full, 5, torch.tensor([0])).tolist() == [[0, 3, 2, 1, 4]]
    centers = torch.tensor([[[0.5, 0, 0], [2.0, 0, 0], [5.0, 0, 0]]])
    # radius 1 (radius2 1.0): center 0.5 holds 0 and 1 (d2 .25); center 2 holds 1 and 3 only at d2 = 1, not < 1, so
    # the ball is empty: nearest point 1 (d2 1, tie with 2 -> lower index) with count 0; center 5 is empty, nearest 2.
    idx, count = cuda.ball_query(xyz, centers, full, 1.0, 3, False)
    assert idx.tolist() == [[[0, 1, 0], [1, 1, 1], [2, 2, 2]]] and count.tolist() == [[2, 0, 0]]
    # radius2 4.0: center 2 holds 1 and 2 (d2 1 each), center 5 holds nothing (d2 4 to 3 and 7).
    idx, count = cuda.ball_query(xyz, centers, full, 4.0, 3, True)
    assert idx.tolist() == [[[0, 1, 0], [1, 2, 1], [2, 2, 2]]] and count.tolist() == [[2, 2, 0]]
    dists, idx = cuda.knn(centers, xyz, full, 3)
    assert idx.tolist() == [[[0, 1, 2], [1, 2, 0], [2, 3, 4]]]
    assert dists.tolist() == [[[0.25, 0.25, 6.25], [1.0, 1.0, 4.0], [4.0, 4.0, 4.0]]]


@pytest.mark.parametrize("b,n,m,grid", [(1, 1, 1, None), (3, 40, 17, None), (2, 130, 130, 0.25), (2, 300, 64, 0.1)])
@interpreted
def test_fps_equals_reference(b, n, m, grid):
    xyz, _, lengths = _inputs(b, n, 1, seed=n, grid=grid, ragged_lengths=m < n)
    m = min(m, int(lengths.min()))
    start = torch.remainder(torch.arange(b) * 7, lengths)
    assert torch.equal(cuda.fps(xyz, lengths, m, start), reference.fps(xyz, lengths, m, start))


@pytest.mark.parametrize("path,chunk", [("_fps_streaming", 16), ("_fps_steps", 32)])
@interpreted
def test_fps_large_cloud_paths_equal_reference(path, chunk):
    # The kernels of clouds above _FPS_REGISTER_MAX points, on a small cloud: chunk boundaries, ties across chunks.
    xyz, _, lengths = _inputs(2, 120, 1, seed=chunk, grid=0.2)
    start = torch.tensor([3, 0])
    idx = torch.empty(2, 12, dtype=torch.int64)
    getattr(cuda, path)(xyz, lengths, 12, start, idx, chunk)
    assert torch.equal(idx, reference.fps(xyz, lengths, 12, start))


@pytest.mark.parametrize("nearest", [False, True])
@pytest.mark.parametrize("b,n,s,radius,k,grid", [(1, 1, 1, 0.5, 1, None), (2, 70, 20, 0.3, 5, None),
                                                 (2, 150, 40, 0.25, 32, 0.1), (3, 90, 33, 0.05, 3, None),
                                                 (1, 60, 17, 2.0, 7, 0.25), (2, 200, 40, 0.05, 3, 0.25),
                                                 (1, 129, 64, 0.2, 64, None)])
@interpreted
def test_ball_query_equals_reference(nearest, b, n, s, radius, k, grid):
    xyz, centers, lengths = _inputs(b, n, s, seed=n + k, grid=grid)
    r2 = float(torch.tensor(radius) * torch.tensor(radius))
    got = cuda.ball_query(xyz, centers, lengths, r2, k, nearest)
    want = reference.ball_query(xyz, centers, lengths, r2, k, nearest)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.parametrize("b,n,s,k,grid", [(1, 1, 1, 1, None), (2, 70, 20, 3, None), (2, 130, 35, 16, 0.1),
                                          (1, 40, 9, 40, None), (2, 200, 17, 5, 0.25)])
@interpreted
def test_knn_equals_reference(b, n, s, k, grid):
    ref, query, lengths = _inputs(b, n, s, seed=n + s, grid=grid, ragged_lengths=k < n // 2)
    got = cuda.knn(query, ref, lengths, k)
    want = reference.knn(query, ref, lengths, k)
    assert torch.equal(got[1], want[1]) and torch.equal(got[0], want[0])  # bit-identical distances


@interpreted
def test_large_k_runs_the_reference():
    ref, query, lengths = _inputs(1, 300, 3, seed=5, ragged_lengths=False)
    k = cuda._TOPK_MAX + 1
    assert torch.equal(cuda.knn(query, ref, lengths, k)[1], reference.knn(query, ref, lengths, k)[1])


class FakeGraphs:
    """``torch.cuda.CUDAGraph`` / ``torch.cuda.graph`` on CPU: a capture records the step launches (running none), a
    replay runs what was recorded, on the tensors recorded, as a CUDA graph replays its kernels on fixed addresses."""

    def __init__(self, monkeypatch):
        self.captures = 0
        self.step = cuda._fps_step
        fakes = self

        class Graph:
            def __init__(self):
                self.launches = []

            def replay(self):
                for grid, args, kwargs in self.launches:
                    fakes.step[grid](*args, **kwargs)

        @contextlib.contextmanager
        def capture(graph):
            self.captures += 1

            class Recorder:
                def __getitem__(self, grid):
                    return lambda *args, **kwargs: graph.launches.append((grid, args, kwargs))

            monkeypatch.setattr(cuda, "_fps_step", Recorder())
            yield
            monkeypatch.setattr(cuda, "_fps_step", fakes.step)

        monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
        monkeypatch.setattr(torch.cuda, "graph", capture)
        monkeypatch.setattr(cuda, "_graphs", {})


@interpreted
def test_fps_steps_replayed_from_a_graph_equal_reference(monkeypatch):
    graphs = FakeGraphs(monkeypatch)
    monkeypatch.setenv(cuda.GRAPH_VAR, "1")
    monkeypatch.setattr(cuda, "_FPS_REGISTER_MAX", 16)
    monkeypatch.setattr(cuda, "_FPS_STREAM_MAX", 32)
    monkeypatch.setattr(cuda, "_FPS_CHUNK", 32)
    for seed in (1, 2, 3):  # one capture, then replays on new clouds, starts and lengths of the same shape
        xyz, _, lengths = _inputs(2, 120, 1, seed=seed, grid=0.2)
        start = torch.remainder(torch.tensor([seed * 5, seed]), lengths)
        assert torch.equal(cuda.fps(xyz, lengths, 12, start), reference.fps(xyz, lengths, 12, start))
    assert graphs.captures == 1 and len(cuda._graphs) == 1
    xyz, _, lengths = _inputs(1, 70, 1, seed=4)
    start = torch.tensor([0])
    assert torch.equal(cuda.fps(xyz, lengths, 9, start), reference.fps(xyz, lengths, 9, start))
    assert graphs.captures == 2 and len(cuda._graphs) == 2


@pytest.mark.parametrize("nearest", [False, True])
@interpreted
def test_large_k_ball_query_runs_the_reference(monkeypatch, nearest):
    # order="index" keeps [16, next_pow2(k)] indices per program: k = 2^16 + 1 is beyond Triton's largest tensor.
    xyz, centers, lengths = _inputs(1, 300, 3, seed=6, ragged_lengths=False)
    k = 2**16 + 1
    want = reference.ball_query(xyz, centers, lengths, 0.09, k, nearest)
    calls = []
    monkeypatch.setattr(cuda.reference, "ball_query", lambda *a: calls.append(a[4]) or want)
    got = cuda.ball_query(xyz, centers, lengths, 0.09, k, nearest)
    assert calls == [k] and got is want


@pytest.mark.skipif(INTERPRETER, reason="the interpreter accepts CPU tensors")
def test_cpu_tensors_refused_without_the_interpreter():
    assert cuda.DEVICE_TYPES == ("cuda",)
    with pytest.raises(ConfigError, match="backend='cuda' runs on cuda tensors, got tensors on cpu"):
        ops.knn(cloud(1, 5, 0), cloud(1, 5, 1), 2, backend="cuda")


@interpreted
def test_front_dispatches_to_triton():
    xyz, centers, lengths = _inputs(2, 50, 12, seed=9)
    got = ops.ball_query(xyz, centers, 0.3, 4, order="nearest", lengths=lengths, backend="cuda")
    want = ops.ball_query(xyz, centers, 0.3, 4, order="nearest", lengths=lengths, backend="reference")
    assert torch.equal(got.idx, want.idx) and torch.equal(got.count, want.count)


def test_missing_triton_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` now raises ImportError
    monkeypatch.delitem(sys.modules, "dlparts.ops.cuda")
    monkeypatch.setattr(_dispatch, "_loaded", {})
    monkeypatch.setattr(_dispatch, "_warned", set())
    xyz = cloud(1, 20, 3)
    with pytest.warns(RuntimeWarning, match="'cuda' backend cannot load"):
        got = ops.farthest_point_sample(xyz, 5, backend="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = ops.farthest_point_sample(xyz, 5, backend="cuda")
    want = ops.farthest_point_sample(xyz, 5, backend="reference")
    assert torch.equal(got, want) and torch.equal(again, want)


P32, P64 = "*fp32", "*i64"
NEAREST = dict(xyz_ptr=P32, query_ptr=P32, lengths_ptr=P64, idx_ptr=P64, dist_ptr=P32, count_ptr=P64, n="i32",
               s="i32", radius2="fp32", k="i32", BQ="constexpr", BN="constexpr", KP="constexpr", IN_BALL="constexpr")
# (kernel, signature, constexprs, num_warps) of real launches, the largest blocks of each kernel.
COMPILED = {
    "fps_registers": ("_fps_registers", dict(xyz_ptr=P32, lengths_ptr=P64, start_ptr=P64, idx_ptr=P64, n="i32",
                                             m="i32", BLOCK="constexpr"), dict(BLOCK=cuda._FPS_REGISTER_MAX), 16),
    "fps_chunked": ("_fps_chunked", dict(xyz_ptr=P32, lengths_ptr=P64, start_ptr=P64, idx_ptr=P64, mind_ptr=P32,
                                         n="i32", m="i32", CHUNK="constexpr"), dict(CHUNK=cuda._FPS_CHUNK), 8),
    "fps_step": ("_fps_step", dict(xyz_ptr=P32, lengths_ptr=P64, idx_ptr=P64, mind_ptr=P32, top_ptr=P32, arg_ptr=P64,
                                   n="i32", m="i32", i="i32", parts="i32", CHUNK="constexpr", PARTS="constexpr"),
                 dict(CHUNK=cuda._FPS_CHUNK, PARTS=512), 8),
    "ball_index": ("_ball_index", dict(xyz_ptr=P32, centers_ptr=P32, lengths_ptr=P64, idx_ptr=P64, count_ptr=P64,
                                       n="i32", s="i32", radius2="fp32", k="i32", BQ="constexpr", BN="constexpr",
                                       KP="constexpr"), dict(BQ=16, BN=64, KP=32), 4),
    "ball_nearest": ("_nearest", dict(NEAREST, dist_ptr=P64), dict(BQ=16, BN=64, KP=32, IN_BALL=True), 4),
    "knn": ("_nearest", NEAREST, dict(BQ=16, BN=64, KP=16, IN_BALL=False), 4),
}


def _ptx(name: str, **options) -> str:
    """PTX of a kernel compiled for an H100 (sm_90) by Triton's own toolchain; needs no GPU."""
    compiler = pytest.importorskip("triton.compiler")
    target = pytest.importorskip("triton.backends.compiler").GPUTarget("cuda", 90, 32)
    kernel, signature, constexprs, warps = COMPILED[name]
    source = compiler.ASTSource(getattr(cuda, kernel), signature, constexprs)
    return triton.compile(source, target=target, options=dict(num_warps=warps, **options)).asm["ptx"]


@pytest.mark.skipif(INTERPRETER, reason="the interpreter compiles nothing")
@pytest.mark.parametrize("name", list(COMPILED))
def test_kernels_compile_for_sm90_without_fma(name):
    # What the interpreter cannot show: the kernels compile for a real GPU, and the launch options keep every
    # distance product and sum rounded on its own (no fma.rn.f32 in the PTX, which ptxas --fmad=false then keeps).
    assert cuda._LAUNCH == {"enable_fp_fusion": False}
    assert not re.search(r"\bfma\.rn\.f32", _ptx(name, **cuda._LAUNCH))


@pytest.mark.skipif(INTERPRETER, reason="the interpreter compiles nothing")
def test_triton_contracts_distances_by_default():
    # Without the option Triton fuses dx*dx + dy*dy into an FMA, so the check above is not vacuous.
    assert re.search(r"\bfma\.rn\.f32", _ptx("knn"))


@gpu
@pytest.mark.parametrize("n", [1000, 9000, 70_000])  # the three FPS kernels: registers, streaming, steps
def test_gpu_equals_reference(n):
    xyz, centers, lengths = (t.cuda() for t in _inputs(4, n, 300, seed=n, grid=1e-3))
    start = torch.zeros(4, dtype=torch.int64, device="cuda")
    assert torch.equal(cuda.fps(xyz, lengths, 200, start), reference.fps(xyz, lengths, 200, start))
    for nearest in (False, True):
        got = cuda.ball_query(xyz, centers, lengths, 0.01, 32, nearest)
        want = reference.ball_query(xyz, centers, lengths, 0.01, 32, nearest)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    got, want = cuda.knn(centers, xyz, lengths, 16), reference.knn(centers, xyz, lengths, 16)
    assert torch.equal(got[1], want[1]) and torch.equal(got[0], want[0])


@gpu
def test_gpu_distances_are_not_fused():
    # Coordinates with many significant bits: an FMA (one rounding) differs from dx*dx + dy*dy (two) on most pairs.
    g = torch.Generator().manual_seed(0)
    ref = (torch.rand(1, 4096, 3, generator=g) * 3.7 + 1e-3).cuda()
    query = (torch.rand(1, 512, 3, generator=g) * 3.7).cuda()
    lengths = torch.tensor([4096], device="cuda")
    got, want = cuda.knn(query, ref, lengths, 8), reference.knn(query, ref, lengths, 8)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
