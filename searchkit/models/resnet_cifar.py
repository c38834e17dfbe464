"""CIFAR ResNets (He et al. 2016, section 4.2): ResNet-20/56/110.

A 3x3 stem conv (16 filters), three stages of ``n`` basic blocks with 16/32/64
filters (stride 2 at the start of stages 2 and 3), global average pooling and
``Linear(64, num_classes)``. Shortcuts are "option A": identity, or, where the shape
changes, a stride-2 subsample with the new planes zero-padded (no parameters).

ResNet-56 has 125,485,056 conv MACs + 640 FC MACs = 125.49M FLOPs and 0.85M params.

Example:
    >>> import torch
    >>> resnet20()(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and zero-pad the new planes on both sides."""

    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.in_planes, self.out_planes, self.stride = in_planes, out_planes, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        pad = self.out_planes - self.in_planes
        return F.pad(x, (0, 0, 0, 0, pad // 2, pad - pad // 2))

    def extra_repr(self) -> str:
        return f"{self.in_planes}, {self.out_planes}, stride={self.stride}"


class CifarBasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with an option-A shortcut.

    Args:
        in_planes: input width (= the block's output width except at a stage start).
        planes: output width of the block.
        stride: stride of ``conv1``.
        mid_planes: width between ``conv1`` and ``conv2`` (``planes`` when None).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, mid_planes: int | None = None):
        super().__init__()
        mid = planes if mid_planes is None else mid_planes
        self.conv1 = nn.Conv2d(in_planes, mid, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut: nn.Module = ZeroPadShortcut(in_planes, planes, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem + three stages of ``depth_n`` :class:`CifarBasicBlock` + GAP + Linear.

    Args:
        depth_n: blocks per stage (3 -> ResNet-20, 9 -> ResNet-56, 18 -> ResNet-110).
        num_classes: outputs of ``fc``.
    """

    def __init__(self, depth_n: int, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        for i, (planes, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
            blocks = []
            for b in range(depth_n):
                blocks.append(CifarBasicBlock(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet20(num_classes: int = 10) -> nn.Module:
    """CIFAR ResNet-20 (3 blocks per stage).

    Example:
        >>> len(resnet20().layer1)
        3
    """
    return CifarResNet(3, num_classes)


def resnet56(num_classes: int = 10) -> nn.Module:
    """CIFAR ResNet-56 (9 blocks per stage; 125.49M FLOPs, 0.85M params).

    Example:
        >>> len(resnet56().layer2)
        9
    """
    return CifarResNet(9, num_classes)


def resnet110(num_classes: int = 10) -> nn.Module:
    """CIFAR ResNet-110 (18 blocks per stage; 252.89M FLOPs, 1.73M params).

    Example:
        >>> len(resnet110().layer3)
        18
    """
    return CifarResNet(18, num_classes)
