"""Reading a study's results: what was trained, ranked, on the Pareto front, by state.

Costs are read from the trials' priced records (``cost:<name>``), so single- and
multi-objective studies are read alike.

Example:
    >>> import optuna
    >>> study = optuna.create_study(direction="maximize")
    >>> for acc, flops in ((0.9, 5.0), (0.8, 2.0), (0.7, 3.0)):
    ...     t = study.ask(); t.set_user_attr("searchkit:evaluated", True)
    ...     t.set_user_attr("archid", str(flops)); t.set_user_attr("cost:flops", flops)
    ...     _ = study.tell(t, acc)
    >>> [t.values[0] for t in pareto_trials(study, ("accuracy", "flops"))]
    [0.9, 0.8]
"""

from __future__ import annotations

import json

import optuna
from optuna.trial import FrozenTrial, TrialState

from searchkit.study.keys import ARCHID, CONFIG_KEY, DUPLICATE_OF, EVALUATED, INFEASIBLE, trial_cost


def objectives_of(study: optuna.Study) -> tuple[str, ...]:
    """The study's objectives (``accuracy`` then costs) from its stored settings."""
    try:
        stored = json.loads(study.user_attrs.get(CONFIG_KEY) or "{}")
    except (TypeError, ValueError):
        stored = {}
    return tuple(stored.get("objectives") or ("accuracy",))


def evaluated_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Trials whose candidate was actually trained (complete, or stopped early by a pruner)."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            if t.user_attrs.get(EVALUATED)]


def _tie_costs(study: optuna.Study) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*objectives_of(study)[1:], "flops", "params"]))


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Completed, feasible, trained trials, best accuracy first (ties: cheaper first, by the
    study's cost objectives, then FLOPs and params)."""
    done = [t for t in evaluated_trials(study) if t.state == TrialState.COMPLETE and t.values]
    ties = _tie_costs(study)

    def key(t: FrozenTrial) -> tuple:
        return (-t.values[0], *[trial_cost(t, c) or 0.0 for c in ties], t.number)
    return sorted(done, key=key)


def pareto_trials(study: optuna.Study, objectives: tuple[str, ...] | None = None) -> list[FrozenTrial]:
    """Non-dominated trained trials: accuracy up, each named cost down; one per archid.

    ``objectives`` default to the study's own (with a single objective: accuracy and FLOPs).
    """
    if objectives is None:
        objectives = objectives_of(study)
        if len(objectives) == 1:
            objectives = ("accuracy", "flops")
    costs = objectives[1:]

    def key(t: FrozenTrial) -> tuple[float, ...]:
        return (-t.values[0],) + tuple(trial_cost(t, name) for name in costs)

    pool = {t.user_attrs[ARCHID]: t for t in reversed(ranked_trials(study))
            if all(trial_cost(t, name) is not None for name in costs)}
    points = [(key(t), t) for t in pool.values()]
    front = [t for k, t in points
             if not any(all(a <= b for a, b in zip(o, k)) and o != k for o, _ in points)]
    return sorted(front, key=lambda t: key(t))


def label(trial: FrozenTrial) -> str:
    """COMPLETE, PRUNED, FAIL, RUNNING, WAITING - or INFEASIBLE / DUPLICATE for trials that
    were told without training."""
    if trial.user_attrs.get(INFEASIBLE):
        return "INFEASIBLE"
    if trial.user_attrs.get(DUPLICATE_OF) is not None:
        return "DUPLICATE"
    return trial.state.name


def counts_by_state(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[label(t)] = out.get(label(t), 0) + 1
    return out
