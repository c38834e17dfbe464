"""Every registered strategy is an Optuna sampler that searches, seeds and resumes exactly.

In the style of Optuna's own sampler test-suite: parametrized over the registry, so a new
strategy gets the whole suite from its registry entry.
"""

import optuna
import pytest

from searchkit.registry import STRATEGIES

DIMS = 6


def objective(trial):
    xs = [trial.suggest_int(f"keep_{i:03d}", 1, 10) for i in range(DIMS)]
    return -sum((x - 7) ** 2 for x in xs)


@pytest.fixture(params=STRATEGIES.names())
def make(request):
    factory = STRATEGIES.get(request.param)
    return lambda seed: factory(seed=seed)


def _run(sampler, n, storage=None, name="s"):
    study = optuna.create_study(direction="maximize", sampler=sampler, storage=storage, study_name=name,
                                load_if_exists=True)
    study.optimize(objective, n_trials=n)
    return study


def test_is_an_optuna_sampler(make):
    assert isinstance(make(0), optuna.samplers.BaseSampler)


def test_values_stay_in_bounds(make):
    study = _run(make(0), 40)
    for t in study.trials:
        assert all(1 <= v <= 10 for v in t.params.values())


def test_seeded_runs_repeat(make):
    a = [t.params for t in _run(make(5), 25).trials]
    b = [t.params for t in _run(make(5), 25).trials]
    assert a == b


def test_interrupted_run_continues_exactly(make, tmp_path):
    straight = [t.params for t in _run(make(7), 30).trials]
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    _run(make(7), 12, url, "r")
    resumed = _run(make(7), 18, url, "r")  # a new process would build a new sampler just like this
    assert [t.params for t in resumed.trials] == straight


def test_it_searches(make):
    """Better than the mean of random draws after a modest budget (a real search)."""
    best = _run(make(1), 80).best_value
    assert best > -30  # random single draws average about -70 on this objective
