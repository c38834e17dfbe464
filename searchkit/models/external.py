"""Base networks from outside the registry: ``torchvision:NAME``, ``timm:NAME``, ``module:factory``.

A user's own network is any importable callable returning an ``nn.Module`` classifier; it is
called with ``num_classes=`` when it takes that argument. Weights are never downloaded:
networks start from their own initialisation, or from ``base.checkpoint=``.

Example:
    >>> from searchkit.models import build_base
    >>> net = build_base("torchvision:mobilenet_v3_small", num_classes=10)
    >>> net.classifier[-1].out_features
    10
    >>> build_base("torchvision:resnet_18")
    Traceback (most recent call last):
    ...
    searchkit.core.errors.UnknownNameError: unknown torchvision model 'resnet_18'; did you mean 'resnet18'?
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Callable

from torch import nn

from searchkit.core.errors import UnknownNameError, UserError, did_you_mean

# Smallest input side of torchvision classifiers that need more than the default 32 px.
MIN_SIDES = {"alexnet": 63, "inception_v3": 75}
# Auxiliary heads return tuples while training; the search trains plain logits.
_NO_AUX = {"googlenet", "inception_v3"}


@functools.lru_cache(maxsize=None)
def _torchvision_names() -> tuple[str, ...]:
    import torchvision
    return tuple(torchvision.models.list_models(module=torchvision.models))


def _timm():
    try:
        import timm
    except ImportError:
        raise UserError("space.model=timm:... needs timm, which is not installed (pip install timm)") from None
    return timm


def check_external(name: str) -> None:
    """Raise a one-line error unless ``name`` names a network that can be built."""
    kind, _, rest = name.partition(":")
    if not rest:
        raise UnknownNameError(f"model '{name}' names nothing after ':'")
    if kind == "torchvision":
        if rest not in _torchvision_names():
            raise UnknownNameError(f"unknown torchvision model '{rest}'{did_you_mean(rest, _torchvision_names())}")
    elif kind == "timm":
        timm = _timm()
        if not timm.is_model(rest):
            raise UnknownNameError(f"unknown timm model '{rest}'{did_you_mean(rest, timm.list_models())}")
    else:
        _user_factory(name)


def _user_factory(name: str) -> Callable[..., nn.Module]:
    module, _, attr = name.partition(":")
    try:
        obj = importlib.import_module(module)
    except ImportError as exc:
        raise UserError(f"space.model={name}: cannot import module '{module}' ({exc})") from None
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise UserError(f"space.model={name}: module '{module}' has no '{attr}'")
    if not callable(obj):
        raise UserError(f"space.model={name}: '{attr}' is not callable")
    return obj


def factory(name: str) -> Callable[..., nn.Module]:
    """``f(num_classes=10) -> nn.Module`` for an external model name."""
    kind, _, rest = name.partition(":")
    if kind == "torchvision":
        import torchvision

        def build(num_classes: int = 10) -> nn.Module:
            extra = {"aux_logits": False, "init_weights": True} if rest in _NO_AUX else {}
            return torchvision.models.get_model(rest, weights=None, num_classes=num_classes, **extra)
        return build
    if kind == "timm":
        timm = _timm()
        return lambda num_classes=10: timm.create_model(rest, pretrained=False, num_classes=num_classes)
    make = _user_factory(name)

    def build_user(num_classes: int = 10) -> nn.Module:
        try:
            takes = "num_classes" in inspect.signature(make).parameters
        except (TypeError, ValueError):
            takes = False
        net = make(num_classes=num_classes) if takes else make()
        if not isinstance(net, nn.Module):
            raise UserError(f"space.model={name} returned {type(net).__name__}, not a torch.nn.Module")
        return net
    return build_user


def min_side(name: str) -> int:
    """Smallest square input side an external network runs at (a known minimum, else 32)."""
    kind, _, rest = name.partition(":")
    return MIN_SIDES.get(rest, 32) if kind == "torchvision" else 32
