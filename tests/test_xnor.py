"""The W1A1 runtime of space=bnas: the XNOR-popcount op is bit-exact against a float conv of
the signs on every ISA path and the pure-torch fallback, and the packed file format
round-trips, refuses malformed files in one line, and exports a program that runs them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from searchkit.spaces.bnas import BNASOptions, BNASSpace, xnor
from searchkit.spaces.bnas.binary import BinaryConv2d
from searchkit.spaces.bnas.format import BinaryFormatError, load_binary, read_binary, write_binary
from searchkit.core import tensorfile

needs_kernel = pytest.mark.skipif(not xnor.load(), reason="the XNOR kernel could not be built here")
SHAPES = [  # cin, cout, k, stride, padding, dilation, groups, side: word tails, borders, groups, odd sides
    (70, 8, 3, 1, 1, 1, 1, 6), (64, 64, 3, 1, 1, 1, 1, 9), (128, 130, 3, 2, 1, 1, 1, 7), (16, 16, 5, 1, 4, 2, 1, 8),
    (32, 32, 3, 1, 1, 1, 4, 5), (130, 66, 1, 1, 0, 1, 2, 5), (3, 5, 3, 2, 0, 1, 1, 4)]


def _dots(conv, x):
    signs = torch.where(x >= 0, 1.0, -1.0), torch.where(conv.weight >= 0, 1.0, -1.0)
    return F.conv2d(*signs, None, conv.stride, conv.padding, conv.dilation, conv.groups)


def _case(shape, seed=0):
    cin, cout, k, stride, padding, dilation, groups, side = shape
    torch.manual_seed(seed)
    conv = BinaryConv2d(cin, cout, k, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=False,
                        scaling="channel", binary_input=True)
    x = torch.randn(3, cin, side, side)
    x[0, :, 0, 0] = 0.0  # sign(0) = +1, as binarize has it
    return conv, x


@needs_kernel
@pytest.mark.parametrize("isa", [None, "avx512", "avx2", "popcnt", "portable"])
@pytest.mark.parametrize("shape", SHAPES)
def test_the_xnor_op_is_bit_exact_on_every_isa_path(shape, isa):
    conv, x = _case(shape)
    fast = xnor.XnorConv2d.of(conv)
    try:
        xnor.force_isa(isa)
        y = fast(x)
    finally:
        xnor.force_isa(None)
    scale = conv.scale().detach().view(1, -1, 1, 1)
    assert torch.equal(torch.round(y / scale), _dots(conv, x))  # the integer dot products, exactly
    with torch.no_grad():
        assert torch.allclose(y, conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES[:3])
def test_the_pure_torch_fallback_computes_the_same(shape, monkeypatch):
    conv, x = _case(shape, seed=1)
    fast = xnor.XnorConv2d.of(conv)
    monkeypatch.setattr(xnor, "load", lambda: False)  # as on a machine without a compiler
    scale = conv.scale().detach().view(1, -1, 1, 1)
    assert torch.equal(torch.round(fast(x) / scale), _dots(conv, x))


def test_pack_and_unpack_are_inverse():
    w = torch.randn(6, 70, 3, 3)
    words, pops = xnor.pack(w, groups=2)
    assert tuple(words.shape) == (2, 3, 9 * 2) and torch.equal(pops.sum(-1), (w >= 0).flatten(1).sum(-1))
    assert torch.equal(xnor.popcounts(words, 9), pops)
    signs = xnor.unpack(words, 35, 9).reshape(6, 35, 3, 3)
    assert torch.equal(signs, torch.where(w[:, :35] >= 0, 1.0, -1.0))


def _binary_net():
    space = BNASSpace(BNASOptions(preset="binary", C=8, cells=3), side=8)
    genome = space.base_genome()
    cell = [[["bin_conv_3x3", 0], ["bin_group_conv_3x3", 1]]] + genome["normal"][1:]
    genome = space.canonical({**genome, "normal": cell})
    built = space.build(genome)
    for m in built.net.modules():  # trained-looking BN statistics, so the check sees real values
        if isinstance(m, torch.nn.BatchNorm2d) and m.running_mean is not None:
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return space, genome, built


def test_the_binary_file_round_trips_and_its_program_matches(tmp_path):
    space, genome, built = _binary_net()
    files = write_binary(space, built, tmp_path, program=xnor.load())
    assert files["binary"] == "binary.safetensors"
    x = torch.randn(4, *space.input_size())
    with torch.no_grad():
        want = built.net.eval()(x)
        prog = load_binary(space, genome, tmp_path / "binary.safetensors")
        assert torch.allclose(prog(x), want, rtol=1e-4, atol=1e-4)
        if xnor.load():
            shipped = torch.export.load(str(tmp_path / "model_xnor.pt2")).module()
            assert torch.allclose(shipped(x), want, rtol=1e-4, atol=1e-4)
    layers, tensors = read_binary(tmp_path / "binary.safetensors")
    for n, g in layers.items():  # one bit a weight, in 64-bit words per tap and group
        w = built.net.get_submodule(n).weight
        assert tensors[f"{n}.words"].numel() == w.shape[0] * w.shape[2] * w.shape[3] * -(-w.shape[1] // 64)


def test_the_shipped_program_folds_its_norms_and_pools_channels_last():
    """What model_xnor.pt2 runs: W1A32 weights binarized once, every BN that reads a conv's
    output folded into it (float weights or the XNOR op's scales), 3x3 pools on channels-last
    copies, priced as such by the latency trace, and the same function."""
    import copy

    from searchkit.costs.trace import POOLS, trace_kernels
    from searchkit.spaces.bnas.ops import BinaryBlock, FactorizedReduce
    space, genome, _ = _binary_net()
    pools = [[["max_pool_3x3", 0], ["avg_pool_3x3", 1]], [["skip_connect", 0], ["bin_conv_3x3", 2]]]
    genome = space.canonical({**genome, "normal": pools + genome["normal"][2:],
                              "reduce": pools + genome["reduce"][2:]})
    built = space.build(genome, seed=1)
    for m in built.net.modules():
        if isinstance(m, torch.nn.BatchNorm2d) and m.running_mean is not None:
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            if m.weight is not None:
                m.weight.data.uniform_(0.5, 1.5)
    net = built.net.eval()
    prog = xnor.xnor_program(copy.deepcopy(net))
    mods = list(prog.modules())
    assert not any(isinstance(m, BinaryConv2d) for m in mods)
    assert all(type(m.out) is torch.nn.Identity and m.conv.bias is not None for m in mods if isinstance(m, BinaryBlock))
    assert all(type(m.bn) is torch.nn.Identity for m in mods if isinstance(m, FactorizedReduce))
    for seq in (m for m in mods if isinstance(m, torch.nn.Sequential)):
        kids = list(seq)
        assert not any(isinstance(a, (torch.nn.Conv2d, xnor.XnorConv2d)) and isinstance(b, torch.nn.BatchNorm2d)
                       for a, b in zip(kids, kids[1:]))
    bare = [m for m in mods if isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d))]
    wrapped = [m.pool for m in mods if isinstance(m, xnor.ChannelsLastPool)]
    assert wrapped and all(any(m is w for w in wrapped) for m in bare)
    # float sums in another order can flip a sign at its boundary: one of a few inputs matches
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        diffs = [float((prog(x) - net(x)).abs().max() / net(x).abs().max())
                 for x in (torch.randn(2, *space.input_size(), generator=gen) for _ in range(3))]
    assert min(diffs) < 1e-5
    kinds = lambda m: {k.fields[0] for k in trace_kernels(m, space.input_size()) if k.kind == "pool"}  # noqa: E731
    assert {POOLS["max3_nhwc"], POOLS["avg3_nhwc"]} <= kinds(prog)
    assert {POOLS["max3"], POOLS["avg3"]} <= kinds(net) and not {POOLS["max3_nhwc"], POOLS["avg3_nhwc"]} & kinds(net)


def test_word_ops_count_the_reads_of_pools():
    from searchkit.spaces.bnas.costs import count_binary
    net = torch.nn.Sequential(torch.nn.MaxPool2d(3, 1, 1), torch.nn.AvgPool2d(3, 2, 1))
    c = count_binary(net, (4, 6, 6))
    assert c["flops"] == 0 and c["word_ops"] == 9 * 4 * 36 + 9 * 4 * 9


def test_a_float_only_network_writes_no_binary_file(tmp_path):
    space = BNASSpace(BNASOptions(preset="bnas", C=8, cells=3))
    assert write_binary(space, space.build(space.base_genome()), tmp_path) == {}


def test_malformed_binary_files_are_refused_in_one_line(tmp_path):
    space, genome, built = _binary_net()
    write_binary(space, built, tmp_path, program=False)
    good = tmp_path / "binary.safetensors"
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(BinaryFormatError, match="not a searchkit binary file"):
        read_binary(tmp_path / "junk.safetensors")
    info, tensors = tensorfile.read(good, "searchkit-xnor/1", BinaryFormatError, "binary")
    name = next(iter(info["layers"]))
    info = {k: v for k, v in info.items() if k != "format"}
    bad = dict(tensors)
    bad[f"{name}.words"] = tensors[f"{name}.words"] | (1 << 40)  # 64 channels in 1 word: bit 40 is a channel
    bad_geo = {**info, "layers": {**info["layers"], name: {**info["layers"][name], "in": 40}}}
    tensorfile.write(tmp_path / "bits.safetensors", bad, "searchkit-xnor/1", bad_geo)
    with pytest.raises(BinaryFormatError, match="past its 40 channels"):
        read_binary(tmp_path / "bits.safetensors")
    short = {**tensors, f"{name}.words": tensors[f"{name}.words"][:, :1]}
    tensorfile.write(tmp_path / "shape.safetensors", short, "searchkit-xnor/1", info)
    with pytest.raises(BinaryFormatError, match="words are"):
        read_binary(tmp_path / "shape.safetensors")
    other = space.canonical({**genome, "normal": [[["max_pool_3x3", 0], ["max_pool_3x3", 1]]] * 4})
    with pytest.raises(BinaryFormatError, match="another architecture"):
        load_binary(space, other, good)
    tensorfile.write(tmp_path / "fmt.safetensors", tensors, "searchkit-onexn/1", info)
    with pytest.raises(BinaryFormatError, match="expected 'searchkit-xnor/1'"):
        read_binary(tmp_path / "fmt.safetensors")
