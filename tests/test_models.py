"""Base networks: registry names, shapes, structure of the 32x32 adaptations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from searchkit.core.space import NeedsBase
from searchkit.models import build_base, default_input_size, min_input_size
from searchkit.models.resnet_cifar import ZeroPadShortcut
from searchkit.registry import MODELS, SPACES, UnknownNameError

@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny single-image forwards: OpenMP threads only spin on a shared 2-core box."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_registry_lists_the_published_models():
    assert {"vgg16", "resnet20", "resnet56", "resnet110", "resnet18", "resnet50", "mobilenet_v2"} <= set(MODELS.names())


@pytest.mark.parametrize("name", MODELS.names())
def test_build_and_forward(name):
    torch.manual_seed(0)
    model = build_base(name, num_classes=7).eval()
    s = max(default_input_size(name), min_input_size(name))
    assert s == 32
    with torch.no_grad():
        out = model(torch.randn(2, 3, s, s))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("space", [n for n in SPACES.names() if issubclass(SPACES.get(n), NeedsBase)])
@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_is_usable_or_refused_in_one_line(space, name):
    """A space that prunes a base takes the model or refuses it (before any training)."""
    cls = SPACES.get(space)
    try:
        cls.check_base(build_base(name), cls.Options())
    except ValueError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    # usable: the space builds on it and prices its base
    from searchkit.core.space import SpaceEnv
    built = cls.from_config(cls.Options(), SpaceEnv(base=build_base(name))).base_genome()
    assert built


def test_unknown_name_suggests_nearest():
    with pytest.raises(UnknownNameError, match="resnet56"):
        build_base("resnet65")
    with pytest.raises(UnknownNameError):
        default_input_size("nope")


@pytest.mark.parametrize("name,n", [("resnet20", 3), ("resnet56", 9), ("resnet110", 18)])
def test_cifar_resnet_depth(name, n):
    model = build_base(name)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 6 * n + 1  # + fc = 6n+2 weighted layers
    assert [model.layer1[0].conv1.out_channels, model.layer2[0].conv1.out_channels,
            model.layer3[0].conv1.out_channels] == [16, 32, 64]
    assert model.fc.in_features == 64


def test_option_a_shortcut_subsamples_and_zero_pads():
    x = torch.randn(1, 16, 8, 8)
    y = ZeroPadShortcut(16, 32, 2)(x)
    assert y.shape == (1, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert not y[:, :8].any() and not y[:, 24:].any()
    block = build_base("resnet20").layer2[0]
    assert not any(True for _ in block.shortcut.parameters())


def test_vgg16_layout_matches_hrank():
    model = build_base("vgg16")
    conv_idx = [i for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d)]
    assert conv_idx == [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]  # HRank convcfg + last
    assert all(model.features[i].bias is not None for i in conv_idx)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 4
    c = model.classifier
    assert (c.linear1.in_features, c.linear1.out_features, c.norm1.num_features,
            c.linear2.out_features) == (512, 512, 512, 10)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_resnets_have_cifar_stem(name):
    model = build_base(name)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)


def test_mobilenet_v2_first_stride_one():
    model = build_base("mobilenet_v2").eval()
    assert model.features[0][0].stride == (1, 1)
    with torch.no_grad():
        assert model.features(torch.zeros(1, 3, 32, 32)).shape[-2:] == (2, 2)
