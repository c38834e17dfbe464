"""Every registered space meets the Space contract (parametrized over the registry).

A new space passes by adding its registry entry and a small factory in SPACE_FACTORIES.
"""

import optuna
import pytest
import torch

from searchkit.config import SpaceConfig
from searchkit.genome import archid
from searchkit.models import build_base
from searchkit.registry import SPACES
from searchkit.spaces import Space
from searchkit.costs import count_costs


def _channels():
    from searchkit.spaces.channels import ChannelSpace
    return ChannelSpace(SpaceConfig(model="resnet20"), build_base("resnet20"), (3, 16, 16))


def _tinynet():
    from searchkit.spaces.tinynet import TinyNetSpace
    return TinyNetSpace({"reference_size": 32, "r": [0.25, 1.0, 0.25], "d": [0.25, 0.5, 0.25],
                         "w": [0.25, 0.5, 0.25], "flops_band": [1e6, 3e6]}, 10)


SPACE_FACTORIES = {"channels": _channels, "tinynet": _tinynet}


def _size(space, genome):
    """Spaces whose resolution is part of the genome say so per genome."""
    return tuple(space.input_size_of(genome)) if hasattr(space, "input_size_of") else tuple(space.input_size)


@pytest.fixture(params=SPACES.names())
def space(request):
    if request.param not in SPACE_FACTORIES:
        pytest.fail(f"space '{request.param}' has no contract factory")
    return SPACE_FACTORIES[request.param]()


def _genomes(space, n=6):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append((trial.params, space.suggest(trial), trial))
        study.tell(trial, 0.0)
    return [(t.params, g) for _, g, t in out]


def test_is_a_space(space):
    assert isinstance(space, Space)


def test_genomes_are_json_and_archids_stable(space):
    import json
    for params, genome in _genomes(space):
        assert json.loads(json.dumps(genome)) == genome
        assert archid(genome) == archid(json.loads(json.dumps(genome)))
        # Enqueuing params_of(genome) reproduces the genome (params may be raw draws that
        # the space mapped, e.g. into a FLOPs band).
        assert space.genome_of(space.params_of(genome)) == genome


def test_costs_match_the_built_model(space):
    torch.manual_seed(0)
    for _, genome in _genomes(space, 3):
        model = space.build(genome, seed=0)
        assert space.costs(genome) == count_costs(model, _size(space, genome))
        with torch.no_grad():
            model.eval()(torch.zeros(2, *_size(space, genome)))


def test_cost_bounds(space):
    base, low = space.base_costs(), space.min_costs()
    assert low.flops <= base.flops and low.params <= base.params
    for _, genome in _genomes(space):
        c = space.costs(genome)
        assert low.flops <= c.flops <= base.flops


def test_describe_is_plain(space):
    import json
    _, genome = _genomes(space, 1)[0]
    json.dumps(space.describe(genome))
