"""The Space contract, run for every registered space (``from searchkit.testing.spaces import *``).

Each space is built the way a run builds it (:class:`~searchkit.setup.RunSetup`, with the
space's ``contract_overrides``), so what is checked is what a search uses.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from searchkit.core.genome import archid
from searchkit.core.space import Built, LatencyKernels, NeedsBase, Space
from searchkit.costs import count_costs
from searchkit.registry import MODELS, SPACES
from searchkit.testing.common import sample_genomes, setup_of

__all__ = ["space_name", "space", "test_space_is_registered_as_itself", "test_genomes_are_json_and_round_trip",
           "test_built_networks_run_and_match_their_analytic_costs", "test_recipe_is_what_the_build_gives",
           "test_floor_candidates_bound_sampled_genomes", "test_directions_name_the_params",
           "test_describe_is_plain_json", "test_a_worker_rebuilds_the_same_candidate",
           "test_latency_kernels_are_what_the_network_runs", "test_base_is_a_registered_model",
           "test_networks_deploy_as_folded_programs_and_onnx"]


@pytest.fixture(params=SPACES.names())
def space_name(request) -> str:
    return request.param


@pytest.fixture
def space(space_name) -> Space:
    return setup_of(space_name).space


def test_space_is_registered_as_itself(space_name, space):
    cls = SPACES.get(space_name)
    assert isinstance(space, Space) and type(space) is cls and cls.name == space_name
    assert dataclasses.is_dataclass(cls.Options) and cls.Options.__dataclass_params__.frozen
    assert isinstance(space.options, cls.Options)  # the effective options workers get
    assert set(space.costs) and all(isinstance(c, str) for c in space.costs)


def test_genomes_are_json_and_round_trip(space):
    for params, genome in sample_genomes(space):
        assert json.loads(json.dumps(genome)) == genome
        assert archid(genome) == archid(json.loads(json.dumps(genome)))
        assert space.genome_of(params) == genome
        # Enqueuing params_of(genome) reproduces the genome (params may be raw draws that
        # the space mapped, e.g. into a FLOPs band).
        assert space.genome_of(space.params_of(genome)) == genome
    assert space.genome_of(space.params_of(space.base_genome())) == space.base_genome()


def test_built_networks_run_and_match_their_analytic_costs(space):
    torch.manual_seed(0)
    for _, genome in sample_genomes(space, 3):
        built = space.build(genome, seed=0)
        assert isinstance(built, Built)
        size = tuple(space.input_size(genome))
        assert tuple(built.input_size) == size
        with torch.no_grad():
            out = built.net.eval()(torch.zeros(2, *size))
            assert out.shape[0] == 2 and torch.isfinite(out).all()
            built.model.eval()(torch.zeros(2, *size))
        fast = space.flops_params(genome)
        if fast is not None:
            c = count_costs(built.net, size)
            assert tuple(fast) == (c.flops, c.params)


def test_recipe_is_what_the_build_gives(space):
    for _, genome in sample_genomes(space, 3):
        assert json.loads(json.dumps(space.recipe(genome, seed=1))) == json.loads(json.dumps(
            space.build(genome, seed=1).recipe))


def test_floor_candidates_bound_sampled_genomes(space_name, space):
    setup = setup_of(space_name)
    candidates = space.floor_candidates()
    assert candidates and space.smallest_genome() in candidates
    for name, model in setup.costs.items():
        floor = model.floor()
        for _, genome in sample_genomes(space):
            assert floor <= model.cost(genome) + 1e-9, name


def test_directions_name_the_params(space):
    directions = space.directions()
    assert set(directions) <= set(space.distributions())
    assert all(d in (-1, 0, 1) for d in directions.values())


def test_describe_is_plain_json(space):
    for _, genome in sample_genomes(space, 2):
        d = space.describe(genome)
        assert json.loads(json.dumps(d)) == d
        assert isinstance(d.get("summary", ""), str)
        layers = d.get("layers")
        if layers is not None:
            assert len(layers["names"]) == len(layers["values"])


def test_a_worker_rebuilds_the_same_candidate(space_name, space):
    """What a Ray worker gets (a WorkItem, as JSON) rebuilds the same network and recipe."""
    from searchkit.core.ports import WorkItem
    from searchkit.setup import materialise
    setup = setup_of(space_name)
    (_, genome), = sample_genomes(space, 1, seed=11)
    item = WorkItem.from_json(setup.work_item(0, genome, space.recipe(genome)).to_json())
    _, rebuilt = materialise(item)
    assert type(rebuilt) is type(space) and rebuilt.distributions() == space.distributions()
    assert json.loads(json.dumps(rebuilt.build(genome).recipe)) == item.recipe
    assert rebuilt.flops_params(genome) == space.flops_params(genome)


def test_latency_kernels_are_what_the_network_runs(space):
    if not isinstance(space, LatencyKernels):
        pytest.skip("the space offers no latency kernels")
    from searchkit.costs.trace import trace_kernels
    for _, genome in sample_genomes(space, 2):
        net = space.latency_network(space.build(genome))
        assert space.kernels(genome) == trace_kernels(net, tuple(space.input_size(genome)))


def test_base_is_a_registered_model(space_name, space):
    cls = SPACES.get(space_name)
    if not issubclass(cls, NeedsBase):
        pytest.skip("the space trains its candidates from scratch")
    assert cls.base_model(space.options) in MODELS


def test_networks_deploy_as_folded_programs_and_onnx(space, tmp_path):
    """What ``export format=all`` writes runs and matches the network: the BN-folded torch
    program at two batch sizes, and the ONNX file under onnxruntime."""
    from searchkit import deploy
    torch.manual_seed(0)
    (_, genome), = sample_genomes(space, 1, seed=5)
    net = space.build(genome, seed=0).net.eval()
    for m in net.modules():  # trained-looking statistics, so a wrong fold shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    size = tuple(space.input_size(genome))
    x = torch.randn(3, *size)
    with torch.no_grad():
        want = net(x)
        folded, _ = deploy.fold_batchnorm(net, size)
        assert torch.allclose(folded(x), want, atol=1e-4 * float(want.abs().max()))
        info = deploy.save_program(net, size, tmp_path / "model.pt2")
        program = torch.export.load(str(tmp_path / "model.pt2")).module()
        for batch in (1, 3):
            assert torch.allclose(program(x[:batch]), want[:batch], atol=1e-4 * float(want.abs().max()))
    onnx = deploy.save_onnx(net, size, tmp_path / "model.onnx")
    assert onnx["max_rel_diff"] <= deploy.ONNX_TOLERANCE
    assert onnx["batchnorm_folded"] == info["batchnorm_folded"]
