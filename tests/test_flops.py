"""FLOPs/params conventions against published counts, and the analytic CostTable."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from searchkit.costs import CONVENTIONS, Costs, count_costs
from searchkit.spaces.channels.costtable import CostTable
from searchkit.models import build_base
from searchkit.spaces.channels.surgery import channel_units
from searchkit.models.vgg import VGG16_CFG, VGGCifar


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny single-image forwards: OpenMP threads only spin on a shared 2-core box."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def resnet56():
    return build_base("resnet56")


def test_resnet56_published_counts(resnet56):
    c = count_costs(resnet56)
    assert c.flops == 125_485_056 + 640 == 125_485_696
    assert round(c.flops / 1e6, 2) == 125.49
    assert round(c.params / 1e6, 2) == 0.85
    h = count_costs(resnet56, convention="hrank")
    assert round(h.flops / 1e6, 2) == 125.49 and round(h.params / 1e6, 2) == 0.85


def test_resnet110_counts():
    model = build_base("resnet110")
    c = count_costs(model)
    assert c.flops == 252_887_680  # 252.89M (the "253M" of the literature)
    assert round(c.params / 1e6, 2) == 1.73
    # ABCPruner: 89.87M is a 65.04% reduction under thop's rules
    t = count_costs(model, convention="thop")
    assert round(100 * (1 - 89.87e6 / t.flops), 2) == 65.04


def test_vgg16_hrank_convention():
    c = count_costs(build_base("vgg16"), convention="hrank")
    assert c.flops == 313_731_594
    assert (round(c.flops / 1e6, 2), round(c.params / 1e6, 2)) == (313.73, 14.98)
    assert c.params == 14_982_474
    m = count_costs(build_base("vgg16"))
    assert m.flops == 313_196_544 + 512 * 512 + 512 * 10


def test_thop_convention_reproduces_abcpruner_baselines(resnet56):
    assert round(count_costs(resnet56, convention="thop").flops / 1e6, 2) == 127.62
    # ABCPruner's own VGG-16: same convs, a 5th max-pool and a single Linear(512, 10)
    abc_vgg = nn.Sequential(VGGCifar(VGG16_CFG).features, nn.MaxPool2d(2), nn.Flatten(),
                            nn.Linear(512, 10))
    assert round(count_costs(abc_vgg, convention="thop").flops / 1e6, 2) == 314.59


def test_hand_computed_small_model():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=True),       # 8x8 out
        nn.BatchNorm2d(8),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),      # depthwise
        nn.Conv2d(8, 4, 1, groups=2, bias=False),                 # grouped
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    conv = 27 * 8 * 64 + 9 * 8 * 64 + 4 * 4 * 64
    assert count_costs(model, input_size=16).flops == conv + 20
    assert count_costs(model, (3, 16, 16), "hrank") == Costs(
        conv + 2 * 20 + 5, (27 * 8 + 8) + 72 + 16 + (20 + 5))
    assert count_costs(model, 16, "thop").flops == conv + 8 * 64 + 4 * 8 * 64 + 40


def test_count_costs_restores_modes_and_rejects_unknown_convention(resnet56):
    resnet56.train()
    resnet56.layer1[0].bn1.eval()
    count_costs(resnet56)
    assert resnet56.training and resnet56.layer1[1].bn1.training
    assert not resnet56.layer1[0].bn1.training
    with pytest.raises(ValueError, match="macs"):
        count_costs(resnet56, convention="mac")


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("name", ["vgg16", "resnet56", "mobilenet_v2"])
def test_cost_table_base_and_json(name, convention):
    base = build_base(name)
    units = channel_units(base)
    table = CostTable.build(base, units, convention=convention)
    assert table.base_costs == count_costs(base, convention=convention)
    again = CostTable.from_json(json.loads(json.dumps(table.to_json())))
    keep = [0.3 + 0.05 * (i % 10) for i in range(len(units))]
    assert again.costs(keep) == table.costs(keep)
    assert table.costs(keep).flops < table.base_costs.flops


def test_cost_table_rejects_bad_keep(resnet56):
    table = CostTable.build(resnet56, channel_units(resnet56))
    with pytest.raises(ValueError):
        table.costs([0.5] * 3)
    with pytest.raises(ValueError):
        table.costs([0.0] + [1.0] * 26)
    with pytest.raises(ValueError):
        table.costs([1.5] + [1.0] * 26)
