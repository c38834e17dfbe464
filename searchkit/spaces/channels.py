"""Channel-count space (ABCPruner): how many channels each prunable unit of a base keeps.

The genome is ``{"model": NAME, "keep": [f_0, f_1, ...]}`` with one preserved fraction per
prunable unit, each from ``space.keep`` (10%..100% by default). Optuna sees one integer
parameter per unit, ``keep_000 ... keep_NNN``, indexing that list (1-based, as ABCPruner's
codes), so ABC, TPE, random and GA all search the same box.

Candidates are built by physical surgery (``searchkit.models.surgery``): real smaller
conv/BN/linear layers with weights inherited from the base by L1 norm or random choice.
Costs come from an analytic table built from one forward pass of the base, so pricing a
genome needs no model at all.

Example:
    >>> from searchkit.config import SpaceConfig
    >>> from searchkit.models import build_base
    >>> space = ChannelSpace(SpaceConfig(model="resnet20"), build_base("resnet20"))
    >>> g = space.uniform(0.5)
    >>> space.costs(g).flops < space.base_costs().flops
    True
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import IntDistribution
from torch import nn

from searchkit.config import SpaceConfig
from searchkit.costs import Costs, CostTable
from searchkit.genome import Genome
from searchkit.models.surgery import channel_units, keep_counts, prune_channels_with_history


class ChannelSpace:
    """Per-unit preserved fractions over a base network's prunable channel units."""

    name = "channels"

    def __init__(self, config: SpaceConfig, base: nn.Module, input_size: tuple[int, int, int] = (3, 32, 32)):
        self.config = config
        self.base = base
        self.input_size = tuple(input_size)
        self.units = channel_units(base)
        self.choices = tuple(float(k) for k in config.keep)
        self.table = CostTable.build(base, self.units, self.input_size)

    # -- genome <-> params ------------------------------------------------------------
    @staticmethod
    def param_name(i: int) -> str:
        return f"keep_{i:03d}"

    def distributions(self) -> dict[str, IntDistribution]:
        """The Optuna distributions ``suggest`` draws from (for strategies that repair)."""
        n = len(self.choices)
        return {self.param_name(i): IntDistribution(1, n) for i in range(len(self.units))}

    def suggest(self, trial: optuna.Trial) -> Genome:
        n = len(self.choices)
        idx = [trial.suggest_int(self.param_name(i), 1, n) for i in range(len(self.units))]
        return self.genome([self.choices[j - 1] for j in idx])

    def genome_of(self, params: dict[str, Any]) -> Genome:
        """The genome that ``suggest`` would return for these params."""
        return self.genome([self.choices[params[self.param_name(i)] - 1] for i in range(len(self.units))])

    def genome(self, keep: list[float]) -> Genome:
        if len(keep) != len(self.units):
            raise ValueError(f"genome has {len(keep)} fractions; {self.config.model} has {len(self.units)} units")
        return {"model": self.config.model, "keep": [round(float(k), 6) for k in keep]}

    def params_of(self, genome: Genome) -> dict[str, Any]:
        out = {}
        for i, k in enumerate(genome["keep"]):
            j = min(range(len(self.choices)), key=lambda c: abs(self.choices[c] - k))
            out[self.param_name(i)] = j + 1
        return out

    def uniform(self, fraction: float) -> Genome:
        """Every unit keeps the same fraction (the uniform-pruning baseline)."""
        return self.genome([fraction] * len(self.units))

    # -- costs ------------------------------------------------------------------------
    def costs(self, genome: Genome) -> Costs:
        return self.table.costs(genome["keep"])

    def base_costs(self) -> Costs:
        return self.table.costs([1.0] * len(self.units))

    def min_costs(self) -> Costs:
        return self.table.costs([self.choices[0]] * len(self.units))

    # -- models -----------------------------------------------------------------------
    def build(self, genome: Genome, *, seed: int = 0) -> nn.Module:
        return self.build_with_history(genome, seed=seed)[0]

    def build_with_history(self, genome: Genome, *, seed: int = 0) -> tuple[nn.Module, dict]:
        """The pruned model and ``{unit: kept channel indices}`` (a replayable recipe)."""
        if genome.get("model") != self.config.model:
            raise ValueError(f"genome is for model {genome.get('model')}, space is {self.config.model}")
        return prune_channels_with_history(self.base, self.units, genome["keep"],
                                           rule=self.config.rule, seed=seed)

    def describe(self, genome: Genome) -> dict[str, Any]:
        kept = keep_counts(self.units, genome["keep"])
        return {
            "units": [u.name for u in self.units],
            "base_widths": [u.channels for u in self.units],
            "widths": kept,
        }
