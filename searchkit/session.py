"""A run's study and setup together: the public way any runner prices, de-duplicates and
records candidates, so every strategy's results are ordinary trials of the same study.

* :meth:`Session.price` - one :class:`~searchkit.core.costs.Priced` record per genome
  (memoised: the repair's last check is the proposal's price).
* :meth:`Session.evaluated` - the trained trial of an archid, if any (an index kept up to
  date from the study, so drivers sharing a study see each other's results).
* :meth:`Session.record_priced`, :meth:`Session.tell_result`, :meth:`Session.fail` - a
  trial's priced record and its result, each written in one storage transaction.
* :meth:`Session.record_genome` - a genome a runner derived itself (not asked from a
  sampler) recorded as a trial: enqueued with its params, priced, trained, told.

Example:
    >>> # runner = AskTellRunner(cfg); runner.session.price(genome).feasible
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from searchkit import study as st
from searchkit.config import RunConfig
from searchkit.core.costs import Priced
from searchkit.core.genome import Genome
from searchkit.core.ports import EvalResult
from searchkit.setup import RunSetup
from searchkit.study import attrs

log = logging.getLogger("searchkit")


@dataclass
class SearchOutcome:
    """What a runner did: its study, settings and setup, and how the run ended."""

    study: optuna.Study
    config: RunConfig
    setup: RunSetup
    evaluated: int
    new_trials: list[int] = field(default_factory=list)
    recovered: list[tuple[int, int | None]] = field(default_factory=list)
    stop_reason: str = "budget"

    @property
    def best(self) -> FrozenTrial | None:
        ranked = st.ranked_trials(self.study)
        return ranked[0] if ranked else None


class _EvaluatedIndex:
    """Trained trials by archid, their count and the best accuracy, read incrementally."""

    def __init__(self, study: optuna.Study):
        self.study = study
        self.by_archid: dict[str, FrozenTrial] = {}
        self.count = 0
        self.best: float | None = None
        self._seen: set[int] = set()

    def refresh(self) -> None:
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            self.add(t)

    def add(self, t: FrozenTrial) -> None:
        if t.number in self._seen or not t.state.is_finished():
            return
        self._seen.add(t.number)
        if not t.user_attrs.get(st.EVALUATED) or t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            return
        self.count += 1
        if t.state == TrialState.COMPLETE and t.values:
            self.by_archid.setdefault(t.user_attrs.get(st.ARCHID), t)
            self.best = t.values[0] if self.best is None else max(self.best, t.values[0])


class Session:
    """Prices, de-duplicates and records the candidates of one run (see the module docstring)."""

    def __init__(self, setup: RunSetup, study: optuna.Study, *, source: str):
        self.setup = setup
        self.cfg = setup.cfg
        self.study = study
        self.space = setup.space
        self.pricer = setup.pricer
        self.source = source
        self._index = _EvaluatedIndex(study)

    # -- pricing and look-ups -------------------------------------------------------------
    def price(self, genome: Genome) -> Priced:
        return self.pricer.price(genome)

    def refresh(self) -> None:
        """Read the results other drivers of the study told since the last look (one read)."""
        self._index.refresh()

    def evaluated(self, archid: str, *, fresh: bool = True) -> FrozenTrial | None:
        """The trained, completed trial of ``archid`` (the first one), if any; ``fresh=False``:
        as of the last :meth:`refresh` (this session's own results are always known)."""
        if fresh:
            self.refresh()
        return self._index.by_archid.get(archid)

    def evaluated_count(self, *, fresh: bool = True) -> int:
        """Trials whose candidate was trained (complete, or stopped early by a pruner)."""
        if fresh:
            self.refresh()
        return self._index.count

    def best_value(self, *, fresh: bool = True) -> float | None:
        if fresh:
            self.refresh()
        return self._index.best

    def values(self, accuracy: float, priced: Priced) -> float | list[float]:
        """The study's objective values: accuracy, then the costs named in ``objectives``."""
        if len(self.cfg.objectives) == 1:
            return accuracy
        return [accuracy] + [float(priced.costs[name]) for name in self.cfg.objectives[1:]]

    # -- writing ------------------------------------------------------------------------
    def record_priced(self, trial: optuna.Trial, priced: Priced, *, train: bool,
                      extra: dict | None = None) -> dict:
        """The trial's priced record and constraint values, in one transaction; a candidate
        that will train also gets its replay recipe and description."""
        user = {st.GENOME: priced.genome, st.ARCHID: priced.archid, st.SOURCE: self.source,
                **{st.cost_key(n): v for n, v in priced.costs.items()}, **(extra or {})}
        if train:
            user[st.RECIPE] = self.space.recipe(priced.genome, seed=self.cfg.seed)
            user[st.DESCRIBE] = self.space.describe(priced.genome)
        if not priced.feasible:
            user[st.INFEASIBLE] = True
        system = {st.OPTUNA_CONSTRAINT_PREFIX + n: float(v) for n, v in priced.violations.items()}
        attrs.write(self.study, trial._trial_id, user=user, system=system)
        return user

    def tell_infeasible(self, trial: optuna.Trial, priced: Priced) -> None:
        self.record_priced(trial, priced, train=False)
        self.study.tell(trial, state=TrialState.PRUNED)

    def tell_duplicate(self, trial: optuna.Trial, priced: Priced, of: FrozenTrial | int) -> None:
        """A genome trained already (``of``: its trial) or training now (``of``: its number)."""
        if isinstance(of, int):
            self.record_priced(trial, priced, train=False, extra={st.DUPLICATE_OF: of})
            self.study.tell(trial, state=TrialState.PRUNED)
            return
        copied = {k: of.user_attrs[k] for k in ("val_accuracy", "val_loss") if k in of.user_attrs}
        self.record_priced(trial, priced, train=False, extra={st.DUPLICATE_OF: of.number, **copied})
        self.study.tell(trial, of.values)

    def tell_result(self, trial: optuna.Trial, priced: Priced, result: EvalResult, *,
                    weights_artifact: str | None = None) -> float:
        """A trained candidate's metrics and the evaluated mark (one transaction), then the
        tell. Returns the accuracy. A driver killed between the two leaves a RUNNING trial
        that says evaluated; recovery fails it and clears the mark (``study.fail_trial``)."""
        metrics = result.metrics
        acc = float(metrics["val_accuracy"])
        if not math.isfinite(acc):
            raise ValueError("non-finite accuracy")
        user = {k: metrics[k] for k in st.METRICS if k in metrics}
        user[st.EVALUATED] = True
        if weights_artifact:
            user[st.WEIGHTS] = weights_artifact
        attrs.write(self.study, trial._trial_id, user=user)
        if metrics.get("pruned"):
            frozen = self.study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            frozen = self.study.tell(trial, self.values(acc, priced), skip_if_finished=True)
        self._index.add(frozen)
        return acc

    def fail(self, trial: optuna.Trial, reason: str, *, requeue: bool) -> int | None:
        return st.fail_trial(self.study, trial, reason, requeue=requeue)

    def save_weights(self, trial: optuna.Trial, weights: dict, store) -> str:
        """Upload a trial's trained weights as an Optuna artifact; returns its id."""
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"trial-{trial.number}.pt")
            torch.save(weights, path)
            return optuna.artifacts.upload_artifact(artifact_store=store, file_path=path, study_or_trial=trial)

    def record_genome(self, genome: Genome, train: Callable[[Any], EvalResult], *,
                      user_attrs: dict | None = None, store=None) -> FrozenTrial:
        """Record a genome a runner derived itself as a trial of the study: enqueued with
        ``params_of(genome)``, priced, told infeasible, a duplicate, or trained with
        ``train(work_item)`` and told its result (its weights kept in ``store``, an artifact
        store, when given). Returns the finished trial."""
        self.study.enqueue_trial(self.space.params_of(genome), user_attrs=user_attrs or {}, skip_if_exists=False)
        trial = self.study.ask()
        with attrs.batched_params(trial):  # the enqueued params, written in one transaction
            priced = self.price(self.space.suggest(trial))
        if not priced.feasible:
            self.tell_infeasible(trial, priced)
        elif (previous := self.evaluated(priced.archid)) is not None:
            self.tell_duplicate(trial, priced, previous)
        else:
            recipe = self.record_priced(trial, priced, train=True)[st.RECIPE]
            try:
                result = train(self.setup.work_item(trial.number, priced.genome, recipe))
                kept = self.save_weights(trial, result.weights, store) if store is not None and result.weights else None
                self.tell_result(trial, priced, result, weights_artifact=kept)
            except Exception as exc:
                self.fail(trial, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                          requeue=False)
        return self.study._storage.get_trial(trial._trial_id)

    # -- the study's record of its base ------------------------------------------------------
    def record_base(self) -> None:
        """Store (or check) what every trial is relative to: the base network (its checkpoint's
        sha256) or reference genome, its costs and the cost models' identities."""
        setup, space = self.setup, self.space
        genome = space.base_genome()
        info: dict[str, Any] = {
            "space": self.cfg.space.name, "genome": genome, "input_size": list(space.input_size(genome)),
            "costs": {n: m.base() for n, m in setup.costs.items()},
            "cost_info": {n: m.info() for n, m in setup.costs.items()}, "describe": space.describe(genome),
            "model": setup.base.model if setup.base else None,
            "path": str(Path(setup.base.path).resolve()) if setup.base else "",
            "accuracy": setup.base.accuracy if setup.base else None,
        }
        if setup.base is not None and setup.base.sha256:
            info["sha256"] = setup.base.sha256
        for model in setup.costs.values():
            info.update(model.identity())
        old = self.study.user_attrs.get(st.BASE_KEY)
        if old is not None:
            for key, value in info.items():
                if key.endswith("_identity") and old.get(key) and value and old[key] != value:
                    raise st.StudyError(f"study '{self.study.study_name}' priced {key.removesuffix('_identity')} "
                                        f"with another model ({old[key]}, now {value}: profiled or fitted again?); "
                                        "start a new study= to search against the new one")
            if old.get("sha256") and info.get("sha256") and old["sha256"] != info["sha256"]:
                raise st.StudyError(f"study '{self.study.study_name}' was searched from another base "
                                    f"checkpoint ({old['path']}); pass that base.checkpoint to continue it")
        if old != info:
            self.study.set_user_attr(st.BASE_KEY, info)
