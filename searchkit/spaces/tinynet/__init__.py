"""TinyNet space: resolution, depth and width multipliers of EfficientNet-B0 (Han et al. 2020).

The genome is ``{"model": "tinynet", "r": r, "d": d, "w": w}``:

* ``r`` — resolution multiplier of ``reference_size``; the input side is
  ``max(min_side, int(r * reference_size))`` (timm's / TinyNet's ``int(224 * r)``, which
  gives the published 192/188/184/152/106; floor, not round). With ``reference_size=224``
  this is the paper's space; for CPU runs on small images set ``reference_size`` to the
  data's native side (e.g. 32: ``r=0.5`` -> 16 px). Neighbouring ``r`` values can give the
  same side when ``reference_size * r_step < 1``; pick ``r_step`` >= ``1/reference_size``
  to avoid such twin genomes.
* ``d``, ``w`` — depth and width multipliers of :func:`efficientnet_b0_family` (timm's
  ``_gen_tinynet`` rules: ``round`` depth truncation, channels divisible by 8, stem 32, head
  >= 1280).

**In-band sampling (fixed distributions + a deterministic map into the band).** Optuna
sees three fixed stepped floats ``r``, ``d``, ``w`` (the grids below), so TPE, NSGA-II,
random and the ABC/GA strategies (``IntersectionSearchSpace``) all search one fixed box.
``suggest`` draws all three and maps the draw to an in-band grid point axis by axis
(:meth:`TinyNetSpace.map_indices`): the raw ``r`` picks, by its relative position on its
grid, one of the ``r`` values that have any in-band point; the raw ``d`` picks one of the
``d`` values in band for that ``r``; the raw ``w`` one of the ``w`` values in band for that
``(r, d)``. The map is monotone in each param (larger raw ``w`` -> wider net, so
samplers can learn), spreads draws over the band instead of piling them on its edge (a
nearest-point repair sent 80% of random draws to one genome for a narrow band), and is
the identity when ``flops_band`` is null.

The FLOPs of the whole grid are one ``(n_r, n_d, n_w)`` table computed analytically at
construction, so a suggestion is a few array look-ups: never a rejection loop. The genome
records the mapped point; with a band, ``trial.params`` are the raw draws and differ from
the genome's values. ``params_of(genome)`` returns params that map to ``genome`` (the
first of its bin), so ``study.enqueue_trial(space.params_of(g))`` suggests ``g`` again;
it equals ``trial.params`` whenever there is no band.

**Costs** are analytic: per ``(d, w)`` the MACs are a sum ``sum_L coef_L * side_L**2``
over the stride levels of the network, so ``costs`` is a dot product (cached per
``(d, w)``), exactly equal to ``count_costs(build(g).net, input_size(g))``.

Options (``space.*``, :class:`TinyNetOptions`; unknown keys are errors naming the nearest):

==================  =====================  ==============================================
key                 default                meaning
==================  =====================  ==============================================
reference_size      the data's side        side that ``r = 1`` stands for (224: the paper)
r                   [0.25, 1.0, 0.025]     ``[low, high, step]`` of the ``r`` grid
d                   [0.25, 1.2, 0.05]      ``[low, high, step]`` of the ``d`` grid
w                   [0.25, 1.0, 0.05]      ``[low, high, step]`` of the ``w`` grid
flops_band          null                   ``[lo, hi]`` MACs (inclusive); null: from
                                           ``constraint.flops`` (``[band_low, 1] x`` it)
band_low            0.85                   lower edge of that band, as a fraction of the bound
min_side            8                      smallest input side
dropout             0.2                    classifier dropout of built models
==================  =====================  ==============================================

Example:
    >>> space = TinyNetSpace({"reference_size": 224, "flops_band": [90e6, 110e6]}, 1000)
    >>> g = {"model": "tinynet", "r": 0.825, "d": 0.85, "w": 0.55}
    >>> space.input_side(g), round(space.flops_params(g)[0] / 1e6)
    (184, 103)
    >>> import optuna
    >>> trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    >>> 90e6 <= space.flops_params(space.suggest(trial))[0] <= 110e6
    True
"""

from __future__ import annotations

import decimal
import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import optuna
import torch
from torch import nn

from searchkit.core import options as opts
from searchkit.core.genome import Genome
from searchkit.core.space import Built, LatencyKernels, Space, SpaceEnv
from searchkit.models.efficientnet import (STEM_CHANNELS, block_specs, efficientnet_b0_family,
                                           head_channels)

MODEL = "tinynet"
_AXES = ("r", "d", "w")


@dataclass(frozen=True)
class TinyNetOptions:
    """``space.*`` options of ``space=tinynet`` (see the module docstring)."""

    # The input side r = 1 stands for; unset: the data's (224: the paper's space).
    reference_size: int | None = None
    # [low, high, step] of the resolution multiplier.
    r: tuple[float, float, float] = (0.25, 1.0, 0.025)
    # [low, high, step] of the depth multiplier.
    d: tuple[float, float, float] = (0.25, 1.2, 0.05)
    # [low, high, step] of the width multiplier.
    w: tuple[float, float, float] = (0.25, 1.0, 0.05)
    # [lo, hi] MACs every candidate lands in; unset: [band_low, 1] x constraint.flops.
    flops_band: tuple[float, float] | None = None
    # Lower edge of that band, as a fraction of the bound.
    band_low: float = 0.85
    # Smallest input side.
    min_side: int = 8
    # Classifier dropout of built networks.
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.band_low <= 1:
            raise ValueError(f"space.band_low must be a fraction in (0, 1], got {self.band_low}")
_N_LEVELS = 6  # index 0: 1x1 rows (SE, classifier); 1..5: after the 5 stride-2 steps


class Grid:
    """One stepped axis, with the exact floats Optuna's stepped ``suggest_float`` returns."""

    def __init__(self, name: str, spec):
        try:
            low, high, step = (float(v) for v in spec)
        except (TypeError, ValueError):
            raise ValueError(f"tinynet option '{name}' must be [low, high, step], got {spec!r}")
        # the Decimal test Optuna's FloatDistribution uses, so it never moves ``high``
        span = decimal.Decimal(str(high)) - decimal.Decimal(str(low))
        if not (0 < low <= high and step > 0) or span % decimal.Decimal(str(step)) != 0:
            raise ValueError(f"tinynet option '{name}'={list(spec)}: need 0 < low <= high and "
                             f"(high - low) a multiple of step")
        self.name, self.low, self.high, self.step = name, low, high, step
        self.n = int(span / decimal.Decimal(str(step))) + 1
        # Optuna's untransform: clip(round(k) * step + low, low, high)
        self.params = [float(np.clip(k * step + low, low, self.high)) for k in range(self.n)]
        self.values = [round(v, 6) for v in self.params]

    def index(self, v: float) -> int:
        return int(np.clip(round((float(v) - self.low) / self.step), 0, self.n - 1))

    def distribution(self) -> optuna.distributions.FloatDistribution:
        return optuna.distributions.FloatDistribution(self.low, self.high, step=self.step)


def _conv_out(h: int, k: int, s: int) -> int:
    return (h + 2 * (((s - 1) + (k - 1)) // 2) - k) // s + 1


@functools.lru_cache(maxsize=4096)
def arch_coefficients(d: float, w: float, num_classes: int,
                      in_channels: int = 3) -> tuple[tuple[int, ...], int]:
    """``(coef, params)``: MACs = ``sum(coef[L] * side_L**2)`` (:func:`level_areas`).

    Mirrors :func:`efficientnet_b0_family` layer by layer (conv: ``k*k*cin/groups*cout``
    per output position; linear ``in*out``); params are all parameters (BN affine
    included, conv biases only in SE, classifier bias).
    """
    coef = [0] * _N_LEVELS
    params = 0

    def conv(cin, cout, k, groups, level, bias=False):
        nonlocal params
        w_ = k * k * (cin // groups) * cout
        coef[level] += w_
        params += w_ + (cout if bias else 0)

    def bn(c):
        nonlocal params
        params += 2 * c

    conv(in_channels, STEM_CHANNELS, 3, 1, 1)
    bn(STEM_CHANNELS)
    level = 1
    for stage in block_specs(w, d):
        for b in stage:
            out_level = level + (1 if b.stride == 2 else 0)
            if b.kind == "ir":
                conv(b.in_chs, b.mid_chs, 1, 1, level)
                bn(b.mid_chs)
            conv(b.mid_chs, b.mid_chs, b.kernel, b.mid_chs, out_level)
            bn(b.mid_chs)
            if b.se_chs:
                conv(b.mid_chs, b.se_chs, 1, 1, 0, bias=True)
                conv(b.se_chs, b.mid_chs, 1, 1, 0, bias=True)
            conv(b.mid_chs, b.out_chs, 1, 1, out_level)
            bn(b.out_chs)
            level = out_level
            last = b.out_chs
    nf = head_channels(w)
    conv(last, nf, 1, 1, level)
    bn(nf)
    coef[0] += nf * num_classes
    params += nf * num_classes + num_classes
    return tuple(coef), params


@functools.lru_cache(maxsize=1024)
def level_areas(side: int) -> tuple[int, ...]:
    """``(1, h1*h1, ..., h5*h5)``: output positions per stride level for an input side."""
    out, h = [1], side
    for _ in range(_N_LEVELS - 1):
        h = _conv_out(h, 3, 2)  # k3 and k5 stride-2 convs give the same side here
        out.append(h * h)
    return tuple(out)


class TinyNetSpace(LatencyKernels, Space):
    """Resolution/depth/width multipliers of EfficientNet-B0, optionally inside a FLOPs band.

    Args:
        options: :class:`TinyNetOptions` (or a plain dict of them); ``reference_size``
            unset stands for 224.
        num_classes: classifier outputs of built models (and of the cost count).
        in_channels: input image channels.

    Raises:
        ValueError: a malformed grid, or a ``flops_band`` that no grid point reaches (the
            message gives the reachable range).
    """

    name = "tinynet"
    Options = TinyNetOptions
    profile_share: ClassVar[int] = 1
    contract_overrides: ClassVar[tuple[str, ...]] = ("space.r=[0.5,1.0,0.25]", "space.d=[0.25,0.5,0.25]",
                                                     "space.w=[0.25,0.5,0.25]")

    @classmethod
    def from_config(cls, options: TinyNetOptions | None, env: SpaceEnv) -> "TinyNetSpace":
        """The space of a search run: ``reference_size`` defaults to the data's side, and a
        ``constraint.flops`` bound becomes the band ``[band_low * bound, bound]`` (a bound
        <= 1 is a fraction of the largest genome's FLOPs)."""
        options = options or TinyNetOptions()
        if options.reference_size is None:
            options = _replace(options, reference_size=env.image_size)
        bound = env.bounds.get("flops")
        if bound is not None and options.flops_band is None:
            if bound <= 1:
                whole = cls(options, env.num_classes, env.in_channels)
                bound *= whole.flops_params(whole.base_genome())[0]
            options = _replace(options, flops_band=(float(options.band_low) * bound, float(bound)))
        return cls(options, env.num_classes, env.in_channels)

    @classmethod
    def min_data_side(cls, options: Any) -> int:
        return 32  # EfficientNet-B0's: the data side is the default reference_size

    def __init__(self, options: TinyNetOptions | dict | None, num_classes: int, in_channels: int = 3):
        if not isinstance(options, TinyNetOptions):
            options = opts.parse(TinyNetOptions, options, prefix="space.", owner="space=tinynet")
        self.options = options
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.reference_size = int(options.reference_size or 224)
        self.min_side = int(options.min_side)
        self.dropout = float(options.dropout)
        self.grids = {a: Grid(a, getattr(options, a)) for a in _AXES}
        band = options.flops_band
        self.flops_band = None if band is None else (float(band[0]), float(band[1]))
        gr, gd, gw = (self.grids[a] for a in _AXES)
        # FLOPs of every grid point: (n_r, n_d, n_w) = areas(n_r, L) . coef(n_d, n_w, L)
        areas = np.array([level_areas(self._side(r)) for r in gr.values], dtype=np.int64)
        coef = np.array([[self._coef(d, w)[0] for w in gw.values] for d in gd.values],
                        dtype=np.int64)
        self.flops_grid = np.einsum("rl,dwl->rdw", areas, coef)
        params = np.array([[self._coef(d, w)[1] for w in gw.values] for d in gd.values],
                          dtype=np.int64)
        self.params_grid = np.broadcast_to(params, self.flops_grid.shape)
        if self.flops_band is None:
            self.feasible = np.ones_like(self.flops_grid, dtype=bool)
        else:
            lo, hi = self.flops_band
            if not lo <= hi:
                raise ValueError(f"flops_band {list(band)}: lo must be <= hi")
            self.feasible = (self.flops_grid >= lo) & (self.flops_grid <= hi)
            if not self.feasible.any():
                raise ValueError(
                    f"no tinynet grid point has FLOPs in {lo / 1e6:.3g}M..{hi / 1e6:.3g}M; "
                    f"this grid reaches {self.flops_grid.min() / 1e6:.3g}M.."
                    f"{self.flops_grid.max() / 1e6:.3g}M (widen the band or the r/d/w grids)")

    # -- geometry -----------------------------------------------------------------------
    def _side(self, r: float) -> int:
        # int(r * ref) as timm's int(224 * r); the epsilon keeps 0.29 * 100 from flooring to 28
        return max(self.min_side, int(float(r) * self.reference_size + 1e-9))

    def input_side(self, genome: Genome) -> int:
        """Input side of ``genome``: ``max(min_side, int(r * reference_size))``."""
        return self._side(genome["r"])

    def input_size(self, genome: Genome) -> tuple[int, int, int]:
        """``(in_channels, side, side)`` the genome's network is evaluated (and costed) at."""
        s = self.input_side(genome)
        return (self.in_channels, s, s)

    # -- genome <-> params --------------------------------------------------------------
    def genome(self, r: float, d: float, w: float) -> Genome:
        return {"model": MODEL, "r": round(float(r), 6), "d": round(float(d), 6),
                "w": round(float(w), 6)}

    def distributions(self) -> dict[str, optuna.distributions.FloatDistribution]:
        """The fixed Optuna distributions of ``r, d, w``; the genome maps them into
        ``flops_band`` (module doc)."""
        return {a: g.distribution() for a, g in self.grids.items()}

    def genome_of(self, params: dict[str, float]) -> Genome:
        """The genome ``suggest`` returns for Optuna params ``{"r", "d", "w"}`` (the driver's
        model-free feasibility check calls this with :meth:`distributions`)."""
        return self._genome_at(*self.map_indices(*(self.grids[a].index(params[a]) for a in _AXES)))

    def _choices(self, i: int | None = None, j: int | None = None) -> np.ndarray:
        """In-band grid indices of r (no args), of d given r=i, or of w given (i, j)."""
        ok = self.feasible
        if i is None:
            return np.flatnonzero(ok.any(axis=(1, 2)))
        if j is None:
            return np.flatnonzero(ok[i].any(axis=1))
        return np.flatnonzero(ok[i, j])

    def map_indices(self, i: int, j: int, k: int) -> tuple[int, int, int]:
        """Grid indices of the raw draw -> grid indices of an in-band point.

        Each raw index ``x`` of an ``n``-point grid selects ``choices[x * len(choices) // n]``
        (equal-width bins), axis by axis: r among the r values that have in-band points,
        d among those in band for that r, w among those in band for that (r, d). Monotone in
        each raw index, spread over the band, and the identity when there is no band.
        """
        n_r, n_d, n_w = self.feasible.shape
        i = int((c := self._choices())[i * len(c) // n_r])
        j = int((c := self._choices(i))[j * len(c) // n_d])
        k = int((c := self._choices(i, j))[k * len(c) // n_w])
        return i, j, k

    def _indices(self, genome: Genome) -> tuple[int, int, int]:
        return tuple(self.grids[a].index(genome[a]) for a in _AXES)

    def _genome_at(self, i: int, j: int, k: int) -> Genome:
        return self.genome(*(self.grids[a].values[n] for a, n in zip(_AXES, (i, j, k))))

    def params_of(self, genome: Genome) -> dict[str, Any]:
        """Optuna params (exact grid floats) for which ``suggest`` returns ``genome``.

        The smallest raw grid index of each bin, so with no band these are the genome's own
        values. Raises ValueError for a genome outside ``flops_band`` (or off the grid:
        values are snapped to the nearest grid point first).
        """
        self._check(genome)
        idx = self._indices(genome)
        raw = []
        for axis, n, choices in zip(_AXES, self.feasible.shape,
                                    (self._choices(), self._choices(idx[0]),
                                     self._choices(idx[0], idx[1]))):
            pos = np.flatnonzero(choices == idx[len(raw)])
            if not len(pos):
                raise ValueError(f"genome {genome} is outside the space's flops_band "
                                 f"{self.flops_band}: no params suggest it")
            raw.append(-(-int(pos[0]) * n // len(choices)))  # ceil(pos * n / len)
        return {a: self.grids[a].params[x] for a, x in zip(_AXES, raw)}

    # -- costs --------------------------------------------------------------------------
    def _coef(self, d: float, w: float) -> tuple[tuple[int, ...], int]:
        return arch_coefficients(round(float(d), 6), round(float(w), 6), self.num_classes,
                                 self.in_channels)

    def flops_params(self, genome: Genome) -> tuple[int, int]:
        """MACs and params, equal to ``count_costs(build(genome).net, input_size(genome))``."""
        coef, params = self._coef(genome["d"], genome["w"])
        areas = level_areas(self.input_side(genome))
        return int(sum(c * a for c, a in zip(coef, areas))), int(params)

    def base_genome(self) -> Genome:
        """The largest genome of the grids (``r, d, w`` at their highs)."""
        return self.genome(*(self.grids[a].values[-1] for a in _AXES))

    def min_genome(self) -> Genome:
        return self.genome(*(self.grids[a].values[0] for a in _AXES))

    def smallest_genome(self) -> Genome:
        """The in-band grid point with the fewest FLOPs."""
        flops = np.where(self.feasible, self.flops_grid, np.iinfo(np.int64).max)
        return self._genome_at(*np.unravel_index(int(np.argmin(flops)), flops.shape))

    def floor_candidates(self) -> list[Genome]:
        """Every in-band grid point (``suggest`` returns no other): floors are exact."""
        return [self._genome_at(int(i), int(j), int(k)) for i, j, k in np.argwhere(self.feasible)]

    # -- models -------------------------------------------------------------------------
    def _check(self, genome: Genome) -> None:
        if genome.get("model") != MODEL:
            raise ValueError(f"genome is for model {genome.get('model')!r}, space is '{MODEL}'")

    def network(self, genome: Genome, *, seed: int = 0) -> nn.Module:
        """A freshly initialised network (seeded; the global RNG is left untouched)."""
        self._check(genome)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return efficientnet_b0_family(float(genome["w"]), float(genome["d"]),
                                          self.num_classes, self.dropout, self.in_channels)

    def build(self, genome: Genome, *, seed: int = 0) -> Built:
        """The network, trained from scratch at its own resolution (inputs of another size are
        resized); the exported program is the network alone, at ``input_size(genome)``."""
        net = self.network(genome, seed=seed)
        return Built(AtResolution(net, self.input_side(genome)), {}, self.input_size(genome), deploy=net)

    def describe(self, genome: Genome) -> dict[str, Any]:
        stages = block_specs(float(genome["w"]), float(genome["d"]))
        side = self.input_side(genome)
        depths = [len(s) for s in stages]
        widths = [s[-1].out_chs for s in stages]
        return {
            "summary": f"r={genome['r']} d={genome['d']} w={genome['w']}: input {side} px, "
                       f"stage depths {depths}, widths {widths}",
            "r": genome["r"], "d": genome["d"], "w": genome["w"],
            "input_side": side, "stem": STEM_CHANNELS, "stage_depths": depths, "stage_widths": widths,
            "head": head_channels(float(genome["w"])),
            "layers": {"names": [f"stage {i + 1}" for i in range(len(stages))], "values": widths,
                       "label": "output channels"},
        }

    # -- latency --------------------------------------------------------------------------
    def kernels(self, genome: Genome) -> list:
        from searchkit.spaces.tinynet.latency import efficientnet_kernels
        return efficientnet_kernels(float(genome["w"]), float(genome["d"]), self.input_side(genome),
                                    self.num_classes, self.in_channels)

    def latency_table(self, predictor):
        """Milliseconds over the whole (r, d, w) grid, predicted on first use."""
        grid: list = []

        def many(genomes) -> np.ndarray:
            if not grid:
                shape = tuple(self.grids[a].n for a in _AXES)
                points = [self._genome_at(i, j, k) for i in range(shape[0]) for j in range(shape[1])
                          for k in range(shape[2])]
                lists = [self.kernels(g) for g in points]
                predictor.kernel_sum_s(k for ks in lists for k in ks)  # one batch per kernel type
                grid.append(np.array([predictor.predict_ms(ks) for ks in lists]).reshape(shape))
            idx = [np.clip(np.rint((np.array([g[a] for g in genomes], dtype=np.float64) - self.grids[a].low)
                                   / self.grids[a].step).astype(np.int64), 0, self.grids[a].n - 1) for a in _AXES]
            return grid[0][idx[0], idx[1], idx[2]]
        return many

    # -- latency profiles -----------------------------------------------------------------
    # (timm name, w, d, side) of the reference networks a latency validation measures.
    PROFILE_BASES: ClassVar[tuple] = (("tinynet_e", 0.51, 0.60, 106), ("tinynet_d", 0.54, 0.695, 152),
                                      ("tinynet_c", 0.54, 0.85, 184), ("efficientnet_b0", 1.0, 1.0, 96))

    @classmethod
    def profile_bases(cls) -> list:
        from searchkit.costs.profiling import Sample
        from searchkit.spaces.tinynet.latency import efficientnet_kernels
        return [Sample("base", f"{name}@{side}", (3, side, side), efficientnet_kernels(w, d, side, 10),
                       lambda w=w, d=d: efficientnet_b0_family(w, d, num_classes=10))
                for name, w, d, side in cls.PROFILE_BASES]

    @classmethod
    def profile_sample(cls, rng, *, quick: bool = False):
        """A random network: depth, width and input side drawn from the ranges searches use."""
        from searchkit.costs.profiling import Sample
        from searchkit.spaces.tinynet.latency import efficientnet_kernels
        d, w = round(rng.uniform(0.3, 1.2), 2), round(rng.uniform(0.25, 1.0), 2)
        side = rng.choice([16, 24, 32, 48, 64, 96, 128])
        return Sample("tinynet", f"tinynet d={d} w={w} @{side}", (3, side, side), efficientnet_kernels(w, d, side, 10),
                      lambda: efficientnet_b0_family(w, d, num_classes=10))

    @classmethod
    def commands(cls):
        from searchkit.spaces.tinynet.cli import formula_command, train_command
        return {"formula": formula_command, "train": train_command}


class AtResolution(nn.Module):
    """Runs ``net`` at its genome's input side: inputs of another size are resized first
    (bilinear). Resolution stays data, not model: ``export`` saves ``net`` alone and records
    the side it runs at."""

    def __init__(self, net: nn.Module, side: int):
        super().__init__()
        self.net = net
        self.side = int(side)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.side or x.shape[-2] != self.side:
            x = torch.nn.functional.interpolate(x, size=(self.side, self.side), mode="bilinear",
                                                align_corners=False)
        return self.net(x)



def _replace(options: TinyNetOptions, **changes) -> TinyNetOptions:
    import dataclasses
    return dataclasses.replace(options, **changes)

