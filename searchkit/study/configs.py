"""A study's settings: stored at creation, read back on every continue, changed only where
allowed (``trials``, ``timeout``, ``device``, ...: ``config.RESUMABLE_KEYS``).

Example:
    >>> from searchkit.config import load_config
    >>> cfg = load_config(["algo=random", "storage='sqlite:///:memory:'"])
    >>> resolve_config(cfg)[1]  # no such study yet
    False
"""

from __future__ import annotations

import json
import warnings

import optuna

from searchkit import __version__
from searchkit.config import RESUMABLE_KEYS, RunConfig, changed_identity, load_config, parse_override
from searchkit.core.errors import ConfigError
from searchkit.study.keys import CONFIG_KEY, VERSION_KEY
from searchkit.study.storage import StudyError, exists, open_storage, study_names


def stored_config(study: optuna.Study) -> RunConfig:
    raw = study.user_attrs.get(CONFIG_KEY)
    if raw is None:
        raise StudyError(f"study '{study.study_name}' was not made by searchkit (no {CONFIG_KEY})")
    return load_config([], base=json.loads(raw))


def stored_base(cfg: RunConfig) -> dict | None:
    """The ``searchkit:base`` record of the study of ``cfg`` (path, sha256, costs), if any."""
    from searchkit.study.keys import BASE_KEY
    if not exists(cfg.storage):
        return None
    storage = open_storage(cfg.storage)
    if cfg.study_name not in study_names(storage):
        return None
    return optuna.load_study(study_name=cfg.study_name, storage=storage).user_attrs.get(BASE_KEY)


def resolve_config(cfg: RunConfig, overrides: list[str] | None = None) -> tuple[RunConfig, bool]:
    """The configuration a run will use, without creating anything.

    When the study of ``cfg`` exists its stored configuration wins; ``overrides`` may only
    change keys that do not define the search (trials, timeout, device, ...).

    Returns:
        (effective config, whether the study exists)
    """
    name = cfg.study_name
    if not exists(cfg.storage):  # nothing to continue, and nothing created before the run is set up
        return cfg, False
    storage = open_storage(cfg.storage)
    if name not in study_names(storage):
        return cfg, False
    stored = stored_config(optuna.load_study(study_name=name, storage=storage))
    effective = load_config(_resumable(overrides or []), base=stored.to_dict())
    requested = load_config(overrides or []) if overrides is not None else cfg
    changed = [k for k in changed_identity(stored, requested) if _given(k, overrides)]
    if changed:
        raise StudyError(
            f"study '{name}' exists with different settings ({changed[0]}); use a new study=NAME "
            f"or repeat the original settings to continue it")
    return effective, True


def open_study(cfg: RunConfig, sampler: optuna.samplers.BaseSampler | None = None,
               pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Open the study of a resolved ``cfg``, creating it (with its settings stored) if needed."""
    storage = open_storage(cfg.storage)
    name = cfg.study_name
    if name in study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        if study.user_attrs.get(CONFIG_KEY) != cfg.to_json():
            study.set_user_attr(CONFIG_KEY, cfg.to_json())
        return study
    directions = ["maximize"] + ["minimize"] * (len(cfg.objectives) - 1)
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                    directions=directions)
    except optuna.exceptions.DuplicatedStudyError:  # another driver created it meanwhile
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(cfg.objectives))
    study.set_user_attr(CONFIG_KEY, cfg.to_json())
    study.set_user_attr(VERSION_KEY, __version__)
    return study


def _resumable(overrides: list[str]) -> list[str]:
    return [o for o in overrides if parse_override(o)[0].split(".")[0] in RESUMABLE_KEYS]


def _given(key: str, overrides: list[str] | None) -> bool:
    """Was ``key`` (or its section's selector) named on the command line?"""
    if overrides is None:
        return True
    from searchkit.config import _normalise
    names = {_normalise(k) for k, _ in map(parse_override, overrides)}
    names |= {n.removesuffix(".name") for n in names if n.endswith(".name")}
    return any(key == n or key.startswith(n + ".") for n in names)


def check_name(name: str) -> str:
    if not name or any(c in name for c in "/\\\0") or name.startswith("."):
        raise ConfigError(f"bad study name '{name}': use letters, digits, '-', '_' or '.'")
    return name
