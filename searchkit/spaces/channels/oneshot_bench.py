"""One-shot channel search benchmark: ``algo=darts`` against black-box searches and uniform
pruning, under a FLOPs bound and under a latency bound, side by side in one run.

Protocol (``docs/oneshot.md``): one base (ResNet-56 on digits, the quick start) trained
once and shared. For each bound (FLOPs <= ``flops`` of the base; latency <= a fraction of
the base's predicted latency on an ONNX Runtime target) and each seed, the arms are
``algo=darts`` (one supernet, genomes derived every ``derive_every`` epochs and trained as
trials), abc and tpe (``trials`` candidates each), the black-box arms cut at darts'
wall-clock (their best among the candidates finished within the time darts took), and
uniform pruning (the widest common fraction under the bound). Every arm's best is
fine-tuned ``final_epochs`` from the inherited weights and scored on the test split; every
winner is exported, so a latency bound is also measured on ``model.onnx``.

Example:
    python -m searchkit.bench oneshot              # about 60 minutes on 2 cores
    python -m searchkit.bench oneshot quick=true   # a smoke run
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from searchkit.bench.common import (best_within, latency_bound, latency_target, median, options, quick_options,
                                    run_cells, trained, work_dir, write_report)

DEFAULTS = {"model": "resnet56", "data": "digits", "flops": 0.3, "latency_fraction": 0.5, "seeds": 3,
            "trials": 24, "algos": ["abc", "tpe"], "darts_epochs": 6, "warmup": 2, "derive_every": 2,
            "finetune_epochs": 1.0, "final_epochs": 2.0, "base_epochs": 15, "target": "this-cpu-ort-1t",
            "dir": "latency", "bounds": ["flops", "latency"], "jobs": 2, "work": None, "quick": False,
            "out": "reports/bench"}
QUICK = {"model": "resnet20", "seeds": 1, "trials": 2, "algos": ["abc"], "darts_epochs": 2, "warmup": 1,
         "derive_every": 1, "finetune_epochs": 0.25, "final_epochs": 0.25, "base_epochs": 1, "jobs": 1}


def _common(opt: dict, work: Path) -> list[str]:
    return [f"space.model={opt['model']}", f"data={opt['data']}", f"finetune.epochs={opt['finetune_epochs']}",
            "progress=false", f"base.epochs={opt['base_epochs']}", f"base.cache_dir={work / 'bases'}"]


def run_cell(opt: dict, kind: str, bound_args: list[str], seed: int, checkpoint: str, work: str) -> list[dict]:
    """Every arm of one (bound, seed) cell."""
    import optuna
    import torch

    from searchkit.config import load_config
    from searchkit.search import run_search
    from searchkit.spaces.channels.bench import _final
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)  # cells run side by side, one core each
    work_dir = Path(work)
    tag = f"{kind}-{seed}"
    storage = f"sqlite:///{work_dir / f'{tag}.db'}"
    for stale in work_dir.glob(f"{tag}.db*"):  # work=DIR reuses the base, never an earlier run's studies
        stale.unlink()
    common = _common(opt, work_dir) + [f"base.checkpoint={checkpoint}", f"seed={seed}", f"storage={storage}",
                                       *bound_args]
    darts = ["algo=darts", f"algo.epochs={opt['darts_epochs']}", f"algo.warmup={opt['warmup']}",
             f"algo.derive_every={opt['derive_every']}"]
    rows, outcomes = [], {}
    for arm, extra in (("darts", darts), *((a, [f"algo={a}", f"trials={opt['trials']}"]) for a in opt["algos"])):
        started = time.perf_counter()
        outcome = run_search(load_config(common + extra + [f"study={arm}-{tag}"]), quiet=True)
        outcomes[arm] = (outcome, time.perf_counter() - started)
    darts_s = outcomes["darts"][1]
    setup = outcomes["darts"][0].setup
    picks = {arm: (out.best, s, len(trained(out.study.trials))) for arm, (out, s) in outcomes.items()}
    for arm in opt["algos"]:  # the black-box arm stopped when darts stopped
        cut = best_within(outcomes[arm][0].study, darts_s)
        if cut:
            picks[f"{arm}@darts-time"] = (cut[0], darts_s, cut[1])
    limit_key = "latency" if kind == "latency" else "flops"
    limit = setup.limits[limit_key]
    for arm, (best, seconds, count) in picks.items():
        genome = best.user_attrs["genome"]
        test, val = _final(setup, setup.space.build(genome, seed=seed).model, seed, opt["final_epochs"])
        rows.append({"arm": arm, "bound": kind, "seed": seed, "test": test, "val": val, "seconds": seconds,
                     "search_val": best.values[0], "cost_ratio": setup.pricer.price(genome).costs[limit_key] / limit,
                     "keep": genome["keep"], "trained": count})
    # uniform pruning: the widest common fraction (1% steps) that meets the run's bounds
    fraction = max((f / 100 for f in range(1, 101) if setup.pricer.price(setup.space.uniform(f / 100)).feasible),
                   default=None)
    if fraction is not None:
        genome = setup.space.uniform(fraction)
        test, val = _final(setup, setup.space.build(genome, seed=seed).model, seed, opt["final_epochs"])
        rows.append({"arm": "uniform", "bound": kind, "seed": seed, "test": test, "val": val, "seconds": 0.0,
                     "cost_ratio": setup.pricer.price(genome).costs[limit_key] / limit, "keep": genome["keep"],
                     "trained": 0})
    for r in rows:
        print(f"{tag} {r['arm']}: test {r['test']:.4f}, {r['seconds']:.0f} s", flush=True)
    return rows


def main(argv: list[str]) -> int:
    import torch

    from searchkit.config import load_config
    from searchkit.setup import RunSetup
    opt = quick_options(options(argv, DEFAULTS), argv, QUICK)
    started = time.perf_counter()
    work = work_dir(opt, "searchkit-oneshot-")
    setup = RunSetup.build(load_config(_common(opt, work) + ["seed=0"]), quiet=True)
    checkpoint = work / f"base-{opt['model']}.pt"
    torch.save(setup.base.module.state_dict(), checkpoint)
    base_val = setup.base.accuracy
    bounds = {}
    if "flops" in opt["bounds"]:
        bounds["flops"] = ([f"constraint.flops={opt['flops']}"], f"FLOPs <= {opt['flops']:.0%} of the base")
    target_line = None
    if "latency" in opt["bounds"]:
        target, tdir, target_line = latency_target(opt["target"], opt["dir"], quick=opt["quick"], work=work)
        lat = [f"latency.target={target}", f"latency.dir={tdir}", "constraint.flops=null"]
        cost = RunSetup.build(load_config(_common(opt, work) + [f"base.checkpoint={checkpoint}", *lat]),
                              quiet=True).costs["latency"]
        ms = latency_bound(cost, opt["latency_fraction"])
        bounds["latency"] = ([*lat, f"constraint.latency_ms={ms}"],
                             f"latency <= {ms:g} ms on {target_line} (base predicted {cost.base():.3f} ms)")
    cells = [(k, s) for k in bounds for s in range(int(opt["seeds"]))]
    rows = run_cells(run_cell, [(opt, k, bounds[k][0], s, str(checkpoint), str(work)) for k, s in cells],
                     int(opt["jobs"]))
    _measure(rows, opt, work)
    wall = time.perf_counter() - started
    lines = _report(rows, opt, bounds, base_val, wall)
    path = write_report("oneshot", "\n".join(lines) + "\n",
                        {"options": opt, "rows": rows, "bounds": {k: v[1] for k, v in bounds.items()},
                         "base_val": base_val, "wall_s": wall}, opt["out"])
    print(f"wrote {path}")
    return 0


def _measure(rows: list[dict], opt: dict, work: Path) -> None:
    """Export every latency-bound arm's winner (export measures it on the target's runtime),
    one at a time after all cells: a cell still training beside a measurement skews it."""
    from searchkit.export import export_study
    for seed in sorted({r["seed"] for r in rows if r["bound"] == "latency"}):
        tag = f"latency-{seed}"
        for arm in ("darts", *opt["algos"]):
            storage = f"sqlite:///{work / f'{tag}.db'}"
            folder = export_study(f"{arm}-{tag}", storage, out=work / "exports" / tag)[0]
            record = json.loads((folder / "arch.json").read_text()).get("latency") or {}
            for r in rows:
                if r["bound"] == "latency" and r["seed"] == seed and r["arm"] == arm:
                    r["measured_ms"], r["bound_met"] = record.get("measured_ms"), record.get("bound_met")


def _report(rows: list[dict], opt: dict, bounds: dict, base_val: float, wall: float) -> list[str]:
    arms = ["darts", *opt["algos"], *(f"{a}@darts-time" for a in opt["algos"]), "uniform"]
    lines = ["# One-shot channel search (algo=darts) against black-box search and uniform pruning", ""]
    if opt["quick"]:
        lines += ["**Quick form (a smoke run): too few seeds, epochs and candidates to read anything into.**", ""]
    lines += [f"{opt['model']} on {opt['data']} (base val {base_val:.4f}), {opt['seeds']} seeds per bound. darts: "
              f"{opt['darts_epochs']} supernet epochs ({opt['warmup']} warm-up), a genome derived every "
              f"{opt['derive_every']}; abc/tpe: {opt['trials']} candidates. Every trial (derived or proposed) is "
              f"fine-tuned {opt['finetune_epochs']:g} epoch(s) and ranked on validation; each arm's best is "
              f"fine-tuned {opt['final_epochs']:g} epochs and scored on the test split. `ARM@darts-time`: the "
              f"black-box arm's best among the candidates finished within darts' wall-clock. Wall "
              f"{wall / 60:.0f} min, {opt['jobs']} cell(s) at a time, one core each.", "",
              "Cut to fit about an hour on 2 cores: the candidates per black-box search, the supernet epochs "
              "and the final fine-tuning (a deployment would fine-tune the winner for many epochs).", ""]
    goals = []
    for kind, (_, title) in bounds.items():
        cell = [r for r in rows if r["bound"] == kind]
        seeds = sorted({r["seed"] for r in cell})
        by = {a: {r["seed"]: r for r in cell if r["arm"] == a} for a in arms}
        lines += [f"## {title}", "", "| arm | median test | Δ darts (median) | search s (median) | trials trained | "
                  "priced cost / its limit | measured ms (median) | measured bound met | per-seed test |",
                  "|---|---|---|---|---|---|---|---|---|"]
        med = {}
        for a in arms:
            got = [by[a][s] for s in seeds if s in by[a]]
            if not got:
                continue
            med[a] = median([r["test"] for r in got])
            diffs = [by[a][s]["test"] - by["darts"][s]["test"] for s in seeds if s in by[a] and s in by["darts"]]
            ratio = median([r["cost_ratio"] for r in got])
            met = [r.get("bound_met") for r in got if r.get("bound_met") is not None]
            ms = [r["measured_ms"] for r in got if r.get("measured_ms") is not None]
            lines.append(f"| {a} | {med[a]:.4f} | {median(diffs) * 100:+.2f} pp | "
                         f"{median([r['seconds'] for r in got]):.0f} | {median([r['trained'] for r in got]):.0f} | "
                         f"{ratio:.3f} | {f'{median(ms):.3f}' if ms else '-'} | "
                         f"{f'{sum(met)}/{len(met)}' if met else '-'} | "
                         f"{', '.join(format(r['test'], '.4f') for r in got)} |")
        black = [a for a in opt["algos"] if a in med]
        if black and "darts" in med:
            best = max(black, key=lambda a: med[a])
            gap = (med[best] - med["darts"]) * 100
            share = median([by["darts"][s]["seconds"] / by[best][s]["seconds"] for s in seeds
                            if s in by[best] and s in by["darts"]])
            ok = gap <= 0.5 and share <= 1 / 3
            goals.append(f"- {title}: darts {med['darts']:.4f} vs best black-box arm {best} {med[best]:.4f} "
                         f"({gap:+.2f} pp behind), at {share:.2f}x its wall-clock: {'MET' if ok else 'NOT MET'}")
        lines.append("")
    lines += ["## Goal (darts within 0.5 pp of the best black-box arm at <= 1/3 of its wall-clock)", "",
              *(goals or ["- no cell"]), ""]
    return lines
