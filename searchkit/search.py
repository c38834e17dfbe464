"""The search driver: the one process that asks and tells.

One candidate's flow, kept straight:
``ask`` -> ``space.suggest(trial)`` -> genome -> costs (constraint?) -> ``space.build``
-> fine-tune + measure (an executor) -> ``tell``.

Infeasible candidates are recorded (``trial.set_constraint`` + state PRUNED + the
``searchkit:infeasible`` attribute) and never trained; an archid already evaluated in the
study is not trained again (its result is copied). ``trials=N`` counts trained candidates.

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

import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from searchkit import study as st
from searchkit.config import RunConfig
from searchkit.context import SearchContext, budget_of, file_sha256
from searchkit.evaluate import finetune
from searchkit.genome import archid
from searchkit.progress import bar
from searchkit.registry import STRATEGIES
from searchkit.strategies.feasibility import FeasibilityHint, attach

log = logging.getLogger("searchkit")


MAX_CONSECUTIVE_FAILURES = 5


class RepeatedFailures(RuntimeError):
    """Several candidates in a row raised: the setup, not the candidates, is broken."""


class SearchInterrupted(Exception):
    """Ctrl-C: the in-flight trial was re-queued; the study is intact."""


def make_sampler(cfg: RunConfig) -> optuna.samplers.BaseSampler:
    factory = STRATEGIES.get(cfg.algo.name)
    try:
        return factory(seed=cfg.seed, **cfg.algo.options)
    except TypeError as exc:
        raise st.ConfigError(f"bad option for algo={cfg.algo.name}: {exc}") from None
    except ValueError as exc:
        raise st.ConfigError(f"algo={cfg.algo.name}: {exc}") from None


def make_pruner(cfg: RunConfig) -> optuna.pruners.BasePruner:
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    if cfg.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    return optuna.pruners.NopPruner()


def artifact_dir(cfg: RunConfig) -> Path:
    """Where trained candidate weights go: beside a SQLite/journal file, else ./studies/artifacts."""
    url = cfg.storage
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url.removeprefix("sqlite:///")).parent / "artifacts"
    if url.endswith((".log", ".jsonl")):
        return Path(url.removeprefix("journal://")).parent / "artifacts"
    return Path("studies") / "artifacts"


@dataclass
class SearchOutcome:
    study: optuna.Study
    config: RunConfig
    context: SearchContext
    evaluated: int
    new_trials: list[int] = field(default_factory=list)
    recovered: list[tuple[int, int | None]] = field(default_factory=list)
    stop_reason: str = "budget"

    @property
    def best(self) -> FrozenTrial | None:
        ranked = st.ranked_trials(self.study)
        return ranked[0] if ranked else None


def evaluate_candidate(ctx: SearchContext, genome: dict, *, seed: int,
                       report: Callable[[int, float], bool] | None = None,
                       desc: str = "", progress: bool | None = None) -> tuple[dict, dict, dict]:
    """Build and fine-tune one candidate (a worker's whole job).

    Returns:
        (metrics, CPU state_dict of the trained model, kept channel indices per unit)
    """
    model, history = ctx.space.build_with_history(genome, seed=seed)
    metrics = finetune(model, ctx.data, budget_of(ctx.cfg), device=ctx.device, seed=seed,
                       report=report, progress=ctx.cfg.progress if progress is None else progress, desc=desc)
    weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return metrics, weights, history


class Driver:
    """Asks, prices, filters, dispatches and tells; see the module docstring."""

    def __init__(self, cfg: RunConfig, overrides: list[str] | None = None, *, quiet: bool = False):
        self.quiet = quiet
        self.cfg, existed = st.resolve_config(cfg, overrides)
        # Everything that can refuse the run (data root, checkpoint, impossible constraint,
        # strategy options) is checked before the study is created or touched.
        self.ctx = SearchContext.build(self.cfg, quiet=quiet)
        sampler = make_sampler(self.cfg)
        attach(sampler, self._hint())
        self.study = st.open_study(self.cfg, sampler=sampler, pruner=make_pruner(self.cfg))
        self.created = not existed
        self._failures: list[str] = []
        self._record_base()
        self.store = optuna.artifacts.FileSystemArtifactStore(_mkdir(artifact_dir(self.cfg)))

    def _hint(self) -> FeasibilityHint | None:
        """A model-free feasibility check for samplers that repair proposals."""
        space, ctx = self.ctx.space, self.ctx
        if not self.cfg.repair or not ctx.limits or not hasattr(space, "distributions"):
            return None
        return FeasibilityHint(space.distributions(), lambda p: _feasible(ctx, space.genome_of(p)),
                               key=lambda p: archid(space.genome_of(p)))

    def _record_base(self) -> None:
        space = self.ctx.space
        costs = space.base_costs()
        info = {"model": self.cfg.space.model if self.ctx.base is not None else space.name,
                "path": self.ctx.base_path, "accuracy": self.ctx.base_accuracy,
                "flops": costs.flops, "params": costs.params, "input_size": list(space.input_size)}
        if hasattr(space, "units"):
            info.update(units=len(space.units), unit_names=[u.name for u in space.units],
                        base_widths=[u.channels for u in space.units])
        else:  # a space without a base: its largest genome stands in for it
            info["genome"] = space.base_genome()
        if self.ctx.base_path and Path(self.ctx.base_path).is_file():
            info["sha256"] = file_sha256(self.ctx.base_path)
        if self.ctx.latency is not None:
            meta = self.ctx.latency.predictor.meta
            info.update(latency=self.ctx.latency.base_ms(), latency_target=meta.get("target"),
                        latency_predictor=meta.get("sha256"))
        old = self.study.user_attrs.get(st.BASE_KEY)
        if old is not None and old.get("latency_predictor") and info.get("latency_predictor") \
                and old["latency_predictor"] != info["latency_predictor"]:
            raise st.StudyError(f"study '{self.study.study_name}' priced latency with another predictor for "
                                f"target '{old.get('latency_target')}' (it was profiled or fitted again); "
                                "start a new study= to search against the new one")
        if old is not None and old.get("sha256") and info.get("sha256") and old["sha256"] != info["sha256"]:
            raise st.StudyError(f"study '{self.study.study_name}' was searched from another base "
                                f"checkpoint ({old['path']}); pass that base.checkpoint to continue it")
        if old != info:
            self.study.set_user_attr(st.BASE_KEY, info)

    # -- bookkeeping ------------------------------------------------------------------
    def _evaluated_count(self) -> int:
        return len(st.evaluated_trials(self.study))

    def _find_evaluated(self, aid: str) -> FrozenTrial | None:
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.user_attrs.get(st.ARCHID) == aid and t.user_attrs.get(st.EVALUATED):
                return t
        return None

    def _best_value(self) -> float | None:
        ranked = st.ranked_trials(self.study)
        return ranked[0].values[0] if ranked else None

    # -- the ask side ------------------------------------------------------------------
    def start(self, outcome: SearchOutcome) -> None:
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
        self.in_flight: dict[int, Candidate] = {}

    def stop(self) -> None:
        if isinstance(self.study.sampler, st.DriverTag):
            self.study.sampler = self.study.sampler.inner
        self.heartbeat.close()
        self._bar.close()
        self.outcome.evaluated = self._evaluated_count()

    def _stop_reason(self) -> str | None:
        evaluated = self._evaluated_count()
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
                genome = self._price(trial)
            except BaseException as exc:
                self.in_flight.pop(trial.number, None)
                self._fail(trial, f"{type(exc).__name__} while pricing: {exc}", requeue=False)
                raise
            finally:
                if trial.number not in self.in_flight:
                    self.heartbeat.remove(trial._trial_id)
            if genome is not None:
                return self.in_flight[trial.number]

    def _price(self, trial: optuna.Trial) -> dict | None:
        """Suggest, price and filter one trial; registers it in flight if it must be trained."""
        space, ctx = self.ctx.space, self.ctx
        genome = space.suggest(trial)
        aid = archid(genome)
        costs = space.costs(genome)
        base = space.base_costs()
        trial.set_user_attr(st.GENOME, genome)
        trial.set_user_attr(st.ARCHID, aid)
        trial.set_user_attr(st.FLOPS, costs.flops)
        trial.set_user_attr(st.PARAMS, costs.params)
        trial.set_user_attr("flops_ratio", costs.flops / base.flops)
        trial.set_user_attr("params_ratio", costs.params / base.params)
        if ctx.latency is not None:
            trial.set_user_attr(st.LATENCY, ctx.latency.ms(genome))
            trial.set_user_attr("latency_ratio", ctx.latency.ms(genome) / ctx.latency.base_ms())
        violations = ctx.violations(costs, genome)
        for name, value in violations.items():
            trial.set_constraint(name, value)
        if any(v > 0 for v in violations.values()):
            trial.set_user_attr(st.INFEASIBLE, True)
            self.study.tell(trial, state=TrialState.PRUNED)
            return None
        previous = self._find_evaluated(aid)
        if previous is None:
            previous = next((c for c in self.in_flight.values() if c.archid == aid), None)
            if previous is not None:  # the same architecture is training right now
                trial.set_user_attr(st.DUPLICATE_OF, previous.trial.number)
                self.study.tell(trial, state=TrialState.PRUNED)
                return None
        if previous is not None:
            trial.set_user_attr(st.DUPLICATE_OF, previous.number)
            for key in ("val_accuracy", "val_loss"):
                if key in previous.user_attrs:
                    trial.set_user_attr(key, previous.user_attrs[key])
            self.study.tell(trial, previous.values)
            return None
        self.in_flight[trial.number] = Candidate(trial, genome, aid, self.cfg.seed)
        return genome

    # -- the tell side ------------------------------------------------------------------
    def report(self, cand: Candidate, step: int, value: float) -> bool:
        """An intermediate validation accuracy; returns whether the pruner stops the trial."""
        if len(self.cfg.objectives) > 1:  # Optuna keeps intermediate values for single-objective studies only
            return False
        cand.trial.report(value, step)
        return cand.trial.should_prune()

    def finish(self, cand: Candidate, metrics: dict, history: dict,
               weights: dict | None = None) -> None:
        """Tell a trained candidate's result (and keep its weights if they are worth it)."""
        trial = cand.trial
        try:
            acc = float(metrics["val_accuracy"])
            if not math.isfinite(acc):
                raise ValueError("non-finite accuracy")
            for key in ("val_accuracy", "val_loss", "train_loss", "epochs_run", "steps", "seconds"):
                if key in metrics:
                    trial.set_user_attr(key, metrics[key])
            trial.set_user_attr("kept_indices", history)
            # Marked last, just before the tell; a driver killed in between leaves it on a
            # RUNNING trial, which recovery fails and un-marks (study.fail_trial).
            trial.set_user_attr(st.EVALUATED, True)
            if metrics.get("pruned"):
                self.study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
                return
            best = self._best_value()
            keep = self.cfg.artifacts == "all" or (self.cfg.artifacts == "best" and (best is None or acc > best))
            if keep and weights is not None:
                self._save_weights(trial, weights)
            self.study.tell(trial, self._values(acc, trial.user_attrs), skip_if_finished=True)
            self._failures.clear()
            self._progress(trial.number, acc, metrics, best, trial.user_attrs.get("flops_ratio", float("nan")))
        finally:
            self._release(cand)

    def fail(self, cand: Candidate, reason: str, *, requeue: bool = False) -> None:
        """Record a candidate that could not be trained; stop after too many in a row."""
        try:
            log.warning("trial %d failed: %s", cand.trial.number, reason)
            self._fail(cand.trial, reason, requeue=requeue)
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

    # -- running ------------------------------------------------------------------------
    def run(self, max_new: int | None = None) -> SearchOutcome:
        self._max_new = max_new
        outcome = SearchOutcome(self.study, self.cfg, self.ctx, self._evaluated_count())
        self.start(outcome)
        try:
            if self.cfg.executor == "ray":
                from searchkit.execution.ray_tune import run_with_ray
                run_with_ray(self)
            else:
                from searchkit.execution.local import run_locally
                run_locally(self)
        finally:
            self.stop()
        return outcome

    def _values(self, acc: float, attrs: dict) -> float | list[float]:
        """The study's objective values: accuracy, then the costs named in ``objectives``."""
        if len(self.cfg.objectives) == 1:
            return acc
        return [acc] + [float(attrs[name]) for name in self.cfg.objectives[1:]]

    def _fail(self, trial: optuna.Trial, reason: str, *, requeue: bool) -> None:
        st.fail_trial(self.study, trial, reason, requeue=requeue)

    def _progress(self, number: int, acc: float, metrics: dict, best: float | None, ratio: float) -> None:
        best = acc if best is None else max(best, acc)
        if self._bar.disable:
            if not self.quiet:
                log.info("trial %d: val accuracy %.4f, FLOPs %.1f%% of base, %.1f s (best %.4f)",
                         number, acc, 100 * ratio, metrics.get("seconds", 0.0), best)
        else:
            self._bar.update(1)
            self._bar.set_postfix(best=f"{best:.4f}", last=f"{acc:.4f}")

    def _save_weights(self, trial: optuna.Trial, weights: dict) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"trial-{trial.number}.pt")
            torch.save(weights, path)
            aid = optuna.artifacts.upload_artifact(artifact_store=self.store, file_path=path,
                                                   study_or_trial=trial)
        trial.set_user_attr("weights_artifact", aid)


@dataclass
class Candidate:
    """A proposed architecture that must be trained: its open trial, genome and seed."""
    trial: optuna.Trial
    genome: dict
    archid: str
    seed: int

    @property
    def number(self) -> int:
        return self.trial.number


def _feasible(ctx: SearchContext, genome: dict) -> bool:
    return all(v <= 0 for v in ctx.violations(ctx.space.costs(genome), genome).values())


def _mkdir(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def run_search(cfg: RunConfig, overrides: list[str] | None = None, *, max_new: int | None = None,
               quiet: bool = False) -> SearchOutcome:
    """Create or continue the study of ``cfg`` and search until its trial budget is met."""
    return Driver(cfg, overrides, quiet=quiet).run(max_new=max_new)


