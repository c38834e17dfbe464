"""Which kernels PyTorch runs for one forward pass of a model, as latency-predictor rows.

:func:`trace_kernels` runs the model once (batch 1, eval, ``torch.inference_mode``) under a
``torch.overrides.TorchFunctionMode`` and records the top-level torch functions it calls:
``conv2d``, ``batch_norm``, ``relu``, ``add``, ``linear``, ``adaptive_avg_pool2d``... (what
a module calls inside its own ``forward`` is what is seen: ``nn.Conv2d`` is one ``conv2d``).
Eager PyTorch fuses nothing, but a convolution, the batch norm that reads its output and
the activation that reads the norm's output always run back to back; they are grouped into
one ``conv`` kernel (measured as the same three calls, so the cache effects between them
are in the measurement) - the grouping nn-Meter calls fusion detection. Every other call
becomes a kernel of its own type (see :mod:`searchkit.costs.kernels`).

Example:
    >>> from searchkit.models import build_base
    >>> rows = trace_kernels(build_base("resnet20"), (3, 32, 32))
    >>> sorted({r.kind for r in rows})
    ['conv', 'eltwise', 'linear', 'pool', 'view']
    >>> sum(r.kind == "conv" for r in rows)
    19
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

# Activation codes shared with the kernel sweeps (0 = none).
ACTS = {"none": 0, "relu": 1, "relu6": 2, "silu": 3, "sigmoid": 4, "hardswish": 5,
        "hardsigmoid": 6, "gelu": 7, "tanh": 8}
# Element-wise operations (code -> name); activations appear here when they run alone.
ELTWISE = {"add": 1, "mul": 2, "pad": 3, "copy": 4, **{f"act_{a}": 10 + c for a, c in ACTS.items() if c}}
# Pools: "avg"/"max" have a k×k window at stride k (k = h // oh); "avg3"/"max3" a 3×3 window,
# padding 1, any stride (DARTS' pools); "_nhwc": the same on an NHWC (memory-format) copy of the
# input, the copies in and out included (they are seen as views).
POOLS = {"adaptive_avg": 1, "avg": 2, "max": 3, "mean": 4, "avg3": 5, "max3": 6, "avg3_nhwc": 7, "max3_nhwc": 8}
_REGISTERED = "kernel:"  # a call of a registered kernel type (searchkit.registry.KERNEL_TYPES)


@dataclass(frozen=True)
class Kernel:
    """One kernel: its type and the integer fields that type's features read."""

    kind: str
    fields: tuple[int, ...]


_ACT_FUNCS = {
    F.relu: "relu", torch.relu: "relu", torch.relu_: "relu", F.relu_: "relu", torch.Tensor.relu: "relu",
    torch.Tensor.relu_: "relu", F.relu6: "relu6", F.hardtanh: "relu6", F.hardtanh_: "relu6",
    F.silu: "silu", torch.sigmoid: "sigmoid", torch.Tensor.sigmoid: "sigmoid", F.sigmoid: "sigmoid",
    F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid", F.gelu: "gelu", torch.tanh: "tanh",
    torch.Tensor.sigmoid_: "sigmoid", torch.Tensor.tanh: "tanh",
}
_ADD = {torch.add, torch.Tensor.add, torch.Tensor.add_, torch.Tensor.__add__, torch.Tensor.__iadd__,
        torch.Tensor.__radd__}
_MUL = {torch.mul, torch.Tensor.mul, torch.Tensor.mul_, torch.Tensor.__mul__, torch.Tensor.__imul__,
        torch.Tensor.__rmul__}
_VIEW = {torch.flatten, torch.Tensor.flatten, torch.Tensor.view, torch.Tensor.reshape, torch.reshape,
         torch.Tensor.__getitem__, torch.Tensor.squeeze, torch.Tensor.unsqueeze, F.dropout,
         torch.Tensor.contiguous}


def _shape(t) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape) if isinstance(t, torch.Tensor) else ()


def _pair(v) -> int:
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


class _Recorder(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        from searchkit.registry import KERNEL_TYPES
        self.calls: list[tuple] = []  # (name, fields, input ids, output id)
        types = {name: KERNEL_TYPES.get(name) for name in KERNEL_TYPES.names()}
        self.extra = [(name, kt.record) for name, kt in types.items() if kt.record is not None]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        rec = self._record(func, args, kwargs, out)
        for name, record in self.extra if rec is None else ():
            fields = record(func, args, kwargs, out)
            if fields is not None:
                rec = _REGISTERED + name, tuple(int(v) for v in fields)
                break
        if rec is not None:
            name, fields = rec
            ins = tuple(id(a) for a in args if isinstance(a, torch.Tensor))
            self.calls.append((name, fields, ins, id(out) if isinstance(out, torch.Tensor) else None, out))
        return out

    @staticmethod
    def _record(func, args, kwargs, out):
        x = args[0] if args else None
        if func is F.conv2d or func is torch.conv2d:
            w = args[1] if len(args) > 1 else kwargs["weight"]
            stride = _pair(args[3] if len(args) > 3 else kwargs.get("stride", 1))
            groups = int(args[6] if len(args) > 6 else kwargs.get("groups", 1))
            n, cin, h, wd = _shape(x)
            cout, _, k, _ = _shape(w)
            return "conv2d", (cin, cout, k, stride, groups, h, wd)
        if func is F.batch_norm or func is torch.batch_norm:
            return "batch_norm", _shape(x)[1:]
        if func in _ACT_FUNCS:
            return "act_" + _ACT_FUNCS[func], (_ACT_FUNCS[func], _shape(out))
        if func is F.linear or func is torch._C._nn.linear:
            w = args[1] if len(args) > 1 else kwargs["weight"]
            return "linear", (int(w.shape[1]), int(w.shape[0]))
        if func is F.adaptive_avg_pool2d or func is torch._C._nn.adaptive_avg_pool2d:
            n, c, h, w = _shape(x)
            o = _shape(out)
            return "pool", (POOLS["adaptive_avg"], c, h, w, o[2], o[3])
        if func in (F.avg_pool2d, F.max_pool2d, F.max_pool2d_with_indices, torch.max_pool2d,
                    torch._C._nn.avg_pool2d):
            n, c, h, w = _shape(x)
            o = _shape(out)
            kind = "max" if "max" in getattr(func, "__name__", "") else "avg"
            k = _pair(args[1] if len(args) > 1 else kwargs.get("kernel_size", 1))
            if k == 3 and _pair(args[3] if len(args) > 3 else kwargs.get("padding", 0)) == 1:
                nhwc = x.dim() == 4 and c > 1 and not x.is_contiguous() and \
                    x.is_contiguous(memory_format=torch.channels_last)
                kind += "3_nhwc" if nhwc else "3"
            return "pool", (POOLS[kind], c, h, w, o[2], o[3])
        if func in (torch.mean, torch.Tensor.mean):
            n, *rest = _shape(x)
            c = rest[0] if rest else 1
            h = rest[1] if len(rest) > 1 else 1
            w = rest[2] if len(rest) > 2 else 1
            o = _shape(out)
            return "pool", (POOLS["mean"], c, h, w, o[2] if len(o) > 2 else 1, o[3] if len(o) > 3 else 1)
        if func in _ADD or func in _MUL:
            op = "add" if func in _ADD else "mul"
            a = _shape(args[0])
            b = _shape(args[1]) if len(args) > 1 else ()
            numel = 1
            for s in _shape(out):
                numel *= s
            small = 1
            for s in (b if a == _shape(out) else a):
                small *= s
            return op, (numel, small)
        if func is F.pad or func is torch._C._nn.pad or func is torch.constant_pad_nd:
            numel = 1
            for s in _shape(out):
                numel *= s
            return "pad", (numel,)
        if func in (torch.cat, torch.concat):
            numel = 1
            for s in _shape(out):
                numel *= s
            return "copy", (numel,)
        if func in _VIEW:
            return "view", ()
        return None


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def trace_kernels(model: nn.Module, input_size: tuple[int, int, int]) -> list[Kernel]:
    """The kernels one batch-1 inference forward of ``model`` runs, in order (see module doc)."""
    was_training = model.training
    model.eval()
    x = torch.zeros(1, *input_size)
    rec = _Recorder()
    try:
        with torch.inference_mode(), rec:
            model(x)
    finally:
        model.train(was_training)
    return group_calls(rec.calls)


def group_calls(calls: list[tuple]) -> list[Kernel]:
    """Group conv2d -> batch_norm -> activation chains; map the rest to kernel rows."""
    out: list[Kernel] = []
    i = 0
    while i < len(calls):
        name, fields, ins, oid, _ = calls[i]
        if name == "conv2d":
            bn = act = 0
            last = oid
            j = i + 1
            if j < len(calls) and calls[j][0] == "batch_norm" and last in calls[j][2]:
                bn, last, j = 1, calls[j][3], j + 1
            if j < len(calls) and calls[j][0].startswith("act_") and last in calls[j][2]:
                act, j = ACTS[calls[j][1][0]], j + 1
            cin, cout, k, s, g, h, w = fields
            out.append(Kernel("conv", (cin, cout, k, s, g, h, w, bn, act)))
            i = j
            continue
        if name == "batch_norm":  # a norm that does not follow a conv: an element-wise pass
            out.append(Kernel("eltwise", (ELTWISE["mul"], _numel(fields), 1)))
        elif name.startswith("act_"):
            out.append(Kernel("eltwise", (ELTWISE[name], _numel(fields[1]), 0)))
        elif name in ("add", "mul"):
            numel, small = fields
            out.append(Kernel("eltwise", (ELTWISE[name], numel, int(small < numel))))
        elif name in ("pad", "copy"):
            out.append(Kernel("eltwise", (ELTWISE[name], fields[0], 0)))
        elif name == "linear":
            out.append(Kernel("linear", fields))
        elif name == "pool":
            out.append(Kernel("pool", fields))
        elif name == "view":
            out.append(Kernel("view", ()))
        elif name.startswith(_REGISTERED):
            out.append(Kernel(name[len(_REGISTERED):], fields))
        i += 1
    return out
