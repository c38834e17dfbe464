"""1×N block sparsity (``space=onexn``; Lin et al., "1xN Pattern for Pruning CNNs"): per
prunable layer, a block size N and a sparsity p.

A block is N consecutive output channels × 1 input channel (× k×k). The targets are every
ungrouped conv but the stem, and every linear layer (depthwise convs and the stem stay
dense). Before masking, each traced channel group of the base (the channel space's
:func:`~searchkit.spaces.channels.discover_units`, ``all`` mode) is reordered by the L1 norm
of its producers' filters, so strong filters share blocks; consumers, norms and residual
partners follow, so the network is unchanged (filter rearrangement). A candidate zeroes,
per layer, the ⌊p·#blocks⌋ blocks of lowest L1 norm; the masks stay fixed while it
fine-tunes. ``nonzero_macs``, ``nonzero_params`` and ``latency`` (a target profiled with
the op's ``sparse_conv`` kernels, see ``latency.py``) price it; ``searchkit export`` writes
the block-sparse weights (``sparse.safetensors``) and a program running the compiled kernel
(``model_sparse.pt2``) beside the dense ``model.pt2``. See ``docs/onexn.md``.

Example:
    >>> from searchkit.models import build_base
    >>> space = OneXNSpace(OneXNOptions(model="resnet20"), build_base("resnet20"))
    >>> len(space.targets), space.choices[0]          # 18 convs after the stem, the head
    (19, (1, 2, 4, 8, 16))
    >>> g = space.genome_of({**space.params_of(space.base_genome()), "p_000": 5})
    >>> g["blocks"][0], space.nonzero_costs(g)[0] < space.nonzero_costs(space.base_genome())[0]
    ([1, 0.5], True)
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from optuna.distributions import IntDistribution
from torch import nn

from searchkit.core.genome import Genome
from searchkit.core.space import Built, LatencyKernels, NeedsBase, SparseWeights, Space, SpaceEnv
from searchkit.registry import MODELS

_BLOCKS = (1, 2, 4, 8, 16, 32)
_SPARSITY = tuple(round(0.1 * i, 1) for i in range(10))


@dataclass(frozen=True)
class OneXNOptions:
    """``space.*`` options of ``space=onexn``."""

    # The base network (a registered model, or torchvision:/timm:/pkg.module:factory).
    model: str = "mobilenet_v2"
    # Block sizes a layer may take; a layer takes those that divide its output channels
    # (none does: the largest divisor below the largest size).
    block_sizes: tuple[int, ...] = _BLOCKS
    # Sparsities a layer may take: the share of its blocks zeroed, in [0, 1).
    sparsity: tuple[float, ...] = _SPARSITY

    def __post_init__(self) -> None:
        MODELS.check(self.model)
        b = self.block_sizes
        if not b or any(not isinstance(n, int) or n < 1 for n in b) or list(b) != sorted(set(b)):
            raise ValueError(f"space.block_sizes must be increasing positive integers, got {list(b)}")
        s = self.sparsity
        if not s or any(not 0 <= p < 1 for p in s) or list(s) != sorted(set(s)):
            raise ValueError(f"space.sparsity must be increasing fractions in [0, 1), got {list(s)}")


def block_choices(channels: int, sizes) -> tuple[int, ...]:
    """The block sizes of ``sizes`` that divide ``channels`` (else its largest divisor below them)."""
    fits = tuple(n for n in sizes if channels % n == 0)
    return fits or (max(d for d in range(1, max(sizes) + 1) if channels % d == 0),)


def prunable_layers(base: nn.Module) -> list[str]:
    """Paths of the 1×N targets: ungrouped convs after the first conv, and linear layers."""
    out, seen_conv = [], False
    for path, mod in base.named_modules():
        if isinstance(mod, nn.Conv2d):
            if seen_conv and mod.groups == 1:
                out.append(path)
            seen_conv = True
        elif isinstance(mod, nn.Linear):
            out.append(path)
    return out


class OneXNSpace(NeedsBase, SparseWeights, LatencyKernels, Space):
    """Per-layer (block size, sparsity) over a base network's convs and linear layers."""

    name = "onexn"
    Options = OneXNOptions
    costs: ClassVar[tuple[str, ...]] = ("flops", "params", "nonzero_macs", "nonzero_params")
    # the program a latency bound is measured on at export: the one running the 1xN op
    shipped_program: ClassVar[str] = "model_sparse.pt2"
    contract_overrides: ClassVar[tuple[str, ...]] = ("space.model=resnet20",)

    def __init__(self, options: OneXNOptions, base: nn.Module, input_size=(3, 32, 32)):
        self.options = options
        self.base = base
        self._input_size = tuple(int(s) for s in input_size)
        self.targets = prunable_layers(base)
        if not self.targets:
            raise ValueError(f"{options.model} has no conv or linear layer to 1xN-prune")
        mods = dict(base.named_modules())
        outs = [mods[p].weight.shape[0] for p in self.targets]
        if not any(c % n == 0 for c in outs for n in options.block_sizes):
            raise ValueError(f"space.block_sizes={list(options.block_sizes)}: none divides the output channels "
                             f"of any layer of {options.model}")
        self.choices = [block_choices(c, options.block_sizes) for c in outs]

    @classmethod
    def from_config(cls, options: OneXNOptions | None, env: SpaceEnv) -> "OneXNSpace":
        if env.base is None:
            raise ValueError("space=onexn prunes a base network: none was given")
        return cls(options or OneXNOptions(), env.base, (env.in_channels, env.image_size, env.image_size))

    @classmethod
    def base_model(cls, options: OneXNOptions | None) -> str:
        return (options or OneXNOptions()).model

    # -- genome <-> params ----------------------------------------------------------------
    def distributions(self) -> dict[str, IntDistribution]:
        out = {}
        for i, ch in enumerate(self.choices):
            out[f"n_{i:03d}"] = IntDistribution(0, len(ch) - 1)
            out[f"p_{i:03d}"] = IntDistribution(0, len(self.options.sparsity) - 1)
        return out

    def directions(self) -> dict[str, int]:
        # more sparsity lowers every cost; the block size changes none of the counted ones
        return {n: (-1 if n.startswith("p_") else 0) for n in self.distributions()}

    def genome_of(self, params) -> Genome:
        sp = self.options.sparsity
        return self.genome([[self.choices[i][params[f"n_{i:03d}"]], sp[params[f"p_{i:03d}"]]]
                            for i in range(len(self.targets))])

    def genome(self, blocks) -> Genome:
        if len(blocks) != len(self.targets):
            raise ValueError(f"genome has {len(blocks)} layers; {self.options.model} has {len(self.targets)}")
        return {"model": self.options.model, "blocks": [[int(n), round(float(p), 6)] for n, p in blocks]}

    def params_of(self, genome: Genome) -> dict[str, Any]:
        self._check(genome)
        out = {}
        for i, (n, p) in enumerate(genome["blocks"]):
            if n not in self.choices[i]:
                raise ValueError(f"layer {self.targets[i]}: block size {n} is not one of {list(self.choices[i])}")
            out[f"n_{i:03d}"] = self.choices[i].index(n)
            out[f"p_{i:03d}"] = min(range(len(self.options.sparsity)),
                                    key=lambda j: abs(self.options.sparsity[j] - p))
        return out

    def uniform(self, n: int, p: float) -> Genome:
        """One (N, p) for every layer (N clipped to each layer's choices)."""
        return self.genome([[max([c for c in ch if c <= n] or [ch[0]]), p] for ch in self.choices])

    def base_genome(self) -> Genome:
        return self.genome([[ch[0], 0.0] for ch in self.choices])

    def input_size(self, genome: Genome | None = None) -> tuple[int, int, int]:
        return self._input_size

    def _check(self, genome: Genome) -> None:
        if genome.get("model") != self.options.model:
            raise ValueError(f"genome is for model {genome.get('model')}, space is {self.options.model}")

    # -- costs ----------------------------------------------------------------------------
    @functools.cached_property
    def _layer_costs(self) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
        """Dense (FLOPs, params), and per target: its weight MACs, weights and block count."""
        from searchkit.costs.flops import count_costs, flops_coeffs, forward_rows, in_out, layer_kind
        total = count_costs(self.base, self._input_size)
        mods = dict(self.base.named_modules())
        macs = dict.fromkeys(self.targets, 0)
        for path, rows in forward_rows(self.base, self._input_size):
            if path in macs:
                kind = layer_kind(mods[path])
                a, _ = flops_coeffs(kind, mods[path], rows, "macs")
                cin, cout = in_out(kind, mods[path])
                macs[path] += a * cin * cout
        weights = [mods[p].weight.numel() for p in self.targets]
        blocks = [mods[p].weight.shape[0] * mods[p].weight.shape[1] for p in self.targets]  # / N per genome
        return (total.flops, total.params, np.array([macs[p] for p in self.targets], dtype=np.int64),
                np.array(weights, dtype=np.int64), np.array(blocks, dtype=np.int64))

    def flops_params(self, genome: Genome) -> tuple[int, int]:
        flops, params, *_ = self._layer_costs
        return flops, params

    def _dropped(self, genome: Genome) -> np.ndarray:
        """Per layer, the share of its weights a genome zeroes (⌊p·#blocks⌋ / #blocks)."""
        *_, pairs = self._layer_costs
        out = np.zeros(len(self.targets))
        for i, (n, p) in enumerate(genome["blocks"]):
            nb = int(pairs[i]) // int(n)
            out[i] = int(p * nb) / nb
        return out

    def nonzero_costs(self, genome: Genome) -> tuple[int, int]:
        flops, params, macs, weights, _ = self._layer_costs
        drop = self._dropped(genome)
        return (int(flops - np.floor(macs * drop + 1e-9).sum()), int(params - np.floor(weights * drop + 1e-9).sum()))

    # -- latency ------------------------------------------------------------------------
    @functools.cached_property
    def _trace(self):
        from searchkit.spaces.onexn.latency import BaseTrace
        from searchkit.spaces.onexn.sparse import supported
        mods = dict(self.base.named_modules())
        return BaseTrace(self.base, self._input_size), [supported(mods[p]) for p in self.targets]

    def kernels(self, genome: Genome) -> list:
        """The kernels the genome's sparse program runs (``model_sparse.pt2``): a sparsified
        layer the op runs is a ``sparse_conv`` row, the rest the dense rows, BN folded."""
        from searchkit.spaces.onexn.latency import program_kernels
        self._check(genome)
        trace, runs = self._trace
        kept = 1 - self._dropped(genome)
        return program_kernels(trace, [(path, int(n), float(k), ok and p > 0) for path, (n, p), k, ok
                                       in zip(self.targets, genome["blocks"], kept, runs)])

    def latency_network(self, built: Built) -> nn.Module:
        from searchkit.spaces.onexn.format import program_of
        return program_of(self, built)

    def own_kernels(self) -> dict[str, str]:
        return {"sparse_conv": "the 1xN op"}

    # -- networks -------------------------------------------------------------------------
    @functools.cached_property
    def arranged(self) -> nn.Module:
        """The base with every traced channel group reordered by its producers' L1 norm."""
        from searchkit.spaces.channels import discover_units
        from searchkit.spaces.channels.surgery import permute_units
        units = discover_units(self.base, "all", self._input_size, listed=False)
        mods = dict(self.base.named_modules())
        orders = {}
        for u in units:
            score = np.zeros(u.channels)
            for role, path, off, rep in u.members():
                if role != "producer":
                    continue
                w = mods[path].weight.detach()
                part = w.abs().reshape(w.shape[0], -1).sum(1)[off:off + u.channels * rep]
                part = part.reshape(u.channels, rep).sum(1).double().numpy()
                score += part / max(part.mean(), 1e-12)
            orders[u.name] = [int(i) for i in np.argsort(-score, kind="stable")]
        return permute_units(self.base, units, orders)

    def build(self, genome: Genome, *, seed: int = 0) -> Built:
        from searchkit.spaces.onexn.sparse import block_mask, fix_mask
        self._check(genome)
        model = copy.deepcopy(self.arranged)
        for path, (n, p) in zip(self.targets, genome["blocks"]):
            if p > 0:
                mod = model.get_submodule(path)
                fix_mask(mod, block_mask(mod.weight, n, p))
        return Built(model, self.recipe(genome), self._input_size)

    def recipe(self, genome: Genome, *, seed: int = 0) -> dict:
        """``{"block_sizes": {layer: N}}`` of the layers a genome sparsifies."""
        return {"block_sizes": {path: n for path, (n, p) in zip(self.targets, genome["blocks"]) if p > 0}}

    def describe(self, genome: Genome) -> dict[str, Any]:
        drop = self._dropped(genome)
        nz = self.nonzero_costs(genome)[0] / self._layer_costs[0]
        ns = sorted({n for n, _ in genome["blocks"]})
        return {"summary": f"N in {ns}, {nz:.1%} of the dense MACs non-zero",
                "layers": {"names": list(self.targets), "values": [round(float(d), 4) for d in drop],
                           "label": "zeroed share", "block": [n for n, _ in genome["blocks"]]}}

    @classmethod
    def commands(cls):
        from searchkit.spaces.onexn.cli import check_command
        return {"check": check_command}

    def export(self, built: Built, folder) -> dict[str, str]:
        from searchkit.spaces.onexn.format import write_sparse
        return write_sparse(self, built, folder)


__all__ = ["OneXNOptions", "OneXNSpace", "block_choices", "prunable_layers"]
