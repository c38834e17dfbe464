"""The Space protocol every search space implements.

A space owns the mapping ``trial -> genome`` (through ``trial.suggest_*``), the cheap cost
of a genome (before any training), and ``genome -> nn.Module``. Strategies only ever see
the Optuna distributions the space suggests from.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import optuna
from torch import nn

from searchkit.costs import Costs
from searchkit.genome import Genome


@runtime_checkable
class Space(Protocol):
    name: str

    def suggest(self, trial: optuna.Trial) -> Genome:
        """Draw one genome by calling ``trial.suggest_*``."""

    def params_of(self, genome: Genome) -> dict[str, Any]:
        """The Optuna params that reproduce ``genome`` (for ``study.enqueue_trial``)."""

    def costs(self, genome: Genome) -> Costs:
        """FLOPs (MACs) and params of the genome's architecture, without training it."""

    def base_costs(self) -> Costs:
        """Costs of the unmodified base architecture."""

    def min_costs(self) -> Costs:
        """The smallest costs any genome of the space can reach (for impossible constraints)."""

    def build(self, genome: Genome, *, seed: int = 0) -> nn.Module:
        """A real ``nn.Module`` for the genome (weights inherited where the space has a base)."""

    def describe(self, genome: Genome) -> dict[str, Any]:
        """Human-readable per-layer view (e.g. kept widths against the base)."""
