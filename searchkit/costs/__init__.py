"""Costs of candidates: FLOPs/params (:mod:`searchkit.costs.flops`).

Example:
    >>> from searchkit.costs import count_costs
    >>> from searchkit.models import build_base
    >>> count_costs(build_base("resnet56")).params
    853018
"""

from searchkit.costs.flops import CONVENTIONS, Costs, CostTable, count_costs

__all__ = ["CONVENTIONS", "Costs", "CostTable", "count_costs"]
