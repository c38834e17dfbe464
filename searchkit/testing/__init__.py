"""Contract suites every registered component passes, in the style of ``optuna.testing``.

A test module imports a suite's fixtures and tests, and pytest runs them for every entry of
the registry (plugins and test-only entries included)::

    from searchkit.testing.spaces import *  # noqa: F401,F403
    from searchkit.testing.costs import *  # noqa: F401,F403
    from searchkit.testing.strategies import *  # noqa: F401,F403

A space gives the suites a small instance through its ``contract_overrides`` (config
overrides, e.g. a small base network); a cost model a priceable instance through
``CostModel.for_contract``. Nothing in the suites names a component.
"""
