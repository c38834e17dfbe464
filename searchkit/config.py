"""Run configuration: frozen dataclasses + YAML presets + Hydra-style ``key=value`` overrides.

Layering, lowest first: the dataclass defaults (of this module and of each component's
``Options``), the space preset ``spaces/<space>.yaml``, the study recipe
``studies/<study>.yaml`` (when one exists), then command-line overrides. Values are parsed
with ``yaml.safe_load``, so ``objectives=[accuracy,flops]`` is a list and ``trials=30`` an
int. The ``space.*`` and ``algo.*`` keys are the options of the chosen space and strategy
(``space.model=...``; ``space.options.model`` is the same key), ``constraint.<cost>`` bounds
any registered cost model. Unknown keys are errors that name the nearest valid key.

Example:
    >>> from searchkit.config import load_config
    >>> cfg = load_config(["algo=random", "trials=3", "constraint.flops=0.4"])
    >>> (cfg.algo.name, cfg.trials, cfg.constraint)
    ('random', 3, {'flops': 0.4})
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from searchkit.core import options as opts
from searchkit.core.budget import TrainBudget
from searchkit.core.errors import ConfigError, UnknownNameError, did_you_mean
from searchkit.registry import ALL, COSTS, SPACES, STRATEGIES

PRESET_DIR = Path(__file__).parent / "presets"
# The one default storage: a SQLite file under the working directory.
# The space searched when none is named (the registry's first entry: the quick start's).
DEFAULT_SPACE = SPACES.default()
DEFAULT_STORAGE = "sqlite:///studies/searchkit.db"


@dataclass(frozen=True)
class Section:
    """A registry choice (``space=``, ``algo=``) and its component's typed options."""

    name: str
    options: Any = None

    def to_dict(self) -> dict:
        return {"name": self.name, **opts.to_plain(self.options or {})}

    def __getattr__(self, item: str) -> Any:  # cfg.space.model reads the option
        if item.startswith("__") or item in ("name", "options"):
            raise AttributeError(item)
        try:
            return getattr(object.__getattribute__(self, "options"), item)
        except AttributeError:
            raise AttributeError(f"{self.name} has no option '{item}'") from None


@dataclass(frozen=True)
class DataConfig:
    # The dataset (a registered loader).
    name: str = "digits"
    # Its local folder (nothing is downloaded); digits and synthetic need none.
    root: str | None = None
    # Input side; unset: the dataset's own default (digits 16, others 32), raised to the
    # smallest size the model can take (VGG-16: 32).
    image_size: int | None = None
    # Share of the training pool held out to score candidates (when there is no val/ split).
    val_fraction: float = 0.2
    # At most this many training images (stratified); unset: all.
    max_train: int | None = None
    # The loader's own options (data.OPTION=V is the same key), e.g. data.augment=false.
    options: dict = field(default_factory=dict)


def user_cache() -> Path:
    """The per-user cache searchkit keeps trained bases in: ``$XDG_CACHE_HOME/searchkit``
    (``~/.cache/searchkit``), so every directory and every study shares them."""
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "searchkit"


@dataclass(frozen=True)
class BaseConfig:
    # A state_dict of the base model; when absent the base is trained once and cached.
    checkpoint: str | None = None
    # Epochs of the base's own training (when it is trained).
    epochs: int = 15
    # Peak learning rate of that training.
    lr: float = 0.05
    # Where trained bases are cached (keyed by model, data content and recipe); unset: the
    # per-user cache (~/.cache/searchkit/bases).
    cache_dir: str | None = None

    @property
    def cache(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else user_cache() / "bases"


@dataclass(frozen=True)
class LatencyConfig:
    # A profiled CPU: latency/<target>/predictor.json (`searchkit latency profile` + `fit`).
    target: str | None = None
    # Where profiles and predictors live (latency/<target>/).
    dir: str = "latency"
    # Safety margin of constraint.latency: a genome is feasible when its predicted
    # latency * (1 + margin) is within the bound. None: the predictor's own held-out error
    # (measured <= predicted * (1 + margin) for 90 % of held-out models; `latency fit`).
    # 0 bounds the prediction itself.
    margin: float | None = None


@dataclass(frozen=True)
class RayConfig:
    # `executor=ray` only. None: a local Ray instance started for the run and shut down
    # after it; else an existing cluster ("auto", "ray://host:10001", ...).
    address: str | None = None
    # CPUs each trial reserves (and its torch threads).
    cpus_per_trial: float = 1.0
    # Fractional values share one GPU between trials (0.5: two trials per GPU).
    gpus_per_trial: float = 0.0
    # Trials in flight at once; None: the cluster's CPUs / cpus_per_trial.
    max_concurrent: int | None = None
    # Retries of a candidate whose worker raised or died before it is recorded FAIL.
    max_failures: int = 2

    def __post_init__(self) -> None:
        if not self.cpus_per_trial > 0 or self.gpus_per_trial < 0:
            raise ValueError("ray.cpus_per_trial must be positive and ray.gpus_per_trial not negative, "
                             f"got {self.cpus_per_trial} and {self.gpus_per_trial}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError(f"ray.max_concurrent must be at least 1, got {self.max_concurrent}")
        if self.max_failures < 0:
            raise ValueError(f"ray.max_failures must not be negative, got {self.max_failures}")


@dataclass(frozen=True)
class RunConfig:
    # Study name; unset: SPACE-MODEL-DATA-ALGO (plus the cost objectives). The same name continues it.
    study: str | None = None
    # Any Optuna storage: sqlite:///FILE.db, postgresql://..., a journal FILE.log.
    storage: str = DEFAULT_STORAGE
    space: Section = field(default_factory=lambda: Section(DEFAULT_SPACE))
    algo: Section = field(default_factory=lambda: Section("abc"))
    data: DataConfig = field(default_factory=DataConfig)
    base: BaseConfig = field(default_factory=BaseConfig)
    finetune: TrainBudget = field(default_factory=TrainBudget)
    # Upper bounds by cost name. A number <= 1 is a fraction of the base's cost for
    # relative costs (flops, params); larger ones are absolute (suffixes K, M, G: 60M).
    constraint: dict = field(default_factory=dict)
    ray: RayConfig = field(default_factory=RayConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    # [accuracy] or accuracy then costs to minimise: [accuracy,flops] (a Pareto search).
    objectives: tuple[str, ...] = ("accuracy",)
    # Let strategies repair proposals that break a constraint (cheap cost check, no model);
    # false: record such proposals as infeasible instead.
    repair: bool = True
    # Evaluated (trained) candidates the study should hold when the search ends.
    trials: int = 20
    # Bound on candidates asked in total (infeasible and duplicate ones included), per trial budget.
    max_attempts_factor: int = 20
    # Stop asking after this many seconds; unset: no limit.
    timeout: float | None = None
    # Seeds the strategy, the data split and every fine-tuning (a seeded run repeats exactly).
    seed: int = 0
    # auto (CUDA when present), cpu, cuda, cuda:N.
    device: str = "auto"
    # Where candidates train: local (this process) or ray (Ray Tune workers; ray.*).
    executor: str = "local"
    # Stop hopeless candidates early: none, median, hyperband, halving.
    pruner: str = "none"
    # Progress bars: true, false; unset: on a terminal, never under CI.
    progress: bool | None = None
    # Trained weights kept in the study's artifact store: best (each new best), all, none.
    artifacts: str = "best"

    @property
    def study_name(self) -> str:
        """``study=``, or one built from what defines a study: the space (and what it searches
        from, e.g. its base network), the data, the algo, any cost objectives and any bound
        other than the preset's, so other settings never continue a stored study silently
        (``SPACE-MODEL-DATA-ALGO``, e.g. ``...-abc-latency4`` under a latency bound)."""
        if self.study:
            return self.study
        tag = SPACES.get(self.space.name).study_tag(self.space.options)
        parts = [self.space.name, tag, self.data.name, self.algo.name, *self.objectives[1:], *self._bound_tags()]
        return "-".join(p for p in parts if p)

    def _bound_tags(self) -> list[str]:
        """Bounds other than the space preset's, as name parts (``latency4``, ``flops0.3``);
        ``unbounded`` when a preset's bound was dropped and nothing replaces it."""
        preset = _preset_bounds(self.space.name)
        tags = [f"{k}{_short(v)}" for k, v in sorted(self.constraint.items()) if preset.get(k) != v]
        if preset and not self.constraint and len(self.objectives) == 1:
            tags.append("unbounded")
        return tags

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, Section) else opts.to_plain(value)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


# Sections whose keys are fixed dataclass fields.
_SECTIONS: dict[str, type] = {"data": DataConfig, "base": BaseConfig, "finetune": TrainBudget,
                              "ray": RayConfig, "latency": LatencyConfig}
# Sections whose keys depend on a registry choice (the component's options).
_CHOSEN = {"space": SPACES, "algo": STRATEGIES}
_DEFAULT_CHOICE = {"space": DEFAULT_SPACE, "algo": "abc"}
_ALIASES = {"constraint.latency_ms": "constraint.latency"}

# Keys that may change when a study is continued; every other key is part of the study's identity.
RESUMABLE_KEYS = {"trials", "timeout", "device", "executor", "progress", "max_attempts_factor",
                  "storage", "study", "artifacts", "ray"}
VALID = {
    "pruner": ("none", "median", "hyperband", "halving"),
    "artifacts": ("best", "all", "none"),
}


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


def _top_keys() -> list[str]:
    return [f.name for f in fields(RunConfig)]


def valid_keys() -> list[str]:
    """Every fixed dotted key (component options excluded: they depend on the choice)."""
    keys = [k for k in _top_keys() if k not in _SECTIONS and k not in _CHOSEN and k != "constraint"]
    for section, cls in _SECTIONS.items():
        keys += [f"{section}.{f.name}" for f in fields(cls)]
    return keys + ["space", "algo", "data", "space.name", "algo.name"]


def schema() -> list[tuple[str, str, str]]:
    """Every key a run takes, as ``(key, default, what it is)``: the fixed ones, each space's
    and each algo's options, and ``constraint.COST`` (what ``searchkit search --help`` lists)."""
    rows: list[tuple[str, str, str]] = []
    docs = opts.field_docs(RunConfig)
    defaults = RunConfig()
    for name in _top_keys():
        if name in _SECTIONS or name in _CHOSEN or name == "constraint":
            continue
        rows.append((name, _shown(getattr(defaults, name)), docs.get(name, "")))
    rows.append(("constraint.COST", "the preset's", "upper bound on a registered cost (" + ", ".join(COSTS.names())
                 + "): <= 1 a fraction of the base's, else absolute (60M); null drops a preset's bound; "
                 "latency in ms (constraint.latency_ms is the same key)"))
    for section, cls in _SECTIONS.items():
        sdocs, sdefaults = opts.field_docs(cls), cls()
        for name in opts.fields(cls):
            rows.append((f"{section}.{name}", _shown(getattr(sdefaults, name)), sdocs.get(name, "")))
    for section, registry in _CHOSEN.items():
        rows.append((section, _DEFAULT_CHOICE[section], f"{section}=NAME ({section}.name=NAME): "
                     f"{', '.join(registry.names())}; {section}.OPTION=V sets one of its options (below)"))
        for choice in registry.names():
            cls = getattr(registry.get(choice), "Options", opts.NoOptions)
            cdocs, cdefaults = opts.field_docs(cls), cls()
            for name in opts.fields(cls):
                rows.append((f"{section}.{name}", _shown(getattr(cdefaults, name)),
                             f"[{section}={choice}] {cdocs.get(name, '')}".strip()))
    return rows


def _shown(value: Any) -> str:
    value = opts.to_plain(value)
    return "null" if value is None else json.dumps(value) if isinstance(value, (list, dict, bool)) else str(value)


def _normalise(key: str) -> str:
    """The canonical form of a key: ``space=`` is ``space.name``, ``space.options.k`` is
    ``space.k``, ``data.k`` (not a field) is ``data.options.k``; unknown keys are refused."""
    key = _ALIASES.get(key, key)
    if key in ("space", "algo", "data"):
        return f"{key}.name"
    head, _, rest = key.partition(".")
    if head in _CHOSEN and rest:
        return f"{head}.{rest.removeprefix('options.')}" if rest != "options" else key
    if head == "constraint" and rest and "." not in rest:
        return key
    if head == "data" and rest and rest not in {f.name for f in fields(DataConfig)} \
            and not rest.startswith("options."):
        return f"data.options.{rest}"
    if head in _SECTIONS and rest:
        names = {f.name for f in fields(_SECTIONS[head])}
        if rest.split(".")[0] in names:
            return key
    elif not rest and head in _top_keys():
        return key
    raise ConfigError(f"unknown key '{key}'{did_you_mean(key, valid_keys(), 0.5)}")


def _is_section(path: str) -> bool:
    return path in _SECTIONS or path in _CHOSEN or path == "constraint" or \
        path in ("space.options", "algo.options", "data.options")


def _flatten(tree: dict, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """``{space: {model: x}}`` -> ``("space.model", x)``; other mappings stay values."""
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and _is_section(path):
            yield from _flatten(value, path + ".")
        else:
            yield path, value


def _set(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set '{key}': '{part}' is not a section")
    node[parts[-1]] = value


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


def _choice(kind: str, name: Any) -> str:
    if not isinstance(name, str):
        raise ConfigError(f"{kind} must be a name, got {name!r}")
    try:
        return ALL[kind].check(name)
    except UnknownNameError as exc:
        raise ConfigError(str(exc)) from None


def _component_options(section: str, tree: dict, lenient: bool) -> Section:
    values = dict(tree or {})
    name = _choice(section, values.pop("name", _DEFAULT_CHOICE[section]))
    values.update(values.pop("options", None) or {})  # searchkit 0.1 kept them under options
    cls = getattr(_CHOSEN[section].get(name), "Options", opts.NoOptions)
    if lenient:  # a stored study of an older version: settings it no longer has are dropped
        known = opts.fields(cls)
        values = {k: v for k, v in values.items() if k in known}
    return Section(name, opts.parse(cls, values, prefix=f"{section}.", owner=f"{section}={name}"))


def _constraints(tree: dict) -> dict[str, float]:
    out = {}
    for key, value in (tree or {}).items():
        key = _ALIASES.get(f"constraint.{key}", f"constraint.{key}").partition(".")[2]
        if key not in COSTS:
            raise ConfigError(f"unknown key 'constraint.{key}'{did_you_mean(key, COSTS.names(), 0.5, 'constraint.')} "
                              f"(costs: {', '.join(COSTS.names())})")
        if value is not None:
            out[key] = parse_quantity(f"constraint.{key}", value)
    return out


def _build(tree: dict, lenient: bool) -> RunConfig:
    kwargs: dict[str, Any] = {}
    hints = opts.fields(RunConfig)
    for name, hint in hints.items():
        value = tree.get(name)
        if name in _CHOSEN:
            kwargs[name] = _component_options(name, value, lenient)
        elif name == "constraint":
            kwargs[name] = _constraints(value)
        elif name in _SECTIONS:
            if lenient:
                known = opts.fields(_SECTIONS[name])
                value = {k: v for k, v in (value or {}).items() if k in known}
            kwargs[name] = opts.parse(_SECTIONS[name], value, prefix=f"{name}.", owner=name)
        elif name in tree:
            kwargs[name] = opts.coerce(name, value, hint)
    return RunConfig(**kwargs)


def _validate(cfg: RunConfig) -> None:
    _choice("data", cfg.data.name)
    _choice("executor", cfg.executor)
    for path, allowed in VALID.items():
        value = getattr(cfg, path)
        if value not in allowed:
            raise ConfigError(f"{path}={value} is not valid{did_you_mean(str(value), allowed)} "
                              f"(choices: {', '.join(allowed)})")
    if not cfg.objectives or cfg.objectives[0] != "accuracy":
        raise ConfigError("objectives must start with accuracy, e.g. objectives=[accuracy,flops]")
    for name in cfg.objectives[1:]:
        if name not in COSTS:
            raise ConfigError(f"objectives: unknown cost '{name}'{did_you_mean(name, COSTS.names())} "
                              f"(costs: {', '.join(COSTS.names())})")
    if len(set(cfg.objectives)) != len(cfg.objectives):
        raise ConfigError(f"objectives must not repeat, got {list(cfg.objectives)}")
    if len(cfg.objectives) > 1 and cfg.pruner != "none":
        raise ConfigError("pruners stop single-objective trials only; drop pruner= for "
                          f"objectives=[{','.join(cfg.objectives)}]")
    if cfg.latency.target is None and ("latency" in cfg.constraint or "latency" in cfg.objectives):
        raise ConfigError("latency needs a profiled target: add latency.target=NAME (see "
                          "`searchkit latency profile target=NAME` and `searchkit latency fit target=NAME`)")
    if cfg.latency.margin is not None and not 0 <= cfg.latency.margin < 1:
        raise ConfigError(f"latency.margin must be a fraction in [0, 1), got {cfg.latency.margin}")
    if cfg.trials < 1:
        raise ConfigError(f"trials must be at least 1, got {cfg.trials}")
    if not 0 < cfg.data.val_fraction < 1:
        raise ConfigError(f"data.val_fraction must lie in (0, 1), got {cfg.data.val_fraction}")
    if cfg.base.epochs < 0:
        raise ConfigError("finetune.epochs and base.epochs must not be negative")


def _short(value: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= div:
            return f"{value / div:g}{unit}"
    return f"{value:g}"


def _preset_bounds(space: str) -> dict[str, float]:
    """The bounds a space's preset sets (what a default study name leaves unsaid)."""
    if space not in _PRESET_BOUNDS:
        path = preset_path("spaces", space)
        tree = (read_yaml(path).get("constraint") or {}) if path is not None else {}
        _PRESET_BOUNDS[space] = {k: float(parse_quantity(f"constraint.{k}", v)) for k, v in tree.items()
                                 if v is not None}
    return _PRESET_BOUNDS[space]


_PRESET_BOUNDS: dict[str, dict[str, float]] = {}


def preset_path(kind: str, name: str) -> Path | None:
    """``spaces/NAME.yaml`` or ``studies/NAME.yaml``: the working directory first, then the package."""
    for root in (Path.cwd() / kind, PRESET_DIR / kind):
        path = root / f"{name}.yaml"
        if path.is_file():
            return path
    return None


def overrides_from_yaml(path: Path) -> list[str]:
    """A preset file as ``key=value`` overrides (values as JSON, which YAML reads back)."""
    return [f"{key}={json.dumps(value)}" for key, value in _flatten(read_yaml(path))]


def load_config(overrides: Iterable[str] = (), base: dict | None = None) -> RunConfig:
    """Resolve a run configuration from overrides (and an optional stored base tree)."""
    parsed = [(_normalise(k), v) for k, v in (parse_override(o) for o in overrides)]
    given = dict(parsed)
    tree: dict = {}
    if base is not None:
        tree = json.loads(json.dumps(base))
        constraint = tree.get("constraint") or {}
        tree["constraint"] = {_ALIASES.get(f"constraint.{k}", f"constraint.{k}").partition(".")[2]: v
                              for k, v in constraint.items()}
    preset_bounds: dict[str, Any] = {}
    if base is None:
        space = _choice("space", given.get("space.name", _DEFAULT_CHOICE["space"]))
        preset = preset_path("spaces", space)
        if preset is not None:
            for key, value in _flatten(read_yaml(preset)):
                key = _normalise(key)
                _set(tree, key, value)
                if key.startswith("constraint.") and value is not None:
                    preset_bounds[key] = value
        study = given.get("study")
        recipe = preset_path("studies", str(study)) if study is not None else None
        if recipe is not None:
            for key, value in _flatten(read_yaml(recipe)):
                _set(tree, _normalise(key), value)
                preset_bounds.pop(_normalise(key), None)  # the user's own recipe
        # A preset's bound is its default search, not a rule: it gives way to any bound or
        # cost objective the user asks for (a Pareto search under it collapses onto it).
        objectives = given.get("objectives")
        asked = any(k == "constraint" or k.startswith("constraint.") for k in given) or (
            isinstance(objectives, (list, tuple)) and len(objectives) > 1)
        for key in list(preset_bounds):
            if key in given:
                preset_bounds.pop(key)
            elif asked:
                tree.get("constraint", {}).pop(key.partition(".")[2], None)
                preset_bounds.pop(key)
    for key, value in parsed:
        _set(tree, key, value)
    if base is None:  # paths the user gave, absolute: the study works from any directory
        for section, key in (("base", "checkpoint"), ("base", "cache_dir"), ("data", "root")):
            value = (tree.get(section) or {}).get(key)
            if isinstance(value, str) and value:
                tree[section][key] = str(Path(value).expanduser().resolve())
    cfg = _build(tree, lenient=base is not None)
    _validate(cfg)
    # which bounds came from the space's preset alone (the runner says they are in force)
    object.__setattr__(cfg, "preset_bounds", {k.partition(".")[2]: v for k, v in preset_bounds.items()})
    return cfg


def changed_identity(stored: RunConfig, requested: RunConfig) -> list[str]:
    """Keys (outside RESUMABLE_KEYS) whose values differ between two configs."""
    a = dict(_flatten_values(stored.to_dict()))
    b = dict(_flatten_values(requested.to_dict()))
    return sorted(k for k in a.keys() | b.keys()
                  if k.split(".")[0] not in RESUMABLE_KEYS and a.get(k) != b.get(k))


def _flatten_values(tree: Mapping, prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, dict) and value and not key == "options":
            yield from _flatten_values(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def ci_mode() -> bool:
    return bool(os.environ.get("CI"))

