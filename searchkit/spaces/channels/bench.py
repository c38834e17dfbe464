"""Channel search benchmark: ABC and TPE against random search and uniform pruning.

Protocol (one run, side by side):

1. One base network is trained once (seed 0) and shared by every arm.
2. Each strategy (abc, tpe, random) searches ``trials`` trained candidates under the same
   FLOPs bound, scoring each by its validation accuracy after ``finetune_epochs``.
3. Each strategy's best genome, and the uniform genome (one preserved fraction for every
   unit: the largest, in steps of 0.01, that meets the bound), is fine-tuned for
   ``final_epochs`` from the inherited base weights and scored on the held-out test split.
4. Steps 2-3 repeat for ``seeds`` seeds; the report gives medians and the per-seed figures.

Example:
    python -m searchkit.bench channels seeds=3 trials=20
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from searchkit.bench.common import median, options, write_report
from searchkit.config import load_config
from searchkit.evaluate import evaluate_accuracy, finetune
from searchkit.search import run_search
from searchkit.setup import RunSetup
from searchkit.study import trial_cost

DEFAULTS = {"model": "resnet56", "data": "digits", "flops": 0.35, "trials": 20, "seeds": 3,
            "finetune_epochs": 1.0, "final_epochs": 3.0, "base_epochs": 15,
            "algos": ["abc", "tpe", "random"], "out": "reports/bench"}


def uniform_fraction(space, bound: float) -> float:
    """The largest common preserved fraction (step 0.01) whose FLOPs meet ``bound``."""
    best = 0.01
    for step in range(1, 101):
        f = step / 100
        if space.flops_params(space.uniform(f))[0] <= bound:
            best = f
    return best


def final_score(setup: RunSetup, genome: dict, seed: int, epochs: float) -> tuple[float, float]:
    model = setup.space.build(genome, seed=seed).model
    finetune(model, setup.data, setup.cfg.finetune.with_epochs(epochs), device=setup.device, seed=seed,
             progress=False)
    model.to("cpu")
    return evaluate_accuracy(model, setup.data.test)[0], evaluate_accuracy(model, setup.data.val)[0]


def main(argv: list[str]) -> int:
    opt = options(argv, DEFAULTS)
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    work = Path(tempfile.mkdtemp(prefix="searchkit-bench-"))
    common = [f"space.model={opt['model']}", f"data={opt['data']}", f"constraint.flops={opt['flops']}",
              f"finetune.epochs={opt['finetune_epochs']}", f"trials={opt['trials']}", "progress=false",
              f"base.epochs={opt['base_epochs']}", f"base.cache_dir={work / 'bases'}",
              f"storage=sqlite:///{work / 'bench.db'}"]
    # One base for every arm and seed.
    base_ctx = RunSetup.build(load_config(common + ["seed=0"]), quiet=True)
    base_ckpt = work / "base.pt"
    torch.save(base_ctx.base.module.state_dict(), base_ckpt)
    common.append(f"base.checkpoint={base_ckpt}")
    bound = base_ctx.limits["flops"]
    rows: dict[str, list[dict]] = {a: [] for a in [*opt["algos"], "uniform"]}
    for seed in range(int(opt["seeds"])):
        for algo in opt["algos"]:
            cfg = load_config(common + [f"algo={algo}", f"seed={seed}", f"study=bench-{algo}-{seed}"])
            started = time.perf_counter()
            outcome = run_search(cfg, quiet=True)
            best = outcome.best
            genome = best.user_attrs["genome"]
            test, val = final_score(outcome.setup, genome, seed, opt["final_epochs"])
            ratio = trial_cost(best, "flops") / outcome.setup.costs["flops"].base()
            rows[algo].append({"seed": seed, "search_val": best.values[0], "test": test, "val": val,
                               "flops_ratio": ratio,
                               "asked": len(outcome.study.trials), "evaluated": outcome.evaluated,
                               "seconds": time.perf_counter() - started, "keep": genome["keep"]})
            print(f"{algo} seed {seed}: test {test:.4f} (search val {best.values[0]:.4f}, "
                  f"FLOPs {ratio:.1%})", flush=True)
        ctx = RunSetup.build(load_config(common + [f"seed={seed}"]), quiet=True)
        frac = uniform_fraction(ctx.space, bound)
        genome = ctx.space.uniform(frac)
        test, val = final_score(ctx, genome, seed, opt["final_epochs"])
        rows["uniform"].append({"seed": seed, "test": test, "val": val, "fraction": frac,
                                "flops_ratio": ctx.space.flops_params(genome)[0] / ctx.costs["flops"].base()})
        print(f"uniform seed {seed}: test {test:.4f} (keep {frac:.2f})", flush=True)

    uni = median([r["test"] for r in rows["uniform"]])
    rnd = median([r["test"] for r in rows.get("random", [])]) if "random" in rows else float("nan")
    lines = [
        "# Channel search: ABC and TPE vs random search and uniform pruning", "",
        f"Base {opt['model']} on {opt['data']} (val accuracy {base_ctx.base.accuracy:.4f}), FLOPs bound "
        f"{opt['flops']:.0%} of the base ({bound / 1e6:.2f}M MACs). Each strategy trains {opt['trials']} "
        f"candidates ({opt['finetune_epochs']:g} epoch each, scored on the validation split); each winner and "
        f"the uniform genome are then fine-tuned {opt['final_epochs']:g} epochs and scored on the test split. "
        f"Medians over {opt['seeds']} seeds.", "",
        "| arm | median test acc | vs uniform | vs random | median FLOPs / base | median search val acc | per-seed test |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, rs in rows.items():
        per_seed = ", ".join(format(r["test"], ".4f") for r in rs)
        test = median([r["test"] for r in rs])
        sval = median([r["search_val"] for r in rs]) if arm != "uniform" else float("nan")
        lines.append(
            f"| {arm} | {test:.4f} | {test - uni:+.4f} | {test - rnd:+.4f} | "
            f"{median([r['flops_ratio'] for r in rs]):.1%} | {'-' if arm == 'uniform' else f'{sval:.4f}'} | "
            f"{per_seed} |")
    n_test = len(base_ctx.data.test) if base_ctx.data.test is not None else 0
    lines += ["", "Differences are in accuracy points (fraction); positive means better than the baseline. "
              f"The test split has {n_test} images, so one image is {1 / max(n_test, 1):.4f}: differences "
              "of one or two images are noise.", ""]
    path = write_report("channels", "\n".join(lines) + "\n", {"options": opt, "rows": rows,
                                                               "base_accuracy": base_ctx.base.accuracy,
                                                               "bound_flops": bound}, opt["out"])
    print(f"wrote {path}")
    return 0
