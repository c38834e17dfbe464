"""Channel-count space (ABCPruner): how many channels each prunable unit of a base keeps.

The genome is ``{"model": NAME, "keep": [f_0, f_1, ...]}`` with one preserved fraction per
prunable unit, each from ``space.keep`` (10%..100% by default). Optuna sees one integer
parameter per unit, ``keep_000 ... keep_NNN``, indexing that list (1-based, as ABCPruner's
codes), so ABC, TPE, random and GA all search the same box.

Candidates are built by physical surgery (:mod:`~searchkit.spaces.channels.surgery`): real
smaller conv/BN/linear layers with weights inherited from the base by L1 norm or random
choice; the kept indices are the genome's replay recipe. FLOPs and params come from an
analytic table (:mod:`~searchkit.spaces.channels.costtable`) and latency from a kernel map
(:mod:`~searchkit.spaces.channels.latency`), so pricing a genome builds no model.

Example:
    >>> from searchkit.core.space import SpaceEnv
    >>> from searchkit.models import build_base
    >>> space = ChannelSpace.from_config(ChannelSpace.Options(model="resnet20"),
    ...                                  SpaceEnv(base=build_base("resnet20")))
    >>> half = space.uniform(0.5)
    >>> space.flops_params(half)[0] < space.flops_params(space.base_genome())[0]
    True
    >>> space.build(half).model.layer1[0].conv1.out_channels
    8
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from optuna.distributions import IntDistribution
from torch import nn

from searchkit.core.genome import Genome
from searchkit.core.space import Built, LatencyKernels, NeedsBase, OffersSupernet, Space, SpaceEnv
from searchkit.registry import MODELS
from searchkit.spaces.channels.surgery import (RULES, apply_history, channel_units, keep_counts,
                                               pruned_shape_model, select_channels)

_DEFAULT_KEEP = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class ChannelOptions:
    """``space.*`` options of ``space=channels``."""

    # The base network (a registered model).
    model: str = "resnet56"
    # Preserved fractions a prunable unit may take (ABCPruner: 10%..100% in steps of 10%).
    keep: tuple[float, ...] = _DEFAULT_KEEP
    # Which channels a pruned layer inherits: "l1" (largest L1 norm of the producers' filters),
    # "magnitude" (Torch-Pruning's group magnitude over every layer the unit cuts) or "random".
    rule: str = "l1"
    # Which channel groups are genes: "auto" (ABCPruner's block-inner widths for the listed
    # models, every traced group for any other network), "inner" (traced groups no residual
    # addition joins) or "all" (every traced group, residual streams too).
    units: str = "auto"

    def __post_init__(self) -> None:
        MODELS.check(self.model)
        keep = self.keep
        if not keep or any(not 0 < k <= 1 for k in keep) or list(keep) != sorted(set(keep)):
            raise ValueError(f"space.keep must be increasing fractions in (0, 1], got {list(keep)}")
        if self.rule not in ("l1", "magnitude", "random"):
            raise ValueError(f"space.rule={self.rule} is not valid (choices: l1, magnitude, random)")
        if self.units not in ("auto", "inner", "all"):
            raise ValueError(f"space.units={self.units} is not valid (choices: auto, inner, all)")


class ChannelSpace(NeedsBase, LatencyKernels, OffersSupernet, Space):
    """Per-unit preserved fractions over a base network's prunable channel units."""

    name = "channels"
    Options = ChannelOptions
    profile_share: ClassVar[int] = 2  # two thirds of a latency profile's random networks
    contract_overrides: ClassVar[tuple[str, ...]] = ("space.model=resnet20",)

    def __init__(self, options: ChannelOptions, base: nn.Module, input_size=(3, 32, 32),
                 cache_dir: str | None = None):
        self.options = options
        self.base = base
        self._input_size = tuple(int(s) for s in input_size)
        self.units = discover_units(base, options.units, self._input_size, listed=":" not in options.model)
        self.choices = tuple(float(k) for k in options.keep)
        self.cache_dir = cache_dir

    @classmethod
    def from_config(cls, options: ChannelOptions | None, env: SpaceEnv) -> "ChannelSpace":
        if env.base is None:
            raise ValueError("space=channels prunes a base network: none was given")
        return cls(options or ChannelOptions(), env.base, (env.in_channels, env.image_size, env.image_size),
                   env.cache_dir)

    @classmethod
    def base_model(cls, options: ChannelOptions | None) -> str:
        return (options or ChannelOptions()).model

    # -- genome <-> params ------------------------------------------------------------
    @staticmethod
    def param_name(i: int) -> str:
        return f"keep_{i:03d}"

    def distributions(self) -> dict[str, IntDistribution]:
        n = len(self.choices)
        return {self.param_name(i): IntDistribution(1, n) for i in range(len(self.units))}

    def genome_of(self, params: dict[str, Any]) -> Genome:
        return self.genome([self.choices[params[self.param_name(i)] - 1] for i in range(len(self.units))])

    def genome(self, keep: list[float]) -> Genome:
        if len(keep) != len(self.units):
            raise ValueError(f"genome has {len(keep)} fractions; {self.options.model} has {len(self.units)} units")
        return {"model": self.options.model, "keep": [round(float(k), 6) for k in keep]}

    def params_of(self, genome: Genome) -> dict[str, Any]:
        self._check(genome)
        out = {}
        for i, k in enumerate(genome["keep"]):
            j = min(range(len(self.choices)), key=lambda c: abs(self.choices[c] - k))
            out[self.param_name(i)] = j + 1
        return out

    def uniform(self, fraction: float) -> Genome:
        """Every unit keeps the same fraction (the uniform-pruning baseline)."""
        return self.genome([fraction] * len(self.units))

    def base_genome(self) -> Genome:
        return self.uniform(1.0)

    def smallest_genome(self) -> Genome:
        return self.uniform(self.choices[0])

    def input_size(self, genome: Genome | None = None) -> tuple[int, int, int]:
        return self._input_size

    # -- costs ------------------------------------------------------------------------
    @functools.cached_property
    def table(self):
        from searchkit.spaces.channels.costtable import CostTable
        return CostTable.build(self.base, self.units, self._input_size)

    def flops_params(self, genome: Genome) -> tuple[int, int]:
        c = self.table.costs(genome["keep"])
        return c.flops, c.params

    # -- models -----------------------------------------------------------------------
    def _check(self, genome: Genome) -> None:
        if genome.get("model") != self.options.model:
            raise ValueError(f"genome is for model {genome.get('model')}, space is {self.options.model}")

    def recipe(self, genome: Genome, *, seed: int = 0) -> dict:
        """``{unit: kept channel indices}``: which base channels the build inherits."""
        self._check(genome)
        if self.options.rule == "magnitude":
            counts = keep_counts(self.units, genome["keep"])
            return {u.name: sorted(int(i) for i in np.argsort(-s, kind="stable")[:k])
                    for u, s, k in zip(self.units, self._group_scores, counts)}
        return select_channels(self.base, self.units, genome["keep"], rule=self.options.rule, seed=seed)

    @functools.cached_property
    def _group_scores(self) -> list:
        from searchkit.spaces.channels.baselines import unit_scores
        return unit_scores(self, "magnitude")

    def build(self, genome: Genome, *, seed: int = 0) -> Built:
        history = self.recipe(genome, seed=seed)
        return Built(apply_history(self.base, self.units, history), history, self._input_size)

    def describe(self, genome: Genome) -> dict[str, Any]:
        kept = keep_counts(self.units, genome["keep"])
        return {"summary": f"keep {genome['keep']}",
                "layers": {"names": [u.name for u in self.units], "base": [u.channels for u in self.units],
                           "values": kept, "label": "channels"}}

    # -- one-shot search ----------------------------------------------------------------
    def supernet(self, **options: Any):
        """The base with a Gumbel-softmax width choice per unit
        (:mod:`~searchkit.spaces.channels.supernet`; ``tau_start``, ``tau_end``, ``rule``; it
        always samples, so ``gumbel`` changes nothing)."""
        from searchkit.spaces.channels.supernet import ChannelSupernet
        return ChannelSupernet(self, **{k: options[k] for k in ("tau_start", "tau_end", "rule") if k in options})

    def derive(self, supernet, feasible=None) -> Genome:
        check = None if feasible is None else (lambda keep: feasible(self.genome(keep)))
        return self.genome(supernet.derive(check))

    # -- latency ----------------------------------------------------------------------
    @functools.cached_property
    def kernel_map(self):
        from searchkit.spaces.channels.latency import cached_kernel_map
        return cached_kernel_map(self.options.model, self.base, self.units, self._input_size, self.cache_dir)

    def kernels(self, genome: Genome) -> list:
        return self.kernel_map.kernels(genome["keep"])

    def latency_table(self, predictor):
        from searchkit.spaces.channels.latency import LatencyTable, predict_many_ms
        table = LatencyTable(predictor, self.kernel_map, self.choices)

        def many(genomes) -> np.ndarray:
            keep = np.asarray([g["keep"] for g in genomes], dtype=np.float64)
            got = table(keep)
            return got if got is not None else predict_many_ms(predictor, self.kernel_map, keep)
        return many

    # -- latency profiles: random pruned networks of the bases the searches use ---------------
    # (model, input side): digits searches run at 16 px, CIFAR ones at 32 px.
    PROFILE_BASES: ClassVar[tuple] = (("resnet20", 16), ("resnet56", 16), ("resnet110", 16), ("resnet56", 32),
                                      ("vgg16", 32), ("mobilenet_v2", 32), ("resnet18", 32), ("resnet50", 32))
    _GRID: ClassVar[tuple] = tuple(round(0.1 * i, 1) for i in range(1, 11))

    @classmethod
    def profile_bases(cls) -> list:
        from searchkit.costs.profiling import Sample
        from searchkit.models import build_base
        out = []
        for model, side in cls.PROFILE_BASES:
            base, units, kmap = _profile_map(model, side)
            out.append(Sample("base", f"{model}@{side}", (3, side, side), kmap.kernels([1.0] * len(units)),
                              lambda m=model: build_base(m)))
        return out

    @classmethod
    def profile_sample(cls, rng: random.Random, *, quick: bool = False):
        """A random pruned network: a centre fraction, per-unit fractions around it."""
        from searchkit.costs.profiling import Sample
        bases = cls.PROFILE_BASES[:1] if quick else cls.PROFILE_BASES
        model, side = bases[rng.randrange(len(bases))]
        base, units, kmap = _profile_map(model, side)
        centre = rng.uniform(0.1, 1.0)
        keep = [min(cls._GRID, key=lambda g: abs(g - min(1.0, max(0.1, rng.gauss(centre, 0.2))))) for _ in units]
        return Sample("channels", f"{model}@{side} keep~{centre:.2f}", (3, side, side), kmap.kernels(keep),
                      lambda: pruned_shape_model(base, units, keep))


def discover_units(base: nn.Module, mode: str, input_size, *, listed: bool = True) -> list:
    """The genes of ``base``: hand-listed units (``auto`` on a ``listed`` model) or traced ones.

    Example:
        >>> from searchkit.models import build_base
        >>> len(discover_units(build_base("resnet56"), "auto", (3, 32, 32)))
        27
        >>> net = build_base("torchvision:resnet18")
        >>> [len(discover_units(net, mode, (3, 32, 32))) for mode in ("inner", "all")]
        [8, 12]
    """
    from searchkit.spaces.channels.graph import graph_units
    if mode == "auto":
        try:
            if listed:
                return channel_units(base)
        except ValueError:
            pass
        mode = "all"
    return graph_units(base, input_size, mode=mode)


@functools.lru_cache(maxsize=None)
def _profile_map(model: str, side: int):
    from searchkit.models import build_base
    from searchkit.spaces.channels.latency import ChannelKernelMap
    base = build_base(model)
    units = channel_units(base)
    return base, units, ChannelKernelMap.build(base, units, (3, side, side))


__all__ = ["ChannelSpace", "ChannelOptions", "RULES", "discover_units"]
