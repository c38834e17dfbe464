"""Base networks, by registry name.

Example:
    >>> import torch
    >>> from searchkit.models import build_base, default_input_size
    >>> model = build_base("resnet20", num_classes=10)
    >>> s = default_input_size("resnet20")
    >>> model(torch.zeros(1, 3, s, s)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

from torch import nn

from searchkit.registry import MODELS

# Every registered base network is a CIFAR-style / 32x32-adapted model.
_INPUT_SIZES: dict[str, int] = {}
# Smallest input side each network can take: VGG-16 halves its map five times; the
# ResNets (stride-1 stems) and MobileNetV2 (stride-1 first conv) down-sample less.
_MIN_INPUT_SIZES: dict[str, int] = {"vgg16": 32, "mobilenet_v2": 16, "resnet18": 8, "resnet50": 8,
                                    "resnet20": 4, "resnet56": 4, "resnet110": 4,
                                    "efficientnet_b0": 32}


def build_base(name: str, num_classes: int = 10) -> nn.Module:
    """Build the registered base network ``name`` with freshly initialised weights.

    Args:
        name: a name from ``searchkit.registry.MODELS`` (e.g. ``"resnet56"``).
        num_classes: outputs of the classifier.

    Raises:
        searchkit.registry.UnknownNameError: for an unknown name (names the nearest one).

    Example:
        >>> build_base("vgg16").classifier.linear2.out_features
        10
    """
    return MODELS.get(name)(num_classes=num_classes)


def default_input_size(name: str) -> int:
    """Side of the square input the registered model ``name`` is meant for (32).

    Example:
        >>> default_input_size("mobilenet_v2")
        32
    """
    return _INPUT_SIZES.get(MODELS.check(name), 32)


def min_input_size(name: str) -> int:
    """Smallest square input side the registered model ``name`` runs at.

    Example:
        >>> min_input_size("vgg16")
        32
    """
    if ":" in name and name not in _MIN_INPUT_SIZES:
        from searchkit.models.external import min_side
        return min_side(MODELS.check(name))
    return _MIN_INPUT_SIZES.get(MODELS.check(name), 32)
