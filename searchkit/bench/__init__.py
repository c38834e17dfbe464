"""Benchmarks: ``python -m searchkit.bench NAME`` writes ``reports/bench/NAME.md`` and ``.json``.

Figures are measured side by side in one run and reported as ratios, because the machines
they run on are shared and noisy.
"""

BENCHMARKS = {
    "channels": "searchkit.bench.channels",
    "samplers": "searchkit.bench.samplers",
    "executor": "searchkit.bench.executor",
    "pareto": "searchkit.bench.pareto",
    "tinynet": "searchkit.bench.tinynet",
    "latency": "searchkit.bench.latency",
}
