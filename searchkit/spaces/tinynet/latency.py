"""The kernels of an EfficientNet-B0-family network, written out from its block specs (what
the latency predictor reads, without building the network).

Example:
    >>> from searchkit.models.efficientnet import efficientnet_b0_family
    >>> from searchkit.costs.trace import trace_kernels
    >>> net = efficientnet_b0_family(0.5, 0.6, num_classes=10)
    >>> efficientnet_kernels(0.5, 0.6, 48, 10) == trace_kernels(net, (3, 48, 48))
    True
"""

from __future__ import annotations

from searchkit.costs.trace import ACTS, ELTWISE, POOLS, Kernel


def _out(h: int, k: int, s: int) -> int:
    pad = ((s - 1) + (k - 1)) // 2
    return (h + 2 * pad - k) // s + 1


def efficientnet_kernels(width: float, depth: float, side: int, num_classes: int,
                         in_channels: int = 3) -> list[Kernel]:
    """Kernels of ``efficientnet_b0_family(width, depth)`` run at ``side`` (batch 1), in order.

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
