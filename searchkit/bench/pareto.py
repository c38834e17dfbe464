"""Pareto benchmark: the accuracy/FLOPs front each strategy finds after the same number of
evaluations, measured by its hypervolume.

Protocol (one run, side by side):

1. One base network is trained once (seed 0) and shared by every arm (``base.checkpoint``).
2. Each strategy (abc, ga, nsga2, tpe, random) searches the channel space with
   ``objectives=[accuracy,flops]`` and no constraint until ``evals`` candidates have been
   trained (fine-tuned ``finetune_batches`` steps, scored on the validation split).
   Population-based strategies get one common size, ``population``: ABC's food sources,
   GA's and NSGA-II's population, TPE's random start-up trials.
3. After the first k trained candidates (k in ``checkpoints``), the hypervolume of their
   front is taken in the plane (1 - val accuracy, FLOPs / base FLOPs), both minimised, with
   the reference point (1, 1): the unpruned base and a model that is always wrong bound it.
   A larger hypervolume is a better front; the most it could be is 1.
4. Steps 2-3 repeat for ``seeds`` seeds; the report gives medians and every figure.

Example:
    python -m searchkit.bench pareto seeds=5 evals=24
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from searchkit.bench.common import median, options, write_report
from searchkit.config import load_config
from searchkit.search import run_search
from searchkit.setup import RunSetup
from searchkit.study import BASE_KEY, base_costs, evaluated_trials, trial_cost

DEFAULTS = {"model": "resnet20", "data": "digits", "evals": 24, "checkpoints": [8, 16],
            "seeds": 5, "population": 8, "finetune_batches": 16, "base_epochs": 15,
            "algos": ["abc", "ga", "nsga2", "tpe", "random"], "threads": 1, "out": "reports/bench"}
REFERENCE = (1.0, 1.0)

# How each arm is told the common population size.
_POPULATION_KEY = {"abc": "algo.food_number", "ga": "algo.population_size",
                   "nsga2": "algo.population_size", "tpe": "algo.n_startup_trials"}


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float] = REFERENCE) -> float:
    """Area dominated by 2-D minimisation ``points`` and bounded by ``ref``.

    Example:
        >>> hypervolume([(0.2, 0.5), (0.5, 0.2), (0.6, 0.6)])
        0.55
    """
    area, low = 0.0, ref[1]
    for x, y in sorted(points):  # by the first loss; each step adds the strip it newly covers
        if x < ref[0] and y < low:
            area, low = area + (ref[0] - x) * (low - y), y
    return round(area, 12)


def front_points(study) -> list[tuple[float, float]]:
    """(1 - val accuracy, FLOPs / base) of each trained candidate, in trial order."""
    base = base_costs(study.user_attrs.get(BASE_KEY) or {})["flops"]
    return [(1.0 - t.values[0], trial_cost(t, "flops") / base)
            for t in sorted(evaluated_trials(study), key=lambda t: t.number) if t.values]


def non_dominated(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out, low = [], float("inf")
    for p in sorted(set(points)):
        if p[1] < low:
            out.append(p)
            low = p[1]
    return out


def main(argv: list[str]) -> int:
    opt = options(argv, DEFAULTS)
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # NOTE: one intra-op thread: these machines are shared, and oversubscribed threads made
    # a fine-tune ten times slower there; the figures are hypervolumes, not times.
    torch.set_num_threads(int(opt["threads"]))
    evals = int(opt["evals"])
    checkpoints = sorted({int(k) for k in opt["checkpoints"] if 0 < int(k) < evals} | {evals})
    work = Path(tempfile.mkdtemp(prefix="searchkit-bench-pareto-"))
    common = [f"space.model={opt['model']}", f"data={opt['data']}", "objectives=[accuracy,flops]",
              f"finetune.max_batches={opt['finetune_batches']}", f"trials={evals}", "progress=false",
              "artifacts=none", f"base.epochs={opt['base_epochs']}", f"base.cache_dir={work / 'bases'}",
              f"storage=sqlite:///{work / 'bench.db'}"]
    started = time.perf_counter()
    base_ctx = RunSetup.build(load_config(common + ["seed=0"]), quiet=True)
    base_ckpt = work / "base.pt"
    torch.save(base_ctx.base.module.state_dict(), base_ckpt)
    common.append(f"base.checkpoint={base_ckpt}")
    base_s = time.perf_counter() - started
    print(f"base {opt['model']} on {opt['data']}: val accuracy {base_ctx.base.accuracy:.4f} "
          f"({base_s:.0f} s)", flush=True)

    rows: dict[str, list[dict]] = {a: [] for a in opt["algos"]}
    every_point: list[tuple[float, float]] = []
    for seed in range(int(opt["seeds"])):
        for algo in opt["algos"]:
            extra = [f"{_POPULATION_KEY[algo]}={opt['population']}"] if algo in _POPULATION_KEY else []
            cfg = load_config(common + [f"algo={algo}", f"seed={seed}", f"study=pareto-{algo}-{seed}", *extra])
            t0 = time.perf_counter()
            outcome = run_search(cfg, quiet=True)
            seconds = time.perf_counter() - t0
            points = front_points(outcome.study)
            every_point += points
            hv = {str(k): hypervolume(points[:k]) for k in checkpoints}
            front = non_dominated(points[:evals])
            rows[algo].append({"seed": seed, "hv": hv, "front": front, "points": points,
                               "evaluated": len(points), "asked": len(outcome.study.trials),
                               "seconds": seconds})
            print(f"{algo} seed {seed}: hypervolume " + ", ".join(f"@{k} {v:.4f}" for k, v in hv.items())
                  + f" ({len(front)} on the front, {len(outcome.study.trials)} asked, {seconds:.0f} s)",
                  flush=True)

    best_known = hypervolume(non_dominated(every_point))
    rnd = {str(k): median([r["hv"][str(k)] for r in rows["random"]]) for k in checkpoints} \
        if "random" in rows else None
    head = " | ".join(f"median HV @{k}" for k in checkpoints)
    lines = [
        "# Pareto search: hypervolume of the accuracy/FLOPs front per strategy", "",
        f"Base {opt['model']} on {opt['data']} (val accuracy {base_ctx.base.accuracy:.4f}), trained once and "
        f"shared. Each strategy searches `objectives=[accuracy,flops]` (no constraint) until {evals} "
        f"candidates are trained, each fine-tuned {opt['finetune_batches']} steps of batch "
        f"{base_ctx.cfg.finetune.batch_size} and scored on the validation split "
        f"({len(base_ctx.data.val)} images). Common population size {opt['population']} (ABC food sources, "
        f"GA and NSGA-II population, TPE start-up trials). Hypervolume in the plane (1 - val accuracy, "
        f"FLOPs / base FLOPs), both minimised, reference point {REFERENCE}, after the first k trained "
        f"candidates; medians over {opt['seeds']} seeds (0..{int(opt['seeds']) - 1}).", "",
        f"| arm | {head} | vs random @{evals} | per-seed HV @{evals} | median front size | median search time |",
        "|---|" + "---|" * (len(checkpoints) + 4),
    ]
    for arm, rs in rows.items():
        meds = [median([r["hv"][str(k)] for r in rs]) for k in checkpoints]
        vs = f"{meds[-1] / rnd[str(evals)]:.3f}x" if rnd and rnd[str(evals)] > 0 else "-"
        lines.append(f"| {arm} | " + " | ".join(f"{m:.4f}" for m in meds) + f" | {vs} | "
                     + ", ".join(f"{r['hv'][str(evals)]:.4f}" for r in rs)
                     + f" | {median([len(r['front']) for r in rs]):g} | {median([r['seconds'] for r in rs]):.0f} s |")
    lines += ["", f"The front of every candidate trained in this run (all arms and seeds together) has "
              f"hypervolume {best_known:.4f}: the best known here. One validation image is "
              f"{1 / len(base_ctx.data.val):.4f} of accuracy, so hypervolume differences of a few "
              "thousandths are within the noise of the fitness itself.", ""]
    data = {"options": opt, "reference_point": REFERENCE, "checkpoints": checkpoints,
            "base_accuracy": base_ctx.base.accuracy, "base_seconds": base_s,
            "best_known_hypervolume": best_known, "rows": rows}
    path = write_report("pareto", "\n".join(lines) + "\n", data, opt["out"])
    print(f"wrote {path}")
    return 0
