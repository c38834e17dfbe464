"""The pruners users already have, cut to a FLOPs bound beside the search: uniform, global
magnitude and global Taylor.

Every pruner cuts the search's own units with the same surgery, so an arm differs from the
search only in how many and which channels each unit keeps. Magnitude and Taylor scores are
Torch-Pruning's group importances (``GroupMagnitudeImportance(p=2)``, ``GroupTaylorImportance``,
mean-normalised within each group); as in its global pruning, all channels are ranked together
and removed lowest first, here until the FLOPs bound holds (each unit keeps at least one).

Example:
    >>> from searchkit.models import build_base
    >>> from searchkit.spaces.channels import ChannelOptions, ChannelSpace
    >>> space = ChannelSpace(ChannelOptions(model="resnet20"), build_base("resnet20"))
    >>> bound = 0.4 * space.flops_params(space.base_genome())[0]
    >>> cut = prune_globally(space, "magnitude", bound)
    >>> cut.flops <= bound, cut.model.layer1[0].conv1.out_channels < 16
    (True, True)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from searchkit.spaces.channels.surgery import apply_history

PRUNERS = ("uniform", "magnitude", "taylor")


@dataclass
class Pruned:
    """One pruner's cut: the smaller model, which channels it kept, and its cost."""

    model: nn.Module
    history: dict[str, list[int]]
    keep: list[float]
    flops: int


def uniform_fraction(space, bound: float) -> float:
    """The largest common preserved fraction (step 0.01) whose FLOPs meet ``bound``."""
    best = 0.01
    for step in range(1, 101):
        if space.flops_params(space.uniform(step / 100))[0] <= bound:
            best = step / 100
    return best


def unit_scores(space, criterion: str, data=None, *, batches: int = 8, seed: int = 0) -> list[np.ndarray]:
    """Torch-Pruning's importance of every channel of every unit of ``space`` (its base).

    ``criterion="taylor"`` needs ``data`` (DataSplits): gradients of the training loss over
    ``batches`` batches of 32.
    """
    import torch_pruning as tp
    base = copy.deepcopy(space.base).cpu()
    x = torch.zeros((1, *space.input_size()))
    graph = tp.DependencyGraph().build_dependency(base.eval(), example_inputs=x, verbose=False)
    if criterion == "taylor":
        if data is None:
            raise ValueError("taylor importance needs training data")
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(data.train), generator=gen)[: 32 * batches]
        base.train()
        base.zero_grad()
        loss_fn = nn.CrossEntropyLoss()
        for i in range(0, len(order), 32):
            xb, yb = zip(*(data.train[int(j)][:2] for j in order[i:i + 32]))
            loss_fn(base(torch.stack(xb)), torch.as_tensor(yb)).backward()
        imp = tp.importance.GroupTaylorImportance()
    elif criterion == "magnitude":
        imp = tp.importance.GroupMagnitudeImportance(p=2)
    else:
        raise ValueError(f"unknown criterion '{criterion}' (choices: magnitude, taylor)")
    modules = dict(base.named_modules())
    scores = []
    for u in space.units:
        explicit = {p for r, p, _, _ in u.slices if r == "producer"}
        root = modules[next(p for p in u.producers if p not in explicit)]
        fn = tp.prune_conv_out_channels if isinstance(root, nn.Conv2d) else tp.prune_linear_out_channels
        with torch.no_grad():
            s = imp(graph.get_pruning_group(root, fn, list(range(u.channels))))
        scores.append(np.zeros(u.channels) if s is None else s.detach().double().cpu().numpy())
    return scores


def prune_globally(space, criterion: str, bound: float, data=None, *, seed: int = 0) -> Pruned:
    """Remove the globally least important channels until the FLOPs are at most ``bound``."""
    if criterion == "uniform":
        genome = space.uniform(uniform_fraction(space, bound))
        built = space.build(genome, seed=seed)
        return Pruned(built.model, built.recipe, genome["keep"], space.flops_params(genome)[0])
    scores = unit_scores(space, criterion, data, seed=seed)
    channels = np.array([u.channels for u in space.units])
    # every channel but each unit's best, lowest score first (ties: unit, then index)
    ranked = sorted((float(s[i]), u, i) for u, s in enumerate(scores)
                    for i in np.argsort(-s, kind="stable")[1:])

    def keep_after(removed: int) -> np.ndarray:
        counts = channels.copy()
        for _, u, _ in ranked[:removed]:
            counts[u] -= 1
        return counts

    def flops(counts: np.ndarray) -> int:
        return space.table.costs((counts / channels).tolist()).flops

    lo, hi = 0, len(ranked)
    if flops(keep_after(hi)) > bound:
        raise ValueError(f"{criterion} pruning cannot reach {bound:.4g} FLOPs with these units")
    while lo < hi:
        mid = (lo + hi) // 2
        if flops(keep_after(mid)) <= bound:
            hi = mid
        else:
            lo = mid + 1
    counts = keep_after(lo)
    history = {u.name: sorted(int(i) for i in np.argsort(-scores[j], kind="stable")[: counts[j]])
               for j, u in enumerate(space.units)}
    keep = (counts / channels).tolist()
    return Pruned(apply_history(space.base, space.units, history), history, keep, flops(counts))


__all__ = ["PRUNERS", "Pruned", "prune_globally", "unit_scores", "uniform_fraction"]
