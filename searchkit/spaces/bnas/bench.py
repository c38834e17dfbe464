"""Benchmarks of ``space=bnas``, side by side in one run (``parts=[supernet,kernel,latency]``):

- ``supernet``: activation memory and step time of the PC-DARTS supernet at partial-channel
  shares K = 1, 2, 4. Memory is what autograd saves for the backward pass; step time is
  forward + backward + both optimizer steps, median of interleaved rounds, one thread.
- ``kernel``: the XNOR-popcount op against torch's float conv of the same shape (oneDNN) and
  against the W1A1 conv as torch runs it (sign, then a float conv), batch 1, one thread.
- ``latency``: random ``preset=binary`` cells run as XNOR programs; Spearman's ρ of their
  measured latency against ``word_ops``, ``ops`` (FLOPs + BOPs/64) and ``flops``, and against
  the latency predictor of this CPU (profiled here with the op's ``xnor_conv`` kernels).
- ``search``: ``algo=darts`` with and without operation-space reduction, against random
  cells of equal word-ops and against tpe/abc at equal wall-clock (``search_bench.py``).

Example:
    python -m searchkit.bench bnas               # ~55 min on 2 cores
    python -m searchkit.bench bnas quick=true    # a smoke run
"""

from __future__ import annotations

import statistics
import time

from searchkit.bench.common import (cpu_with_flags, interleaved_times, options, prediction_facts, profile_this_cpu,
                                    write_report)

DEFAULTS = {"parts": ["supernet", "kernel", "latency", "search"], "ks": [1, 2, 4], "C": 16, "cells": 5, "batch": 32,
            "sides": [16, 8], "rounds": 5, "preset": "bnas",
            # kernel: (cin, cout, k, groups, side) per shape; latency: random binary cells at this side
            "shapes": [[64, 64, 3, 1, 32], [128, 128, 3, 1, 16], [256, 256, 3, 1, 8], [128, 128, 1, 1, 16],
                       [128, 128, 3, 4, 16], [64, 64, 5, 1, 16]],
            "cells_sampled": 50, "latency_C": 16, "latency_side": 32, "lat_sweep": "default", "lat_rounds": 2,
            # search: algo=darts with and without reduction, random cells, black-box arms (search_bench.py)
            "seeds": 3, "jobs": 2, "search_C": 8, "search_cells": 5, "darts_epochs": 6, "warmup": 2,
            "finetune_epochs": 2.0, "final_epochs": 4.0, "bb_trials": 200, "algos": ["tpe", "abc"],
            "random_cells": 20, "work": None, "quick": False, "out": "reports/bench"}
QUICK = {"C": 8, "cells": 3, "batch": 8, "sides": [8], "rounds": 2, "shapes": [[64, 64, 3, 1, 16]],
         "cells_sampled": 6, "latency_C": 8, "latency_side": 8, "lat_sweep": "quick", "lat_rounds": 1,
         "seeds": 1, "jobs": 1, "search_C": 4, "search_cells": 2, "darts_epochs": 2, "warmup": 1,
         "finetune_epochs": 0.25, "final_epochs": 0.25, "bb_trials": 2, "algos": ["tpe"], "random_cells": 2}
GOALS = {(64, 64, 3, 1, 32): 3.0, (128, 128, 3, 1, 16): 5.0}  # the issue's: float conv time / XNOR time


def _saved_bytes(net, x, y) -> int:
    import torch
    import torch.nn.functional as F
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(net(x), y)
    loss.backward()
    return total[0]


def _supernet(opt) -> tuple[list[dict], list[str]]:
    import torch
    import torch.nn.functional as F

    from searchkit.spaces.bnas import BNASOptions, BNASSpace
    from searchkit.spaces.bnas.supernet import Supernet
    torch.manual_seed(0)
    space = BNASSpace(BNASOptions(preset=opt["preset"], C=int(opt["C"]), cells=int(opt["cells"])), 10, 3)
    rows = []
    for side in opt["sides"]:
        x, y = torch.randn(int(opt["batch"]), 3, side, side), torch.randint(0, 10, (int(opt["batch"]),))
        nets = {k: Supernet(space, k=int(k)) for k in opt["ks"]}
        opts = {k: (torch.optim.SGD(n.weight_parameters(), lr=0.01), torch.optim.Adam(n.arch_parameters(), lr=6e-4))
                for k, n in nets.items()}
        memory = {k: _saved_bytes(n, x, y) for k, n in nets.items()}

        def step(k):
            w, a = opts[k]
            w.zero_grad()
            a.zero_grad()
            F.cross_entropy(nets[k](x), y).backward()
            w.step()
            a.step()
        times = {k: [] for k in nets}
        for k in nets:
            step(k)
        for _ in range(int(opt["rounds"])):
            for k in nets:
                started = time.perf_counter()
                step(k)
                times[k].append(time.perf_counter() - started)
        ref = min(nets)
        for k in nets:
            med = statistics.median(times[k])
            rows.append({"side": side, "k": k, "mib": memory[k] / 2 ** 20, "step_s": med,
                         "mem_ratio": memory[k] / memory[ref],
                         "time_ratio": med / statistics.median(times[ref])})
            print(f"{side}px K={k}: {memory[k] / 2 ** 20:.0f} MiB saved, step {med:.3f} s", flush=True)
    lines = ["## Supernet: partial channels", "",
             f"Preset `{opt['preset']}`, C={opt['C']}, {opt['cells']} cells, batch {opt['batch']}, one thread; "
             f"saved activations of one step (autograd's saved tensors) and the median step time of "
             f"{opt['rounds']} interleaved rounds (forward, backward, weight and architecture updates).", "",
             "| input | K | saved activations (MiB) | vs K=1 | step (s) | vs K=1 |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['side']}×{r['side']} | {r['k']} | {r['mib']:.0f} | {r['mem_ratio']:.2f}× | {r['step_s']:.3f} | "
              f"{r['time_ratio']:.2f}× |" for r in rows]
    top = max(opt["ks"])
    for side in opt["sides"]:
        r = next(r for r in rows if r["side"] == side and r["k"] == top)
        lines += ["", f"At {side}×{side}, K={top}: memory {r['mem_ratio']:.2f}× (goal ≤ 0.35×: "
                  f"{'met' if r['mem_ratio'] <= 0.35 else 'missed'}), step time {r['time_ratio']:.2f}× (goal ≤ 0.5×: "
                  f"{'met' if r['time_ratio'] <= 0.5 else 'missed'})."]
    return rows, lines


def _kernel(opt) -> tuple[list[dict], list[str]]:
    import torch

    from searchkit.spaces.bnas import xnor
    from searchkit.spaces.bnas.binary import BinaryConv2d
    rows = []
    torch.manual_seed(0)
    for cin, cout, k, groups, side in opt["shapes"]:
        conv = BinaryConv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False, scaling="channel",
                            binary_input=True).eval()
        dense = torch.nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False).eval()
        fast = xnor.XnorConv2d.of(conv)
        x = torch.randn(1, cin, side, side)
        with torch.no_grad():
            exact = torch.equal(torch.round(fast(x) / conv.scale().view(1, -1, 1, 1)),
                                torch.round(conv(x) / conv.scale().view(1, -1, 1, 1)))
            t = interleaved_times({"dense": lambda: dense(x), "w1a1_torch": lambda: conv(x),
                                   "xnor": lambda: fast(x)}, int(opt["rounds"]) + 4)
        goal = GOALS.get((cin, cout, k, groups, side))
        rows.append({"shape": [cin, cout, k, groups, side], "exact": exact, **{f"{n}_ms": v * 1e3 for n, v in t.items()},
                     "vs_dense": t["dense"] / t["xnor"], "vs_torch_w1a1": t["w1a1_torch"] / t["xnor"], "goal": goal})
        print(f"{cin}->{cout} k{k} g{groups} @{side}: dense {t['dense'] * 1e3:.3f} ms, xnor {t['xnor'] * 1e3:.3f} ms "
              f"({t['dense'] / t['xnor']:.2f}x), exact={exact}", flush=True)
    lines = ["## Binary kernel: XNOR-popcount against float convs", "",
             f"Batch 1, one thread, median of interleaved rounds. Kernel dispatched to **{xnor.isa()}**. "
             "`dense`: torch's float conv of the shape (oneDNN); `W1A1 in torch`: the same binary conv as "
             "training runs it (sign, then a float conv); ratios are their time / the XNOR op's. "
             "`exact`: the op's integer dot products equal the float conv of the signs.", "",
             "| Cin→Cout | k | groups | side | dense (ms) | W1A1 in torch (ms) | XNOR (ms) | vs dense | vs W1A1 torch "
             "| exact | goal |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cin, cout, k, g, side = r["shape"]
        goal = "" if r["goal"] is None else f"≥ {r['goal']:g}×: {'met' if r['vs_dense'] >= r['goal'] else 'MISSED'}"
        lines.append(f"| {cin}→{cout} | {k} | {g} | {side}² | {r['dense_ms']:.3f} | {r['w1a1_torch_ms']:.3f} | "
                     f"{r['xnor_ms']:.3f} | {r['vs_dense']:.2f}× | {r['vs_torch_w1a1']:.2f}× | {r['exact']} | {goal} |")
    return rows, lines


def _latency(opt) -> tuple[list[dict], list[str]]:
    import random

    import pandas as pd
    import torch

    from searchkit.core.genome import archid
    from searchkit.costs.latency_cost import LatencyCost
    from searchkit.spaces.bnas import BNASOptions, BNASSpace
    profiled = profile_this_cpu(opt["lat_sweep"], int(opt["lat_rounds"]))
    predictor, minutes = profiled.predictor, profiled.minutes
    space = BNASSpace(BNASOptions(preset="binary", C=int(opt["latency_C"]), cells=int(opt["cells"])), 10, 3,
                      int(opt["latency_side"]))
    cost = LatencyCost(space, predictor=predictor)
    dists = space.distributions()
    rng = random.Random(0)
    x = torch.randn(1, 3, space.side, space.side)
    rows = []
    for i in range(int(opt["cells_sampled"])):
        genome = space.genome_of({k: rng.choice(d.choices) for k, d in dists.items()})
        built = space.build(genome, seed=i)
        net, eager = space.latency_network(built), built.net.eval()
        with torch.no_grad():
            t = interleaved_times({"net": lambda: net(x), "eager": lambda: eager(x)}, int(opt["rounds"]), budget=0.03)
        flops, _ = space.flops_params(genome)
        rows.append({"archid": archid(genome), "ms": t["net"] * 1e3, "eager_ms": t["eager"] * 1e3, "flops": flops,
                     **space.binary_costs(genome), "predicted_ms": cost.cost(genome)})
    frame = pd.DataFrame(rows)
    rho = {c: float(frame["ms"].corr(frame[c], method="spearman")) for c in ("word_ops", "ops", "flops")}
    pred = prediction_facts(frame["predicted_ms"], frame["ms"])
    # how far each count is from proportional to time: spread of ms per count unit, max/min
    spread = {c: float((frame["ms"] / frame[c]).max() / (frame["ms"] / frame[c]).min()) for c in rho}
    print("spearman rho vs latency: " + ", ".join(f"{c} {v:.3f}" for c, v in rho.items()), flush=True)
    lines = ["## Word-level ops against measured latency", "",
             f"{len(rows)} random `preset=binary` cells (C={opt['latency_C']}, {opt['cells']} cells, "
             f"{space.side}×{space.side} input), each run as its XNOR program (binary convs packed), batch 1, one "
             "thread. Spearman's ρ between the measured latency and each count; `spread`: the largest over "
             "the smallest latency per unit of the count (1.0 would be exactly proportional).", "",
             "| count | Spearman ρ | spread |", "|---|---|---|"]
    lines += [f"| `{c}` | {rho[c]:.3f} | {spread[c]:.2f} |" for c in rho]
    lines += [f"| predicted latency (`latency.target`: this CPU, profiled here) | {pred['spearman']:.3f} | — |"]
    lines += ["", f"Goal ρ ≥ 0.8 for `word_ops`: {'met' if rho['word_ops'] >= 0.8 else 'MISSED'}.", "",
              f"The latency predictor (a torch-runtime profile of this CPU with the XNOR op's `xnor_conv` kernels, "
              f"`sweep={opt['lat_sweep']}`, {opt['lat_rounds']} round(s), {minutes:.1f} min with the fit) against "
              f"the same measurements: RMSPE {pred['rmspe']:.1%}, {pred['within_10']:.0%} within ±10 %, mean error "
              f"{pred['mean_error']:+.1%}, Spearman ρ {pred['spearman']:.3f}."]
    speedup = frame["eager_ms"] / frame["ms"]
    lines += ["", f"Latency range: {frame['ms'].min():.3f}–{frame['ms'].max():.3f} ms. The XNOR program (what "
              "`model_xnor.pt2` runs: packed W1A1 convs, W1A32 weights binarized once, norms folded into the convs "
              f"before them, pools channels-last) against the eager training network of the same cell: median "
              f"{speedup.median():.2f}× faster (range {speedup.min():.2f}–{speedup.max():.2f}×)."]
    return rows, lines


def main(argv: list[str]) -> int:
    opt = options(argv, DEFAULTS)
    if opt["quick"]:
        opt = {**opt, **{k: v for k, v in QUICK.items() if not any(a.startswith(f"{k}=") for a in argv)}}
    import torch

    from searchkit.spaces.bnas import xnor
    torch.set_num_threads(1)
    unknown = set(opt["parts"]) - {"supernet", "kernel", "latency", "search"}
    if unknown:
        raise SystemExit(f"bench bnas: unknown parts {sorted(unknown)} (parts: supernet, kernel, latency, search)")
    if {"kernel", "latency"} & set(opt["parts"]) and not xnor.load():
        raise SystemExit("bench bnas: the XNOR kernel could not be built here (g++ and ninja are needed); "
                         "run parts=[supernet]")
    cpu = cpu_with_flags()
    print(f"CPU: {cpu}; XNOR kernel ISA: {xnor.isa()}", flush=True)
    lines = ["# space=bnas: supernet, binary kernel, word-level ops, differentiable search", "", f"CPU: {cpu}.", ""]
    if opt["quick"]:
        lines += ["**Quick form (a smoke run).**", ""]
    data = {"options": opt, "cpu": cpu, "isa": xnor.isa()}
    from searchkit.spaces.bnas.search_bench import search_part
    for part, fn in (("supernet", _supernet), ("kernel", _kernel), ("latency", _latency), ("search", search_part)):
        if part in opt["parts"]:
            data[part], more = fn(opt)
            lines += more + [""]
    path = write_report("bnas", "\n".join(lines) + "\n", data, opt["out"])
    print(f"wrote {path}")
    return 0
