"""Constraint-aware proposals: let a sampler repair an infeasible vector before it is tried.

Under a tight budget (say 35% of the base's FLOPs) almost no uniformly drawn channel
genome is feasible, so a sampler that only learns from recorded infeasible trials wastes
its whole budget. The driver therefore hands every strategy that supports it a
:class:`FeasibilityHint`: the space's distributions and a cheap cost check (no model is
built). A proposal that breaks a constraint is *repaired*: integer genes are stepped down
one grid step at a time, a gene picked with probability proportional to its height above
the lower bound, until the vector is feasible (costs of channel and scaling spaces grow
monotonically with every gene). The repair is deterministic given the RNG, so resumed
runs stay exact. A vector that cannot be repaired within ``max_steps`` is proposed as is
and recorded infeasible by the driver, never trained.

Example:
    >>> from optuna.distributions import IntDistribution
    >>> import numpy as np
    >>> space = {"a": IntDistribution(1, 10), "b": IntDistribution(1, 10)}
    >>> hint = FeasibilityHint(space, lambda p: p["a"] + p["b"] <= 8)
    >>> fixed = hint.repair({"a": 9, "b": 9}, np.random.default_rng(0))
    >>> fixed["a"] + fixed["b"] <= 8
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution


class FeasibilityHint:
    """The space's distributions plus ``feasible(params) -> bool`` (cheap, model-free), and
    optionally ``key(params)``: the architecture a vector stands for, where several vectors
    map to one (a strategy's mutant should differ from its parent there, not in raw params)."""

    def __init__(self, space: dict[str, BaseDistribution], feasible: Callable[[dict[str, Any]], bool],
                 max_steps: int = 2000, key: Callable[[dict[str, Any]], Any] | None = None):
        self.space = dict(space)
        self._feasible = feasible
        self.max_steps = max_steps
        self.key = key

    def feasible(self, params: dict[str, Any]) -> bool:
        return all(n in params for n in self.space) and bool(self._feasible(params))

    def repair(self, params: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """A feasible vector near ``params`` (or ``params`` itself if none is found)."""
        if not all(n in params for n in self.space) or self.feasible(params):
            return params
        out = dict(params)
        names = [n for n, d in self.space.items() if isinstance(d, (IntDistribution, FloatDistribution))]
        for _ in range(self.max_steps):
            heights = np.array([self._height(n, out[n]) for n in names], dtype=float)
            if heights.sum() <= 0:
                return params
            name = names[int(rng.choice(len(names), p=heights / heights.sum()))]
            out[name] = self._step_down(name, out[name])
            if self.feasible(out):
                return out
        return params

    def _height(self, name: str, value: Any) -> float:
        d = self.space[name]
        return max(0.0, float(value) - float(d.low))

    def _step_down(self, name: str, value: Any) -> Any:
        d = self.space[name]
        if isinstance(d, IntDistribution):
            return max(d.low, int(value) - (d.step or 1))
        step = d.step if d.step else (d.high - d.low) / 20
        return max(d.low, float(value) - step)


def attach(sampler: Any, hint: FeasibilityHint | None) -> bool:
    """Give ``hint`` to a sampler that accepts one; returns whether it did."""
    method = getattr(sampler, "set_feasibility", None)
    if method is None:
        return False
    method(hint)
    return True
