"""Name -> implementation registries: spaces, cost models, strategies, runners, executors,
models and datasets.

Entries are declared as ``name -> "module:attribute"`` strings and imported only when
asked for, so ``searchkit list`` and ``--help`` stay fast and importing searchkit has no
side effects. A new component is one module plus one line here, or - for a plugin or a
test - one ``REGISTRY.register(name, "module:attribute")`` line in its own module, named in
the ``SEARCHKIT_PLUGINS`` environment variable (comma-separated modules, imported when a
registry is first read, in every process: the command line, Ray workers).

Example:
    >>> from searchkit.registry import MODELS, COSTS
    >>> "resnet56" in MODELS.names(), "flops" in COSTS
    (True, True)
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from searchkit.core.errors import UnknownNameError, did_you_mean

__all__ = ["ALL", "COSTS", "DATASETS", "EXECUTORS", "KERNEL_TYPES", "MODELS", "RUNNERS", "Registry", "SPACES",
           "STRATEGIES", "UnknownNameError", "load_plugins"]

_PLUGINS_LOADED = False


def load_plugins() -> None:
    """Import the modules named in ``SEARCHKIT_PLUGINS`` (once per process)."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for name in filter(None, (m.strip() for m in os.environ.get("SEARCHKIT_PLUGINS", "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            from searchkit.core.errors import UserError
            raise UserError(f"SEARCHKIT_PLUGINS names '{name}', which cannot be imported: {exc}") from None


class Registry:
    """A lazy mapping from a public name to ``"module:attribute"``."""

    def __init__(self, kind: str, entries: dict[str, str]):
        self.kind = kind
        self._entries = dict(entries)

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries

    def register(self, name: str, target: str) -> None:
        """Add ``name -> "module:attribute"`` (plugins and tests)."""
        self._entries[name] = target

    def check(self, name: str) -> str:
        if name not in self:
            raise UnknownNameError(f"unknown {self.kind} '{name}'{did_you_mean(str(name), self._entries)} "
                                   f"(choices: {', '.join(self.names())})")
        return name

    def default(self) -> str:
        """The first entry declared (the default choice, e.g. the quick start's space)."""
        return next(iter(self._entries))

    def target(self, name: str) -> str:
        """The ``"module:attribute"`` of ``name``."""
        return self._entries[self.check(name)]

    def get(self, name: str) -> Any:
        return resolve(self.target(name))


def resolve(target: str) -> Any:
    """Import ``"module:attribute"``."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


SPACES = Registry("space", {
    "channels": "searchkit.spaces.channels:ChannelSpace",
    "tinynet": "searchkit.spaces.tinynet:TinyNetSpace",
    "onexn": "searchkit.spaces.onexn:OneXNSpace",
    "bnas": "searchkit.spaces.bnas:BNASSpace",
})

COSTS = Registry("cost", {
    "flops": "searchkit.costs.models:FlopsCost",
    "params": "searchkit.costs.models:ParamsCost",
    "nonzero_macs": "searchkit.costs.models:NonzeroMacsCost",
    "nonzero_params": "searchkit.costs.models:NonzeroParamsCost",
    "ops": "searchkit.costs.models:OpsCost",
    "word_ops": "searchkit.costs.models:WordOpsCost",
    "size_bytes": "searchkit.costs.models:SizeCost",
    "latency": "searchkit.costs.latency_cost:LatencyCost",
})

STRATEGIES = Registry("algo", {
    "abc": "searchkit.strategies.abc:ABCSampler",
    "tpe": "searchkit.strategies.optuna_builtin:make_tpe",
    "random": "searchkit.strategies.optuna_builtin:make_random",
    "ga": "searchkit.strategies.ga:GASampler",
    "nsga2": "searchkit.strategies.optuna_builtin:make_nsga2",
    "darts": "searchkit.strategies.darts:DartsRunner",
})

RUNNERS = Registry("runner", {
    "asktell": "searchkit.strategies.asktell:AskTellRunner",
    "darts": "searchkit.strategies.darts:DartsRunner",
})

# Latency-predictor kernel types a space brings beside the built-in ones of
# searchkit.costs.kernels (a profile on a runtime that runs them times them too).
KERNEL_TYPES = Registry("kernel type", {
    "sparse_conv": "searchkit.spaces.onexn.latency:SPARSE_CONV",
    "xnor_conv": "searchkit.spaces.bnas.latency:XNOR_CONV",
})

EXECUTORS = Registry("executor", {
    "local": "searchkit.execution.local:run_locally",
    "ray": "searchkit.execution.ray_tune:run_with_ray",
})

class ModelRegistry(Registry):
    """The registered base networks, and three open forms any name may take:
    ``torchvision:NAME`` (a torchvision classifier), ``timm:NAME`` (when timm is installed)
    and ``package.module:factory`` (a callable taking ``num_classes``)."""

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name) or (isinstance(name, str) and ":" in name)

    def check(self, name: str) -> str:
        if isinstance(name, str) and ":" in name and name not in self._entries:
            from searchkit.models.external import check_external
            check_external(name)
            return name
        return super().check(name)

    def get(self, name: str) -> Any:
        if ":" in name and name not in self._entries:
            from searchkit.models.external import factory
            return factory(self.check(name))
        return super().get(name)


MODELS = ModelRegistry("model", {
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
    "fashion": "searchkit.data.fashion:load_fashion",
    "imagefolder": "searchkit.data.imagefolder:load_imagefolder",
    "synthetic": "searchkit.data.synthetic:load_synthetic",
})

ALL = {"space": SPACES, "cost": COSTS, "algo": STRATEGIES, "runner": RUNNERS, "executor": EXECUTORS,
       "model": MODELS, "data": DATASETS}
