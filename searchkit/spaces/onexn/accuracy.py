"""Part c of the 1×N benchmark: accuracy at equal non-zero parameters on one base and budget.

Arms, each fine-tuned ``final_epochs`` from the same trained base with the same seed:
1×N with one (N, p) for every layer (N=4 and N=16), unstructured weight pruning (each
target's smallest-magnitude weights at the same p), filter pruning (the channel space, one
kept fraction for every unit, the largest whose parameters fit), and the searched per-layer
(N, p) (``algo`` under ``constraint.nonzero_params``, ``trials`` candidates).
"""

from __future__ import annotations

import time

import torch


def _final(setup, model, seed: int, epochs: float) -> float:
    from searchkit.evaluate import evaluate_accuracy, finetune
    finetune(model, setup.data, setup.cfg.finetune.with_epochs(epochs), device="cpu", seed=seed, progress=False)
    return evaluate_accuracy(model.to("cpu"), setup.data.test)[0]


def _unstructured(space, p: float, seed: int):
    from searchkit.spaces.onexn.sparse import fix_mask
    model = space.build(space.base_genome(), seed=seed).model
    for path in space.targets:
        mod = model.get_submodule(path)
        w = mod.weight.detach().abs().flatten()
        drop = int(p * w.numel())
        mask = torch.ones_like(w)
        if drop:
            mask[torch.argsort(w, stable=True)[:drop]] = 0
        fix_mask(mod, mask.view_as(mod.weight))
    return model


def _nonzero(net) -> int:
    return int(sum(int((q != 0).sum()) for q in net.parameters()))


def accuracy_rows(opt: dict) -> list[dict]:
    from searchkit.config import load_config
    from searchkit.search import run_search
    from searchkit.setup import RunSetup
    from searchkit.spaces.channels import ChannelOptions, ChannelSpace
    torch.set_num_threads(max(opt["threads"]))
    p, model = opt["acc_sparsity"], opt["acc_model"]
    common = ["space=onexn", f"space.model={model}", f"data={opt['data']}", f"base.epochs={opt['base_epochs']}",
              "progress=false", f"finetune.epochs={opt['finetune_epochs']}"]
    rows = []
    for seed in range(opt["seeds"]):
        setup = RunSetup.build(load_config(common + [f"seed={seed}", "constraint.nonzero_macs=null"]), quiet=True)
        space = setup.space
        arms = {f"1x{n}": space.build(space.uniform(n, p), seed=seed).model for n in (4, 16)}
        bound = space.nonzero_costs(space.uniform(16, p))[1]
        arms["unstructured"] = _unstructured(space, p, seed)
        channels = ChannelSpace(ChannelOptions(model=model, units="all"), space.base, space.input_size())
        frac = max(f / 100 for f in range(1, 101) if channels.flops_params(channels.uniform(f / 100))[1] <= bound)
        arms["filter"] = channels.build(channels.uniform(frac), seed=seed).model
        for arm, net in arms.items():
            started = time.perf_counter()
            rows.append({"arm": arm, "seed": seed, "test": _final(setup, net, seed, opt["final_epochs"]),
                         "seconds": time.perf_counter() - started,
                         "nonzero_params": _nonzero(net)})
            print(f"accuracy seed {seed} {arm}: test {rows[-1]['test']:.4f}", flush=True)
        started = time.perf_counter()
        outcome = run_search(load_config(common + [f"seed={seed}", f"algo={opt['acc_algo']}",
                                                   f"constraint.nonzero_params={bound}", f"trials={opt['trials']}",
                                                   f"storage=sqlite:///{opt['work']}/onexn-acc-{seed}.db"]),
                             quiet=True)
        genome = outcome.best.user_attrs["genome"]
        test = _final(setup, space.build(genome, seed=seed).model, seed, opt["final_epochs"])
        rows.append({"arm": f"searched ({opt['acc_algo']})", "seed": seed, "test": test,
                     "seconds": time.perf_counter() - started, "nonzero_params": _nonzero(space.build(genome).model),
                     "blocks": sorted({n for n, _ in genome["blocks"]})})
        print(f"accuracy seed {seed} searched: test {test:.4f}", flush=True)
    return rows


def accuracy_lines(rows: list[dict], opt: dict) -> list[str]:
    import statistics
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    lines = [f"## c. Accuracy at equal non-zero parameters: {opt['acc_model']} on {opt['data']}, "
             f"p = {opt['acc_sparsity']} of each target's weights, {opt['seeds']} seeds, "
             f"{opt['final_epochs']:g} epochs of fine-tuning per arm", "",
             "| arm | median test | per seed | non-zero params | Δ 1x16 (median pp) |", "|---|---|---|---|---|"]
    by = {a: {r["seed"]: r for r in rows if r["arm"] == a} for a in arms}
    seeds = sorted(by[arms[0]])
    for a in arms:
        tests = [by[a][s]["test"] for s in seeds]
        delta = statistics.median([by[a][s]["test"] - by["1x16"][s]["test"] for s in seeds]) * 100
        lines.append(f"| {a} | {statistics.median(tests):.4f} | {', '.join(f'{t:.4f}' for t in tests)} | "
                     f"{statistics.median([by[a][s]['nonzero_params'] for s in seeds]):,.0f} | {delta:+.2f} |")
    med = {a: statistics.median([by[a][s]["test"] for s in seeds]) for a in arms}
    order = med.get("unstructured", 0) >= med.get("1x4", 0) > med.get("filter", 1)
    lines += ["", f"The paper's ordering (weight ≥ 1×N > filter): {'holds' if order else 'does not hold'} here "
              f"(unstructured {med.get('unstructured', float('nan')):.4f}, 1×4 {med.get('1x4', float('nan')):.4f}, "
              f"filter {med.get('filter', float('nan')):.4f}).", ""]
    return lines


__all__ = ["accuracy_lines", "accuracy_rows"]
