"""A test-only space, registered by the line at the bottom and nothing else: a plain CNN of
``depth`` conv layers of ``width`` channels with a ``kernel`` size (a categorical gene),
trained from scratch. It offers no analytic costs: the cost models build and count it."""

from __future__ import annotations

from dataclasses import dataclass

from optuna.distributions import CategoricalDistribution, IntDistribution
from torch import nn

from searchkit.core.space import Built, Space, SpaceEnv
from searchkit.registry import SPACES


@dataclass(frozen=True)
class ToyOptions:
    max_depth: int = 3
    max_width: int = 16


class ToySpace(Space):
    name = "toy"
    Options = ToyOptions

    def __init__(self, options: ToyOptions, env: SpaceEnv):
        self.options = options
        self.env = env

    @classmethod
    def from_config(cls, options, env):
        return cls(options or ToyOptions(), env)

    def distributions(self):
        return {"depth": IntDistribution(1, self.options.max_depth),
                "width": IntDistribution(4, self.options.max_width, step=4),
                "kernel": CategoricalDistribution([1, 3])}

    def genome_of(self, params):
        return {"depth": int(params["depth"]), "width": int(params["width"]), "kernel": int(params["kernel"])}

    def params_of(self, genome):
        return dict(genome)

    def base_genome(self):
        return {"depth": self.options.max_depth, "width": self.options.max_width, "kernel": 3}

    def input_size(self, genome=None):
        return (self.env.in_channels, self.env.image_size, self.env.image_size)

    def build(self, genome, *, seed=0):
        import torch
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            layers, cin = [], self.env.in_channels
            for _ in range(genome["depth"]):
                layers += [nn.Conv2d(cin, genome["width"], genome["kernel"], padding=genome["kernel"] // 2),
                           nn.BatchNorm2d(genome["width"]), nn.ReLU()]
                cin = genome["width"]
            net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, self.env.num_classes))
        return Built(net, {}, self.input_size(genome))

    def describe(self, genome):
        return {"summary": f"{genome['depth']} x conv{genome['kernel']} of {genome['width']}",
                "layers": {"names": [f"conv{i}" for i in range(genome["depth"])],
                           "values": [genome["width"]] * genome["depth"], "label": "channels"}}


SPACES.register("toy", "tests.plugins.toy_space:ToySpace")
