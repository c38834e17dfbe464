"""Typed options: every component's settings are a frozen dataclass, read from plain values.

:func:`parse` turns a mapping (from YAML presets and ``key=value`` overrides) into the
component's options dataclass: values are checked against the field types, and an unknown
key is an error naming the nearest valid one. :func:`to_plain` is the inverse (JSON-able).

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Options:
    ...     size: int = 10
    ...     grid: tuple[float, ...] = (0.5, 1.0)
    >>> parse(Options, {"size": "12", "grid": [0.25, 1]}, prefix="algo.")
    Options(size=12, grid=(0.25, 1.0))
    >>> parse(Options, {"sise": 3}, prefix="algo.", owner="algo=demo")
    Traceback (most recent call last):
    ...
    searchkit.core.errors.ConfigError: unknown key 'algo.sise' for algo=demo; did you mean 'algo.size'?
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from searchkit.core.errors import ConfigError, did_you_mean


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """A component without options."""


def fields(cls: type) -> dict[str, Any]:
    """``{name: resolved type}`` of an options dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def field_docs(cls: type) -> dict[str, str]:
    """Each field's comment in the dataclass's source (the lines just above it, or the one
    beside it): what ``--help`` says of a key."""
    import inspect
    import re
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    names = set(fields(cls))
    out, above = {}, []
    for line in lines[1:]:
        text = line.strip()
        if text.startswith("#"):
            above.append(text.lstrip("# ").strip())
            continue
        m = re.match(r"(\w+)\s*:", text)
        if m and m.group(1) in names:
            beside = text.split("#", 1)[1].strip() if "#" in text else ""
            out[m.group(1)] = " ".join([*above, beside]).strip()
        above = []
    return out


def parse(cls: type, values: Mapping[str, Any] | None, *, prefix: str = "", owner: str = "") -> Any:
    """An instance of the options dataclass ``cls`` from ``values`` (missing keys: defaults).

    Raises:
        ConfigError: an unknown key (naming the nearest), a value of the wrong type, or a
            value the dataclass itself refuses (its ``__post_init__`` raising ValueError).
    """
    values = dict(values or {})
    known = fields(cls)
    where = f" for {owner}" if owner else ""
    for key in values:
        if key not in known:
            raise ConfigError(f"unknown key '{prefix}{key}'{where}"
                              f"{did_you_mean(key, known, 0.5, prefix)}"
                              + ("" if known else f" ({owner or cls.__name__} takes no options)"))
    kwargs = {k: coerce(f"{prefix}{k}", v, known[k]) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{owner or prefix.rstrip('.')}: {exc}") from None


def to_plain(obj: Any) -> Any:
    """Dataclasses, tuples and mappings as JSON-able dicts and lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def _is_optional(hint: Any) -> tuple[bool, Any]:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return True, rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]
    return False, hint


def coerce(key: str, value: Any, hint: Any) -> Any:
    """``value`` as the type ``hint`` names (int, float, bool, str, tuples, dicts, Optional)."""
    optional, hint = _is_optional(hint)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key} needs a value")
    origin = typing.get_origin(hint)
    if origin is tuple or hint is tuple:
        args = typing.get_args(hint)
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        inner = [args[0]] * len(items) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if args and len(inner) != len(items):
            raise ConfigError(f"{key} must be a list of {len(inner)} values, got {value!r}")
        return tuple(coerce(key, v, t) for v, t in zip(items, inner or [Any] * len(items)))
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    name = getattr(hint, "__name__", str(hint))
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            raise TypeError
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if hint is str:
            if isinstance(value, (dict, list, tuple)):
                raise TypeError
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be {name}, got {value!r}") from None
    return value
