"""The strategy contract, run for every registered algo (``from searchkit.testing.strategies
import *``): an Optuna sampler that searches, seeds and resumes exactly, with typed options.

In the style of Optuna's own sampler test-suite (``optuna/testing/pytest_samplers.py``).
"""

from __future__ import annotations

import dataclasses

import optuna
import pytest

from searchkit.core import options as opts
from searchkit.registry import STRATEGIES

__all__ = ["make_sampler", "test_is_an_optuna_sampler", "test_values_stay_in_bounds", "test_seeded_runs_repeat",
           "test_interrupted_run_continues_exactly", "test_it_searches", "test_options_are_typed_and_accepted"]

DIMS = 6


def _objective(trial):
    xs = [trial.suggest_int(f"x_{i:03d}", 1, 10) for i in range(DIMS)]
    return -sum((x - 7) ** 2 for x in xs)


@pytest.fixture(params=STRATEGIES.names())
def make_sampler(request):
    factory = STRATEGIES.get(request.param)
    if getattr(factory, "runner", "asktell") != "asktell":
        pytest.skip(f"{request.param} is a runner of its own, not a sampler")
    return lambda seed: factory(seed=seed)


def _run(sampler, n, storage=None, name="s"):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=sampler, storage=storage, study_name=name,
                                load_if_exists=True)
    study.optimize(_objective, n_trials=n)
    return study


def test_is_an_optuna_sampler(make_sampler):
    assert isinstance(make_sampler(0), optuna.samplers.BaseSampler)


def test_values_stay_in_bounds(make_sampler):
    study = _run(make_sampler(0), 40)
    for t in study.trials:
        assert all(1 <= v <= 10 for v in t.params.values())


def test_seeded_runs_repeat(make_sampler):
    a = [t.params for t in _run(make_sampler(5), 25).trials]
    b = [t.params for t in _run(make_sampler(5), 25).trials]
    assert a == b


def test_interrupted_run_continues_exactly(make_sampler, tmp_path):
    straight = [t.params for t in _run(make_sampler(7), 30).trials]
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    _run(make_sampler(7), 12, url, "r")
    resumed = _run(make_sampler(7), 18, url, "r")  # a new process would build a new sampler just like this
    assert [t.params for t in resumed.trials] == straight


def test_it_searches(make_sampler):
    """Better than the mean of random draws after a modest budget (a real search)."""
    best = _run(make_sampler(1), 80).best_value
    assert best > -30  # random single draws average about -70 on this objective


def test_options_are_typed_and_accepted():
    """Every algo's options are a frozen dataclass whose defaults its factory accepts."""
    for name in STRATEGIES.names():
        factory = STRATEGIES.get(name)
        cls = getattr(factory, "Options", opts.NoOptions)
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, name
        if getattr(factory, "runner", "asktell") != "asktell":
            continue  # a runner of its own (algo=darts): its options are checked, it is no sampler
        sampler = factory(seed=0, **opts.to_plain(cls()))
        assert isinstance(sampler, optuna.samplers.BaseSampler), name
