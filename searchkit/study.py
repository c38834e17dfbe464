"""Studies: storage URLs, create/open/continue, stale trials, heartbeats.

The Optuna study is the single source of truth: the run configuration, genomes, costs,
metrics and artifact references all live in its storage, so continuing a search is just
opening the study again.

Example:
    >>> from searchkit.study import open_storage
    >>> storage = open_storage("sqlite:///:memory:")
    >>> type(storage).__name__
    'RDBStorage'
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from searchkit import __version__
from searchkit.config import ConfigError, RunConfig, changed_identity, load_config
from searchkit.trial_attrs import get_system_attr, set_system_attr, set_user_attr

# User-attribute keys written by searchkit (one place, so report/export read the same names).
CONFIG_KEY = "searchkit:config"
VERSION_KEY = "searchkit:version"
BASE_KEY = "searchkit:base"
GENOME = "genome"
ARCHID = "archid"
FLOPS = "flops"
PARAMS = "params"
LATENCY = "latency"  # predicted milliseconds on latency.target
INFEASIBLE = "searchkit:infeasible"
DUPLICATE_OF = "searchkit:duplicate_of"
EVALUATED = "searchkit:evaluated"
REQUEUED_FROM = "searchkit:requeued_from"
FAIL_REASON = "searchkit:fail_reason"
HEARTBEAT = "searchkit:heartbeat"
DRIVER = "searchkit:driver"

HEARTBEAT_INTERVAL_S = 10.0
GRACE_PERIOD_S = 60.0
MAX_REQUEUES = 2


class StudyError(ValueError):
    """A study that cannot be opened or continued as asked (one-line message)."""


def open_storage(url: str) -> BaseStorage:
    """An Optuna storage from a URL or path.

    ``sqlite:///path.db`` and ``postgresql://...`` give an RDB storage; a path ending in
    ``.log`` or ``.jsonl`` (or ``journal:///path``) gives a journal file storage.
    """
    if url.startswith("journal://") or url.endswith((".log", ".jsonl")):
        path = url.removeprefix("journal://")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # NOTE: a generous lock timeout lets a report or a second reader share the file.
        return RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    if url.startswith(("postgresql", "postgres://", "mysql")):
        url = _with_installed_driver(url)
        try:
            return RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except ModuleNotFoundError as exc:
            raise StudyError(f"storage {url.split('://')[0]} needs its driver: "
                             f"pip install 'searchkit[postgres]' ({exc.name} missing)") from None
        except Exception as exc:  # connection refused, bad credentials, ...
            raise StudyError(f"cannot open storage {_redact(url)}: {str(exc).splitlines()[0]}") from None
    raise StudyError(f"unsupported storage '{url}': use sqlite:///FILE.db, postgresql://..., "
                     "or a journal file ending in .log")


def _with_installed_driver(url: str) -> str:
    """SQLAlchemy reads a bare ``postgresql://`` as psycopg 3; the ``postgres`` extra brings
    psycopg2, so name it when psycopg 3 is not installed."""
    import importlib.util
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare) and importlib.util.find_spec("psycopg") is None \
                and importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + url[len(bare):]
    return url


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def study_names(storage: BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


def load_existing(name: str, storage_url: str) -> optuna.Study:
    """Open a study that must exist; the error names the studies that do."""
    storage = open_storage(storage_url)
    names = study_names(storage)
    if name not in names:
        listed = ", ".join(names) if names else "none"
        raise StudyError(f"no study '{name}' in {_redact(storage_url)} (studies there: {listed})")
    return optuna.load_study(study_name=name, storage=storage)


def stored_config(study: optuna.Study) -> RunConfig:
    raw = study.user_attrs.get(CONFIG_KEY)
    if raw is None:
        raise StudyError(f"study '{study.study_name}' was not made by searchkit (no {CONFIG_KEY})")
    return load_config([], base=json.loads(raw))


def resolve_config(cfg: RunConfig, overrides: list[str] | None = None) -> tuple[RunConfig, bool]:
    """The configuration a run will use, without creating anything.

    When the study of ``cfg`` exists its stored configuration wins; ``overrides`` may only
    change keys that do not define the search (trials, timeout, device, ...).

    Returns:
        (effective config, whether the study exists)
    """
    storage = open_storage(cfg.storage)
    name = cfg.study_name
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
    from searchkit.config import RESUMABLE_KEYS, parse_override
    return [o for o in overrides if parse_override(o)[0].split(".")[0] in RESUMABLE_KEYS]


def _given(key: str, overrides: list[str] | None) -> bool:
    """Was ``key`` (or its section's selector) named on the command line?"""
    if overrides is None:
        return True
    from searchkit.config import _CHOICE_KEYS, parse_override
    names = {_CHOICE_KEYS.get(k, k) for k, _ in map(parse_override, overrides)}
    return any(key == n or key.startswith(n + ".") for n in names)


# --- Trials left RUNNING by a crash ------------------------------------------------------


def _driver_identity() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid())}


def _process_start(pid: int) -> str | None:
    """Start time of a process (Linux /proc), so a reused pid is not mistaken for a live driver."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


# A trial with neither a driver tag nor params never got past ``study.ask``: a live driver
# tags it within milliseconds, so after this long it was left by a killed one.
UNTAGGED_GRACE_S = 5.0


def _is_stale(trial: FrozenTrial, now: float, grace_s: float) -> bool:
    driver = get_system_attr(trial, DRIVER, None)
    start = trial.datetime_start.timestamp() if trial.datetime_start else now
    if driver is None and not trial.params:
        return now - start > UNTAGGED_GRACE_S
    if driver and driver.get("host") == socket.gethostname():
        # Same machine: the driver is alive iff its pid exists with the same start time.
        if driver.get("pid") == os.getpid():
            return False
        return _process_start(int(driver["pid"])) != driver.get("start")
    beat = get_system_attr(trial, HEARTBEAT, None)
    return now - (beat if beat is not None else start) > grace_s


def recover_stale_trials(study: optuna.Study, grace_s: float = GRACE_PERIOD_S) -> list[tuple[int, int | None]]:
    """Fail trials whose driver died, and re-queue each (with its strategy role) once more.

    Returns:
        (failed trial number, re-queued as number-or-None) pairs.
    """
    now = time.time()
    out: list[tuple[int, int | None]] = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _is_stale(trial, now, grace_s):
            continue
        out.append((trial.number, fail_trial(study, trial, "driver stopped while the trial ran", requeue=True)))
    return out


def fail_trial(study: optuna.Study, trial: FrozenTrial | optuna.Trial, reason: str, *,
               requeue: bool) -> int | None:
    """Record ``trial`` FAIL with ``reason`` (and, with ``requeue``, enqueue it once more).

    A trial whose driver died between marking its result evaluated and telling it carries
    the mark; a FAIL never counts as evaluated, so the mark is cleared. Returns the number
    of the re-queued trial, if any.
    """
    set_user_attr(study, trial._trial_id, FAIL_REASON, reason)
    if trial.user_attrs.get(EVALUATED):
        set_user_attr(study, trial._trial_id, EVALUATED, False)
    frozen = study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    return requeue_trial(study, frozen) if requeue else None


def requeue_trial(study: optuna.Study, trial: FrozenTrial) -> int | None:
    """Enqueue a copy of ``trial`` so the same candidate is evaluated again (bounded)."""
    retries = int(trial.user_attrs.get("searchkit:retries", 0))
    if retries >= MAX_REQUEUES or not trial.params:
        return None
    keep = {k: v for k, v in trial.user_attrs.items()
            if k in (GENOME, ARCHID, FLOPS, PARAMS, LATENCY, "flops_ratio", "params_ratio", "latency_ratio")}
    study.enqueue_trial(trial.params, user_attrs={
        **keep, REQUEUED_FROM: trial.number, "searchkit:retries": retries + 1,
    }, skip_if_exists=False)
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return waiting[-1].number if waiting else None


class DriverTag(optuna.samplers.BaseSampler):
    """Wraps the study's sampler so a new trial is marked with this driver's identity in
    ``before_trial`` - within ``study.ask`` itself, leaving no window in which a killed
    driver's trial would look alive."""

    def __init__(self, inner: optuna.samplers.BaseSampler, heartbeat: "Heartbeat"):
        self.inner = inner
        self._heartbeat = heartbeat

    def __getattr__(self, name: str) -> Any:  # set_feasibility, colony, ... of the inner sampler
        return getattr(self.inner, name)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._heartbeat.add(trial._trial_id)
        self.inner.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self.inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


class Heartbeat:
    """Marks the trials this driver runs as alive (driver identity + a timestamp every few seconds)."""

    def __init__(self, study: optuna.Study, interval_s: float = HEARTBEAT_INTERVAL_S):
        self.study = study
        self.interval_s = interval_s
        self._ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._identity = _driver_identity()
        self._thread = threading.Thread(target=self._run, name="searchkit-heartbeat", daemon=True)
        self._thread.start()

    def add(self, trial_id: int) -> None:
        set_system_attr(self.study, trial_id, DRIVER, self._identity)
        set_system_attr(self.study, trial_id, HEARTBEAT, time.time())
        with self._lock:
            self._ids.add(trial_id)

    def remove(self, trial_id: int) -> None:
        with self._lock:
            self._ids.discard(trial_id)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                ids = list(self._ids)
            for trial_id in ids:
                try:
                    set_system_attr(self.study, trial_id, HEARTBEAT, time.time())
                except Exception:  # a finished trial's attrs are frozen; the next tick forgets it
                    self.remove(trial_id)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# --- Reading results ---------------------------------------------------------------------


@dataclass(frozen=True)
class TrialSummary:
    number: int
    state: str
    accuracy: float | None
    flops: int | None
    params: int | None
    archid: str | None
    genome: dict | None
    infeasible: bool
    duplicate_of: int | None


def summarize(trial: FrozenTrial) -> TrialSummary:
    ua = trial.user_attrs
    genome = ua.get(GENOME)
    return TrialSummary(
        number=trial.number,
        state=trial.state.name,
        accuracy=trial.values[0] if trial.values else ua.get("val_accuracy"),
        flops=ua.get(FLOPS), params=ua.get(PARAMS), archid=ua.get(ARCHID),
        genome=json.loads(genome) if isinstance(genome, str) else genome,
        infeasible=bool(ua.get(INFEASIBLE)), duplicate_of=ua.get(DUPLICATE_OF),
    )


def evaluated_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Trials whose candidate was actually trained (complete, or stopped early by a pruner)."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            if t.user_attrs.get(EVALUATED)]


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Completed, feasible, trained trials, best accuracy first (ties: fewer FLOPs)."""
    done = [t for t in evaluated_trials(study) if t.state == TrialState.COMPLETE and t.values]
    return sorted(done, key=lambda t: (-t.values[0], t.user_attrs.get(FLOPS, 0), t.number))


def pareto_trials(study: optuna.Study, objectives: tuple[str, ...] = ("accuracy", "flops")) -> list[FrozenTrial]:
    """Non-dominated trained trials: accuracy up, each named cost down; one per archid.

    Read from user attrs, so single- and multi-objective studies give the same front.
    """
    def key(t: FrozenTrial) -> tuple[float, ...]:
        return (-t.values[0],) + tuple(float(t.user_attrs[name]) for name in objectives[1:])

    pool = {t.user_attrs[ARCHID]: t for t in reversed(ranked_trials(study))}
    points = [(key(t), t) for t in pool.values()]
    front = [t for k, t in points
             if not any(all(a <= b for a, b in zip(o, k)) and o != k for o, _ in points)]
    return sorted(front, key=lambda t: (-t.values[0], t.user_attrs.get(FLOPS, 0)))


def counts_by_state(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        label = t.state.name
        if t.user_attrs.get(INFEASIBLE):
            label = "INFEASIBLE"
        elif t.user_attrs.get(DUPLICATE_OF) is not None:
            label = "DUPLICATE"
        out[label] = out.get(label, 0) + 1
    return out


def check_name(name: str) -> str:
    if not name or any(c in name for c in "/\\\0") or name.startswith("."):
        raise ConfigError(f"bad study name '{name}': use letters, digits, '-', '_' or '.'")
    return name
