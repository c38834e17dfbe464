"""Trials a crashed or killed driver left RUNNING: detection, FAIL and re-queue; heartbeats.

A driver tags each trial it asks (host, pid and that process's start time) within
``study.ask`` itself (:class:`DriverTag`) and refreshes a heartbeat while it trains it
(:class:`Heartbeat`). On start, :func:`recover_stale_trials` fails the trials whose driver
is gone - on this host: its pid no longer runs with that start time; elsewhere: no
heartbeat for ``GRACE_PERIOD_S`` - and re-queues each once more with its params and priced
record, so the strategy's role for it (ABC's bee, the GA's member) is kept.

Example:
    >>> import optuna
    >>> study = optuna.create_study()
    >>> recover_stale_trials(study)
    []
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from searchkit.study import attrs
from searchkit.study.attrs import get_system_attr
from searchkit.study.keys import (DRIVER, EVALUATED, FAIL_REASON, HEARTBEAT, INTERRUPTED, REQUEUED_FROM,
                                  RETRIES, priced_attrs)

HEARTBEAT_INTERVAL_S = 10.0
GRACE_PERIOD_S = 60.0
MAX_REQUEUES = 2

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
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    # An untagged trial younger than the grace may be a live driver's or a just-killed one's:
    # wait the grace out and look again, or a kill right after ``ask`` leaves it RUNNING for good.
    young = [now - t.datetime_start.timestamp() for t in running
             if get_system_attr(t, DRIVER, None) is None and not t.params and t.datetime_start]
    young = [age for age in young if age <= UNTAGGED_GRACE_S]
    if young:
        time.sleep(UNTAGGED_GRACE_S - min(young) + 0.1)
        now = time.time()
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    out: list[tuple[int, int | None]] = []
    for trial in running:
        if not _is_stale(trial, now, grace_s):
            continue
        out.append((trial.number, fail_trial(study, trial, "driver stopped while the trial ran", requeue=True)))
    return out


def fail_trial(study: optuna.Study, trial: FrozenTrial | optuna.Trial, reason: str, *,
               requeue: bool) -> int | None:
    """Record ``trial`` FAIL with ``reason`` (and, with ``requeue``, enqueue it once more).

    A trial whose driver died between marking its result evaluated and telling it carries
    the mark; a FAIL never counts as evaluated, so the mark is cleared. A re-queued trial was
    stopped from outside, not by its candidate: it is marked interrupted, so it takes no
    place in the seed order (``attrs.logical_number``). Returns the number of the re-queued
    trial, if any.
    """
    user = {FAIL_REASON: reason}
    if requeue:
        user[INTERRUPTED] = True
    if trial.user_attrs.get(EVALUATED):
        user[EVALUATED] = False
    attrs.write(study, trial._trial_id, user=user)
    frozen = study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    return requeue_trial(study, frozen) if requeue else None


def requeue_trial(study: optuna.Study, trial: FrozenTrial) -> int | None:
    """Enqueue a copy of ``trial`` so the same candidate is evaluated again (bounded)."""
    retries = int(trial.user_attrs.get(RETRIES, 0))
    if retries >= MAX_REQUEUES or not trial.params:
        return None
    study.enqueue_trial(trial.params, user_attrs={
        **priced_attrs(trial.user_attrs), REQUEUED_FROM: trial.number, RETRIES: retries + 1,
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
        attrs.write(self.study, trial_id, system={DRIVER: self._identity, HEARTBEAT: time.time()})
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
                    attrs.set_system_attr(self.study, trial_id, HEARTBEAT, time.time())
                except Exception:  # a finished trial's attrs are frozen; the next tick forgets it
                    self.remove(trial_id)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


