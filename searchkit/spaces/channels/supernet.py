"""The channel space's supernet: its trained base with a learnable width choice per unit.

Each prunable unit keeps its channels ranked by importance (the space's rule: L1 of the
producers' filters, or Torch-Pruning's group magnitude), and each width choice of
``space.keep`` is a mask over the top-k of them. A forward mixes the choices' masks with
Gumbel-softmax weights over learnable logits (FBNetV2's masked width search), so one set of
shared weights - the base's - serves every width; the temperature anneals from
``tau_start`` to ``tau_end`` over the run. Masks multiply the outputs of the unit's norms
(and depthwise convs, and producers that have no norm), where a pruned channel would have
vanished: with one-hot weights in eval mode the supernet computes exactly the physically
pruned network.

Costs are differentiable expectations under the logits' distribution: FLOPs and params
from the analytic cost table at the expected widths, latency as the exact expectation over
the predictor's per-kernel tables (each kernel depends on at most two units).

Example:
    >>> from searchkit.core.space import SpaceEnv
    >>> from searchkit.models import build_base
    >>> from searchkit.spaces.channels import ChannelOptions, ChannelSpace
    >>> space = ChannelSpace.from_config(ChannelOptions(model="resnet20"), SpaceEnv(base=build_base("resnet20")))
    >>> net = space.supernet()
    >>> len(net.arch_parameters()), tuple(net.logits.shape)
    (1, (9, 10))
    >>> bound = 0.3 * space.flops_params(space.base_genome())[0]
    >>> genome = space.derive(net, feasible=lambda g: space.flops_params(g)[0] <= bound)
    >>> space.flops_params(genome)[0] <= bound
    True
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from searchkit.spaces.channels.surgery import _l1_scores, keep_counts_array


class ChannelSupernet(nn.Module):
    """A copy of ``space.base`` whose units' widths are mixed by Gumbel-softmax masks."""

    # The runner's default Adam lr for the logits: a width choice has 10 options, not DARTS'
    # 8 ops per edge, and must move within a few epochs of a fine-tune-sized run.
    arch_lr = 0.02

    def __init__(self, space, tau_start: float = 5.0, tau_end: float = 0.5, rule: str = "expected"):
        super().__init__()
        self.space = space  # a plain attribute: its base stays untouched
        self.net = copy.deepcopy(space.base)
        self.tau_start, self.tau_end = float(tau_start), float(tau_end)
        self.tau = self.tau_start
        if rule not in ("expected", "argmax"):
            raise ValueError(f"derive rule '{rule}' is not valid (choices: expected, argmax)")
        self.rule = rule
        choices = np.asarray(space.choices, dtype=np.float64)
        units = space.units
        self.logits = nn.Parameter(torch.zeros(len(units), len(choices)))
        # counts[u, i]: channels unit u keeps at choice i (the space's own rounding rule)
        counts = np.stack([keep_counts_array(np.full(len(choices), u.channels, dtype=np.float64), choices)
                           for u in units])
        self.register_buffer("counts", torch.as_tensor(counts, dtype=torch.float32), persistent=False)
        scores = _orderings(space)
        # per unit, (channels, choices): 1 where a choice keeps a channel
        for i, (u, order) in enumerate(zip(units, scores)):
            rank = np.empty(u.channels, dtype=np.int64)
            rank[order] = np.arange(u.channels)
            kept = (rank[:, None] < counts[i][None, :]).astype(np.float32)
            self.register_buffer(f"keep_{i:03d}", torch.as_tensor(kept), persistent=False)
        self._weights: torch.Tensor | None = None
        self._hooks = [self.net.get_submodule(path).register_forward_hook(self._hook(path, targets))
                       for path, targets in _masked_outputs(units).items()]

    # -- the two parameter sets ----------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.logits]

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.net.parameters())

    def probabilities(self) -> torch.Tensor:
        """``(units, choices)``: the architecture distribution (softmax of the logits)."""
        return F.softmax(self.logits, dim=-1)

    def set_progress(self, fraction: float) -> None:
        """Anneal the temperature exponentially from ``tau_start`` (0) to ``tau_end`` (1)."""
        f = min(1.0, max(0.0, float(fraction)))
        self.tau = self.tau_start * (self.tau_end / self.tau_start) ** f

    # -- forward -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._weights = F.gumbel_softmax(self.logits, tau=self.tau, hard=False, dim=-1)
        else:  # the arg-max widths: the derived network, computed by masking
            self._weights = F.one_hot(self.logits.argmax(-1), self.logits.shape[-1]).to(self.logits.dtype)
        try:
            return self.net(x)
        finally:
            self._weights = None

    def _unit_mask(self, i: int) -> torch.Tensor:
        return getattr(self, f"keep_{i:03d}") @ self._weights[i]

    def _hook(self, path: str, targets: list[tuple[int, int, int]]) -> Callable:
        def hook(module, inputs, out):
            if self._weights is None:
                return out
            if len(targets) == 1 and targets[0][1:] == (0, 1) and self.space.units[targets[0][0]].channels == out.shape[1]:
                mask = self._unit_mask(targets[0][0])
            else:  # a slice of a wider output (a concatenation, a flatten)
                mask = out.new_ones(out.shape[1])
                for unit, off, rep in targets:
                    idx = off + torch.arange(self.space.units[unit].channels, device=out.device)[:, None] * rep \
                        + torch.arange(rep, device=out.device)[None, :]
                    mask = mask.index_put((idx.reshape(-1),), self._unit_mask(unit).repeat_interleave(rep))
            return out * mask.view(1, -1, *([1] * (out.dim() - 2)))
        return hook

    # -- expected costs --------------------------------------------------------------------
    def expected_widths(self) -> torch.Tensor:
        """``(units,)``: each unit's expected kept channels under the distribution."""
        return (self.probabilities() * self.counts).sum(-1)

    def expected_costs(self, models: dict) -> dict[str, torch.Tensor]:
        """Differentiable expected costs, in each cost model's own unit, of those models the
        supernet can price (``flops``, ``params``, ``latency``)."""
        out: dict[str, torch.Tensor] = {}
        if {"flops", "params"} & set(models):
            flops, params = _table_costs(self.space.table, self.expected_widths())
            if "flops" in models:
                out["flops"] = flops
            if "params" in models:
                out["params"] = params
        if "latency" in models and getattr(models["latency"], "predictor", None) is not None:
            got = self._latency_ms(models["latency"].predictor)
            if got is not None:
                out["latency"] = got
        return out

    def _latency_ms(self, predictor) -> torch.Tensor | None:
        key = id(predictor)
        if getattr(self, "_lat_key", None) != key:
            from searchkit.spaces.channels.latency import LatencyTable
            table = LatencyTable(predictor, self.space.kernel_map, self.space.choices)
            self._lat = _expectation_index(table) if table.usable else None
            self._lat_key = key
        if self._lat is None:
            return None
        p = self.probabilities()
        if self._lat[0].device != p.device:
            self._lat = tuple(t.to(p.device) if torch.is_tensor(t) else t for t in self._lat)
        secs, idx, d0, d1, const = self._lat
        n = p.shape[1]
        # the units' distributions, plus a certain "choice 0" for a kernel's missing unit
        pe = torch.cat([p, F.one_hot(torch.zeros(1, dtype=torch.long, device=p.device), n).to(p.dtype)])
        joint = pe[d0][:, :, None] * pe[d1][:, None, :]  # (kernels, n, n)
        return (joint * secs[idx]).sum() * 1e3 + const * 1e3

    def derive(self, feasible: Callable[[list[float]], bool] | None = None) -> list[float]:
        """The derived fractions: per unit the arg-max choice (``rule="argmax"``) or the choice
        nearest its expected width (``rule="expected"``, the quantity the bound's multiplier
        holds at the bound). With ``feasible``, repaired to meet the bounds exactly: while they
        break one, the unit furthest above its target width is narrowed one choice; then,
        while a step keeps them feasible, the unit furthest below it is widened."""
        probs = self.probabilities().detach().cpu().numpy().astype(np.float64)
        choices = np.asarray(self.space.choices, dtype=np.float64)
        if self.rule == "argmax":
            target = choices[probs.argmax(-1)]
            # ties in the repair go to the more probable neighbour
            score = lambda u, j: probs[u, j] / max(probs[u, idx[u]], 1e-12)  # noqa: E731
        else:
            target = probs @ choices
            score = lambda u, j: -abs(choices[j] - target[u]) + abs(choices[idx[u]] - target[u])  # noqa: E731
        idx = np.abs(choices[None, :] - target[:, None]).argmin(-1)
        if feasible is None:
            return [float(choices[i]) for i in idx]

        def step(way: int, must_fit: bool) -> bool:
            """The best one-choice move ``way`` (ties: the lower unit); False if none fits."""
            room = [u for u in range(len(idx)) if 0 <= idx[u] + way < len(choices)]
            for u in sorted(room, key=lambda u: -score(u, idx[u] + way)):
                idx[u] += way
                if not must_fit or feasible([float(choices[i]) for i in idx]):
                    return True
                idx[u] -= way
            return False
        while not feasible([float(choices[i]) for i in idx]) and step(-1, must_fit=False):
            pass
        while step(+1, must_fit=True):
            pass
        return [float(choices[i]) for i in idx]


def _orderings(space) -> list[np.ndarray]:
    """Each unit's channels, most important first (the order the space's rule keeps them)."""
    if space.options.rule == "magnitude":
        scores = space._group_scores
    else:  # l1 (and random, which has no nesting order: its widths are ranked by L1 here)
        scores = [_l1_scores(space.base, u) for u in space.units]
    return [np.argsort(-s, kind="stable") for s in scores]


def _masked_outputs(units) -> dict[str, list[tuple[int, int, int]]]:
    """``{module path: [(unit, offset, repeat)]}``: whose outputs a unit's mask multiplies."""
    out: dict[str, list[tuple[int, int, int]]] = {}
    for i, u in enumerate(units):
        mask_producers = len(u.norms) < len(u.producers)  # a producer without a norm after it
        for role, path, off, rep in u.members():
            if role in ("norm", "depthwise") or (role == "producer" and mask_producers):
                out.setdefault(path, []).append((i, off, rep))
    return out


def _table_costs(table, widths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FLOPs and params of the cost table at (fractional) kept widths, differentiably."""
    kw = {"dtype": widths.dtype, "device": widths.device}
    const = torch.as_tensor(table._const, **kw)
    comp = torch.as_tensor(table._comp, **kw)
    comp_const = torch.as_tensor(table._comp_const, **kw)
    vals = torch.cat([widths, const, comp_const + comp @ widths]) if len(comp_const) else torch.cat([widths, const])

    def term(a_in, a_out, a, b):
        fo = vals[torch.as_tensor(a_out, device=widths.device)]
        return (torch.as_tensor(a, **kw) * vals[torch.as_tensor(a_in, device=widths.device)] * fo).sum() + \
            (torch.as_tensor(b, **kw) * fo).sum()
    flops = term(table._f_in, table._f_out, table._f_a, table._f_b)
    params = term(table._p_in, table._p_out, table._p_p, table._p_q) + table.params_const
    return flops, params


def _expectation_index(table) -> tuple:
    """The latency table as tensors: per kernel a (choices x choices) gather of seconds."""
    flat, offs, d0, d1, mult, const = table._table
    n = len(table.choices)
    i = np.arange(n)
    idx = offs[:, None, None] + i[None, :, None] * mult[:, None, None] + i[None, None, :] * (mult[:, None, None] > 1)
    idx = np.minimum(idx, len(flat) - 1)  # a missing unit's choices > 0 carry probability 0
    return (torch.as_tensor(flat, dtype=torch.float32), torch.as_tensor(idx), torch.as_tensor(d0),
            torch.as_tensor(d1), float(const))


__all__ = ["ChannelSupernet"]
