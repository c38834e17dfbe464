"""Kernels of a genome's model without building it (what the latency predictor reads).

* Channel pruning (:class:`ChannelKernelMap`): every field of every kernel of a pruned
  model is affine in the units' kept widths (a conv's in/out channels and groups, an
  element-wise op's size...). The map traces the base once and once per unit with that
  unit one channel narrower, and keeps ``rows = base_rows + J @ (widths - base_widths)``.
  A genome's kernels are then one small integer product; many genomes, one ``einsum``.
* EfficientNet/TinyNet (:func:`efficientnet_kernels`): written out from the block specs,
  in the order the built model runs them (a test compares it with a trace).

Example:
    >>> from searchkit.models import build_base
    >>> from searchkit.models.surgery import channel_units, prune_channels
    >>> from searchkit.costs.trace import trace_kernels
    >>> base = build_base("resnet20"); units = channel_units(base)
    >>> kmap = ChannelKernelMap.build(base, units, (3, 32, 32))
    >>> keep = [0.5] * len(units)
    >>> kmap.kernels(keep) == trace_kernels(prune_channels(base, units, keep), (3, 32, 32))
    True
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import nn

from searchkit.costs.trace import ACTS, ELTWISE, POOLS, Kernel, trace_kernels
from searchkit.models.surgery import ChannelUnit, keep_counts_array, prune_channels


class ChannelKernelMap:
    """Kernel rows of channel-pruned variants of one base, as an affine map of unit widths."""

    def __init__(self, kinds: list[str], base_rows: np.ndarray, jac: np.ndarray, widths: np.ndarray):
        self.kinds = kinds
        self.base_rows = base_rows  # (K, F) int64, fields padded with zeros to F
        self.jac = jac  # (K, F, U) int64
        self.widths = widths  # (U,) base widths
        self.arity = {k: len(_fields(k)) for k in set(kinds)}
        self._by_kind = {k: np.array([i for i, kk in enumerate(kinds) if kk == k]) for k in set(kinds)}

    @classmethod
    def build(cls, base: nn.Module, units: Sequence[ChannelUnit], input_size) -> "ChannelKernelMap":
        ref = trace_kernels(base, input_size)
        width = max((len(k.fields) for k in ref), default=0)
        base_rows = _rows(ref, width)
        widths = np.array([u.channels for u in units], dtype=np.int64)
        jac = np.zeros((len(ref), width, len(units)), dtype=np.int64)
        for i, u in enumerate(units):
            if u.channels < 2:
                continue
            keep = [1.0] * len(units)
            keep[i] = (u.channels - 1) / u.channels
            trace = trace_kernels(prune_channels(base, units, keep), input_size)
            if [k.kind for k in trace] != [k.kind for k in ref]:
                raise ValueError(f"pruning unit {u.name} changes the kernels the model runs; "
                                 "its latency cannot be mapped from widths")
            jac[:, :, i] = base_rows - _rows(trace, width)
        return cls([k.kind for k in ref], base_rows, jac, widths)

    def counts(self, keep: Sequence[float] | np.ndarray) -> np.ndarray:
        return keep_counts_array(self.widths.astype(np.float64), np.asarray(keep, dtype=np.float64))

    def rows(self, keep_matrix: np.ndarray) -> np.ndarray:
        """``(G, K, F)`` kernel rows of ``G`` genomes given as a ``(G, U)`` keep matrix."""
        kept = self.counts(keep_matrix).reshape(len(keep_matrix), -1)
        delta = self.widths[None, :] - kept  # channels removed per unit
        return self.base_rows[None] - np.einsum("kfu,gu->gkf", self.jac, delta)

    def kernels(self, keep: Sequence[float]) -> list[Kernel]:
        """The kernels of one genome's model (equal to tracing the pruned model)."""
        rows = self.rows(np.asarray([keep], dtype=np.float64))[0]
        return [Kernel(kind, tuple(int(v) for v in row[: self.arity[kind]]))
                for kind, row in zip(self.kinds, rows)]

    def grouped(self, keep_matrix: np.ndarray) -> tuple[dict, dict]:
        """Distinct rows per kernel type and per-genome indices into them (for batch prediction)."""
        rows = self.rows(keep_matrix)
        distinct, index = {}, {}
        for kind, where in self._by_kind.items():
            if self.arity[kind] == 0:
                distinct[kind] = np.zeros((1, 0), dtype=np.int64)
                index[kind] = np.zeros((len(rows), len(where)), dtype=np.int64)
                continue
            block = rows[:, where, : self.arity[kind]].reshape(-1, self.arity[kind])
            uniq, inv = np.unique(block, axis=0, return_inverse=True)
            distinct[kind] = uniq
            index[kind] = inv.reshape(len(rows), len(where))
        return distinct, index


def _fields(kind: str) -> tuple[str, ...]:
    from searchkit.costs.kernels import KERNELS
    return KERNELS[kind].fields


def _rows(kernels: list[Kernel], width: int) -> np.ndarray:
    out = np.zeros((len(kernels), width), dtype=np.int64)
    for i, k in enumerate(kernels):
        out[i, : len(k.fields)] = k.fields
    return out


def _out(h: int, k: int, s: int) -> int:
    pad = ((s - 1) + (k - 1)) // 2
    return (h + 2 * pad - k) // s + 1


def efficientnet_kernels(width: float, depth: float, side: int, num_classes: int,
                         in_channels: int = 3) -> list[Kernel]:
    """Kernels of ``efficientnet_b0_family(width, depth)`` run at ``side`` (batch 1), in order.

    Example:
        >>> from searchkit.models.efficientnet import efficientnet_b0_family
        >>> from searchkit.costs.trace import trace_kernels
        >>> net = efficientnet_b0_family(0.5, 0.6, num_classes=10)
        >>> efficientnet_kernels(0.5, 0.6, 48, 10) == trace_kernels(net, (3, 48, 48))
        True
    """
    from searchkit.models.efficientnet import STEM_CHANNELS, block_specs, head_channels
    silu, sig = ACTS["silu"], ACTS["sigmoid"]
    out: list[Kernel] = [Kernel("conv", (in_channels, STEM_CHANNELS, 3, 2, 1, side, side, 1, silu))]
    h = _out(side, 3, 2)
    for stage in block_specs(width, depth):
        for b in stage:
            if b.kind == "ir":
                out.append(Kernel("conv", (b.in_chs, b.mid_chs, 1, 1, 1, h, h, 1, silu)))
            ho = _out(h, b.kernel, b.stride)
            out.append(Kernel("conv", (b.mid_chs, b.mid_chs, b.kernel, b.stride, b.mid_chs, h, h, 1, silu)))
            if b.se_chs:
                out.append(Kernel("pool", (POOLS["mean"], b.mid_chs, ho, ho, 1, 1)))
                out.append(Kernel("conv", (b.mid_chs, b.se_chs, 1, 1, 1, 1, 1, 0, silu)))
                out.append(Kernel("conv", (b.se_chs, b.mid_chs, 1, 1, 1, 1, 1, 0, sig)))
                out.append(Kernel("eltwise", (ELTWISE["mul"], b.mid_chs * ho * ho, int(ho > 1))))
            out.append(Kernel("conv", (b.mid_chs, b.out_chs, 1, 1, 1, ho, ho, 1, 0)))
            if b.skip:
                out.append(Kernel("eltwise", (ELTWISE["add"], b.out_chs * ho * ho, 0)))
            h = ho
            last = b.out_chs
    nf = head_channels(width)
    out.append(Kernel("conv", (last, nf, 1, 1, 1, h, h, 1, silu)))
    out.append(Kernel("pool", (POOLS["mean"], nf, h, h, 1, 1)))
    out.append(Kernel("view", ()))
    out.append(Kernel("linear", (nf, num_classes)))
    return out
