"""Latency on ONNX Runtime: kernel rows as ONNX nodes, timed by onnxruntime's own profiler.

A latency profile with ``runtime=onnxruntime`` measures what a CPU deployment runs: the
kernel rows of :mod:`searchkit.costs.kernels` become the ONNX nodes that torch's exporter
writes for them (BN folded into the conv's bias, as ``export format=onnx`` does), many
kernels side by side in one graph, and each kernel's time is read from onnxruntime's
per-node profile (so its own fused node, not the session's call overhead or the layout
reorders at the graph's edges). A profile's calibration networks are also run whole under
that profiler, so their convs are timed as the runtime runs them inside a network
(:func:`measure_convs_in_context`). Whole networks are exported to ONNX and timed with
``session.run`` (:class:`OrtModel`), with all graph optimisations on, as deployed.

Example:
    >>> secs = measure_chain_ort([("conv", (8, 16, 3, 1, 1, 8, 8, 1, 1)), ("linear", (64, 10))], passes=3)
    >>> len(secs), all(0 < s < 0.01 for s in secs)
    (2, True)
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from searchkit.costs.latency import robust_mean
from searchkit.costs.trace import ACTS, ELTWISE, POOLS

RUNTIMES = ("torch", "onnxruntime")
_OPSET = 18


def _helpers():
    from onnx import TensorProto, helper, numpy_helper  # imported when a profile needs them
    return TensorProto, helper, numpy_helper


def _act_nodes(helper, code: int, x: str, y: str, p: str, inits: dict) -> list:
    """The ONNX nodes torch's exporter writes for an activation (ORT fuses some into a conv)."""
    names = {v: k for k, v in ACTS.items()}
    act = names.get(code)
    if act is None or act == "none":
        return [helper.make_node("Identity", [x], [y], name=f"{p}act")]
    if act == "relu":
        return [helper.make_node("Relu", [x], [y], name=f"{p}act")]
    if act == "relu6":
        inits[f"{p}lo"], inits[f"{p}hi"] = np.array(0, np.float32), np.array(6, np.float32)
        return [helper.make_node("Clip", [x, f"{p}lo", f"{p}hi"], [y], name=f"{p}act")]
    if act == "silu":
        return [helper.make_node("Sigmoid", [x], [f"{p}sig"], name=f"{p}sig"),
                helper.make_node("Mul", [x, f"{p}sig"], [y], name=f"{p}act")]
    op = {"sigmoid": "Sigmoid", "hardswish": "HardSwish", "hardsigmoid": "HardSigmoid", "tanh": "Tanh",
          "gelu": "Gelu"}[act]
    node = helper.make_node(op, [x], [y], name=f"{p}act")
    if act == "hardsigmoid":  # torch's slope and offset, not ONNX's defaults
        node = helper.make_node(op, [x], [y], name=f"{p}act", alpha=1 / 6, beta=0.5)
    return [node]


def _kernel(kind: str, f: tuple[int, ...], p: str, rng: np.random.Generator):
    """``(inputs {name: array}, initializers {name: array}, nodes, output name)`` of one row."""
    _, helper, _ = _helpers()
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    inputs, inits, out = {}, {}, f"{p}y"
    if kind == "conv":
        cin, cout, k, s, g, h, w, bn, act = f
        pad = ((s - 1) + (k - 1)) // 2
        inputs[f"{p}x"] = r(1, cin, h, w)
        inits[f"{p}w"], inits[f"{p}b"] = r(cout, cin // g, k, k) * 0.1, np.zeros(cout, np.float32)
        nodes = [helper.make_node("Conv", [f"{p}x", f"{p}w", f"{p}b"], [f"{p}c"], name=f"{p}conv", group=g,
                                  kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4)]
        nodes += _act_nodes(helper, act, f"{p}c", out, p, inits)
    elif kind == "linear":
        fin, fout = f
        inputs[f"{p}x"] = r(1, fin)
        inits[f"{p}w"], inits[f"{p}b"] = r(fout, fin) * 0.1, np.zeros(fout, np.float32)
        nodes = [helper.make_node("Gemm", [f"{p}x", f"{p}w", f"{p}b"], [out], name=f"{p}gemm", transB=1)]
    elif kind == "pool":
        code, c, h, w, oh, ow = f
        inputs[f"{p}x"] = r(1, c, h, w)
        kk = max(1, h // max(oh, 1))
        if code == POOLS["mean"]:
            inits[f"{p}axes"] = np.array([2, 3], np.int64)
            nodes = [helper.make_node("ReduceMean", [f"{p}x", f"{p}axes"], [out], name=f"{p}pool", keepdims=1)]
        elif code == POOLS["adaptive_avg"] and oh == 1 and ow == 1:
            nodes = [helper.make_node("GlobalAveragePool", [f"{p}x"], [out], name=f"{p}pool")]
        elif code >= POOLS["avg3"]:  # 3x3, padding 1 (ONNX has no memory format: _nhwc runs the same)
            op = "MaxPool" if code in (POOLS["max3"], POOLS["max3_nhwc"]) else "AveragePool"
            s = max(1, -(-h // max(oh, 1)))
            nodes = [helper.make_node(op, [f"{p}x"], [out], name=f"{p}pool", kernel_shape=[3, 3], strides=[s, s],
                                      pads=[1] * 4)]
        else:
            op = "MaxPool" if code == POOLS["max"] else "AveragePool"
            nodes = [helper.make_node(op, [f"{p}x"], [out], name=f"{p}pool", kernel_shape=[kk, kk],
                                      strides=[kk, kk])]
    elif kind == "eltwise":
        code, numel, broadcast = f
        if code in (ELTWISE["add"], ELTWISE["mul"]):
            c = max(1, int(round(np.sqrt(numel))))
            if broadcast:
                inputs[f"{p}a"], inputs[f"{p}b"] = r(1, c, max(1, numel // c)), r(1, c, 1)
            else:
                inputs[f"{p}a"], inputs[f"{p}b"] = r(numel), r(numel)
            op = "Add" if code == ELTWISE["add"] else "Mul"
            nodes = [helper.make_node(op, [f"{p}a", f"{p}b"], [out], name=f"{p}op")]
        elif code == ELTWISE["pad"]:
            half = max(1, numel // 2)
            inputs[f"{p}a"] = r(1, half, 1, 1)
            inits[f"{p}pads"] = np.array([0, 0, 0, 0, 0, max(0, numel - half), 0, 0], np.int64)
            nodes = [helper.make_node("Pad", [f"{p}a", f"{p}pads"], [out], name=f"{p}op")]
        elif code == ELTWISE["copy"]:
            inputs[f"{p}a"], inputs[f"{p}b"] = r(max(1, numel // 2)), r(max(1, numel - numel // 2))
            nodes = [helper.make_node("Concat", [f"{p}a", f"{p}b"], [out], name=f"{p}op", axis=0)]
        else:
            inputs[f"{p}a"] = r(numel)
            nodes = _act_nodes(helper, code - 10, f"{p}a", out, p, inits)
    elif kind == "view":
        inputs[f"{p}x"] = r(1, 64, 1, 1)
        nodes = [helper.make_node("Flatten", [f"{p}x"], [out], name=f"{p}view", axis=1)]
    else:
        raise KeyError(f"kernel type '{kind}' has no ONNX form: it cannot be profiled on onnxruntime")
    return inputs, inits, nodes, out


def chain_model(rows: Sequence[tuple[str, tuple[int, ...]]], seed: int = 0):
    """One ONNX graph holding every row as its own kernel (node names ``k<i>_...``, in row
    order), and the inputs to feed it."""
    TensorProto, helper, numpy_helper = _helpers()
    rng = np.random.default_rng(seed)
    feeds, inits, nodes, outs = {}, [], [], []
    for i, (kind, fields) in enumerate(rows):
        ins, ini, nds, out = _kernel(kind, tuple(int(v) for v in fields), f"k{i}_", rng)
        feeds.update(ins)
        inits += [numpy_helper.from_array(v, name=n) for n, v in ini.items()]
        nodes += nds
        outs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "kernels", [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(v.shape))
                                                 for n, v in feeds.items()], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = 8
    return model, feeds


_NODE = re.compile(r"^k(\d+)_")


def _node_events(path: str | Path, feeds: dict | np.ndarray, *, threads: int, passes: int, warmup: int
                 ) -> dict[str, list[dict]]:
    """Each node's ``_kernel_time`` events over ``passes`` runs of the ONNX file (``feeds``:
    its inputs by name, or one array for its only input) under the runtime's per-node
    profiler, nodes in run order (the warm-up runs' events dropped)."""
    from searchkit.deploy import ort_session
    with tempfile.TemporaryDirectory(prefix="searchkit-ort-") as tmp:
        sess = ort_session(path, threads, profile=Path(tmp) / "prof")
        if isinstance(feeds, np.ndarray):
            feeds = {sess.get_inputs()[0].name: feeds}
        for _ in range(warmup + passes):
            sess.run(None, feeds)
        trace = json.loads(Path(sess.end_profiling()).read_text())
    by_node: dict[str, list[dict]] = {}
    for ev in trace:
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            by_node.setdefault(ev["name"], []).append(ev)
    return {name: evs[-passes:] for name, evs in by_node.items()}


def _seconds(events: list[dict]) -> list[float]:
    return [ev["dur"] * 1e-6 for ev in events]


def measure_chain_ort(rows: Sequence[tuple[str, tuple[int, ...]]], *, threads: int = 1, passes: int = 15,
                      warmup: int = 2) -> list[float]:
    """Per-row robust median seconds under onnxruntime: every row a kernel of one graph, timed
    by the runtime's per-node profiler over ``passes`` runs (a kernel's time sums its nodes
    after fusion; reorders the runtime inserts at the graph's edges are not counted)."""
    model, feeds = chain_model(rows)
    with tempfile.TemporaryDirectory(prefix="searchkit-ort-") as tmp:
        path = Path(tmp) / "kernels.onnx"
        path.write_bytes(model.SerializeToString())
        by_node = _node_events(path, feeds, threads=threads, passes=passes, warmup=warmup)
    # a node's j-th event is its time in run j; a kernel's time in run j sums its nodes'
    per_kernel: dict[int, np.ndarray] = {}
    for name, evs in by_node.items():
        if _NODE.match(name):
            i = int(_NODE.match(name).group(1))
            per_kernel[i] = per_kernel.get(i, 0.0) + np.asarray(_seconds(evs))
    return [robust_mean(per_kernel[i].tolist()) if i in per_kernel else 0.0 for i in range(len(rows))]


def _shapes(node: dict, key: str) -> list[list[int]]:
    """A profiled node's input or output shapes (``input_type_shape``, ``output_type_shape``)."""
    return [list(d.values())[0] for d in node["args"].get(key, [])]


def _conv_matches(node: dict, fields: Sequence[int]) -> bool:
    """Whether a profiled Conv node is the conv kernel ``fields``: window, maps and groups
    equal, channel counts equal up to onnxruntime's NCHWc block (it pads them to a multiple of 16)."""
    cin, cout, k, s, g, h, w = fields[:7]
    ins, outs = _shapes(node, "input_type_shape"), _shapes(node, "output_type_shape")
    if len(ins) < 2 or len(ins[0]) != 4 or len(ins[1]) != 4 or not outs or len(outs[0]) != 4:
        return False
    x, wt, y = ins[0], ins[1], outs[0]

    def padded(got: int, want: int) -> bool:
        return want <= got <= -(-want // 16) * 16

    depthwise = g > 1 and g == cin
    return (x[2:] == [h, w] and y[2:] == [-(-h // s), -(-w // s)] and wt[2:] == [k, k]
            and padded(x[1], cin) and padded(y[1], cout) and (wt[1] == 1) == depthwise)


def measure_convs_in_context(path: str | Path, size: Sequence[int], kernels: Sequence, *, threads: int = 1,
                             passes: int = 15, warmup: int = 2) -> tuple[list[float | None], list[float]]:
    """Seconds of each conv kernel of a network as onnxruntime runs the whole network: its
    fused node's time in the per-node profile (the layout, fused adds and activations as
    deployed), and the seconds of the layout reorders the runtime put on its edges (a
    ``ReorderOutput`` reading its output, a ``ReorderInput`` feeding it). ``None`` for
    every other kernel and for a conv no node matched (each node, in run order, takes the
    first unmatched conv kernel of its shape)."""
    x = np.random.default_rng(0).standard_normal((1, *size)).astype(np.float32)
    order = list(_node_events(path, x, threads=threads, passes=passes, warmup=warmup).values())
    op = [evs[0]["args"].get("op_name") for evs in order]
    out: list[float | None] = [None] * len(kernels)
    edges = [0.0] * len(kernels)
    free = [i for i, k in enumerate(kernels) if k.kind == "conv"]
    matched: list[tuple[int, int]] = []  # (position in run order, kernel)
    for pos, evs in enumerate(order):
        i = next((i for i in free if _conv_matches(evs[0], kernels[i].fields)), None) \
            if op[pos] in ("Conv", "FusedConv") else None
        if i is not None:
            free.remove(i)
            matched.append((pos, i))
            out[i] = robust_mean(_seconds(evs))
    for pos, evs in enumerate(order):
        if op[pos] == "ReorderOutput":  # the latest conv before it that wrote its input
            near = (i for p, i in reversed(matched) if p < pos and
                    _shapes(order[p][0], "output_type_shape")[:1] == _shapes(evs[0], "input_type_shape")[:1])
        elif op[pos] == "ReorderInput":  # the next conv after it that reads its output
            near = (i for p, i in matched if p > pos and
                    _shapes(order[p][0], "input_type_shape")[:1] == _shapes(evs[0], "output_type_shape")[:1])
        else:
            continue
        i = next(near, None)
        if i is not None:
            edges[i] += robust_mean(_seconds(evs))
    return out, edges


class OrtModel:
    """An ONNX file in an onnxruntime session, called like a torch module (for
    :func:`~searchkit.costs.latency.measure_models_ms`)."""

    def __init__(self, path: str | Path, threads: int = 1):
        from searchkit.deploy import ort_session
        self.path = Path(path)
        self.session = ort_session(self.path, threads)
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor):
        return self.session.run(None, {self.input: x.numpy()})[0]


def ort_models(nets: Sequence[tuple[torch.nn.Module, Sequence[int]]], folder: str | Path, threads: int = 1
               ) -> list[tuple[OrtModel, tuple]]:
    """Each network exported to ONNX under ``folder`` (as ``export format=onnx`` writes it)
    and opened in a session."""
    from searchkit.deploy import to_onnx
    out = []
    Path(folder).mkdir(parents=True, exist_ok=True)
    for i, (net, size) in enumerate(nets):
        path = Path(folder) / f"m{i}.onnx"
        to_onnx(net.eval(), tuple(size), path)
        out.append((OrtModel(path, threads), tuple(size)))
    return out
