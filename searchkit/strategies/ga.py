"""A generational genetic algorithm (NSGA-II ranking for several objectives) as a resumable
Optuna sampler. Each trial is one individual; at its ask, one system attr ``ga:member``
records ``generation``, ``index`` (issue order in it), ``origin`` (``random``, ``offspring``
or ``enqueued``), ``parents`` (trial numbers), ``mutation_prob``, ``diversity`` (of the pool)
and, for retries, ``requeued_from``. Everything else is rebuilt from stored trials.

Generations: the *population* of generation g is its first ``population_size`` finished
non-FAIL trials, in order of completion. A new trial joins the first generation whose
population is incomplete (steady filling): no barrier, a FAIL is replaced, and stragglers
finishing after their generation filled are not bred from. Generation 0 is random. The pool
of g+1 is the ``elitism`` best of (pool of g ∪ population of g), kept without re-evaluation,
then the best of population g up to ``population_size`` (``elitism=population_size``: μ+λ).

Breeding: two tournaments (``tournament_size`` draws, best rank wins) over the feasible
pool members (over all of them only when none is feasible), uniform crossover with
probability ``crossover_prob``, then each gene mutates with probability ``mutation_prob``
(default 1/D): a uniform redraw (one time in five, and always for categoricals), otherwise
a step of ±1..±k grid points (k = 20 % of the grid, at least 1; int and stepped floats), a
Gaussian of 10 % of the range (floats; log scale for log ones), reflected and clipped.

Diversity (``diversity=True``): a child equal to a vector issued in its generation or held
in the pool is bred again (10 tries), then drawn at random (10 more), then kept. When the
pool's mean pairwise Hamming distance / D is below 0.2, mutation grows linearly to 5x at 0
(capped at 0.5). With a feasibility hint (``set_feasibility``) every proposal is repaired.

Fitness: feasible trials rank by value (direction respected; PRUNED by the pruner: its last
intermediate value), for several objectives by non-dominated sorting, then crowding
distance; infeasible ones (a positive ``trial.set_constraint`` value, ``searchkit:infeasible``)
rank below all feasible ones by total violation, trials with no usable value last; FAIL
trials are skipped. A trial enqueued with ``searchkit:requeued_from`` inherits membership.
"""

from __future__ import annotations

import math
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.search_space import IntersectionSearchSpace
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from searchkit.study import attrs as trial_attrs
from searchkit.core.dist import draw, snap

ATTR = "ga:member"
_COLLAPSE, _BOOST, _TRIES = 0.2, 5.0, 10


def member_of(trial: FrozenTrial) -> dict[str, Any] | None:
    """The GA membership stored on a trial (a copy), or ``None`` for another sampler's."""
    member = trial_attrs.get_system_attr(trial, ATTR)
    return dict(member) if member else None


class _Ind:
    """An evaluated individual: trial number, completion stamp, internal vector, fitness."""

    def __init__(self, trial: FrozenTrial, directions: Sequence[StudyDirection]) -> None:
        self.number, self.stamp = trial.number, (trial.datetime_complete, trial.number)
        self.vec = {n: d.to_internal_repr(trial.params[n]) for n, d in trial.distributions.items()}
        violation = trial_attrs.constraint_violation(trial)
        values = trial.values if trial.state == TrialState.COMPLETE else None
        if values is None and trial.intermediate_values and len(directions) == 1:
            values = [trial.intermediate_values[max(trial.intermediate_values)]]
        if violation > 0:
            self.cls, self.fit = 1, (violation,)  # infeasible: below every feasible one
        elif values is None or any(math.isnan(v) for v in values):
            self.cls, self.fit = 0, ()
        else:  # feasible: losses to minimise
            self.cls, self.fit = 2, tuple(v if d == StudyDirection.MINIMIZE else -v
                                          for v, d in zip(values, directions))


def _fronts(losses: np.ndarray) -> list[np.ndarray]:
    """Non-dominated sorting (minimisation): index arrays, best front first."""
    dom = (losses[:, None] <= losses[None]).all(-1) & (losses[:, None] < losses[None]).any(-1)
    count, left, fronts = dom.sum(0), np.ones(len(losses), bool), []
    while left.any():
        front = np.flatnonzero(left & (count == 0))
        fronts.append(front)
        left[front] = False
        count = count - dom[front].sum(0)
    return fronts


def _crowding(losses: np.ndarray) -> np.ndarray:
    dist = np.zeros(len(losses))
    for m in range(losses.shape[1]):
        order = np.argsort(losses[:, m], kind="stable")
        dist[order[[0, -1]]] = math.inf
        span = losses[order[-1], m] - losses[order[0], m]
        if span > 0 and len(order) > 2:
            dist[order[1:-1]] += (losses[order[2:], m] - losses[order[:-2], m]) / span
    return dist


def _order(inds: Sequence[_Ind]) -> list[_Ind]:
    """Best first: feasible by value (or front, then crowding), infeasible by violation."""
    feas = [i for i in inds if i.cls == 2]
    if feas and len(feas[0].fit) > 1:
        losses, ranked = np.array([i.fit for i in feas], dtype=float), []
        for front in _fronts(losses):
            crowd = _crowding(losses[front])
            ranked += [feas[front[j]] for j in sorted(range(len(front)), key=lambda j: -crowd[j])]
        feas = ranked
    else:
        feas = sorted(feas, key=lambda i: (i.fit, i.number))
    rest = sorted((i for i in inds if i.cls < 2), key=lambda i: (-i.cls, i.fit, i.number))
    return feas + rest


_external, _random = snap, draw  # shared with ABC (core/dist.py)


def _mutate(dist: BaseDistribution, v: float, rng: np.random.Generator) -> Any:
    """One gene's mutation (see the module docstring); returns the external value."""
    if isinstance(dist, CategoricalDistribution) or rng.random() < 0.2:
        return _random(dist, rng)
    lo, hi, x = (math.log(dist.low), math.log(dist.high), math.log(v)) if dist.log else (
        dist.low, dist.high, v)
    if dist.step is not None and not dist.log:
        k = max(1, round(0.2 * (hi - lo) / dist.step))
        delta = dist.step * int(rng.integers(1, k + 1)) * int(rng.choice((-1, 1)))
    else:
        delta = rng.normal(0.0, 0.1 * (hi - lo))
    x = x + delta if lo <= x + delta <= hi else x - delta  # reflect off the nearer bound
    return _external(dist, math.exp(min(max(x, lo), hi)) if dist.log else x)


class _State:
    """Replay state of one study: each generation's finished members and parent pool."""

    def __init__(self) -> None:
        self.done, self.mark, self.seen = 0, (), set()  # finished prefix, its stamp, absorbed
        self.members: dict[int, list[_Ind]] = {}  # generation -> finished non-FAIL trials
        self.pools, self.current = {0: []}, 0  # current: the first incomplete generation


@dataclass(frozen=True)
class GAOptions:
    """``algo.*`` options of ``algo=ga`` (see :class:`GASampler`)."""

    # Individuals per generation (and in the parent pool).
    population_size: int = 20
    # Pool members drawn per tournament; the best ranked wins.
    tournament_size: int = 3
    # Probability of uniform crossover (else the child copies its first parent).
    crossover_prob: float = 0.9
    # Per-gene mutation probability; unset: 1 / genes.
    mutation_prob: float | None = None
    # Best of pool and generation kept in the next pool without re-evaluation.
    elitism: int = 2
    # Avoid duplicate vectors in a generation; raise mutation when the pool collapses.
    diversity: bool = True


class GASampler(optuna.samplers.BaseSampler):
    """Generational GA over a study's search space, rebuilt from its trials.

    Args:
        population_size: Individuals per generation (and in the parent pool).
        tournament_size: Pool members drawn per tournament; the best ranked wins.
        crossover_prob: Probability of uniform crossover (else the child copies parent 1).
        mutation_prob: Per-gene mutation probability (default ``1 / D``).
        elitism: Best of (pool ∪ generation) kept in the next pool without re-evaluation.
        diversity: Avoid duplicate vectors in a generation; raise mutation on collapse.
        seed: Trial ``n`` draws from ``default_rng([seed, n, stream])``: resuming is exact.

    Example:
        >>> import optuna
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> def objective(trial):
        ...     xs = [trial.suggest_int(f"x_{j:03d}", 1, 10) for j in range(4)]
        ...     return -sum((x - 7) ** 2 for x in xs)
        >>> sampler = GASampler(population_size=8, seed=0)
        >>> study = optuna.create_study(direction="maximize", sampler=sampler)
        >>> study.optimize(objective, n_trials=40)
        >>> [member_of(study.trials[n])["generation"] for n in (0, 8, 39)]
        [0, 1, 4]
    """

    Options = GAOptions

    def __init__(self, *, population_size: int = 20, tournament_size: int = 3,
                 crossover_prob: float = 0.9, mutation_prob: float | None = None,
                 elitism: int = 2, diversity: bool = True, seed: int | None = None) -> None:
        for name, value, low, high in (("population_size", population_size, 2, math.inf),
                                       ("tournament_size", tournament_size, 1, math.inf),
                                       ("elitism", elitism, 0, population_size),
                                       ("seed", seed, 0, math.inf)):
            ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            if (value is not None or name != "seed") and not (ok and low <= value <= high):
                raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        for name, value in (("crossover_prob", crossover_prob), ("mutation_prob", mutation_prob)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if (value is not None or name != "mutation_prob") and not (ok and 0 <= value <= 1):
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        self._n, self._k, self._elites = int(population_size), int(tournament_size), int(elitism)
        self._pc, self._pm, self._diversity = float(crossover_prob), mutation_prob, bool(diversity)
        self._seed = int(np.random.SeedSequence().entropy if seed is None else seed)
        self._lock, self._cache, self._hint = threading.RLock(), {}, None  # study -> _State
        self._spaces: dict[tuple, IntersectionSearchSpace] = {}
        self._ctx: dict[int, tuple[dict, dict]] = {}  # trial id -> (space, params) at ask
        self._place: dict[int, int] = {}  # trial id -> its place in an uninterrupted run
        self._absorbed = 0  # trials replayed: a cost counter for tests

    def parent_pool(self, study: optuna.Study, generation: int) -> list[int]:
        """Trial numbers of the pool ``generation`` is bred from, best first ([] for 0)."""
        with self._lock:
            state, _ = self._replay(study, fresh=True)
        return [i.number for i in state.pools.get(generation, [])]

    def _rng(self, number: int, *stream: int) -> np.random.Generator:
        return np.random.default_rng([self._seed, number, *stream])

    def _absorb(self, state: _State, trial: FrozenTrial, directions: list) -> None:
        state.seen.add(trial.number)
        member = member_of(trial)
        if member is None or trial.state == TrialState.FAIL:
            return
        self._absorbed += 1
        state.members.setdefault(member["generation"], []).append(_Ind(trial, directions))
        while len(state.members.get(state.current, ())) >= self._n:  # generation complete
            g = state.current
            pop = sorted(state.members[g], key=lambda i: i.stamp)[: self._n]
            elites = _order(state.pools[g] + pop)[: self._elites]
            rest = [i for i in _order(pop) if i not in elites][: self._n - len(elites)]
            state.pools[g + 1], state.current = _order(elites + rest), g + 1

    def _replay(self, study: optuna.Study, fresh: bool = False) -> tuple[_State, list]:
        """The state after all finished trials; in-flight ones add only their vectors."""
        key, trials = (study.study_name, study._study_id), trial_attrs.all_trials(study, not fresh)
        state = self._cache.get(key)
        stamp = (lambda t: (t.number, t.datetime_start))
        if state is None or state.done > len(trials) or (
                state.done and stamp(trials[state.done - 1]) != state.mark):
            state = self._cache[key] = _State()  # new, or another study under the same key
        seen, directions = state.seen, list(study.directions)
        new = [t for t in trials[state.done:] if t.state.is_finished() and t.number not in seen]
        for trial in sorted(new, key=lambda t: (t.datetime_complete, t.number)):
            self._absorb(state, trial, directions)  # in completion order: populations
        while state.done < len(trials) and trials[state.done].state.is_finished():
            state.seen.discard(trials[state.done].number)
            state.done += 1
        state.mark = stamp(trials[state.done - 1]) if state.done else ()
        return state, trials

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        with self._lock:
            state, trials = self._replay(study)
            # draws seeded by the trial's place in an uninterrupted run (attrs.logical_number)
            self._place[trial._trial_id] = trial_attrs.logical_number(trials, trial.number)
            member, space, params = member_of(trial), self._space(study), {}
            if member is None:  # (else asked already, by another sampler instance)
                old = trial_attrs.get_user_attr(trial, trial_attrs.REQUEUED_FROM_KEY)
                src = next((member_of(t) for t in reversed(trials) if t.number == old), None)
                if src:  # its params are fixed to the old ones
                    member = {**src, "requeued_from": old}
                else:
                    member, params = self._breed(trial, space, state, trials)
                trial_attrs.set_system_attr(study, trial._trial_id, ATTR, member)
            self._ctx[trial._trial_id] = (space, params)
            while len(self._ctx) > 4096:  # trials told by another process never come back
                self._ctx.pop(next(iter(self._ctx)))
            while len(self._place) > 4096:
                self._place.pop(next(iter(self._place)))

    def _breed(self, trial: FrozenTrial, space: dict, state: _State,
               trials: list[FrozenTrial]) -> tuple[dict, dict]:
        """A new member of the current generation and its proposed params."""
        g = state.current
        issued = [i.vec for i in state.members.get(g, [])]
        for t in trials[state.done:]:  # in flight: their vectors count, not their values
            m = member_of(t) if t.state == TrialState.RUNNING and t.number != trial.number else None
            if m and m["generation"] == g:
                issued.append({n: d.to_internal_repr(t.params[n])
                               for n, d in t.distributions.items()})
        member = {"generation": g, "index": len(issued), "origin": "enqueued", "parents": []}
        if space and set(space) <= set(trial.system_attrs.get("fixed_params") or ()):
            return member, {}  # enqueued with every param fixed: nothing to breed
        pool, names = state.pools.get(g, []), list(space)
        feasible = [i for i in pool if i.cls == 2] or pool
        vecs = np.array([[i.vec.get(n, np.nan) for n in names] for i in pool], float)
        vecs = vecs.reshape(len(pool), len(names))
        upper = np.triu_indices(len(pool), 1)  # mean pairwise Hamming distance / D
        div = float((vecs[:, None] != vecs[None]).mean(-1)[upper].mean()) if len(pool) > 1 else 1.0
        pm = self._pm if self._pm is not None else 1.0 / max(1, len(names))
        if self._diversity and div < _COLLAPSE:
            pm = min(pm * (1 + (_BOOST - 1) * (1 - div / _COLLAPSE)), max(pm, 0.5))
        taboo = {tuple(v.get(n) for n in names) for v in issued + [i.vec for i in pool]}
        place = self._place.get(trial._trial_id, trial.number)
        rng = self._rng(place, 1)
        for attempt in range(2 * _TRIES + 1):
            if not feasible or attempt >= _TRIES:
                params, parents = {n: _random(d, rng) for n, d in space.items()}, []
            else:
                params, parents = self._child(space, feasible, pm, rng)
            if self._hint is not None:  # the space's cheap cost check: step genes down
                params = self._hint.repair(params, self._rng(place, 4, attempt))
            vec = {n: space[n].to_internal_repr(v) for n, v in params.items()}
            if not self._diversity or tuple(vec.get(n) for n in names) not in taboo:
                break
        member.update(origin="offspring" if parents else "random", parents=parents,
                      mutation_prob=round(pm, 6), diversity=round(div, 6))
        return member, params

    def _child(self, space: dict, pool: list[_Ind], pm: float,
               rng: np.random.Generator) -> tuple[dict, list[int]]:
        first = int(rng.integers(len(pool), size=self._k).min())  # pool is sorted best first
        others = [i for i in range(len(pool)) if i != first] or [first]
        a, b = pool[first], pool[int(rng.choice(others, size=self._k).min())]
        cross, params = rng.random() < self._pc, {}
        for n, d in space.items():
            src = b if cross and rng.random() < 0.5 and n in b.vec else a
            if n not in src.vec:
                params[n] = _random(d, rng)
            elif rng.random() < pm:
                params[n] = _mutate(d, src.vec[n], rng)
            else:
                params[n] = _external(d, src.vec[n])
        return params, [a.number, b.number]

    def set_feasibility(self, hint: Any) -> None:
        """Repair infeasible proposals with the space's cost check (see feasibility.py)."""
        self._hint = hint

    def _space(self, study: optuna.Study) -> dict[str, BaseDistribution]:
        if self._hint is not None:
            return dict(self._hint.space)
        calc = self._spaces.setdefault((study.study_name, study._study_id),
                                       IntersectionSearchSpace(True))
        return {n: d for n, d in calc.calculate(study, use_cache=True).items() if not d.single()}

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict:
        with self._lock:  # the space computed at this trial's ask (one deep copy per ask)
            ctx = self._ctx.get(trial._trial_id)
        return dict(ctx[0]) if ctx else self._space(study)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        with self._lock:
            if trial._trial_id not in self._ctx:  # asked before this sampler was attached
                self.before_trial(study, trial_attrs.get_trial(study, trial._trial_id))
            space, params = self._ctx.pop(trial._trial_id)
        rng = self._rng(self._place.get(trial._trial_id, trial.number), 3)
        # (the space can have grown since the ask)
        return {n: params[n] if space.get(n) == d and n in params else _random(d, rng)
                for n, d in search_space.items()}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        rng = self._rng(self._place.get(trial._trial_id, trial.number), 2, zlib.crc32(param_name.encode()))
        return _random(param_distribution, rng)
