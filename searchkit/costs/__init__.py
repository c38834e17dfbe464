"""Costs of candidates: FLOPs/params counting (:mod:`searchkit.costs.flops`), the registered
cost models (:mod:`searchkit.costs.models`, :mod:`searchkit.costs.latency_cost`) and the
latency predictor (:mod:`searchkit.costs.latency`, :mod:`searchkit.costs.profiling`).

Example:
    >>> from searchkit.costs import count_costs
    >>> from searchkit.models import build_base
    >>> count_costs(build_base("resnet56")).params
    853018
"""

from searchkit.costs.flops import CONVENTIONS, Costs, count_costs

__all__ = ["CONVENTIONS", "Costs", "count_costs"]
