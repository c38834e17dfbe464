"""Base networks of spaces that prune one (``NeedsBase``): trained once per recipe and cached,
or read from ``base.checkpoint``.

The cache key is the base's recipe: the model, the data's content (a fingerprint of the
images and labels, or of the files, and of how they are prepared: new images under the
same root train a new base) and the training settings. The cached file is written
atomically, so a killed run never leaves half a checkpoint.

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
    """The base's recipe - model, the data's content (not its path), the training settings."""
    recipe = {"model": model, "data": cfg.data.name, "content": data.fingerprint(),
              "classes": data.num_classes, "epochs": cfg.base.epochs, "lr": cfg.base.lr,
              "batch_size": cfg.finetune.batch_size, "seed": cfg.seed, "v": 2}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def cache_path(cfg, model: str, data: DataSplits) -> Path:
    return cfg.base.cache / f"{model}-{cfg.data.name}-{cache_key(cfg, model, data)}.pt"


def find(cfg, model: str, known: dict | None) -> Path | None:
    """The file of a base a study recorded (``known``: its ``path`` and ``sha256``) when it is
    not where its recipe says: at the recorded path, or anywhere in the cache with that sha256."""
    if not known or not known.get("sha256"):
        return None
    candidates = [Path(known["path"])] if known.get("path") else []
    if cfg.base.cache.is_dir():
        candidates += sorted(cfg.base.cache.glob(f"{model}-*.pt"))
    for path in candidates:
        if path.is_file() and file_sha256(path) == known["sha256"]:
            return path
    return None


def prepare(cfg, model: str, base: nn.Module, data: DataSplits, device, *, quiet: bool = False,
            train: bool = True, known: dict | None = None, before_training=None) -> Base:
    """Give ``base`` (built, untrained) its weights: ``base.checkpoint``, the cache (or, for a
    stored study, the file its record names by sha256), or training."""
    acc = None
    if cfg.base.checkpoint:
        path = Path(cfg.base.checkpoint)
        if not path.is_file() and (found := find(cfg, model, known)) is not None:
            path = found  # the checkpoint moved, or the study is read on another machine
        load_weights(base, load_state_dict_file(path), what=f"checkpoint {path} ({model})")
    else:
        path = cache_path(cfg, model, data)
        if not path.is_file() and (found := find(cfg, model, known)) is not None:
            path = found
        if path.is_file():
            load_weights(base, load_state_dict_file(path), what=f"cached base {path}")
        elif not train:
            raise CheckpointError(f"base checkpoint {path} is missing; run the search (or "
                                  "`searchkit train`) again to rebuild it")
        else:
            if before_training is not None:
                before_training()
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
            if path.is_file():
                # another run cached this base while this one trained (two searches, one
                # cache): take theirs, so every study of the recipe names one file
                load_weights(base, load_state_dict_file(path), what=f"cached base {path}")
                acc = None
            else:
                save_state_dict(base, path)
    base.to("cpu").eval()
    if acc is None:
        acc, _ = evaluate_accuracy(base, data.val, device=device)
        base.to("cpu")
    return Base(model, base, str(path), float(acc), file_sha256(path) if path.is_file() else None)
