"""One-shot channel search (space=channels algo=darts): the supernet computes the pruned
networks, its expected costs are the priced ones, derived genomes meet their bound exactly,
and a killed search resumes to the same genomes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from searchkit.core.space import SpaceEnv
from searchkit.costs.latency_cost import LatencyCost
from searchkit.models import build_base
from searchkit.spaces.channels import ChannelOptions, ChannelSpace

from benchrun import kill_when

ROOT = Path(__file__).resolve().parents[1]
# synthetic data and an untrained base: these tests check bounds, records and resume, not accuracy
SMALL = ["search", "space=channels", "space.model=resnet20", "algo=darts", "data=synthetic",
         "data.options={size: 256}", "progress=false", "finetune.max_batches=2", "base.epochs=0"]


def _space(model: str, units: str = "auto") -> ChannelSpace:
    torch.manual_seed(0)
    base = build_base(model)
    for m in base.modules():  # BN statistics far from the identity, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return ChannelSpace.from_config(ChannelOptions(model=model, units=units), SpaceEnv(base=base))


def _pin(net, idx) -> None:
    with torch.no_grad():
        net.logits.zero_()
        net.logits[torch.arange(len(idx)), torch.as_tensor(idx)] = 50.0


@pytest.mark.parametrize("model,units", [("resnet20", "auto"), ("mobilenet_v2", "auto"),
                                         ("torchvision:resnet18", "all")])
def test_one_hot_widths_compute_exactly_the_physically_pruned_network(model, units):
    space = _space(model, units)
    net = space.supernet().eval()
    rng = np.random.default_rng(1)
    for _ in range(2):
        idx = rng.integers(0, len(space.choices), len(space.units))
        _pin(net, idx)
        genome = space.genome([space.choices[i] for i in idx])
        pruned = space.build(genome).net.eval()
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            got, want = net(x), pruned(x)
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), float((got - want).abs().max())
        assert space.derive(net) == genome


def test_expected_costs_are_the_priced_costs_and_their_expectation():
    space = _space("resnet20")
    lat = LatencyCost.for_contract(space)
    net = space.supernet()
    rng = np.random.default_rng(2)
    idx = rng.integers(0, len(space.choices), len(space.units))
    _pin(net, idx)
    genome = space.genome([space.choices[i] for i in idx])
    got = {k: float(v.detach()) for k, v in net.expected_costs({"flops": None, "params": None, "latency": lat}).items()}
    flops, params = space.flops_params(genome)
    assert got["flops"] == pytest.approx(flops, rel=1e-6) and got["params"] == pytest.approx(params, rel=1e-6)
    assert got["latency"] == pytest.approx(lat.cost(genome), rel=1e-5)
    # under a spread distribution: the exact expectation of the latency tables (Monte Carlo check)
    with torch.no_grad():
        net.logits.copy_(torch.randn(net.logits.shape, generator=torch.Generator().manual_seed(0)))
    expected = net.expected_costs({"latency": lat})["latency"]
    p = net.probabilities().detach().numpy()
    draws = [space.genome([space.choices[rng.choice(len(space.choices), p=p[u])] for u in range(len(p))])
             for _ in range(4000)]
    assert float(expected) == pytest.approx(float(np.mean(lat.many(draws))), rel=0.01)
    expected.backward()
    assert net.logits.grad is not None and float(net.logits.grad.abs().sum()) > 0


@pytest.mark.parametrize("rule", ["expected", "argmax"])
def test_derived_genomes_meet_the_bound_and_spend_it(rule):
    space = _space("resnet20")
    net = space.supernet(rule=rule)
    limit = 0.3 * space.flops_params(space.base_genome())[0]
    feasible = lambda g: space.flops_params(g)[0] <= limit  # noqa: E731
    for seed in range(3):
        with torch.no_grad():
            net.logits.copy_(torch.randn(net.logits.shape, generator=torch.Generator().manual_seed(seed)))
        genome = space.derive(net, feasible)
        assert feasible(genome)
        # exactly: no unit can take one wider choice without breaking the bound
        for u, k in enumerate(genome["keep"]):
            j = space.choices.index(k)
            if j + 1 < len(space.choices):
                wider = list(genome["keep"])
                wider[u] = space.choices[j + 1]
                assert not feasible(space.genome(wider))
    _pin(net, [len(space.choices) - 1] * len(space.units))  # the base: narrowed to the bound
    assert feasible(space.derive(net, feasible))


def _cli(args, cwd, **kw):
    return subprocess.run([sys.executable, "-m", "searchkit.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600, **kw)


def _derived(folder, name):
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder}/studies/searchkit.db")
    done = [t for t in study.trials if t.state.is_finished() and "darts:epoch" in t.user_attrs]
    return study, sorted((t.user_attrs["darts:epoch"], t.user_attrs["archid"]) for t in done)


@pytest.mark.slow
def test_a_flops_bounded_one_shot_search_meets_its_bound_and_resumes_after_sigkill(tmp_path):
    args = SMALL + ["constraint.flops=0.3", "algo.epochs=3", "algo.warmup=1", "algo.derive_every=1", "seed=5"]
    name = "channels-resnet20-synthetic-darts-flops0.3"
    straight = tmp_path / "straight"
    straight.mkdir()
    out = _cli(args, straight)
    assert out.returncode == 0, out.stderr
    assert "expected flops" in out.stderr and "lambda" in out.stderr
    study, a = _derived(straight, name)
    base = study.user_attrs["searchkit:base"]["costs"]["flops"]
    derived = [t for t in study.trials if "darts:epoch" in t.user_attrs]
    assert [e for e, _ in a] == [1, 2, 3]
    assert all(t.user_attrs["cost:flops"] <= 0.3 * base for t in derived)
    assert all(t.user_attrs["searchkit:source"] == "darts" for t in derived)
    trained = [t for t in derived if t.user_attrs.get("searchkit:evaluated")]
    assert trained and all(t.state == optuna.trial.TrialState.COMPLETE and t.values[0] > 0 for t in trained)
    killed = tmp_path / "killed"
    killed.mkdir()
    kill_when(args, killed, "derived at epoch 2", ROOT)  # right after its second derived trial is told
    out = _cli(args, killed)
    assert out.returncode == 0, out.stderr
    assert "supernet continues from epoch 2" in out.stderr
    assert _derived(killed, name)[1] == a  # the same genomes, none lost or twice


def test_a_front_of_targets_from_one_supernet(tmp_path):
    from searchkit.config import load_config
    from searchkit.search import run_search
    out = run_search(load_config(SMALL[1:] + [
        "objectives=[accuracy,flops]", "algo.epochs=1", "algo.warmup=0", "algo.targets=[0.2,0.5]", "study=front",
        "data.options={size: 96}", f"storage=sqlite:///{tmp_path / 'db.sqlite'}", f"base.cache_dir={tmp_path}"]),
        quiet=True)
    base = out.study.user_attrs["searchkit:base"]["costs"]["flops"]
    by_target = {t.user_attrs.get("darts:target"): t.user_attrs["cost:flops"] / base for t in out.study.trials
                 if "darts:epoch" in t.user_attrs}
    assert set(by_target) == {None, "flops<=0.2", "flops<=0.5"}
    assert by_target["flops<=0.2"] <= 0.2 < by_target["flops<=0.5"] <= 0.5


@pytest.mark.slow
def test_oneshot_bench_quick_form(tmp_path):
    from benchrun import run_bench
    data, text = run_bench("oneshot", tmp_path, f"work={tmp_path / 'work'}", timeout=900)
    assert "## Goal" in text and set(data["bounds"]) == {"flops", "latency"}
    arms = {(r["bound"], r["arm"]) for r in data["rows"]}
    assert {("flops", "darts"), ("flops", "abc"), ("flops", "uniform"), ("latency", "darts")} <= arms
    assert all(r["cost_ratio"] <= 1 + 1e-9 for r in data["rows"])  # every arm's pick meets its bound, priced
    measured = [r for r in data["rows"] if r["bound"] == "latency" and r.get("measured_ms") is not None]
    assert {r["arm"] for r in measured} >= {"darts", "abc"} and all(r["measured_ms"] > 0 for r in measured)
