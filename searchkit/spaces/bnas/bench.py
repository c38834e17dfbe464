"""Supernet benchmark of ``space=bnas``: activation memory and step time of the PC-DARTS
supernet at partial-channel shares K = 1, 2, 4, side by side in one run.

Memory is what autograd saves for the backward pass (every tensor a saved-tensors hook sees),
the number partial channels exist to cut; step time is forward + backward + both optimizer
steps, median of interleaved rounds, one thread.

Example:
    python -m searchkit.bench bnas               # ~3 min on 2 cores
    python -m searchkit.bench bnas quick=true    # a smoke run
"""

from __future__ import annotations

import statistics
import time

from searchkit.bench.common import options, write_report

DEFAULTS = {"ks": [1, 2, 4], "C": 16, "cells": 5, "batch": 32, "sides": [16, 8], "rounds": 5, "preset": "bnas",
            "quick": False, "out": "reports/bench"}
QUICK = {"C": 8, "cells": 3, "batch": 8, "sides": [8], "rounds": 2}


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


def main(argv: list[str]) -> int:
    opt = options(argv, DEFAULTS)
    if opt["quick"]:
        opt = {**opt, **{k: v for k, v in QUICK.items() if not any(a.startswith(f"{k}=") for a in argv)}}
    import torch
    import torch.nn.functional as F

    from searchkit.spaces.bnas import BNASOptions, BNASSpace
    from searchkit.spaces.bnas.supernet import Supernet
    torch.set_num_threads(1)
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
    lines = ["# PC-DARTS supernet of space=bnas: partial channels", "",
             f"Preset `{opt['preset']}`, C={opt['C']}, {opt['cells']} cells, batch {opt['batch']}, one thread; "
             f"saved activations of one step (autograd's saved tensors) and the median step time of "
             f"{opt['rounds']} interleaved rounds (forward, backward, weight and architecture updates).", ""]
    if opt["quick"]:
        lines += ["**Quick form (a smoke run).**", ""]
    lines += ["| input | K | saved activations (MiB) | vs K=1 | step (s) | vs K=1 |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['side']}×{r['side']} | {r['k']} | {r['mib']:.0f} | {r['mem_ratio']:.2f}× | {r['step_s']:.3f} | "
              f"{r['time_ratio']:.2f}× |" for r in rows]
    top = max(opt["ks"])
    for side in opt["sides"]:
        r = next(r for r in rows if r["side"] == side and r["k"] == top)
        lines.append("")
        lines.append(f"At {side}×{side}, K={top}: memory {r['mem_ratio']:.2f}× (goal ≤ 0.35×: "
                     f"{'met' if r['mem_ratio'] <= 0.35 else 'missed'}), step time {r['time_ratio']:.2f}× (goal ≤ 0.5×: "
                     f"{'met' if r['time_ratio'] <= 0.5 else 'missed'}).")
    lines += ["", "Not measured here yet (see docs/bnas.md): operation-space reduction, darts against random cells "
              "and black-box arms, the binary kernel, word-level ops against latency."]
    path = write_report("bnas", "\n".join(lines) + "\n", {"options": opt, "rows": rows}, opt["out"])
    print(f"wrote {path}")
    return 0
