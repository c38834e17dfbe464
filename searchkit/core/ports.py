"""What runners, executors and workers hand each other.

A runner owns the study and exposes a :class:`DriverPort` to an executor: ``propose()``
gives the next :class:`Candidate` to train (``None``: stop asking), ``report`` passes an
intermediate accuracy to the pruner, ``finish``/``fail`` end it. A candidate carries a
:class:`WorkItem` - everything a worker needs, as plain JSON: the space's registry
target and options, the base checkpoint, the data, the genome, the budget - and the
worker's evaluator returns an :class:`EvalResult`. Executors import only this package.

Example:
    >>> from searchkit.core.budget import TrainBudget
    >>> item = WorkItem(number=3, space="toy", space_target="m:C", options={}, genome={"w": 1},
    ...                 data=DataSpec("digits"), budget=TrainBudget(max_batches=2), seed=0)
    >>> WorkItem.from_json(item.to_json()) == item
    True
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from searchkit.core.budget import TrainBudget


class SearchInterrupted(Exception):
    """Ctrl-C: the trials in flight were re-queued; the study is intact."""


class RepeatedFailures(RuntimeError):
    """Several candidates in a row failed: the setup, not the candidates, is broken."""


@dataclass(frozen=True)
class DataSpec:
    """A dataset as the loader is called (paths absolute when shipped to workers)."""

    name: str
    root: str | None = None
    image_size: int | None = None
    seed: int = 0
    val_fraction: float = 0.2
    max_train: int | None = None
    options: dict = field(default_factory=dict)

    def key(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclass(frozen=True)
class BaseRef:
    """A base network's weights: the registered model and its checkpoint file."""

    model: str
    path: str
    num_classes: int
    sha256: str | None = None


@dataclass(frozen=True)
class WorkItem:
    """One candidate to build, fine-tune and measure (see the module docstring)."""

    number: int
    space: str
    space_target: str  # "module:attribute" of the space class, importable in any worker
    options: dict
    genome: dict
    data: DataSpec
    budget: TrainBudget
    seed: int
    base: BaseRef | None = None
    recipe: dict | None = None  # what the driver's build gives; a worker that differs fails
    device: str = "cpu"
    cache_dir: str | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "WorkItem":
        d = json.loads(text)
        d["data"] = DataSpec(**d["data"])
        d["budget"] = TrainBudget(**d["budget"])
        d["base"] = BaseRef(**d["base"]) if d.get("base") else None
        return cls(**d)


@dataclass
class EvalResult:
    """What a worker returns: metrics (``val_accuracy`` first of all), the trained weights
    (a ``state_dict``, or ``None``) and the recipe the build gave."""

    metrics: dict
    weights: dict | None = None
    recipe: dict = field(default_factory=dict)


@dataclass
class Candidate:
    """A proposed architecture that must be trained: its open trial and what to train."""

    trial: Any  # optuna.Trial
    priced: Any  # core.costs.Priced
    work: WorkItem

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def seed(self) -> int:
        return self.work.seed


# evaluate(work, report) -> EvalResult; report(step, val_accuracy) -> stop?
Evaluate = Callable[..., EvalResult]


class DriverPort(Protocol):
    """The runner side an executor drives (see the module docstring)."""

    in_flight: dict[int, Candidate]
    evaluate: Evaluate  # the evaluator (module-level, so a Ray worker can import it)
    keep_weights: bool  # whether finished candidates should hand back their weights
    progress: bool | None  # per-candidate progress bars (local runs; None: on a terminal)

    def propose(self) -> Candidate | None: ...

    def report(self, cand: Candidate, step: int, value: float) -> bool: ...

    def finish(self, cand: Candidate, result: EvalResult) -> None: ...

    def fail(self, cand: Candidate, reason: str, *, requeue: bool = False) -> None: ...

    def executor_options(self, name: str) -> Any: ...


class Executor(Protocol):
    """Trains the candidates a port proposes until it stops proposing."""

    def __call__(self, port: DriverPort) -> None: ...
