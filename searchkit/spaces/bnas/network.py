"""A DARTS-style network of binarized cells, built from a genome's cells and macro settings.

A cell takes the outputs of the two previous cells (preprocessed to C channels: a
FactorizedReduce after a reduction, else ReLU → binary 1×1 → BN), has 4 intermediate nodes
each summing two ops on earlier states, and concatenates the 4 nodes (4C channels).
Reduction cells double C and apply their input ops at stride 2. The stem (3×3 conv + BN)
and the head (global pool + linear) stay full precision.

Example:
    >>> import torch
    >>> cell = [[["skip_connect", 0], ["sep_conv_3x3", 1]]] * 4
    >>> net = CellNetwork("bnas", cell, cell, C=8, cells=3, reductions=[1], num_classes=10, in_channels=3)
    >>> tuple(net(torch.randn(2, 3, 16, 16)).shape)
    (2, 10)
"""

from __future__ import annotations

import torch
from torch import nn

from searchkit.spaces.bnas.ops import FactorizedReduce, make_op, relu_conv_bn


def canonical(genome: dict) -> dict:
    """The genome with each node's two ``[op, input]`` pairs in (input, op) order."""
    out = dict(genome)
    for c in ("normal", "reduce"):
        out[c] = [sorted(([str(op), int(i)] for op, i in node), key=lambda p: (p[1], p[0])) for node in genome[c]]
    return out


class Cell(nn.Module):
    def __init__(self, preset: str, spec, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.pre0 = FactorizedReduce(c_pp, c) if reduction_prev else relu_conv_bn(c_pp, c, 1, 1, 0)
        self.pre1 = relu_conv_bn(c_p, c, 1, 1, 0)
        self.inputs = [[int(i) for _, i in node] for node in spec]
        self.ops = nn.ModuleList(
            nn.ModuleList(make_op(preset, op, c, 2 if reduction and i < 2 else 1) for op, i in node) for node in spec)

    def forward(self, s0, s1):
        states = [self.pre0(s0), self.pre1(s1)]
        for ops, inputs in zip(self.ops, self.inputs):
            states.append(sum(op(states[i]) for op, i in zip(ops, inputs)))
        return torch.cat(states[2:], dim=1)


class CellNetwork(nn.Module):
    def __init__(self, preset: str, normal, reduce, *, C: int, cells: int, reductions, num_classes: int,
                 in_channels: int = 3, stem_multiplier: int = 3):
        super().__init__()
        c_stem = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        c_pp, c_p, c = c_stem, c_stem, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(cells):
            reduction = i in set(reductions)
            if reduction:
                c *= 2
            self.cells.append(Cell(preset, reduce if reduction else normal, c_pp, c_p, c, reduction, reduction_prev))
            reduction_prev = reduction
            c_pp, c_p = c_p, 4 * c
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x):
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(torch.flatten(self.pool(s1), 1))


__all__ = ["Cell", "CellNetwork", "canonical"]
