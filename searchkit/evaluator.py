"""The evaluator: build one candidate from its work item, fine-tune it, measure it.

``evaluate(item)`` is all a worker runs (in the driver's process or a Ray worker): it
materialises the data, the base and the space named in the item - once per process and
setting - builds the genome, checks the build gives the recipe the driver priced, and
fine-tunes it within the item's budget.

Example:
    >>> # executors call port.evaluate(cand.work, report=...) -> EvalResult
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from searchkit.core.ports import EvalResult, WorkItem
from searchkit.evaluate import finetune

# (data, space) per work setting: a reused worker trains its next candidate at once.
_CACHE: dict[str, tuple[Any, Any]] = {}


def _key(item: WorkItem) -> str:
    return json.dumps({"space": item.space_target, "options": item.options, "data": item.data.key(),
                       "base": None if item.base is None else [item.base.path, item.base.sha256]}, sort_keys=True)


def prime(item: WorkItem, data: Any, space: Any) -> None:
    """Hand the driver's own data and space to evaluations in this process (no rebuild)."""
    _CACHE.clear()
    _CACHE[_key(item)] = (data, space)


def _materialised(item: WorkItem) -> tuple[Any, Any]:
    key = _key(item)
    if key not in _CACHE:
        from searchkit.setup import materialise
        _CACHE.clear()
        _CACHE[key] = materialise(item)
    return _CACHE[key]


class RecipeMismatch(RuntimeError):
    """A worker's build differs from the driver's (another base checkpoint)."""


def evaluate(item: WorkItem, report: Callable[[int, float], bool] | None = None,
             progress: bool | None = False, desc: str = "") -> EvalResult:
    """Build, fine-tune and measure one candidate (a worker's whole job)."""
    data, space = _materialised(item)
    built = space.build(item.genome, seed=item.seed)
    if item.recipe is not None and json.loads(json.dumps(built.recipe)) != item.recipe:
        raise RecipeMismatch("the worker's build gives another recipe than the driver priced "
                             "(a different base checkpoint?)")
    metrics = finetune(built.model, data, item.budget, device=item.device, seed=item.seed, report=report,
                       progress=progress, desc=desc or f"trial {item.number}")
    built.model.to("cpu")
    weights = built.model.state_dict()  # detached already; the model is not used again
    metrics = {k: v for k, v in metrics.items() if k != "history"}
    return EvalResult(metrics, weights, built.recipe)
