"""Proxy fidelity benchmark: how well does each cheap candidate score rank channel genomes by
the accuracy they reach after a real fine-tune, per second spent?

For each (model, budget), ``candidates`` random genomes near the FLOPs bound are each scored
by every proxy (validation accuracy after: adaptive BatchNorm only, i.e. statistics
recomputed with no training; half an epoch; one epoch, the search's default; one epoch with
the statistics recomputed; two epochs) and by the truth: test accuracy after
``final_epochs`` of fine-tuning. The report gives each proxy's Spearman and Kendall rank
correlation with the truth, the truth-regret of its top pick and its seconds per candidate.

Example:
    python -m searchkit.bench proxy               # ~15 min on 2 cores
    python -m searchkit.bench proxy quick=true    # a smoke run
"""

from __future__ import annotations

import dataclasses
import random
import time

from searchkit.bench.common import options, write_report

DEFAULTS = {"models": ["resnet56", "mobilenet_v2"], "budget": 0.15, "candidates": 24, "final_epochs": 4.0,
            # every traced group a gene, as the channel benchmark (MobileNetV2's inner widths alone
            # cannot reach 15% of its FLOPs)
            "units": "all",
            "data": "digits", "base_epochs": 15, "seed": 0, "quick": False, "out": "reports/bench"}
QUICK = {"models": ["resnet20"], "candidates": 4, "final_epochs": 0.5, "base_epochs": 1}
# name -> (epochs, recalibrate BatchNorm statistics before validating)
PROXIES = {"abn": (0.0, "on"), "ft0.5": (0.5, "auto"), "ft1": (1.0, "auto"), "ft1+abn": (1.0, "on"),
           "ft2": (2.0, "auto")}


def near_bound(space, bound: float, rng: random.Random, n: int) -> list[dict]:
    """``n`` distinct genomes with FLOPs in [0.8, 1] x ``bound``: a centre fraction, units around it."""
    out, seen = [], set()
    for _ in range(200 * n):
        centre = rng.uniform(0.05, 0.6)
        keep = [min(space.choices, key=lambda c: abs(c - rng.gauss(centre, 0.15))) for _ in space.units]
        flops = space.flops_params(space.genome(keep))[0]
        if 0.8 * bound <= flops <= bound and tuple(keep) not in seen:
            seen.add(tuple(keep))
            out.append(space.genome(keep))
            if len(out) == n:
                break
    return out


def main(argv: list[str]) -> int:
    opt = options(argv, DEFAULTS)
    if opt["quick"]:
        opt = {**opt, **{k: v for k, v in QUICK.items() if not any(a.startswith(f"{k}=") for a in argv)}}
    import torch
    from scipy.stats import kendalltau, spearmanr

    from searchkit.config import load_config
    from searchkit.evaluate import evaluate_accuracy, finetune
    from searchkit.setup import RunSetup
    torch.set_num_threads(1)
    lines = ["# Proxy fidelity: ranking channel genomes by a cheap score", "",
             f"Per model: {opt['candidates']} random genomes with FLOPs in 80-100% of the {opt['budget']:.0%} bound, "
             f"each scored by every proxy (validation accuracy, 288 images) and by the truth: test accuracy "
             f"(359 images) after {opt['final_epochs']:g} epochs of fine-tuning from the inherited weights. "
             "ρ: Spearman, τ: Kendall rank correlation with the truth; regret: the best truth among the "
             "candidates minus the truth of the proxy's top pick (pp); seconds per candidate on one core.", ""]
    data_out = {"options": opt, "models": {}}
    for model in opt["models"]:
        cfg = load_config([f"space.model={model}", f"space.units={opt['units']}", f"data={opt['data']}",
                           f"constraint.flops={opt['budget']}",
                           f"base.epochs={opt['base_epochs']}", "progress=false", f"seed={opt['seed']}"])
        setup = RunSetup.build(cfg, quiet=True)
        genomes = near_bound(setup.space, setup.limits["flops"], random.Random(opt["seed"]), int(opt["candidates"]))
        scores = {p: [] for p in PROXIES}
        seconds = {p: 0.0 for p in PROXIES}
        truth = []
        for i, genome in enumerate(genomes):
            for name, (epochs, recal) in PROXIES.items():
                budget = dataclasses.replace(setup.cfg.finetune.with_epochs(epochs), bn_recalibrate=recal)
                net = setup.space.build(genome, seed=opt["seed"]).model
                started = time.perf_counter()
                scores[name].append(finetune(net, setup.data, budget, seed=opt["seed"], progress=False)["val_accuracy"])
                seconds[name] += time.perf_counter() - started
            net = setup.space.build(genome, seed=opt["seed"]).model
            finetune(net, setup.data, setup.cfg.finetune.with_epochs(opt["final_epochs"]), seed=opt["seed"],
                     progress=False)
            truth.append(evaluate_accuracy(net, setup.data.test)[0])
            print(f"{model} {i}: truth {truth[-1]:.4f} " + " ".join(f"{p} {s[-1]:.3f}" for p, s in scores.items()),
                  flush=True)
        lines += [f"## {model} (base val {setup.base.accuracy:.4f}, {len(genomes)} candidates, truth "
                  f"{min(truth):.4f}-{max(truth):.4f})", "",
                  "| proxy | ρ | τ | regret of top pick (pp) | s / candidate |", "|---|---|---|---|---|"]
        rows = {}
        for name, s in scores.items():
            rho, tau = spearmanr(s, truth)[0], kendalltau(s, truth)[0]
            top = max(range(len(s)), key=lambda j: (s[j], -j))
            rows[name] = {"rho": rho, "tau": tau, "regret": max(truth) - truth[top],
                          "seconds": seconds[name] / len(genomes), "scores": s}
            lines.append(f"| {name} | {rho:+.2f} | {tau:+.2f} | {rows[name]['regret'] * 100:.2f} | "
                         f"{rows[name]['seconds']:.2f} |")
        lines.append("")
        data_out["models"][model] = {"truth": truth, "proxies": rows, "genomes": genomes}
    if opt["quick"]:
        lines.insert(2, "**Quick form (a smoke run): too few candidates to read anything into.**\n")
    path = write_report("proxy", "\n".join(lines) + "\n", data_out, opt["out"])
    print(f"wrote {path}")
    return 0
