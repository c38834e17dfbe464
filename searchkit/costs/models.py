"""The ``flops`` and ``params`` cost models (MACs of conv + linear layers; all parameters).

Analytic where the space offers it (``Space.flops_params``: no model is built); otherwise
the genome's network is built and counted (:func:`~searchkit.costs.flops.count_costs`),
which is exact for any space, only slower.

Example:
    >>> from searchkit.core.space import SpaceEnv
    >>> from searchkit.registry import SPACES
    >>> space = SPACES.get("toy").from_config(None, SpaceEnv(num_classes=10, image_size=8))
    >>> g = space.base_genome()
    >>> FlopsCost(space).cost(g) == count_costs(space.build(g).net, space.input_size(g)).flops
    True
"""

from __future__ import annotations

from searchkit.core.costs import CostModel
from searchkit.core.genome import Genome
from searchkit.core.space import BinaryWeights, SparseWeights
from searchkit.costs.flops import count_costs


class _Counted(CostModel):
    index = 0  # (flops, params)

    def cost(self, genome: Genome) -> float:
        fast = self.space.flops_params(genome)
        if fast is not None:
            return float(fast[self.index])
        built = self.space.build(genome)
        c = count_costs(built.net, self.space.input_size(genome))
        return float((c.flops, c.params)[self.index])


class FlopsCost(_Counted):
    """MACs of every Conv2d and Linear for one input (the project's FLOPs convention)."""

    name = "flops"
    unit = "MACs"
    title = "FLOPs (MACs)"
    index = 0


class ParamsCost(_Counted):
    """All parameters of the network."""

    name = "params"
    unit = "params"
    title = "parameters"
    index = 1


class _NonZero(_Counted):
    def cost(self, genome: Genome) -> float:
        if isinstance(self.space, SparseWeights):
            return float(self.space.nonzero_costs(genome)[self.index])
        return super().cost(genome)  # a dense network: every weight counts


class NonzeroMacsCost(_NonZero):
    """MACs of conv + linear layers that multiply a non-zero weight (``flops`` for a dense net)."""

    name = "nonzero_macs"
    unit = "MACs"
    title = "non-zero MACs"
    index = 0


class NonzeroParamsCost(_NonZero):
    """Parameters that are not fixed at zero (``params`` for a dense net)."""

    name = "nonzero_params"
    unit = "params"
    title = "non-zero parameters"
    index = 1


class _Binary(_Counted):
    key = "ops"

    def cost(self, genome: Genome) -> float:
        if isinstance(self.space, BinaryWeights):
            return float(self.space.binary_costs(genome)[self.key])
        return super().cost(genome) * (4 if self.key == "size_bytes" else 1)  # no binary layer


class OpsCost(_Binary):
    """FLOPs + BOPs/64, the binary-network literature's OPs (``flops`` for a real-valued net)."""

    name, unit, title, key, index = "ops", "OPs", "OPs (FLOPs + BOPs/64)", "ops", 0


class WordOpsCost(_Binary):
    """Operations of a 64-bit XNOR-popcount kernel (a depthwise binary conv saves nothing)."""

    name, unit, title, key, index = "word_ops", "ops", "word-level ops", "word_ops", 0


class SizeCost(_Binary):
    """Model size in bytes with 1-bit binary weights (4 bytes per real parameter)."""

    name, unit, title, key, index = "size_bytes", "bytes", "model size (bytes)", "size_bytes", 1
