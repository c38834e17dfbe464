"""The PC-DARTS supernet of ``space=bnas``: every op on every edge, mixed by softmax(α).

- Partial channels (PC-DARTS): each mixed edge runs its ops on 1/K of the channels and
  passes the rest through (max-pooled at reduction), then shuffles channels so the next
  step samples others; activation memory falls roughly by K.
- Edge normalization: a node sums its incoming edges weighted by softmax(β) over them, so
  the edge choice is stable when K drops channel information.
- ``gumbel``: ops mixed by Gumbel-softmax samples of α (temperature annealed by
  ``set_progress``) while training, instead of softmax(α).
- ``derive``: per node the two incoming edges with the largest softmax(α)[op]·softmax(β),
  each with its best op other than ``none`` (DARTS' rule).
- Operation-space reduction (``algo.reduce``, :mod:`searchkit.strategies.reduction`): each
  edge's ops can be dropped (``choices()``: the logits and the mask of ops still active);
  dropped ops are not run, so later epochs are cheaper. ``path`` runs one op per edge (a
  single-path net on the shared weights) to score sampled paths.
- ``expected_costs``: the derived network's ``flops``, ``params``, ``ops``, ``word_ops``,
  ``size_bytes`` and predicted ``latency`` in expectation, differentiable in α and β (for the
  runner's bound penalty): the fixed part (stem, preprocessing, head) plus, per node, two
  edges drawn by softmax(β), each with an op drawn by softmax(α) over the ops other than
  ``none``; every op priced at full width where it sits (its cell's channels, stride and side).

Example:
    >>> import torch
    >>> from searchkit.spaces.bnas import BNASOptions, BNASSpace
    >>> space = BNASSpace(BNASOptions(C=8, cells=3), num_classes=10)
    >>> net = Supernet(space, k=4)
    >>> tuple(net(torch.randn(2, 3, 8, 8)).shape), len(list(net.arch_parameters()))
    ((2, 10), 4)
    >>> space.check(net.derive()) is None
    True
    >>> e = net.expected_costs({"ops": None})
    >>> bool(0 < e["ops"] < space.binary_costs(space.base_genome())["ops"])
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from searchkit.spaces.bnas.network import canonical
from searchkit.spaces.bnas.ops import FactorizedReduce, make_op, relu_conv_bn

COSTS = ("flops", "params", "ops", "word_ops", "size_bytes")

NODES = 4
EDGES = sum(range(2, NODES + 2))  # 14: node i reads the 2 cell inputs and the i earlier nodes


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class MixedOp(nn.Module):
    def __init__(self, preset: str, ops: list[str], c: int, stride: int, k: int):
        super().__init__()
        self.k = k if c % k == 0 and c // k >= 1 else 1
        self.stride = stride
        self.ops = nn.ModuleList(make_op(preset, name, c // self.k, stride) for name in ops)
        self.bypass = nn.MaxPool2d(2, 2, ceil_mode=True) if stride == 2 else nn.Identity()

    def forward(self, x, weights, active: list[int]):
        part = x.shape[1] // self.k
        mixed = sum(weights[o] * self.ops[o](x[:, :part]) for o in active)
        if self.k == 1:
            return mixed
        return channel_shuffle(torch.cat([mixed, self.bypass(x[:, part:])], dim=1), self.k)


class SearchCell(nn.Module):
    def __init__(self, preset, ops, c_pp, c_p, c, reduction, reduction_prev, k):
        super().__init__()
        self.reduction = reduction
        self.pre0 = FactorizedReduce(c_pp, c) if reduction_prev else relu_conv_bn(c_pp, c, 1, 1, 0)
        self.pre1 = relu_conv_bn(c_p, c, 1, 1, 0)
        self.edges = nn.ModuleList(MixedOp(preset, ops, c, 2 if reduction and j < 2 else 1, k)
                                   for i in range(NODES) for j in range(i + 2))

    def forward(self, s0, s1, alpha, beta, active: list[list[int]]):
        states = [self.pre0(s0), self.pre1(s1)]
        start = 0
        for i in range(NODES):
            n = i + 2
            b = F.softmax(beta[start:start + n], dim=-1)
            states.append(sum(b[j] * self.edges[start + j](states[j], alpha[start + j], active[start + j])
                              for j in range(n)))
            start += n
        return torch.cat(states[2:], dim=1)


class Supernet(nn.Module):
    """The supernet of a bnas space's macro settings, its op preset plus ``none``."""

    def __init__(self, space, k: int = 4, gumbel: bool = False, tau_start: float = 5.0, tau_end: float = 0.5):
        super().__init__()
        self.gumbel, self.tau_start, self.tau_end = bool(gumbel), float(tau_start), float(tau_end)
        self.tau = self.tau_start
        m = space.macro
        self.preset = space.options.preset
        self.op_names = ["none"] + list(space.ops)
        c_stem = m["stem_multiplier"] * m["C"]
        self.stem = nn.Sequential(nn.Conv2d(space.in_channels, c_stem, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c_stem))
        c_pp, c_p, c = c_stem, c_stem, m["C"]
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(m["cells"]):
            reduction = i in set(m["reductions"])
            if reduction:
                c *= 2
            self.cells.append(SearchCell(self.preset, self.op_names, c_pp, c_p, c, reduction, reduction_prev, k))
            reduction_prev = reduction
            c_pp, c_p = c_p, 4 * c
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, space.num_classes)
        n = len(self.op_names)
        self.alpha = nn.ParameterDict({t: nn.Parameter(1e-3 * torch.randn(EDGES, n)) for t in ("normal", "reduce")})
        self.beta = nn.ParameterDict({t: nn.Parameter(1e-3 * torch.randn(EDGES)) for t in ("normal", "reduce")})
        for t in ("normal", "reduce"):  # ops still in the search (operation-space reduction drops some)
            self.register_buffer(f"active_{t}", torch.ones(EDGES, n, dtype=torch.bool))
            self.register_buffer(f"sel_{t}", torch.zeros(EDGES, n, dtype=torch.float64))
        self.path: dict[str, list[int]] | None = None  # one op per edge: a single-path net
        self._macro = dict(m)
        self._space = space
        self._costs: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None

    def arch_parameters(self):
        return [*self.alpha.values(), *self.beta.values()]

    def weight_parameters(self):
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def choices(self) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``{cell type: (α, mask of the ops still active, their selection likelihood)}``, a row
        per edge (the reduction's state: buffers, so checkpoints keep it)."""
        return {t: (self.alpha[t], getattr(self, f"active_{t}"), getattr(self, f"sel_{t}"))
                for t in ("normal", "reduce")}

    def op_logits(self, t: str) -> torch.Tensor:
        """α of the ops an edge can derive (all but ``none``), -inf for those the reduction dropped."""
        return self.alpha[t][:, 1:].masked_fill(~getattr(self, f"active_{t}")[:, 1:], float("-inf"))

    def op_weights(self, t: str, sample: bool = False) -> torch.Tensor:
        """softmax(α) over each edge's active ops (0 for dropped ones); with ``sample``, a
        Gumbel-softmax draw at the current temperature."""
        logits = self.alpha[t].masked_fill(~getattr(self, f"active_{t}"), float("-inf"))
        return F.gumbel_softmax(logits, tau=self.tau, dim=-1) if sample else F.softmax(logits, dim=-1)

    def set_progress(self, fraction: float) -> None:
        """Anneal the Gumbel temperature exponentially from ``tau_start`` (0) to ``tau_end`` (1)."""
        self.tau = self.tau_start * (self.tau_end / self.tau_start) ** min(max(fraction, 0.0), 1.0)

    def forward(self, x):
        s0 = s1 = self.stem(x)
        weights, active = {}, {}
        for t in ("normal", "reduce"):
            if self.path is not None:
                weights[t] = torch.ones(EDGES, len(self.op_names), device=x.device)
                active[t] = [[int(o)] for o in self.path[t]]
            else:
                weights[t] = self.op_weights(t, sample=self.gumbel and self.training)
                active[t] = [[o for o, on in enumerate(row) if on] for row in getattr(self, f"active_{t}").tolist()]
        for cell in self.cells:
            t = "reduce" if cell.reduction else "normal"
            s0, s1 = s1, cell(s0, s1, weights[t], self.beta[t], active[t])
        return self.classifier(torch.flatten(self.pool(s1), 1))

    def expected_costs(self, models) -> dict[str, torch.Tensor]:
        """Differentiable expected costs (see the module docstring) of the ``models`` named."""
        fixed, table = self._cost_table()
        out = {name: self._expect(fixed[COSTS.index(name)], {t: v[..., COSTS.index(name)] for t, v in table.items()})
               for name in models if name in COSTS}
        predictor = getattr(models.get("latency"), "predictor", None)
        if predictor is not None:
            fixed, table = self._latency_table(models["latency"], predictor)
            out["latency"] = self._expect(fixed, table)
        return out

    def _expect(self, fixed: torch.Tensor, table: dict[str, torch.Tensor]) -> torch.Tensor:
        """``fixed`` plus each node's two edges (softmax(β)) with their op (softmax(α)), priced
        by ``table``: {cell type: (EDGES, ops) summed over that type's cells}."""
        total = fixed.to(self.alpha["normal"].dtype)
        for t, per_op in table.items():
            p = F.softmax(self.op_logits(t), dim=-1)  # the op an edge derives: never "none"
            edge = (p * per_op.to(p)).sum(1)           # (EDGES,)
            start = 0
            for i in range(NODES):
                n = i + 2
                b = F.softmax(self.beta[t][start:start + n], dim=-1)
                total = total + 2 * (b * edge[start:start + n]).sum()
                start += n
        return total

    def _positions(self):
        """``(cell type, edge, channels, stride, input side)`` of every edge of every cell."""
        side, c, m = self._space.side, self._macro["C"], self._macro
        for i in range(m["cells"]):
            reduction = i in set(m["reductions"])
            c, t = (2 * c, "reduce") if reduction else (c, "normal")
            out = (side + 1) // 2 if reduction else side
            for e, j in enumerate(j for node in range(NODES) for j in range(node + 2)):
                yield t, e, c, 2 if reduction and j < 2 else 1, side if j < 2 else out
            side = out

    def _tabulate(self, price, whole) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(fixed, per-type tables) of a cost ``price(op, c, stride, side)`` (a float64 vector):
        the fixed part is the base genome's ``whole`` cost less its edges' ops."""
        ops, priced = self.op_names[1:], {}
        width = len(whole)
        table = {t: torch.zeros(EDGES, len(ops), width, dtype=torch.float64) for t in ("normal", "reduce")}
        for t, e, c, stride, side in self._positions():
            for o, name in enumerate(ops):
                if (name, c, stride, side) not in priced:
                    priced[name, c, stride, side] = price(name, c, stride, side)
                table[t][e, o] += priced[name, c, stride, side]
        base, chosen = self._space.base_genome(), torch.zeros(width, dtype=torch.float64)
        for t in ("normal", "reduce"):
            start = 0
            for i, node in enumerate(base[t]):
                for name, j in node:
                    chosen += table[t][start + int(j), ops.index(name)]
                start += i + 2
        return whole - chosen, {t: v.float() for t, v in table.items()}

    def _cost_table(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(fixed costs, {cell type: (EDGES, ops, costs) summed over that type's cells})."""
        if self._costs is None:
            from searchkit.spaces.bnas.costs import count_binary
            space, base = self._space, self._space.base_genome()

            def price(name, c, stride, side):
                counted = count_binary(make_op(self.preset, name, c, stride), (c, side, side))
                return torch.tensor([float(counted[k]) for k in COSTS], dtype=torch.float64)
            flops, params = space.flops_params(base)
            whole = torch.tensor([flops, params, *(space.binary_costs(base)[k] for k in COSTS[2:])],
                                 dtype=torch.float64)
            self._costs = self._tabulate(price, whole)
        return self._costs

    def _latency_table(self, model, predictor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Predicted ms in the table's form: each op's kernels as the XNOR program runs them
        (traced alone where it sits), priced by the target's predictor; a model's latency is
        its kernels' sum plus a constant, so the expectation is exact at one-hot α and β."""
        if getattr(self, "_lat_key", None) != id(predictor):
            from searchkit.costs.trace import trace_kernels
            from searchkit.spaces.bnas.xnor import xnor_program
            const = predictor.calibration[2] * 1e3

            def price(name, c, stride, side):
                kernels = trace_kernels(xnor_program(make_op(self.preset, name, c, stride)), (c, side, side))
                return torch.tensor([predictor.predict_ms(kernels) - const], dtype=torch.float64)
            whole = torch.tensor([float(model.cost(self._space.base_genome()))], dtype=torch.float64)
            fixed, table = self._tabulate(price, whole)
            self._lat, self._lat_key = (fixed[0], {t: v[..., 0] for t, v in table.items()}), id(predictor)
        return self._lat

    @torch.no_grad()
    def derive(self) -> dict:
        """The genome the architecture parameters stand for now (see the module docstring)."""
        genome = {"model": "bnas", "preset": self.preset, **self._macro}
        for t in ("normal", "reduce"):
            w = self.op_weights(t)[:, 1:]  # without "none"
            nodes, start = [], 0
            for i in range(NODES):
                n = i + 2
                b = F.softmax(self.beta[t][start:start + n], dim=-1)
                best = w[start:start + n].max(dim=-1)
                strength = best.values * b
                top = sorted(torch.argsort(strength, descending=True, stable=True)[:2].tolist())
                nodes.append([[self.op_names[1 + int(best.indices[j])], int(j)] for j in top])
                start += n
            genome[t] = nodes
        return canonical(genome)


__all__ = ["COSTS", "EDGES", "MixedOp", "SearchCell", "Supernet", "channel_shuffle"]
