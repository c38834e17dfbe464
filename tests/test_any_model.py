"""Channel search on any CNN: units traced from the graph, for every torchvision classifier,
timm networks and a user's own factory."""

import json
import random
import subprocess
import sys

import pytest
import torch
import torchvision

from searchkit.costs import count_costs
from searchkit.models import build_base, min_input_size
from searchkit.spaces.channels import ChannelOptions, ChannelSpace, discover_units
from searchkit.spaces.channels.graph import graph_units
from searchkit.spaces.channels.surgery import apply_history, units_from_json, units_to_json

# Transformers are not CNNs; everything else torchvision ships as a classifier is covered.
CNNS = [n for n in torchvision.models.list_models(module=torchvision.models)
        if not n.startswith(("vit_", "swin_", "maxvit"))]
# The channel dependencies Torch-Pruning cannot trace (its channel-shuffle index map divides by zero).
UNTRACEABLE = {n for n in CNNS if n.startswith("shufflenet_v2")}
# Built at a reduced width or resolution would not be these networks; these are simply slow.
BIG = {"regnet_y_128gf", "regnet_y_32gf", "regnet_x_32gf", "regnet_y_16gf", "regnet_x_16gf",
       "efficientnet_b7", "efficientnet_b6", "efficientnet_v2_l", "convnext_large", "vit_h_14"}


def _check_space(model: str, mode: str = "auto", seed: int = 0) -> ChannelSpace:
    side = min_input_size(model)
    base = build_base(model, num_classes=10)
    space = ChannelSpace(ChannelOptions(model=model, units=mode), base, (3, side, side))
    rng = random.Random(seed)
    genome = space.genome([rng.choice(space.choices) for _ in space.units])
    built = space.build(genome)
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        y = built.model.eval()(x)
    assert y.shape == (2, 10)
    c = count_costs(built.model, (3, side, side))
    assert (c.flops, c.params) == space.flops_params(genome)
    assert space.flops_params(genome)[0] < space.flops_params(space.base_genome())[0]
    # the recipe and the units are plain JSON; replayed, they rebuild the same weights
    units = units_from_json(json.loads(json.dumps(units_to_json(space.units))))
    again = apply_history(base, units, json.loads(json.dumps(built.recipe)))
    again.load_state_dict(built.model.state_dict())
    with torch.no_grad():
        assert torch.allclose(again.eval()(x), y, atol=1e-5)
    return space


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n
                                  for n in CNNS if n not in UNTRACEABLE])
def test_every_torchvision_cnn_builds_prices_and_replays(name):
    torch.manual_seed(0)
    _check_space(f"torchvision:{name}")


@pytest.mark.parametrize("name", sorted(UNTRACEABLE))
def test_untraceable_network_is_refused_in_one_line(name):
    base = build_base(f"torchvision:{name}")
    with pytest.raises(ValueError, match="cannot be traced"):
        graph_units(base, (3, 32, 32))


def test_residual_streams_are_genes_with_units_all():
    base = build_base("torchvision:resnet18")
    inner = graph_units(base, (3, 32, 32), mode="inner")
    every = graph_units(base, (3, 32, 32), mode="all")
    assert len(inner) == 8 and len(every) == 12  # one stream per stage
    stream = next(u for u in every if u.name == "conv1")
    assert {"layer1.0.conv2", "layer1.1.conv2"} <= set(stream.producers)
    assert {"layer1.0.conv1", "layer1.1.conv1", "layer2.0.conv1", "layer2.0.downsample.0"} <= set(stream.consumers)


def test_listed_model_keeps_its_published_units():
    # ABCPruner's ResNet-56 space: 27 block-inner widths, base 125.49M MACs
    base = build_base("resnet56")
    assert [u.name for u in discover_units(base, "auto", (3, 32, 32))][:2] == ["layer1.0", "layer1.1"]
    space = ChannelSpace(ChannelOptions(model="resnet56"), base, (3, 32, 32))
    assert space.flops_params(space.base_genome())[0] == 125_485_696


def test_user_factory_with_concat_depthwise_and_gate():
    space = _check_space("tests.nets.user_net:make", mode="all")
    names = [u.name for u in space.units]
    assert "stem.0" in names  # the residual stream
    cat = next(u for u in space.units if u.name == "right.0")  # read at an offset after the cat
    assert ("consumer", "dw.0", 24, 1) not in cat.slices and any(s[2] == 24 for s in cat.slices)


def test_timm_network():
    pytest.importorskip("timm")
    _check_space("timm:resnet18")
    _check_space("timm:mobilenetv3_small_050")


def test_unknown_and_unprunable_models_are_one_line_errors(workdir):
    for model, want in (("torchvision:resnet_18", "did you mean 'resnet18'"),
                        ("timm:no_such_net", "unknown timm model"),
                        ("no_such_pkg.mod:make", "cannot import module 'no_such_pkg.mod'")):
        proc = subprocess.run([sys.executable, "-m", "searchkit", "search", "space=channels",
                               f"space.model={model}", "trials=1"], capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0
        assert want in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert "training base" not in proc.stderr


@pytest.mark.slow
def test_search_on_torchvision_mobilenet_v3_small_end_to_end(workdir):
    cmd = [sys.executable, "-m", "searchkit", "search", "space=channels",
           "space.model=torchvision:mobilenet_v3_small", "trials=2", "base.epochs=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 candidates trained" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "searchkit", "export",
                           "study=channels-torchvision:mobilenet_v3_small-digits-abc"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    model = next(workdir.glob("exports/*/*/01-*/model.pt2"))
    prog = torch.export.load(str(model))
    assert prog.module()(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_rule_magnitude_keeps_the_channels_torch_pruning_ranks_highest():
    from searchkit.spaces.channels.baselines import unit_scores
    base = build_base("resnet20")
    space = ChannelSpace(ChannelOptions(model="resnet20", rule="magnitude"), base, (3, 32, 32))
    l1 = ChannelSpace(ChannelOptions(model="resnet20"), base, (3, 32, 32))
    genome = space.uniform(0.25)
    got, ref = space.recipe(genome), l1.recipe(genome)
    scores = unit_scores(space, "magnitude")
    for u, s in zip(space.units, scores):
        assert min(s[got[u.name]]) >= max(s[[i for i in range(u.channels) if i not in got[u.name]]])
    assert got != ref  # the group criterion (conv, BN and the consumer's slices) is not the filter L1


def test_bn_recalibrate_takes_yaml_on_off():
    from searchkit.config import load_config
    assert load_config(["finetune.bn_recalibrate=off"]).finetune.bn_recalibrate == "off"
    assert load_config(["finetune.bn_recalibrate=on"]).finetune.bn_recalibrate == "on"
