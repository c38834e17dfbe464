"""A user's own network, as `space.model=tests.nets.user_net:make` names it: a branchy CNN
with a residual stream, a concatenation, a depthwise conv and an SE gate."""

import torch
from torch import nn


class Gate(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class UserNet(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.res = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                                 nn.Conv2d(32, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.left = nn.Sequential(nn.Conv2d(16, 24, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        self.right = nn.Sequential(nn.Conv2d(16, 8, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(32, 32, 3, stride=2, padding=1, groups=32, bias=False),
                                nn.BatchNorm2d(32), nn.ReLU(), Gate(32))
        self.head = nn.Sequential(nn.Conv2d(32, 48, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(48, num_classes))

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.res(x))
        x = torch.cat([self.left(x), self.right(x)], 1)
        return self.head(self.dw(x))


def make(num_classes: int = 10) -> nn.Module:
    return UserNet(num_classes)


def linear_only(num_classes: int = 10) -> nn.Module:
    """Nothing to prune: the only channels are the outputs."""
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))
