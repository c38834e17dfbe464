"""Every registered space, cost model and strategy (the test-only ones of ``tests/plugins``
included) passes the contract suites of :mod:`searchkit.testing`."""

from searchkit.testing.costs import *  # noqa: F401,F403
from searchkit.testing.spaces import *  # noqa: F401,F403
from searchkit.testing.strategies import *  # noqa: F401,F403
