"""TinyNet benchmark: searched (r, d, w) against inverted compound scaling at equal FLOPs.

For every FLOPs target (a fraction of the space's largest genome, EfficientNet-B0 at the
data's side) and every seed, one run, side by side:

1. **Search.** ``algo`` (TPE by default) trains ``trials`` candidates of ``space=tinynet``
   inside the target's band ``[band_low * target, target]``, each from scratch for
   ``search_epochs`` and scored on the validation split; the best by validation accuracy
   is the *searched* arm.
2. **Baseline: EfficientNet's compound scaling run backwards.** ``d = 1.2**phi``,
   ``w = 1.1**phi``, ``r = 1.15**phi`` from B0 (``alpha * beta**2 * gamma**2 ~= 2``, so
   FLOPs ~ ``2**phi``). Rounding (integer sides, channels in multiples of 8, repeats
   rounded, a head of at least 1280) makes the real FLOPs a step function of ``phi``, so
   ``phi < 0`` is solved by bisection on the space's exact cost model: the largest ``phi``
   whose FLOPs do not exceed the target (:func:`inverted_compound`).
3. **Tiny formula** (third arm): :func:`searchkit.spaces.tinynet.formula.fit_formula` on every
   candidate this seed's searches trained (all targets pooled, so the fit sees a FLOPs
   range), solved for the middle of each band.
4. **Final.** Each arm's genome is built fresh and trained from scratch with the same
   budget (``final_epochs``, optimizer, learning rate, batch size, seed) and scored on the
   held-out test split. Medians over ``seeds`` seeds (the data split follows the seed, as
   in a search run).

Training runs with ``threads`` torch threads (default 1): on a busy 2-core machine two
threads made a TinyNet step several times slower than one.

Example:
    python -m searchkit.bench tinynet targets=[0.25,0.4] seeds=3 trials=4
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
from searchkit.study import evaluated_trials, trial_cost
from searchkit.spaces.tinynet.formula import fit_formula, solve

DEFAULTS = {"data": "digits", "image_size": 16, "targets": [0.25, 0.4], "seeds": 3, "trials": 4,
            "algo": "tpe", "search_epochs": 2.0, "final_epochs": 4.0, "optimizer": "adam",
            "lr": 0.003, "batch_size": 32, "r": [0.5, 1.0, 0.0625], "d": [0.25, 1.0, 0.05],
            "w": [0.25, 1.0, 0.05], "band_low": 0.85, "threads": 1, "formula": True,
            "out": "reports/bench"}
# EfficientNet's compound coefficients (Tan & Le 2019): depth, width, resolution.
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15
ARMS = ("searched", "compound", "formula")


def compound_genome(space, phi: float) -> dict:
    """B0 scaled by ``phi`` (d = 1.2**phi, w = 1.1**phi, r = 1.15**phi), rounded to 1e-4."""
    return space.genome(round(GAMMA ** phi, 4), round(ALPHA ** phi, 4), round(BETA ** phi, 4))


def inverted_compound(space, target: float, lo: float = -12.0) -> tuple[float, dict]:
    """The largest ``phi <= 0`` (to 1e-4) whose compound-scaled genome has FLOPs <= ``target``.

    Example:
        >>> from searchkit.spaces.tinynet import TinyNetSpace
        >>> space = TinyNetSpace({"reference_size": 224}, 1000)
        >>> phi, g = inverted_compound(space, 0.5 * space.flops_params(space.genome(1, 1, 1))[0])
        >>> -1.3 < phi < -0.9, space.flops_params(g)[0] <= 0.5 * 385.9e6
        (True, True)
    """
    def flops(phi: float) -> int:
        return space.flops_params(compound_genome(space, phi))[0]

    if flops(lo) > target:
        raise ValueError(f"compound scaling cannot get below {flops(lo) / 1e6:.3g}M FLOPs "
                         f"(target {target / 1e6:.3g}M)")
    hi = 0.0
    if flops(hi) <= target:
        return hi, compound_genome(space, hi)
    while hi - lo > 1e-4:  # invariant: flops(lo) <= target < flops(hi); FLOPs rise with phi
        mid = (lo + hi) / 2
        if flops(mid) <= target:
            lo = mid
        else:
            hi = mid
    return lo, compound_genome(space, lo)


def final_score(setup, genome: dict, seed: int, epochs: float) -> dict:
    """Train ``genome`` from scratch (seeded) for ``epochs``; test and val accuracy."""
    model = setup.space.build(genome, seed=seed).model
    started = time.perf_counter()
    finetune(model, setup.data, setup.cfg.finetune.with_epochs(epochs), device=setup.device, seed=seed,
             progress=False)
    model.to("cpu")
    flops, params = setup.space.flops_params(genome)
    return {"test": evaluate_accuracy(model, setup.data.test)[0],
            "val": evaluate_accuracy(model, setup.data.val)[0],
            "flops": flops, "params": params, "side": setup.space.input_side(genome),
            "r": genome["r"], "d": genome["d"], "w": genome["w"], "genome": genome,
            "seconds": time.perf_counter() - started}


def _arch(row: dict) -> str:
    return f"{row['side']} px (r {row['r']:g}), d {row['d']:g}, w {row['w']:g}"


def main(argv: list[str]) -> int:
    opt = options(argv, DEFAULTS)
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(int(opt["threads"]))
    targets = [float(t) for t in opt["targets"]]
    if len(targets) < 1 or any(not 0 < t <= 1 for t in targets):
        raise SystemExit("searchkit.bench tinynet: targets must be fractions in (0, 1]")
    work = Path(tempfile.mkdtemp(prefix="searchkit-bench-tinynet-"))
    common = ["space=tinynet", f"data={opt['data']}", f"data.image_size={opt['image_size']}",
              f"space.r={list(opt['r'])}", f"space.d={list(opt['d'])}",
              f"space.w={list(opt['w'])}", f"space.band_low={opt['band_low']}",
              f"finetune.optimizer={opt['optimizer']}", f"finetune.lr={opt['lr']}",
              f"finetune.batch_size={opt['batch_size']}", f"finetune.epochs={opt['search_epochs']}",
              f"trials={opt['trials']}", f"algo={opt['algo']}", "progress=false", "artifacts=none",
              f"storage=sqlite:///{work / 'bench.db'}"]
    if opt["algo"] == "tpe":  # TPE's default 10 random starts would leave it no model-based asks
        common.append(f"algo.n_startup_trials={max(2, int(opt['trials']) // 2)}")
    started = time.perf_counter()
    rows: dict[str, dict[str, list[dict]]] = {f"{t:g}": {a: [] for a in ARMS} for t in targets}
    bands: dict[str, list[float]] = {}
    fits: list[dict] = []
    for seed in range(int(opt["seeds"])):
        searched = {}
        points = []
        for t in targets:
            cfg = load_config(common + [f"constraint.flops={t}", f"seed={seed}",
                                        f"study=bench-tinynet-{t:g}-{seed}"])
            t0 = time.perf_counter()
            outcome = run_search(cfg, quiet=True)
            best = outcome.best
            ctx = outcome.setup
            bands[f"{t:g}"] = list(ctx.space.flops_band)
            searched[t] = (ctx, best, time.perf_counter() - t0, len(outcome.study.trials))
            for tr in evaluated_trials(outcome.study):
                if tr.values is not None:
                    g = tr.user_attrs["genome"]
                    points.append({"r": g["r"], "d": g["d"], "w": g["w"],
                                   "flops": trial_cost(tr, "flops"), "accuracy": tr.values[0]})
            print(f"seed {seed} target {t:g}: searched {outcome.evaluated} candidates in "
                  f"{searched[t][2]:.0f} s, best val {best.values[0]:.4f} {best.user_attrs['genome']}",
                  flush=True)
        fit = fit_formula(points) if opt["formula"] else None
        if fit is not None:
            fits.append({"seed": seed, "method": fit["method"], "points": len(points),
                         "band_best": len(fit["data"])})
        for t in targets:
            ctx, best, secs, asked = searched[t]
            lo, hi = ctx.space.flops_band
            genomes = {"searched": best.user_attrs["genome"]}
            phi, genomes["compound"] = inverted_compound(ctx.space, hi)
            if fit is not None:
                try:
                    genomes["formula"] = solve(fit, (lo + hi) / 2, ctx.space)
                except ValueError as exc:  # reported, not fatal: the other arms still count
                    print(f"seed {seed} target {t:g}: formula: {exc}", flush=True)
            for arm, genome in genomes.items():
                row = {"seed": seed, **final_score(ctx, genome, seed, float(opt["final_epochs"]))}
                row["in_band"] = bool(lo <= row["flops"] <= hi)
                if arm == "searched":
                    row.update(search_val=best.values[0], search_seconds=secs, asked=asked)
                if arm == "compound":
                    row["phi"] = phi
                rows[f"{t:g}"][arm].append(row)
                print(f"seed {seed} target {t:g} {arm}: test {row['test']:.4f} "
                      f"({_arch(row)}, {row['flops'] / 1e6:.3f}M FLOPs, in band {row['in_band']}, "
                      f"{row['seconds']:.0f} s)", flush=True)
    total = time.perf_counter() - started
    md = report_markdown(opt, rows, bands, fits, total, ctx)
    path = write_report("tinynet", md, {"options": opt, "rows": rows, "bands": bands,
                                        "formula_fits": fits, "seconds": total}, opt["out"])
    print(f"wrote {path}")
    return 0


def report_markdown(opt: dict, rows: dict, bands: dict, fits: list, total: float, ctx) -> str:
    n_test = len(ctx.data.test) if ctx.data.test is not None else 0
    base = ctx.space.flops_params(ctx.space.base_genome())[0]
    lines = [
        "# TinyNet: searched (r, d, w) vs inverted compound scaling at equal FLOPs", "",
        f"Space `space=tinynet` on {opt['data']} at {opt['image_size']} px (reference side; r grid "
        f"{opt['r']}, d {opt['d']}, w {opt['w']}); its largest genome (EfficientNet-B0 at "
        f"{opt['image_size']} px) has {base / 1e6:.3f}M MACs. Per target and seed: {opt['algo']} "
        f"trains {opt['trials']} candidates from scratch ({opt['search_epochs']:g} epochs each, "
        f"scored on validation) inside the band [{opt['band_low']:g} x target, target]; the best, "
        "the inverted compound-scaling genome (d = 1.2^phi, w = 1.1^phi, r = 1.15^phi, phi solved "
        "on the exact cost model: the largest phi at or under the target) and the tiny formula's "
        "genome (fit on all candidates of the seed, solved for the band's middle) are then trained "
        f"from scratch with one budget ({opt['final_epochs']:g} epochs, {opt['optimizer']} lr "
        f"{opt['lr']:g}, batch {opt['batch_size']}, same seed) and scored on the test split "
        f"({n_test} images: one image is {1 / max(n_test, 1):.4f}). Medians over {opt['seeds']} "
        f"seeds. Total time {total / 60:.1f} min.", "",
        "| target (of B0) | band (M MACs) | arm | median test acc | minus compound's median | median FLOPs / target "
        "| all in band | per-seed test | per-seed architecture (side, d, w) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for tkey, arms in rows.items():
        lo, hi = bands[tkey]
        comp = median([r["test"] for r in arms["compound"]])
        for arm in ARMS:
            rs = arms[arm]
            if not rs:
                continue
            test = median([r["test"] for r in rs])
            lines.append(
                f"| {float(tkey):.0%} | {lo / 1e6:.3f}-{hi / 1e6:.3f} | {arm} | {test:.4f} | "
                f"{test - comp:+.4f} | {median([r['flops'] / hi for r in rs]):.1%} | "
                f"{'yes' if all(r['in_band'] for r in rs) else 'no'} | "
                f"{', '.join(format(r['test'], '.4f') for r in rs)} | "
                f"{'; '.join(_arch(r) for r in rs)} |")
        diff = median([r["test"] for r in arms["searched"]]) - comp
        paired = [s["test"] - c["test"] for s, c in zip(arms["searched"], arms["compound"])]
        verdicts.append((tkey, diff, sum(p > 0 for p in paired), len(paired), median(paired)))
    lines += ["", "## Verdict", ""]
    noise = 2 / max(n_test, 1)
    for tkey, diff, wins, n, paired in verdicts:
        # A win must show in the median AND in every seed: seed-to-seed spread (the split
        # and the init change) is larger than a few test images here.
        if diff > noise and wins == n:
            word = "beats"
        elif diff > noise:
            word = "is ahead in the median but not in every seed, so it does not reliably beat"
        elif diff < -noise and wins == 0:
            word = "loses to"
        else:
            word = "does not beat"
        lines.append(f"- Target {float(tkey):.0%}: the searched architecture {word} inverted compound "
                     f"scaling: difference of medians {diff:+.4f}; seed by seed better in {wins} of {n} "
                     f"(median paired difference {paired:+.4f}).")
    lines += ["", "## What each arm picked", ""]
    for tkey, arms in rows.items():
        lines.append(f"- Target {float(tkey):.0%}, median input side / depth / width: " + "; ".join(
            f"{arm} {median([r['side'] for r in arms[arm]]):g} px / d {median([r['d'] for r in arms[arm]]):.3g}"
            f" / w {median([r['w'] for r in arms[arm]]):.3g}" for arm in ARMS if arms[arm]) + ".")
    lines += ["", "The compound arm sits at the top of the band (the largest phi at or under the "
              "target), so where FLOPs differ inside the band the difference favours it."]
    lines += ["", f"With {opt['trials']} candidates of {opt['search_epochs']:g} epochs the search "
              "ranks candidates on a short, noisy budget; a winner under that budget need not stay "
              "the winner after the final training. Read differences of one or two test images as "
              "noise."]
    if fits:
        lines += ["", "Tiny-formula fits: " + "; ".join(
            f"seed {f['seed']}: {f['method']} on {f['band_best']} band-best of {f['points']} points"
            for f in fits) + "."]
    phis = [r["phi"] for arms in rows.values() for r in arms["compound"]]
    if phis:
        lines += ["", "Compound phi per target: " + "; ".join(
            f"{float(k):.0%}: {arms['compound'][0]['phi']:.3f}" for k, arms in rows.items()
            if arms["compound"]) + " (the data split changes with the seed, the genome does not)."]
    return "\n".join(lines) + "\n"
