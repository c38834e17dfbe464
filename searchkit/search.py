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
    ...                    "storage=sqlite:///:memory:", "progress=false"])
    >>> run_search(cfg).evaluated >= 2
    True
"""

from __future__ import annotations

import json
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
                       desc: str = "") -> tuple[dict, torch.nn.Module, dict]:
    """Build and fine-tune one candidate (the worker's whole job). Returns (metrics, model, history)."""
    model, history = ctx.space.build_with_history(genome, seed=seed)
    metrics = finetune(model, ctx.data, budget_of(ctx.cfg), device=ctx.device, seed=seed,
                       report=report, progress=ctx.cfg.progress, desc=desc)
    return metrics, model.to("cpu"), history


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
        return FeasibilityHint(space.distributions(),
                               lambda p: all(v <= 0 for v in ctx.violations(space.costs(space.genome_of(p))).values()))

    def _record_base(self) -> None:
        costs = self.ctx.space.base_costs()
        info = {"model": self.cfg.space.model, "path": self.ctx.base_path,
                "accuracy": self.ctx.base_accuracy, "flops": costs.flops, "params": costs.params,
                "units": len(self.ctx.space.units),
                "unit_names": [u.name for u in self.ctx.space.units],
                "base_widths": [u.channels for u in self.ctx.space.units],
                "input_size": list(self.ctx.space.input_size)}
        if Path(self.ctx.base_path).is_file():
            info["sha256"] = file_sha256(self.ctx.base_path)
        old = self.study.user_attrs.get(st.BASE_KEY)
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

    # -- the loop ---------------------------------------------------------------------
    def run(self, max_new: int | None = None) -> SearchOutcome:
        outcome = SearchOutcome(self.study, self.cfg, self.ctx, self._evaluated_count())
        outcome.recovered = st.recover_stale_trials(self.study)
        for old, new in outcome.recovered:
            log.warning("trial %d was left RUNNING by a stopped driver: failed it%s", old,
                        f" and re-queued it as trial {new}" if new is not None else "")
        heartbeat = st.Heartbeat(self.study)
        self._bar = bar(self.cfg.trials, desc=f"search {self.study.study_name}",
                        enabled=False if self.quiet else self.cfg.progress, unit="cand",
                        initial=min(outcome.evaluated, self.cfg.trials))
        started = time.monotonic()
        attempts = 0
        max_attempts = self.cfg.trials * self.cfg.max_attempts_factor
        try:
            while True:
                evaluated = self._evaluated_count()
                outcome.evaluated = evaluated
                if evaluated >= self.cfg.trials:
                    outcome.stop_reason = "budget"
                    break
                if max_new is not None and len(outcome.new_trials) >= max_new:
                    outcome.stop_reason = "max_new"
                    break
                if self.cfg.timeout is not None and time.monotonic() - started > self.cfg.timeout:
                    outcome.stop_reason = "timeout"
                    break
                if attempts >= max_attempts:
                    outcome.stop_reason = "attempts"
                    log.warning("stopped after %d candidates: too few were feasible and new "
                                "(loosen the constraint or raise max_attempts_factor)", attempts)
                    break
                attempts += 1
                trial = self.study.ask()
                heartbeat.add(trial._trial_id)  # at once: a kill from here on is detectable
                outcome.new_trials.append(trial.number)
                try:
                    self._one(trial)
                finally:
                    heartbeat.remove(trial._trial_id)
        finally:
            heartbeat.close()
            self._bar.close()
        outcome.evaluated = self._evaluated_count()
        return outcome

    def _one(self, trial: optuna.Trial) -> None:
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
        violations = ctx.violations(costs)
        for name, value in violations.items():
            trial.set_constraint(name, value)
        if any(v > 0 for v in violations.values()):
            trial.set_user_attr(st.INFEASIBLE, True)
            self.study.tell(trial, state=TrialState.PRUNED)
            return
        previous = self._find_evaluated(aid)
        if previous is not None:
            trial.set_user_attr(st.DUPLICATE_OF, previous.number)
            for key in ("val_accuracy", "val_loss"):
                if key in previous.user_attrs:
                    trial.set_user_attr(key, previous.user_attrs[key])
            self.study.tell(trial, previous.values)
            return
        try:
            self._train(trial, genome)
        except KeyboardInterrupt:
            self._fail(trial, "interrupted (Ctrl-C)", requeue=True)
            raise SearchInterrupted() from None
        except Exception as exc:  # a broken candidate must not end the search
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log.warning("trial %d failed: %s", trial.number, reason)
            self._fail(trial, reason, requeue=False)
            self._failures.append(reason)
            if len(self._failures) >= MAX_CONSECUTIVE_FAILURES:
                raise RepeatedFailures(
                    f"{len(self._failures)} candidates in a row failed (last: {reason}); "
                    "the search stopped - see the study's failed trials") from None
            return
        self._failures.clear()

    def _values(self, acc: float, attrs: dict) -> float | list[float]:
        """The study's objective values: accuracy, then the costs named in ``objectives``."""
        if len(self.cfg.objectives) == 1:
            return acc
        return [acc] + [float(attrs[name]) for name in self.cfg.objectives[1:]]

    def _fail(self, trial: optuna.Trial, reason: str, *, requeue: bool) -> None:
        trial.set_user_attr(st.FAIL_REASON, reason)
        frozen = self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        if requeue:
            st.requeue(self.study, frozen)

    def _train(self, trial: optuna.Trial, genome: dict) -> None:
        multi = len(self.cfg.objectives) > 1

        def report(step: int, value: float) -> bool:
            if multi:  # Optuna keeps intermediate values for single-objective studies only
                return False
            trial.report(value, step)
            return trial.should_prune()

        metrics, model, history = evaluate_candidate(
            self.ctx, genome, seed=self.cfg.seed, report=report,
            desc=f"trial {trial.number}")
        acc = float(metrics["val_accuracy"])
        if not math.isfinite(acc):
            raise ValueError("non-finite accuracy")
        trial.set_user_attr(st.EVALUATED, True)
        for key in ("val_accuracy", "val_loss", "train_loss", "epochs_run", "steps", "seconds"):
            if key in metrics:
                trial.set_user_attr(key, metrics[key])
        trial.set_user_attr("kept_indices", history)
        if metrics.get("pruned"):
            self.study.tell(trial, state=TrialState.PRUNED)
            return
        best = self._best_value()
        if self.cfg.artifacts == "all" or (self.cfg.artifacts == "best" and (best is None or acc > best)):
            self._save_weights(trial, model)
        self.study.tell(trial, self._values(acc, trial.user_attrs))
        self._progress(trial.number, acc, metrics, best, trial.user_attrs.get("flops_ratio", float("nan")))

    def _progress(self, number: int, acc: float, metrics: dict, best: float | None, ratio: float) -> None:
        best = acc if best is None else max(best, acc)
        if self._bar.disable:
            if not self.quiet:
                log.info("trial %d: val accuracy %.4f, FLOPs %.1f%% of base, %.1f s (best %.4f)",
                         number, acc, 100 * ratio, metrics.get("seconds", 0.0), best)
        else:
            self._bar.update(1)
            self._bar.set_postfix(best=f"{best:.4f}", last=f"{acc:.4f}")

    def _save_weights(self, trial: optuna.Trial, model: torch.nn.Module) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"trial-{trial.number}.pt")
            torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
            aid = optuna.artifacts.upload_artifact(artifact_store=self.store, file_path=path,
                                                   study_or_trial=trial)
        trial.set_user_attr("weights_artifact", aid)


def _mkdir(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def run_search(cfg: RunConfig, overrides: list[str] | None = None, *, max_new: int | None = None,
               quiet: bool = False) -> SearchOutcome:
    """Create or continue the study of ``cfg`` and search until its trial budget is met."""
    return Driver(cfg, overrides, quiet=quiet).run(max_new=max_new)


def describe_trial(outcome_or_study, trial: FrozenTrial) -> dict:
    """A JSON-able summary of one trial for printing."""
    ua = trial.user_attrs
    return {"trial": trial.number, "accuracy": trial.values[0] if trial.values else None,
            "flops": ua.get(st.FLOPS), "params": ua.get(st.PARAMS),
            "flops_ratio": ua.get("flops_ratio"), "archid": ua.get(st.ARCHID),
            "genome": ua.get(st.GENOME)}


def dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True)
