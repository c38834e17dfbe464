"""Benchmarks: ``python -m searchkit.bench NAME`` writes ``reports/bench/NAME.md`` and ``.json``.

Figures are measured side by side in one run and reported as ratios, because the machines
they run on are shared and noisy. A space's own benchmark lives in its folder.
"""

BENCHMARKS = {
    "channels": "searchkit.spaces.channels.bench",
    "samplers": "searchkit.bench.samplers",
    "executor": "searchkit.bench.executor",
    "pareto": "searchkit.bench.pareto",
    "tinynet": "searchkit.spaces.tinynet.bench",
    "latency": "searchkit.bench.latency",
    "proxy": "searchkit.spaces.channels.proxy_bench",
    "onexn": "searchkit.spaces.onexn.bench",
    "bnas": "searchkit.spaces.bnas.bench",
    "deploy": "searchkit.bench.deploy",
    "oneshot": "searchkit.spaces.channels.oneshot_bench",
}
