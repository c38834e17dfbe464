"""Everything a run needs besides the study: data, the base network, the space, the limits.

A :class:`SearchContext` is rebuilt from a :class:`RunConfig` alone (plus the cached base
checkpoint), so a Ray worker or ``searchkit export`` reconstructs exactly what the driver
used.

Example:
    >>> from searchkit.config import load_config
    >>> cfg = load_config(["space.model=resnet20", "data=synthetic", "base.epochs=0"])
    >>> ctx = SearchContext.build(cfg, quiet=True)
    >>> ctx.space.name, len(ctx.space.units)
    ('channels', 9)
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from searchkit.config import ConfigError, RunConfig
from searchkit.costs import Costs
from searchkit.data import DataSplits, dataset_options, load_dataset
from searchkit.evaluate import TrainBudget, evaluate_accuracy, finetune, resolve_device
from searchkit.models import build_base, min_input_size
from searchkit.registry import SPACES

log = logging.getLogger("searchkit")


class CheckpointError(ValueError):
    """A base checkpoint that is missing, unreadable or of another model (one-line message)."""


def budget_of(cfg: RunConfig, epochs: float | None = None) -> TrainBudget:
    f = cfg.finetune
    return TrainBudget(epochs=f.epochs if epochs is None else epochs, max_batches=f.max_batches if epochs is None else None,
                       batch_size=f.batch_size, lr=f.lr, momentum=f.momentum,
                       weight_decay=f.weight_decay, optimizer=f.optimizer, schedule=f.schedule)


def load_state_dict_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds no state_dict")
    return state


def load_weights(model: nn.Module, state: dict, *, what: str) -> None:
    """Strict load with a one-line error naming the first mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or wrong:
        if wrong:
            k = wrong[0]
            why = f"{k} has shape {tuple(state[k].shape)}, expected {tuple(own[k].shape)}"
        elif missing:
            why = f"{len(missing)} keys missing (first: {missing[0]})"
        else:
            why = f"{len(extra)} unexpected keys (first: {extra[0]})"
        raise CheckpointError(f"{what} does not fit this model: {why}")
    model.load_state_dict(state)


def _base_key(cfg: RunConfig, data: DataSplits) -> str:
    recipe = {"model": cfg.space.model, "data": cfg.data.name, "root": cfg.data.root,
              "image_size": cfg.data.image_size, "val_fraction": cfg.data.val_fraction,
              "max_train": cfg.data.max_train, "options": cfg.data.options,
              "classes": data.num_classes, "epochs": cfg.base.epochs, "lr": cfg.base.lr,
              "seed": cfg.seed, "v": 1}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def input_side(cfg: RunConfig) -> int:
    """``data.image_size``, or the dataset's default raised to the model's smallest input."""
    if cfg.data.image_size is not None:
        return cfg.data.image_size
    return max(int(dataset_options(cfg.data.name)["image_size"]), min_input_size(cfg.space.model))


def constraint_limits(cfg: RunConfig, space, latency=None) -> dict[str, float]:
    """Absolute constraint bounds; fractions (<= 1) are taken of the base's costs
    (``latency`` bounds are always milliseconds).

    Raises:
        ConfigError: when no architecture of the space can meet a bound.
    """
    base = space.base_costs()
    out = {}
    for name in ("flops", "params"):
        value = getattr(cfg.constraint, name)
        if value is not None:
            out[name] = value * getattr(base, name) if value <= 1 else value
    lowest = space.min_costs()
    for name, bound in out.items():
        if getattr(lowest, name) > bound:
            raise ConfigError(
                f"impossible constraint: {name} <= {bound:,.0f} but the smallest architecture of "
                f"this space has {getattr(lowest, name):,} {name} (base: {getattr(base, name):,})")
    if cfg.constraint.latency_ms is not None:
        margin = latency_margin(cfg, latency)
        bound = float(cfg.constraint.latency_ms) / (1 + margin)
        fastest = latency.min_ms()
        if fastest > bound:
            raise ConfigError(
                f"impossible constraint: latency <= {cfg.constraint.latency_ms:g} ms on target "
                f"'{cfg.latency.target}' (predicted <= {bound:.3g} ms with latency.margin={margin:.3g}) but the "
                f"smallest architecture of this space is predicted at {fastest:.3g} ms "
                f"(base: {latency.base_ms():.3g} ms)")
        out["latency"] = bound
    return out


def latency_margin(cfg: RunConfig, latency) -> float:
    """``latency.margin``, or by default the predictor's held-out 90th-percentile
    under-prediction (0 for a predictor fitted without enough calibration models)."""
    if cfg.latency.margin is not None:
        return float(cfg.latency.margin)
    return float(latency.predictor.meta.get("heldout", {}).get("margin_p90", 0.0))


def genome_latency(cfg: RunConfig, space):
    """The latency model of ``latency.target`` for ``space`` (``None`` without a target)."""
    if cfg.latency.target is None:
        return None
    from searchkit.costs.genome_latency import GenomeLatency
    from searchkit.costs.profiling import load_predictor
    try:
        return GenomeLatency(load_predictor(cfg.latency.target, cfg.latency.dir), space,
                             cache_dir=cfg.base.cache_dir)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


@dataclass
class SearchContext:
    cfg: RunConfig
    data: DataSplits
    base: nn.Module | None  # None for spaces whose candidates train from scratch
    space: object
    device: torch.device
    base_path: str
    base_accuracy: float | None
    limits: dict[str, float]
    latency: object = None  # GenomeLatency when latency.target is set

    @classmethod
    def build(cls, cfg: RunConfig, *, quiet: bool = False, train_base: bool = True) -> "SearchContext":
        device = resolve_device(cfg.device)
        data = load_dataset(cfg.data.name, root=cfg.data.root, image_size=input_side(cfg),
                            seed=cfg.seed, val_fraction=cfg.data.val_fraction,
                            max_train=cfg.data.max_train, **cfg.data.options)
        space_cls = SPACES.get(cfg.space.name)
        if getattr(space_cls, "trains_from_scratch", False):
            try:
                space = space_cls.for_run(cfg, data)
            except ValueError as exc:
                raise ConfigError(f"space={cfg.space.name}: {exc}") from None
            latency = genome_latency(cfg, space)
            return cls(cfg=cfg, data=data, base=None, space=space, device=device, base_path="",
                       base_accuracy=None, limits=constraint_limits(cfg, space, latency), latency=latency)
        base = build_base(cfg.space.model, num_classes=data.num_classes)
        # Costs need only the architecture: an impossible constraint is refused before any
        # checkpoint is read or any base is trained.
        space = space_cls(cfg.space, base, (data.in_channels, data.image_size, data.image_size))
        latency = genome_latency(cfg, space)
        limits = constraint_limits(cfg, space, latency)
        acc = None
        if cfg.base.checkpoint:
            path = Path(cfg.base.checkpoint)
            load_weights(base, load_state_dict_file(path), what=f"checkpoint {path} ({cfg.space.model})")
        else:
            path = Path(cfg.base.cache_dir) / f"{cfg.space.model}-{cfg.data.name}-{_base_key(cfg, data)}.pt"
            if path.is_file():
                load_weights(base, load_state_dict_file(path), what=f"cached base {path}")
            elif not train_base:
                raise CheckpointError(f"base checkpoint {path} is missing; run the search (or "
                                      "`searchkit train`) again to rebuild it")
            else:
                if not quiet:
                    log.info("training base %s on %s for %s epochs (once; cached at %s)",
                             cfg.space.model, cfg.data.name, cfg.base.epochs, path)
                torch.manual_seed(cfg.seed)
                base.load_state_dict(build_base(cfg.space.model, num_classes=data.num_classes).state_dict())
                budget = TrainBudget(epochs=cfg.base.epochs, batch_size=cfg.finetune.batch_size,
                                     lr=cfg.base.lr, momentum=0.9, weight_decay=5e-4)
                metrics = finetune(base, data, budget, device=device, seed=cfg.seed,
                                   progress=None if not quiet else False, desc=f"base {cfg.space.model}")
                acc = metrics["val_accuracy"]
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                torch.save({k: v.detach().cpu() for k, v in base.state_dict().items()}, tmp)
                tmp.replace(path)  # atomic: a killed run never leaves half a checkpoint
        base.to("cpu").eval()
        if acc is None:
            acc, _ = evaluate_accuracy(base, data.val, device=device)
            base.to("cpu")
        return cls(cfg=cfg, data=data, base=base, space=space, device=device, base_path=str(path),
                   base_accuracy=float(acc), limits=limits, latency=latency)

    def measures(self, genome: dict, costs: Costs | None = None) -> dict[str, float]:
        """The genome's costs by objective name: flops, params and (with a target) latency in ms."""
        costs = costs or self.space.costs(genome)
        out = {"flops": costs.flops, "params": costs.params}
        if self.latency is not None:
            out["latency"] = self.latency.ms(genome)
        return out

    def violations(self, costs: Costs, genome: dict | None = None) -> dict[str, float]:
        """Constraint values as Optuna wants them: <= 0 feasible (relative excess over the bound)."""
        out = {}
        for name, bound in self.limits.items():
            value = self.latency.ms(genome) if name == "latency" else getattr(costs, name)
            out[name] = value / bound - 1.0
        return out
