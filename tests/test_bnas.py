"""space=bnas and algo=darts: binarized ops, canonical cells, honest costs, categorical moves,
black-box and differentiable searches, export from JSON alone, and a killed supernet resumed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import torch.nn.functional as F

from searchkit.spaces.bnas import BNASOptions, BNASSpace, xnor
from searchkit.spaces.bnas.binary import BinaryConv2d, binarize
from searchkit.spaces.bnas.costs import count_binary
from searchkit.spaces.bnas.format import load_binary
from searchkit.spaces.bnas.supernet import Supernet
from searchkit.strategies.reduction import Reduction, stages_due

from benchrun import kill_when

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["search", "space=bnas", "space.C=4", "space.cells=2", "finetune.epochs=0.25", "progress=false",
         "data.max_train=320"]


def test_sign_has_a_clipped_straight_through_gradient():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.7, 1.5], requires_grad=True)
    y = binarize(x)
    assert y.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    x.grad = None
    binarize(x, approx=True).sum().backward()  # Bi-Real's ApproxSign: 2 - 2|x| inside
    assert x.grad.tolist() == pytest.approx([0.0, 1.0, 2.0, 0.6, 0.0])


@pytest.mark.parametrize("scaling", ["layer", "channel"])
def test_a_w1a1_conv_is_a_scaled_conv_of_signs(scaling):
    conv = BinaryConv2d(8, 6, 3, padding=1, bias=False, scaling=scaling, binary_input=True)
    x = torch.randn(2, 8, 5, 5)
    alpha = conv.weight.abs().mean() if scaling == "layer" else conv.weight.abs().mean((1, 2, 3), keepdim=True)
    want = F.conv2d(torch.where(x >= 0, 1.0, -1.0), alpha * torch.where(conv.weight >= 0, 1.0, -1.0), padding=1)
    assert torch.allclose(conv(x), want, atol=1e-5)
    w1a32 = BinaryConv2d(8, 6, 3, padding=1, bias=False)  # BNAS: binary weights, real inputs
    assert not torch.allclose(w1a32(x), w1a32(torch.where(x >= 0, 1.0, -1.0)))


def test_cells_are_canonical_and_genomes_round_trip():
    space = BNASSpace(BNASOptions(C=4, cells=2))
    rng = np.random.default_rng(0)
    from searchkit.core.dist import draw
    from searchkit.core.genome import archid
    seen = set()
    for _ in range(20):
        params = {n: draw(d, rng) for n, d in space.distributions().items()}
        g = space.genome_of(params)
        assert space.genome_of(space.params_of(g)) == g and json.loads(json.dumps(g)) == g
        flipped = {**g, "normal": [node[::-1] for node in g["normal"]]}
        assert archid(space.canonical(flipped)) == archid(g)
        seen.add(archid(g))
    assert len(seen) == 20
    with pytest.raises(ValueError, match="op must be one of"):
        space.check({**g, "normal": [[["conv_7x7", 0], ["skip_connect", 1]]] * 4})


def test_binary_costs_are_honest_about_depthwise_convs():
    dense = torch.nn.Sequential(BinaryConv2d(128, 128, 3, padding=1, bias=False, binary_input=True))
    depthwise = torch.nn.Sequential(BinaryConv2d(128, 128, 3, padding=1, groups=128, bias=False, binary_input=True))
    d, w = count_binary(dense, (128, 8, 8)), count_binary(depthwise, (128, 8, 8))
    assert d["ops"] == d["flops"] // 64 and d["word_ops"] == d["flops"] // 64   # 128 channels = 2 words
    assert w["ops"] == w["flops"] // 64 and w["word_ops"] == w["flops"]          # 1 channel per word: no saving
    assert d["size_bytes"] == 128 * 128 * 9 // 8 + 4
    space = BNASSpace(BNASOptions(C=8, cells=3, preset="binary"))
    c = space.binary_costs(space.base_genome())
    assert c["ops"] < space.flops_params(space.base_genome())[0] and c["size_bytes"] < 4 * space.flops_params(
        space.base_genome())[1]


def test_abc_moves_categorical_genes_as_categories():
    from searchkit.strategies.abc import _category
    dist = optuna.distributions.CategoricalDistribution(["a", "b", "c", "d"])
    rng = np.random.default_rng(0)
    moved = [_category(dist, 0, 3, rng) for _ in range(400)]
    assert "a" not in moved                        # a move always changes the category
    assert 150 < moved.count("d") < 300            # the partner's, about 2/3 of the time (1/2 + 1/2 * 1/3)
    assert {"b", "c"} <= set(moved)                # and the others, which index arithmetic never reaches
    assert {_category(dist, 2, 2, rng) for _ in range(60)} == {"a", "b", "d"}


def test_the_supernet_trains_both_parameter_sets_and_derives_a_cell():
    space = BNASSpace(BNASOptions(C=8, cells=3))
    net = Supernet(space, k=4)
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    F.cross_entropy(net(x), y).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.arch_parameters())
    ids = {id(p) for p in net.arch_parameters()}
    assert not ids & {id(p) for p in net.weight_parameters()}
    with torch.no_grad():
        net.alpha["normal"].zero_()
        net.alpha["normal"][:, net.op_names.index("dil_conv_3x3")] = 5.0
        net.alpha["normal"][:, 0] = 9.0  # "none" is never derived
    g = space.derive(net)
    space.check(g)
    assert all(op == "dil_conv_3x3" for node in g["normal"] for op, _ in node)
    assert all(len({i for _, i in node}) == 2 for node in g["normal"])  # two distinct inputs


@pytest.mark.parametrize("epochs,warmup", [(6, 2), (3, 1), (8, 0), (4, 3)])
def test_reduction_stages_reach_the_kept_ops_by_the_last_epoch(epochs, warmup):
    active, per_epoch = 8, []
    for epoch in range(1, epochs + 1):
        due = stages_due(active, 8, 2, epoch, warmup, epochs)
        active -= due
        per_epoch.append(due)
    assert active == 2 and per_epoch[-1] == 0  # the last epoch trains the kept ops
    assert all(d == 0 for d in per_epoch[:max(warmup, 1) - 1])  # none before the weights saw an epoch
    assert stages_due(2, 8, 2, epochs - 1, warmup, epochs) == 0  # nothing below the kept ops


class _ScoredByOp(Reduction):
    """Scores a path by whether the first normal edge runs ``worst`` (the drop rule alone)."""

    worst = 0

    def _score(self, net, path, batches):
        return -1.0 if path["normal"][0] == self.worst else 0.0


def test_a_reduction_stage_drops_the_worst_scoring_low_logit_op_and_it_never_runs_again():
    space = BNASSpace(BNASOptions(C=8, cells=3))
    net = Supernet(space, k=4)
    worst = net.op_names.index("sep_conv_3x3")
    with torch.no_grad():
        for alpha in net.alpha.values():
            alpha.copy_(torch.arange(alpha.shape[1], dtype=torch.float32).flip(0))  # op 0 highest logit
    low = set(range(4, 8))  # each edge's candidates: its 4 lowest-logit ops
    batches = iter([(torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,)))] * 4)
    reduction = _ScoredByOp(samples=2, batches=1, floor=2)
    reduction.worst = worst
    assert reduction.stage(net, batches, torch.Generator().manual_seed(0)) == {"normal": 14, "reduce": 14}
    for _, active, sel in net.choices().values():
        assert active.sum(1).tolist() == [7] * 14
        assert all({int(o) for o in (~row).nonzero().flatten()} <= low for row in active)
        assert (sel[:, 4:] > 0).all() and (sel[:, :4] == 0).all()  # only candidates got a likelihood
    assert not net.active_normal[0, worst]  # the scores decide which candidate goes
    ran = []
    for cell in net.cells:
        if not cell.reduction:
            cell.edges[0].ops[worst].register_forward_hook(lambda *a: ran.append(1))
    net(torch.randn(2, 3, 8, 8))
    assert not ran  # a dropped op costs nothing any more
    with torch.no_grad():
        net.alpha["normal"][:, worst] = 50.0  # however likely α says it is, a dropped op is never derived
    assert ["sep_conv_3x3", 0] not in space.derive(net)["normal"][0]


class _TinySupernet(torch.nn.Module):
    """Two smooth ops mixed by softmax(α): the unrolled gradient has a closed form here."""

    def __init__(self):
        super().__init__()
        self.ops = torch.nn.ModuleList([torch.nn.Linear(6, 6), torch.nn.Sequential(torch.nn.Linear(6, 6),
                                                                                  torch.nn.Tanh())])
        self.head = torch.nn.Linear(6, 3)
        self.alpha = torch.nn.Parameter(torch.randn(2))

    def arch_parameters(self):
        return [self.alpha]

    def weight_parameters(self):
        return [p for p in self.parameters() if p is not self.alpha]

    def forward(self, x):
        return self.head(sum(w * op(x) for w, op in zip(F.softmax(self.alpha, 0), self.ops)))


def test_second_order_architecture_gradient_is_the_unrolled_gradient():
    from torch.func import functional_call

    from searchkit.strategies.darts import _unrolled_arch_grad
    torch.manual_seed(0)
    net = _TinySupernet().double()
    x, y = torch.randn(16, 6, dtype=torch.float64), torch.randint(0, 3, (16,))
    xv, yv = torch.randn(16, 6, dtype=torch.float64), torch.randint(0, 3, (16,))
    xi, wd = 0.5, 1e-2
    params = dict(net.named_parameters())
    names = [n for n in params if n != "alpha"]
    g = torch.autograd.grad(F.cross_entropy(functional_call(net, params, (x,)), y), [params[n] for n in names],
                            create_graph=True)
    unrolled = {n: params[n] - xi * (gi + wd * params[n]) for n, gi in zip(names, g)}
    want, = torch.autograd.grad(F.cross_entropy(functional_call(net, {**params, **unrolled}, (xv,)), yv),
                                [net.alpha])
    first, = torch.autograd.grad(F.cross_entropy(net(xv), yv), [net.alpha])
    before = [p.detach().clone() for p in net.weight_parameters()]
    _unrolled_arch_grad(net, F.cross_entropy, (x, y), (xv, yv), xi, wd)
    assert torch.allclose(net.alpha.grad, want, rtol=1e-4)
    assert not torch.allclose(first, want, rtol=0.05)  # the unrolled step matters here
    assert all(torch.equal(a, b) for a, b in zip(before, net.weight_parameters()))  # weights restored


def test_gumbel_op_weights_sample_the_active_ops_and_anneal():
    net = Supernet(BNASSpace(BNASOptions(C=8, cells=3)), k=4, gumbel=True, tau_start=5.0, tau_end=0.5)
    net.active_normal[:, 3] = False
    a, b = net.op_weights("normal", sample=True), net.op_weights("normal", sample=True)
    assert not torch.equal(a, b) and torch.allclose(a.sum(-1), torch.ones(14)) and (a[:, 3] == 0).all()
    net.set_progress(1.0)
    assert net.tau == pytest.approx(0.5)
    sharp = net.op_weights("normal", sample=True).max(-1).values.mean()
    net.set_progress(0.0)
    assert net.op_weights("normal", sample=True).max(-1).values.mean() < sharp  # hotter: flatter samples
    net.eval()
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)  # eval: softmax(α), no noise


def test_darts_runs_second_order_with_gumbel_op_weights(tmp_path):
    out = _cli(SMALL + ["algo=darts", "algo.epochs=1", "algo.warmup=0", "algo.order=2", "algo.gumbel=true",
                        "data.max_train=96"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert len([ln for ln in out.stderr.splitlines() if "derived at epoch 1" in ln]) == 1, out.stderr


def test_darts_reduction_is_refused_for_a_supernet_without_op_choices(tmp_path):
    out = _cli(["search", "space=channels", "algo=darts", "algo.reduce=true"], tmp_path)
    assert out.returncode == 2 and "needs a supernet whose edges choose among ops" in out.stderr, out.stderr
    assert "training base" not in out.stderr and len(out.stderr.strip().splitlines()) <= 2


@pytest.mark.parametrize("preset", ["bnas", "binary"])
def test_expected_costs_are_the_priced_costs_of_a_certain_cell(preset):
    space = BNASSpace(BNASOptions(C=8, cells=5, preset=preset), side=9)  # an odd side: ceil halving
    net = Supernet(space, k=4)
    rng = np.random.default_rng(0)
    genome = dict(space.base_genome())
    with torch.no_grad():
        for t in ("normal", "reduce"):
            net.alpha[t].fill_(-30.0)
            net.beta[t].fill_(-30.0)
            cell, start = [], 0
            for i in range(4):
                node = []
                for j in rng.choice(i + 2, 2, replace=False):
                    op = space.ops[rng.integers(len(space.ops))]
                    net.alpha[t][start + j, net.op_names.index(op)] = 30.0
                    net.beta[t][start + j] = 30.0
                    node.append([op, int(j)])
                cell.append(node)
                start += i + 2
            genome[t] = cell
    genome = space.canonical(genome)
    assert space.derive(net) == genome
    flops, params = space.flops_params(genome)
    truth = {"flops": flops, "params": params, **space.binary_costs(genome)}
    got = net.expected_costs(dict.fromkeys(truth))
    for name, value in truth.items():
        assert float(got[name].detach()) == pytest.approx(value, rel=1e-5), name
    got["ops"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.arch_parameters())


def test_a_bounded_derivation_swaps_the_least_likely_ops_for_cheaper_ones():
    space = BNASSpace(BNASOptions(C=8, cells=3))
    net = Supernet(space, k=4)
    with torch.no_grad():
        for t in ("normal", "reduce"):
            net.alpha[t][:, net.op_names.index("sep_conv_5x5")] = 3.0
            net.alpha[t][:, net.op_names.index("sep_conv_3x3")] = 2.0
    unbounded = space.derive(net)
    smaller = space.canonical({**unbounded, **{t: [[["sep_conv_3x3", j] for _, j in node] for node in unbounded[t]]
                                               for t in ("normal", "reduce")}})
    limit = space.binary_costs(smaller)["ops"]
    g = space.derive(net, lambda g: space.binary_costs(g)["ops"] <= limit)
    # the next most likely op, on the same edges, everywhere: no swap to a less likely op was needed
    assert g == smaller and unbounded != smaller
    assert space.derive(net, lambda g: False) != unbounded  # nothing feasible: the cheapest it reached


def test_partial_channels_cut_activation_memory():
    space = BNASSpace(BNASOptions(C=8, cells=3))
    saved = {}
    for k in (1, 4):
        net = Supernet(space, k=k)
        total = [0]

        def pack(t, total=total):
            total[0] += t.numel() * t.element_size()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            net(torch.randn(8, 3, 16, 16)).sum()
        saved[k] = total[0]
    assert saved[4] < 0.5 * saved[1]


def _cli(args, cwd, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "searchkit.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=900, **kw)


@pytest.mark.slow
def test_black_box_search_exports_a_network_that_rebuilds_from_json(tmp_path):
    out = _cli(SMALL + ["space.preset=binary", "algo=ga", "trials=2"], tmp_path)
    assert out.returncode == 0, out.stderr
    out = _cli(["export", "study=bnas-digits-ga"], tmp_path)
    assert out.returncode == 0, out.stderr
    folder, = (tmp_path / "exports").glob("*/*/01-*")
    arch = json.loads((folder / "arch.json").read_text())
    space = BNASSpace(BNASOptions(preset=arch["genome"]["preset"]), arch["num_classes"], arch["input_size"][0],
                      arch["input_size"][1])
    net = space.build(arch["genome"]).net  # the genome alone carries the macro settings
    net.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    x = torch.randn(2, *arch["input_size"])
    program = torch.export.load(str(folder / "model.pt2")).module()
    want = net.eval()(x)
    assert torch.allclose(want, program(x), atol=1e-4)
    # W1A1 cells also ship packed, and that program computes the same
    assert arch["files"]["binary"] == "binary.safetensors" and arch["files"]["xnor_program"] == "model_xnor.pt2"
    packed = load_binary(space, arch["genome"], folder / "binary.safetensors")
    assert torch.allclose(packed(x), want, rtol=1e-4, atol=1e-4)
    if xnor.load():
        assert torch.allclose(torch.export.load(str(folder / "model_xnor.pt2")).module()(x), want, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_darts_records_derived_cells_as_trials_and_resumes_after_sigkill(tmp_path):
    args = SMALL + ["algo=darts", "algo.epochs=3", "algo.warmup=1", "algo.derive_every=1", "seed=3",
                    "data.max_train=160", "algo.reduce=true"]  # the reduction's masks are resumed too
    straight = tmp_path / "straight"
    straight.mkdir()
    out = _cli(args, straight)
    assert out.returncode == 0, out.stderr
    killed = tmp_path / "killed"
    killed.mkdir()
    kill_when(args, killed, "derived at epoch 2", ROOT)  # right after its second derived trial is told
    out = _cli(args, killed)
    assert out.returncode == 0, out.stderr
    assert "supernet continues from epoch 2" in out.stderr
    assert "epoch 3/3" in out.stderr and "2 of 8 ops per edge left" not in out.stderr.split("epoch 3/3")[1]

    def derived(folder):
        study = optuna.load_study(study_name="bnas-digits-darts", storage=f"sqlite:///{folder}/studies/searchkit.db")
        done = [t for t in study.trials if t.state.is_finished() and "darts:epoch" in t.user_attrs]
        return sorted((t.user_attrs["darts:epoch"], t.user_attrs["archid"]) for t in done)
    a, b = derived(straight), derived(killed)
    assert [e for e, _ in a] == [1, 2, 3] and a == b  # the same cells, none lost or twice


def test_darts_steers_the_cells_under_an_ops_bound(tmp_path):
    out = _cli(SMALL + ["algo=darts", "algo.epochs=1", "algo.warmup=0", "constraint.ops=0.4", "data.max_train=96"],
               tmp_path)
    assert out.returncode == 0, out.stderr
    assert "expected ops" in out.stderr and "x its bound (lambda" in out.stderr  # the bound is in the loss
    derived = [ln for ln in out.stderr.splitlines() if "derived at epoch" in ln]
    assert len(derived) == 1 and "infeasible" not in derived[0], out.stderr


def test_darts_on_a_space_without_a_supernet_is_refused_before_any_training(tmp_path):
    out = _cli(["search", "space=tinynet", "algo=darts"], tmp_path)
    assert out.returncode == 2 and "needs a space that offers a supernet" in out.stderr
    assert "training base" not in out.stderr and len(out.stderr.strip().splitlines()) <= 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_supernet_step_runs_on_cuda():
    space = BNASSpace(BNASOptions(C=8, cells=3, preset="binary"))
    net = Supernet(space, k=4).cuda()
    opt = torch.optim.SGD(net.weight_parameters(), lr=0.1)
    x, y = torch.randn(8, 3, 16, 16, device="cuda"), torch.randint(0, 10, (8,), device="cuda")
    before = [p.detach().clone() for p in net.weight_parameters()]
    F.cross_entropy(net(x), y).backward()
    opt.step()
    assert all(p.grad is not None for p in net.arch_parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, net.weight_parameters()))
    assert space.check(space.derive(net)) is None


@pytest.mark.parametrize("preset", ["binary", "bnas"])
def test_the_expected_latency_is_the_predicted_latency_at_one_hot_choices(preset):
    """A cost bound inside the supernet for latency too: per edge and op the predictor's price
    of that op's kernels where it sits, so at one-hot alpha and beta the expectation is the
    derived cell's predicted latency, and it has a gradient in alpha."""
    import random

    from searchkit.costs.latency_cost import LatencyCost
    space = BNASSpace(BNASOptions(preset=preset, C=8, cells=3), 10, 3, 16)
    cost = LatencyCost.for_contract(space)
    net, rng, dists = Supernet(space, k=4), random.Random(0), space.distributions()
    for _ in range(3):
        genome = space.base_genome()
        while any(a[1] == b[1] for t in ("normal", "reduce") for a, b in genome[t]):  # two inputs per node
            genome = space.genome_of({k: rng.choice(d.choices) for k, d in dists.items()})
        with torch.no_grad():
            for t in ("normal", "reduce"):
                net.alpha[t].fill_(-30.0)
                net.beta[t].fill_(-30.0)
                start = 0
                for i, node in enumerate(genome[t]):
                    for name, j in node:
                        net.alpha[t][start + j, net.op_names.index(name)] = 30.0
                        net.beta[t][start + j] = 0.0
                    start += i + 2
        got = net.expected_costs({"latency": cost})["latency"]
        assert float(got) == pytest.approx(cost.cost(genome), rel=1e-5)
    with torch.no_grad():
        for t in ("normal", "reduce"):
            net.alpha[t].normal_()
    net.expected_costs({"latency": cost})["latency"].backward()
    assert float(net.alpha["normal"].grad.abs().sum()) > 0


def test_a_target_without_the_xnor_op_is_refused_in_one_line():
    from predictors import builtin_only

    from searchkit.core.errors import ConfigError
    from searchkit.costs.latency_cost import LatencyCost
    pred = builtin_only("old")
    with pytest.raises(ConfigError, match="target 'old' has no timings of the XNOR op") as err:
        LatencyCost(BNASSpace(BNASOptions(preset="binary", C=4, cells=2)), predictor=pred)
    assert "\n" not in str(err.value)
    LatencyCost(BNASSpace(BNASOptions(preset="bnas", C=4, cells=2)), predictor=pred)  # W1A32: float convs only


@pytest.mark.skipif(not xnor.load(), reason="the XNOR kernel could not be built here")
@pytest.mark.slow
def test_a_latency_bound_is_priced_on_the_xnor_op_and_verified_on_its_program(tmp_path):
    """A torch profile times the XNOR op; binary cells are priced by the kernels their XNOR
    program runs, the search trains only cells predicted under the bound, and export
    measures model_xnor.pt2."""
    import random

    from predictors import bounded_search_record, quick_profile

    from searchkit.costs.latency_cost import LatencyCost
    lat = tmp_path / "lat"
    pred = quick_profile(lat)
    assert "xnor_conv" in pred.forests
    space = BNASSpace(BNASOptions(preset="binary", C=4, cells=2), 10, 1, 8)
    kernels = space.kernels(space.base_genome())
    assert sum(k.kind == "xnor_conv" for k in kernels) > 0
    cost = LatencyCost(space, predictor=pred)
    dists, rng = space.distributions(), random.Random(0)
    sample = [space.genome_of({k: rng.choice(d.choices) for k, d in dists.items()}) for _ in range(30)]
    bound = max(float(np.quantile(cost.many(sample), 0.5)), cost.floor() * 1.0001)
    record = bounded_search_record(["space=bnas", "space.preset=binary", "space.C=4", "space.cells=2",
                                    "data=synthetic", "finetune.max_batches=1", "progress=false", "latency.target=q",
                                    f"latency.dir={lat}"], bound, tmp_path)
    assert record["measured"] == "the written program (model_xnor.pt2)" and record["measured_ms"] > 0
    # algo=darts under the same bound: the expected latency is in the architecture loss (no
    # "repair only" warning) and the derived cell is predicted under the bound
    from searchkit.config import load_config
    from searchkit.search import run_search
    cfg = load_config(["space=bnas", "space.preset=binary", "space.C=4", "space.cells=2", "data=synthetic",
                       "finetune.max_batches=1", "progress=false", "latency.target=q", f"latency.dir={lat}",
                       f"storage=sqlite:///{tmp_path / 'darts.sqlite'}", f"constraint.latency_ms={bound}",
                       "algo=darts", "algo.epochs=1", "algo.warmup=0", "data.max_train=64"])
    import logging
    seen = []
    handler = logging.Handler()
    handler.emit = lambda rec: seen.append(rec.getMessage())
    logging.getLogger("searchkit").addHandler(handler)
    try:
        out = run_search(cfg, quiet=False)
    finally:
        logging.getLogger("searchkit").removeHandler(handler)
    assert not any("repair only" in m for m in seen), seen
    derived = [t for t in out.study.trials if "darts:epoch" in t.user_attrs]
    assert derived and all(t.user_attrs["cost:latency"] <= bound for t in derived)
