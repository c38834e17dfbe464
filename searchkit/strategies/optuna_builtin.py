"""Optuna's TPE and random samplers, configured the way searchkit runs them.

Both take the same keyword-only style as :class:`searchkit.strategies.abc.ABCSampler`
(``seed=``, ``constraints_func=``), so the registry can build any strategy the same way.

Example:
    >>> import optuna
    >>> from searchkit.strategies.optuna_builtin import make_tpe
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study(sampler=make_tpe(seed=0, n_startup_trials=5))
    >>> study.optimize(lambda t: (t.suggest_int("keep_000", 1, 10) - 3) ** 2, n_trials=15)
    >>> len(study.trials)
    15
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

from optuna.samplers import RandomSampler, TPESampler
from optuna.trial import FrozenTrial

from searchkit.trial_attrs import stored_constraints

ConstraintsFunc = Callable[[FrozenTrial], Sequence[float]]


def make_tpe(
    *,
    seed: int | None = None,
    constraints_func: ConstraintsFunc | None = None,
    n_startup_trials: int = 10,
    **kw: Any,
) -> TPESampler:
    """A multivariate TPE with the constant liar, so trials in flight don't collide.

    Args:
        seed: Seed of the sampler.
        constraints_func: ``FrozenTrial -> floats`` (``<= 0`` feasible); ``None`` means
            :func:`searchkit.trial_attrs.stored_constraints`, which reads the
            ``searchkit:constraints`` user attr (and the ``searchkit:infeasible`` flag).
        n_startup_trials: Random trials before TPE starts modelling.
        **kw: Any other :class:`optuna.samplers.TPESampler` argument (these override
            ``multivariate=True`` and ``constant_liar=True`` too).

    Optuna 5 deprecates ``constraints_func`` in favour of ``Trial.set_constraint``. TPE
    reads both, and searchkit still stores constraints as user attrs, so the
    ``FutureWarning`` about it is silenced here (and only here).

    Example:
        >>> make_tpe(seed=1, n_startup_trials=20)._n_startup_trials
        20
    """
    options: dict[str, Any] = {"multivariate": True, "constant_liar": True}
    options.update(kw)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*constraints_func", category=FutureWarning)
        return TPESampler(
            seed=seed,
            n_startup_trials=n_startup_trials,
            constraints_func=constraints_func or stored_constraints,
            **options,
        )


def make_random(
    *, seed: int | None = None, constraints_func: ConstraintsFunc | None = None, **kw: Any
) -> RandomSampler:
    """Uniform random sampling (the baseline every strategy is compared against).

    ``constraints_func`` is accepted so that all strategies share one signature; random
    sampling does not use constraints.

    Example:
        >>> make_random(seed=0).__class__.__name__
        'RandomSampler'
    """
    return RandomSampler(seed=seed, **kw)
