"""The one table of attribute keys searchkit writes into a study (report, export and the
command line read the same names).

Study user attrs: ``searchkit:config`` (the resolved run settings, JSON), ``searchkit:base``
(the base network or reference genome: path, sha256, accuracy, ``costs``, ``describe``).
Trial user attrs, written when a candidate is priced: ``genome``, ``archid``,
``cost:<name>`` per cost model, and for candidates that train ``recipe`` and ``describe``;
when it is told: the metrics (``val_accuracy``, ...) and ``searchkit:evaluated``.

Example:
    >>> cost_key("flops")
    'cost:flops'
    >>> from optuna.trial import create_trial
    >>> trial_costs(create_trial(value=0.9, user_attrs={"cost:flops": 2.0, "cost:params": 5.0}))
    {'flops': 2.0, 'params': 5.0}
"""

from __future__ import annotations

from typing import Any

from optuna.trial import FrozenTrial

from searchkit.study.attrs import (CONSTRAINTS_KEY, INFEASIBLE_KEY, INTERRUPTED_KEY, OPTUNA_CONSTRAINTS_KEY,
                                   REQUEUED_FROM_KEY)

CONFIG_KEY = "searchkit:config"
VERSION_KEY = "searchkit:version"
BASE_KEY = "searchkit:base"

GENOME = "genome"
ARCHID = "archid"
COST_PREFIX = "cost:"
RECIPE = "recipe"
DESCRIBE = "describe"
SOURCE = "searchkit:source"  # which runner recorded the trial (asktell, ...)
INFEASIBLE = INFEASIBLE_KEY
CONSTRAINTS = CONSTRAINTS_KEY
DUPLICATE_OF = "searchkit:duplicate_of"
EVALUATED = "searchkit:evaluated"
REQUEUED_FROM = REQUEUED_FROM_KEY
INTERRUPTED = INTERRUPTED_KEY
RETRIES = "searchkit:retries"
FAIL_REASON = "searchkit:fail_reason"
HEARTBEAT = "searchkit:heartbeat"
DRIVER = "searchkit:driver"
WEIGHTS = "weights_artifact"
ACCURACY = "val_accuracy"
METRICS = ("val_accuracy", "val_loss", "train_loss", "epochs_run", "steps", "seconds")
# Optuna's own key of ``trial.set_constraint(name, value)``: ``constraints:<name>``.
OPTUNA_CONSTRAINT_PREFIX = OPTUNA_CONSTRAINTS_KEY + ":"


def cost_key(name: str) -> str:
    return COST_PREFIX + name


def trial_cost(trial: FrozenTrial, name: str) -> float | None:
    """A trial's priced cost ``name`` (studies of searchkit 0.1 stored it flat, by name)."""
    ua = trial.user_attrs
    value = ua.get(cost_key(name), ua.get(name))
    return None if value is None else float(value)


def trial_costs(trial: FrozenTrial) -> dict[str, float]:
    """Every priced cost of a trial, by cost name."""
    return {k[len(COST_PREFIX):]: float(v) for k, v in trial.user_attrs.items() if k.startswith(COST_PREFIX)}


def base_costs(info: dict[str, Any]) -> dict[str, float]:
    """The base's costs from a study's ``searchkit:base`` record (0.1 stored them flat)."""
    if isinstance(info.get("costs"), dict):
        return {k: float(v) for k, v in info["costs"].items()}
    return {k: float(info[k]) for k in ("flops", "params", "latency") if info.get(k) is not None}


# A priced record travels with a re-queued trial: the same genome needs no new pricing.
def priced_attrs(user_attrs: dict[str, Any]) -> dict[str, Any]:
    """The pricing part of a trial's user attrs."""
    return {k: v for k, v in user_attrs.items()
            if k in (GENOME, ARCHID, RECIPE, DESCRIBE, SOURCE) or k.startswith(COST_PREFIX)}
