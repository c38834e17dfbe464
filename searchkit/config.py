"""Run configuration: frozen dataclasses + YAML presets + Hydra-style ``key=value`` overrides.

Layering, lowest first: the dataclass defaults below (the only place defaults are
declared), the space preset ``spaces/<space>.yaml``, the study recipe
``studies/<study>.yaml`` (when one exists), then command-line overrides. Values are parsed
with ``yaml.safe_load``, so ``objectives=[accuracy,flops]`` is a list and ``trials=30`` an
int. Unknown keys are errors that name the nearest valid key.

Example:
    >>> from searchkit.config import load_config
    >>> cfg = load_config(["space=channels", "algo=random", "trials=3"])
    >>> (cfg.space.name, cfg.algo.name, cfg.trials)
    ('channels', 'random', 3)
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

import yaml

from searchkit.registry import ALL, UnknownNameError

PRESET_DIR = Path(__file__).parent / "presets"


class ConfigError(ValueError):
    """A bad override, preset or value. Its message is one line, meant for the user."""


@dataclass(frozen=True)
class SpaceConfig:
    name: str = "channels"
    model: str = "resnet56"
    # Preserved fractions a prunable unit may take (ABCPruner: 10%..100% in steps of 10%).
    keep: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    # How kept channels are chosen when weights are inherited: "l1" (largest L1 norm) or "random".
    rule: str = "l1"
    # Options of spaces other than channels (space=tinynet: r/d/w grids, reference_size, ...).
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AlgoConfig:
    name: str = "abc"
    # Strategy keyword arguments (e.g. food_number for abc, n_startup_trials for tpe).
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DataConfig:
    name: str = "digits"
    root: str | None = None
    # Input side; unset: the dataset's own default (digits 16, others 32), raised to the
    # smallest size the model can take (VGG-16: 32).
    image_size: int | None = None
    val_fraction: float = 0.2
    max_train: int | None = None
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class BaseConfig:
    # A state_dict of the base model; when absent the base is trained once and cached.
    checkpoint: str | None = None
    epochs: int = 15
    lr: float = 0.05
    cache_dir: str = "studies/bases"


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: float = 1.0
    max_batches: int | None = None
    # NOTE: small batches: one epoch of the digits train split is then 36 steps, enough to
    # recover most of a pruned ResNet-56's accuracy (64/0.01 gave 0.69 vs 0.92 val).
    batch_size: int = 32
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 5e-4
    optimizer: str = "sgd"
    schedule: str = "cosine"


@dataclass(frozen=True)
class ConstraintConfig:
    # Upper bounds. A number <= 1 is a fraction of the base model; larger numbers are
    # absolute (suffixes K, M, G accepted: flops=60M).
    flops: float | None = None
    params: float | None = None
    # Predicted latency in milliseconds on latency.target (always absolute).
    latency_ms: float | None = None


@dataclass(frozen=True)
class LatencyConfig:
    # A profiled CPU: latency/<target>/predictor.json (`searchkit latency profile` + `fit`).
    target: str | None = None
    dir: str = "latency"
    # Safety margin of constraint.latency_ms: a genome is feasible when its predicted
    # latency * (1 + margin) is within the bound. None: the predictor's own held-out error
    # (measured <= predicted * (1 + margin) for 90 % of held-out models; `latency fit`).
    # 0 bounds the prediction itself.
    margin: float | None = None


@dataclass(frozen=True)
class RayConfig:
    # `executor=ray` only. None: a local Ray instance started for the run and shut down
    # after it; else an existing cluster ("auto", "ray://host:10001", ...).
    address: str | None = None
    cpus_per_trial: float = 1.0
    # Fractional values share one GPU between trials (0.5: two trials per GPU).
    gpus_per_trial: float = 0.0
    # Trials in flight at once; None: the cluster's CPUs / cpus_per_trial.
    max_concurrent: int | None = None
    # Retries of a candidate whose worker raised or died before it is recorded FAIL.
    max_failures: int = 2

    def __post_init__(self) -> None:
        if not self.cpus_per_trial > 0 or self.gpus_per_trial < 0:
            raise ConfigError("ray.cpus_per_trial must be positive and ray.gpus_per_trial not negative, "
                              f"got {self.cpus_per_trial} and {self.gpus_per_trial}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ConfigError(f"ray.max_concurrent must be at least 1, got {self.max_concurrent}")
        if self.max_failures < 0:
            raise ConfigError(f"ray.max_failures must not be negative, got {self.max_failures}")


@dataclass(frozen=True)
class RunConfig:
    study: str | None = None
    storage: str = "sqlite:///studies/searchkit.db"
    space: SpaceConfig = field(default_factory=SpaceConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    data: DataConfig = field(default_factory=DataConfig)
    base: BaseConfig = field(default_factory=BaseConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    constraint: ConstraintConfig = field(default_factory=ConstraintConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    objectives: tuple[str, ...] = ("accuracy",)
    # Let strategies repair proposals that break a constraint (cheap cost check, no model);
    # false: record such proposals as infeasible instead.
    repair: bool = True
    # Evaluated (trained) candidates the study should hold when the search ends.
    trials: int = 20
    # Bound on candidates asked in total (infeasible and duplicate ones included), per trial budget.
    max_attempts_factor: int = 20
    timeout: float | None = None
    seed: int = 0
    device: str = "auto"
    executor: str = "local"
    pruner: str = "none"
    progress: bool | None = None
    artifacts: str = "best"

    @property
    def study_name(self) -> str:
        return self.study or f"{self.space.name}-{self.algo.name}"

    def to_dict(self) -> dict:
        return _to_plain(dataclasses.asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


# Keys that may change when a study is continued; every other key is part of the study's identity.
RESUMABLE_KEYS = {"trials", "timeout", "device", "executor", "progress", "max_attempts_factor",
                  "storage", "study", "artifacts", "ray"}

# Names whose value is a registry choice; `space=channels` also selects the preset file.
_CHOICE_KEYS = {"space": "space.name", "algo": "algo.name", "data": "data.name",
                "space.model": "space.model"}
_CHOICES = {"space.name": "space", "algo.name": "algo", "data.name": "data",
            "space.model": "model"}
VALID = {
    "pruner": ("none", "median", "hyperband", "halving"),
    "executor": ("local", "ray"),
    "objectives": ("accuracy", "flops", "params", "latency"),
    "space.rule": ("l1", "random"),
    "finetune.optimizer": ("sgd", "adam"),
    "finetune.schedule": ("cosine", "constant", "step"),
    "artifacts": ("best", "all", "none"),
}


# Strategies whose fitness is a single number (see their docs for why). None now: abc
# decomposes several objectives (see strategies/abc.py), ga ranks them NSGA-II style.
SINGLE_OBJECTIVE_ALGOS: tuple[str, ...] = ()


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value`` and parse the value as YAML (``[a,b]`` -> list, ``3`` -> int)."""
    key, sep, raw = text.partition("=")
    key = key.strip().lstrip("+")
    if not sep or not key or not re.fullmatch(r"[A-Za-z_][\w.]*", key):
        raise ConfigError(f"bad override '{text}': expected key=value, e.g. trials=30")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"bad value in override '{text}': {str(exc).splitlines()[0]}") from None
    return key, value


def read_yaml(path: Path) -> dict:
    """Read a preset/recipe file; malformed YAML or a non-mapping is a one-line ConfigError."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"malformed YAML in {path}{where}: {problem}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings, not {type(data).__name__}")
    return data


def _flatten(tree: dict, prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in tree.items():
        path = f"{prefix}{key}"
        sub = _section_type(path)
        if isinstance(value, dict) and sub is not None:
            yield from _flatten(value, path + ".")
        else:
            yield path, value


def _section_type(path: str) -> type | None:
    """The dataclass type at a dotted path (None when the path is a leaf)."""
    cls: type = RunConfig
    for part in path.split("."):
        hints = {f.name: f for f in fields(cls)}
        if part not in hints:
            return None
        default = hints[part].default_factory if hints[part].default_factory is not dataclasses.MISSING else None
        sample = default() if default else None
        if sample is None or not dataclasses.is_dataclass(sample):
            return None
        cls = type(sample)
    return cls


def valid_keys() -> list[str]:
    """Every dotted key a user may set (free-form ``*.options.*`` excluded)."""
    keys: list[str] = []

    def walk(cls: type, prefix: str) -> None:
        for f in fields(cls):
            sub = _section_type(prefix + f.name)
            if sub is not None:
                walk(sub, prefix + f.name + ".")
            else:
                keys.append(prefix + f.name)

    walk(RunConfig, "")
    return keys + list(_CHOICE_KEYS)


def _check_key(key: str) -> str:
    key = _CHOICE_KEYS.get(key, key) if key in ("space", "algo", "data") else key
    head, _, rest = key.partition(".options.")
    if rest and head in ("algo", "data", "space"):
        return key
    if key in valid_keys():
        return key
    if key.startswith(("algo.", "data.", "space.")):
        # algo.food_number is short for algo.options.food_number
        section, _, name = key.partition(".")
        if name not in {f.name for f in fields(_section_type(section))}:
            return f"{section}.options.{name}"
    near = difflib.get_close_matches(key, valid_keys(), n=1, cutoff=0.5)
    hint = f"; did you mean '{near[0]}'?" if near else ""
    raise ConfigError(f"unknown key '{key}'{hint}")


def _set(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set '{key}': '{part}' is not a section")
    node[parts[-1]] = value


def _coerce(key: str, value: Any, default: Any, annotation: str) -> Any:
    """Check a leaf value against its declared type; errors name the key."""
    if value is None:
        if "None" in annotation:
            return None
        raise ConfigError(f"{key} needs a value")
    if key.startswith("constraint."):
        return parse_quantity(key, value)
    if "tuple" in annotation:
        items = value if isinstance(value, (list, tuple)) else [value]
        inner = float if "float" in annotation else str
        try:
            return tuple(inner(v) for v in items)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a list of {inner.__name__}s, got {value!r}") from None
    if annotation.startswith("dict"):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return value
    base = annotation.replace(" | None", "").strip()
    try:
        if base == "bool":
            if isinstance(value, bool):
                return value
            raise TypeError
        if base == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if base == "float":
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if base == "str":
            if isinstance(value, (dict, list)):
                raise TypeError
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be {base}, got {value!r}") from None
    return value


_SUFFIX = {"k": 1e3, "m": 1e6, "g": 1e9}


def parse_quantity(key: str, value: Any) -> float:
    """``0.5`` (fraction of base), ``60M`` or ``6e7`` (absolute) -> float > 0."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([kKmMgG%]?)\s*", value)
        if not match:
            raise ConfigError(f"{key} must be a number like 0.5, 60M or 50%, got '{value}'")
        number, suffix = match.groups()
        try:
            out = float(number)
        except ValueError:
            raise ConfigError(f"{key} must be a number like 0.5, 60M or 50%, got '{value}'") from None
        out = out / 100 if suffix == "%" else out * _SUFFIX.get(suffix.lower(), 1)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out = float(value)
    else:
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if not out > 0:
        raise ConfigError(f"{key} must be positive, got {value!r}")
    return out


def _build(cls: type, tree: dict, prefix: str = "") -> Any:
    kwargs = {}
    for f in fields(cls):
        path = prefix + f.name
        sub = _section_type(path)
        if sub is not None:
            kwargs[f.name] = _build(sub, tree.get(f.name, {}) or {}, path + ".")
        elif f.name in tree:
            default = f.default if f.default is not dataclasses.MISSING else None
            kwargs[f.name] = _coerce(path, tree[f.name], default, str(f.type))
    return cls(**kwargs)


def _validate(cfg: RunConfig) -> None:
    for path, kind in _CHOICES.items():
        section, _, name = path.partition(".")
        value = getattr(getattr(cfg, section), name)
        try:
            ALL[kind].check(value)
        except UnknownNameError as exc:
            raise ConfigError(str(exc)) from None
    for path, allowed in VALID.items():
        value: Any = cfg
        for part in path.split("."):
            value = getattr(value, part)
        for item in value if isinstance(value, tuple) else (value,):
            if item not in allowed:
                near = difflib.get_close_matches(str(item), allowed, n=1)
                hint = f"; did you mean '{near[0]}'?" if near else ""
                raise ConfigError(f"{path}={item} is not valid{hint} (choices: {', '.join(allowed)})")
    if not cfg.objectives or cfg.objectives[0] != "accuracy":
        raise ConfigError("objectives must start with accuracy, e.g. objectives=[accuracy,flops]")
    if len(cfg.objectives) > 1 and cfg.pruner != "none":
        raise ConfigError("pruners stop single-objective trials only; drop pruner= for "
                          f"objectives=[{','.join(cfg.objectives)}]")
    if cfg.latency.target is None and (cfg.constraint.latency_ms is not None or "latency" in cfg.objectives):
        raise ConfigError("latency needs a profiled target: add latency.target=NAME (see "
                          "`searchkit latency profile target=NAME` and `searchkit latency fit target=NAME`)")
    if cfg.latency.margin is not None and not 0 <= cfg.latency.margin < 1:
        raise ConfigError(f"latency.margin must be a fraction in [0, 1), got {cfg.latency.margin}")
    if len(set(cfg.objectives)) != len(cfg.objectives):
        raise ConfigError(f"objectives must not repeat, got {list(cfg.objectives)}")
    if len(cfg.objectives) > 1 and cfg.algo.name in SINGLE_OBJECTIVE_ALGOS:
        raise ConfigError(f"algo={cfg.algo.name} searches one objective; for objectives="
                          f"[{','.join(cfg.objectives)}] use algo=ga, nsga2, tpe or random "
                          "(or keep one objective and bound the others with constraint.*)")
    if cfg.space.name == "channels" and cfg.space.options:
        bad = sorted(cfg.space.options)[0]
        near = difflib.get_close_matches(bad, [f.name for f in fields(SpaceConfig)], n=1)
        hint = f"; did you mean 'space.{near[0]}'?" if near else ""
        raise ConfigError(f"unknown key 'space.{bad}' for space=channels{hint}")
    keep = cfg.space.keep
    if not keep or any(not 0 < k <= 1 for k in keep) or list(keep) != sorted(set(keep)):
        raise ConfigError(f"space.keep must be increasing fractions in (0, 1], got {list(keep)}")
    if cfg.trials < 1:
        raise ConfigError(f"trials must be at least 1, got {cfg.trials}")
    if not 0 < cfg.data.val_fraction < 1:
        raise ConfigError(f"data.val_fraction must lie in (0, 1), got {cfg.data.val_fraction}")
    if cfg.finetune.epochs < 0 or cfg.base.epochs < 0:
        raise ConfigError("finetune.epochs and base.epochs must not be negative")


def preset_path(kind: str, name: str) -> Path | None:
    """``spaces/NAME.yaml`` or ``studies/NAME.yaml``: the working directory first, then the package."""
    for root in (Path.cwd() / kind, PRESET_DIR / kind):
        path = root / f"{name}.yaml"
        if path.is_file():
            return path
    return None


def load_config(overrides: Iterable[str] = (), base: dict | None = None) -> RunConfig:
    """Resolve a run configuration from overrides (and an optional stored base tree)."""
    parsed = [parse_override(o) for o in overrides]
    given = {k: v for k, v in parsed}
    tree: dict = {}
    if base is not None:
        tree = json.loads(json.dumps(base))
    else:
        space = given.get("space", given.get("space.name", SpaceConfig.name))
        if not isinstance(space, str):
            raise ConfigError(f"space must be a name, got {space!r}")
        try:
            ALL["space"].check(space)
        except UnknownNameError as exc:
            raise ConfigError(str(exc)) from None
        path = preset_path("spaces", space)
        if path is not None:
            for key, value in _flatten(read_yaml(path)):
                _set(tree, _check_key(key), value)
        study = given.get("study")
        recipe = preset_path("studies", str(study)) if study is not None else None
        if recipe is not None:
            for key, value in _flatten(read_yaml(recipe)):
                _set(tree, _check_key(key), value)
    for key, value in parsed:
        _set(tree, _check_key(key), value)
    cfg = _build(RunConfig, tree)
    _validate(cfg)
    return cfg


def changed_identity(stored: RunConfig, requested: RunConfig) -> list[str]:
    """Keys (outside RESUMABLE_KEYS) whose values differ between two configs."""
    a = dict(_flatten_values(stored.to_dict()))
    b = dict(_flatten_values(requested.to_dict()))
    return sorted(k for k in a.keys() | b.keys()
                  if k.split(".")[0] not in RESUMABLE_KEYS and a.get(k) != b.get(k))


def _flatten_values(tree: dict, prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, dict) and value and not key == "options":
            yield from _flatten_values(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def ci_mode() -> bool:
    return bool(os.environ.get("CI"))
