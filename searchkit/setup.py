"""Everything a run needs besides the study, built from its settings: data, the space (and
its base network), the cost models and the limits.

:meth:`RunSetup.build` refuses a bad run - a missing data root, a base the space cannot
use, an unknown or inapplicable cost, a bound no architecture meets - before any base is
trained or any study touched. Workers do not build a setup: they get a
:class:`~searchkit.core.ports.WorkItem` and :func:`materialise` only the data, base and
space they train with.

Example:
    >>> from searchkit.config import load_config
    >>> cfg = load_config(["space.model=resnet20", "data=synthetic", "base.epochs=0"])
    >>> setup = RunSetup.build(cfg, quiet=True)
    >>> setup.base.model, len(setup.space.distributions()), sorted(setup.costs), setup.limits["flops"] > 0
    ('resnet20', 9, ['flops', 'params'], True)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from searchkit import bases
from searchkit.config import RunConfig
from searchkit.core import options as opts
from searchkit.core.costs import CostModel, Pricer, limits_of
from searchkit.core.errors import ConfigError
from searchkit.core.ports import BaseRef, DataSpec, WorkItem
from searchkit.core.space import NeedsBase, Space, SpaceEnv
from searchkit.data import DataSplits, dataset_options, load_dataset
from searchkit.evaluate import resolve_device
from searchkit.models import build_base, min_input_size
from searchkit.models.checkpoint import load_state_dict_file, load_weights
from searchkit.registry import COSTS, SPACES, resolve

log = logging.getLogger("searchkit")


def data_spec(cfg: RunConfig, space_cls: type) -> DataSpec:
    """The run's data as the loader is called: ``data.image_size``, or the dataset's default
    side raised to the smallest the space's networks take."""
    side = cfg.data.image_size
    if side is None:
        smallest = space_cls.min_data_side(cfg.space.options)
        if issubclass(space_cls, NeedsBase):
            smallest = max(smallest, min_input_size(space_cls.base_model(cfg.space.options)))
        side = max(int(dataset_options(cfg.data.name)["image_size"]), smallest)
    root = str(Path(cfg.data.root).expanduser().resolve()) if cfg.data.root else None
    return DataSpec(cfg.data.name, root, side, cfg.seed, cfg.data.val_fraction, cfg.data.max_train,
                    dict(cfg.data.options))


def load_data(spec: DataSpec) -> DataSplits:
    return load_dataset(spec.name, root=spec.root, image_size=spec.image_size, seed=spec.seed,
                        val_fraction=spec.val_fraction, max_train=spec.max_train, **spec.options)


def make_space(space_cls: type, name: str, options: Any, data: DataSplits, *, base=None,
               bounds=None, cache_dir: str | None = None) -> Space:
    env = SpaceEnv(num_classes=data.num_classes, in_channels=data.in_channels, image_size=data.image_size,
                   base=base, bounds=dict(bounds or {}), cache_dir=cache_dir)
    try:
        return space_cls.from_config(options, env)
    except ValueError as exc:
        raise ConfigError(f"space={name}: {exc}") from None


def cost_names(cfg: RunConfig, space: Space) -> list[str]:
    """The costs priced for every candidate: the space's own, those a constraint or an
    objective names, and latency whenever a target is set."""
    names = [*space.costs, *cfg.constraint, *cfg.objectives[1:]]
    if cfg.latency.target is not None:
        names.append("latency")
    return list(dict.fromkeys(names))


@dataclass
class RunSetup:
    cfg: RunConfig
    data: DataSplits
    data_spec: DataSpec
    space: Space
    costs: dict[str, CostModel]
    limits: dict[str, float]
    device: torch.device
    base: bases.Base | None = None  # the trained base network of a NeedsBase space

    @classmethod
    def build(cls, cfg: RunConfig, *, quiet: bool = False, train_base: bool = True,
              known_base: dict | None = None) -> "RunSetup":
        """``known_base``: a stored study's record of its base (found by its sha256)."""
        device = resolve_device(cfg.device)
        space_cls = SPACES.get(cfg.space.name)
        spec = data_spec(cfg, space_cls)
        data = load_data(spec)
        module = model = None
        if issubclass(space_cls, NeedsBase):
            model = space_cls.base_model(cfg.space.options)
            module = build_base(model, num_classes=data.num_classes)
            try:
                space_cls.check_base(module, cfg.space.options)
            except ValueError as exc:
                raise ConfigError(f"space={cfg.space.name} cannot use space.model={model}: {exc}") from None
        space = make_space(space_cls, cfg.space.name, cfg.space.options, data, base=module,
                           bounds=cfg.constraint, cache_dir=str(cfg.base.cache))
        # Costs need only the architecture: an impossible constraint is refused before any
        # checkpoint is read or any base is trained.
        costs = {name: COSTS.get(name).create(space, cfg) for name in cost_names(cfg, space)}
        limits = limits_of(costs, cfg.constraint)
        said = []

        def say_data() -> None:  # once, after every refusal: a refused run says one line
            if not quiet and not said:
                said.append(log.info("data: %s", data.describe()))
        base = None
        if module is not None:
            base = bases.prepare(cfg, model, module, data, device, quiet=quiet, train=train_base,
                                 known=known_base, before_training=say_data)
        say_data()
        return cls(cfg, data, spec, space, costs, limits, device, base)

    @property
    def pricer(self) -> Pricer:
        if not hasattr(self, "_pricer"):
            self._pricer = Pricer(self.costs, self.limits)
        return self._pricer

    def base_ref(self) -> BaseRef | None:
        if self.base is None:
            return None
        return BaseRef(self.base.model, str(Path(self.base.path).resolve()), self.data.num_classes,
                       self.base.sha256)

    def work_item(self, number: int, genome: dict, recipe: dict | None = None,
                  budget=None) -> WorkItem:
        """What a worker needs to train ``genome`` (paths absolute: workers run elsewhere)."""
        cache = str(self.cfg.base.cache.resolve())
        return WorkItem(number=number, space=self.cfg.space.name, space_target=SPACES.target(self.cfg.space.name),
                        options=opts.to_plain(self.space.options), genome=genome, data=self.data_spec,
                        budget=budget or self.cfg.finetune, seed=self.cfg.seed, base=self.base_ref(),
                        recipe=recipe, device=str(self.device), cache_dir=cache)


def materialise(item: WorkItem) -> tuple[DataSplits, Space]:
    """The data and space a worker trains ``item`` with (its base loaded from the checkpoint)."""
    space_cls = resolve(item.space_target)
    options = opts.parse(space_cls.Options, item.options, prefix="space.", owner=f"space={item.space}")
    data = load_data(item.data)
    module = None
    if item.base is not None:
        module = build_base(item.base.model, num_classes=item.base.num_classes)
        load_weights(module, load_state_dict_file(item.base.path), what=f"base checkpoint {item.base.path}")
        module.eval()
    return data, make_space(space_cls, item.space, options, data, base=module, cache_dir=item.cache_dir)
