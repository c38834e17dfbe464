"""searchkit: find smaller, faster CNNs with resumable Optuna studies.

Example:
    >>> import searchkit
    >>> "flops" in searchkit.registry.COSTS.names()
    True
"""

from searchkit import registry

__all__ = ["registry", "__version__"]
__version__ = "0.1.0"
