"""Name -> implementation registries for spaces, strategies, models and datasets.

Entries are declared as ``name -> "module:attribute"`` strings and imported only when
asked for, so ``searchkit list`` and ``--help`` stay fast and importing searchkit has no
side effects. A new component is one module plus one line here.

Example:
    >>> from searchkit.registry import MODELS
    >>> "resnet56" in MODELS.names()
    True
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any


class UnknownNameError(KeyError):
    """An unknown registry name; the message names the nearest valid one."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class Registry:
    """A lazy mapping from a public name to ``"module:attribute"``."""

    def __init__(self, kind: str, entries: dict[str, str]):
        self.kind = kind
        self._entries = dict(entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def register(self, name: str, target: str) -> None:
        """Add ``name -> "module:attribute"`` (for plugins and tests)."""
        self._entries[name] = target

    def check(self, name: str) -> str:
        if name not in self._entries:
            near = difflib.get_close_matches(str(name), self._entries, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'{hint} (choices: {', '.join(self.names())})"
            )
        return name

    def get(self, name: str) -> Any:
        module, _, attr = self._entries[self.check(name)].partition(":")
        return getattr(importlib.import_module(module), attr)


SPACES = Registry("space", {
    "channels": "searchkit.spaces.channels:ChannelSpace",
    "tinynet": "searchkit.spaces.tinynet:TinyNetSpace",
})

STRATEGIES = Registry("algo", {
    "abc": "searchkit.strategies.abc:ABCSampler",
    "tpe": "searchkit.strategies.optuna_builtin:make_tpe",
    "random": "searchkit.strategies.optuna_builtin:make_random",
    "ga": "searchkit.strategies.ga:GASampler",
    "nsga2": "searchkit.strategies.optuna_builtin:make_nsga2",
})

MODELS = Registry("model", {
    "vgg16": "searchkit.models.vgg:vgg16_cifar",
    "resnet20": "searchkit.models.resnet_cifar:resnet20",
    "resnet56": "searchkit.models.resnet_cifar:resnet56",
    "resnet110": "searchkit.models.resnet_cifar:resnet110",
    "resnet18": "searchkit.models.torchvision_nets:resnet18",
    "resnet50": "searchkit.models.torchvision_nets:resnet50",
    "mobilenet_v2": "searchkit.models.torchvision_nets:mobilenet_v2",
    "efficientnet_b0": "searchkit.models.efficientnet:efficientnet_b0",
    "tinynet_a": "searchkit.models.efficientnet:tinynet_a",
    "tinynet_b": "searchkit.models.efficientnet:tinynet_b",
    "tinynet_c": "searchkit.models.efficientnet:tinynet_c",
    "tinynet_d": "searchkit.models.efficientnet:tinynet_d",
    "tinynet_e": "searchkit.models.efficientnet:tinynet_e",
})

DATASETS = Registry("data", {
    "digits": "searchkit.data.digits:load_digits",
    "cifar10": "searchkit.data.cifar:load_cifar10",
    "imagefolder": "searchkit.data.imagefolder:load_imagefolder",
    "synthetic": "searchkit.data.synthetic:load_synthetic",
})

ALL = {"space": SPACES, "algo": STRATEGIES, "model": MODELS, "data": DATASETS}
