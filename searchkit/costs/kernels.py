"""Kernel types of the latency predictor: each is a feature function, a builder and a sweep.

A kernel type names the integer fields of its rows (as :mod:`searchkit.costs.trace`
records them), builds a runnable closure that executes exactly those torch calls (for
profiling), turns rows into regression features, and draws a designed sweep of rows.
A space's own kernel type (a block-sparse conv) is one :class:`KernelType` named in
:data:`searchkit.registry.KERNEL_TYPES`: ``KERNELS[name]`` finds it there, and a profile
sweeps it (``sweep_sizes``) on the runtimes that run it (``runtimes``).

Example:
    >>> import numpy as np
    >>> conv = KERNELS["conv"]
    >>> run = conv.make((16, 32, 3, 1, 1, 8, 8, 1, 1))  # conv 16->32 3x3 + BN + ReLU at 8x8
    >>> tuple(run().shape)
    (1, 32, 8, 8)
    >>> conv.features(np.array([[16, 32, 3, 1, 1, 8, 8, 1, 1]])).shape[0]
    1
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from searchkit.costs.trace import ACTS, ELTWISE, POOLS

_ACT_CALL: dict[int, Callable] = {
    ACTS["relu"]: F.relu, ACTS["relu6"]: F.relu6, ACTS["silu"]: F.silu, ACTS["sigmoid"]: torch.sigmoid,
    ACTS["hardswish"]: F.hardswish, ACTS["hardsigmoid"]: F.hardsigmoid, ACTS["gelu"]: F.gelu,
    ACTS["tanh"]: torch.tanh,
}


@dataclass(frozen=True)
class KernelType:
    """One kind of kernel; ``fields`` name the row's integers."""

    name: str
    fields: tuple[str, ...]
    make: Callable[[tuple[int, ...]], Callable[[], torch.Tensor]]
    features: Callable[[np.ndarray], np.ndarray]
    sweep: Callable[[np.random.Generator, int], list[tuple[int, ...]]]
    # A registered type's rows per profile sweep ("default", "quick"; the built-in ones
    # are in searchkit.costs.profiling.SWEEPS) and the runtimes that run it.
    sweep_sizes: dict = field(default_factory=dict)
    runtimes: tuple[str, ...] = ("torch", "onnxruntime")
    # log2 of a row's work (MACs or elements): a profile times similar-sized kernels together
    size: Callable[[tuple[int, ...]], float] | None = None
    # (func, args, kwargs, out) -> the row of a torch call of this type, or None (a trace
    # sees a registered type's op through this; the built-in ones are in costs.trace)
    record: Callable | None = None


def _log(x) -> np.ndarray:
    return np.log2(np.maximum(np.asarray(x, dtype=np.float64), 1.0))


# --- conv (+ BN + activation) -------------------------------------------------------------
def _make_conv(f: tuple[int, ...]) -> Callable[[], torch.Tensor]:
    cin, cout, k, s, g, h, w, bn, act = f
    x = torch.randn(1, cin, h, w)
    weight = torch.randn(cout, cin // g, k, k) * 0.1
    bias = None if bn else torch.zeros(cout)
    pad = ((s - 1) + (k - 1)) // 2
    mean, var, gamma, beta = torch.zeros(cout), torch.ones(cout), torch.ones(cout), torch.zeros(cout)
    act_fn = _ACT_CALL.get(act)

    def run() -> torch.Tensor:
        y = F.conv2d(x, weight, bias, s, pad, 1, g)
        if bn:
            y = F.batch_norm(y, mean, var, gamma, beta, False, 0.1, 1e-5)
        if act_fn is not None:
            y = act_fn(y)
        return y
    return run


def _conv_out(h, k, s):
    pad = ((s - 1) + (k - 1)) // 2
    return (h + 2 * pad - k) // s + 1


def _conv_features(rows: np.ndarray) -> np.ndarray:
    cin, cout, k, s, g, h, w, bn, act = (rows[:, i].astype(np.float64) for i in range(9))
    ho, wo = _conv_out(h, k, s), _conv_out(w, k, s)
    macs = cout * ho * wo * (cin / g) * k * k
    dw = (g == cin) & (g > 1)
    # Last, so forests fitted before they existed still read their own columns: whether the
    # widths fill whole vector blocks (onnxruntime's NCHWc convs need multiples of 8;
    # MobileNetV2 at its own widths ran 1.6x faster there than pruned to odd ones).
    return np.stack([_log(cin), _log(cout), k, s, _log(g), _log(h * w), bn, act, dw.astype(float),
                     _log(macs), _log(cin * h * w), _log(cout * ho * wo), _log(cout * cin / g * k * k),
                     (cin % 8 == 0).astype(float), (cout % 8 == 0).astype(float)], axis=1)


_SIDES = (1, 2, 4, 7, 8, 14, 16, 28, 32, 56, 64, 112)


def _sweep_conv(rng: np.random.Generator, n: int) -> list[tuple[int, ...]]:
    rows = []
    while len(rows) < n:
        h = int(rng.choice(_SIDES))
        k = int(rng.choice([1, 1, 3, 3, 5]))
        s = int(rng.choice([1, 1, 1, 2])) if h > 1 else 1
        depthwise = rng.random() < 0.25
        cin = int(round(2 ** rng.uniform(2, 10 if h <= 16 else 8)))
        if rng.random() < 0.05:
            cin = 3
        cout = cin if depthwise else int(round(2 ** rng.uniform(2, 10 if h <= 16 else 8)))
        if rng.random() < 0.4 and cin > 3:  # the widths bases are built with: multiples of 8
            cin = max(8, 8 * round(cin / 8))
            cout = cin if depthwise else max(8, 8 * round(cout / 8))
        g = cin if depthwise else 1
        bn = int(rng.random() < 0.85)
        act = int(rng.choice([0, 1, 1, 2, 3, 3, 4, 5]))
        macs = cout * _conv_out(h, k, s) ** 2 * cin / g * k * k
        if macs > 1.2e9:  # bigger than any layer of the spaces; would dominate the budget
            continue
        rows.append((cin, cout, k, s, g, h, h, bn, act))
    return rows


# --- linear --------------------------------------------------------------------------------
def _make_linear(f):
    fin, fout = f
    x, w, b = torch.randn(1, fin), torch.randn(fout, fin) * 0.1, torch.zeros(fout)
    return lambda: F.linear(x, w, b)


def _linear_features(rows):
    fin, fout = rows[:, 0].astype(float), rows[:, 1].astype(float)
    return np.stack([_log(fin), _log(fout), _log(fin * fout)], axis=1)


def _sweep_linear(rng, n):
    return [(int(round(2 ** rng.uniform(3, 12))), int(round(2 ** rng.uniform(1, 11)))) for _ in range(n)]


# --- pooling -------------------------------------------------------------------------------
def _make_pool(f):
    kind, c, h, w, oh, ow = f
    x = torch.randn(1, c, h, w)
    if kind == POOLS["adaptive_avg"]:
        return lambda: F.adaptive_avg_pool2d(x, (oh, ow))
    if kind == POOLS["mean"]:
        return lambda: x.mean((2, 3), keepdim=True)
    if kind in (POOLS["avg3"], POOLS["max3"], POOLS["avg3_nhwc"], POOLS["max3_nhwc"]):
        s = max(1, -(-h // max(oh, 1)))
        pool = F.max_pool2d if kind in (POOLS["max3"], POOLS["max3_nhwc"]) else F.avg_pool2d
        args = {} if pool is F.max_pool2d else {"count_include_pad": False}
        if kind in (POOLS["avg3"], POOLS["max3"]):
            return lambda: pool(x, 3, s, 1, **args)
        return lambda: pool(x.contiguous(memory_format=torch.channels_last), 3, s, 1, **args).contiguous()
    k = max(1, h // max(oh, 1))
    if kind == POOLS["max"]:
        return lambda: F.max_pool2d(x, k, k)
    return lambda: F.avg_pool2d(x, k, k)


def _pool_features(rows):
    kind, c, h, w, oh, ow = (rows[:, i].astype(float) for i in range(6))
    return np.stack([kind, _log(c), _log(h * w), _log(oh * ow), _log(c * h * w), _log(c * oh * ow)], axis=1)


def _sweep_pool(rng, n):
    rows = []
    for _ in range(n):
        kind = int(rng.choice([1, 1, 3, 4, 4, 2, 5, 6, 7, 8]))
        h = int(rng.choice(_SIDES[2:]))
        c = int(round(2 ** rng.uniform(3, 11)))
        if kind in (1, 4):
            o = 1
        elif kind >= 5:  # 3x3 windows at stride 1 or 2, up to 4M inputs (a stem's max pool)
            o = h if rng.random() < 0.5 else -(-h // 2)
            c = min(c, max(8, 2 ** 22 // (h * h)))
        else:
            o = max(1, h // 2)
        rows.append((kind, c, h, h, o, o))
    return rows


# --- element-wise --------------------------------------------------------------------------
def _make_eltwise(f):
    code, numel, broadcast = f
    a = torch.randn(numel)
    if code in (ELTWISE["add"], ELTWISE["mul"]):
        # broadcast: a per-channel gate (N, C, H, W) * (N, C, 1, 1), as squeeze-excite runs it
        c = max(1, int(round(math.sqrt(numel))))
        b = torch.randn(c, 1) if broadcast else torch.randn(numel)
        a2 = a[: (numel // c) * c].view(c, -1) if broadcast else a
        op = torch.add if code == ELTWISE["add"] else torch.mul
        return lambda: op(a2, b)
    if code == ELTWISE["pad"]:
        half = a[: max(1, numel // 2)].view(1, -1, 1, 1)
        extra = numel - half.numel()
        return lambda: F.pad(half, (0, 0, 0, 0, 0, extra))
    if code == ELTWISE["copy"]:
        half = a[: numel // 2]
        rest = a[numel // 2:]
        return lambda: torch.cat([half, rest])
    act = _ACT_CALL[code - 10]
    return lambda: act(a)


def _eltwise_features(rows):
    code, numel, broadcast = (rows[:, i].astype(float) for i in range(3))
    return np.stack([code, _log(numel), broadcast], axis=1)


def _sweep_eltwise(rng, n):
    codes = [ELTWISE["add"], ELTWISE["add"], ELTWISE["mul"], ELTWISE["pad"], ELTWISE["copy"],
             *[10 + ACTS[a] for a in ("relu", "relu", "silu", "sigmoid", "relu6", "hardswish")]]
    rows = []
    for _ in range(n):
        code = int(rng.choice(codes))
        numel = int(round(2 ** rng.uniform(4, 20)))
        bc = int(code == ELTWISE["mul"] and rng.random() < 0.6)
        rows.append((code, numel, bc))
    return rows


# --- views (flatten, slicing): dispatch cost only --------------------------------------------
def _make_view(f):
    x = torch.randn(1, 64, 1, 1)
    return lambda: torch.flatten(x, 1)


class _Kernels(dict):
    """The built-in kernel types; a registered one (``KERNEL_TYPES``) is looked up on demand."""

    def __missing__(self, kind: str) -> KernelType:
        from searchkit.registry import KERNEL_TYPES
        if kind not in KERNEL_TYPES:
            raise KeyError(kind)
        return KERNEL_TYPES.get(kind)


def registered_types() -> dict[str, KernelType]:
    """The kernel types spaces register (``KERNEL_TYPES``), imported."""
    from searchkit.registry import KERNEL_TYPES
    return {name: KERNEL_TYPES.get(name) for name in KERNEL_TYPES.names()}


KERNELS: dict[str, KernelType] = _Kernels({
    "conv": KernelType("conv", ("cin", "cout", "k", "stride", "groups", "h", "w", "bn", "act"),
                       _make_conv, _conv_features, _sweep_conv),
    "linear": KernelType("linear", ("in", "out"), _make_linear, _linear_features, _sweep_linear),
    "pool": KernelType("pool", ("kind", "c", "h", "w", "oh", "ow"), _make_pool, _pool_features, _sweep_pool),
    "eltwise": KernelType("eltwise", ("op", "numel", "broadcast"), _make_eltwise, _eltwise_features,
                          _sweep_eltwise),
    "view": KernelType("view", (), _make_view, lambda rows: np.zeros((len(rows), 1)),
                       lambda rng, n: [()] * min(n, 3)),
})
