"""Optuna's TPE and random samplers, made resume-exact the way searchkit runs them.

Optuna's samplers draw from one RNG stream that lives only in memory, so a study that is
stopped and opened again by a new process proposes other candidates than an uninterrupted
run would. :class:`PerTrialSeeded` fixes that without touching any private state: it builds
a fresh inner sampler for every trial, seeded from ``(seed, trial.number)``. TPE and random
hold no other state (TPE re-reads the study's trials each time), so nothing is lost.

Constraints need no callback: searchkit records them with ``trial.set_constraint``, which
Optuna 5's TPE reads by itself.

Example:
    >>> import optuna
    >>> from searchkit.strategies.optuna_builtin import make_tpe
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study(sampler=make_tpe(seed=0, n_startup_trials=5))
    >>> study.optimize(lambda t: (t.suggest_int("keep_000", 1, 10) - 3) ** 2, n_trials=15)
    >>> len(study.trials)
    15
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, NSGAIISampler, RandomSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState

from searchkit.core.dist import draw
from searchkit.study import attrs as trial_attrs


def trial_seed(seed: int | None, number: int) -> int | None:
    """A 32-bit seed derived from ``(seed, trial number)``; ``None`` stays unseeded."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([int(seed), int(number)]).generate_state(1)[0])


class PerTrialSeeded(BaseSampler):
    """Wraps a stateless-but-for-its-RNG Optuna sampler so trial ``n`` always draws from
    the RNG ``(seed, n)``: interrupted and resumed studies continue exactly."""

    def __init__(self, factory: Callable[[int | None], BaseSampler], seed: int | None):
        self._factory = factory
        self._seed = seed
        self._by_trial: dict[int, BaseSampler] = {}
        self._place: dict[int, int] = {}  # trial number -> its place in an uninterrupted run
        self._lock = threading.Lock()
        self._default = factory(seed)
        self._hint: Any = None

    def set_feasibility(self, hint: Any) -> None:
        """Sample whole vectors over ``hint.space`` and repair infeasible ones (feasibility.py)."""
        self._hint = hint

    def _rng(self, number: int, stream: int) -> np.random.Generator:
        if self._seed is None:
            return np.random.default_rng()
        return np.random.default_rng([int(self._seed), self._place.get(number, number), stream])

    def _inner(self, number: int) -> BaseSampler:
        with self._lock:
            if number not in self._by_trial:
                seed = trial_seed(self._seed, self._place.get(number, number))
                self._by_trial[number] = self._factory(seed)
            return self._by_trial[number]

    @property
    def inner(self) -> BaseSampler:
        """A sampler as the factory builds it (for inspection)."""
        return self._default

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        # seeded by the trial's place in an uninterrupted run (attrs.logical_number)
        with self._lock:
            self._place[trial.number] = trial_attrs.logical_number(trial_attrs.all_trials(study), trial.number)
        self._inner(trial.number).before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if self._hint is not None:
            return dict(self._hint.space)
        return self._inner(trial.number).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        params = self._inner(trial.number).sample_relative(study, trial, search_space)
        if self._hint is None or not search_space:
            return params
        # Startup/random phases return nothing relative: draw the whole vector here so it
        # can be checked and repaired as one.
        rng = self._rng(trial.number, 1)
        params = {n: params[n] if n in params else draw(d, rng) for n, d in search_space.items()}
        return self._hint.repair(params, self._rng(trial.number, 2))

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._inner(trial.number).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Any) -> None:
        inner = self._inner(trial.number)
        try:
            inner.after_trial(study, trial, state, values)
        finally:
            with self._lock:
                self._by_trial.pop(trial.number, None)
                self._place.pop(trial.number, None)

    def reseed_rng(self) -> None:  # the seed is the identity of the run; nothing to reseed
        pass


@dataclass(frozen=True)
class TPEOptions:
    """``algo.*`` options of ``algo=tpe``; unset ones take Optuna's defaults."""

    # Random trials before TPE models the study.
    n_startup_trials: int = 10
    # Model the genes jointly.
    multivariate: bool = True
    # Treat trials in flight as bad (several at once do not collide).
    constant_liar: bool = True
    # Candidates TPE scores per proposal.
    n_ei_candidates: int | None = None
    # Decompose the space into groups that appear together.
    group: bool | None = None
    # Widen the Parzen estimators' bandwidth at the domain's ends.
    consider_endpoints: bool | None = None
    # Weight of the prior.
    prior_weight: float | None = None


@dataclass(frozen=True)
class NSGA2Options:
    """``algo.*`` options of ``algo=nsga2``; unset ones take Optuna's defaults."""

    # Individuals per generation.
    population_size: int = 20
    # Per-gene mutation probability; unset: Optuna's (1 / genes).
    mutation_prob: float | None = None
    # Probability of crossover; unset: Optuna's 0.9.
    crossover_prob: float | None = None
    # Uniform crossover's swapping probability; unset: Optuna's 0.5.
    swapping_prob: float | None = None


def _given(kw: dict) -> dict:
    return {k: v for k, v in kw.items() if v is not None}


def make_tpe(*, seed: int | None = None, n_startup_trials: int = 10, **kw: Any) -> PerTrialSeeded:
    """Multivariate TPE with the constant liar (so trials in flight don't collide).

    Args:
        seed: Seed of the run; trial ``n`` samples with ``(seed, n)``.
        n_startup_trials: Random trials before TPE starts modelling.
        **kw: Any other :class:`optuna.samplers.TPESampler` argument (these override
            ``multivariate=True`` and ``constant_liar=True`` too).

    Example:
        >>> make_tpe(seed=1, n_startup_trials=20).inner._n_startup_trials
        20
    """
    if int(n_startup_trials) < 0:
        raise ValueError(f"n_startup_trials must be >= 0, got {n_startup_trials}")
    options: dict[str, Any] = {"multivariate": True, "constant_liar": True, **_given(kw)}
    probe = TPESampler(seed=0, n_startup_trials=n_startup_trials, **options)  # bad kwargs fail here, once
    del probe
    return PerTrialSeeded(lambda s: TPESampler(seed=s, n_startup_trials=n_startup_trials, **options), seed)


def make_random(*, seed: int | None = None, **kw: Any) -> PerTrialSeeded:
    """Uniform random sampling (the baseline every strategy is compared against).

    Example:
        >>> make_random(seed=0).inner.__class__.__name__
        'RandomSampler'
    """
    RandomSampler(seed=0, **kw)
    return PerTrialSeeded(lambda s: RandomSampler(seed=s, **kw), seed)


def make_nsga2(*, seed: int | None = None, population_size: int = 20, **kw: Any) -> PerTrialSeeded:
    """Optuna's NSGA-II (generations kept in trial system attrs by Optuna itself).

    Example:
        >>> make_nsga2(seed=0, population_size=8).inner.__class__.__name__
        'NSGAIISampler'
    """
    kw = _given(kw)
    NSGAIISampler(seed=0, population_size=population_size, **kw)
    return PerTrialSeeded(lambda s: NSGAIISampler(seed=s, population_size=population_size, **kw), seed)


make_tpe.Options = TPEOptions
make_nsga2.Options = NSGA2Options
