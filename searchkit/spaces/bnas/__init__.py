"""Binarized NAS cells (``space=bnas``; BNAS, Chen et al. 2020, on PC-DARTS' cell space).

A genome is plain JSON: the op preset, the macro settings (``C``, ``cells``, ``reductions``,
``stem_multiplier``; full-precision stem and head) and two cells, ``normal`` and ``reduce``,
each 4 nodes of two ``[op, input]`` pairs (input 0 and 1: the two previous cells; 2.. the
cell's earlier nodes). Each node's pairs are sorted, so one cell has one archid. Optuna sees a
flat view, two categoricals per pair (``normal_n2_1_op``, ``normal_n2_1_in``), so abc, ga,
tpe, nsga2 and random search it; candidates train from scratch. Costs (``ops``, ``word_ops``,
``size_bytes`` beside ``flops`` and ``params``) are counted on the built network: see
:mod:`searchkit.spaces.bnas.costs` and ``docs/bnas.md``.

Example:
    >>> space = BNASSpace(BNASOptions(C=8, cells=3), num_classes=10)
    >>> g = space.base_genome()
    >>> g["normal"][0], g["reductions"]
    ([['sep_conv_5x5', 0], ['sep_conv_5x5', 1]], [1, 2])
    >>> swapped = {**g, "normal": [[p[1], p[0]] for p in g["normal"]]}
    >>> space.canonical(swapped) == g       # one cell, one genome
    True
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

from optuna.distributions import CategoricalDistribution

from searchkit.core.genome import Genome, archid
from searchkit.core.space import BinaryWeights, Built, LatencyKernels, OffersSupernet, Space, SpaceEnv
from searchkit.spaces.bnas.ops import PRESETS

NODES = 4
# cheapest first: a categorical's first choice is where smallest_genome() goes
_ORDER = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "bin_group_conv_3x3", "dil_conv_3x3", "sep_conv_3x3",
          "bin_conv_3x3", "bin_dil_conv_3x3", "dil_conv_5x5", "sep_conv_5x5", "bin_conv_5x5")
_LARGEST = {"bnas": "sep_conv_5x5", "binary": "bin_conv_5x5"}


@dataclass(frozen=True)
class BNASOptions:
    """``space.*`` options of ``space=bnas``."""

    # Op set: "bnas" (DARTS' 8 ops, XNOR weights, real activations) or "binary" (binary convs
    # with binary activations, per-channel scales and real residuals).
    preset: str = "bnas"
    # Channels of the first cell (doubled at each reduction), cells, and where the reductions sit
    # (unset: at 1/3 and 2/3 of the cells, as DARTS).
    C: int = 8
    cells: int = 5
    reductions: tuple[int, ...] | None = None
    stem_multiplier: int = 3

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"space.preset={self.preset} is not valid (choices: {', '.join(PRESETS)})")
        if self.C < 4 or self.cells < 1 or self.stem_multiplier < 1:
            raise ValueError("space.C must be >= 4 and space.cells, space.stem_multiplier >= 1")
        if self.reductions is not None and any(not 0 <= r < self.cells for r in self.reductions):
            raise ValueError(f"space.reductions must be cell positions in [0, {self.cells}), "
                             f"got {list(self.reductions)}")


class BNASSpace(BinaryWeights, OffersSupernet, LatencyKernels, Space):
    """Two binarized DARTS cells (normal, reduce) over fixed macro settings."""

    name = "bnas"
    Options = BNASOptions
    costs: ClassVar[tuple[str, ...]] = ("flops", "params", "ops", "word_ops", "size_bytes")
    contract_overrides: ClassVar[tuple[str, ...]] = ("space.C=4", "space.cells=2")
    reducible_supernet: ClassVar[bool] = True

    def __init__(self, options: BNASOptions | None = None, num_classes: int = 10, in_channels: int = 3,
                 side: int = 8):
        self.options = options or BNASOptions()
        o = self.options
        reductions = o.reductions if o.reductions is not None else sorted(
            {o.cells // 3, 2 * o.cells // 3} if o.cells >= 3 else {o.cells - 1})
        self.macro = {"C": int(o.C), "cells": int(o.cells), "reductions": [int(r) for r in reductions],
                      "stem_multiplier": int(o.stem_multiplier)}
        self.ops = [op for op in _ORDER if op in PRESETS[o.preset]]  # "none" is the supernet's only
        self.num_classes, self.in_channels, self.side = int(num_classes), int(in_channels), int(side)
        self._counted: OrderedDict = OrderedDict()
        self._kernels: OrderedDict = OrderedDict()
        # W1A1 cells: a latency bound is verified on the program running them as XNOR-popcount
        self.shipped_program = "model_xnor.pt2" if o.preset == "binary" else None

    @classmethod
    def from_config(cls, options: BNASOptions | None, env: SpaceEnv) -> "BNASSpace":
        return cls(options, env.num_classes, env.in_channels, env.image_size)

    @classmethod
    def min_data_side(cls, options: Any) -> int:
        return 8

    # -- genome <-> params ----------------------------------------------------------------
    def distributions(self) -> dict[str, CategoricalDistribution]:
        out = {}
        for cell in ("normal", "reduce"):
            for i in range(NODES):
                for j in range(2):
                    out[f"{cell}_n{i}_{j}_op"] = CategoricalDistribution(self.ops)
                    out[f"{cell}_n{i}_{j}_in"] = CategoricalDistribution(list(range(i + 2)))
        return out

    def genome_of(self, params) -> Genome:
        cells = {c: [[[params[f"{c}_n{i}_{j}_op"], int(params[f"{c}_n{i}_{j}_in"])] for j in range(2)]
                     for i in range(NODES)] for c in ("normal", "reduce")}
        return self.canonical({"model": "bnas", "preset": self.options.preset, **self.macro, **cells})

    @staticmethod
    def canonical(genome: Genome) -> Genome:
        """Each node's two ``[op, input]`` pairs in (input, op) order."""
        from searchkit.spaces.bnas.network import canonical
        return canonical(genome)

    def params_of(self, genome: Genome) -> dict[str, Any]:
        self.check(genome)
        return {**{f"{c}_n{i}_{j}_op": op for c in ("normal", "reduce") for i, node in enumerate(genome[c])
                   for j, (op, _) in enumerate(node)},
                **{f"{c}_n{i}_{j}_in": int(inp) for c in ("normal", "reduce") for i, node in enumerate(genome[c])
                   for j, (_, inp) in enumerate(node)}}

    def check(self, genome: Genome) -> None:
        """``ValueError`` (one line) for a genome this space cannot build."""
        if genome.get("model") != "bnas" or genome.get("preset") != self.options.preset:
            raise ValueError(f"genome is not a space=bnas preset={self.options.preset} genome")
        for c in ("normal", "reduce"):
            cell = genome.get(c)
            if not isinstance(cell, list) or len(cell) != NODES:
                raise ValueError(f"genome's {c} cell must have {NODES} nodes")
            for i, node in enumerate(cell):
                for op, inp in node:
                    if op not in self.ops or not 0 <= int(inp) < i + 2:
                        raise ValueError(f"genome's {c} node {i} has ({op}, {inp}): op must be one of "
                                         f"{self.ops}, input in [0, {i + 2})")

    def base_genome(self) -> Genome:
        op = _LARGEST[self.options.preset]
        cell = [[[op, 0], [op, 1]] for _ in range(NODES)]
        return self.canonical({"model": "bnas", "preset": self.options.preset, **self.macro,
                               "normal": cell, "reduce": cell})

    def input_size(self, genome: Genome | None = None) -> tuple[int, int, int]:
        return (self.in_channels, self.side, self.side)

    # -- networks and costs ---------------------------------------------------------------
    def build(self, genome: Genome, *, seed: int = 0) -> Built:
        from searchkit.spaces.bnas.network import CellNetwork
        self.check(genome)
        net = CellNetwork(genome["preset"], genome["normal"], genome["reduce"], C=genome["C"],
                          cells=genome["cells"], reductions=genome["reductions"], num_classes=self.num_classes,
                          in_channels=self.in_channels, stem_multiplier=genome["stem_multiplier"])
        return Built(net, {}, self.input_size())

    def _count(self, genome: Genome) -> dict:
        key = archid(genome)
        if key not in self._counted:
            from searchkit.spaces.bnas.costs import count_binary
            self._counted[key] = count_binary(self.build(genome).net, self.input_size())
            while len(self._counted) > 256:
                self._counted.popitem(last=False)
        return self._counted[key]

    def flops_params(self, genome: Genome) -> tuple[int, int]:
        c = self._count(genome)
        return c["flops"], c["params"]

    def binary_costs(self, genome: Genome) -> dict[str, float]:
        c = self._count(genome)
        return {k: c[k] for k in ("ops", "word_ops", "size_bytes")}

    # -- latency --------------------------------------------------------------------------
    def latency_network(self, built: Built):
        """The exported program's network: W1A1 convs as the XNOR-popcount op."""
        import copy

        from searchkit.spaces.bnas.xnor import xnor_program
        return xnor_program(copy.deepcopy(built.net).eval())

    def kernels(self, genome: Genome) -> list:
        """The kernels of the genome's XNOR program, traced once per archid (random weights:
        they change no kernel)."""
        key = archid(genome)
        if key not in self._kernels:
            from searchkit.costs.trace import trace_kernels
            self._kernels[key] = trace_kernels(self.latency_network(self.build(genome)), self.input_size())
            while len(self._kernels) > 1024:
                self._kernels.popitem(last=False)
        return self._kernels[key]

    def own_kernels(self) -> dict[str, str]:
        return {"xnor_conv": "the XNOR op"} if self.options.preset == "binary" else {}  # W1A32: float convs

    # -- one-shot search ------------------------------------------------------------------
    def supernet(self, **options: Any):
        """PC-DARTS' supernet of this macro setting (``k``: partial channels; ``gumbel``,
        ``tau_start``, ``tau_end``: Gumbel-softmax op weights)."""
        from searchkit.spaces.bnas.supernet import Supernet
        return Supernet(self, k=int(options.get("k", 4)),
                        **{k: options[k] for k in ("gumbel", "tau_start", "tau_end") if k in options})

    def derive(self, supernet, feasible=None) -> Genome:
        """The supernet's cell; with ``feasible``, repaired until it accepts the cell: each
        step swaps one op for a cheaper one (earlier in ``self.ops``), the swap that loses
        least of softmax(α)'s log-probability, until none is left to make."""
        genome = supernet.derive()
        if feasible is None:
            return genome
        import torch
        with torch.no_grad():  # ops the reduction dropped are -inf: swapped to last
            logp = {t: torch.log_softmax(supernet.op_logits(t), dim=-1) for t in ("normal", "reduce")}
        while not feasible(genome):
            swaps = []
            for t in ("normal", "reduce"):
                start = 0
                for i, node in enumerate(genome[t]):
                    for k, (op, j) in enumerate(node):
                        row = logp[t][start + int(j)]
                        here = self.ops.index(op)
                        swaps += [(float(row[here] - row[o]), t, i, k, o) for o in range(here)]
                    start += i + 2
            if not swaps:
                return genome  # the cheapest cell of these edges breaks a bound: recorded infeasible
            _, t, i, k, o = min(swaps)
            cell = [[list(p) for p in node] for node in genome[t]]
            cell[i][k][0] = self.ops[o]
            genome = self.canonical({**genome, t: cell})
        return genome

    def export(self, built: Built, folder) -> dict[str, str]:
        """W1A1 cells (``preset=binary``) also ship packed: ``binary.safetensors`` and a
        ``model_xnor.pt2`` running them as XNOR-popcount (see ``format.py``)."""
        from searchkit.spaces.bnas.format import write_binary
        return write_binary(self, built, folder)

    def describe(self, genome: Genome) -> dict[str, Any]:
        def cell(c):
            return "; ".join("+".join(f"{op}({i})" for op, i in node) for node in genome[c])
        return {"summary": f"normal: {cell('normal')} | reduce: {cell('reduce')}",
                "cells": {c: genome[c] for c in ("normal", "reduce")}}


__all__ = ["BNASOptions", "BNASSpace", "NODES"]
