"""The ONNX forms of the point operators (dlparts.ops.onnx) give exactly the reference's indices in onnxruntime."""

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from dlparts.ops import onnx as forms  # noqa: E402
from dlparts.ops import reference  # noqa: E402

F, I = TensorProto.FLOAT, TensorProto.INT64


def run(nodes, inputs: dict, outputs: list[str]) -> list[np.ndarray]:
    """One ONNX model of ``nodes`` in the default domain only, run by onnxruntime on ``inputs``; outputs named ``d``
    are float32, the others int64."""
    types = {np.dtype(np.float32): F, np.dtype(np.int64): I}
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info(k, types[v.dtype], None)
                                           for k, v in inputs.items()],
                              [helper.make_tensor_value_info(o, F if o == "d" else I, None) for o in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", forms.OPSET)])
    assert {n.domain for n in model.graph.node} <= {""}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(outputs, inputs)


def clouds(seed: int, b: int = 3, n: int = 40, grid: bool = False):
    """Random clouds, or points on a coarse grid (many exact distance ties), with ragged lengths."""
    g = np.random.default_rng(seed)
    xyz = (g.integers(0, 3, (b, n, 3)) * 0.5 if grid else g.normal(size=(b, n, 3))).astype(np.float32)
    lengths = np.array([n] + list(g.integers(5, n + 1, b - 1)), dtype=np.int64)
    return xyz, lengths


@pytest.mark.parametrize("grid", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_fps_loop_equals_the_reference(seed, grid):
    xyz, lengths = clouds(seed, grid=grid)
    start = np.array([0, 3, 1], dtype=np.int64)
    got = run(forms.fps_nodes("xyz", "lengths", "start", "idx", 5, "fps"),
              {"xyz": xyz, "lengths": lengths, "start": start}, ["idx"])[0]
    expected = reference.fps(torch.from_numpy(xyz), torch.from_numpy(lengths), 5, torch.from_numpy(start))
    assert got.tolist() == expected.tolist()


def test_fps_ties_go_to_the_lowest_index():
    xyz = np.array([[[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0]]], dtype=np.float32)
    got = run(forms.fps_nodes("xyz", "lengths", "start", "idx", 4, "fps"),
              {"xyz": xyz, "lengths": np.array([4]), "start": np.array([0])}, ["idx"])[0]
    assert got.tolist() == [[0, 1, 2, 3]]


@pytest.mark.parametrize("k", [4, 60])  # 60 > N: every slot past the count repeats slot 0
@pytest.mark.parametrize("nearest", [False, True])
@pytest.mark.parametrize("grid", [False, True])
def test_ball_query_equals_the_reference(nearest, grid, k):
    xyz, lengths = clouds(1, grid=grid)
    far = np.full((3, 2, 3), 9.0, dtype=np.float32)  # two centers with empty balls
    centers = np.concatenate([xyz[:, :7] + np.float32(0.1), far], axis=1)
    radius2 = float(np.float32(0.5) * np.float32(0.5))  # on the grid, points at exactly 0.5 are outside
    nodes = forms.ball_query_nodes("xyz", "centers", "lengths", "idx", "count", radius2, k, nearest, "bq")
    idx, count = run(nodes, {"xyz": xyz, "centers": centers, "lengths": lengths}, ["idx", "count"])
    want_idx, want_count = reference.ball_query(torch.from_numpy(xyz), torch.from_numpy(centers),
                                                torch.from_numpy(lengths), radius2, k, nearest)
    assert count.tolist() == want_count.tolist() and idx.tolist() == want_idx.tolist()
    assert (count == 0).any() and (count > 0).any()  # both the padding rule and the empty-ball rule were used


def test_ball_query_is_strict_at_the_radius():
    xyz = np.array([[[0, 0, 0], [0.5, 0, 0], [0.25, 0, 0]]], dtype=np.float32)
    nodes = forms.ball_query_nodes("xyz", "c", "lengths", "idx", "count", 0.25, 3, False, "bq")
    idx, count = run(nodes, {"xyz": xyz, "c": xyz[:, :1], "lengths": np.array([3])}, ["idx", "count"])
    assert idx.tolist() == [[[0, 2, 0]]] and count.tolist() == [[2]]


@pytest.mark.parametrize("grid", [False, True])
def test_knn_equals_the_reference(grid):
    xyz, lengths = clouds(2, grid=grid)
    query = xyz[:, :9] + np.float32(0.05)
    dists, idx = run(forms.knn_nodes("q", "ref", "lengths", "d", "i", 3, "knn"),
                     {"q": query, "ref": xyz, "lengths": lengths}, ["d", "i"])
    want_d, want_i = reference.knn(torch.from_numpy(query), torch.from_numpy(xyz), torch.from_numpy(lengths), 3)
    assert idx.tolist() == want_i.tolist()
    assert np.array_equal(dists, want_d.numpy())  # bit-identical float32 arithmetic
