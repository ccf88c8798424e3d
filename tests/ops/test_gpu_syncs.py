"""No host synchronisation on the GPU path: ``aten._local_scalar_dense`` (``.item()``, ``int(t)``, ``bool(t)``) is what
makes the CPU wait for the GPU to drain and what a CUDA-graph capture refuses, so the public operators must not call it.

Without a GPU the GPU path is simulated: :func:`dlparts.ops._checks.on_host` answers False, as for CUDA tensors (the
checks run as device assertions), and the kernels run in Triton's interpreter with ``backend="cuda"``.  Triton reads
``TRITON_INTERPRET=1`` when first imported, so :func:`test_in_the_interpreter` reruns this file in a fresh process with
the flag.  With a GPU the ``gpu`` case counts on real CUDA tensors, nothing patched.
"""


import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

triton = pytest.importorskip("triton")

from dlparts import ops  # noqa: E402
from dlparts.ops import _checks, cuda  # noqa: E402

from .conftest import cloud, run_in_interpreter  # noqa: E402

INTERPRETER = cuda.DEVICE_TYPES == ("cuda", "cpu")
interpreted = pytest.mark.skipif(not INTERPRETER, reason="runs in test_in_the_interpreter's process")
gpu = pytest.mark.skipif(INTERPRETER or not torch.cuda.is_available(), reason="no CUDA GPU")


@pytest.mark.skipif(INTERPRETER, reason="this process already interprets the kernels")
def test_in_the_interpreter():
    run_in_interpreter(__file__)


class HostReads(TorchDispatchMode):
    """Counts ``aten._local_scalar_dense`` calls (reads of a tensor's value by the host) on tensors of ``devices``."""

    def __init__(self, devices: tuple[str, ...]):
        super().__init__()
        self.devices = devices
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and args[0].device.type in self.devices:
            self.count += 1
        return func(*args, **(kwargs or {}))


def _calls(device: str) -> dict:
    """Every public operator, with and without ``lengths`` and each kind of ``start``, on ``device`` tensors."""
    xyz, centers = cloud(2, 300, 0).to(device), cloud(2, 40, 1).to(device)
    feats = torch.randn(2, 300, 4, generator=torch.Generator().manual_seed(2)).to(device)
    lengths = torch.tensor([300, 250], device=device)
    idx = torch.zeros(2, 40, 8, dtype=torch.int64, device=device)
    be = "cuda"
    calls = {
        "fps": lambda: ops.farthest_point_sample(xyz, 20, backend=be),
        "fps lengths": lambda: ops.farthest_point_sample(xyz, 20, lengths=lengths, backend=be),
        "fps start tensor": lambda: ops.farthest_point_sample(xyz, 20, start=lengths - 7, lengths=lengths,
                                                              backend=be),
        "fps random": lambda: ops.farthest_point_sample(xyz, 20, start="random", lengths=lengths, backend=be,
                                                        generator=torch.Generator().manual_seed(0)),
        "fps centroid-farthest": lambda: ops.farthest_point_sample(xyz, 20, start="centroid-farthest", backend=be),
        "knn": lambda: ops.knn(centers, xyz, 16, backend=be),
        "knn lengths": lambda: ops.knn(centers, xyz, 16, lengths, backend=be),
        "ball_query": lambda: ops.ball_query(xyz, centers, 0.2, 8, backend=be),
        "ball_query nearest lengths": lambda: ops.ball_query(xyz, centers, 0.2, 8, order="nearest", lengths=lengths,
                                                             backend=be),
        "three_nn": lambda: ops.three_nn(centers, xyz, backend=be),
        "three_interpolate": lambda: ops.three_interpolate(centers, xyz, feats, backend=be),
        "gather_points": lambda: ops.gather_points(xyz, idx[:, :, 0]),
        "group_points": lambda: ops.group_points(feats, idx),
    }
    if device == "cuda":  # lengths from the host with points on the GPU: checked on the host, no device read
        calls["three_interpolate host lengths"] = lambda: ops.three_interpolate(centers, xyz, feats,
                                                                                lengths=[300, 250], backend=be)
    return calls


def _reads(fn, devices: tuple[str, ...] = ("cpu",)) -> int:
    with HostReads(devices) as reads:
        fn()
    return reads.count


@pytest.fixture
def gpu_path(monkeypatch):
    """Every tensor checked as CUDA tensors are: on the device."""
    monkeypatch.setattr(_checks, "on_host", lambda t: False)


@interpreted
@pytest.mark.parametrize("name", list(_calls("cpu")))
def test_no_host_reads_on_the_gpu_path(gpu_path, name):
    assert _reads(_calls("cpu")[name]) == 0


@interpreted
def test_interpolation_reads_device_lengths_once(gpu_path):
    # Lengths given on the GPU: the smallest cloud sizes the output (3 neighbours, or all of fewer), one read.
    xyz, centers, feats = cloud(2, 30, 0), cloud(2, 5, 1), torch.randn(2, 30, 4)
    lengths = torch.tensor([30, 2])
    assert _reads(lambda: ops.three_interpolate(centers, xyz, feats, lengths=lengths, backend="cuda")) == 1


@interpreted
@pytest.mark.parametrize("call,message", [
    (lambda x: ops.farthest_point_sample(x, 5, lengths=torch.tensor([4, 9])), r"m=5 exceeds the number of points"),
    (lambda x: ops.knn(x, x, 2, torch.tensor([9, 10])), r"lengths must lie in \[1, 9\]"),
    (lambda x: ops.farthest_point_sample(x, 2, start=torch.tensor([0, 9])), r"start must lie in \[0, lengths\[b\]\)"),
    (lambda x: ops.ball_query(x.clone().index_fill_(1, torch.tensor([3]), float("nan")), x, 0.1, 2),
     r"ball_query: xyz holds non-finite coordinates"),
    (lambda x: ops.group_points(x, torch.full((2, 1, 1), 9)), r"group_points: idx must lie in \[0, 8\]"),
])
def test_the_device_checks_still_refuse(gpu_path, call, message):
    # On a GPU a failed device assertion surfaces at the next synchronisation; on CPU tensors it raises at once.
    with pytest.raises(RuntimeError, match=message):
        call(cloud(2, 9, 3))


@gpu
@pytest.mark.parametrize("name", [*_calls("cpu"), "three_interpolate host lengths"])
def test_no_host_reads_on_a_gpu(name):
    fn = _calls("cuda")[name]
    fn()  # compiles the kernels first
    assert _reads(fn, ("cuda",)) == 0
