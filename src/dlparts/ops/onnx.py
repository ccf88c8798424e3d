"""The point operators in standard ONNX (opset 17, default domain only): the exportable forms of :mod:`dlparts.ops`.

The TorchScript-based exporter of ``torch.onnx`` meets the custom ops of :mod:`dlparts.ops._library` as opaque nodes.
:func:`register` gives each a symbolic that writes a placeholder node (domain :data:`PLACEHOLDER`, the op's attributes
kept), and :func:`inline` then replaces every placeholder of the saved model with the operator spelt in standard ONNX
operators, so the file runs in plain onnxruntime with neither torch nor dlparts installed.

The semantics are those of :mod:`dlparts.ops.reference`, exactly: squared float32 distances as ``dx*dx + dy*dy +
dz*dz`` (each product and sum its own node, nothing reduced out of order), farthest point sampling as an ONNX ``Loop``
over ``ArgMax`` (first maximum: ties to the lowest index), ball query and kNN by ``TopK`` (equal values keep index
order), strict ``d2 < r2``, slots past ``count`` repeating slot 0, an empty ball answered by its nearest point.  The
start indices are computed by the traced torch code before the FPS node, so ``0`` and ``"centroid-farthest"`` export
as they are; ``"random"`` draws from a generator the graph cannot carry, so export traces whatever start the example
run drew (no model of the registry uses it).
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

PLACEHOLDER = "dlparts.placeholder"
OPSET = 17


class _Graph:
    """Nodes appended under one name prefix: ``g.op("Add", a, b)`` returns the (unique) name of its output."""

    def __init__(self, prefix: str, outer: _Graph | None = None):
        self.prefix, self.nodes, self._n, self.outer = prefix, [], 0, outer

    def name(self) -> str:
        self._n += 1
        return f"{self.prefix}/{self._n}"

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs):
        outs = [self.name() for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self.name(), **attrs))
        return outs[0] if outputs == 1 else outs

    def const(self, value, dtype=np.int64) -> str:
        """A constant, made in the outermost graph: a loop body would otherwise remake it at every step."""
        if self.outer is not None:
            return self.outer.const(value, dtype)
        out = self.name()
        self.nodes.append(helper.make_node("Constant", [], [out], value=numpy_helper.from_array(
            np.asarray(value, dtype=dtype), out)))
        return out

    def sq_dist(self, a: str, b: str) -> str:
        """Squared distances of ``a [..., 3]`` and ``b [..., 3]`` (broadcast) -> ``[...]``, as the reference rounds."""
        d = self.op("Sub", a, b)
        sq = self.op("Mul", d, d)
        x, y, z = self.op("Split", sq, outputs=3, axis=-1)  # [..., 1] each
        return self.op("Squeeze", self.op("Add", self.op("Add", x, y), z), self.const([-1]))

    def valid(self, lengths: str, n: str) -> str:
        """``[B, N]`` bool, True where point ``n`` exists in cloud ``b`` (``n``: the scalar N)."""
        arange = self.op("Range", self.const(0), n, self.const(1))
        return self.op("Less", self.op("Unsqueeze", arange, self.const([0])),
                       self.op("Unsqueeze", lengths, self.const([1])))

    def size(self, t: str, axis: int) -> str:
        """The scalar int64 size of ``t`` along ``axis``."""
        return self.op("Gather", self.op("Shape", t), self.const(axis), axis=0)


def fps_nodes(xyz: str, lengths: str, start: str, idx: str, m: int, prefix: str) -> list:
    """Farthest point sampling: ``xyz float [B, N, 3]``, ``lengths int64 [B]``, ``start int64 [B]`` -> ``idx int64
    [B, m]`` (written to the value named ``idx``), an ONNX ``Loop`` of ``m`` steps as the reference's loop.

    The coordinates are made planar once (``[B, 3, N]``), so each step's subtraction broadcasts one scalar along a
    row of N (onnxruntime's fast path; ``[B, N, 3] - [B, 1, 3]`` takes its general one, several times slower); the
    distances, the running minimum and the chosen mark stay ``[B, 1, N]`` and the current index ``[B, 1, 1]``, so no
    step reshapes anything; the chosen point is marked by one ``ScatterElements``; the picks leave as scan outputs.
    Ten nodes a step; in onnxruntime's profile (``benchmarks/export.py --profile``) the ``[B, N, 3]`` form's ``Sub``
    alone took half of the loop's time.
    """
    g = _Graph(prefix)
    n = g.size(xyz, 1)
    planar = g.op("Transpose", xyz, perm=[0, 2, 1])  # [B, 3, N]
    inf, minus1 = g.const(np.inf, np.float32), g.const(-1.0, np.float32)
    mind0 = g.op("Unsqueeze", g.op("Where", g.valid(lengths, n), inf, minus1), g.const([1]))  # [B, 1, N]
    cur0 = g.op("Unsqueeze", start, g.const([1, 2]))  # [B, 1, 1]
    shape_b31 = g.op("Concat", g.op("Shape", start), g.const([3, 1]), axis=0)
    held = g.op("Expand", minus1, g.op("Shape", cur0))  # [B, 1, 1], the mark of a chosen point

    body = _Graph(prefix + "/body", outer=g)
    it, cond, mind_in, cur = body.name(), body.name(), body.name(), body.name()
    at = body.op("GatherElements", planar, body.op("Expand", cur, shape_b31), axis=2)  # [B, 3, 1]
    sq = body.op("Mul", *[body.op("Sub", planar, at)] * 2)  # [B, 3, N]
    x, y, z = body.op("Split", sq, outputs=3, axis=1)  # [B, 1, N] each
    d = body.op("Add", body.op("Add", x, y), z)  # [B, 1, N], rounded as the reference's sq_dist
    mind = body.op("Min", mind_in, d)  # the reference's update: d >= +0, so points held at -1 stay there
    mind_out = body.op("ScatterElements", mind, cur, held, axis=2)  # [B, 1, N], the chosen point held at -1
    nxt = body.op("ArgMax", mind_out, axis=2, keepdims=1, select_last_index=0)  # [B, 1, 1], first maximum
    graph = helper.make_graph(
        body.nodes, f"{prefix}/fps_step",
        [helper.make_tensor_value_info(it, TensorProto.INT64, []),
         helper.make_tensor_value_info(cond, TensorProto.BOOL, []),
         helper.make_tensor_value_info(mind_in, TensorProto.FLOAT, None),
         helper.make_tensor_value_info(cur, TensorProto.INT64, None)],
        [helper.make_tensor_value_info(cond, TensorProto.BOOL, []),  # inputs passed straight out: no Identity
         helper.make_tensor_value_info(mind_out, TensorProto.FLOAT, None),
         helper.make_tensor_value_info(nxt, TensorProto.INT64, None),
         helper.make_tensor_value_info(cur, TensorProto.INT64, None)])  # the scan output: this step's pick
    _, _, picked = g.op("Loop", g.const(m), g.const(True, np.bool_), mind0, cur0, outputs=3, body=graph)
    flat = g.op("Squeeze", picked, g.const([2, 3]))  # [m, B, 1, 1] -> [m, B]
    g.nodes.append(helper.make_node("Transpose", [flat], [idx], name=g.name(), perm=[1, 0]))  # [B, m]
    return g.nodes


def _pairwise(g: _Graph, query: str, ref: str, lengths: str) -> tuple[str, str]:
    """``query [B, S, 3]``, ``ref [B, N, 3]`` -> (``d2 [B, S, N]``, ``valid bool [B, 1, N]``)."""
    d = g.sq_dist(g.op("Unsqueeze", query, g.const([2])), g.op("Unsqueeze", ref, g.const([1])))  # [B, S, N]
    valid = g.op("Unsqueeze", g.valid(lengths, g.size(ref, 1)), g.const([1]))  # [B, 1, N]
    return d, valid


def _smallest(g: _Graph, key: str, k: int, fill) -> tuple[str, str]:
    """The ``k`` smallest of ``key [B, S, N]`` by (value, index), for any N: ``k`` columns of ``fill`` appended first
    (TopK needs ``k <= N``; they sort after every real entry of equal value). -> (values, indices) ``[B, S, k]``."""
    shape = g.op("Concat", g.op("Slice", g.op("Shape", key), g.const([0]), g.const([2])), g.const([k]), axis=0)
    pad = g.op("Expand", g.const(fill, np.float32 if isinstance(fill, float) else np.int64), shape)  # [B, S, k]
    return g.op("TopK", g.op("Concat", key, pad, axis=2), g.const([k]), outputs=2, axis=2, largest=0, sorted=1)


def ball_query_nodes(xyz: str, centers: str, lengths: str, idx: str, count: str, radius2: float, k: int,
                     nearest: bool, prefix: str) -> list:
    """Ball query: ``xyz [B, N, 3]``, ``centers [B, S, 3]``, ``lengths [B]`` -> ``idx int64 [B, S, k]``, ``count
    int64 [B, S]`` (the values named ``idx`` and ``count``), the reference's rules in standard ONNX."""
    g = _Graph(prefix)
    d, valid = _pairwise(g, centers, xyz, lengths)
    inside = g.op("And", g.op("Less", d, g.const(radius2, np.float32)), valid)  # [B, S, N]
    inf = g.const(np.inf, np.float32)
    if nearest:
        order = _smallest(g, g.op("Where", inside, d, inf), k, float("inf"))[1]  # [B, S, k], by (d2, index)
    else:
        n = g.size(xyz, 1)
        arange = g.op("Range", g.const(0), n, g.const(1))  # [N]
        key = g.op("Where", inside, arange, n)  # [B, S, N]
        order = _smallest(g, key, k, np.iinfo(np.int64).max)[0]  # [B, S, k], inside indices ascending
    cnt = g.op("Min", g.op("ReduceSum", g.op("Cast", inside, to=TensorProto.INT64), g.const([2]), keepdims=0),
               g.const(k))  # [B, S]
    nearest_any = g.op("ArgMin", g.op("Where", valid, d, inf), axis=2, keepdims=0, select_last_index=0)  # [B, S]
    slot0 = g.op("Squeeze", g.op("Slice", order, g.const([0]), g.const([1]), g.const([2])), g.const([2]))  # [B, S]
    first = g.op("Where", g.op("Greater", cnt, g.const(0)), slot0, nearest_any)  # [B, S]
    in_count = g.op("Less", g.const(np.arange(k).reshape(1, 1, k)), g.op("Unsqueeze", cnt, g.const([2])))
    g.nodes.append(helper.make_node("Where", [in_count, order, g.op("Unsqueeze", first, g.const([2]))], [idx],
                                    name=g.name()))
    g.nodes.append(helper.make_node("Identity", [cnt], [count], name=g.name()))
    return g.nodes


def knn_nodes(query: str, ref: str, lengths: str, dists: str, idx: str, k: int, prefix: str) -> list:
    """kNN: ``query [B, S, 3]``, ``ref [B, N, 3]``, ``lengths [B]`` -> ``dists float [B, S, k]`` (squared),
    ``idx int64 [B, S, k]``, sorted by (d2, index); ``k <= lengths[b]`` as the front checks."""
    g = _Graph(prefix)
    d, valid = _pairwise(g, query, ref, lengths)
    key = g.op("Where", valid, d, g.const(np.inf, np.float32))  # [B, S, N]
    g.nodes.append(helper.make_node("TopK", [key, g.const([k])], [dists, idx], name=g.name(), axis=2, largest=0,
                                    sorted=1))
    return g.nodes


# ------------------------------------------------------------------------------------------------- export plumbing
def _fps_symbolic(g, xyz, lengths, m, start, backend):
    idx = g.op(f"{PLACEHOLDER}::fps", xyz, lengths, start, m_i=m)
    idx.setType(lengths.type().with_dtype(torch.int64).with_sizes([None, m]))
    return idx


def _ball_query_symbolic(g, xyz, centers, lengths, radius2, k, nearest, backend):
    idx, count = g.op(f"{PLACEHOLDER}::ball_query", xyz, centers, lengths, radius2_f=radius2, k_i=k,
                      nearest_i=int(nearest), outputs=2)
    idx.setType(centers.type().with_dtype(torch.int64).with_sizes([None, None, k]))
    count.setType(centers.type().with_dtype(torch.int64).with_sizes([None, None]))
    return idx, count


def _knn_symbolic(g, query, ref, lengths, k, backend):
    dists, idx = g.op(f"{PLACEHOLDER}::knn", query, ref, lengths, k_i=k, outputs=2)
    dists.setType(query.type().with_dtype(torch.float32).with_sizes([None, None, k]))
    idx.setType(query.type().with_dtype(torch.int64).with_sizes([None, None, k]))
    return dists, idx


def register() -> None:
    """Give ``dlparts::fps``, ``::ball_query`` and ``::knn`` their placeholder symbolics for ``torch.onnx.export``
    (the TorchScript-based exporter; call before exporting, again is harmless)."""
    from torch.onnx import register_custom_op_symbolic, symbolic_helper

    forms = {"fps": (_fps_symbolic, "v", "v", "i", "v", "none"),
             "ball_query": (_ball_query_symbolic, "v", "v", "v", "f", "i", "b", "none"),
             "knn": (_knn_symbolic, "v", "v", "v", "i", "none")}
    for name, (fn, *args) in forms.items():
        register_custom_op_symbolic(f"dlparts::{name}", symbolic_helper.parse_args(*args)(fn), OPSET)


def inline(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace every placeholder node of ``model`` (in place) by its standard ONNX form; drop the placeholder domain."""
    nodes = []
    for position, node in enumerate(model.graph.node):
        if node.domain != PLACEHOLDER:
            nodes.append(node)
            continue
        a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
        prefix = f"dlparts_{node.op_type}_{position}"  # the names of the new values start with it: unique
        if node.op_type == "fps":
            nodes += fps_nodes(*node.input, node.output[0], a["m"], prefix)
        elif node.op_type == "ball_query":
            nodes += ball_query_nodes(*node.input, *node.output, a["radius2"], a["k"], bool(a["nearest"]), prefix)
        else:
            nodes += knn_nodes(*node.input, *node.output, a["k"], prefix)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    kept = [o for o in model.opset_import if o.domain != PLACEHOLDER]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return model
