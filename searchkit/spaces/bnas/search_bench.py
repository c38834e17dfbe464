"""Part ``search`` of ``python -m searchkit.bench bnas``: what ``algo=darts`` buys on cells.

Per seed, side by side in one process (one core): ``algo=darts`` and ``algo=darts
algo.reduce=true`` at equal epochs (wall-clock and the derived cell's accuracy); 20 random
cells whose ``word_ops`` is within ±10% of the darts cell's, trained like every candidate;
tpe and abc cut at darts' wall-clock (their best among the candidates finished within it).
Each arm's pick is then trained ``final_epochs`` from scratch and scored on the test split.

Example:
    python -m searchkit.bench bnas parts=[search]             # ~40 minutes on 2 cores
    python -m searchkit.bench bnas parts=[search] quick=true  # a smoke run
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

from searchkit.bench.common import best_within, median, run_cells, trained, work_dir


def _common(opt: dict, seed: int, work: Path) -> list[str]:
    return ["space=bnas", f"space.preset={opt['preset']}", f"space.C={opt['search_C']}",
            f"space.cells={opt['search_cells']}", "data=digits", f"finetune.epochs={opt['finetune_epochs']}",
            "progress=false", f"seed={seed}", f"storage=sqlite:///{work / f'seed-{seed}.db'}"]


def _random_cells(space, target: float, count: int, seed: int) -> list[dict]:
    """Up to ``count`` distinct random cells with ``word_ops`` within ±10% of ``target``."""
    from searchkit.core.genome import archid
    rng, dists, found = random.Random(seed), space.distributions(), {}
    for _ in range(20000):
        g = space.genome_of({k: rng.choice(d.choices) for k, d in dists.items()})
        if abs(space.binary_costs(g)["word_ops"] / target - 1) <= 0.1:
            found.setdefault(archid(g), g)
            if len(found) == count:
                break
    return list(found.values())


def run_seed(opt: dict, seed: int, work: str) -> list[dict]:
    """Every arm of one seed."""
    import optuna
    import torch

    from searchkit import evaluator
    from searchkit import study as st
    from searchkit.config import load_config
    from searchkit.evaluate import evaluate_accuracy, finetune
    from searchkit.search import run_search
    from searchkit.session import Session
    from searchkit.setup import RunSetup
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    folder = Path(work)
    for stale in folder.glob(f"seed-{seed}.db*"):
        stale.unlink()
    common = _common(opt, seed, folder)
    darts = ["algo=darts", f"algo.epochs={opt['darts_epochs']}", f"algo.warmup={opt['warmup']}",
             f"algo.derive_every={opt['darts_epochs']}"]  # one derived cell, at the end
    arms = {"darts": darts, "darts+reduce": darts + ["algo.reduce=true"], **{a: [f"algo={a}"] for a in opt["algos"]}}
    runs = {}
    for arm, extra in arms.items():
        if arm in opt["algos"]:  # asked until darts' wall-clock is spent
            extra = extra + [f"trials={opt['bb_trials']}", f"timeout={runs['darts'][1]:.0f}"]
        started = time.perf_counter()
        out = run_search(load_config(common + extra + [f"study={arm.replace('+', '-')}-{seed}"]), quiet=True)
        runs[arm] = (out, time.perf_counter() - started)
        print(f"seed {seed} {arm}: {runs[arm][1]:.0f} s", flush=True)
    darts_s = runs["darts"][1]
    setup = runs["darts"][0].setup
    space = setup.space
    picks = {}
    for arm in ("darts", "darts+reduce"):
        last = max(trained(runs[arm][0].study.trials), key=lambda t: t.user_attrs.get("darts:epoch", 0))
        picks[arm] = (last, runs[arm][1], 1)
    for arm in opt["algos"]:
        cut = best_within(runs[arm][0].study, darts_s)
        if cut:
            picks[f"{arm}@darts-time"] = (cut[0], darts_s, cut[1])
    rows = []
    for arm, (trial, seconds, count) in picks.items():
        genome = trial.user_attrs["genome"]
        model = space.build(genome, seed=seed).model
        finetune(model, setup.data, setup.cfg.finetune.with_epochs(opt["final_epochs"]), device="cpu", seed=seed,
                 progress=False)
        rows.append({"seed": seed, "arm": arm, "seconds": seconds, "trained": count, "val": trial.values[0],
                     "test": evaluate_accuracy(model, setup.data.test)[0],
                     "word_ops": space.binary_costs(genome)["word_ops"]})
    # random cells of the darts cell's word-level size, trained like every candidate
    target = rows[0]["word_ops"]
    cfg, _ = st.resolve_config(load_config(common + ["algo=random", f"study=random-{seed}"]))
    study = st.open_study(cfg, sampler=optuna.samplers.RandomSampler(seed=seed))
    session = Session(RunSetup.build(cfg, quiet=True), study, source="bench")
    session.record_base()
    vals = []
    for g in _random_cells(space, target, int(opt["random_cells"]), seed):
        t = session.record_genome(g, evaluator.evaluate)
        if t.values:
            vals.append(t.values[0])
    rows.append({"seed": seed, "arm": "random cells", "val": statistics.median(vals) if vals else float("nan"),
                 "trained": len(vals), "word_ops": target, "seconds": 0.0, "test": float("nan")})
    for r in rows:
        print(f"seed {seed} {r['arm']}: val {r['val']:.4f} test {r['test']:.4f}", flush=True)
    return rows


def search_part(opt: dict) -> tuple[list[dict], list[str]]:
    work = work_dir(opt, "searchkit-bnas-search-")
    started = time.perf_counter()
    rows = run_cells(run_seed, [(opt, s, str(work)) for s in range(int(opt["seeds"]))], int(opt["jobs"]))
    wall = time.perf_counter() - started
    seeds = sorted({r["seed"] for r in rows})
    by = {(r["seed"], r["arm"]): r for r in rows}
    lines = ["## Differentiable search: reduction, random cells, black-box arms", "",
             f"Preset `{opt['preset']}`, C={opt['search_C']}, {opt['search_cells']} cells, digits at 8×8; "
             f"{len(seeds)} seeds, each seed's arms one after another on one core ({opt['jobs']} seeds at a time; "
             f"{wall / 60:.0f} min). `algo=darts`: {opt['darts_epochs']} epochs ({opt['warmup']} warm-up), one cell "
             f"derived at the end; candidates and derived cells train {opt['finetune_epochs']} epochs (val: 288 "
             f"images); each arm's pick is trained {opt['final_epochs']} epochs from scratch for `test` "
             "(359 images).", "",
             "### Operation-space reduction against none, equal epochs", "",
             "| seed | search (s), none | with reduction | ratio | val, none | val, reduction | test, none | "
             "test, reduction |", "|---|---|---|---|---|---|---|---|"]
    ratios, gaps = [], []
    for s in seeds:
        a, b = by[(s, "darts")], by[(s, "darts+reduce")]
        ratios.append(b["seconds"] / a["seconds"])
        gaps.append(b["val"] - a["val"])
        lines.append(f"| {s} | {a['seconds']:.0f} | {b['seconds']:.0f} | {ratios[-1]:.2f} | {a['val']:.4f} | "
                     f"{b['val']:.4f} | {a['test']:.4f} | {b['test']:.4f} |")
    saved, gap = 1 - median(ratios), statistics.mean(gaps) * 100
    lines += ["", f"Median wall-clock saved: {saved:.0%} (goal ≥ 30%: {'met' if saved >= 0.3 else 'MISSED'}); "
              f"derived cells' val accuracy, mean over seeds, {gap:+.2f} pp with reduction (goal within 0.5 pp: "
              f"{'met' if abs(gap) <= 0.5 else 'MISSED'}).", "",
              "### The darts cell against random cells of equal word-ops (±10%)", "",
              "| seed | darts cell val | its word_ops | random cells | their median val | darts − median (pp) |",
              "|---|---|---|---|---|---|"]
    diffs = []
    for s in seeds:
        d, r = by[(s, "darts")], by[(s, "random cells")]
        diffs.append((d["val"] - r["val"]) * 100)
        lines.append(f"| {s} | {d['val']:.4f} | {d['word_ops'] / 1e3:.0f}K | {r['trained']} | {r['val']:.4f} | "
                     f"{diffs[-1]:+.2f} |")
    lines += ["", f"Median over seeds {median(diffs):+.2f} pp (goal ≥ +2 pp: "
              f"{'met' if median(diffs) >= 2 else 'MISSED'}).", "",
              "### Against black-box arms at darts' wall-clock", "",
              "| arm | median test | median search val | median search (s) | candidates trained |", "|---|---|---|---|---|"]
    arms = [a for a in ("darts", "darts+reduce", *(f"{x}@darts-time" for x in opt["algos"]))
            if any(r["arm"] == a for r in rows)]
    for arm in arms:
        rs = [r for r in rows if r["arm"] == arm]
        lines.append(f"| {arm} | {median([r['test'] for r in rs]):.4f} | {median([r['val'] for r in rs]):.4f} | "
                     f"{median([r['seconds'] for r in rs]):.0f} | {median([r['trained'] for r in rs]):g} |")
    return rows, lines


__all__ = ["run_seed", "search_part"]
