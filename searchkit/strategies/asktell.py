"""The ask/tell runner: the one process that asks a sampler and tells the study.

One candidate's flow, kept straight:
``ask`` -> ``space.genome_of(params)`` -> priced once (genome, archid, costs, violations)
-> infeasible? told, never trained -> a duplicate? told its twin's result -> else
dispatched to an executor (``executor=local|ray``), which builds, fine-tunes and measures
it (:mod:`searchkit.evaluator`) -> ``tell``.

Infeasible candidates are recorded (constraint values + state PRUNED + the
``searchkit:infeasible`` attribute) and never trained; an archid already trained in the
study is not trained again. ``trials=N`` counts trained candidates. The runner is the
executors' :class:`~searchkit.core.ports.DriverPort`.

Example:
    >>> from searchkit.config import load_config
    >>> cfg = load_config(["space.model=resnet20", "data=synthetic", "base.epochs=0",
    ...                    "finetune.max_batches=1", "trials=2", "algo=random",
    ...                    "storage='sqlite:///:memory:'", "progress=false"])
    >>> AskTellRunner(cfg, quiet=True).run().evaluated >= 2
    True
"""

from __future__ import annotations

import logging
import time
from typing import Any

import optuna

from searchkit import evaluator
from searchkit import study as st
from searchkit.config import RunConfig
from searchkit.core import options as opts
from searchkit.core.errors import ConfigError
from searchkit.core.genome import archid
from searchkit.core.ports import Candidate, EvalResult, RepeatedFailures
from searchkit.progress import bar
from searchkit.registry import EXECUTORS, STRATEGIES
from searchkit.session import SearchOutcome, Session
from searchkit.setup import RunSetup
from searchkit.strategies.feasibility import FeasibilityHint, attach
from searchkit.study import attrs

log = logging.getLogger("searchkit")

MAX_CONSECUTIVE_FAILURES = 5


def make_sampler(cfg: RunConfig) -> optuna.samplers.BaseSampler:
    factory = STRATEGIES.get(cfg.algo.name)
    try:
        return factory(seed=cfg.seed, **opts.to_plain(cfg.algo.options or {}))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"algo={cfg.algo.name}: {exc}") from None


def make_pruner(cfg: RunConfig) -> optuna.pruners.BasePruner:
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    if cfg.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    return optuna.pruners.NopPruner()


class AskTellRunner:
    """Asks, prices, filters, dispatches and tells; see the module docstring."""

    name = "asktell"

    def __init__(self, cfg: RunConfig, overrides: list[str] | None = None, *, quiet: bool = False):
        self.quiet = quiet
        self.cfg, existed = st.resolve_config(cfg, overrides)
        # Everything that can refuse the run (data root, base, cost models, an impossible
        # constraint, strategy options) is checked before the study is created or touched.
        self.setup = RunSetup.build(self.cfg, quiet=quiet, known_base=st.stored_base(self.cfg) if existed else None)
        sampler = make_sampler(self.cfg)
        attach(sampler, self._hint())
        self.study = st.open_study(self.cfg, sampler=sampler, pruner=make_pruner(self.cfg))
        self.created = not existed
        self.session = Session(self.setup, self.study, source=self.name)
        self.session.record_base()
        for name in getattr(cfg, "preset_bounds", {}):
            if not existed and not quiet and name in self.cfg.constraint:
                log.info("constraint.%s=%g from the space=%s preset is in force (a fraction of the base when "
                         "<= 1); drop it with constraint.%s=null or give another bound", name,
                         self.cfg.constraint[name], self.cfg.space.name, name)
        if existed and not quiet:
            log.info("continuing study '%s' (%d trained so far, %d trials; its stored settings: %s)",
                     self.study.study_name, self.session.evaluated_count(), len(self.study.trials),
                     _identity(self.cfg))
        self._failures: list[str] = []
        self._store = None
        # the DriverPort an executor drives
        self.evaluate = evaluator.evaluate
        self.keep_weights = self.cfg.artifacts != "none"
        self.progress = False if quiet else self.cfg.progress
        self.in_flight: dict[int, Candidate] = {}

    def _hint(self) -> FeasibilityHint | None:
        """The run's pricer as a model-free feasibility check for samplers that repair."""
        space, pricer = self.setup.space, self.setup.pricer
        if not self.cfg.repair or not self.setup.limits:
            return None
        return FeasibilityHint(space.distributions(), lambda p: pricer.price(space.genome_of(p)).feasible,
                               key=lambda p: archid(space.genome_of(p)), directions=space.directions())

    def executor_options(self, name: str) -> Any:
        """An executor's options (``ray.*`` for ``executor=ray``)."""
        return getattr(self.cfg, name, None)

    @property
    def store(self) -> optuna.artifacts.FileSystemArtifactStore:
        if self._store is None:
            path = st.artifact_dir(self.cfg.storage)
            path.mkdir(parents=True, exist_ok=True)
            self._store = optuna.artifacts.FileSystemArtifactStore(str(path))
        return self._store

    # -- running ------------------------------------------------------------------------
    def run(self, max_new: int | None = None) -> SearchOutcome:
        self._max_new = max_new
        outcome = SearchOutcome(self.study, self.cfg, self.setup, self.session.evaluated_count())
        self._start(outcome)
        try:
            EXECUTORS.get(self.cfg.executor)(self)
        finally:
            self._stop()
        return outcome

    def _start(self, outcome: SearchOutcome) -> None:
        """Recover trials a stopped driver left RUNNING; start heartbeats and the bar."""
        outcome.recovered = st.recover_stale_trials(self.study)
        for old, new in outcome.recovered:
            log.warning("trial %d was left RUNNING by a stopped driver: failed it%s", old,
                        f" and re-queued it as trial {new}" if new is not None else "")
        self.outcome = outcome
        self.heartbeat = st.Heartbeat(self.study)
        if not isinstance(self.study.sampler, st.DriverTag):
            self.study.sampler = st.DriverTag(self.study.sampler, self.heartbeat)
        self._bar = bar(self.cfg.trials, desc=f"search {self.study.study_name}",
                        enabled=False if self.quiet else self.cfg.progress, unit="cand",
                        initial=min(outcome.evaluated, self.cfg.trials))
        self._started = time.monotonic()
        self._attempts = 0
        # Local evaluations use the driver's own data and space (nothing is rebuilt).
        setup = self.setup
        evaluator.prime(setup.work_item(-1, setup.space.base_genome()), setup.data, setup.space)

    def _stop(self) -> None:
        if isinstance(self.study.sampler, st.DriverTag):
            self.study.sampler = self.study.sampler.inner
        self.heartbeat.close()
        self._bar.close()
        self.outcome.evaluated = self.session.evaluated_count()

    def _stop_reason(self) -> str | None:
        evaluated = self.session.evaluated_count()
        self.outcome.evaluated = evaluated
        if evaluated + len(self.in_flight) >= self.cfg.trials:
            return "budget"
        if self._max_new is not None and len(self.outcome.new_trials) >= self._max_new:
            return "max_new"
        if self.cfg.timeout is not None and time.monotonic() - self._started > self.cfg.timeout:
            return "timeout"
        if self._attempts >= self.cfg.trials * self.cfg.max_attempts_factor:
            log.warning("stopped after %d candidates: too few were feasible and new "
                        "(loosen the constraint or raise max_attempts_factor)", self._attempts)
            return "attempts"
        return None

    # -- the ask side ------------------------------------------------------------------
    def propose(self) -> Candidate | None:
        """Ask until a candidate needs training; ``None`` when the search should stop asking
        (``outcome.stop_reason`` says why). Infeasible and duplicate proposals are told here."""
        while True:
            reason = self._stop_reason()
            if reason is not None:
                self.outcome.stop_reason = reason
                return None
            self._attempts += 1
            trial = self.study.ask()  # DriverTag marks it with this driver inside ask
            self.outcome.new_trials.append(trial.number)
            try:
                cand = self._price(trial)
            except BaseException as exc:
                self.in_flight.pop(trial.number, None)
                # Ctrl-C while pricing: the trial goes again (an interrupted run continues exactly)
                self.session.fail(trial, f"{type(exc).__name__} while pricing: {exc}",
                                  requeue=isinstance(exc, KeyboardInterrupt))
                raise
            finally:
                if trial.number not in self.in_flight:
                    self.heartbeat.remove(trial._trial_id)
            if cand is not None:
                return cand

    def _price(self, trial: optuna.Trial) -> Candidate | None:
        """Suggest, price and filter one trial; a candidate to train is registered in flight."""
        space, session = self.setup.space, self.session
        with attrs.batched_params(trial):  # a trial's params: one transaction
            genome = space.suggest(trial)
        priced = session.price(genome)
        if not priced.feasible:
            session.tell_infeasible(trial, priced)
            return None
        previous = session.evaluated(priced.archid, fresh=False)  # read at this ask's _stop_reason
        if previous is None:
            twin = next((c for c in self.in_flight.values() if c.priced.archid == priced.archid), None)
            if twin is not None:  # the same architecture is training right now
                session.tell_duplicate(trial, priced, twin.number)
                return None
        if previous is not None:
            session.tell_duplicate(trial, priced, previous)
            return None
        recipe = session.record_priced(trial, priced, train=True)[st.RECIPE]
        cand = Candidate(trial, priced, self.setup.work_item(trial.number, genome, recipe))
        self.in_flight[trial.number] = cand
        return cand

    # -- the tell side ------------------------------------------------------------------
    def report(self, cand: Candidate, step: int, value: float) -> bool:
        """An intermediate validation accuracy; returns whether the pruner stops the trial."""
        if len(self.cfg.objectives) > 1:  # Optuna keeps intermediate values for single-objective studies only
            return False
        if self.cfg.pruner == "none":  # nobody reads them: a storage write per validation saved
            return False
        cand.trial.report(value, step)
        return cand.trial.should_prune()

    def finish(self, cand: Candidate, result: EvalResult) -> None:
        """Tell a trained candidate's result (and store its weights if they are worth it)."""
        trial = cand.trial
        try:
            best = self.session.best_value(fresh=False)
            acc = float(result.metrics["val_accuracy"])
            wanted = self.cfg.artifacts == "all" or (self.cfg.artifacts == "best" and (best is None or acc > best))
            artifact = None
            if wanted and result.weights is not None and not result.metrics.get("pruned"):
                artifact = self.session.save_weights(trial, result.weights, self.store)
            acc = self.session.tell_result(trial, cand.priced, result, weights_artifact=artifact)
            if result.metrics.get("pruned"):
                return
            self._failures.clear()
            self._progress(trial.number, acc, result.metrics, best, cand.priced)
        finally:
            self._release(cand)

    def fail(self, cand: Candidate, reason: str, *, requeue: bool = False) -> None:
        """Record a candidate that could not be trained; stop after too many in a row."""
        try:
            log.warning("trial %d failed: %s", cand.trial.number, reason)
            self.session.fail(cand.trial, reason, requeue=requeue)
        finally:
            self._release(cand)
        if requeue:
            return
        self._failures.append(reason)
        if len(self._failures) >= MAX_CONSECUTIVE_FAILURES:
            raise RepeatedFailures(
                f"{len(self._failures)} candidates in a row failed (last: {reason}); "
                "the search stopped - see the study's failed trials")

    def _release(self, cand: Candidate) -> None:
        self.in_flight.pop(cand.trial.number, None)
        self.heartbeat.remove(cand.trial._trial_id)

    def _progress(self, number: int, acc: float, metrics: dict, best: float | None, priced) -> None:
        best = acc if best is None else max(best, acc)
        if self._bar.disable:
            if not self.quiet:
                log.info("trial %d: val accuracy %.4f, %s, %.1f s (best %.4f)", number, acc,
                         _relative_costs(self.setup, priced), metrics.get("seconds", 0.0), best)
        else:
            self._bar.update(1)
            self._bar.set_postfix(best=f"{best:.4f}", last=f"{acc:.4f}")


def _identity(cfg: RunConfig) -> str:
    """The settings that define a study, in a few words."""
    bounds = ", ".join(f"{k} <= {v:g}" for k, v in cfg.constraint.items()) or "no bound"
    return (f"space={cfg.space.name} data={cfg.data.name} algo={cfg.algo.name} "
            f"objectives=[{','.join(cfg.objectives)}], {bounds}")


def _relative_costs(setup: RunSetup, priced) -> str:
    """``flops 48.7% of base, params 52.1%`` (relative costs), absolute ones with their unit."""
    parts = []
    for name, model in setup.costs.items():
        value = priced.costs[name]
        if model.relative and model.base():
            parts.append(f"{name} {100 * value / model.base():.1f}% of base")
        else:
            parts.append(f"{name} {value:.4g} {model.unit}".rstrip())
    return ", ".join(parts)

