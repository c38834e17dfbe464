"""Sampler cost as studies grow: ask + tell of abc and ga against Optuna's TPE at N trials.

Each strategy first fills its own study to ``size`` trials on a cheap toy objective over
``dims`` integer genes (the channel space's shape: ``keep_000..`` in 1..10), so ABC and GA
have the colony/generation history they would have in a real search. Then ``measure``
more ask + tell pairs are timed for each, interleaved round-robin so machine noise hits
all alike, and the medians are reported as ratios to TPE. TPE gets its history from
random trials added directly (it keeps no state of its own), the fastest honest way to
give it 2,000 trials. ``abc2`` is ABC on a two-objective study (the toy value and the sum
of the genes, as accuracy and FLOPs), the cost of its Pareto decomposition. Done in memory
and on SQLite (a file in a temporary folder, at ``sqlite_size`` trials), in the same run.

With ``baseline=REF`` (a git commit of this repository), that version's own benchmark runs
first with the same options, and the report gives each median's ratio to it.

Example:
    python -m searchkit.bench samplers size=2000 measure=30
    python -m searchkit.bench samplers baseline=0abe030
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
from optuna.distributions import IntDistribution

from searchkit.bench.common import baseline_tree, options, run_in, write_report
from searchkit.strategies.abc import ABCSampler
from searchkit.strategies.ga import GASampler
from searchkit.strategies.optuna_builtin import make_random, make_tpe

# NOTE: SQLite grows at 200-300 ms per trial on the 2-core benchmark machine (each ask and
# tell is several transactions), ~25 minutes to 2,000 for the five samplers, so its row is
# taken at ``sqlite_size`` unless that is raised.
DEFAULTS = {"size": 2000, "sqlite_size": 300, "dims": 27, "measure": 30, "storages": ["memory", "sqlite"],
            "out": "reports/bench", "baseline": None}


def _objective(params: dict, target: np.ndarray) -> float:
    x = np.array([params[f"keep_{i:03d}"] for i in range(len(target))])
    return float(-((x - target) ** 2).sum())


def _ask_tell(study: optuna.Study, dists: dict, target: np.ndarray) -> float:
    started = time.perf_counter()
    trial = study.ask(dists)
    value = _objective(trial.params, target)
    study.tell(trial, value if len(study.directions) == 1 else (value, float(sum(trial.params.values()))))
    return time.perf_counter() - started


def _fill(study: optuna.Study, dists: dict, target: np.ndarray, size: int, direct: bool) -> None:
    if direct:  # history for a stateless sampler: random trials added in one go
        rng = np.random.default_rng(0)
        trials = []
        for _ in range(size):
            params = {n: int(rng.integers(1, 11)) for n in dists}
            trials.append(optuna.trial.create_trial(params=params, distributions=dists,
                                                    value=_objective(params, target)))
        study.add_trials(trials)
        return
    for _ in range(size - len(study.get_trials(deepcopy=False))):  # study.trials deep-copies all
        _ask_tell(study, dists, target)


def _baseline(opt: dict) -> dict:
    """The baseline version's own run of this benchmark, with the same options."""
    import json
    tree = baseline_tree(str(opt["baseline"]))
    out = Path(tempfile.mkdtemp(prefix="searchkit-samplers-baseline-"))
    args = [f"{k}={json.dumps(v)}" for k, v in opt.items() if k not in ("baseline", "out")]
    run_in(tree, ["-m", "searchkit.bench", "samplers", *args, f"out={out}"])
    return json.loads((out / "samplers.json").read_text())["results"]


def main(argv: list[str]) -> int:
    opt = options(argv, DEFAULTS)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    before = _baseline(opt) if opt["baseline"] else None
    import warnings
    warnings.filterwarnings("ignore")
    dims = int(opt["dims"])
    dists = {f"keep_{i:03d}": IntDistribution(1, 10) for i in range(dims)}
    target = np.random.default_rng(1).integers(1, 11, dims)
    makers = {"abc": lambda: ABCSampler(seed=0), "abc2": lambda: ABCSampler(seed=0),
              "ga": lambda: GASampler(seed=0), "tpe": lambda: make_tpe(seed=0),
              "random": lambda: make_random(seed=0)}
    results: dict[str, dict[str, float]] = {}
    for storage_kind in opt["storages"]:
        size = int(opt["sqlite_size"] if storage_kind == "sqlite" else opt["size"])
        tmp = Path(tempfile.mkdtemp(prefix="searchkit-samplers-"))
        studies = {}
        fill_s = {}
        for name, make in makers.items():
            storage = None if storage_kind == "memory" else f"sqlite:///{tmp / (name + '.db')}"
            directions = ["maximize", "minimize"] if name == "abc2" else ["maximize"]
            study = optuna.create_study(directions=directions, sampler=make(), storage=storage,
                                        study_name=name)
            started = time.perf_counter()
            _fill(study, dists, target, size, direct=name in ("tpe", "random"))
            fill_s[name] = time.perf_counter() - started
            # a new sampler instance, as a resumed driver would have: the first ask rebuilds
            study.sampler = make()
            started = time.perf_counter()
            _ask_tell(study, dists, target)
            fill_s[name + ":first"] = time.perf_counter() - started
            studies[name] = study
            print(f"{storage_kind}: {name} filled to {size} in {fill_s[name]:.1f} s", flush=True)
        times: dict[str, list[float]] = {n: [] for n in makers}
        for _ in range(int(opt["measure"])):
            for name, study in studies.items():
                times[name].append(_ask_tell(study, dists, target))
        med = {n: statistics.median(v) for n, v in times.items()}
        results[storage_kind] = {"size": size, **{f"{n}_ms": 1e3 * v for n, v in med.items()},
                                 **{f"{n}_vs_tpe": v / med["tpe"] for n, v in med.items()},
                                 **{f"{k}_s": v for k, v in fill_s.items()}}
        print(storage_kind, {n: f"{1e3 * v:.1f} ms" for n, v in med.items()}, flush=True)
    lines = ["# Sampler cost at a grown study", "",
             f"Median ask + tell of one trial once the study holds the given number of trials ({dims} "
             f"integer genes in 1..10, the channel space's shape), {opt['measure']} pairs per sampler "
             "interleaved round-robin in one run. Ratio < 1: cheaper than Optuna's TPE.", "",
             "| storage | trials | abc | abc, 2 objectives | ga | tpe | random | abc / tpe | ga / tpe | "
             "first ask after reopening: abc / abc2 / ga / tpe |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for kind, r in results.items():
        lines.append(f"| {kind} | {r['size']} | {r['abc_ms']:.1f} ms | {r['abc2_ms']:.1f} ms | {r['ga_ms']:.1f} ms | "
                     f"{r['tpe_ms']:.1f} ms | {r['random_ms']:.1f} ms | {r['abc_vs_tpe']:.2f} | "
                     f"{r['ga_vs_tpe']:.2f} | {r['abc:first_s']:.2f} s / {r['abc2:first_s']:.2f} s / "
                     f"{r['ga:first_s']:.2f} s / {r['tpe:first_s']:.2f} s |")
    lines += ["", "TPE is searchkit's `make_tpe` (multivariate, constant liar); random is the floor: what "
              "Optuna itself costs per ask + tell on that storage.", "",
              "Growing the study to the size with one sampler instance (mean per trial over the whole fill; "
              "TPE and random get their history added directly, so they have no such figure):", ""]
    for kind, r in results.items():
        n = r["size"]
        lines.append(f"- {kind} (to {n}): abc {1e3 * r['abc_s'] / n:.1f} ms, abc2 {1e3 * r['abc2_s'] / n:.1f} ms, "
                     f"ga {1e3 * r['ga_s'] / n:.1f} ms per trial")
    lines.append("")
    if before:
        lines += ["## Against the baseline", "",
                  f"The same benchmark of commit `{opt['baseline']}`, run first in this run with the same options; "
                  "each median ask + tell of this version over the baseline's (< 1: faster now).", "",
                  "| storage | abc | abc, 2 objectives | ga | tpe | random |", "|---|---|---|---|---|---|"]
        for kind, r in results.items():
            b = before.get(kind)
            if b:
                lines.append(f"| {kind} | " + " | ".join(f"{r[f'{n}_ms'] / b[f'{n}_ms']:.2f}x"
                                                          for n in ("abc", "abc2", "ga", "tpe", "random")) + " |")
        lines.append("")
    path = write_report("samplers", "\n".join(lines) + "\n",
                        {"options": opt, "results": results, "baseline": before}, opt["out"])
    print(f"wrote {path}")
    return 0
