"""What a GPU would refuse or misread, checked without one: the grid and the current device of every Triton launch.

The kernels are replaced by recorders (``kernel[grid](...)`` records the grid and the device made current, and runs
nothing) and the inputs are fake CUDA tensors (``FakeTensorMode``: shapes and devices, no memory), so the clouds can
have the sizes where CUDA's grid limits bite: axis 0 up to 2^31 - 1 programs, axes 1 and 2 up to 65,535.

The recorded arguments also give every specialisation the launches produce (Triton compiles one per pattern of
integer arguments equal to 1 or divisible by 16, per constexpr and per ``num_warps``); each is compiled for sm_90 by
Triton's bundled toolchain and its machine code (SASS, by the bundled ``cuobjdump``) must hold no FFMA.
"""

import contextlib
import re

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

triton = pytest.importorskip("triton")

from dlparts.ops import cuda  # noqa: E402

KERNELS = ("_fps_registers", "_fps_chunked", "_fps_step", "_ball_index", "_nearest")
LIMITS = (2**31 - 1, 65_535, 65_535)


class Launches:
    """Stands in for the Triton kernels and for ``torch.cuda.device``: records ``(kernel, grid, current device)`` in
    ``rows`` and ``(kernel, args, kwargs)`` in ``calls``."""

    def __init__(self, monkeypatch):
        self.rows: list[tuple[str, tuple, torch.device | None]] = []
        self.calls: list[tuple[str, tuple, dict]] = []
        self.current: list[torch.device] = []
        for name in KERNELS:
            monkeypatch.setattr(cuda, name, self._kernel(name))
        monkeypatch.setattr(torch.cuda, "device", self._device)

    def _kernel(self, name: str):
        launches = self

        class Kernel:
            def __getitem__(self, grid):
                assert isinstance(grid, tuple)

                def launch(*args, **kwargs):
                    launches.rows.append((name, grid, launches.current[-1] if launches.current else None))
                    launches.calls.append((name, args, kwargs))

                return launch

        return Kernel()

    @contextlib.contextmanager
    def _device(self, device):
        self.current.append(torch.device(device))
        try:
            yield
        finally:
            self.current.pop()


def _fake(device: str, *shape: int, dtype=torch.float32) -> torch.Tensor:
    return torch.empty(*shape, dtype=dtype, device=device)


def _run_all(b: int, n: int, s: int, device: str) -> None:
    """Every backend entry on fake tensors of ``b`` clouds of ``n`` points and ``s`` queries each."""
    xyz, centers = _fake(device, b, n, 3), _fake(device, b, s, 3)
    lengths, start = _fake(device, b, dtype=torch.int64), _fake(device, b, dtype=torch.int64)
    cuda.fps(xyz, lengths, 2, start)
    for nearest in (False, True):
        cuda.ball_query(xyz, centers, lengths, 0.01, 32, nearest)
    cuda.knn(centers, xyz, lengths, 16)


@pytest.mark.parametrize("b,n,s", [(2, 2**20 + 16, 2**20 + 16),  # the whole-scene query: 65,537 blocks of 16
                                   (1, 2**27 + 16, 16),  # large-cloud FPS: 65,537 chunks of 2,048
                                   (70_000, 16, 16),  # more clouds than axis 1 could hold
                                   (3, 5000, 40), (3, 20_000, 40)])  # the register and streaming FPS kernels
def test_every_grid_within_cuda_limits(monkeypatch, b, n, s):
    launches = Launches(monkeypatch)
    with FakeTensorMode(allow_non_fake_inputs=True):
        _run_all(b, n, s, "cuda:0")
    kernels = {name for name, _, _ in launches.rows}
    assert {"_ball_index", "_nearest"} <= kernels and kernels & {"_fps_registers", "_fps_chunked", "_fps_step"}
    for name, grid, _ in launches.rows:
        assert 1 <= len(grid) <= 3 and all(isinstance(g, int) and g >= 1 for g in grid), (name, grid)
        assert all(g <= limit for g, limit in zip(grid, LIMITS)), (name, grid)


def test_grids_cover_every_query_block_and_chunk(monkeypatch):
    # Folding the clouds into axis 0 must still give each (cloud, block) one program.
    launches = Launches(monkeypatch)
    with FakeTensorMode(allow_non_fake_inputs=True):
        _run_all(3, 2**27 + 16, 2**20 + 16, "cuda:0")
    grids = {name: grid for name, grid, _ in launches.rows}
    assert grids["_fps_step"] == (3 * triton.cdiv(2**27 + 16, cuda._FPS_CHUNK),)
    assert grids["_ball_index"] == grids["_nearest"] == (3 * triton.cdiv(2**20 + 16, cuda._QUERY_BLOCK),)


@pytest.mark.parametrize("device", ["cuda:1", "cuda:3"])
def test_every_launch_runs_on_the_inputs_device(monkeypatch, device):
    launches = Launches(monkeypatch)
    with FakeTensorMode(allow_non_fake_inputs=True):
        for n in (100, 20_000, 70_000):  # the three FPS kernels
            _run_all(2, n, 40, device)
    assert {name for name, _, _ in launches.rows} == set(KERNELS)
    assert all(current == torch.device(device) for _, _, current in launches.rows), launches.rows
    assert launches.current == []


def test_cpu_tensors_enter_no_cuda_device(monkeypatch):
    # The interpreter's CPU tensors: torch.cuda.device would refuse a CPU device, so no guard is entered.
    launches = Launches(monkeypatch)
    with FakeTensorMode(allow_non_fake_inputs=True):
        _run_all(2, 100, 40, "cpu")
    assert launches.rows and all(current is None for _, _, current in launches.rows)


# Shapes that reach every specialisation: one point, one sample, one neighbour, one query; sizes divisible by 16 and
# not; each FPS block size (16 ... 8192 points in registers, the streaming and the step kernels); k up to 256.
SHAPES = ([(1, 1, 1, 1, 1)] + [(2, n, 16, 32, 17) for n in (16, 100, 300, 700, 1500, 3000, 5000, 8192, 20_000, 70_000)]
          + [(3, 300, s, k, 16) for s in (1, 40) for k in (1, 2, 3, 16, 256)])
POINTER = {torch.float32: "*fp32", torch.int64: "*i64"}


def _specialisations(monkeypatch) -> dict:
    """``{key: (kernel, signature, constexprs, attrs, options)}`` of every distinct compile the SHAPES launch."""
    from triton.backends.compiler import BaseBackend
    from triton._C.libtriton import native_specialize_impl

    originals = {name: getattr(cuda, name) for name in KERNELS}
    launches = Launches(monkeypatch)
    with FakeTensorMode(allow_non_fake_inputs=True):
        for b, n, s, k, m in SHAPES:
            xyz, centers = _fake("cuda:0", b, n, 3), _fake("cuda:0", b, s, 3)
            lengths, start = _fake("cuda:0", b, dtype=torch.int64), _fake("cuda:0", b, dtype=torch.int64)
            cuda.fps(xyz, lengths, min(m, n), start)
            for nearest in (False, True):
                cuda.ball_query(xyz, centers, lengths, 0.01, k, nearest)
            cuda.knn(centers, xyz, lengths, min(k, n))
    found = {}
    for name, args, kwargs in launches.calls:
        kernel = originals[name]
        signature, constexprs, attrs = {}, {}, {}
        for i, param in enumerate(kernel.params):
            value = args[i] if i < len(args) else kwargs[param.name]
            if param.is_constexpr:
                signature[param.name], constexprs[param.name] = "constexpr", value
                continue
            if isinstance(value, torch.Tensor):  # fresh allocations: 16-byte aligned, as the launch sees them
                kind, attr = POINTER[value.dtype], "D"
            else:
                kind, attr = native_specialize_impl(BaseBackend, value, False, not param.do_not_specialize, True)
            signature[param.name] = kind
            if kind == "constexpr":
                constexprs[param.name] = value
            elif attr == "D":
                attrs[(i,)] = [["tt.divisibility", 16]]
        options = {key: v for key, v in kwargs.items() if key not in signature}
        key = (name, tuple(signature.items()), tuple(constexprs.items()), tuple(attrs), tuple(options.items()))
        found[key] = (kernel, signature, constexprs, attrs, options)
    return found


@pytest.mark.skipif(cuda.DEVICE_TYPES == ("cuda", "cpu"), reason="the interpreter compiles nothing")
def test_no_ffma_in_the_sass_of_any_specialisation(monkeypatch):
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    found = _specialisations(monkeypatch)
    monkeypatch.undo()
    names = {key[0] for key in found}
    assert names == set(KERNELS) and len(found) >= 25
    assert any(dict(key[2]).get("k") == 1 for key in found)  # k = 1 is a constexpr specialisation of its own
    multiplied = set()
    for kernel, signature, constexprs, attrs, options in found.values():
        assert options["enable_fp_fusion"] is False
        source = ASTSource(kernel, signature, constexprs, attrs)
        sass = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options).asm["sass"]
        assert not re.search(r"\bFFMA\b", sass), (kernel.__name__, constexprs, signature)
        if re.search(r"\bFMUL\b", sass):  # (a cloud of one point and one sample computes no distance at all)
            multiplied.add(kernel.__name__)
            fused = source, dict(options, enable_fp_fusion=True)
    assert multiplied == set(KERNELS)
    # The same source with Triton's default fuses the distances: the check above can see an FFMA.
    source, options = fused
    assert re.search(r"\bFFMA\b", triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options).asm["sass"])
