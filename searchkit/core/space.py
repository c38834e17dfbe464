"""The Space protocol: Optuna params <-> JSON genome -> a real network, and its capabilities.

A space is one class with one constructor, :meth:`Space.from_config` (its typed
``Options`` and a :class:`SpaceEnv` of run facts). Strategies only see its Optuna
distributions; the driver turns a trial's params into a genome (:meth:`Space.genome_of`),
prices it with the cost models, and builds what it trains (:meth:`Space.build` ->
:class:`Built`). Capabilities are mixins, never probed with ``hasattr``:

* :class:`NeedsBase` - candidates inherit a trained base network's weights; the run
  trains or loads that base once and hands it over in ``env.base``.
* :class:`LatencyKernels` - the kernels a genome's network runs, without building it, so
  the latency predictor can price genomes.
* :class:`OffersSupernet` - one network holding every candidate, for differentiable
  runners.

Example:
    >>> from searchkit.registry import SPACES
    >>> space = SPACES.get("toy").from_config(None, SpaceEnv(num_classes=10, image_size=8))
    >>> genome = space.base_genome()
    >>> space.genome_of(space.params_of(genome)) == genome
    True
    >>> built = space.build(genome)
    >>> built.input_size
    (3, 8, 8)
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from torch import nn

from searchkit.core.dist import draw
from searchkit.core.genome import Genome
from searchkit.core.options import NoOptions


@dataclass
class Built:
    """A genome's network, ready to train.

    Attributes:
        model: What is fine-tuned and scored; it takes the data's images.
        recipe: JSON replay recipe (which base filters a pruned layer inherits, ...): rebuilding the
            genome from the same base gives the same recipe.
        input_size: ``(C, H, W)`` the deployed network takes.
        deploy: The network to export, when it differs from ``model`` (a space that
            resizes its inputs exports the network behind the resize).
    """

    model: nn.Module
    recipe: dict = field(default_factory=dict)
    input_size: tuple[int, int, int] = (3, 32, 32)
    deploy: nn.Module | None = None

    @property
    def net(self) -> nn.Module:
        """The network to export: ``deploy`` if set, else ``model``."""
        return self.deploy if self.deploy is not None else self.model


@dataclass(frozen=True)
class SpaceEnv:
    """Run facts a space is built from (besides its own options).

    Attributes:
        num_classes, in_channels, image_size: the data's.
        base: the base network (``NeedsBase`` spaces), with the weights candidates inherit.
        bounds: the run's constraint bounds as given (a fraction of the base, or absolute).
        cache_dir: where a space may cache what it derives from its base (kernel maps).
    """

    num_classes: int = 10
    in_channels: int = 3
    image_size: int = 32
    base: nn.Module | None = None
    bounds: Mapping[str, float] = field(default_factory=dict)
    cache_dir: str | None = None


def suggest(trial: optuna.Trial, distributions: Mapping[str, BaseDistribution]) -> dict[str, Any]:
    """Suggest every distribution on ``trial`` (in order); returns the params."""
    out: dict[str, Any] = {}
    for name, d in distributions.items():
        if isinstance(d, IntDistribution):
            out[name] = trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
        elif isinstance(d, FloatDistribution):
            out[name] = trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
        elif isinstance(d, CategoricalDistribution):
            out[name] = trial.suggest_categorical(name, d.choices)
        else:
            raise TypeError(f"unsupported distribution {type(d).__name__} for '{name}'")
    return out


class Space(abc.ABC):
    """A search space (see the module docstring). Subclasses set ``Options`` and ``costs``;
    an instance keeps its effective ``options`` (what ``from_config`` made of the run's,
    e.g. a default filled from the data): workers rebuild the space from them."""

    Options: ClassVar[type] = NoOptions
    options: Any = None
    # The cost models priced for every candidate (more when a constraint or objective names one).
    costs: ClassVar[tuple[str, ...]] = ("flops", "params")
    # Config overrides that make a small instance for the contract suites (searchkit.testing).
    contract_overrides: ClassVar[tuple[str, ...]] = ()
    # The file of the torch program a latency bound is verified on at export, when the
    # space writes a faster one than ``model.pt2`` (None: model.pt2).
    shipped_program: ClassVar[str | None] = None

    @classmethod
    @abc.abstractmethod
    def from_config(cls, options: Any, env: SpaceEnv) -> "Space":
        """The space of a run: its ``Options`` instance (``None``: defaults) and the run's facts."""

    @abc.abstractmethod
    def distributions(self) -> dict[str, BaseDistribution]:
        """The fixed Optuna distributions every strategy searches."""

    @abc.abstractmethod
    def genome_of(self, params: Mapping[str, Any]) -> Genome:
        """The genome these params stand for (several params may map to one genome)."""

    @abc.abstractmethod
    def params_of(self, genome: Genome) -> dict[str, Any]:
        """Params that ``genome_of`` maps to ``genome`` (for ``study.enqueue_trial``)."""

    @abc.abstractmethod
    def build(self, genome: Genome, *, seed: int = 0) -> Built:
        """A real network for the genome (weights inherited where the space has a base)."""

    @abc.abstractmethod
    def describe(self, genome: Genome) -> dict[str, Any]:
        """JSON for reports and the command line. By convention ``summary`` is one line, and
        ``layers`` (``names``, ``values``, optional ``base`` and ``label``) a per-layer view."""

    @abc.abstractmethod
    def base_genome(self) -> Genome:
        """The reference genome costs are relative to (the unpruned base, the largest net)."""

    @abc.abstractmethod
    def input_size(self, genome: Genome) -> tuple[int, int, int]:
        """``(C, H, W)`` the genome's deployed network takes."""

    # -- with defaults -------------------------------------------------------------------
    @classmethod
    def min_data_side(cls, options: Any) -> int:
        """The smallest image side the space's networks take (the data is resized up to it)."""
        return 1

    @classmethod
    def study_tag(cls, options: Any) -> str:
        """What the default study name says of the options (``""``: nothing)."""
        return ""

    def suggest(self, trial: optuna.Trial) -> Genome:
        """Draw the genome of one trial (``trial.suggest_*`` over :meth:`distributions`)."""
        return self.genome_of(suggest(trial, self.distributions()))

    def directions(self) -> dict[str, int]:
        """Per param, how raising it moves every cost: ``+1`` up, ``-1`` down, ``0`` unknown.
        Repair steps genes the way that lowers cost. Default: numeric params raise it."""
        return {n: 0 if isinstance(d, CategoricalDistribution) else 1
                for n, d in self.distributions().items()}

    def smallest_genome(self) -> Genome:
        """The genome every gene moves to its cheapest end of (for cost floors)."""
        params = {}
        for name, d in self.distributions().items():
            way = self.directions().get(name, 0)
            if isinstance(d, CategoricalDistribution):
                params[name] = d.choices[0]
            else:
                params[name] = d.high if way < 0 else d.low
        return self.genome_of(params)

    def floor_candidates(self) -> list[Genome]:
        """Genomes among which a cost's floor is looked for: the smallest one and a seeded
        sample (costs need not be monotone in every gene)."""
        from searchkit.core.dist import draw
        rng = np.random.default_rng(0)
        dists = self.distributions()
        return [self.smallest_genome()] + [self.genome_of({n: draw(d, rng) for n, d in dists.items()})
                                           for _ in range(256)]

    def recipe(self, genome: Genome, *, seed: int = 0) -> dict:
        """The replay recipe :meth:`build` will return, without building (``{}``: none)."""
        return {}

    def flops_params(self, genome: Genome) -> tuple[int, int] | None:
        """Analytic (FLOPs, params) without building, or ``None`` (then cost models build)."""
        return None

    def export(self, built: Built, folder: Any) -> dict[str, str]:
        """Write space-specific files for an exported network; returns ``{role: file name}``."""
        return {}

    @classmethod
    def commands(cls) -> dict[str, Callable[[list[str]], int]]:
        """Extra command-line verbs: ``searchkit <space> <verb> key=value ...``."""
        return {}


class NeedsBase(abc.ABC):
    """A space whose candidates inherit a trained base network (``env.base``)."""

    @classmethod
    @abc.abstractmethod
    def base_model(cls, options: Any) -> str:
        """The registered model name of the base network."""

    @classmethod
    def check_base(cls, base: nn.Module, options: Any) -> None:
        """Raise ``ValueError`` (one line) if the space cannot use this base: before any training."""

    @classmethod
    def study_tag(cls, options: Any) -> str:
        return cls.base_model(options)



class LatencyKernels(abc.ABC):
    """A space whose genomes' kernels are known without building the network."""

    # Share of this space's networks in a latency profile's random population (0: none).
    profile_share: ClassVar[int] = 0

    @abc.abstractmethod
    def kernels(self, genome: Genome) -> list:
        """The :class:`~searchkit.costs.trace.Kernel` list one batch-1 forward runs, in order."""

    def own_kernels(self) -> dict[str, str]:
        """Kernel types beyond the built-in ones this space's programs run (registered in
        ``KERNEL_TYPES``): ``{kind: what it is}``; a target without their timings is refused."""
        return {}

    def latency_network(self, built: Built) -> nn.Module:
        """The network whose run ``kernels`` describes (the shipped program's module form)."""
        return built.net

    def latency_table(self, predictor: Any) -> Callable[[Sequence[Genome]], np.ndarray | None] | None:
        """A vectorised ``genomes -> milliseconds`` for this predictor (``None``: none; the
        function may also return ``None`` for genomes it cannot tabulate)."""
        return None

    @classmethod
    def profile_bases(cls) -> list:
        """Reference networks of this space a latency validation measures (``Sample``s)."""
        return []

    @classmethod
    def profile_sample(cls, rng: Any, *, quick: bool = False) -> Any:
        """One random network of this space for a latency profile (a ``Sample``), drawn with
        ``rng`` (``random.Random``); ``quick``: from the cheapest setting only. Spaces with
        a ``profile_share`` above 0 provide it."""
        return None


class SparseWeights(abc.ABC):
    """A space whose networks have the dense shape but fix some weights at zero (block sparsity)."""

    @abc.abstractmethod
    def nonzero_costs(self, genome: Genome) -> tuple[int, int]:
        """(MACs, params) that touch a non-zero weight, without building (cf. ``flops_params``)."""


class BinaryWeights(abc.ABC):
    """A space whose networks have binarized layers (costs in OPs, words and bytes)."""

    @abc.abstractmethod
    def binary_costs(self, genome: Genome) -> dict[str, float]:
        """``ops`` (FLOPs + BOPs/64), ``word_ops`` and ``size_bytes`` of a genome's network."""


class OffersSupernet(abc.ABC):
    """A space that offers one network holding every candidate (differentiable runners)."""

    # Its supernet's edges choose among ops (``choices()``, ``path``), so the runner's
    # operation-space reduction can drop some (``algo.reduce``).
    reducible_supernet: ClassVar[bool] = False

    @abc.abstractmethod
    def supernet(self, **options: Any) -> nn.Module:
        """The supernet, with learnable architecture parameters (``arch_parameters()``) apart
        from its weights (``weight_parameters()``); ``options`` are the runner's (``k``: the
        partial-channel share)."""

    @abc.abstractmethod
    def derive(self, supernet: nn.Module, feasible: Callable[[Genome], bool] | None = None) -> Genome:
        """The genome the supernet's architecture parameters stand for now; where the space
        can, the most probable one that ``feasible`` accepts (the run's bounds).

        A supernet may also offer ``expected_costs(models) -> {name: tensor}`` (differentiable
        costs under its distribution, for the runner's penalty) and ``set_progress(f)``
        (called each epoch with the share of the run done, e.g. to anneal a temperature)."""
