"""Running a search: the runner ``algo=`` names fills the study until its budget is met.

Samplers (abc, ga, tpe, nsga2, random) run in the ask/tell runner
(:mod:`searchkit.strategies.asktell`); an algorithm that trains a supernet instead names
its own runner (``runner = "NAME"`` on its registry entry, looked up in ``RUNNERS``).

Example:
    >>> from searchkit.search import run_search
    >>> from searchkit.config import load_config
    >>> cfg = load_config(["space.model=resnet20", "data=synthetic", "base.epochs=0",
    ...                    "finetune.max_batches=1", "trials=2", "algo=random",
    ...                    "storage='sqlite:///:memory:'", "progress=false"])
    >>> run_search(cfg).evaluated >= 2
    True
"""

from __future__ import annotations

from searchkit.config import RunConfig
from searchkit.core.ports import RepeatedFailures, SearchInterrupted
from searchkit.registry import RUNNERS, STRATEGIES
from searchkit.session import SearchOutcome

__all__ = ["RepeatedFailures", "SearchInterrupted", "SearchOutcome", "run_search", "runner_for"]


def runner_for(cfg: RunConfig) -> type:
    """The runner class of ``cfg.algo`` (the ask/tell runner for every sampler)."""
    return RUNNERS.get(getattr(STRATEGIES.get(cfg.algo.name), "runner", "asktell"))


def run_search(cfg: RunConfig, overrides: list[str] | None = None, *, max_new: int | None = None,
               quiet: bool = False) -> SearchOutcome:
    """Create or continue the study of ``cfg`` and search until its trial budget is met."""
    return runner_for(cfg)(cfg, overrides, quiet=quiet).run(max_new=max_new)
