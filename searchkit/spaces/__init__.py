"""Search spaces: each turns Optuna suggestions into a JSON genome, prices it, and builds it."""

from searchkit.spaces.base import Space

__all__ = ["Space"]
