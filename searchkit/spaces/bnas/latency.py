"""The XNOR-popcount op as a latency-predictor kernel type (``xnor_conv``), so
``latency.target=`` prices binarized cells as their exported program runs them.

A row is one ``searchkit_xnor::conv`` call: ``(cin, cout, k, stride, pad, dilation, groups,
h, w)``. A profile on the torch runtime times a designed sweep of them (binary convs of the
cells' widths and sides) beside the dense kernels; a genome's kernels are the trace of its
XNOR program (binary convs packed; the network is built with random weights, which do not
change what runs), memoised per archid.

Example:
    >>> run = XNOR_CONV.make((64, 64, 3, 1, 1, 1, 1, 8, 8))
    >>> tuple(run().shape)
    (1, 64, 8, 8)
"""

from __future__ import annotations

import numpy as np
import torch

from searchkit.costs.kernels import KernelType


def _out(h, k, s, p, d):
    return (h + 2 * p - d * (k - 1) - 1) // s + 1


def _make(f: tuple[int, ...]):
    from searchkit.spaces.bnas.binary import BinaryConv2d
    from searchkit.spaces.bnas.xnor import XnorConv2d
    cin, cout, k, s, p, d, g, h, w = f
    torch.manual_seed(cin * 131 + cout)
    conv = BinaryConv2d(cin, cout, k, stride=s, padding=p, dilation=d, groups=g, bias=False, scaling="channel",
                        binary_input=True)
    layer, x = XnorConv2d.of(conv), torch.randn(1, cin, h, w)
    return lambda: layer(x)


def _log(x) -> np.ndarray:
    return np.log2(np.maximum(np.asarray(x, dtype=np.float64), 1.0))


def _features(rows: np.ndarray) -> np.ndarray:
    cin, cout, k, s, p, d, g, h, w = (rows[:, i].astype(np.float64) for i in range(9))
    ho, wo = _out(h, k, s, p, d), _out(w, k, s, p, d)
    words = np.ceil(cin / g / 64)
    word_ops = cout * ho * wo * k * k * words  # XOR+popcount of one 64-bit word each
    return np.stack([_log(cin), _log(cout), k, s, d, _log(g), _log(h * w), _log(ho * wo), _log(word_ops),
                     _log(cin * h * w), _log(cout * ho * wo), _log((h + 2 * p) * (w + 2 * p) * g * words)], axis=1)


def _size(fields: tuple[int, ...]) -> float:
    return float(_features(np.asarray([fields]))[0, 8])  # log2 of the word ops


def _sweep(rng: np.random.Generator, count: int) -> list[tuple[int, ...]]:
    rows = []
    for _ in range(count):
        h = int(rng.choice([4, 8, 16, 32]))
        k, d = [(1, 1), (3, 1), (3, 1), (5, 1), (3, 2), (5, 2)][int(rng.integers(6))]
        s = 2 if h > 4 and rng.random() < 0.2 else 1
        c = int(8 * round(2 ** rng.uniform(3, 8) / 8))
        g = int(rng.choice([1, 1, 1, 2, 4])) if c % 4 == 0 else 1
        rows.append((c, c, k, s, d * (k - 1) // 2, d, g, h, h))
    return rows


def _record(func, args, kwargs, out):
    if str(func) not in ("searchkit_xnor.conv", "searchkit_xnor.conv.default"):
        return None
    x, words, _, _, _, kh, kw, stride, pad, dil = args
    return (x.shape[1], words.shape[0] * words.shape[1], kh, stride, pad, dil, words.shape[0], x.shape[2], x.shape[3])


XNOR_CONV = KernelType("xnor_conv", ("cin", "cout", "k", "stride", "pad", "dilation", "groups", "h", "w"),
                       _make, _features, _sweep, sweep_sizes={"default": 240, "quick": 12}, runtimes=("torch",),
                       size=_size, record=_record)

__all__ = ["XNOR_CONV"]
