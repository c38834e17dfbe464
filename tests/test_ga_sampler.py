"""GASampler: generations, elitism, diversity, constraints, NSGA-II ranking, resume, requeue,
concurrency, and real searches against random."""

from __future__ import annotations

import collections

import numpy as np
import optuna
import pytest
from optuna.study import StudyDirection
from optuna.trial import TrialState, create_trial

from searchkit.study import attrs as trial_attrs
from searchkit.strategies.ga import GASampler, _crowding, _fronts, _Ind, _order, member_of
from searchkit.strategies.optuna_builtin import make_random
from toys import keeps, toy


def gen(trial):
    return member_of(trial)["generation"]


def populations(study, size):
    """Generation -> its population (first ``size`` finished non-FAIL trials by completion)."""
    by_gen = collections.defaultdict(list)
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            by_gen[gen(t)].append(t)
    return {g: sorted(ts, key=lambda t: (t.datetime_complete, t.number))[:size]
            for g, ts in by_gen.items()}


def vector(trial):
    return tuple(sorted(trial.params.items()))


# --- construction ------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {"population_size": 1}, {"population_size": 2.5}, {"tournament_size": 0},
    {"elitism": 21}, {"elitism": -1}, {"crossover_prob": 1.5}, {"mutation_prob": -0.1},
    {"seed": -1}, {"seed": "7"}, {"population_size": True},
])
def test_constructor_rejects_bad_values(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        GASampler(**kwargs)


def test_constructor_is_keyword_only():
    with pytest.raises(TypeError):
        GASampler(10)  # type: ignore[misc]


# --- generations and elitism ---------------------------------------------------------------


def test_generations_are_tagged_and_failed_members_replaced():
    size = 6
    sampler = GASampler(population_size=size, seed=3)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    objective = toy([3, 9, 5, 5])

    def flaky(trial):
        if trial.number in (4, 15):
            raise RuntimeError("a broken candidate")
        return objective(trial)

    study.optimize(flaky, n_trials=38, catch=(RuntimeError,))
    trials = study.trials
    gens = [gen(t) for t in trials]
    assert gens == sorted(gens)  # sequential: generations follow each other
    counts = collections.Counter(gen(t) for t in trials if t.state != TrialState.FAIL)
    assert all(counts[g] == size for g in range(max(gens)))  # FAIL members are replaced
    assert gens.count(0) == size + 1 and gens.count(2) == size + 1
    for t in trials:
        m = member_of(t)
        if m["generation"] == 0:
            assert m["origin"] == "random" and m["parents"] == []
        else:
            assert m["origin"] == "offspring"
            assert set(m["parents"]) <= set(sampler.parent_pool(study, m["generation"]))
    # The pool of g+1 is drawn from the pool of g and the population of g only.
    pops = populations(study, size)
    for g in range(1, max(gens) + 1):
        allowed = {t.number for t in pops[g - 1]} | set(sampler.parent_pool(study, g - 1))
        assert set(sampler.parent_pool(study, g)) <= allowed
        assert len(sampler.parent_pool(study, g)) == size


@pytest.mark.parametrize("elitism", [0, 2, 8])
def test_elitism_keeps_the_best(elitism):
    size = 8
    sampler = GASampler(population_size=size, elitism=elitism, seed=11)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(toy([2, 7, 7, 4, 9]), n_trials=64)
    pops = populations(study, size)
    value = {t.number: t.value for t in study.trials}
    for g in range(1, 8):
        pool = sampler.parent_pool(study, g)
        newest = sorted((t.number for t in pops[g - 1]), key=lambda n: (-value[n], n))
        union = sorted(set(sampler.parent_pool(study, g - 1)) | set(newest),
                       key=lambda n: (-value[n], n))
        assert [value[n] for n in pool] == sorted((value[n] for n in pool), reverse=True)
        assert set(union[:elitism]) <= set(pool)  # the elites survive without re-evaluation
        if elitism == 0:
            assert pool == newest  # plain generational replacement
    if elitism:
        best_so_far = max(value[t.number] for g in range(7) for t in pops[g])
        assert value[sampler.parent_pool(study, 7)[0]] == best_so_far


# --- diversity ---------------------------------------------------------------------------


def test_no_duplicate_vectors_in_a_generation_with_diversity():
    def small(trial):  # 27 vectors only: a converging GA repeats itself without the option
        return -float(sum((x - 2) ** 2 for x in keeps(trial, 3, high=3)))

    duplicates = {}
    for diversity in (True, False):
        study = optuna.create_study(
            direction="maximize",
            sampler=GASampler(population_size=8, diversity=diversity, seed=5))
        study.optimize(small, n_trials=80)
        by_gen = collections.defaultdict(list)
        for t in study.trials:
            by_gen[gen(t)].append(vector(t))
        duplicates[diversity] = sum(len(v) - len(set(v)) for v in by_gen.values())
    assert duplicates[True] == 0
    assert duplicates[False] > 0


def test_mutation_rate_rises_when_the_population_collapses():
    dims, size = 10, 6
    objective = toy([5] * dims)
    rates = {}
    for collapsed in (True, False):
        study = optuna.create_study(direction="maximize",
                                    sampler=GASampler(population_size=size, seed=2))
        for _ in range(size):
            if collapsed:
                study.enqueue_trial({f"keep_{j:03d}": 3 for j in range(dims)})
            study.optimize(objective, n_trials=1)
        study.optimize(objective, n_trials=size)
        children = study.trials[size:]
        assert all(gen(t) == 1 for t in children)
        rates[collapsed] = {member_of(t)["mutation_prob"] for t in children}
        if collapsed:
            assert {member_of(t)["diversity"] for t in children} == {0.0}
            assert all(vector(t) != vector(study.trials[0]) for t in children)
    assert rates[False] == {1 / dims}  # stored rounded to 6 digits
    assert rates[True] == {0.5}  # 5x at zero diversity, capped at 0.5


# --- fitness: direction, pruned, constraints, several objectives -----------------------------


def test_order_ranks_feasible_then_violation_then_valueless():
    def ind(number, state=TrialState.COMPLETE, value=None, inter=None, violation=None):
        trial = create_trial(state=state, value=value, intermediate_values=inter or {},
                             system_attrs={} if violation is None
                             else {"constraints:flops": violation})
        trial.number = number
        return _Ind(trial, [StudyDirection.MINIMIZE])

    inds = [ind(0, value=3.0), ind(1, value=1.0), ind(2, value=0.0, violation=2.0),
            ind(3, value=0.0, violation=0.5), ind(4, TrialState.PRUNED, inter={0: 5.0, 3: 2.0}),
            ind(5, TrialState.PRUNED)]
    assert [i.number for i in _order(inds)] == [1, 4, 0, 3, 2, 5]


def test_fronts_and_crowding():
    losses = np.array([[1, 5], [2, 2], [5, 1], [3, 3], [4, 4], [2, 6]], float)
    assert [sorted(f.tolist()) for f in _fronts(losses)] == [[0, 1, 2], [3, 5], [4]]
    crowd = _crowding(losses[[0, 1, 2]])
    assert np.isinf(crowd[[0, 2]]).all() and crowd[1] == pytest.approx(2.0)


def test_infeasible_trials_are_never_parents_while_feasible_ones_exist():
    sampler = GASampler(population_size=8, seed=4)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    objective = toy([9, 9, 9, 9, 9])
    for _ in range(72):  # as searchkit's driver: constraint first, infeasible never trained
        trial = study.ask()
        value = objective(trial)
        excess = sum(trial.params.values()) - 30.0  # a FLOPs-like budget
        trial.set_constraint("flops", excess)
        if excess > 0:
            trial.set_user_attr(trial_attrs.INFEASIBLE_KEY, True)
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, value)
    feasible = {t.number for t in study.trials if t.state == TrialState.COMPLETE}
    assert 0 < len(feasible) < 72
    checked = 0
    for t in study.trials:
        pool = sampler.parent_pool(study, gen(t))
        if any(n in feasible for n in pool):
            assert set(member_of(t)["parents"]) <= feasible
            checked += 1
    assert checked > 40
    best = max(study.trials, key=lambda t: t.value if t.number in feasible else -1e9)
    assert sampler.parent_pool(study, max(gen(t) for t in study.trials))[0] == best.number


def test_feasibility_hint_repairs_every_proposal():
    from searchkit.strategies.feasibility import FeasibilityHint, attach

    dims, budget = 5, 22
    space = {f"keep_{j:03d}": optuna.distributions.IntDistribution(1, 10) for j in range(dims)}
    sampler = GASampler(population_size=8, seed=6)
    assert attach(sampler, FeasibilityHint(space, lambda p: sum(p.values()) <= budget))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(toy([9] * dims), n_trials=48)  # the optimum (sum 45) is out of budget
    assert all(sum(t.params.values()) <= budget for t in study.trials)
    assert study.best_value >= -120  # the constrained optimum (4, 4, 4, 5, 5) scores -107


def _hypervolume(points, ref):
    """2-D hypervolume of minimisation points below ``ref``."""
    area, low = 0.0, ref[1]
    for l1, l2 in sorted(points):
        if l2 < low:
            area, low = area + (ref[0] - l1) * (low - l2), l2
    return area


def test_multi_objective_front_beats_random():
    dims = 8

    def objective_for(a, b):  # "accuracy" up, "FLOPs" down: two conflicting targets
        def objective(trial):
            x = keeps(trial, dims)
            return (-sum((v - t) ** 2 for v, t in zip(x, a)),
                    sum((v - t) ** 2 for v, t in zip(x, b)))
        return objective

    ga, rnd = [], []
    for seed in range(3):
        rng = np.random.default_rng(2000 + seed)
        objective = objective_for(rng.integers(1, 11, dims), rng.integers(1, 11, dims))
        for sampler, results in ((GASampler(seed=seed), ga), (make_random(seed=seed), rnd)):
            study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
            study.optimize(objective, n_trials=200)
            points = [(-t.values[0], t.values[1]) for t in study.best_trials]
            results.append(_hypervolume(points, (dims * 81, dims * 81)))
    assert np.median(ga) > np.median(rnd), (ga, rnd)


# --- a real search -----------------------------------------------------------------------


def test_ga_beats_random_search_on_a_toy_problem():
    ga, rnd = [], []
    for seed in range(3):
        target = np.random.default_rng(1000 + seed).integers(1, 11, size=10).tolist()
        for sampler, results in ((GASampler(seed=seed), ga), (make_random(seed=seed), rnd)):
            study = optuna.create_study(direction="maximize", sampler=sampler)
            study.optimize(toy(target), n_trials=200)
            results.append(study.best_value)
    assert np.median(ga) > np.median(rnd), (ga, rnd)


# --- resume, requeue, concurrency, cost ----------------------------------------------------


def _resume_objective(trial):
    x = keeps(trial, 5)
    if trial.number in (7, 22):
        raise RuntimeError("a broken candidate")
    if trial.number % 11 == 5:
        trial.report(-60.0, 0)
        raise optuna.TrialPruned()
    return -float(sum((v - 6) ** 2 for v in x))


def test_interrupted_run_resumes_exactly_on_sqlite(tmp_path):
    def sampler():
        return GASampler(population_size=5, seed=123)

    def fingerprint(study):
        return [(t.state, t.params, member_of(t)) for t in study.trials]

    full = optuna.create_study(direction="maximize", sampler=sampler())  # in memory
    full.optimize(_resume_objective, n_trials=36, catch=(RuntimeError,))
    url = f"sqlite:///{tmp_path / 'cut.db'}"
    cut = optuna.create_study(storage=url, study_name="s", direction="maximize", sampler=sampler())
    cut.optimize(_resume_objective, n_trials=14, catch=(RuntimeError,))
    del cut
    resumed = optuna.load_study(study_name="s", storage=url, sampler=sampler())
    resumed.optimize(_resume_objective, n_trials=22, catch=(RuntimeError,))
    assert fingerprint(resumed) == fingerprint(full)
    assert max(gen(t) for t in full.trials) >= 4


def test_requeued_trial_inherits_membership(tmp_path):
    url = f"sqlite:///{tmp_path / 'requeue.db'}"
    objective = toy([4, 4, 8, 2])
    study = optuna.create_study(storage=url, study_name="s", direction="maximize",
                                sampler=GASampler(population_size=5, seed=9))
    study.optimize(objective, n_trials=12)
    stale = study.ask()
    objective(stale)  # the driver crashes while this candidate trains
    stale_number = stale.number
    del study, stale

    study = optuna.load_study(study_name="s", storage=url,
                              sampler=GASampler(population_size=5, seed=9))
    old = study.trials[stale_number]
    assert old.state == TrialState.RUNNING and member_of(old)["generation"] == 2
    study.tell(stale_number, state=TrialState.FAIL)
    study.enqueue_trial(old.params, user_attrs={trial_attrs.REQUEUED_FROM_KEY: stale_number})
    trial = study.ask()
    study.tell(trial, objective(trial))
    new = study.trials[trial.number]
    assert new.params == old.params
    assert member_of(new) == {**member_of(old), "requeued_from": stale_number}
    study.optimize(objective, n_trials=3)  # generation 2 fills up, then 3 starts
    assert [gen(t) for t in study.trials[-3:]] == [2, 2, 3]
    assert "requeued_from" not in member_of(study.trials[-1])


def test_four_trials_in_flight():
    size, total = 8, 120
    sampler = GASampler(population_size=size, seed=8)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    objective = toy([2, 8, 6, 4, 10, 1])
    in_flight, asked, complete_at_ask = collections.deque(), 0, {}
    while asked < total or in_flight:
        while asked < total and len(in_flight) < 4:
            trial = study.ask()
            g = gen(trial_attrs.get_trial(study, trial._trial_id))
            done = collections.Counter(gen(t) for t in study.get_trials(deepcopy=False)
                                       if t.state in (TrialState.COMPLETE, TrialState.PRUNED))
            complete_at_ask[trial.number] = (g, done[g - 1] if g else size, done[g])
            in_flight.append((trial, objective(trial)))
            asked += 1
        trial, value = in_flight.popleft()
        if trial.number % 9 == 4:
            study.tell(trial, state=TrialState.FAIL)
        elif trial.number % 9 == 7:
            trial.report(value, 0)
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, value)

    trials = study.trials
    assert all(t.state.is_finished() for t in trials) and len(trials) == total
    # Steady filling: a trial joins generation g only once g-1 is complete, and while g is not.
    assert all(prev >= size and mine < size for _, prev, mine in complete_at_ask.values())
    top = max(gen(t) for t in trials)
    assert top >= 8
    pops = populations(study, size)
    assert all(len(pops[g]) == size for g in range(top))
    for t in trials:
        assert set(member_of(t)["parents"]) <= set(sampler.parent_pool(study, gen(t)))
    assert max(t.value for t in trials if t.value is not None) > max(
        t.value for t in pops[0] if t.value is not None)


def test_each_trial_is_replayed_once():
    sampler = GASampler(seed=1, population_size=10)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(toy([5] * 8), n_trials=300)
    assert sampler._absorbed <= 300  # an ask applies only newly finished trials
