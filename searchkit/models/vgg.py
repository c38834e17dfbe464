"""VGG-16-BN for 32x32 inputs, as used by HRank and ABCPruner on CIFAR-10.

Layout (module names follow HRank's ``models/vgg.py`` so conv indices match its
``convcfg``): ``features`` holds 13 ``Conv2d(3x3, bias=True) + BatchNorm2d + ReLU``
triples with four 2x2 max-pools (``[64,64,M,128,128,M,256,256,256,M,512,512,512,M,
512,512,512]``), so the last three convs run at 2x2; ``avgpool`` (2x2 average) brings
that to 1x1; ``classifier`` is ``linear1 (512->512) + norm1 (BatchNorm1d) + relu1 +
linear2 (512->num_classes)``.

With this pooling the network has 14,982,474 conv + linear weights and biases
(HRank's "14.98M", BN excluded) and 313,196,544 conv MACs (313.73M under the "hrank"
convention of :mod:`searchkit.costs.flops`).

Example:
    >>> import torch
    >>> vgg16_cifar(num_classes=10).eval()(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

VGG16_CFG: tuple = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                    512, 512, 512, "M", 512, 512, 512)


class VGGCifar(nn.Module):
    """A plain conv chain (``features``) + 2x2 avg-pool + two-layer classifier.

    Args:
        cfg: channel counts of the convs, ``"M"`` for a 2x2 max-pool.
        num_classes: outputs of the last Linear.
        hidden: width of the classifier's hidden Linear.
    """

    def __init__(self, cfg=VGG16_CFG, num_classes: int = 10, hidden: int = 512):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for x in cfg:
            if x == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_ch, x, kernel_size=3, padding=1, bias=True),
                           nn.BatchNorm2d(x), nn.ReLU(inplace=True)]
                in_ch = x
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AvgPool2d(2)
        self.classifier = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(in_ch, hidden)),
            ("norm1", nn.BatchNorm1d(hidden)),
            ("relu1", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(hidden, num_classes)),
        ]))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def vgg16_cifar(num_classes: int = 10) -> nn.Module:
    """HRank/ABCPruner VGG-16-BN for 32x32 inputs (14.98M params, 313.73M hrank-FLOPs).

    Example:
        >>> sum(p.numel() for p in vgg16_cifar().parameters()) > 14_000_000
        True
    """
    return VGGCifar(VGG16_CFG, num_classes=num_classes)
