"""Latency benchmark: predictions per second from genomes, next to measurements per second.

Protocol (one run, side by side, on the same random genomes):

* ``predict batch``: the ``latency`` cost model's ``many`` on all genomes at once (what a
  strategy scoring a population or a sweep uses), fresh predictor memo each repeat;
* ``predict one by one``: its ``cost`` per genome, cold memo (what the driver does for
  each proposal);
* ``measure``: build each model and time its forward as ``validate`` does (the
  alternative a predictor replaces).

Spaces: every space a latency profile samples, as its default search on digits builds it
(the quick start's ResNet-56 at 16 px for channel pruning). The predictor is
``latency/<target>/predictor.json`` if present, else a quick profile fitted on the spot
(prediction speed depends on the forests' size, not on how well they were measured).

Example:
    python -m searchkit.bench latency target=this-cpu-1t genomes=2000
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from searchkit.bench.common import options, write_report
from searchkit.config import load_config
from searchkit.costs.latency import Predictor, measure_model_ms
from searchkit.costs.latency_cost import LatencyCost
from searchkit.costs.profiling import fit, load_predictor, profile, target_dir

DEFAULTS = {"target": "this-cpu-1t", "dir": "latency", "genomes": 2000, "measured": 12, "repeats": 3,
            "out": "reports/bench"}


def _predictor(opt) -> tuple[Predictor, str]:
    if (target_dir(opt["target"], opt["dir"]) / "predictor.json").is_file():
        return load_predictor(opt["target"], opt["dir"]), f"`{opt['target']}` ({opt['dir']}/)"
    tmp = Path(tempfile.mkdtemp(prefix="searchkit-latbench-"))
    profile("bench-quick", sweep="quick", root=tmp, progress=False, log=lambda *a: None)
    fit("bench-quick", root=tmp)
    return load_predictor("bench-quick", tmp), "a quick profile fitted for this benchmark"


def _spaces() -> list[str]:
    """Registered spaces that price latency from kernels (the ones a profile samples)."""
    from searchkit.costs.profiling import _profiled_spaces
    return [name for name, _ in _profiled_spaces()]


def _space(name: str):
    """The space as its default search on digits builds it, with no bound."""
    from searchkit.setup import RunSetup
    cfg = load_config([f"space={name}", "data=digits", "base.epochs=0", "constraint={}"])
    return RunSetup.build(cfg, quiet=True, train_base=True).space


def _genomes(space, n: int, rng: np.random.Generator) -> list[dict]:
    from searchkit.core.dist import draw
    dists = space.distributions()
    return [space.genome_of({k: draw(d, rng) for k, d in dists.items()}) for _ in range(n)]


def main(argv: list[str]) -> int:
    opt = options(argv, DEFAULTS)
    torch.set_num_threads(1)
    pred, source = _predictor(opt)
    rng = np.random.default_rng(0)
    rows = []
    for name in _spaces():
        space = _space(name)
        genomes = _genomes(space, int(opt["genomes"]), rng)
        pred._memo.clear()
        t = time.perf_counter()
        lat = LatencyCost(space, predictor=pred)  # a channel kernel map is cached on disk
        lat.many(genomes[:1])  # builds the tables (per kernel, or a whole grid)
        setup = time.perf_counter() - t
        batch_rate = one_rate = 0.0
        for _ in range(int(opt["repeats"])):
            lat._memo.clear()
            t = time.perf_counter()
            lat.many(genomes)
            batch_rate = max(batch_rate, len(genomes) / (time.perf_counter() - t))
            pred._memo.clear()
            lat._memo.clear()
            t = time.perf_counter()
            for g in genomes:
                lat.cost(g)
            one_rate = max(one_rate, len(genomes) / (time.perf_counter() - t))
        t = time.perf_counter()
        for g in genomes[: int(opt["measured"])]:
            measure_model_ms(space.build(g).net, space.input_size(g))
        meas_rate = int(opt["measured"]) / (time.perf_counter() - t)
        rows.append({"space": name, "setup_s": setup, "predict_batch_per_s": batch_rate, "predict_one_per_s": one_rate,
                     "measure_per_s": meas_rate, "kernels_per_model": len(space.kernels(genomes[0]))})
        print(f"{name}: batch {batch_rate:,.0f}/s, one by one {one_rate:,.0f}/s, measured {meas_rate:.2f}/s",
              flush=True)
    lines = ["# Latency predictor: predictions per second from genomes", "",
             f"Predictor: {source}, threads 1. {opt['genomes']} random genomes per space; rates are the best "
             f"of {opt['repeats']} repeats with the predictor's memo cleared each time (cold). `measure` builds "
             f"each of {opt['measured']} genomes' model and times its forward as `searchkit export` does "
             "(warm-up, then the median of 20 windows of 0.15 s: about 3 s, the least that reads this "
             "shared VM's typical speed to within a few per cent). `table setup` is paid once per search: a "
             "pruning space tabulates each kernel over its units' choices (its kernel map is cached on disk); a "
             "scaling space tabulates its whole grid on the first batch. `one by one` is the driver's path, "
             "one genome per proposal, memos cleared. Goal: >= 10,000 predictions/s.", "",
             "| space | kernels per model | table setup s | predict (batch) /s | predict (one by one) /s | "
             "measure /s | batch vs measure |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['space']} | {r['kernels_per_model']} | {r['setup_s']:.2f} | {r['predict_batch_per_s']:,.0f} | "
                     f"{r['predict_one_per_s']:,.0f} | {r['measure_per_s']:.2f} | "
                     f"{r['predict_batch_per_s'] / r['measure_per_s']:,.0f}x |")
    ok = all(r["predict_batch_per_s"] >= 10_000 for r in rows)
    lines += ["", f"Goal (>= 10,000 predictions/s from genomes, batch): {'met' if ok else 'NOT met'}.", ""]
    path = write_report("latency", "\n".join(lines), {"options": opt, "rows": rows, "predictor": source},
                        opt["out"])
    print(f"wrote {path}")
    return 0
