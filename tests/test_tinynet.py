"""TinyNet: the EfficientNet-B0-family builder, the r/d/w space and the tiny formula."""

import json

import numpy as np
import optuna
import pytest
import torch

from searchkit.costs import count_costs
from searchkit.models.efficientnet import (block_specs, efficientnet_b0_family, make_divisible,
                                           round_channels, scale_stage_depth)
from searchkit.spaces import Space
from searchkit.costs.models import FlopsCost, ParamsCost
from searchkit.spaces.tinynet import TinyNetSpace


def _fp(costs):
    return costs.flops, costs.params
from searchkit.spaces.tinynet.formula import band_best, fit_formula, predict, solve

optuna.logging.set_verbosity(optuna.logging.WARNING)

# (width, depth, input side, published MACs in millions) from timm / the TinyNet readme
TINYNETS = {
    "a": (1.0, 1.2, 192, 339),
    "b": (0.75, 1.1, 188, 202),
    "c": (0.54, 0.85, 184, 100),
    "d": (0.54, 0.695, 152, 52),
    "e": (0.51, 0.60, 106, 24),
}


# -- builder -------------------------------------------------------------------------

@pytest.mark.parametrize("name, params_m", [("a", 6.19), ("e", 2.04)])
def test_published_params(name, params_m):
    w, d, side, _ = TINYNETS[name]
    assert round(count_costs(efficientnet_b0_family(w, d), side).params / 1e6, 2) == params_m


@pytest.mark.parametrize("name, tol", [("a", 0.03), ("e", 0.03), ("b", 0.05), ("c", 0.05),
                                       ("d", 0.05)])
def test_published_flops(name, tol):
    w, d, side, macs_m = TINYNETS[name]
    flops = count_costs(efficientnet_b0_family(w, d), side).flops
    assert abs(flops / (macs_m * 1e6) - 1) <= tol


def test_efficientnet_b0_sanity():
    c = count_costs(efficientnet_b0_family(1.0, 1.0), 224)
    assert c.params == 5_288_548  # timm's efficientnet_b0 (5.29M)
    assert abs(c.flops / 390e6 - 1) <= 0.03


def test_timm_rounding_rules():
    # nearest multiple of 8, at least 8, bumped up when more than 10% below the value
    values = (3.0, 8.16, 11.9, 12.0, 20.4, 35.0)
    assert [make_divisible(v) for v in values] == [8, 8, 16, 16, 24, 32]
    assert round_channels(1280, 0.75) == 960 and round_channels(32, 0.51) == 16
    # round (half-even), at least 1, extra repeats to the later block strings
    assert scale_stage_depth([3], 1.2) == [4] and scale_stage_depth([2], 1.25) == [2]
    assert scale_stage_depth([4], 0.1) == [1] and scale_stage_depth([1, 3], 1.5) == [2, 4]
    assert scale_stage_depth([1, 1, 1], 2.0) == [2, 2, 2]
    assert scale_stage_depth([2, 2], 1.5, "ceil") == [3, 3]


@pytest.mark.parametrize("depth, repeats", [
    # B0 repeats 1,2,2,3,3,4,1 times 1.2 = 1.2,2.4,2.4,3.6,3.6,4.8,1.2 -> round
    (1.2, [1, 2, 2, 4, 4, 5, 1]),
    # times 0.6 = 0.6,1.2,1.2,1.8,1.8,2.4,0.6 -> round, at least 1
    (0.6, [1, 1, 1, 2, 2, 2, 1]),
    (1.0, [1, 2, 2, 3, 3, 4, 1]),
])
def test_depth_rounding(depth, repeats):
    assert [len(s) for s in block_specs(1.0, depth)] == repeats
    model = efficientnet_b0_family(1.0, depth, num_classes=10)
    assert [len(s) for s in model.blocks] == repeats


def test_width_scaling_and_fixed_stem_head():
    stages = block_specs(0.51, 0.6)
    assert [s[-1].out_chs for s in stages] == [8, 16, 24, 40, 56, 96, 160]
    m = efficientnet_b0_family(0.51, 0.6, num_classes=10)
    assert m.conv_stem.out_channels == 32 and m.conv_head.out_channels == 1280
    # SE squeezes to a quarter of the block input; a residual only where shapes agree
    b = m.blocks[3][1]
    assert b.se.conv_reduce.out_channels == 40 // 4 and b.spec.skip


@pytest.mark.parametrize("side", [8, 17, 32])
def test_forward_at_several_sides(side):
    torch.manual_seed(0)
    model = efficientnet_b0_family(0.5, 0.5, num_classes=7, in_channels=1)
    out = model.eval()(torch.randn(2, 1, side, side))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    model.train()(torch.randn(2, 1, side, side)).sum().backward()


# -- space ---------------------------------------------------------------------------

BAND = (20e6, 30e6)  # ~ TinyNet-E at reference side 224


@pytest.fixture(scope="module")
def space():
    return TinyNetSpace({"flops_band": list(BAND)}, num_classes=1000)


@pytest.fixture(scope="module")
def small_space():
    # a CPU-sized space: r=1 is 32 px, FLOPs band in the middle of what the grid reaches
    return TinyNetSpace({"reference_size": 32, "flops_band": [1.5e6, 2.5e6]}, num_classes=10)


def test_is_a_space(space):
    assert isinstance(space, Space)


def test_input_side_is_timms_int_of_224_r(space):
    sides = [space.input_side({"model": "tinynet", "r": r, "d": 1.0, "w": 1.0})
             for r in (0.86, 0.84, 0.825, 0.68, 0.475)]
    assert sides == [192, 188, 184, 152, 106]
    small = TinyNetSpace({"reference_size": 32}, 10)
    assert small.input_side({"model": "tinynet", "r": 0.5, "d": 1, "w": 1}) == 16
    assert small.input_size({"model": "tinynet", "r": 0.1, "d": 1, "w": 1}) == (3, 8, 8)


@pytest.mark.parametrize("sampler", [optuna.samplers.RandomSampler(seed=0),
                                     optuna.samplers.TPESampler(seed=0, n_startup_trials=10)])
def test_suggestions_always_in_band(space, sampler):
    study = optuna.create_study(sampler=sampler)
    for _ in range(50):
        trial = study.ask()
        genome = space.suggest(trial)
        flops = space.flops_params(genome)[0]
        assert BAND[0] <= flops <= BAND[1]
        assert set(trial.params) == {"r", "d", "w"}
        assert space.genome_of(trial.params) == genome
        assert json.loads(json.dumps(genome)) == genome
        study.tell(trial, flops / 1e6)
    # one fixed search space for every strategy (IntersectionSearchSpace keeps all three)
    from optuna.search_space import IntersectionSearchSpace
    assert set(IntersectionSearchSpace().calculate(study)) == {"r", "d", "w"}


def test_params_of_reproduces_the_genome_through_enqueue(space):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(10):
        trial = study.ask()
        genome = space.suggest(trial)
        study.tell(trial, 0.0)
        study.enqueue_trial(space.params_of(genome))
        again = study.ask()
        assert space.suggest(again) == genome and again.params == space.params_of(genome)
        study.tell(again, 0.0)
    with pytest.raises(ValueError, match="outside"):
        space.params_of(space.genome(0.86, 1.2, 1.0))  # TinyNet-A: far above the band


def test_without_a_band_params_are_the_genome():
    space = TinyNetSpace({"reference_size": 32}, 10)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=4))
    for _ in range(20):
        trial = study.ask()
        genome = space.suggest(trial)
        assert space.params_of(genome) == trial.params
        assert genome == space.genome(*(trial.params[a] for a in "rdw"))
        study.tell(trial, 0.0)


def test_band_map_is_monotone_spread_and_invertible(space):
    gr, gd, gw = (space.grids[a] for a in "rdw")
    seen = set()
    for i in range(gr.n):
        for j in range(0, gd.n, 3):
            prev = None
            for k in range(gw.n):
                fi, fj, fk = space.map_indices(i, j, k)
                assert space.feasible[fi, fj, fk]
                assert prev is None or (fi, fj) == prev[:2] and fk >= prev[2]  # monotone in w
                prev = (fi, fj, fk)
                seen.add(prev)
                g = space.genome(gr.values[fi], gd.values[fj], gw.values[fk])
                assert space.genome_of(space.params_of(g)) == g
    # random draws spread over the band: no genome takes a large share
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=5))
    genomes = []
    for _ in range(200):
        trial = study.ask()
        genomes.append(json.dumps(space.suggest(trial), sort_keys=True))
        study.tell(trial, 0.0)
    assert len(set(genomes)) > 120 and max(map(genomes.count, set(genomes))) < 10


def test_costs_equal_count_costs_of_built_model(small_space):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    for _ in range(4):
        trial = study.ask()
        g = small_space.suggest(trial)
        model = small_space.build(g, seed=0).net
        assert small_space.flops_params(g) == _fp(count_costs(model, small_space.input_size(g)))
        study.tell(trial, 0.0)
    for g in (small_space.base_genome(), small_space.min_genome(),
              {"model": "tinynet", "r": 0.37, "d": 0.73, "w": 0.61}):  # off-grid too
        model = small_space.build(g).net
        assert small_space.flops_params(g) == _fp(count_costs(model, small_space.input_size(g)))
    big = TinyNetSpace({}, 1000)
    g = {"model": "tinynet", "r": 0.86, "d": 1.2, "w": 1.0}
    assert big.flops_params(g) == _fp(count_costs(efficientnet_b0_family(1.0, 1.2), 192))


def test_build_is_seeded_and_describe_is_plain(small_space):
    g = {"model": "tinynet", "r": 0.5, "d": 0.6, "w": 0.5}
    a, b = small_space.build(g, seed=3).net, small_space.build(g, seed=3).net
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.classifier.out_features == 10
    desc = small_space.describe(g)
    json.dumps(desc)
    assert desc["input_side"] == 16 and desc["stage_depths"] == [1, 1, 1, 2, 2, 2, 1]
    with pytest.raises(ValueError, match="model"):
        small_space.build({"model": "resnet20", "r": 0.5, "d": 0.6, "w": 0.5})


def test_cost_bounds(space):
    flops, params = FlopsCost(space), ParamsCost(space)
    assert BAND[0] <= flops.floor() <= BAND[1] <= flops.base() and params.floor() <= params.base()
    assert space.input_size(space.base_genome()) == (3, 224, 224)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="did you mean 'space.flops_band'"):
        TinyNetSpace({"flop_band": [1, 2]}, 10)
    with pytest.raises(ValueError, match="reaches"):
        TinyNetSpace({"reference_size": 32, "flops_band": [1e12, 2e12]}, 10)
    with pytest.raises(ValueError, match="multiple of step"):
        TinyNetSpace({"r": [0.25, 1.0, 0.3]}, 10)


# -- tiny formula --------------------------------------------------------------------

def _random_points(space, n=60, seed=0):
    """Random grid genomes, scored by a smooth made-up accuracy favouring balanced r/d/w."""
    rng = np.random.default_rng(seed)
    pts = []
    for _ in range(n):
        g = space.genome(*(space.grids[a].values[rng.integers(space.grids[a].n)] for a in "rdw"))
        f = space.flops_params(g)[0]
        acc = 10 * np.log(f) - 20 * ((g["r"] - g["d"]) ** 2 + (g["w"] - g["r"]) ** 2)
        pts.append({**{a: g[a] for a in "rdw"}, "flops": f, "accuracy": float(acc)})
    return pts


def test_band_best_keeps_the_most_accurate_per_band():
    pts = [{"r": .5, "d": .5, "w": .5, "flops": f, "accuracy": a}
           for f, a in [(1e6, 50), (1.1e6, 55), (9e6, 60), (1e7, 58), (1e7, float("nan"))]]
    assert [p["accuracy"] for p in band_best(pts, n_bands=2)] == [55, 60]


def test_fit_is_json_round_trippable():
    space = TinyNetSpace({}, 1000)
    fit = fit_formula(_random_points(space))
    assert fit["method"] == "gp" and len(fit["data"]) >= 4
    assert json.loads(json.dumps(fit)) == fit
    assert predict(json.loads(json.dumps(fit)), 1e8) == predict(fit, 1e8)
    few = fit_formula(_random_points(space, n=3))
    assert few["method"] == "power_law" and "alpha" not in few["r"]
    assert json.loads(json.dumps(few)) == few


def test_gp_interpolates_band_best_points():
    data = [(0.86, 1.2, 1.0, 336.9e6, 77.7), (0.84, 1.1, 0.75, 200.7e6, 74.9),
            (0.825, 0.85, 0.54, 99.5e6, 71.2), (0.68, 0.695, 0.54, 51.6e6, 66.9),
            (0.475, 0.6, 0.51, 24.4e6, 59.9), (0.9, 1.2, 0.25, 90e6, 60.0)]
    fit = fit_formula([{"r": r, "d": d, "w": w, "flops": f, "accuracy": a}
                       for r, d, w, f, a in data], n_bands=5)
    # 5 log-spaced bands: A and B share the top one (A is more accurate); the weak
    # (0.9, 1.2, 0.25) model loses its band to C
    assert [p["r"] for p in fit["data"]] == [0.475, 0.68, 0.825, 0.86]
    assert fit["method"] == "gp"
    for p in fit["data"]:
        pr, pd = predict(fit, p["flops"])
        assert abs(pr - p["r"]) < 0.02 and abs(pd - p["d"]) < 0.02


@pytest.mark.parametrize("n_points", [60, 3])
def test_solve_lands_within_3_percent(n_points):
    space = TinyNetSpace({}, 1000)
    fit = fit_formula(_random_points(space, n=n_points, seed=1))
    for target in np.geomspace(15e6, 400e6, 9):
        g = solve(fit, target, space)
        assert abs(space.flops_params(g)[0] / target - 1) <= 0.03, (target, g)
        assert g["model"] == "tinynet" and space.grids["w"].low <= g["w"] <= space.grids["w"].high


def test_solve_on_a_cpu_sized_space():
    space = TinyNetSpace({"reference_size": 32}, 10)
    fit = fit_formula(_random_points(space, n=40, seed=2))
    for target in np.geomspace(0.8e6, 5e6, 5):
        g = solve(fit, target, space)
        assert abs(space.flops_params(g)[0] / target - 1) <= 0.03, (target, g)
    with pytest.raises(ValueError, match="reaches"):
        solve(fit, 1e12, space)


def test_floors_follow_the_band(space):
    assert BAND[0] <= FlopsCost(space).floor() <= BAND[1]
    free = TinyNetSpace({}, 1000)
    assert FlopsCost(free).floor() == free.flops_params(free.min_genome())[0] == \
        free.flops_params(free.smallest_genome())[0]


def test_named_variants_match_the_table():
    from searchkit.models.efficientnet import TINYNET_VARIANTS, tinynet_variant as tinynet
    space = TinyNetSpace({}, 1000)
    for name, (r, w, d, side) in TINYNET_VARIANTS.items():
        g = space.genome(r, d, w)
        assert space.input_side(g) == side
        assert space.flops_params(g)[1] == sum(p.numel() for p in tinynet(name).parameters())
