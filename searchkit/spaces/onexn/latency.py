"""The 1×N op as a latency-predictor kernel type (``sparse_conv``) and a genome's kernels.

A ``sparse_conv`` row is one :class:`~searchkit.spaces.onexn.sparse.BlockSparseConv2d` call
as the sparse program (``model_sparse.pt2``) runs it, BatchNorm folded and a ReLU/ReLU6
fused: ``(cin, cout, k, stride, h, w, N, density‰, act, linear)``, the density being the
share of blocks kept. A profile on the torch runtime times a designed sweep of them beside
the dense kernels; :func:`program_kernels` turns a genome into the kernels its sparse
program runs, from one trace of the base (no network is built per genome).

Example:
    >>> run = SPARSE_CONV.make((32, 64, 3, 1, 8, 8, 16, 250, 1, 0))   # 3x3, 25% of blocks kept
    >>> tuple(run().shape)
    (1, 64, 8, 8)
    >>> SPARSE_CONV.features(np.array([[32, 64, 3, 1, 8, 8, 16, 250, 1, 0]])).shape
    (1, 14)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from searchkit.costs.kernels import KernelType
from searchkit.costs.trace import Kernel, trace_kernels

_FUSED_ACTS = (1, 2)  # relu, relu6: the op's epilogue applies them


def _make(f: tuple[int, ...]):
    from searchkit.spaces.onexn.sparse import BlockSparseConv2d, block_mask
    cin, cout, k, s, h, w, n, permille, act, linear = f
    gen = torch.Generator().manual_seed(cin * 7919 + cout * 31 + k)
    if linear:
        weight, like, x = torch.randn(cout, cin, generator=gen), nn.Linear(cin, cout), torch.randn(1, cin)
    else:
        weight = torch.randn(cout, cin, k, k, generator=gen)
        like, x = nn.Conv2d(cin, cout, k, s, k // 2, bias=False), torch.randn(1, cin, h, w)
    mask = block_mask(weight, n, 1 - permille / 1000)
    layer = BlockSparseConv2d.from_dense(weight * mask, torch.zeros(cout), like, n, act=act)
    return lambda: layer(x)


def _log(x) -> np.ndarray:
    return np.log2(np.maximum(np.asarray(x, dtype=np.float64), 1.0))


def _columns(rows: np.ndarray):
    cin, cout, k, s, h, w, n, permille, act, lin = (rows[:, i].astype(np.float64) for i in range(10))
    ho, wo = np.ceil(h / s), np.ceil(w / s)
    kept = np.maximum(1.0, np.round(cout / n * cin * permille / 1000))  # blocks stored
    return cin, cout, k, s, h, w, n, permille, act, lin, ho, wo, kept


def _features(rows: np.ndarray) -> np.ndarray:
    cin, cout, k, s, h, w, n, permille, act, lin, ho, wo, kept = _columns(rows)
    macs = kept * n * k * k * ho * wo
    grid = ho * (wo + k - 1)  # pixels the implicit im2col computes (padded columns included)
    return np.stack([_log(cin), _log(cout), k, s, _log(ho * wo), _log(n), permille / 1000, act, lin,
                     _log(macs), _log(cin * h * w), _log(cout * ho * wo), _log(kept * k * k), _log(grid)], axis=1)


def _size(fields: tuple[int, ...]) -> float:
    return float(_features(np.asarray([fields]))[0, 9])  # log2 of the non-zero MACs


_SIDES = (2, 4, 7, 8, 14, 16, 28, 32, 56)
_BLOCKS = (1, 2, 4, 8, 16, 32)


def _sweep(rng: np.random.Generator, count: int) -> list[tuple[int, ...]]:
    rows = []
    while len(rows) < count:
        linear = rng.random() < 0.1
        if linear:
            cin, cout, k, s, h = int(round(2 ** rng.uniform(6, 11))), int(rng.choice([10, 100, 1000, 256, 512])), 1, 1, 1
        else:
            h = int(rng.choice(_SIDES))
            k = 3 if rng.random() < 0.35 else 1
            s = 2 if k == 1 and h > 2 and rng.random() < 0.1 else 1
            top = 10 if h <= 16 else 8
            cin, cout = (max(8, 8 * round(2 ** rng.uniform(3, top) / 8)) for _ in range(2))
        fits = [b for b in _BLOCKS if cout % b == 0]
        n = int(rng.choice(fits))
        permille = int(rng.choice(np.arange(100, 1001, 100)))
        act = 0 if linear else int(rng.choice([0, 1, 1, 2]))
        row = (cin, cout, k, s, h, h, n, permille, act, int(linear))
        if 2 ** _size(row) > 3e8:  # beyond any layer of the bases at the spaces' sides
            continue
        rows.append(row)
    return rows


def _record(func, args, kwargs, out):
    """The row of a ``searchkit::onexn_conv`` call (what a trace of a sparse program sees)."""
    if str(func) not in ("searchkit.onexn_conv", "searchkit.onexn_conv.default"):
        return None
    x, kcrow, _, kvals, _, k, stride, act = args
    rows, n, kk = kcrow.numel() - 1, kvals.shape[1], k * k
    permille = round(1000 * (kvals.shape[0] // kk) / max(1, rows * x.shape[1]))
    if x.dim() == 2:
        return (x.shape[1], rows * n, 1, 1, 1, 1, n, permille, act, 1)
    return (x.shape[1], rows * n, k, stride, x.shape[2], x.shape[3], n, permille, act, 0)


SPARSE_CONV = KernelType(
    "sparse_conv", ("cin", "cout", "k", "stride", "h", "w", "n", "density_permille", "act", "linear"),
    _make, _features, _sweep, sweep_sizes={"default": 320, "quick": 16}, runtimes=("torch",), size=_size,
    record=_record)


class BaseTrace:
    """The kernels of a base's sparse program with every layer dense (BatchNorm folded), and
    the row of each conv/linear module, from one batch-1 trace."""

    def __init__(self, base: nn.Module, input_size: tuple[int, int, int]):
        from searchkit.spaces.onexn.sparse import to_sparse_program
        program = to_sparse_program(base, {})  # folded as every genome's program is (module paths kept)
        order: list[str] = []
        for path, m in program.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.register_forward_pre_hook(lambda mod, args, path=path: order.append(path))
        rows = trace_kernels(program, input_size)
        layer_rows = [i for i, r in enumerate(rows) if r.kind in ("conv", "linear")]
        if len(layer_rows) != len(order):
            raise ValueError(f"cannot tell which kernel each layer runs ({len(layer_rows)} conv/linear kernels, "
                             f"{len(order)} conv/linear module calls)")
        self.rows = rows
        self.row_of = dict(zip(order, layer_rows))


def program_kernels(trace: BaseTrace, layers: list[tuple[str, int, float, bool]]) -> list[Kernel]:
    """The kernels of the sparse program whose ``layers`` ``(path, N, kept share, runs
    sparse)`` are 1×N: each such layer's dense row becomes its ``sparse_conv`` row (an
    activation the op cannot fuse follows as its own element-wise kernel)."""
    swap: dict[int, list[Kernel]] = {}
    rows = trace.rows
    for path, n, kept, sparse in layers:
        i = trace.row_of.get(path)
        if not sparse or i is None:
            continue
        row = rows[i]
        permille = int(round(1000 * kept))
        if row.kind == "linear":
            fin, fout = row.fields
            # a ReLU/ReLU6 right after a linear layer runs inside the op
            nxt = rows[i + 1] if i + 1 < len(rows) else None
            act = nxt.fields[0] - 10 if nxt is not None and nxt.kind == "eltwise" and \
                nxt.fields[0] - 10 in _FUSED_ACTS and nxt.fields[1] == fout else 0
            swap[i] = [Kernel("sparse_conv", (fin, fout, 1, 1, 1, 1, n, permille, act, 1))]
            if act:
                swap[i + 1] = []
            continue
        cin, cout, k, s, g, h, w, _, act = row.fields
        fused = act if act in _FUSED_ACTS else 0
        out = [Kernel("sparse_conv", (cin, cout, k, s, h, w, n, permille, fused, 0))]
        if act and not fused:
            ho, wo = -(-h // s), -(-w // s)
            out.append(Kernel("eltwise", (10 + act, cout * ho * wo, 0)))
        swap[i] = out
    kernels: list[Kernel] = []
    for i, r in enumerate(rows):
        kernels += swap.get(i, [r])
    return kernels


__all__ = ["BaseTrace", "SPARSE_CONV", "program_kernels"]
