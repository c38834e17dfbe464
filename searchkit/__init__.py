"""searchkit: find smaller, faster CNNs with resumable Optuna studies.

Example:
    >>> import searchkit
    >>> sorted(searchkit.registry.SPACES.names())[:1]
    ['channels']
"""

from searchkit import registry

__all__ = ["registry", "__version__"]
__version__ = "0.1.0"
