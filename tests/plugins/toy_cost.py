"""A test-only cost model, registered by the line at the bottom and nothing else: the
activation memory of a network (output elements of its convolutions for one input),
counted on the built network, so it prices any space."""

from __future__ import annotations

import torch
from torch import nn

from searchkit.core.costs import CostModel
from searchkit.registry import COSTS

CALLS = {"n": 0}  # cost() calls, for the priced-once test


class ActivationsCost(CostModel):
    name = "activations"
    unit = "floats"
    title = "conv activations"

    def cost(self, genome) -> float:
        CALLS["n"] += 1
        built = self.space.build(genome)
        total = 0

        def hook(module, inputs, output):
            nonlocal total
            total += output.numel()
        handles = [m.register_forward_hook(hook) for m in built.net.modules() if isinstance(m, nn.Conv2d)]
        try:
            with torch.no_grad():
                built.net.eval()(torch.zeros(1, *self.space.input_size(genome)))
        finally:
            for h in handles:
                h.remove()
        return float(total)


COSTS.register("activations", "tests.plugins.toy_cost:ActivationsCost")
