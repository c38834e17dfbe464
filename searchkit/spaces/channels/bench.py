"""Channel search benchmark: the searches against the pruners users already have, at equal
FLOPs and equal fine-tuning, paired by seed.

Protocol (one run, side by side; ``docs/channels.md`` explains the choices):

1. Each base network is trained once (seed 0) and shared by every arm, budget and seed.
2. For every (model, FLOPs budget, seed) cell, each strategy (abc, ga, tpe, random) searches
   ``trials`` candidates under the bound, each scored by its validation accuracy after
   ``finetune_epochs``; each pruner (uniform, Torch-Pruning's global magnitude and Taylor
   importance) cuts the same units to the same bound.
3. Every arm's model (a search's best, a pruner's cut) is fine-tuned ``final_epochs`` from the
   inherited base weights with that seed and scored on the held-out test split.
4. The report pairs arms by seed: differences to uniform and to magnitude pruning per seed,
   their medians and wins, the search cost, and the evaluations abc and tpe need to reach
   random search's final best validation accuracy.

Example:
    python -m searchkit.bench channels              # the full table (~90 min on 2 cores)
    python -m searchkit.bench channels quick=true   # a smoke run (a minute)
"""

from __future__ import annotations

import time
from pathlib import Path

from searchkit.bench.common import median, options, quick_options, run_cells, work_dir, write_report

DEFAULTS = {"models": ["resnet56", "mobilenet_v2"], "budgets": [0.15, 0.25, 0.35], "seeds": 5, "trials": 12,
            "algos": ["abc", "ga", "tpe", "random"], "pruners": ["uniform", "magnitude", "taylor"],
            "data": "digits", "finetune_epochs": 1.0, "final_epochs": 2.0, "base_epochs": 15, "jobs": 2,
            "rule": "l1", "units": "all", "work": None, "quick": False, "out": "reports/bench"}
QUICK = {"models": ["resnet20"], "budgets": [0.25], "seeds": 2, "trials": 3, "algos": ["abc", "random"],
         "final_epochs": 0.25, "base_epochs": 1, "finetune_epochs": 0.25, "jobs": 1}


def _common(opt: dict, model: str, work: Path) -> list[str]:
    return [f"space.model={model}", f"space.rule={opt['rule']}", f"space.units={opt['units']}", f"data={opt['data']}",
            f"finetune.epochs={opt['finetune_epochs']}",
            f"trials={opt['trials']}", "progress=false", f"base.epochs={opt['base_epochs']}",
            f"base.cache_dir={work / 'bases'}"]


def _train_base(opt: dict, model: str, work: Path) -> tuple[str, float, int]:
    """``(checkpoint, val accuracy, units)`` of the base every cell of ``model`` shares."""
    import torch

    from searchkit.config import load_config
    from searchkit.setup import RunSetup
    setup = RunSetup.build(load_config(_common(opt, model, work) + ["seed=0"]), quiet=True)
    path = work / f"base-{model}.pt"
    torch.save(setup.base.module.state_dict(), path)
    return str(path), setup.base.accuracy, len(setup.space.units)


def _final(setup, model, seed: int, epochs: float) -> tuple[float, float]:
    from searchkit.evaluate import evaluate_accuracy, finetune
    finetune(model, setup.data, setup.cfg.finetune.with_epochs(epochs), device=setup.device, seed=seed,
             progress=False)
    model.to("cpu")
    return evaluate_accuracy(model, setup.data.test)[0], evaluate_accuracy(model, setup.data.val)[0]


def run_cell(opt: dict, model: str, budget: float, seed: int, checkpoint: str, work: str) -> list[dict]:
    """Every arm of one (model, budget, seed) cell."""
    import optuna
    import torch

    from searchkit.config import load_config
    from searchkit.core.errors import ConfigError
    from searchkit.search import run_search
    from searchkit.setup import RunSetup
    from searchkit.spaces.channels.baselines import prune_globally
    from searchkit.study import trial_cost
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)  # cells run side by side, one core each
    work_dir = Path(work)
    tag = f"{model}-{budget:g}-{seed}"
    common = _common(opt, model, work_dir) + [f"base.checkpoint={checkpoint}", f"constraint.flops={budget}",
                                              f"seed={seed}", f"storage=sqlite:///{work_dir / f'{tag}.db'}"]
    for stale in work_dir.glob(f"{tag}.db*"):  # work=DIR reuses bases, never an earlier run's studies
        stale.unlink()
    rows = []
    setup = None
    try:
        RunSetup.build(load_config(common), quiet=True, train_base=False)
    except ConfigError as exc:  # a budget below the space's smallest network: said in the report
        print(f"{tag}: {exc}", flush=True)
        return [{"arm": a, "model": model, "budget": budget, "seed": seed, "infeasible": str(exc)}
                for a in (*opt["algos"], *opt["pruners"])]
    for algo in opt["algos"]:
        started = time.perf_counter()
        outcome = run_search(load_config(common + [f"algo={algo}", f"study={algo}-{tag}"]), quiet=True)
        searched = time.perf_counter() - started
        setup = outcome.setup
        done = sorted((t for t in outcome.study.trials if t.values), key=lambda t: t.number)
        genome = outcome.best.user_attrs["genome"]
        test, val = _final(setup, setup.space.build(genome, seed=seed).model, seed, opt["final_epochs"])
        rows.append({"arm": algo, "model": model, "budget": budget, "seed": seed, "test": test, "val": val,
                     "search_val": outcome.best.values[0], "values": [t.values[0] for t in done],
                     "flops_ratio": trial_cost(outcome.best, "flops") / setup.costs["flops"].base(),
                     "evaluated": outcome.evaluated, "seconds": searched, "keep": genome["keep"]})
    if setup is None:
        setup = RunSetup.build(load_config(common), quiet=True)
    bound, base_flops = setup.limits["flops"], setup.costs["flops"].base()
    for pruner in opt["pruners"]:
        started = time.perf_counter()
        cut = prune_globally(setup.space, pruner, bound, setup.data, seed=seed)
        chosen = time.perf_counter() - started
        test, val = _final(setup, cut.model, seed, opt["final_epochs"])
        rows.append({"arm": pruner, "model": model, "budget": budget, "seed": seed, "test": test, "val": val,
                     "flops_ratio": cut.flops / base_flops, "evaluated": 0, "seconds": chosen,
                     "keep": [round(k, 4) for k in cut.keep]})
    for r in rows:
        print(f"{tag} {r['arm']}: test {r['test']:.4f} (FLOPs {r['flops_ratio']:.1%})", flush=True)
    return rows


def reach(values: list[float], target: float) -> int | None:
    """Evaluations until the best-so-far first reaches ``target`` (``None``: never)."""
    best = float("-inf")
    for i, v in enumerate(values, 1):
        best = max(best, v)
        if best >= target:
            return i
    return None


def _table(rows: list[dict], opt: dict) -> tuple[list[str], dict]:
    arms = [*opt["algos"], *opt["pruners"]]
    lines, verdicts = [], {}
    for model in opt["models"]:
        for budget in opt["budgets"]:
            cell = [r for r in rows if r["model"] == model and r["budget"] == budget]
            by = {a: {r["seed"]: r for r in cell if r["arm"] == a} for a in arms}
            seeds = sorted(set.intersection(*(set(v) for v in by.values()))) if by else []
            if not seeds:
                continue
            lines += [f"### {model}, FLOPs ≤ {budget:.0%} of the base", "",
                      "| arm | median test | Δ uniform (median, wins) | Δ magnitude (median, wins) | "
                      "FLOPs / base | search s | evaluated | per-seed test |", "|---|---|---|---|---|---|---|---|"]
            med = {}
            for a in arms:
                tests = [by[a][s]["test"] for s in seeds]
                med[a] = median(tests)
                parts = []
                for ref in ("uniform", "magnitude"):
                    if ref not in by or a == ref:
                        parts.append("-")
                        continue
                    d = [by[a][s]["test"] - by[ref][s]["test"] for s in seeds]
                    parts.append(f"{median(d) * 100:+.2f} pp, {sum(x > 0 for x in d)}/{len(d)}")
                lines.append(f"| {a} | {med[a]:.4f} | {parts[0]} | {parts[1]} | "
                             f"{median([by[a][s]['flops_ratio'] for s in seeds]):.1%} | "
                             f"{median([by[a][s]['seconds'] for s in seeds]):.0f} | "
                             f"{median([by[a][s]['evaluated'] for s in seeds]):.0f} | "
                             f"{', '.join(format(by[a][s]['test'], '.4f') for s in seeds)} |")
            searched = [a for a in opt["algos"] if a in by]
            if searched and "uniform" in by:
                best = max(searched, key=lambda a: med[a])
                d_u = [by[best][s]["test"] - by["uniform"][s]["test"] for s in seeds]
                d_m = ([by[best][s]["test"] - by["magnitude"][s]["test"] for s in seeds]
                       if "magnitude" in by else [float("nan")])
                verdicts[(model, budget)] = {"best": best, "vs_uniform": median(d_u),
                                             "wins_uniform": sum(x > 0 for x in d_u),
                                             "vs_magnitude": median(d_m),
                                             "wins_magnitude": sum(x > 0 for x in d_m), "seeds": len(seeds)}
            lines.append("")
    return lines, verdicts


def _efficiency(rows: list[dict], opt: dict) -> list[str]:
    """abc and tpe: evaluations to reach random's final best, as a share of random's."""
    out = []
    for algo in ("abc", "tpe", "ga"):
        shares = []
        for r in (r for r in rows if r["arm"] == algo):
            rnd = next((x for x in rows if x["arm"] == "random" and x["model"] == r["model"]
                        and x["budget"] == r["budget"] and x["seed"] == r["seed"]), None)
            if rnd is None or not rnd["values"]:
                continue
            n = reach(r["values"], max(rnd["values"]))
            shares.append(n / len(rnd["values"]) if n is not None else float("inf"))
        if shares:
            reached = [s for s in shares if s != float("inf")]
            m = median(shares)
            out.append(f"- {algo}: reaches random's final best in {sum(s <= 0.6 for s in shares)}/{len(shares)} "
                       f"cells within 60% of random's evaluations; median share "
                       f"{'never' if m == float('inf') else format(m, '.0%')}"
                       + ("" if len(reached) == len(shares) else
                          f" ({len(shares) - len(reached)} cells never reach it)"))
    return out


def main(argv: list[str]) -> int:
    opt = quick_options(options(argv, DEFAULTS), argv, QUICK)
    started = time.perf_counter()
    work = work_dir(opt, "searchkit-bench-")  # work=DIR reuses the bases trained there (same cache key)
    bases = {}
    for model in opt["models"]:
        bases[model] = _train_base(opt, model, work)
        print(f"base {model}: val accuracy {bases[model][1]:.4f}, {bases[model][2]} units", flush=True)
    cells = [(m, b, s) for m in opt["models"] for b in opt["budgets"] for s in range(int(opt["seeds"]))]
    rows = run_cells(run_cell, [(opt, m, b, s, bases[m][0], str(work)) for m, b, s in cells], int(opt["jobs"]))
    wall = time.perf_counter() - started
    infeasible = sorted({f"{r['model']} at {r['budget']:.0%}: {r['infeasible']}" for r in rows if "infeasible" in r})
    rows = [r for r in rows if "infeasible" not in r]
    table, verdicts = _table(rows, opt)
    goals = []
    for (model, budget), v in verdicts.items():
        if budget > 0.25 + 1e-9:
            continue
        ok = v["vs_uniform"] >= 0.01 and v["vs_magnitude"] >= 0.005 and min(v["wins_uniform"], v["wins_magnitude"]) >= 0.8 * v["seeds"]
        goals.append(f"- {model} at {budget:.0%}: best searched arm {v['best']}: {v['vs_uniform'] * 100:+.2f} pp "
                     f"vs uniform ({v['wins_uniform']}/{v['seeds']} seeds), {v['vs_magnitude'] * 100:+.2f} pp vs "
                     f"magnitude ({v['wins_magnitude']}/{v['seeds']}): {'MET' if ok else 'NOT MET'}")
    n_test = 359 if opt["data"] == "digits" else None
    lines = ["# Channel search against the pruners users have, at equal FLOPs and fine-tuning", "",
             f"Data {opt['data']}; {', '.join(f'{m} (base val {bases[m][1]:.4f}, {bases[m][2]} units)' for m in opt['models'])}. "
             f"Per cell: each search trains {opt['trials']} candidates ({opt['finetune_epochs']:g} epoch each, "
             f"ranked on the validation split); each search's best and each pruner's cut are fine-tuned "
             f"{opt['final_epochs']:g} epochs from the inherited weights and scored on the test split"
             + (f" ({n_test} images: one image is {1 / n_test * 100:.2f} pp)" if n_test else "") + ". "
             f"{opt['seeds']} seeds per budget, paired: Δ is the per-seed difference in test accuracy, "
             f"'wins' the seeds where the arm is strictly better. Wall {wall / 60:.0f} min, {opt['jobs']} "
             f"cell(s) at a time, one core each.", "",
             "Cut to fit about 90 minutes on 2 cores: the candidates per search (ABCPruner runs thousands), "
             "the final fine-tuning (ABCPruner: 150+ epochs on CIFAR-10) and the task (the digits; "
             "`data=fashion` is harder and takes the same command).", "", *table,
             *(["Cells no network of the space can meet: " + "; ".join(infeasible), ""] if infeasible else []),
             "## Goals (15% and 25% budgets: best searched arm ≥ +1 pp vs uniform, ≥ +0.5 pp vs magnitude, "
             "winning ≥ 4 of 5 paired seeds)", "", *(goals or ["- no 15%/25% cell in this run"]), "",
             "## Sample efficiency (goal: abc or tpe reaches random's final best in ≤ 60% of its evaluations)",
             "", *(_efficiency(rows, opt) or ["- no random arm in this run"]), ""]
    if opt["quick"]:
        lines.insert(2, "**Quick form (a smoke run): too few seeds and candidates to read anything into.**\n")
    path = write_report("channels", "\n".join(lines) + "\n",
                        {"options": opt, "rows": rows, "bases": bases, "wall_s": wall,
                         "verdicts": {f"{m}@{b}": v for (m, b), v in verdicts.items()}}, opt["out"])
    print(f"wrote {path}")
    return 0
