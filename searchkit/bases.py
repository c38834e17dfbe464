"""Base networks of spaces that prune one (``NeedsBase``): trained once per recipe and cached,
or read from ``base.checkpoint``.

The cache key is the base's recipe (model, data settings, epochs, lr, seed); the cached file
is written atomically, so a killed run never leaves half a checkpoint.

Example:
    >>> # searchkit train space.model=resnet20 base.epochs=1 out=r20.pt   (the command line)
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from searchkit.core.budget import TrainBudget
from searchkit.data import DataSplits
from searchkit.evaluate import evaluate_accuracy, finetune
from searchkit.models import build_base
from searchkit.models.checkpoint import CheckpointError, file_sha256, load_state_dict_file, load_weights, \
    save_state_dict

log = logging.getLogger("searchkit")


@dataclass
class Base:
    """A base network with its weights: where they came from and how accurate it is."""

    model: str
    module: nn.Module
    path: str
    accuracy: float
    sha256: str | None


def cache_key(cfg, model: str, data: DataSplits) -> str:
    recipe = {"model": model, "data": cfg.data.name, "root": cfg.data.root,
              "image_size": cfg.data.image_size, "val_fraction": cfg.data.val_fraction,
              "max_train": cfg.data.max_train, "options": cfg.data.options,
              "classes": data.num_classes, "epochs": cfg.base.epochs, "lr": cfg.base.lr,
              "seed": cfg.seed, "v": 1}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def cache_path(cfg, model: str, data: DataSplits) -> Path:
    return Path(cfg.base.cache_dir) / f"{model}-{cfg.data.name}-{cache_key(cfg, model, data)}.pt"


def prepare(cfg, model: str, base: nn.Module, data: DataSplits, device, *, quiet: bool = False,
            train: bool = True) -> Base:
    """Give ``base`` (built, untrained) its weights: ``base.checkpoint``, the cache, or training."""
    acc = None
    if cfg.base.checkpoint:
        path = Path(cfg.base.checkpoint)
        load_weights(base, load_state_dict_file(path), what=f"checkpoint {path} ({model})")
    else:
        path = cache_path(cfg, model, data)
        if path.is_file():
            load_weights(base, load_state_dict_file(path), what=f"cached base {path}")
        elif not train:
            raise CheckpointError(f"base checkpoint {path} is missing; run the search (or "
                                  "`searchkit train`) again to rebuild it")
        else:
            if not quiet:
                log.info("training base %s on %s for %s epochs (once; cached at %s)",
                         model, cfg.data.name, cfg.base.epochs, path)
            torch.manual_seed(cfg.seed)
            base.load_state_dict(build_base(model, num_classes=data.num_classes).state_dict())
            budget = TrainBudget(epochs=cfg.base.epochs, batch_size=cfg.finetune.batch_size,
                                 lr=cfg.base.lr, momentum=0.9, weight_decay=5e-4)
            metrics = finetune(base, data, budget, device=device, seed=cfg.seed,
                               progress=None if not quiet else False, desc=f"base {model}")
            acc = metrics["val_accuracy"]
            save_state_dict(base, path)
    base.to("cpu").eval()
    if acc is None:
        acc, _ = evaluate_accuracy(base, data.val, device=device)
        base.to("cpu")
    return Base(model, base, str(path), float(acc), file_sha256(path) if path.is_file() else None)
