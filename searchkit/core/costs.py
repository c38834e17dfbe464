"""Cost models and pricing: every candidate's costs, before any training, computed once.

A cost model (registered by name in :data:`searchkit.registry.COSTS`) prices a genome of
one space: ``cost(genome) -> float``, its ``base()`` (the space's reference genome) and
the ``floor()`` the space can reach. ``constraint.<name>=B`` bounds it (``B <= 1`` a
fraction of the base where the model is ``relative``), ``objectives=[accuracy,<name>]``
minimises it. A :class:`Pricer` turns a genome into one :class:`Priced` record - genome,
archid, costs, constraint violations - that the candidate carries from ask to tell.

Example:
    >>> from searchkit.registry import SPACES, COSTS
    >>> from searchkit.core.space import SpaceEnv
    >>> space = SPACES.get("toy").from_config(None, SpaceEnv(num_classes=10, image_size=8))
    >>> flops = COSTS.get("flops").create(space, None)
    >>> pricer = Pricer({"flops": flops}, {"flops": 0.5 * flops.base()})
    >>> priced = pricer.price(space.base_genome())
    >>> priced.feasible, round(priced.violations["flops"], 3)
    (False, 1.0)
"""

from __future__ import annotations

import abc
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from searchkit.core.errors import ConfigError
from searchkit.core.genome import Genome, archid


class CostModel(abc.ABC):
    """One named cost of one space's genomes (see the module docstring)."""

    name: ClassVar[str] = ""
    unit: ClassVar[str] = ""
    title: ClassVar[str] = ""  # how a report labels its axis
    # A bound <= 1 is a fraction of the base's cost (False: bounds are always absolute).
    relative: ClassVar[bool] = True
    # Space capabilities (core.space mixins) the model needs.
    requires: ClassVar[tuple[type, ...]] = ()

    def __init__(self, space: Any, settings: Any = None):
        self.space = space
        self.settings = settings
        self._base: float | None = None
        self._floor: float | None = None

    @classmethod
    def applies_to(cls, space: Any) -> bool:
        """Whether this cost can price ``space``'s genomes."""
        return all(isinstance(space, r) for r in cls.requires)

    @classmethod
    def create(cls, space: Any, settings: Any) -> "CostModel":
        """The model for ``space`` under a run's settings; ``ConfigError`` if it cannot price it."""
        if not cls.applies_to(space):
            need = ", ".join(r.__name__ for r in cls.requires)
            raise ConfigError(f"cost '{cls.name}' cannot price space={space.name} "
                              f"(it needs a space with {need})")
        return cls(space, settings)

    @classmethod
    def for_contract(cls, space: Any) -> "CostModel":
        """An instance for the contract suites (``searchkit.testing``): what a run would build,
        or - for a model that needs a measured resource - a synthetic stand-in for it."""
        return cls.create(space, None)

    @abc.abstractmethod
    def cost(self, genome: Genome) -> float:
        """The genome's cost, without training it."""

    def many(self, genomes: Sequence[Genome]) -> np.ndarray:
        """Costs of many genomes (override where it can be vectorised)."""
        return np.array([self.cost(g) for g in genomes], dtype=np.float64)

    def base(self) -> float:
        """The cost of the space's base genome."""
        if self._base is None:
            self._base = float(self.cost(self.space.base_genome()))
        return self._base

    def floor(self) -> float:
        """The smallest cost found among the space's floor candidates."""
        if self._floor is None:
            self._floor = float(np.min(self.many(self.space.floor_candidates())))
        return self._floor

    def limit(self, bound: float) -> float:
        """The bound a priced cost must meet: a fraction of the base for relative costs."""
        return float(bound) * self.base() if self.relative and bound <= 1 else float(bound)

    def info(self) -> dict[str, Any]:
        """How reports read this cost: its unit, whether bounds may be fractions, a title."""
        return {"unit": self.unit, "relative": self.relative, "title": self.title or self.name}

    def export_formats(self) -> tuple[str, ...]:
        """The program formats ``export`` must write for :meth:`export_record` to measure
        (beyond those asked for with ``format=``)."""
        return ()

    def export_record(self, genome: Genome, program: Any, input_size: tuple, limit: float | None,
                      bound: float | None) -> dict | None:
        """What ``arch.json`` records of this cost for an exported network beyond its priced
        value, or ``None``. ``program(runtime)`` loads the written program of a runtime
        (``"torch"``: ``model.pt2``; ``"onnxruntime"``: the ``model.onnx`` path), the
        network a user ships: latency is measured on it, not on the eager model."""
        return None

    def identity(self) -> dict[str, Any]:
        """What the study records of this model beside its base; a key ending in
        ``_identity`` must not change while the study is continued (a re-fitted predictor)."""
        return {}

    def impossible(self, bound: float, limit: float) -> str:
        """The one-line refusal of a bound no genome of the space can meet."""
        unit = f" {self.unit}" if self.unit else ""
        return (f"impossible constraint: {self.name} <= {limit:,.4g}{unit} but the smallest architecture of this "
                f"space has {self.floor():,.4g}{unit} (base: {self.base():,.4g}{unit})")


@dataclass(frozen=True)
class Priced:
    """One priced genome: what every trial of it records, from ask to tell."""

    genome: Genome
    archid: str
    costs: Mapping[str, float]
    # Relative excess over each bound, as Optuna's constraints want it: <= 0 is feasible.
    violations: Mapping[str, float] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.violations.values())


class Pricer:
    """Prices genomes with a run's cost models against its limits, memoised by archid, so a
    genome the repair already checked is not priced again when it is proposed."""

    MEMO = 8192

    def __init__(self, models: Mapping[str, CostModel], limits: Mapping[str, float]):
        self.models = dict(models)
        self.limits = dict(limits)
        self._memo: OrderedDict[str, Priced] = OrderedDict()

    def price(self, genome: Genome) -> Priced:
        aid = archid(genome)
        hit = self._memo.get(aid)
        if hit is not None:
            self._memo.move_to_end(aid)
            return hit
        costs = {name: float(model.cost(genome)) for name, model in self.models.items()}
        violations = {name: costs[name] / bound - 1.0 for name, bound in self.limits.items()}
        priced = Priced(genome, aid, costs, violations)
        self._memo[aid] = priced
        if len(self._memo) > self.MEMO:
            self._memo.popitem(last=False)
        return priced

    def violated(self, genome: Genome) -> list[str]:
        """Names of the bounds the genome breaks."""
        return [n for n, v in self.price(genome).violations.items() if v > 0]


def limits_of(models: Mapping[str, CostModel], bounds: Mapping[str, float]) -> dict[str, float]:
    """Absolute limits of a run's bounds; refuses (one line) a bound no genome can meet."""
    out = {}
    for name, bound in bounds.items():
        if bound is None:
            continue
        model = models[name]
        limit = model.limit(bound)
        if model.floor() > limit:
            raise ConfigError(model.impossible(bound, limit))
        out[name] = limit
    return out
