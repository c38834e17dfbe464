"""Deployment benchmark: does a searched network run faster where it ships?

Protocol (one run, side by side): for every space a latency profile samples (the channel
space - ResNet-56 on digits, the quick start - and TinyNet), two searches each on the
quick-start data: one under a FLOPs bound
(the space's preset), one under a latency bound on an ONNX Runtime target
(``latency.target=`` a profile made with ``runtime=onnxruntime``; the bound is a fraction
of the base's predicted latency). Each winner is exported with ``format=all`` (which
verifies the latency bound on ``model.onnx`` at export). The winners and their bases are
then timed in interleaved rounds under three runtimes - torch eager (BN unfolded, as
trained), the exported ``model.pt2`` and ONNX Runtime (``model.onnx``, all graph
optimisations) - at batch 1 and 8, one thread each. The report gives each winner's FLOPs
reduction beside its measured speedup on every runtime, and the exported program's time
against the eager network's.

Example:
    python -m searchkit.bench deploy target=this-cpu-ort-1t   # about 25 minutes here
    python -m searchkit.bench deploy quick=true               # a smoke run (a quick profile)
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from searchkit.bench.common import latency_bound, latency_target, options, write_report

DEFAULTS = {"target": "this-cpu-ort-1t", "dir": "latency", "trials": 6, "latency_fraction": 0.5, "rounds": 10,
            "threads": 1, "quick": False, "out": "reports/bench", "work": None, "algo": "abc",
            "searches": ["flops", "latency"]}


def _spaces() -> list[str]:
    """The spaces a latency profile samples (they price latency from kernels)."""
    from searchkit.costs.profiling import _profiled_spaces
    return [name for name, _ in _profiled_spaces()]


def _searches(opt, work: Path, target: str, tdir: str) -> list[dict]:
    from searchkit.config import load_config
    from searchkit.export import export_study
    from searchkit.search import run_search
    from searchkit.setup import RunSetup
    quick = ["finetune.max_batches=2", "base.epochs=1", "finetune.epochs=1"] if opt["quick"] else []
    storage = f"sqlite:///{work / 'studies.db'}"
    out = []
    for space in _spaces():
        common = [f"space={space}", f"algo={opt['algo']}", "data=digits", f"storage={storage}", "progress=false",
                  f"trials={opt['trials']}", *quick]
        lat = [f"latency.target={target}", f"latency.dir={tdir}"]
        setup = RunSetup.build(load_config([*common, *lat, "constraint={}"]), quiet=True)
        base_ms = setup.costs["latency"].base()
        bound = latency_bound(setup.costs["latency"], opt["latency_fraction"])
        kinds = (("flops", [f"study={space}-flops"]),
                 ("latency", [f"study={space}-latency", *lat, "constraint.flops=null",
                              f"constraint.latency_ms={bound}"]))
        for kind, extra in (k for k in kinds if k[0] in opt["searches"]):
            result = run_search(load_config([*common, *extra]), quiet=True)
            folder = export_study(result.study.study_name, storage, out=work / "exports", format="all")[0]
            out.append({"space": space, "search": kind, "study": result.study.study_name, "folder": str(folder),
                        "bound_ms": bound if kind == "latency" else None, "base_predicted_ms": base_ms})
    return out


def _nets(run: dict, work: Path, threads: int) -> dict[str, tuple]:
    """The winner and its base under each runtime: (callable, input size)."""
    from searchkit import deploy
    from searchkit.costs.ort import OrtModel
    from searchkit import study as st
    from searchkit.setup import RunSetup
    folder = Path(run["folder"])
    arch = json.loads((folder / "arch.json").read_text())
    study = st.load_existing(run["study"], f"sqlite:///{work / 'studies.db'}")
    setup = RunSetup.build(st.stored_config(study), quiet=True, train_base=False,
                           known_base=study.user_attrs.get(st.BASE_KEY, {}))
    space = setup.space
    winner = space.build(arch["genome"], seed=0).net
    winner.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    base_genome = space.base_genome()
    base = space.build(base_genome, seed=0).net.eval()
    bsize = tuple(space.input_size(base_genome))
    bdir = work / "bases" / run["space"]  # one base per space: both searches share it
    if not (bdir / "model.onnx").is_file():
        bdir.mkdir(parents=True, exist_ok=True)
        folded = deploy.fold_batchnorm(base, bsize)
        deploy.save_program(base, bsize, bdir / "model.pt2", folded)
        deploy.save_onnx(base, bsize, bdir / "model.onnx", folded=folded)
    size = tuple(arch["input_size"])
    return {
        "winner/eager": (winner.eval(), size),
        "winner/pt2": (torch.export.load(str(folder / "model.pt2")).module(), size),
        "winner/ort": (OrtModel(folder / "model.onnx", threads), size),
        "base/eager": (base, bsize),
        "base/pt2": (torch.export.load(str(bdir / "model.pt2")).module(), bsize),
        "base/ort": (OrtModel(bdir / "model.onnx", threads), bsize),
    }, arch


def main(argv: list[str]) -> int:
    from searchkit.costs.latency import measure_models_ms
    opt = options(argv, DEFAULTS)
    if opt["quick"]:  # the smoke run: the latency-bound searches only (export, ORT, the bound)
        opt.update(trials=2, rounds=3, searches=[k for k in opt["searches"] if k == "latency"] or opt["searches"])
    work = Path(opt["work"]) if opt["work"] else Path(tempfile.mkdtemp(prefix="searchkit-deploy-"))
    work.mkdir(parents=True, exist_ok=True)
    target, tdir, target_line = latency_target(opt["target"], opt["dir"], quick=opt["quick"], work=work)
    runs = _searches(opt, work, target, tdir)
    torch.set_num_threads(int(opt["threads"]))
    nets, keys = [], []
    for i, run in enumerate(runs):
        got, arch = _nets(run, work, int(opt["threads"]))
        run["arch"] = {k: arch[k] for k in ("costs", "base_costs", "reduction", "val_accuracy", "genome", "input_size")}
        run["arch"]["latency"] = arch.get("latency")
        run["arch"]["onnx"] = arch["programs"]["onnx"]
        for name, net in got.items():
            keys.append((i, name))
            nets.append(net)
    times: dict[int, list[float]] = {}
    for batch in (1, 8):  # every network in the same interleaved rounds
        times[batch] = measure_models_ms(nets, rounds=int(opt["rounds"]), batch=batch)
    for i, run in enumerate(runs):
        run["ms"] = {b: {name: times[b][j] for j, (r, name) in enumerate(keys) if r == i} for b in times}
    md = _report(runs, opt, target_line)
    path = write_report("deploy", md, {"options": opt, "runs": runs, "target": target}, opt["out"])
    print(f"wrote {path}")
    return 0


def _report(runs: list[dict], opt: dict, target_line: str) -> str:
    lines = ["# Deployment: measured speedups of searched networks under torch eager, the exported "
             "program and ONNX Runtime", "",
             f"Searches on digits ({opt['trials']} candidates each), winners exported with `format=all`; the "
             f"latency-bound searches price latency on {target_line} with a bound of "
             f"{opt['latency_fraction']:g}x the base's predicted latency (raised where this machine's smallest "
             f"architecture is predicted slower than that; each run's bound is in its table row below). Times: medians of {opt['rounds']} "
             f"interleaved rounds, {opt['threads']} thread(s), every network in the same rounds.", "",
             "Speedup = base time / winner time on the same runtime; FLOPs factor = base FLOPs / winner FLOPs; "
             "'speedup / FLOPs factor' is the share of the FLOPs reduction that turns into speed (goal >= 0.7 "
             "for the ORT-bound winners).", ""]
    lines += ["| space | search | FLOPs factor | batch | eager speedup | `model.pt2` speedup | ORT speedup | "
              "ORT speedup / FLOPs factor | winner `model.pt2` / eager time | base `model.pt2` / eager time |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    summary = []
    for run in runs:
        c, b = run["arch"]["costs"], run["arch"]["base_costs"]
        factor = b["flops"] / c["flops"]
        for batch, ms in run["ms"].items():
            sp = {rt: ms[f"base/{rt}"] / ms[f"winner/{rt}"] for rt in ("eager", "pt2", "ort")}
            lines.append(f"| {run['space']} | {run['search']} | {factor:.2f}x | {batch} | {sp['eager']:.2f}x | "
                         f"{sp['pt2']:.2f}x | {sp['ort']:.2f}x | {sp['ort'] / factor:.2f} | "
                         f"{ms['winner/pt2'] / ms['winner/eager']:.2f} | {ms['base/pt2'] / ms['base/eager']:.2f} |")
            summary.append(ms["winner/pt2"] / ms["winner/eager"])
    lines += ["", "Milliseconds:", "", "| space | search | batch | " + " | ".join(
        f"{w} {rt}" for w in ("base", "winner") for rt in ("eager", "pt2", "ort")) + " |",
        "|---|---|---|" + "---|" * 6]
    for run in runs:
        for batch, ms in run["ms"].items():
            lines.append(f"| {run['space']} | {run['search']} | {batch} | " + " | ".join(
                f"{ms[f'{w}/{rt}']:.3f}" for w in ("base", "winner") for rt in ("eager", "pt2", "ort")) + " |")
    lines += ["", "Latency-bound winners, as `export` measured them (ORT, batch 1):", "",
              "| space | bound ms | predicted ms | measured at export ms | bound met | val accuracy | "
              "ONNX max rel. diff |", "|---|---|---|---|---|---|---|"]
    for run in runs:
        lat = run["arch"]["latency"]
        if run["search"] != "latency" or not lat:
            continue
        lines.append(f"| {run['space']} | {lat['bound_ms']:.3f} | {lat['predicted_ms']:.3f} | {lat['measured_ms']:.3f} "
                     f"| {lat['bound_met']} | {run['arch']['val_accuracy']:.4f} | "
                     f"{run['arch']['onnx']['max_rel_diff']:.1e} |")
    lines += ["", f"Exported program against eager (winner `model.pt2` time / eager time): median "
              f"{np.median(summary):.2f}, worst {max(summary):.2f} (goal <= 1).", ""]
    return "\n".join(lines)
