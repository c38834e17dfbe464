"""The CostModel contract, run for every registered cost on every space it applies to
(``from searchkit.testing.costs import *``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from searchkit.core.costs import CostModel, Pricer, limits_of
from searchkit.core.errors import ConfigError
from searchkit.registry import COSTS, SPACES
from searchkit.testing.common import sample_genomes, setup_of

__all__ = ["cost_pair", "cost_model", "test_costs_are_finite_and_repeatable", "test_many_is_cost_one_by_one",
           "test_base_and_floor", "test_limits_and_impossible_bounds", "test_the_pricer_prices_with_it"]


@pytest.fixture(params=[(c, s) for c in COSTS.names() for s in SPACES.names()], ids=lambda p: f"{p[0]}-{p[1]}")
def cost_pair(request) -> tuple[str, str]:
    return request.param


@pytest.fixture
def cost_model(cost_pair) -> CostModel:
    cost, space_name = cost_pair
    cls = COSTS.get(cost)
    space = setup_of(space_name).space
    if not cls.applies_to(space):
        with pytest.raises(ConfigError, match=cost):  # refused in one line, not a traceback
            cls.create(space, setup_of(space_name).cfg)
        pytest.skip(f"{cost} does not apply to space={space_name}")
    model = cls.for_contract(space)
    assert isinstance(model, CostModel) and model.name == cost
    return model


def test_costs_are_finite_and_repeatable(cost_model):
    for _, genome in sample_genomes(cost_model.space):
        value = cost_model.cost(genome)
        assert isinstance(value, float) and math.isfinite(value) and value >= 0
        assert cost_model.cost(genome) == value


def test_many_is_cost_one_by_one(cost_model):
    genomes = [g for _, g in sample_genomes(cost_model.space)]
    assert np.allclose(cost_model.many(genomes), [cost_model.cost(g) for g in genomes], rtol=1e-9)


def test_base_and_floor(cost_model):
    space = cost_model.space
    assert cost_model.base() == cost_model.cost(space.base_genome())
    assert cost_model.floor() <= cost_model.cost(space.smallest_genome()) + 1e-12


def test_limits_and_impossible_bounds(cost_model):
    base, floor = cost_model.base(), cost_model.floor()
    if cost_model.relative:
        assert cost_model.limit(0.5) == pytest.approx(0.5 * base)
    assert cost_model.limit(max(2.0, 2 * base)) > 0
    # a bound under the floor is refused before any search, in one line
    tiny = floor / 4 if floor > 0 else None
    if tiny:
        bound = tiny / base if cost_model.relative and base and tiny / base <= 1 else tiny
        if cost_model.limit(bound) < floor:
            with pytest.raises(ConfigError, match="impossible constraint") as err:
                limits_of({cost_model.name: cost_model}, {cost_model.name: bound})
            assert "\n" not in str(err.value)


def test_the_pricer_prices_with_it(cost_model):
    (_, genome), = sample_genomes(cost_model.space, 1, seed=5)
    value = cost_model.cost(genome)
    pricer = Pricer({cost_model.name: cost_model}, {cost_model.name: value})
    priced = pricer.price(genome)
    assert priced.costs[cost_model.name] == value and priced.feasible  # at the limit is feasible
    if value > 0:
        assert Pricer({cost_model.name: cost_model}, {cost_model.name: value * 0.5}).violated(genome) == \
            [cost_model.name]
