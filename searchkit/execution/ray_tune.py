"""The Ray Tune executor: candidates are trained concurrently by Ray Tune trials.

The driver still asks and tells (DESIGN invariant 3); Ray only runs the training.
:class:`DriverSearcher` is a ``ray.tune.search.Searcher`` around the driver: Tune calls
``suggest`` -> ``driver.propose()``, and each trial's results come back as
``driver.report`` (intermediate accuracies; :class:`PrunerScheduler` stops a trial the
study's pruner prunes) and ``driver.finish`` / ``driver.fail`` (its end). A trial that
raises (a diverged candidate: ``NonFiniteLossError``), or whose worker process dies, is
retried ``ray.max_failures`` times and then recorded FAIL with a one-line reason; the
search goes on. A trial the pruner stops is told PRUNED with its last reported accuracy
(without kept-indices history: the worker is stopped before it returns one).

The Optuna study is the only truth. Tune's own experiment state lives in a temporary
directory that is removed after the run; a restarted driver never calls
``Tuner.restore`` - it runs again, and the driver's stale-trial recovery fails (and
re-queues) the trials the stopped driver left RUNNING.

A worker gets each candidate as a :class:`~searchkit.core.ports.WorkItem` (JSON: the
space's registry target and options, the base checkpoint, the data, the genome, the
budget, with absolute paths) and runs the port's evaluator on it, which materialises
only the data, base and space it trains with, once per worker process and setting. A
worker hands the trained weights back as a ``torch.save`` file in the driver's temporary
directory. NOTE: on a multi-node cluster (``ray.address=...``) the base checkpoint, the
dataset root and that directory must be on a filesystem shared by all nodes (the same
paths); a weights file the driver cannot read is skipped with a warning and the trial is
told without its weights.

Each worker also needs searchkit (and torch) installed; ``ray.cpus_per_trial`` sets its
torch threads, ``ray.gpus_per_trial`` may be fractional (trials share a GPU).

Strategies under concurrency: ``abc`` runs steady-state (see its module), ``tpe`` uses
the constant liar, ``random`` needs nothing.

Costs, measured on 2 shared CPU cores (resnet20, synthetic data, 2 fine-tuning batches):
starting a local instance (``ray.init``) takes about 8 s, a worker's first trial about
9 s more (importing torch and searchkit, rebuilding the context); after that a trial
costs no more than locally (0.70 s per trial vs 0.84 s locally, one in flight: the
driver prices the next candidate while a worker trains).

This module imports only :mod:`searchkit.core` (and Ray).

Example (the command line: ``searchkit search executor=ray ray.max_concurrent=2``):
    >>> from searchkit.config import load_config
    >>> from searchkit.search import run_search
    >>> cfg = load_config(["space.model=resnet20", "data=synthetic", "base.epochs=0",
    ...                    "finetune.max_batches=1", "trials=2", "algo=random", "executor=ray",
    ...                    "ray.max_concurrent=2", "storage='sqlite:///:memory:'"])
    >>> run_search(cfg, quiet=True).evaluated  # doctest: +SKIP
    2
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import ray
import torch
from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.stopper import Stopper

from searchkit.core.ports import Candidate, DriverPort, EvalResult, SearchInterrupted, WorkItem

log = logging.getLogger("searchkit")

METRIC = "val_accuracy"


# --- the worker side -------------------------------------------------------------------


def train_candidate(config: dict) -> None:
    """The Tune trainable (function API): build, fine-tune and measure one candidate.

    Each validation is reported as ``{"step", "val_accuracy"}``; the last report carries
    ``final=True``, the metrics and recipe (JSON) and the weights file path.
    """
    torch.set_num_threads(max(1, int(config["threads"])))
    module, _, name = config["evaluate"].partition(":")
    evaluate = getattr(importlib.import_module(module), name)

    def forward(step: int, value: float) -> bool:
        tune.report({"step": int(step), METRIC: float(value)})
        return False  # the driver's pruner stops the trial through the scheduler

    result = evaluate(WorkItem.from_json(config["work"]), report=forward, progress=False)
    weights_path = None
    wanted = bool(config.get("weights_dir"))
    if wanted and os.path.isdir(config["weights_dir"]):  # not on another node without a shared filesystem
        weights_path = os.path.join(config["weights_dir"], f"trial-{config['number']}-{uuid.uuid4().hex[:8]}.pt")
        torch.save(result.weights, weights_path)
    metrics = result.metrics
    tune.report({"final": True, "step": int(metrics.get("steps") or 0),
                 METRIC: float(metrics["val_accuracy"]), "metrics": json.dumps(metrics),
                 "recipe": json.dumps(result.recipe), "weights_path": weights_path or ("" if wanted else None)})


# --- the driver side -------------------------------------------------------------------


class _Bridge:
    """State shared by the searcher, the scheduler and the stopper: Tune trial id ->
    candidate, and the first error the driver raised (which ends the run)."""

    def __init__(self, driver: DriverPort, weights_dir: str | None, threads: int):
        self.driver = driver
        evaluate = driver.evaluate
        self.evaluate = f"{evaluate.__module__}:{evaluate.__qualname__}"
        self.weights_dir = weights_dir
        self.threads = threads
        self.cands: dict[str, Candidate] = {}
        self.pruned: dict[str, dict] = {}
        self.reported: dict[str, int] = {}
        # The driver declined to propose while trials ran; Tune asks again every loop,
        # and only a finished trial can change the answer.
        self.waiting = False
        self.errors: dict[str, str] = {}
        self.fatal: BaseException | None = None

    # Tune pickles its search algorithm, scheduler and stopper for Tuner.restore, which
    # searchkit never uses (the study is the truth): the live driver is left out.
    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.driver = None
        self.fatal = RuntimeError("a searchkit Ray run cannot be restored by Tune; run the search again")

    def guard(self, fn, *args):
        """Run a driver call; an error it raises stops the run and is re-raised after it."""
        if self.fatal is not None:
            return None
        try:
            return fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised by run_with_ray
            self.fatal = exc
            return None


class DriverSearcher(Searcher):
    """Tune's search algorithm: the searchkit driver's ask/tell."""

    def __init__(self, bridge: _Bridge):
        super().__init__(metric=METRIC, mode="max")
        self.bridge = bridge

    def suggest(self, trial_id: str) -> dict | str | None:
        b = self.bridge
        if b.waiting and b.driver.in_flight and b.fatal is None:
            return None  # nothing finished since the driver last declined: no need to ask it
        cand = b.guard(b.driver.propose)
        if cand is None:
            # Not now while trials run: one may fail and the budget then needs another.
            b.waiting = True
            return Searcher.FINISHED if b.fatal is not None or not b.driver.in_flight else None
        b.cands[trial_id] = cand
        return {"number": cand.number, "work": cand.work.to_json(), "evaluate": b.evaluate,
                "weights_dir": b.weights_dir, "threads": b.threads}

    def save(self, checkpoint_path: str) -> None:
        pass  # the study is the only state

    def restore(self, checkpoint_path: str) -> None:
        pass

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass  # intermediate values are told by PrunerScheduler, which decides on them

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        b = self.bridge
        cand = b.cands.pop(trial_id, None)
        b.reported.pop(trial_id, None)
        b.waiting = False  # a finished trial may leave room in the budget
        if cand is None or cand.number not in b.driver.in_flight:
            return  # already told
        if b.fatal is not None:
            return  # run_with_ray re-queues what is left
        if error:
            b.guard(b.driver.fail, cand, b.errors.pop(trial_id, "the trial failed (no error recorded)"))
        elif result and result.get("final"):
            outcome = EvalResult(json.loads(result["metrics"]), _load_weights(result.get("weights_path")),
                                 json.loads(result["recipe"]))
            b.guard(b.driver.finish, cand, outcome)
        elif trial_id in b.pruned:
            last = b.pruned.pop(trial_id)
            b.guard(b.driver.finish, cand, EvalResult({"val_accuracy": last[METRIC], "steps": last.get("step"),
                                                       "pruned": True}))
        # else: stopped by the end of the run (Ctrl-C); run_with_ray re-queues it


class PrunerScheduler(FIFOScheduler):
    """FIFO, but tells each intermediate accuracy to the study and stops what it prunes."""

    def __init__(self, bridge: _Bridge):
        super().__init__()
        self.bridge = bridge

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        b = self.bridge
        if b.fatal is not None:
            return TrialScheduler.STOP
        cand = b.cands.get(trial.trial_id)
        if cand is None or result.get("final") or METRIC not in result or "step" not in result:
            return TrialScheduler.CONTINUE
        value, step = float(result[METRIC]), int(result["step"])
        if step <= b.reported.get(trial.trial_id, -1):
            return TrialScheduler.CONTINUE  # a retried trial repeats steps the study already has
        b.reported[trial.trial_id] = step
        if math.isfinite(value) and b.guard(b.driver.report, cand, step, value):
            b.pruned[trial.trial_id] = {METRIC: value, "step": step}
            return TrialScheduler.STOP
        return TrialScheduler.STOP if b.fatal is not None else TrialScheduler.CONTINUE

    def on_trial_error(self, tune_controller, trial) -> None:
        self.bridge.errors[trial.trial_id] = _error_reason(trial)
        super().on_trial_error(tune_controller, trial)


class _StopOnFatal(Stopper):
    def __init__(self, bridge: _Bridge):
        self.bridge = bridge

    def __call__(self, trial_id: str, result: dict) -> bool:
        return self.bridge.fatal is not None

    def stop_all(self) -> bool:
        return self.bridge.fatal is not None


def _error_reason(trial) -> str:
    """One line naming what went wrong in a trial (the worker's own exception if known)."""
    attempts = trial.run_metadata.num_failures
    suffix = f" ({attempts} attempts)" if attempts > 1 else ""
    # Tune writes the error as text to the trial's local staging dir first (and syncs it to
    # storage later); its last "Name: message" line is the worker's own exception. Reading
    # text keeps searchkit free of unpickling.
    name = trial.run_metadata.error_filename
    local = Path(trial.local_path, name) if name and trial.local_path else None
    if local is not None and local.is_file():
        text = local.read_text(errors="replace")
        died = _death_line(text)
        if died:
            return f"worker died: {died}{suffix}"
        line = _exception_line(text)
        if line:
            if "RayActorError" in line or "ActorDiedError" in line or "actor died" in line.lower():
                return f"worker died: {line.split(':', 1)[-1].strip()}{suffix}"
            return f"{line}{suffix}"
    exc: BaseException | None = None
    try:
        exc = trial.get_pickled_error()  # Ray's own API; a missing file gives None
    except Exception:  # noqa: BLE001 - a missing or unreadable error file
        exc = None
    if exc is None:
        return f"the trial failed{suffix}"
    if isinstance(exc, ray.exceptions.RayActorError):
        return f"worker died: {_first_line(exc)}{suffix}"
    cause = exc
    while isinstance(cause, ray.exceptions.RayTaskError) and getattr(cause, "cause", None) is not None \
            and cause.cause is not cause:
        cause = cause.cause
    if isinstance(cause, ray.exceptions.RayTaskError):
        return f"{_first_line(cause)}{suffix}"
    return f"{type(cause).__name__}: {_first_line(cause)}{suffix}"


def _death_line(text: str) -> str | None:
    """Ray's words when the worker process itself died (its error text has no exception line)."""
    low = text.lower()
    if "actor died unexpectedly" not in low and "worker process has died" not in low \
            and "worker died" not in low:
        return None
    for line in text.splitlines():
        if "exit detail" in line.lower():
            return line.split(":", 1)[-1].strip()[:200] or "the worker process exited"
    return "the worker process exited unexpectedly"


def _exception_line(text: str) -> str | None:
    """The innermost ``Name: message`` line of a traceback text (the raised exception)."""
    found = None
    for line in text.splitlines():
        stripped = line.strip()
        head = stripped.split(":", 1)[0]
        if ":" in stripped and head.replace(".", "").replace("_", "").isalnum() and \
                (head.endswith(("Error", "Exception")) or head.split(".")[-1].endswith(("Error", "Exception"))) \
                and not line.startswith((" ", "\t")):
            name, _, message = stripped.partition(":")
            found = f"{name.split('.')[-1]}: {message.strip()}"
    return found


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _load_weights(path: str | None) -> dict | None:
    """A worker's weights file (removed once read); ``""``: the worker could not write one."""
    if path is None:
        return None
    try:
        if not path:
            raise FileNotFoundError
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        log.warning("a worker's weights file is not reachable from the driver (a multi-node "
                    "cluster needs a shared filesystem); the trial is told without its weights")
        return None
    finally:
        if path:
            try:
                os.remove(path)
            except OSError:
                pass


def _start_ray(address: str | None) -> bool:
    """Connect to ``address`` or start a local instance; returns whether we must shut it down."""
    if ray.is_initialized():
        return False
    common = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                  configure_logging=True)
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(num_cpus=os.cpu_count() or 1, **common)
    return True


def run_with_ray(driver: DriverPort) -> None:
    """Propose, train (as Ray Tune trials) and tell until the driver stops proposing.

    The ``executor=ray`` entry of ``EXECUTORS`` (see the module's example). Connects to
    ``ray.address``, or starts a local instance and shuts it down afterwards (also on
    errors and Ctrl-C); an already initialized Ray is used as it is and left running.

    Raises:
        SearchInterrupted: Ctrl-C; the trials in flight were re-queued.
        RepeatedFailures: too many candidates in a row failed (others in flight re-queued).
    """
    rc = driver.executor_options("ray")
    saved_env = {name: os.environ.get(name) for name in _TUNE_ENV}
    os.environ.update({k: v for k, v in _TUNE_ENV.items() if saved_env[k] is None})
    quieted = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    for name in quieted:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    _sweep_dead_runs()
    tmp = tempfile.mkdtemp(prefix=f"searchkit-ray-{os.getpid()}-")
    started = False
    try:
        started = _start_ray(rc.address)
        if rc.max_concurrent is not None:
            concurrent = max(1, int(rc.max_concurrent))
        else:
            concurrent = _default_concurrency(ray.cluster_resources(), rc.cpus_per_trial, rc.gpus_per_trial)
        weights_dir = None
        if driver.keep_weights:
            weights_dir = os.path.join(tmp, "weights")
            os.makedirs(weights_dir)
        bridge = _Bridge(driver, weights_dir, threads=max(1, int(rc.cpus_per_trial)))
        trainable = tune.with_resources(train_candidate, {"cpu": rc.cpus_per_trial, "gpu": rc.gpus_per_trial})
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=DriverSearcher(bridge), scheduler=PrunerScheduler(bridge),
                num_samples=-1, max_concurrent_trials=concurrent, reuse_actors=True,
                trial_name_creator=lambda t: f"trial_{t.config.get('number', t.trial_id)}",
                trial_dirname_creator=lambda t: f"trial_{t.config.get('number', t.trial_id)}_{t.trial_id}"),
            run_config=tune.RunConfig(
                name="searchkit", storage_path=os.path.join(tmp, "tune"), verbose=0,
                stop=_StopOnFatal(bridge),
                failure_config=tune.FailureConfig(max_failures=rc.max_failures),
                checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False)),
        )
        try:
            tuner.fit()
        except KeyboardInterrupt:
            _requeue_left(driver, "interrupted (Ctrl-C)")
            raise SearchInterrupted() from None
        if bridge.fatal is not None:
            _requeue_left(driver, "the search stopped on an error")
            raise bridge.fatal
        if driver.in_flight:  # Tune stopped early: a Ctrl-C it handled itself
            _requeue_left(driver, "interrupted (Ctrl-C)")
            raise SearchInterrupted()
    finally:
        for name, level in quieted.items():
            logging.getLogger(name).setLevel(level)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
        if started:
            ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


_TUNE_ENV = {
    # Tune's result loggers would copy every result into files nobody reads.
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    # The classic reporter is silent at verbose=0 (the new one still prints its banner).
    "RAY_AIR_NEW_OUTPUT": "0",
    # A failed candidate is logged once, by the driver, with a one-line reason: not with
    # Tune's traceback of each attempt.
    "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",
}
# "Trials did not complete" (tune.py) and, without result files, "Failed to fetch metrics".
_NOISY_LOGGERS = ("ray.tune.tune", "ray.tune.analysis.experiment_analysis")


def _default_concurrency(resources: dict, cpus_per_trial: float, gpus_per_trial: float) -> int:
    """As many trials as the cluster's CPUs (and GPUs, when trials take some) can hold at once."""
    fits = resources.get("CPU", 1) // cpus_per_trial
    if gpus_per_trial > 0:
        fits = min(fits, resources.get("GPU", 0) // gpus_per_trial)
    return max(1, int(fits))


def _sweep_dead_runs() -> None:
    """Remove the temporary directories of runs whose driver was killed (kill -9 skips the
    cleanup); a directory is named after its driver's pid."""
    for path in Path(tempfile.gettempdir()).glob("searchkit-ray-*-*"):
        pid = path.name.split("-")[2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:  # alive, under another user
            pass


def _requeue_left(driver: DriverPort, reason: str) -> None:
    for cand in list(driver.in_flight.values()):
        driver.fail(cand, reason, requeue=True)
