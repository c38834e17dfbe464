"""JSON-safe reads and writes of Optuna trial attributes, in one place.

Strategies store their bookkeeping (ABC roles, GA generations) in trial system attrs and
searchkit's runners store records and results in user attrs. All of it goes through this
module, so nothing else touches ``study._storage``. Values are round-tripped through JSON
before they are stored: a tuple comes back as a list from every storage (in-memory,
SQLite, PostgreSQL, journal), which keeps replays storage-independent.

On an RDB storage (SQLite, PostgreSQL) each Optuna write is its own transaction, and on
a busy disk one commit costs milliseconds to tens of milliseconds. :func:`write` stores
many attributes of a trial in one transaction and :func:`batched_params` a trial's
params; elsewhere both fall back to one write per value.

Example:
    >>> import optuna
    >>> from searchkit.study import attrs
    >>> study = optuna.create_study()
    >>> trial = study.ask()
    >>> attrs.write(study, trial._trial_id, user={attrs.CONSTRAINTS_KEY: (0.5,), "n": 1})
    >>> frozen = study.tell(trial, 1.0)
    >>> attrs.stored_constraints(frozen), frozen.user_attrs["n"]
    ([0.5], 1)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import optuna
from optuna.trial import FrozenTrial

INFEASIBLE_KEY = "searchkit:infeasible"
"""User attr: ``True`` when a candidate broke a constraint and was not trained."""
CONSTRAINTS_KEY = "searchkit:constraints"
"""User attr: constraint values (list of floats); ``<= 0`` means satisfied."""
REQUEUED_FROM_KEY = "searchkit:requeued_from"
"""User attr of a re-queued trial: the number of the stale trial it replaces."""
INTERRUPTED_KEY = "searchkit:interrupted"
"""User attr of a FAIL trial that was stopped from outside (Ctrl-C, a killed driver), not by
its candidate: it is re-queued, and it does not count in the trials' seed order."""
OPTUNA_CONSTRAINTS_KEY = "constraints"
"""System attr where Optuna's ``constraints_func`` samplers store constraint values."""


def _jsonable(key: str, value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"trial attr {key!r} must be JSON-serialisable without NaN/inf, got {value!r}"
        ) from exc


def _rdb(study: optuna.Study):
    """``(cache, backend)`` when the study is stored in an RDB storage (cache may be None)."""
    from optuna.storages import RDBStorage
    storage = study._storage
    backend = getattr(storage, "_backend", storage)
    if isinstance(backend, RDBStorage) and hasattr(backend, "_set_trial_attr_without_commit"):
        return (storage if storage is not backend else None), backend
    return None, None


def write(study: optuna.Study, trial_id: int, *, user: dict | None = None,
          system: dict | None = None) -> None:
    """Store many user and system attrs of one trial: one transaction on RDB storages."""
    user = {k: _jsonable(k, v) for k, v in (user or {}).items()}
    system = {k: _jsonable(k, v) for k, v in (system or {}).items()}
    if not user and not system:
        return
    _, backend = _rdb(study)
    if backend is not None:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session
        with _create_scoped_session(backend.scoped_session, True) as session:
            _updatable(backend, session, trial_id)
            for model, values in ((models.TrialUserAttributeModel, user), (models.TrialSystemAttributeModel, system)):
                _upsert(backend, session, model, trial_id, values)
        return
    for key, value in user.items():
        study._storage.set_trial_user_attr(trial_id, key, value)
    for key, value in system.items():
        study._storage.set_trial_system_attr(trial_id, key, value)


def _updatable(backend, session, trial_id: int):
    """The trial's row, checked once per transaction (Optuna checks it per value)."""
    from optuna.storages._rdb import models
    trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
    backend.check_trial_is_updatable(trial_id, trial.state)
    return trial


def _upsert(backend, session, model, trial_id: int, values: dict) -> None:
    """Insert-or-update many attributes of a trial in one statement (SQLite, PostgreSQL);
    one by one through Optuna elsewhere."""
    if not values:
        return
    import sqlite3
    name = backend.engine.name
    if name == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0):
        from sqlalchemy.dialects.sqlite import insert
    elif name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        for key, value in values.items():
            backend._set_trial_attr_without_commit(session, model, trial_id, key, value)
        return
    stmt = insert(model).values([{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                                 for k, v in values.items()])
    session.execute(stmt.on_conflict_do_update(index_elements=[model.trial_id, model.key],
                                               set_={"value_json": stmt.excluded.value_json}))


class _ParamBuffer:
    """Stands in for a trial's storage while it suggests: params are kept, not written."""

    def __init__(self, storage):
        self._storage = storage
        self.params: list[tuple] = []

    def set_trial_param(self, trial_id, name, value, distribution) -> None:
        self.params.append((trial_id, name, value, distribution))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


@contextmanager
def batched_params(trial: optuna.Trial) -> Iterator[None]:
    """Within the block, ``trial.suggest_*`` params are written in one transaction at its
    end (on RDB storages through Optuna's cached storage; elsewhere one by one)."""
    real = trial.storage
    buffer = _ParamBuffer(real)
    trial.storage = buffer
    try:
        yield
    finally:
        trial.storage = real
        _flush_params(trial.study, real, buffer.params)


def _flush_params(study: optuna.Study, storage, params: list[tuple]) -> None:
    if not params:
        return
    cache, backend = _rdb(study)
    infos = getattr(cache, "_studies", None)
    index = getattr(cache, "_trial_id_to_study_id_and_number", None)
    if backend is None or cache is not storage or infos is None or index is None \
            or not hasattr(backend, "_set_trial_param_without_commit"):
        for p in params:
            storage.set_trial_param(*p)
        return
    from optuna import distributions
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    with cache._lock:  # as _CachedStorage.set_trial_param: the study's distributions cache
        study_id, _ = index[params[0][0]]
        known = infos[study_id].param_distribution
        with _create_scoped_session(backend.scoped_session, True) as session:
            _updatable(backend, session, params[0][0])
            for trial_id, name, value, dist in params:
                if name in known:  # compatible with the study's earlier trials, as Optuna checks
                    distributions.check_distribution_compatibility(known[name], dist)
                    session.add(models.TrialParamModel(trial_id=trial_id, param_name=name, param_value=value,
                                                       distribution_json=distributions.distribution_to_json(dist)))
                else:  # the study's first value of this param: Optuna's own path looks up the others
                    backend._set_trial_param_without_commit(session, trial_id, name, value, dist, None)
        for _, name, _, dist in params:
            known.setdefault(name, dist)


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


def logical_number(trials: Sequence[FrozenTrial], number: int) -> int:
    """Trial ``number``'s place in an uninterrupted run: its number minus the interrupted
    trials before it. Samplers seed a trial's draws with it, so a run stopped (Ctrl-C, a
    killed driver) and started again proposes what an uninterrupted run does: the
    re-queued copy of an interrupted trial takes the place it had, and the trials after
    it draw what they would have drawn.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> stopped = study.ask()
        >>> stopped.set_user_attr(INTERRUPTED_KEY, True)
        >>> _ = study.tell(stopped, state=optuna.trial.TrialState.FAIL)
        >>> _ = study.tell(study.ask(), 1.0)
        >>> [logical_number(study.trials, n) for n in (0, 1, 2)]
        [0, 0, 1]
    """
    skipped = 0
    for t in trials:
        if t.number >= number:
            break
        if t.user_attrs.get(INTERRUPTED_KEY) and t.state.name == "FAIL":
            skipped += 1
    return number - skipped


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
