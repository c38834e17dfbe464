"""torchvision ResNet-18/50 and MobileNetV2, adapted to 32x32 inputs.

All are built with ``weights=None`` (nothing is downloaded) and ``num_classes``.

* ResNet-18/50: CIFAR-style stem, as is usual for 32x32 images: ``conv1`` becomes a
  3x3 stride-1 conv (64 filters, no bias) and ``maxpool`` becomes ``nn.Identity``, so
  the four stages run at 32/16/8/4 pixels instead of 8/4/2/1. Everything else is the
  stock torchvision model (module names unchanged, so torchvision-style state_dict
  keys apply).
* MobileNetV2: stock, except that the first conv (``features.0.0``) has stride 1
  instead of 2, so the last feature map is 2x2 rather than 1x1 at 32x32.

Example:
    >>> import torch
    >>> resnet18()(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

from torch import nn
from torchvision import models


def _cifar_stem(model: nn.Module) -> nn.Module:
    model.conv1 = nn.Conv2d(3, model.conv1.out_channels, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def resnet18(num_classes: int = 10) -> nn.Module:
    """torchvision ResNet-18 with a CIFAR stem (3x3 stride-1 conv, no max-pool).

    Example:
        >>> resnet18().conv1.stride
        (1, 1)
    """
    return _cifar_stem(models.resnet18(weights=None, num_classes=num_classes))


def resnet50(num_classes: int = 10) -> nn.Module:
    """torchvision ResNet-50 with a CIFAR stem (3x3 stride-1 conv, no max-pool).

    Example:
        >>> resnet50().fc.in_features
        2048
    """
    return _cifar_stem(models.resnet50(weights=None, num_classes=num_classes))


def mobilenet_v2(num_classes: int = 10) -> nn.Module:
    """torchvision MobileNetV2 (width 1.0) with a stride-1 first conv for 32x32 inputs.

    Example:
        >>> mobilenet_v2().features[0][0].stride
        (1, 1)
    """
    model = models.mobilenet_v2(weights=None, num_classes=num_classes)
    model.features[0][0].stride = (1, 1)
    return model
