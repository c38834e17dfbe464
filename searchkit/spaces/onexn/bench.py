"""1×N runtime benchmark: the compiled block-sparse op against dense oneDNN and torch CSR, and
whole exported networks, side by side in one run.

a. Kernel: for MobileNetV2 pointwise shapes, a linear 1280→1000 and ResNet 3×3 shapes, at
   sparsity p and block size N: dense time / sparse time (>1: faster), every output checked
   against the dense result, with the share of the 1/(1−p) bound reached. Weights come with
   strong filters first, as filter rearrangement leaves a layer (its blocks are not spread
   evenly over the block rows). "Dense" is the
   fastest of oneDNN's NCHW conv, its channels-last conv and (1×1) an MKL GEMM, picked per shape.
b. Network: torchvision's MobileNetV2 (ImageNet shapes) with its pointwise layers and head
   1×N-pruned (N=16 where it divides, p=0.5 and 0.75), the dense export (``model.pt2``,
   ``torch.export``) against the sparse program's export, at 224×224 and at 32×32.

c. Accuracy at equal non-zero parameters (``accuracy.py``): 1×4, 1×16, unstructured, filter
   pruning and the searched per-layer (N, p), paired by seed.
d. Latency pricing: this CPU profiled (torch runtime, the op's ``sparse_conv`` kernels in
   the sweep) and its predictor fitted, then random genomes' sparse programs predicted from
   their kernels and measured whole: RMSPE, share within ±10 %, Spearman ρ.

Timing: medians of interleaved rounds (dense, sparse, CSR in turn), one process.

Example:
    python -m searchkit.bench onexn               # the full tables (~15 min on 2 cores)
    python -m searchkit.bench onexn quick=true    # a smoke run
"""

from __future__ import annotations

import statistics
import time

from searchkit.bench.common import (cpu_with_flags, interleaved_times, options, prediction_facts, profile_this_cpu,
                                    write_report)

POINTWISE = [(24, 144, 56), (144, 24, 56), (96, 576, 14), (576, 160, 7), (320, 1280, 7)]
CONV3 = [(64, 64, 56), (128, 128, 28), (256, 256, 14), (512, 512, 7)]
LINEAR = [(1280, 1000)]
DEFAULTS = {"parts": ["kernel", "network", "accuracy", "latency"], "sparsity": [0.5, 0.75, 0.9], "blocks": [4, 16, 32],
            "threads": [1, 2], "batches": [1, 8], "sides": [224, 32], "rounds": 7,
            # part c
            "acc_model": "mobilenet_v2", "acc_sparsity": 0.5, "acc_algo": "tpe", "seeds": 3, "trials": 8,
            "data": "digits", "base_epochs": 15, "finetune_epochs": 1.0, "final_epochs": 3.0, "work": None,
            # a report's .json whose part-c rows to reuse when parts leaves accuracy out
            "reuse": None,
            # part d
            "lat_models": ["mobilenet_v2", "resnet56"], "lat_side": 32, "lat_genomes": 30, "lat_sweep": "default",
            "lat_rounds": 2,
            "quick": False, "out": "reports/bench"}
QUICK = {"sparsity": [0.75], "blocks": [16], "threads": [1], "batches": [1], "sides": [32], "rounds": 3,
         "acc_model": "resnet20", "seeds": 1, "trials": 2, "base_epochs": 1, "finetune_epochs": 0.25,
         "final_epochs": 0.25, "lat_models": ["resnet20"], "lat_genomes": 4, "lat_sweep": "quick", "lat_rounds": 1}


def _masked(cout: int, cin: int, k: int, n: int, p: float, gen):
    import torch

    from searchkit.spaces.onexn.sparse import block_mask
    w = torch.randn(cout, cin, k, k, generator=gen) if k else torch.randn(cout, cin, generator=gen)
    # strong filters first, as filter rearrangement leaves a layer: its first block rows keep
    # more blocks than its last (what the threads' split of the rows must balance)
    w = w * torch.linspace(2.0, 0.5, cout).view(-1, *[1] * (w.dim() - 1))
    return w * block_mask(w, n, p)


def kernel_rows(opt: dict) -> list[dict]:
    import torch
    import torch.nn.functional as F
    from torch import nn

    from searchkit.spaces.onexn.sparse import BlockSparseConv2d
    from searchkit.spaces.onexn import block_choices
    gen = torch.Generator().manual_seed(0)
    shapes = [("1x1", *s) for s in POINTWISE] + [("3x3", *s) for s in CONV3] + [("linear", a, b, 1) for a, b in LINEAR]
    if opt["quick"]:
        shapes = [shapes[2], shapes[len(POINTWISE) + 2], shapes[-1]]
    rows = []
    for kind, cin, cout, side in shapes:
        k = {"1x1": 1, "3x3": 3, "linear": 0}[kind]
        for n_want in opt["blocks"]:
            n = max(c for c in block_choices(cout, (1, 2, 4, 8, 16, 32, n_want)) if c <= n_want)
            for p in opt["sparsity"]:
                w = _masked(cout, cin, k, n, p, gen)
                like = nn.Linear(cin, cout) if k == 0 else nn.Conv2d(cin, cout, k, padding=k // 2)
                op = BlockSparseConv2d.from_dense(w, None, like, n)
                w2 = w.reshape(cout, -1)
                csr = w2.to_sparse_csr()
                for batch in opt["batches"]:
                    x = torch.randn(batch, cin, generator=gen) if k == 0 else torch.randn(batch, cin, side, side,
                                                                                          generator=gen)
                    if k == 0:
                        dense = lambda x=x, w=w: F.linear(x, w)  # noqa: E731
                        sparse_csr = lambda x=x, c=csr: (c @ x.t()).t()  # noqa: E731
                    else:
                        # the fastest dense form: oneDNN NCHW, oneDNN channels-last, or (1x1) an MKL GEMM
                        xl, wl = x.to(memory_format=torch.channels_last), w.to(memory_format=torch.channels_last)
                        forms = {"nchw": lambda x=x, w=w, k=k: F.conv2d(x, w, padding=k // 2),
                                 "channels_last": lambda x=xl, w=wl, k=k: F.conv2d(x, w, padding=k // 2)}
                        if k == 1:
                            forms["gemm"] = lambda x=x, w=w2: torch.matmul(w, x.flatten(2))
                        with torch.no_grad():
                            t0 = interleaved_times(forms, 3, budget=0.02)
                        dense = forms[min(t0, key=t0.get)]
                        sparse_csr = (lambda x=x, c=csr, cin=cin: torch.stack([c @ xi.reshape(cin, -1) for xi in x])
                                      ) if k == 1 else None
                    ref, got = dense().reshape(op(x).shape), op(x)
                    err = float((got - ref).abs().max() / ref.abs().max())
                    for threads in opt["threads"]:
                        torch.set_num_threads(threads)
                        fns = {"dense": dense, "onexn": lambda x=x, op=op: op(x)}
                        if sparse_csr is not None:
                            fns["csr"] = sparse_csr
                        with torch.no_grad():
                            t = interleaved_times(fns, opt["rounds"])
                        rows.append({"kind": kind, "cin": cin, "cout": cout, "side": side, "N": n, "p": p,
                                     "dense_form": "linear" if k == 0 else min(t0, key=t0.get),
                                     "batch": batch, "threads": threads, "dense_us": t["dense"] * 1e6,
                                     "onexn_us": t["onexn"] * 1e6, "csr_us": t.get("csr", float("nan")) * 1e6,
                                     "speedup": t["dense"] / t["onexn"], "csr_speedup": t["dense"] / t["csr"]
                                     if "csr" in t else float("nan"), "bound": 1 / (1 - p), "max_rel_err": err})
                        print(f"{kind} {cin}->{cout} @{side} N={n} p={p} b={batch} t={threads}: "
                              f"{rows[-1]['speedup']:.2f}x (csr {rows[-1]['csr_speedup']:.2f}x) err {err:.1e}",
                              flush=True)
    return rows


def network_rows(opt: dict) -> list[dict]:
    import torch

    from searchkit.models import build_base
    from searchkit.spaces.onexn import OneXNOptions, OneXNSpace
    from searchkit.spaces.onexn.sparse import to_sparse_program
    rows = []
    base = build_base("torchvision:mobilenet_v2", 1000).eval()
    for side in opt["sides"]:
        space = OneXNSpace(OneXNOptions(model="torchvision:mobilenet_v2"), base, (3, side, side))
        for p in (0.5, 0.75) if not opt["quick"] else (0.75,):
            genome = space.uniform(16, p)
            built = space.build(genome)
            net = built.net.eval()
            x = torch.randn(1, 3, side, side)
            with torch.no_grad():
                prog = to_sparse_program(net, built.recipe["block_sizes"])
                dense_pt2 = torch.export.export(net, (x,)).module()
                sparse_pt2 = torch.export.export(prog, (x,)).module()
                ref = net(x)
                err = float((sparse_pt2(x) - ref).abs().max() / ref.abs().max())
            for threads in opt["threads"]:
                torch.set_num_threads(threads)
                with torch.no_grad():
                    t = interleaved_times({"eager": lambda: net(x), "dense_pt2": lambda: dense_pt2(x),
                               "sparse_pt2": lambda: sparse_pt2(x)}, opt["rounds"], budget=0.3)
                nz = space.nonzero_costs(genome)[0] / space.flops_params(genome)[0]
                rows.append({"side": side, "p": p, "threads": threads, "nonzero_macs": nz,
                             "eager_ms": t["eager"] * 1e3, "dense_pt2_ms": t["dense_pt2"] * 1e3,
                             "sparse_pt2_ms": t["sparse_pt2"] * 1e3,
                             "speedup": t["dense_pt2"] / t["sparse_pt2"], "max_rel_err": err})
                print(f"mobilenet_v2 @{side} p={p} t={threads}: dense pt2 {t['dense_pt2'] * 1e3:.2f} ms, "
                      f"sparse {t['sparse_pt2'] * 1e3:.2f} ms ({rows[-1]['speedup']:.2f}x)", flush=True)
    return rows


def latency_rows(opt: dict) -> tuple[list[dict], dict]:
    """Part d: profile this CPU, fit, then predicted against measured sparse programs."""
    import random

    from searchkit.costs.latency_cost import LatencyCost
    from searchkit.models import build_base
    from searchkit.spaces.onexn import OneXNOptions, OneXNSpace
    profiled = profile_this_cpu(opt["lat_sweep"], opt["lat_rounds"])
    predictor = profiled.predictor
    facts, rows = {"profile_fit_min": profiled.minutes, "heldout": predictor.meta.get("heldout", {})}, []
    rng = random.Random(0)
    side = opt["lat_side"]
    for model in opt["lat_models"]:
        space = OneXNSpace(OneXNOptions(model=model), build_base(model), (3, side, side))
        cost = LatencyCost(space, predictor=predictor)
        # random per-layer (N, p), and uniform ones across the grid
        genomes = [space.genome([[rng.choice(ch), rng.choice(space.options.sparsity)] for ch in space.choices])
                   for _ in range(opt["lat_genomes"] - 3)]
        genomes += [space.base_genome(), space.uniform(16, 0.5), space.uniform(32, 0.8)]
        nets = [(space.latency_network(space.build(g)), space.input_size()) for g in genomes]
        # at the profile's one thread (parts a and b leave torch at their last thread count)
        measured, speed = profiled.measure(nets, opt["rounds"])
        predicted = cost.many(genomes)
        for g, m, pr in zip(genomes, measured, predicted):
            nz = space.nonzero_costs(g)[0] / space.flops_params(g)[0]
            rows.append({"model": model, "side": side, "nonzero_macs": nz, "measured_ms": m, "predicted_ms": float(pr)})
        facts[model] = prediction_facts(predicted, measured)
        if speed is not None:
            facts[model]["speed"] = speed
            facts[model]["at_profile_speed"] = prediction_facts([p * speed for p in predicted], measured)
        f = facts[model]
        print(f"latency {model} @{side}: RMSPE {f['rmspe']:.1%}, within 10% {f['within_10']:.0%}, "
              f"rho {f['spearman']:.2f}" + (f"; at profile speed ({speed:.3f}x) RMSPE "
                                            f"{f['at_profile_speed']['rmspe']:.1%}" if speed else ""), flush=True)
    return rows, facts


def latency_lines(rows: list[dict], facts: dict, opt: dict) -> list[str]:
    lines = ["## d. Latency pricing of the sparse program (torch runtime, batch 1, 1 thread)", "",
             f"This CPU profiled (`sweep={opt['lat_sweep']}`, {opt['lat_rounds']} round(s), the op's `sparse_conv` "
             f"kernels in the sweep) and fitted in {facts['profile_fit_min']:.1f} min; then per base "
             f"{opt['lat_genomes']} genomes (random per-layer N and p, the dense base, uniform 1×16 p=0.5 and "
             f"1×32 p=0.8) at {opt['lat_side']}×{opt['lat_side']}: predicted from their kernels (no network "
             "built) against their sparse programs measured whole (medians of interleaved rounds, one thread). "
             "Beside them, in the same rounds, 12 of the profile's calibration models were measured again: "
             "*speed* is their time now over their time in the profile (<1: the machine runs faster now), and "
             "the *at profile speed* columns scale the predictions by it, as `latency validate` does.", "",
             "| base | genomes | RMSPE | within ±10 % | mean error | worst | Spearman ρ | speed | RMSPE at profile "
             "speed | within ±10 % at profile speed | measured ms (min–max) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for model in opt["lat_models"]:
        f = facts[model]
        c = f.get("at_profile_speed")
        ms = [r["measured_ms"] for r in rows if r["model"] == model]
        lines.append(f"| {model} | {f['n']} | {f['rmspe']:.1%} | {f['within_10']:.0%} | {f['mean_error']:+.1%} | "
                     f"{f['max_abs_error']:.0%} | {f['spearman']:.2f} | "
                     + (f"{f['speed']:.3f} | {c['rmspe']:.1%} | {c['within_10']:.0%} |" if c else "— | — | — |")
                     + f" {min(ms):.2f}–{max(ms):.2f} |")
    held = facts.get("heldout") or {}
    if held.get("rmspe") is not None:
        lines += ["", f"The predictor's own held-out error on the profile's calibration models (dense networks of "
                      f"the other spaces): RMSPE {held['rmspe']:.1%}."]
    return lines + [""]


def main(argv: list[str]) -> int:
    opt = options(argv, DEFAULTS)
    if opt["quick"]:
        opt = {**opt, **{k: v for k, v in QUICK.items() if not any(a.startswith(f"{k}=") for a in argv)}}
    import torch

    from searchkit.spaces.onexn import kernel
    if not kernel.load():
        print("searchkit.bench: error: the 1xN kernel could not be built here (see the warning)")
        return 2
    cpu = cpu_with_flags()
    print(f"CPU: {cpu}; kernel ISA: {kernel.isa()}", flush=True)
    import tempfile

    from searchkit.spaces.onexn.accuracy import accuracy_lines, accuracy_rows
    earlier, reused = {}, []
    if opt["reuse"]:
        import json
        earlier = json.loads(open(opt["reuse"]).read())
        reused = [part for part in ("kernel", "network", "latency", "accuracy")
                  if part not in opt["parts"] and earlier.get(part)]
    krows = kernel_rows(opt) if "kernel" in opt["parts"] else earlier.get("kernel", [])
    nrows = network_rows(opt) if "network" in opt["parts"] else earlier.get("network", [])
    lrows, lfacts = (latency_rows(opt) if "latency" in opt["parts"] else
                     (earlier.get("latency", []), earlier.get("latency_facts", {})))
    arows = earlier.get("accuracy", []) if "accuracy" in reused else []
    if "latency" in reused:
        opt = {**opt, **{k: earlier["options"][k] for k in ("lat_models", "lat_side", "lat_genomes", "lat_sweep",
                                                             "lat_rounds")}}
    if "accuracy" in reused:
        opt = {**opt, **{k: earlier["options"][k] for k in ("acc_model", "acc_sparsity", "seeds", "final_epochs",
                                                             "data", "acc_algo", "trials")}}
    if "accuracy" in opt["parts"]:
        with tempfile.TemporaryDirectory() as tmp:
            arows = accuracy_rows({**opt, "work": opt["work"] or tmp})
    torch.set_num_threads(max(opt["threads"]))
    lines = ["# 1×N block-sparse runtime", "",
             f"CPU: {cpu}. Kernel dispatched to **{kernel.isa()}**. Ratios are dense time / sparse time "
             "(>1: the sparse op is faster), medians of interleaved rounds in one process; bound = 1/(1−p); "
             "err = max |sparse − dense| / max |dense|.", ""]
    if opt["quick"]:
        lines += ["**Quick form (a smoke run): one sparsity, one block size, three shapes.**", ""]
    lines += ["## a. Kernel (batch, threads) vs dense oneDNN and torch CSR", "",
              "| layer | Cin→Cout @side | N | p | batch | threads | dense µs (form) | 1×N µs | speedup | share of bound "
              "| CSR speedup | err |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in krows:
        lines.append(f"| {r['kind']} | {r['cin']}→{r['cout']} @{r['side']} | {r['N']} | {r['p']:g} | {r['batch']} | "
                     f"{r['threads']} | {r['dense_us']:.0f} ({r['dense_form']}) | {r['onexn_us']:.0f} | {r['speedup']:.2f}× | "
                     f"{r['speedup'] / r['bound']:.2f} | {r['csr_speedup']:.2f}× | {r['max_rel_err']:.0e} |")
    lines += ["", "## Goals (1 thread, batch 1, N = 16/32)", ""]
    for kind, lo, hi in (("1x1", 1.3, 3.0), ("3x3", 1.5, 3.0), ("linear", 1.3, 3.0)):
        for p, goal in ((0.5, lo), (0.75, hi)):
            sel = [r for r in krows if r["kind"] == kind and r["p"] == p and r["batch"] == 1 and r["threads"] == 1
                   and r["N"] >= 16]
            if sel:
                worst = min(r["speedup"] for r in sel)
                lines.append(f"- {kind} at p={p}: worst {worst:.2f}× over {len(sel)} shapes (goal ≥ {goal}×): "
                             f"{'met' if worst >= goal else 'missed'}")
    two = [(a, b) for a in krows if a["threads"] == 1 for b in krows if b["threads"] == 2 and
           all(a[k] == b[k] for k in ("kind", "cin", "cout", "side", "N", "p", "batch"))]
    if two:
        ratios = sorted(b["speedup"] / a["speedup"] for a, b in two)
        lines.append(f"- 2 threads / 1 thread speedup ratio: median {statistics.median(ratios):.2f}, worst "
                     f"{ratios[0]:.2f} (goal ≥ 0.8)")
    lines += ["", "## b. Whole network: torchvision MobileNetV2, pointwise layers and head 1×N (N=16 where it "
              "divides), batch 1", "",
              "| input | p | non-zero MACs | threads | eager dense ms | dense `model.pt2` ms | sparse program ms | "
              "speedup vs dense export | err |", "|---|---|---|---|---|---|---|---|---|"]
    for r in nrows:
        lines.append(f"| {r['side']}×{r['side']} | {r['p']:g} | {r['nonzero_macs']:.1%} | {r['threads']} | "
                     f"{r['eager_ms']:.2f} | {r['dense_pt2_ms']:.2f} | {r['sparse_pt2_ms']:.2f} | "
                     f"{r['speedup']:.2f}× | {r['max_rel_err']:.0e} |")
    if lrows:
        lines += [""] + latency_lines(lrows, lfacts, opt)
    if arows:
        lines += [""] + accuracy_lines(arows, opt)
    # when each part's rows were measured (a reused part keeps its own date)
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    measured = {part: now for part in opt["parts"]}
    for part in reused:
        measured[part] = earlier.get("measured", {}).get(part, earlier.get("machine", {}).get("date", "?"))
    if reused:
        lines += ["(Reused from `" + opt["reuse"] + "`: " + "; ".join(f"part {part}'s rows, measured {measured[part]}"
                                                               for part in reused)
                  + ". This run measured " + ", ".join(opt["parts"]) + ".)", ""]
    path = write_report("onexn", "\n".join(lines) + "\n", {"options": opt, "cpu": cpu, "isa": kernel.isa(),
                                                           "kernel": krows, "network": nrows, "accuracy": arows,
                                                           "latency": lrows, "latency_facts": lfacts, "measured": measured},
                        opt["out"])
    print(f"wrote {path}")
    return 0
