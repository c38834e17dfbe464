"""space=onexn: the 1×N kernel against dense on every ISA this CPU has, filter rearrangement,
fixed masks, the sparse program and file, and a search exported end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from searchkit.models import build_base
from searchkit.spaces.onexn import OneXNOptions, OneXNSpace, kernel
from searchkit.spaces.onexn.format import SparseFormatError, load_sparse, read_sparse, write_sparse
from searchkit.spaces.onexn.sparse import BlockSparseConv2d, block_mask, fix_mask, to_sparse_program

ROOT = Path(__file__).resolve().parents[1]
needs_kernel = pytest.mark.skipif(not kernel.load(), reason="the 1xN kernel could not be built here")


def _isas() -> list[str]:
    if not kernel.load():
        return []
    best = kernel.ISAS.index(kernel.force_isa(None))
    return list(kernel.ISAS[: best + 1])


@pytest.fixture(params=_isas() or ["none"])
def isa(request):
    if request.param == "none":
        pytest.skip("no compiled kernel")
    assert kernel.force_isa(request.param) == request.param
    yield request.param
    kernel.force_isa(None)


@needs_kernel
@pytest.mark.parametrize("cout,cin,k,stride,side,n,p,act,batch", [
    (576, 96, 1, 1, 14, 16, 0.75, 1, 1),   # MobileNetV2 pointwise, tail of 196 = 6*32 + 4 pixels
    (64, 32, 3, 1, 9, 4, 0.5, 2, 2),       # 3x3, implicit im2col
    (40, 24, 3, 1, 5, 20, 0.6, 0, 1),      # N = 20: tiles of 8, 8, 4
    (32, 16, 3, 1, 7, 16, 0.75, 1, 3),     # 3x3 on a 7x9 grid: several rows per vector, written in place
    (16, 8, 3, 1, 2, 8, 0.5, 0, 2),        # 3x3 on a 2x2 map: the small-map path, cropped
    (16, 4, 3, 1, 12, 8, 0.8, 1, 2),       # 3x3 with few blocks a row: row-major, written compact
    (64, 64, 3, 1, 20, 16, 0.5, 2, 2),     # 3x3 on 20x20 (three pixel chunks): tile-major
    (8, 8, 5, 1, 6, 2, 0.5, 2, 1),         # 5x5
    (64, 64, 3, 1, 28, 32, 0.75, 1, 1),    # a ResNet 3x3 at 28x28, 1x32
    (24, 16, 1, 2, 7, 8, 0.5, 1, 3),       # strided 1x1 (a ResNet shortcut)
    (30, 10, 1, 1, 3, 3, 0.3, 0, 2),       # N = 3 and 9 pixels: the small-map path
    (1000, 64, 0, 1, 1, 8, 0.75, 0, 1),    # linear, batch 1
    (32, 64, 0, 1, 1, 32, 0.5, 1, 5),      # linear, batch 5
    (16, 8, 1, 1, 4, 16, 0.0, 0, 1),       # dense blocks
])
def test_the_kernel_matches_dense_on_every_isa(isa, cout, cin, k, stride, side, n, p, act, batch):
    gen = torch.Generator().manual_seed(cout + cin)
    like = nn.Linear(cin, cout) if k == 0 else nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)
    w = like.weight.detach() * block_mask(like.weight, n, p)
    bias = torch.randn(cout, generator=gen)
    op = BlockSparseConv2d.from_dense(w, bias, like, n, act=act)
    x = torch.randn(batch, cin, generator=gen) if k == 0 else torch.randn(batch, cin, side, side, generator=gen)
    ref = F.linear(x, w, bias) if k == 0 else F.conv2d(x, w, bias, stride=stride, padding=k // 2)
    ref = F.relu6(ref) if act == 2 else F.relu(ref) if act == 1 else ref
    got = op(x)
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, atol=1e-5, rtol=1e-5)
    if p:
        assert op.values.shape[0] == round((1 - int(p * (cout // n) * cin) / ((cout // n) * cin)) * (cout // n) * cin)


@needs_kernel
@pytest.mark.parametrize("cout,cin,k,side,n,batch,skew", [
    (576, 96, 1, 14, 16, 1, 1), (64, 64, 3, 20, 16, 3, 1), (160, 576, 1, 7, 32, 1, 1),
    # strong rows first (as rearrangement leaves a layer), the last ones empty: the threads
    # split the rows by their blocks, on the row-major and the tile-major paths
    (576, 96, 1, 14, 16, 1, 50), (64, 64, 3, 20, 4, 2, 50), (128, 128, 3, 28, 16, 1, 50)])
def test_two_threads_split_the_work_without_changing_the_outputs(cout, cin, k, side, n, batch, skew):
    like = nn.Conv2d(cin, cout, k, padding=k // 2)
    weight = like.weight.detach() * torch.logspace(0, -1, cout, base=skew).view(-1, 1, 1, 1)
    w = weight * block_mask(weight, n, 0.75)
    if skew > 1:
        assert (w.flatten(1).abs().sum(1) == 0).any()  # some rows keep no block
    op = BlockSparseConv2d.from_dense(w, like.bias.detach(), like, n, act=1)
    x = torch.randn(batch, cin, side, side, generator=torch.Generator().manual_seed(1))
    one = op(x)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        two = op(x)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    assert torch.allclose(one, F.relu(F.conv2d(x, w, like.bias, padding=k // 2)), atol=1e-5, rtol=1e-5)


@needs_kernel
def test_the_op_refuses_indices_that_read_out_of_bounds():
    w = torch.randn(8, 4)
    crow, col, values = kernel.to_blocks(w, 4)
    bad = col.clone()
    bad[0] = 99
    with pytest.raises(RuntimeError, match="out of range"):
        torch.ops.searchkit.onexn_conv(torch.randn(1, 4), crow, bad, values, None, 1, 1, 0)
    with pytest.raises(RuntimeError, match="crow_indices"):
        torch.ops.searchkit.onexn_conv(torch.randn(1, 4), crow * 2, col, values, None, 1, 1, 0)


@pytest.mark.parametrize("model", ["resnet20", "mobilenet_v2", "vgg16", "resnet56", "torchvision:resnet18"])
def test_filter_rearrangement_keeps_the_function(model):
    """Every traced group is reordered by L1; the outputs stay equal before any masking."""
    base = build_base(model).eval()
    gen = torch.Generator().manual_seed(0)
    for mod in base.modules():  # non-trivial statistics, so a missed permutation shows
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2, generator=gen)
            mod.running_var.uniform_(0.5, 1.5, generator=gen)
            mod.weight.data.uniform_(0.5, 1.5, generator=gen)
    space = OneXNSpace(OneXNOptions(model=model), base)
    arranged = space.arranged.eval()
    moved = sum(not torch.equal(arranged.get_submodule(p).weight, base.get_submodule(p).weight)
                for p in space.targets)
    assert moved >= len(space.targets) // 2  # the rearrangement really moved filters
    x = torch.randn(2, 3, 32, 32, generator=gen)
    with torch.no_grad():
        want, got = base(x), arranged(x)
    assert (got - want).abs().max() <= 1e-5 * max(1.0, float(want.abs().max()))


def test_masks_zero_the_weakest_blocks_and_stay_fixed_while_training():
    space = OneXNSpace(OneXNOptions(model="resnet20"), build_base("resnet20"))
    genome = space.uniform(4, 0.7)
    model = space.build(genome).model.train()
    layer = model.get_submodule(space.targets[2])
    zeros = layer.weight.detach() == 0
    blocks = zeros.reshape(layer.weight.shape[0] // 4, 4, layer.weight.shape[1], -1)
    assert bool((blocks.all(1) == blocks.any(1)).all())  # whole 4x1 blocks
    assert int(blocks.all(1).all(-1).sum()) == int(0.7 * blocks.shape[0] * blocks.shape[2])
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 3, 32, 32)).square().mean().backward()
        opt.step()
    assert torch.equal(layer.weight.detach() == 0, zeros)
    assert space.nonzero_costs(genome)[1] < space.nonzero_costs(space.base_genome())[1]


def test_repair_and_costs_move_with_sparsity():
    space = OneXNSpace(OneXNOptions(model="resnet20"), build_base("resnet20"))
    assert all(v == -1 for k, v in space.directions().items() if k.startswith("p_"))
    costs = [space.nonzero_costs(space.uniform(4, p))[0] for p in (0.0, 0.3, 0.6, 0.9)]
    assert costs == sorted(costs, reverse=True) and costs[0] == space.flops_params(space.base_genome())[0]


@needs_kernel
def test_the_sparse_program_matches_and_exports(tmp_path):
    space = OneXNSpace(OneXNOptions(model="mobilenet_v2"), build_base("mobilenet_v2"))
    built = space.build(space.uniform(16, 0.75))
    net = built.net.eval()
    prog = to_sparse_program(net, built.recipe["block_sizes"])
    assert sum(isinstance(m, BlockSparseConv2d) for m in prog.modules()) == len(space.targets)
    assert sum(m.act > 0 for m in prog.modules() if isinstance(m, BlockSparseConv2d)) > 0  # ReLU6 fused
    assert not any(isinstance(m, nn.BatchNorm2d) for m in prog.modules())                  # BN folded
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want = net(x)
        assert torch.allclose(prog(x), want, atol=1e-4 * float(want.abs().max()))
    files = write_sparse(space, built, tmp_path)
    assert files == {"sparse": "sparse.safetensors", "sparse_program": "model_sparse.pt2"}
    loaded = torch.export.load(str(tmp_path / "model_sparse.pt2")).module()
    with torch.no_grad():
        assert torch.allclose(loaded(x), want, atol=1e-4 * float(want.abs().max()))  # dynamic batch
    again = load_sparse(space, space.uniform(16, 0.75), tmp_path / "sparse.safetensors")
    with torch.no_grad():
        assert torch.allclose(again(x), want, atol=1e-4 * float(want.abs().max()))


@needs_kernel
def test_a_subprocess_reads_the_format_without_searchkit_types(tmp_path):
    """The file is plain safetensors: torch's BSR components rebuild each dense weight."""
    space = OneXNSpace(OneXNOptions(model="resnet20"), build_base("resnet20"))
    built = space.build(space.uniform(8, 0.5))
    write_sparse(space, built, tmp_path, program=False)
    code = (
        "import json, torch, sys\n"
        "from safetensors import safe_open\n"
        "f = safe_open(sys.argv[1], 'pt')\n"
        "meta = json.loads(f.metadata()['searchkit'])\n"
        "g = meta['layers']['layer2.1.conv1']\n"
        "t = {k: f.get_tensor('layer2.1.conv1.' + k) for k in ('crow_indices', 'col_indices', 'values')}\n"
        "m = torch.sparse_bsr_tensor(t['crow_indices'], t['col_indices'], t['values'],\n"
        "                            size=(g['out'], g['in'] * g['k'] ** 2)).to_dense()\n"
        "print(json.dumps([g['N'], list(m.shape), int((m != 0).sum())]))\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "sparse.safetensors")], capture_output=True,
                         text=True, check=True)
    n, shape, nnz = json.loads(out.stdout)
    assert n == 8 and shape == [32, 32 * 9] and nnz <= 32 * 32 * 9 // 2


def test_malformed_sparse_files_are_refused_in_one_line(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00\x01not a safetensors file")
    with pytest.raises(SparseFormatError, match="not a searchkit 1xN file"):
        read_sparse(junk)
    if not kernel.load():
        return
    space = OneXNSpace(OneXNOptions(model="resnet20"), build_base("resnet20"))
    write_sparse(space, space.build(space.uniform(4, 0.5)), tmp_path, program=False)
    good = tmp_path / "sparse.safetensors"
    from safetensors import safe_open
    from safetensors.torch import save_file
    with safe_open(str(good), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    bad = dict(tensors)
    bad["layer1.0.conv1.col_indices"] = bad["layer1.0.conv1.col_indices"] + 1000
    save_file(bad, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(SparseFormatError, match="outside"):
        read_sparse(tmp_path / "bad.safetensors")
    other = OneXNSpace(OneXNOptions(model="resnet56"), build_base("resnet56"))
    with pytest.raises(SparseFormatError, match="another architecture"):
        load_sparse(other, other.uniform(4, 0.5), good)


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "searchkit.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)}, timeout=900)


@pytest.mark.parametrize("override,message", [
    ("space.block_sizes=[7]", "none divides"),
    ("space.sparsity=[0.5,1.0]", "space.sparsity"),
])
def test_bad_onexn_options_exit_2_in_one_line(tmp_path, override, message):
    out = _cli("search", "space=onexn", "space.model=resnet20", override, "trials=1", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@needs_kernel
@pytest.mark.slow
def test_search_export_and_check_end_to_end(tmp_path):
    """The issue's command at smoke size: search, export the sparse format, check it."""
    out = _cli("search", "space=onexn", "algo=abc", "space.model=mobilenet_v2", "constraint.nonzero_macs=0.4",
               "trials=3", "base.epochs=1", "finetune.epochs=0.25", "progress=false", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    study = "onexn-mobilenet_v2-digits-abc-nonzero_macs0.4"
    out = _cli("export", f"study={study}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    folder, = (tmp_path / "exports").glob("*/*/01-*")
    arch = json.loads((folder / "arch.json").read_text())
    assert arch["costs"]["nonzero_macs"] <= 0.4 * arch["base_costs"]["nonzero_macs"]
    assert {"sparse", "sparse_program", "program"} <= set(arch["files"])
    out = _cli("onexn", "check", f"dir={folder}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "max relative difference" in out.stdout
    bad = _cli("onexn", "check", f"dir={tmp_path}", cwd=tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_a_target_without_the_op_is_refused_in_one_line():
    from predictors import builtin_only

    from searchkit.core.errors import ConfigError
    from searchkit.costs.latency_cost import LatencyCost
    pred = builtin_only("old")
    space = OneXNSpace(OneXNOptions(model="resnet20"), build_base("resnet20"), (3, 16, 16))
    with pytest.raises(ConfigError, match="target 'old' has no timings of the 1xN op") as err:
        LatencyCost(space, predictor=pred)
    assert "\n" not in str(err.value)


@needs_kernel
def test_a_latency_bound_is_priced_on_the_op_and_verified_on_the_sparse_program(tmp_path):
    """A torch profile times the 1xN op beside the dense kernels; a latency-bounded onexn
    search trains only genomes predicted under the bound, and export measures the program
    that runs the op (model_sparse.pt2)."""
    import random

    import numpy as np
    from predictors import bounded_search_record, quick_profile

    from searchkit.config import load_config
    from searchkit.costs.latency_cost import LatencyCost
    from searchkit.setup import RunSetup
    lat = tmp_path / "lat"
    pred = quick_profile(lat)
    assert "sparse_conv" in pred.forests
    common = ["space=onexn", "space.model=resnet20", "data=synthetic", "base.epochs=0", "finetune.max_batches=1",
              "latency.target=q", f"latency.dir={lat}", f"base.cache_dir={tmp_path / 'bases'}", "progress=false"]
    space = RunSetup.build(load_config(common), quiet=True).space
    cost = LatencyCost(space, predictor=pred)
    rng = random.Random(0)
    sample = [space.genome([[rng.choice(ch), rng.choice(space.options.sparsity)] for ch in space.choices])
              for _ in range(100)]
    # the block size is priced: the same sparsities at another N cost differently somewhere
    assert len({round(cost.cost(space.uniform(n, 0.5)), 9) for n in (1, 4, 16)}) > 1
    bound = max(float(np.quantile(cost.many(sample), 0.4)), cost.floor() * 1.0001)
    record = bounded_search_record(common, bound, tmp_path)
    assert record["measured"] == "the written program (model_sparse.pt2)" and record["measured_ms"] > 0
    assert record["predicted_ms"] <= bound


@needs_kernel
@pytest.mark.parametrize("model,side", [("mobilenet_v2", 32), ("vgg16", 32), ("torchvision:resnet18", 32)])
def test_the_kernels_of_a_genome_are_what_its_sparse_program_runs(model, side):
    """Priced without building anything: BN folded, ReLU/ReLU6 fused into the op (convs and
    linear layers), strided 3x3 convs left dense, as ``to_sparse_program`` makes them."""
    import random

    from searchkit.costs.trace import trace_kernels
    space = OneXNSpace(OneXNOptions(model=model), build_base(model), (3, side, side))
    rng = random.Random(3)
    for genome in (space.uniform(16, 0.5),
                   space.genome([[rng.choice(ch), rng.choice([0.0, 0.3, 0.8])] for ch in space.choices])):
        kernels = space.kernels(genome)
        assert kernels == trace_kernels(space.latency_network(space.build(genome)), (3, side, side))
        assert any(k.kind == "sparse_conv" for k in kernels)


@needs_kernel
@pytest.mark.slow
def test_the_sparse_program_compiles_with_torch_compile():
    """The op's fake kernel lets inductor trace through it: a compiled sparse program gives
    the eager one's outputs, at two batch sizes (no graph break at the op)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                        nn.Conv2d(16, 32, 1), nn.BatchNorm2d(32), nn.ReLU6(),
                        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(32, 10)).eval()
    for path in ("3", "6", "10"):
        mod = net.get_submodule(path)
        fix_mask(mod, block_mask(mod.weight, 8 if path != "10" else 2, 0.5))
    prog = to_sparse_program(net, {"3": 8, "6": 8, "10": 2})
    assert sum(isinstance(m, BlockSparseConv2d) for m in prog.modules()) == 3
    torch._dynamo.reset()
    compiled = torch.compile(prog, backend="inductor", fullgraph=True, dynamic=False)
    with torch.no_grad():
        for batch in (1, 3):
            x = torch.randn(batch, 3, 8, 8)
            assert torch.allclose(compiled(x), prog(x), atol=1e-5, rtol=1e-5)
