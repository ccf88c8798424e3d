"""GPU backend of the point operators: Triton kernels, compiled by Triton at first use (nothing built at install).

Implements the backend interface of :mod:`dlparts.ops.reference` (``fps``, ``ball_query``, ``knn``) and returns
exactly what the reference returns: the same indices, and bit-identical float32 distances.  Importing this module
raises ``ImportError`` when Triton is missing; the dispatch (:mod:`dlparts.ops._dispatch`) then falls back to the
reference with one warning.

Exactness.  Every kernel computes a squared distance as ``dx*dx + dy*dy + dz*dz`` in float32, in that order, and every
launch passes ``enable_fp_fusion=False``: Triton otherwise lets LLVM contract ``a*b + c`` into one FMA (one rounding
instead of two) and runs ptxas with ``--fmad=true``; with the flag off neither happens, so each product and sum is
rounded on its own as in the reference.  Plain ``mul.f32``/``add.f32`` keep denormals (no flush to zero).  Ties go to
the lowest index: reductions use ``tie_break_left`` and the nearest-neighbour kernels compare int64 keys
``(float32 bits of d2) << 32 | index``, whose order is the order of ``(d2, index)`` because ``d2 >= +0``.

Testing without a GPU.  ``TRITON_INTERPRET=1`` makes Triton run the same kernels with numpy on CPU tensors.  Triton
reads the flag when a function is decorated with ``triton.jit``, its own library functions (``tl.min``, ``tl.argmax``,
...) included, so it must be set before ``triton`` is first imported in the process; ``DEVICE_TYPES`` then admits CPU
tensors as well.  The tests also compile every kernel for sm_90 with Triton's bundled toolchain (no GPU needed) and
check the PTX, and the SASS of every specialisation the launches produce, for FMAs; they record the grid and the
current device of every launch on fake CUDA tensors (tests/ops/test_gpu_launches.py).
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from dlparts.ops import reference

# FPS: clouds up to _FPS_REGISTER_MAX points keep coordinates and distances in registers (one program per cloud);
# up to _FPS_STREAM_MAX they stream chunks of _FPS_CHUNK points through a scratch buffer of distances (one program per
# cloud); larger ones run one launch per step with one program per chunk.  The limits are estimates: no GPU has
# timed them yet (benchmarks/ops_gpu.py times all three).
_FPS_REGISTER_MAX = 8192
_FPS_STREAM_MAX = 65536
_FPS_CHUNK = 2048
# The neighbour kernels keep [_QUERY_BLOCK, next_pow2(k)] keys or indices per program in registers; beyond this k
# (Triton refuses tensors above 2^16 elements long before registers run out) the reference runs instead.
_TOPK_MAX = 256
# Each program of the neighbour kernels handles _QUERY_BLOCK queries against chunks of _POINT_BLOCK points.
_QUERY_BLOCK = 16
_POINT_BLOCK = 64
_LAUNCH = {"enable_fp_fusion": False}
# With DLPARTS_FPS_GRAPH=1 the step launches of large-cloud FPS are captured once per (device, B, N, m, chunk) in a CUDA
# graph and replayed: one host launch per call instead of m.  Prepared before any GPU was lent: unverified on hardware.
GRAPH_VAR = "DLPARTS_FPS_GRAPH"
_GRAPHS_KEPT = 4
_graphs: dict[tuple, tuple] = {}  # insertion-ordered: the oldest capture is dropped first

# Under Triton's interpreter the kernels run with numpy on CPU tensors too.
DEVICE_TYPES: tuple[str, ...] = ("cuda", "cpu") if triton.knobs.runtime.interpret else ("cuda",)


def _pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _on_input_device(entry):
    """Run a backend entry with the device of its first tensor current: Triton launches on
    ``torch.cuda.current_device()``, so inputs on ``cuda:1`` while ``cuda:0`` is current would otherwise be read
    through the wrong GPU.  CPU tensors (the interpreter) need no guard."""

    @functools.wraps(entry)
    def guarded(first: torch.Tensor, *args):
        with torch.cuda.device(first.device) if first.device.type == "cuda" else contextlib.nullcontext():
            return entry(first, *args)

    return guarded


# ---------------------------------------------------------------------------------------------------------------- FPS
@triton.jit
def _fps_registers(xyz_ptr, lengths_ptr, start_ptr, idx_ptr, n, m, BLOCK: tl.constexpr):
    """One program per cloud; the whole cloud and its distances to the chosen set live in registers."""
    b = tl.program_id(0).to(tl.int64)
    length = tl.load(lengths_ptr + b)
    base = xyz_ptr + b * n * 3
    offs = tl.arange(0, BLOCK)
    valid = offs < length
    x = tl.load(base + offs * 3, mask=valid, other=0.0)
    y = tl.load(base + offs * 3 + 1, mask=valid, other=0.0)
    z = tl.load(base + offs * 3 + 2, mask=valid, other=0.0)
    # Distance to the chosen set; chosen and missing points are held at -1 so they are never chosen (again).
    mind = tl.where(valid, float("inf"), -1.0)
    cur = tl.load(start_ptr + b)
    for i in range(m):
        tl.store(idx_ptr + b * m + i, cur)
        dx = x - tl.load(base + cur * 3)
        dy = y - tl.load(base + cur * 3 + 1)
        dz = z - tl.load(base + cur * 3 + 2)
        d = dx * dx + dy * dy + dz * dz
        mind = tl.where(mind >= 0, tl.minimum(mind, d), mind)
        mind = tl.where(offs == cur, -1.0, mind)
        cur = tl.argmax(mind, 0, tie_break_left=True).to(tl.int64)


@triton.jit
def _fps_chunked(xyz_ptr, lengths_ptr, start_ptr, idx_ptr, mind_ptr, n, m, CHUNK: tl.constexpr):
    """One program per cloud, streaming the cloud in chunks; ``mind_ptr [B, N]`` starts at +inf."""
    b = tl.program_id(0).to(tl.int64)
    length = tl.load(lengths_ptr + b)
    base = xyz_ptr + b * n * 3
    mbase = mind_ptr + b * n
    cur = tl.load(start_ptr + b)
    for i in range(m):
        tl.store(idx_ptr + b * m + i, cur)
        cx = tl.load(base + cur * 3)
        cy = tl.load(base + cur * 3 + 1)
        cz = tl.load(base + cur * 3 + 2)
        best = -2.0
        best_idx = cur
        for lo in range(0, length, CHUNK):
            offs = lo + tl.arange(0, CHUNK).to(tl.int64)
            valid = offs < length
            dx = tl.load(base + offs * 3, mask=valid, other=0.0) - cx
            dy = tl.load(base + offs * 3 + 1, mask=valid, other=0.0) - cy
            dz = tl.load(base + offs * 3 + 2, mask=valid, other=0.0) - cz
            d = dx * dx + dy * dy + dz * dz
            mind = tl.load(mbase + offs, mask=valid, other=-1.0)
            mind = tl.where(mind >= 0, tl.minimum(mind, d), mind)
            mind = tl.where(offs == cur, -1.0, mind)
            tl.store(mbase + offs, mind, mask=valid)
            top, arg = tl.max(mind, 0, return_indices=True, return_indices_tie_break_left=True)
            # Strictly greater: an equal maximum in a later chunk has a higher index and loses the tie.
            better = top > best
            best_idx = tl.where(better, lo + arg.to(tl.int64), best_idx)
            best = tl.where(better, top, best)
        cur = best_idx


@triton.jit(do_not_specialize=["i"])
def _fps_step(xyz_ptr, lengths_ptr, idx_ptr, mind_ptr, top_ptr, arg_ptr, n, m, i, parts,
              CHUNK: tl.constexpr, PARTS: tl.constexpr):
    """Step ``i`` of FPS, one program per (cloud, chunk of ``CHUNK`` points): many programs share one cloud.

    Program ``pid = b * parts + c`` (all on grid axis 0, whose limit is 2^31 - 1; axis 1 stops at 65,535 chunks).
    ``top_ptr``/``arg_ptr [2, B, PARTS]`` hold each chunk's largest distance and its index, double-buffered: step
    ``i`` reads the maxima of step ``i - 1`` from buffer ``(i + 1) % 2`` (the host seeds it with the start) and writes
    its own to ``i % 2``.  Every program reduces the maxima to the chosen point itself, so no step needs a grid sync.
    """
    pid = tl.program_id(0).to(tl.int64)
    b = pid // parts
    c = pid % parts
    nb = tl.num_programs(0) // parts
    length = tl.load(lengths_ptr + b)
    j = tl.arange(0, PARTS)
    prev = ((i + 1) % 2 * nb + b) * PARTS + j
    tops = tl.load(top_ptr + prev, mask=j < parts, other=-2.0)
    _, at = tl.max(tops, 0, return_indices=True, return_indices_tie_break_left=True)  # chunks in index order
    cur = tl.sum(tl.where(j == at, tl.load(arg_ptr + prev, mask=j < parts, other=0), 0))
    tl.store(idx_ptr + b * m + i, cur, mask=c == 0)
    base = xyz_ptr + b * n * 3
    offs = c * CHUNK + tl.arange(0, CHUNK).to(tl.int64)
    valid = offs < length
    dx = tl.load(base + offs * 3, mask=valid, other=0.0) - tl.load(base + cur * 3)
    dy = tl.load(base + offs * 3 + 1, mask=valid, other=0.0) - tl.load(base + cur * 3 + 1)
    dz = tl.load(base + offs * 3 + 2, mask=valid, other=0.0) - tl.load(base + cur * 3 + 2)
    d = dx * dx + dy * dy + dz * dz
    mind = tl.load(mind_ptr + b * n + offs, mask=valid, other=-1.0)
    mind = tl.where(mind >= 0, tl.minimum(mind, d), mind)
    mind = tl.where(offs == cur, -1.0, mind)
    tl.store(mind_ptr + b * n + offs, mind, mask=valid)
    top, arg = tl.max(mind, 0, return_indices=True, return_indices_tie_break_left=True)
    out = (i % 2 * nb + b) * PARTS + c
    tl.store(top_ptr + out, top)
    tl.store(arg_ptr + out, c * CHUNK + arg.to(tl.int64))


@_on_input_device
def fps(xyz: torch.Tensor, lengths: torch.Tensor, m: int, start: torch.Tensor) -> torch.Tensor:
    """Farthest point sampling (PointNet++ Sec. 3.2): ``xyz [B, N, 3]`` -> ``idx int64 [B, m]``; see the reference.

    Small clouds run in registers, one program per cloud; medium ones stream through one program per cloud; large
    ones run one launch per step over all of the GPU (launch overhead instead of one multiprocessor's bandwidth), or
    with ``DLPARTS_FPS_GRAPH=1`` one replay of those launches from a CUDA graph (unverified on hardware).
    """
    b, n, _ = xyz.shape
    idx = torch.empty(b, m, dtype=torch.int64, device=xyz.device)
    if n <= _FPS_REGISTER_MAX:
        block = max(_pow2(n), 16)
        _fps_registers[(b,)](xyz, lengths, start, idx, n, m, BLOCK=block, num_warps=max(1, min(16, block // 256)),
                             **_LAUNCH)
    elif n <= _FPS_STREAM_MAX:
        _fps_streaming(xyz, lengths, m, start, idx, _FPS_CHUNK)
    elif os.environ.get(GRAPH_VAR, "") == "1":
        _fps_steps_graphed(xyz, lengths, m, start, idx, _FPS_CHUNK)
    else:
        _fps_steps(xyz, lengths, m, start, idx, _FPS_CHUNK)
    return idx


def _fps_streaming(xyz, lengths, m: int, start, idx, chunk: int) -> None:
    """FPS by :func:`_fps_chunked` into ``idx [B, m]`` (``chunk`` a power of two; tests use small ones)."""
    b, n, _ = xyz.shape
    mind = torch.full((b, n), float("inf"), dtype=torch.float32, device=xyz.device)
    _fps_chunked[(b,)](xyz, lengths, start, idx, mind, n, m, CHUNK=chunk, num_warps=max(1, min(16, chunk // 256)),
                       **_LAUNCH)


class _Steps(NamedTuple):
    """The tensors of one FPS by :func:`_fps_step`: inputs, output ``idx [B, m]`` and the state it carries."""

    xyz: torch.Tensor
    lengths: torch.Tensor
    start: torch.Tensor
    idx: torch.Tensor
    mind: torch.Tensor  # [B, N] distance to the chosen set
    top: torch.Tensor  # [2, B, PARTS] each chunk's largest distance, double-buffered
    arg: torch.Tensor  # [2, B, PARTS] its index


def _steps(xyz, lengths, start, idx, chunk: int) -> _Steps:
    b, n, _ = xyz.shape
    parts = _pow2(triton.cdiv(n, chunk))
    f32 = dict(dtype=torch.float32, device=xyz.device)
    return _Steps(xyz, lengths, start, idx, torch.empty((b, n), **f32), torch.empty((2, b, parts), **f32),
                  torch.empty((2, b, parts), dtype=torch.int64, device=xyz.device))


def _reset(st: _Steps) -> None:
    st.mind.fill_(float("inf"))
    st.top.fill_(-2.0)
    st.arg.zero_()
    st.top[1, :, 0] = 0.0  # step 0 reads buffer 1: its only maximum is the start
    st.arg[1, :, 0] = st.start


def _launch_steps(st: _Steps, m: int, chunk: int) -> None:
    b, n, _ = st.xyz.shape
    parts = triton.cdiv(n, chunk)
    for i in range(m):
        _fps_step[(b * parts,)](st.xyz, st.lengths, st.idx, st.mind, st.top, st.arg, n, m, i, parts, CHUNK=chunk,
                                PARTS=_pow2(parts), num_warps=max(1, min(16, chunk // 256)), **_LAUNCH)


def _fps_steps(xyz, lengths, m: int, start, idx, chunk: int) -> None:
    """FPS by ``m`` launches of :func:`_fps_step` into ``idx [B, m]`` (``chunk`` a power of two)."""
    st = _steps(xyz, lengths, start, idx, chunk)
    _reset(st)
    _launch_steps(st, m, chunk)


def _fps_steps_graphed(xyz, lengths, m: int, start, idx, chunk: int) -> None:
    """:func:`_fps_steps` with the ``m`` launches replayed from a CUDA graph of the shape (captured at first use on
    copies of the inputs, after one eager run that compiles the kernel); the state is reset outside the graph."""
    key = (xyz.device, *xyz.shape, m, chunk)
    if key not in _graphs:
        st = _steps(xyz.clone(), lengths.clone(), start.clone(), idx.clone(), chunk)
        _reset(st)
        _launch_steps(st, m, chunk)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            _launch_steps(st, m, chunk)
        while len(_graphs) >= _GRAPHS_KEPT:
            _graphs.pop(next(iter(_graphs)))
        _graphs[key] = graph, st
    graph, st = _graphs[key]
    st.xyz.copy_(xyz)
    st.lengths.copy_(lengths)
    st.start.copy_(start)
    _reset(st)
    graph.replay()
    idx.copy_(st.idx)


# --------------------------------------------------------------------------------------------------------- ball query
@triton.jit
def _ball_index(xyz_ptr, centers_ptr, lengths_ptr, idx_ptr, count_ptr, n, s, radius2, k,
                BQ: tl.constexpr, BN: tl.constexpr, KP: tl.constexpr):
    """Ball query in index order: the first ``k`` points with ``d2 < radius2``; one program per ``BQ`` centers of a
    cloud, numbered ``b * cdiv(s, BQ) + j`` on grid axis 0."""
    blocks = tl.cdiv(s, BQ)
    b = tl.program_id(0).to(tl.int64) // blocks  # program b * blocks + j: B and S share axis 0 (limit 2^31 - 1)
    q = tl.program_id(0).to(tl.int64) % blocks * BQ + tl.arange(0, BQ)
    qmask = q < s
    length = tl.load(lengths_ptr + b)
    base = xyz_ptr + b * n * 3
    cbase = centers_ptr + (b * s + q) * 3
    cx = tl.load(cbase, mask=qmask, other=0.0)
    cy = tl.load(cbase + 1, mask=qmask, other=0.0)
    cz = tl.load(cbase + 2, mask=qmask, other=0.0)
    out = idx_ptr + (b * s + q) * k  # [BQ] row starts
    cnt = tl.zeros([BQ], dtype=tl.int32)
    first = tl.zeros([BQ], dtype=tl.int64)
    near_d = tl.full([BQ], float("inf"), tl.float32)
    near_i = tl.zeros([BQ], dtype=tl.int64)
    lo = 0
    # Once every center of the block holds k points no ball is empty, so the nearest point is not needed either.
    while (lo < length) & (tl.min(tl.where(qmask, cnt, k)) < k):
        p = lo + tl.arange(0, BN).to(tl.int64)
        pmask = p < length
        dx = cx[:, None] - tl.load(base + p * 3, mask=pmask, other=0.0)[None, :]
        dy = cy[:, None] - tl.load(base + p * 3 + 1, mask=pmask, other=0.0)[None, :]
        dz = cz[:, None] - tl.load(base + p * 3 + 2, mask=pmask, other=0.0)[None, :]
        d = dx * dx + dy * dy + dz * dz  # [BQ, BN]
        d = tl.where(pmask[None, :], d, float("inf"))
        inside = d < radius2
        hits = inside.to(tl.int32)
        slot = cnt[:, None] + tl.cumsum(hits, 1) - 1  # [BQ, BN] slot of each hit in its row
        tl.store(out[:, None] + slot, p[None, :], mask=inside & (slot < k) & qmask[:, None])
        first = tl.where(cnt == 0, tl.min(tl.where(inside, p[None, :], n), 1), first)
        cnt += tl.sum(hits, 1)
        top, arg = tl.min(d, 1, return_indices=True, return_indices_tie_break_left=True)
        better = top < near_d
        near_i = tl.where(better, lo + arg.to(tl.int64), near_i)
        near_d = tl.where(better, top, near_d)
        lo += BN
    cnt = tl.minimum(cnt, k)
    fill = tl.where(cnt > 0, first, near_i)
    slots = tl.arange(0, KP)
    tl.store(out[:, None] + slots[None, :], tl.broadcast_to(fill[:, None], (BQ, KP)),
             mask=(slots[None, :] >= cnt[:, None]) & (slots[None, :] < k) & qmask[:, None])
    tl.store(count_ptr + b * s + q, cnt.to(tl.int64), mask=qmask)


@triton.jit
def _nearest(xyz_ptr, query_ptr, lengths_ptr, idx_ptr, dist_ptr, count_ptr, n, s, radius2, k,
             BQ: tl.constexpr, BN: tl.constexpr, KP: tl.constexpr, IN_BALL: tl.constexpr):
    """The ``k`` nearest points by ``(d2, index)``; with ``IN_BALL`` only those with ``d2 < radius2`` (ball query).
    One program per ``BQ`` queries of a cloud, numbered ``b * cdiv(s, BQ) + j`` on grid axis 0.

    Keeps the best keys of each query, ascending, in registers (``[BQ, KP]``, padded with ``NEVER``) and inserts
    into them the keys of each chunk of ``BN`` points that beat the ``k``-th best.
    """
    NEVER: tl.constexpr = 0x7FFFFFFFFFFFFFFF  # larger than the key of every real point
    blocks = tl.cdiv(s, BQ)
    b = tl.program_id(0).to(tl.int64) // blocks  # program b * blocks + j: B and S share axis 0 (limit 2^31 - 1)
    q = tl.program_id(0).to(tl.int64) % blocks * BQ + tl.arange(0, BQ)
    qmask = q < s
    length = tl.load(lengths_ptr + b)
    base = xyz_ptr + b * n * 3
    qbase = query_ptr + (b * s + q) * 3
    cx = tl.load(qbase, mask=qmask, other=0.0)
    cy = tl.load(qbase + 1, mask=qmask, other=0.0)
    cz = tl.load(qbase + 2, mask=qmask, other=0.0)
    slots = tl.arange(0, KP)
    best = tl.full([BQ, KP], NEVER, tl.int64)
    cnt = tl.zeros([BQ], dtype=tl.int32)
    near = tl.full([BQ], NEVER, tl.int64)  # key of the nearest valid point, for an empty ball
    for lo in range(0, length, BN):
        p = lo + tl.arange(0, BN).to(tl.int64)
        pmask = p < length
        dx = cx[:, None] - tl.load(base + p * 3, mask=pmask, other=0.0)[None, :]
        dy = cy[:, None] - tl.load(base + p * 3 + 1, mask=pmask, other=0.0)[None, :]
        dz = cz[:, None] - tl.load(base + p * 3 + 2, mask=pmask, other=0.0)[None, :]
        d = dx * dx + dy * dy + dz * dz  # [BQ, BN]
        key = (d.to(tl.int32, bitcast=True).to(tl.int64) << 32) | p[None, :]  # [BQ, BN], ordered as (d2, index)
        key = tl.where(pmask[None, :], key, NEVER)
        if IN_BALL:
            near = tl.minimum(near, tl.min(key, 1))
            inside = (d < radius2) & pmask[None, :]
            cnt += tl.sum(inside.to(tl.int32), 1)
            key = tl.where(inside, key, NEVER)
        # Insert the chunk's keys that beat the k-th best, smallest first, one per round: the rounds are as many as
        # the most any query of the block gains (all k at first, then few), and a chunk that gains nothing costs none.
        worst = tl.max(tl.where(slots[None, :] < k, best, 0), 1)  # [BQ] k-th best key so far
        rounds = tl.minimum(tl.max(tl.sum((key < worst[:, None]).to(tl.int32), 1), 0), k)
        for _ in range(rounds):
            new = tl.min(key, 1)  # [BQ]
            key = tl.where(key == new[:, None], NEVER, key)
            pos = tl.sum((best < new[:, None]).to(tl.int32), 1)  # [BQ] its slot in the sorted list
            shifted = tl.gather(best, tl.broadcast_to(tl.maximum(slots - 1, 0)[None, :], (BQ, KP)), 1)  # [BQ, KP]
            best = tl.where(slots[None, :] < pos[:, None], best,
                            tl.where(slots[None, :] == pos[:, None], new[:, None], shifted))
    row = (b * s + q)[:, None] * k + slots[None, :]  # [BQ, KP] flat output offsets
    found = best & 0xFFFFFFFF
    if IN_BALL:
        cnt = tl.minimum(cnt, k)
        fill = tl.where(cnt > 0, tl.min(best, 1), near) & 0xFFFFFFFF  # slot 0, or the nearest point
        found = tl.where(slots[None, :] < cnt[:, None], found, fill[:, None])
        tl.store(count_ptr + b * s + q, cnt.to(tl.int64), mask=qmask)
    else:
        dist = (best >> 32).to(tl.int32).to(tl.float32, bitcast=True)
        tl.store(dist_ptr + row, dist, mask=(slots[None, :] < k) & qmask[:, None])
    tl.store(idx_ptr + row, found, mask=(slots[None, :] < k) & qmask[:, None])


@_on_input_device
def ball_query(xyz: torch.Tensor, centers: torch.Tensor, lengths: torch.Tensor, radius2: float, k: int,
               nearest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Ball query (PointNet++ Sec. 3.2): ``idx int64 [B, S, k]``, ``count int64 [B, S]``; see the reference."""
    b, n, _ = xyz.shape
    s = centers.shape[1]
    if k > _TOPK_MAX:
        return reference.ball_query(xyz, centers, lengths, radius2, k, nearest)
    idx = torch.empty(b, s, k, dtype=torch.int64, device=xyz.device)
    count = torch.empty(b, s, dtype=torch.int64, device=xyz.device)
    grid = (b * triton.cdiv(s, _QUERY_BLOCK),)
    blocks = {"BQ": _QUERY_BLOCK, "BN": _POINT_BLOCK, "KP": _pow2(k)}
    if nearest:
        # dist_ptr is never read or written with IN_BALL (the branch is compiled out); idx only fills its place.
        _nearest[grid](xyz, centers, lengths, idx, idx, count, n, s, radius2, k, IN_BALL=True, **blocks, **_LAUNCH)
    else:
        _ball_index[grid](xyz, centers, lengths, idx, count, n, s, radius2, k, **blocks, **_LAUNCH)
    return idx, count


@_on_input_device
def knn(query: torch.Tensor, ref: torch.Tensor, lengths: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest neighbours: ``dists float32 [B, S, k]`` (squared), ``idx int64 [B, S, k]``, by ``(d2, index)``."""
    b, n, _ = ref.shape
    s = query.shape[1]
    if k > _TOPK_MAX:
        return reference.knn(query, ref, lengths, k)
    idx = torch.empty(b, s, k, dtype=torch.int64, device=ref.device)
    dists = torch.empty(b, s, k, dtype=torch.float32, device=ref.device)
    grid = (b * triton.cdiv(s, _QUERY_BLOCK),)
    # count_ptr is never read or written without IN_BALL (the branch is compiled out); idx only fills its place.
    _nearest[grid](ref, query, lengths, idx, dists, idx, n, s, 0.0, k, IN_BALL=False, BQ=_QUERY_BLOCK,
                   BN=_POINT_BLOCK, KP=_pow2(k), **_LAUNCH)
    return dists, idx
