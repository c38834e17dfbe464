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

With ``baseline=REF`` (a git commit of this repository), that version's own benchmark and
this one's run as subprocesses with the same options, alternating ``rounds`` times (a
shared machine drifts by 10-30 % over minutes: a fixed order would bias the ratio), and
the report gives each sampler's median over rounds against the baseline's.

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
            "out": "reports/bench", "baseline": None, "rounds": 3}


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


def _alternating(opt: dict) -> tuple[list[dict], list[dict]]:
    """Runs of the baseline version and of this one, alternating, each in its own process."""
    import json
    trees = {"baseline": baseline_tree(str(opt["baseline"])), "now": Path(__file__).resolve().parents[2]}
    args = [f"{k}={json.dumps(v)}" for k, v in opt.items() if k not in ("baseline", "out", "rounds")]
    runs: dict[str, list[dict]] = {"baseline": [], "now": []}
    for r in range(int(opt["rounds"])):
        for which, tree in trees.items():
            out = Path(tempfile.mkdtemp(prefix=f"searchkit-samplers-{which}-"))
            run_in(tree, ["-m", "searchkit.bench", "samplers", *args, f"out={out}"])
            runs[which].append(json.loads((out / "samplers.json").read_text())["results"])
            print(f"round {r + 1}: {which} done", flush=True)
    return runs["baseline"], runs["now"]


def _median_results(runs: list[dict]) -> dict:
    out = {}
    for kind in runs[0]:
        out[kind] = {k: statistics.median(r[kind][k] for r in runs) for k in runs[0][kind]}
    return out


def _table(opt: dict, results: dict) -> list[str]:
    dims = int(opt["dims"])
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
    return lines


def main(argv: list[str]) -> int:
    opt = options(argv, DEFAULTS)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if opt["baseline"]:
        return _compare(opt)
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
    lines = _table(opt, results)
    lines.append("")
    path = write_report("samplers", "\n".join(lines) + "\n", {"options": opt, "results": results}, opt["out"])
    print(f"wrote {path}")
    return 0


_NAMES = ("abc", "abc2", "ga", "tpe", "random")


def _compare(opt: dict) -> int:
    """``baseline=REF``: this version against an earlier one, alternating rounds."""
    before_runs, now_runs = _alternating(opt)
    before, now = _median_results(before_runs), _median_results(now_runs)
    lines = _table(opt, now) + ["", "## Against a baseline", "",
             "The figures above are medians over the rounds below. "
             f"The samplers benchmark of commit `{opt['baseline']}` and of this version, each in its own "
             f"process with the same options ({opt['dims']} genes, memory at {opt['size']} trials, SQLite at "
             f"{opt['sqlite_size']}, {opt['measure']} ask + tell pairs per sampler), alternating "
             f"{opt['rounds']} rounds; per sampler the median over rounds of each run's median ask + tell. "
             "Ratio < 1: faster now.", "",
             "| storage | sampler | baseline ms | now ms | now / baseline | per round (baseline, now) |",
             "|---|---|---|---|---|---|"]
    for kind in now:
        for n in _NAMES:
            b, a = before[kind][f"{n}_ms"], now[kind][f"{n}_ms"]
            rounds = "; ".join(f"{x[kind][f'{n}_ms']:.1f}, {y[kind][f'{n}_ms']:.1f}"
                               for x, y in zip(before_runs, now_runs))
            lines.append(f"| {kind} | {n} | {b:.2f} | {a:.2f} | {a / b:.2f}x | {rounds} |")
    worst = max(now[k][f"{n}_ms"] / before[k][f"{n}_ms"] for k in now for n in _NAMES)
    lines += ["", f"Largest ratio: {worst:.2f}x. `random` is Optuna's own cost on each storage (its code did not "
              "change): how far it moves between versions is this machine's noise.", ""]
    path = write_report("samplers", "\n".join(lines) + "\n",
                        {"options": opt, "baseline": before, "now": now, "runs": {"baseline": before_runs,
                                                                                  "now": now_runs}}, opt["out"])
    print(f"wrote {path}")
    return 0
