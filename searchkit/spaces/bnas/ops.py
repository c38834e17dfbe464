"""The operations of a binarized DARTS cell, in two presets.

- ``bnas`` — DARTS' 8 ops with every conv binarized as BNAS released them: XNOR weights
  ``alpha * sign(W)`` (one scalar per layer), real-valued activations (ReLU → conv → BN).
- ``binary`` — a binary-friendly set (Bi-Real/BATS style): dense, dilated and grouped binary
  convs, each BN → sign → binary conv (per-channel scaling) with a real-valued residual;
  no binary depthwise-separable convs (a 1-bit depthwise conv saves nothing).

Example:
    >>> import torch
    >>> op = make_op("bnas", "sep_conv_3x3", 8, 1)
    >>> tuple(op(torch.randn(2, 8, 6, 6)).shape)
    (2, 8, 6, 6)
    >>> sorted(PRESETS["binary"])[:3]
    ['avg_pool_3x3', 'bin_conv_3x3', 'bin_conv_5x5']
"""

from __future__ import annotations

import torch
from torch import nn

from searchkit.spaces.bnas.binary import BinaryConv2d


class Zero(nn.Module):
    """DARTS' ``none``: a zero output (strided at reduction)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the side with two offset stride-2 1×1 convs (DARTS), here binarized like BNAS."""

    def __init__(self, c_in: int, c_out: int, binary: bool = True):
        super().__init__()
        conv = BinaryConv2d if binary else nn.Conv2d
        self.relu = nn.ReLU(inplace=False)
        self.a = conv(c_in, c_out // 2, 1, stride=2, bias=False)
        self.b = conv(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        x = self.relu(x)
        y = x[:, :, 1:, 1:]
        if y.shape[-1] < x.shape[-1] and x.shape[-1] % 2:  # odd sides: keep both halves the same size
            y = nn.functional.pad(y, (0, 1, 0, 1))
        return self.bn(torch.cat([self.a(x), self.b(y)], dim=1))


def relu_conv_bn(c_in: int, c_out: int, k: int, stride: int, padding: int, dilation: int = 1,
                 groups: int = 1, binary: bool = True) -> nn.Sequential:
    conv = BinaryConv2d if binary else nn.Conv2d
    return nn.Sequential(nn.ReLU(inplace=False),
                         conv(c_in, c_out, k, stride=stride, padding=padding, dilation=dilation, groups=groups,
                              bias=False), nn.BatchNorm2d(c_out))


def _sep(c: int, k: int, stride: int) -> nn.Sequential:
    p = k // 2
    return nn.Sequential(relu_conv_bn(c, c, k, stride, p, groups=c)[:2], BinaryConv2d(c, c, 1, bias=False),
                         nn.BatchNorm2d(c), relu_conv_bn(c, c, k, 1, p, groups=c)[:2],
                         BinaryConv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))


def _dil(c: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(relu_conv_bn(c, c, k, stride, k - 1, dilation=2, groups=c)[:2],
                         BinaryConv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))


class BinaryBlock(nn.Module):
    """BN → sign → binary conv (per-channel scales), plus a real-valued residual (Bi-Real)."""

    def __init__(self, c: int, k: int, stride: int, dilation: int = 1, groups: int = 1):
        super().__init__()
        self.bn = nn.BatchNorm2d(c)
        self.conv = BinaryConv2d(c, c, k, stride=stride, padding=dilation * (k // 2), dilation=dilation,
                                 groups=groups, bias=False, scaling="channel", binary_input=True)
        self.out = nn.BatchNorm2d(c)
        self.short = nn.Identity() if stride == 1 else nn.AvgPool2d(2, 2, ceil_mode=True)

    def forward(self, x):
        return self.out(self.conv(self.bn(x))) + self.short(x)


def _pool(kind: str, c: int, stride: int) -> nn.Module:
    pool = nn.MaxPool2d(3, stride, 1) if kind == "max" else nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    return nn.Sequential(pool, nn.BatchNorm2d(c, affine=False))


def _skip(c: int, stride: int, binary: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c, binary)


# DARTS' parameter-free ops, shared by both presets
_COMMON = {
    "none": lambda c, s: Zero(s),
    "max_pool_3x3": lambda c, s: _pool("max", c, s),
    "avg_pool_3x3": lambda c, s: _pool("avg", c, s),
    "skip_connect": lambda c, s: _skip(c, s, True),
}

PRESETS: dict[str, dict] = {
    "bnas": {**_COMMON,
             "sep_conv_3x3": lambda c, s: _sep(c, 3, s),
             "sep_conv_5x5": lambda c, s: _sep(c, 5, s),
             "dil_conv_3x3": lambda c, s: _dil(c, 3, s),
             "dil_conv_5x5": lambda c, s: _dil(c, 5, s)},
    "binary": {**_COMMON,
               "bin_conv_3x3": lambda c, s: BinaryBlock(c, 3, s),
               "bin_conv_5x5": lambda c, s: BinaryBlock(c, 5, s),
               "bin_dil_conv_3x3": lambda c, s: BinaryBlock(c, 3, s, dilation=2),
               "bin_group_conv_3x3": lambda c, s: BinaryBlock(c, 3, s, groups=4 if c % 4 == 0 else 1)},
}


def make_op(preset: str, name: str, c: int, stride: int) -> nn.Module:
    return PRESETS[preset][name](c, stride)


__all__ = ["BinaryBlock", "FactorizedReduce", "PRESETS", "Zero", "make_op", "relu_conv_bn"]
