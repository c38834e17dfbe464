"""JSON-safe reads and writes of Optuna trial attributes, in one place.

Strategies keep their bookkeeping (ABC roles, GA generations) in trial system attrs and
searchkit's driver keeps results (infeasible flag, constraint values) in user attrs. All of
it goes through this module, so nothing else touches ``study._storage``. Values are
round-tripped through JSON before they are stored: a tuple comes back as a list from every
storage (in-memory, SQLite, PostgreSQL, journal), which keeps replays storage-independent.

Example:
    >>> import optuna
    >>> from searchkit import trial_attrs
    >>> study = optuna.create_study()
    >>> trial = study.ask()
    >>> trial_attrs.set_user_attr(study, trial._trial_id, trial_attrs.CONSTRAINTS_KEY, (0.5,))
    >>> frozen = study.tell(trial, 1.0)
    >>> trial_attrs.stored_constraints(frozen)
    [0.5]
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial

INFEASIBLE_KEY = "searchkit:infeasible"
"""User attr: ``True`` when a candidate broke a constraint and was not trained."""
CONSTRAINTS_KEY = "searchkit:constraints"
"""User attr: constraint values (list of floats); ``<= 0`` means satisfied."""
REQUEUED_FROM_KEY = "searchkit:requeued_from"
"""User attr of a re-queued trial: the number of the stale trial it replaces."""
OPTUNA_CONSTRAINTS_KEY = "constraints"
"""System attr where Optuna's ``constraints_func`` samplers store constraint values."""


def _jsonable(key: str, value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"trial attr {key!r} must be JSON-serialisable without NaN/inf, got {value!r}"
        ) from exc


def set_system_attr(study: optuna.Study, trial_id: int, key: str, value: Any) -> None:
    """Store a JSON value as a system attr of the trial with id ``trial_id``."""
    study._storage.set_trial_system_attr(trial_id, key, _jsonable(key, value))


def set_user_attr(study: optuna.Study, trial_id: int, key: str, value: Any) -> None:
    """Store a JSON value as a user attr of the trial with id ``trial_id``."""
    study._storage.set_trial_user_attr(trial_id, key, _jsonable(key, value))


def get_system_attr(trial: FrozenTrial, key: str, default: Any = None) -> Any:
    """A system attr of a frozen trial, or ``default`` when it is not set."""
    return trial.system_attrs.get(key, default)


def get_user_attr(trial: FrozenTrial, key: str, default: Any = None) -> Any:
    """A user attr of a frozen trial, or ``default`` when it is not set."""
    return trial.user_attrs.get(key, default)


def get_trial(study: optuna.Study, trial_id: int) -> FrozenTrial:
    """The trial as stored now (the copy Optuna hands to samplers may be older)."""
    return study._storage.get_trial(trial_id)


def all_trials(study: optuna.Study, use_cache: bool = True) -> list[FrozenTrial]:
    """All trials in number order, without deep copies (do not mutate them).

    With ``use_cache`` this is the list Optuna's own samplers read during an ``ask`` (it
    is refreshed at every ``ask``; outside one, pass ``use_cache=False`` for fresh data).
    """
    get = getattr(study, "_get_trials", None)
    if use_cache and get is not None:
        return get(deepcopy=False, use_cache=True)
    return study.get_trials(deepcopy=False)


def stored_constraints(trial: FrozenTrial) -> list[float]:
    """Constraint values searchkit stored on a trial (``<= 0`` is feasible).

    Reads the ``searchkit:constraints`` user attr. A trial flagged ``searchkit:infeasible``
    whose values are all satisfied (or absent) gets an extra ``1.0``, so the flag is never
    lost. This is the default ``constraints_func`` of every searchkit sampler.

    Example:
        >>> from optuna.trial import create_trial
        >>> stored_constraints(create_trial(value=1.0, user_attrs={INFEASIBLE_KEY: True}))
        [1.0]
    """
    values = [float(v) for v in trial.user_attrs.get(CONSTRAINTS_KEY) or ()]
    if trial.user_attrs.get(INFEASIBLE_KEY) and not any(v > 0 for v in values):
        values.append(1.0)
    return values


def optuna_constraints(trial: FrozenTrial) -> list[float]:
    """Constraint values in Optuna's system attrs: the ``constraints`` list written by
    ``constraints_func`` samplers plus any ``constraints:<name>`` set by ``set_constraint``."""
    values = [float(v) for v in trial.system_attrs.get(OPTUNA_CONSTRAINTS_KEY) or ()]
    prefix = OPTUNA_CONSTRAINTS_KEY + ":"
    values += [float(v) for k, v in trial.system_attrs.items() if k.startswith(prefix)]
    return values


def constraint_violation(
    trial: FrozenTrial,
    constraints_func: Callable[[FrozenTrial], Sequence[float]] | None = None,
) -> float:
    """Total violation (sum of positive constraint values); ``0.0`` means feasible.

    Combines Optuna's stored constraints with ``constraints_func(trial)`` (default
    :func:`stored_constraints`); the latter is skipped when a sampler already copied its
    output into the ``constraints`` system attr, so nothing is counted twice. A NaN
    constraint counts as an infinite violation.
    """
    values = optuna_constraints(trial)
    if OPTUNA_CONSTRAINTS_KEY not in trial.system_attrs:
        values += [float(v) for v in (constraints_func or stored_constraints)(trial)]
    return sum(math.inf if math.isnan(v) else v for v in values if not v <= 0)
