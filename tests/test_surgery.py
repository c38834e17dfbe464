"""Physical channel pruning: units, identity, L1/random selection, history, costs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from searchkit.costs import CONVENTIONS, count_costs
from searchkit.spaces.channels.costtable import CostTable
from searchkit.models import build_base
from searchkit.spaces.channels.surgery import (
    ChannelUnit, apply_history, channel_units, keep_counts, prune_channels,
    prune_channels_with_history, pruned_shape_model, select_channels)

FAMILIES = ["vgg16", "resnet56", "resnet110", "resnet18", "resnet50", "mobilenet_v2"]
N_UNITS = {"vgg16": 13, "resnet20": 9, "resnet56": 27, "resnet110": 54, "resnet18": 8,
           "resnet50": 32, "mobilenet_v2": 16}
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny single-image forwards: OpenMP threads only spin on a shared 2-core box."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics/affine params so that identity tests mean something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def resnet20():
    torch.manual_seed(0)
    return _randomize_bn(build_base("resnet20"))


@pytest.mark.parametrize("name", sorted(N_UNITS))
def test_unit_counts_and_json(name):
    units = channel_units(build_base(name))
    assert len(units) == N_UNITS[name]
    assert len({u.name for u in units}) == len(units)
    assert [ChannelUnit.from_json(json.loads(json.dumps(u.to_json()))) for u in units] == units


def test_unit_details():
    units = channel_units(build_base("resnet50"))
    assert units[0] == ChannelUnit("layer1.0.conv1", 64, ("layer1.0.conv1",),
                                   ("layer1.0.bn1",), ("layer1.0.conv2",))
    assert units[1].name == "layer1.0.conv2" and units[1].consumers == ("layer1.0.conv3",)
    mb = channel_units(build_base("mobilenet_v2"))
    assert mb[0] == ChannelUnit("features.2", 96, ("features.2.conv.0.0",),
                                ("features.2.conv.0.1", "features.2.conv.1.1"),
                                ("features.2.conv.2",), ("features.2.conv.1.0",))
    vgg = channel_units(build_base("vgg16"))
    assert vgg[0].consumers == ("features.3",)
    assert vgg[-1].name == "features.40" and vgg[-1].consumers == ("classifier.linear1",)
    with pytest.raises(ValueError, match="no prunable"):
        channel_units(nn.Sequential(nn.Conv2d(3, 4, 3)))


def test_keep_counts_rule():
    units = [ChannelUnit("a", 16, ("a",)), ChannelUnit("b", 100, ("b",)),
             ChannelUnit("c", 64, ("c",))]
    # floor like ABCPruner's int(C * code / 10), robust to float error, at least 1
    assert keep_counts(units, [0.3, 0.29, 0.01]) == [4, 29, 1]
    assert keep_counts(units, [0.7, 0.7, 1.0]) == [11, 70, 64]
    for bad in ([0.5, 0.5], [0.0, 1.0, 1.0], [1.01, 1.0, 1.0]):
        with pytest.raises(ValueError):
            keep_counts(units, bad)


@pytest.mark.parametrize("name", FAMILIES)
def test_identity_smaller_and_forward(name):
    torch.manual_seed(1)
    base = _randomize_bn(build_base(name))
    units = channel_units(base)
    same = prune_channels(base, units, [1.0] * len(units))
    with torch.no_grad():
        ref = base(X)
        assert torch.allclose(same.eval()(X), ref, atol=1e-5, rtol=1e-4)
    rng = np.random.default_rng(0)
    keep = rng.uniform(0.05, 1.0, len(units)).tolist()
    small, hist = prune_channels_with_history(base, units, keep)
    assert _n_params(small) < _n_params(base)
    assert [len(hist[u.name]) for u in units] == keep_counts(units, keep)
    with torch.no_grad():
        assert small.eval()(X[:1]).shape == ref[:1].shape
    assert _n_params(base) == _n_params(build_base(name))  # base untouched


def test_l1_picks_largest_filters_and_copies_weights(resnet20):
    base = resnet20
    units = channel_units(base)
    conv = base.layer1[0].conv1
    with torch.no_grad():
        conv.weight.mul_(0.01)
        for i, s in zip([3, 11, 7, 0], [5.0, 4.0, 3.0, 2.0]):
            conv.weight[i].fill_(s)
    keep = [0.25] + [1.0] * 8  # 4 of 16
    small, hist = prune_channels_with_history(base, units, keep, rule="l1")
    assert hist["layer1.0"] == [0, 3, 7, 11]
    idx = torch.tensor(hist["layer1.0"])
    b = small.layer1[0]
    assert torch.equal(b.conv1.weight, conv.weight[idx])
    assert torch.equal(b.conv2.weight, base.layer1[0].conv2.weight[:, idx])
    assert torch.equal(b.bn1.running_var, base.layer1[0].bn1.running_var[idx])
    assert torch.equal(b.bn1.weight, base.layer1[0].bn1.weight[idx])
    assert b.conv1.out_channels == 4 and b.bn1.num_features == 4 and b.conv2.in_channels == 4
    assert torch.equal(b.conv2.weight.new_tensor(b.conv2.out_channels), torch.tensor(16.0))


def test_random_rule_can_pick_last_filter_and_is_seeded(resnet20):
    units = channel_units(resnet20)
    keep = [0.5] * len(units)
    picks = [select_channels(resnet20, units, keep, rule="random", seed=s) for s in range(20)]
    assert any(15 in p["layer1.0"] for p in picks)
    assert any(63 in p["layer3.0"] for p in picks)
    assert picks[3] == select_channels(resnet20, units, keep, rule="random", seed=3)
    assert len({tuple(p["layer1.0"]) for p in picks}) > 1
    assert all(p["layer1.0"] == sorted(p["layer1.0"]) for p in picks)
    with pytest.raises(ValueError, match="rule"):
        select_channels(resnet20, units, keep, rule="l2")


@pytest.mark.parametrize("name", ["vgg16", "resnet20", "resnet18", "mobilenet_v2"])
def test_history_round_trip(name):
    torch.manual_seed(2)
    base = _randomize_bn(build_base(name))
    units = channel_units(base)
    keep = np.random.default_rng(1).uniform(0.1, 1.0, len(units)).tolist()
    small, hist = prune_channels_with_history(base, units, keep, rule="random", seed=5)
    rebuilt = apply_history(base, units, json.loads(json.dumps(hist)))
    sd_a, sd_b = small.state_dict(), rebuilt.state_dict()
    assert {k: v.shape for k, v in sd_a.items()} == {k: v.shape for k, v in sd_b.items()}
    with torch.no_grad():
        assert torch.equal(small.eval()(X), rebuilt.eval()(X))
    shapes = pruned_shape_model(base, units, keep).state_dict()
    assert {k: v.shape for k, v in shapes.items()} == {k: v.shape for k, v in sd_a.items()}


def test_mobilenet_depthwise_pruned_together():
    base = build_base("mobilenet_v2")
    units = channel_units(base)
    small = pruned_shape_model(base, units, [0.5] * len(units))
    block = small.features[2].conv
    assert block[0][0].out_channels == 48
    assert block[1][0].in_channels == block[1][0].out_channels == block[1][0].groups == 48
    assert block[1][1].num_features == 48 and block[2].in_channels == 48
    assert block[2].out_channels == 24  # block output (residual width) untouched


def test_apply_history_validates(resnet20):
    units = channel_units(resnet20)
    for bad in ({"layer1.0": [3, 1]}, {"layer1.0": [0, 16]}, {"layer1.0": []},
                {"nope": [0]}, {"layer1.0": [1, 1]}):
        with pytest.raises(ValueError):
            apply_history(resnet20, units, bad)
    assert apply_history(resnet20, units, {}).layer1[0].conv1.out_channels == 16


GENOMES = {"vgg16": 12, "resnet20": 20, "resnet56": 20, "resnet18": 5, "resnet50": 3,
           "mobilenet_v2": 20}


@pytest.mark.parametrize("name", sorted(GENOMES))
def test_cost_table_matches_pruned_models(name):
    base = build_base(name)
    units = channel_units(base)
    tables = {c: CostTable.build(base, units, convention=c) for c in CONVENTIONS}
    rng = np.random.default_rng(hash(name) % 2**32)
    for i in range(GENOMES[name]):
        if i % 2:
            keep = rng.uniform(0.01, 1.0, len(units)).tolist()
        else:
            keep = (rng.integers(1, 11, len(units)) / 10).tolist()
        model = pruned_shape_model(base, units, keep)
        for conv, table in tables.items():
            assert table.costs(keep) == count_costs(model, convention=conv), (conv, keep)
    model, _ = prune_channels_with_history(base, units, keep, rule="l1")
    assert tables["macs"].costs(keep) == count_costs(model)
