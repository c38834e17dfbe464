"""Executor throughput: the local executor against Ray Tune with 1 and 2 workers.

Protocol (one run, side by side, through the real search path ``run_search``):

1. One base network (``model`` on ``data``, ``base_epochs``) is trained once and shared by
   every arm as ``base.checkpoint``, so no arm trains a base.
2. Candidates have a nearly fixed cost: the space settings of ``presets/bench/executor.yaml``
   (a small base whose units all stay at 90-100 % of their width, no bound), and
   ``finetune.max_batches`` chosen so one candidate trains for about ``seconds`` on one
   core (measured once before the arms; ``batches=N`` fixes it instead).
3. Every arm searches ``trials`` evaluated candidates with ``algo=random`` (the same seed,
   so the same genomes) and its own fresh study: ``local`` (the default executor: one
   candidate at a time, in the driver's process, torch pinned to one thread), ``ray-1``
   and ``ray-2`` (``executor=ray``, ``ray.cpus_per_trial=1``, ``ray.max_concurrent`` 1
   and 2, a local Ray instance started with the executor's own ``ray.init`` arguments and
   timed separately). One candidate is thus one core in every arm.
4. Per arm: end-to-end wall time (Ray: from ``ray.init`` to ``ray.shutdown``), each
   evaluated trial's start and completion in the study (``datetime_start`` is the
   driver's ask, ``datetime_complete`` its tell) and the fine-tuning time the trainer
   measured itself (the ``seconds`` user attr). Steady state starts once each worker has
   finished its first trial (the W-th completion): throughput there is
   ``(N - W) / (t_N - t_W)``, and the overhead per trial is the wall time per trial per
   worker (``W / throughput``) minus the mean fine-tuning time; it covers everything
   that is not fine-tuning (ask, pricing, building the candidate, shipping it and its
   result, tell), so the local arm's figure is the baseline Ray adds to.

5. With ``baseline=REF`` (a git commit of this repository), the local arm of that version
   runs too, interleaved with this one's (``rounds`` times each, same batches and seed):
   the driver's own cost per trial before and after. The write transactions each version
   commits per trial (SQLAlchemy's commit events on a SQLite study, statements that wrote)
   are counted the same way for both, on ResNet-20 and ResNet-56 genomes (9 and 27 genes).

Example:
    python -m searchkit.bench executor seconds=5 trials=36   # about 10 minutes on 2 cores
    python -m searchkit.bench executor seconds=1 trials=4 out=/tmp/executor   # a smoke run
    python -m searchkit.bench executor arms=[local] baseline=0abe030 rounds=2
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from searchkit import study as st
from searchkit.bench.common import baseline_tree, median, options, run_in, write_report
from searchkit.config import PRESET_DIR, load_config, overrides_from_yaml
from searchkit.evaluate import finetune
from searchkit.search import run_search
from searchkit.setup import RunSetup
from searchkit.study import trial_cost

PRESET = PRESET_DIR / "bench" / "executor.yaml"  # the space and its nearly fixed-cost candidates
DEFAULTS = {"seconds": 5.0, "trials": 36, "data": "digits", "base_epochs": 1,
            "batches": None, "arms": ["local", "ray-1", "ray-2"], "seed": 0, "out": "reports/bench",
            "baseline": None, "rounds": 1, "tx_trials": 8}
GOAL_DRIVER_S = 0.2  # the local driver's own cost per trial (everything but fine-tuning)

# Counts the write transactions a search commits; runs under any version of searchkit.
_TX_HARNESS = """
import json, sys, torch
torch.set_num_threads(1)
from sqlalchemy import event
from sqlalchemy.engine import Engine
from searchkit.config import load_config
from searchkit.search import run_search
args, trials = json.loads(sys.argv[1]), int(sys.argv[2])
run_search(load_config(args + ["trials=1", "study=warm"]), quiet=True)
state = {"wrote": False, "n": 0}
def on_execute(conn, cursor, statement, *a):
    if statement.lstrip().split()[0].upper() in ("INSERT", "UPDATE", "DELETE"):
        state["wrote"] = True
def on_commit(conn):
    state["n"] += state["wrote"]
    state["wrote"] = False
event.listen(Engine, "before_cursor_execute", on_execute)
event.listen(Engine, "commit", on_commit)
out = run_search(load_config(args + [f"trials={trials}", "study=counted"]), quiet=True)
print(json.dumps({"write_tx": state["n"], "trials": len(out.study.trials)}))
"""
GOAL_SPEEDUP = 1.7  # Ray with 2 workers against the local executor, on 2 cores
GOAL_OVERHEAD_S = 0.3  # Ray's overhead per trial


def _preset_text() -> str:
    return ", ".join(o.replace("=", ": ") for o in overrides_from_yaml(PRESET))


def _calibrate(ctx: RunSetup, seconds: float) -> dict:
    """``finetune.max_batches`` for about ``seconds`` of fine-tuning on one thread.

    A short run warms up, a longer one gives the rate; the fixed part of a run (the final
    validation) is taken from the difference of two lengths, so it is not scaled up."""
    from searchkit.core.dist import draw
    rng = np.random.default_rng(0)  # a candidate from the middle of the space's cost range
    genome = ctx.space.genome_of({n: draw(d, rng) for n, d in ctx.space.distributions().items()})

    def timed(batches: int) -> float:
        model = ctx.space.build(genome, seed=0).model
        budget = dataclasses.replace(ctx.cfg.finetune, max_batches=batches)
        return float(finetune(model, ctx.data, budget, device=ctx.device, progress=False)["seconds"])

    timed(3)  # warm-up: first-call allocations
    short, long_ = 5, 25
    t_short, t_long = timed(short), timed(long_)
    per_batch = max((t_long - t_short) / (long_ - short), 1e-4)
    fixed = max(t_short - short * per_batch, 0.0)
    batches = max(1, round((seconds - fixed) / per_batch))
    return {"per_batch_s": per_batch, "fixed_s": fixed, "batches": batches,
            "probe_s": {str(short): t_short, str(long_): t_long}}


def _trial_rows(study) -> list[dict]:
    rows = []
    for t in st.evaluated_trials(study):
        rows.append({"number": t.number, "start": t.datetime_start.timestamp(),
                     "complete": t.datetime_complete.timestamp(),
                     "train_s": float(t.user_attrs.get("seconds", float("nan"))),
                     "flops": trial_cost(t, "flops")})
    return sorted(rows, key=lambda r: r["complete"])


def _summarise(rows: list[dict], workers: int, wall: float) -> dict:
    """Throughput end-to-end and in steady state, overhead per trial, first-trial start-up."""
    n = len(rows)
    out = {"workers": workers, "evaluated": n, "wall_s": wall,
           "e2e_per_min": 60.0 * n / wall if wall > 0 else float("nan"),
           "train_s_median": median([r["train_s"] for r in rows]),
           "train_s_min": min((r["train_s"] for r in rows), default=float("nan")),
           "train_s_max": max((r["train_s"] for r in rows), default=float("nan"))}
    # Each worker's first trial pays its start-up; by the W-th completion every worker has
    # finished one (with reused actors a worker keeps its process for all later trials).
    firsts = sorted(rows, key=lambda r: r["start"])[:workers]
    out["first_trial_startup_s"] = [r["complete"] - r["start"] - r["train_s"] for r in firsts]
    steady = rows[workers:]
    if len(steady) >= 1 and rows[-1]["complete"] > rows[workers - 1]["complete"]:
        span = rows[-1]["complete"] - rows[workers - 1]["complete"]
        rate = len(steady) / span
        # the mean, not the median: wall time is the sum of the trials' own times, and a
        # skewed fine-tuning time would otherwise show up as (even negative) overhead
        train = sum(r["train_s"] for r in steady) / len(steady)
        out.update(steady_trials=len(steady), steady_per_min=60.0 * rate,
                   wall_per_trial_per_worker_s=workers / rate, steady_train_s_median=median(
                       [r["train_s"] for r in steady]), overhead_per_trial_s=workers / rate - train)
    else:
        out.update(steady_trials=0, steady_per_min=float("nan"), wall_per_trial_per_worker_s=float("nan"),
                   steady_train_s_median=float("nan"), overhead_per_trial_s=float("nan"))
    return out


def _transactions(tree: Path | None, model: str, trials: int, work: Path) -> dict:
    """Write transactions per trial of a search on ``model`` genomes (this version, or
    ``tree``'s)."""
    import json
    import subprocess
    import sys
    args = [f"space.model={model}", "data=synthetic", "data.options={size: 64}", "base.epochs=0",
            "finetune.max_batches=1", "constraint.flops=null", "algo=abc", "algo.food_number=3", "progress=false",
            f"storage=sqlite:///{work / f'tx-{model}-{tree is not None}.db'}",
            f"base.cache_dir={work / f'tx-bases-{tree is not None}'}"]
    cmd = ["-c", _TX_HARNESS, json.dumps(args), str(trials)]
    if tree is not None:
        text = run_in(tree, cmd)
    else:
        env = {**os.environ, "CI": "1"}
        text = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, check=True, env=env,
                              cwd=work).stdout
    got = json.loads(text.strip().splitlines()[-1])
    return {**got, "per_trial": got["write_tx"] / max(1, got["trials"])}


def _baseline_arm(tree: Path, opt: dict, batches: int, work: Path, n: int) -> dict:
    """The local arm of the baseline version: its own benchmark, same batches and seed."""
    import json
    out = work / f"baseline-{n}"
    run_in(tree, ["-m", "searchkit.bench", "executor", "arms=[local]", f"trials={opt['trials']}",
                  f"batches={batches}", f"seed={opt['seed']}", f"data={opt['data']}",
                  f"base_epochs={opt['base_epochs']}", f"out={out}"])
    arm = json.loads((out / "executor.json").read_text())["arms"]["local"]
    # its trials' times, summed up as this version's are (the baseline's own estimator may differ)
    return {**arm, **_summarise(arm["rows"], 1, arm["wall_s"])}


def _run_arm(arm: str, common: list[str], work: Path, tag: str = "") -> dict:
    workers = 1 if arm == "local" else int(arm.split("-", 1)[1])
    overrides = [*common, f"study=executor-{arm}{tag}", f"storage=sqlite:///{work / f'{arm}{tag}.db'}"]
    if arm == "local":
        overrides.append("executor=local")
    else:
        overrides += ["executor=ray", f"ray.max_concurrent={workers}", "ray.cpus_per_trial=1"]
    cfg = load_config(overrides)
    init_s = shutdown_s = None
    started = time.perf_counter()
    if arm != "local":
        # The executor's own start-up (same ray.init arguments), timed apart from the run;
        # an instance it finds initialized is used and left running, so it is shut here.
        from searchkit.execution import ray_tune
        ray_tune._start_ray(cfg.ray.address)
        init_s = time.perf_counter() - started
    try:
        search_started = time.time()
        outcome = run_search(cfg, quiet=True)
    finally:
        if arm != "local":
            t = time.perf_counter()
            ray_tune.ray.shutdown()
            shutdown_s = time.perf_counter() - t
    wall = time.perf_counter() - started
    rows = _trial_rows(outcome.study)
    summary = _summarise(rows, workers, wall)
    first_ask = min((t.datetime_start.timestamp() for t in outcome.study.trials), default=search_started)
    summary.update(arm=arm, ray_init_s=init_s, ray_shutdown_s=shutdown_s,
                   before_first_ask_s=first_ask - search_started, stop_reason=outcome.stop_reason,
                   asked=len(outcome.study.trials), rows=rows,
                   fixed_s=wall - summary["evaluated"] * 60.0 / summary["steady_per_min"]
                   if summary["steady_per_min"] > 0 else float("nan"))
    return summary


def _fmt(value, spec: str = ".2f", missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return missing
    return format(value, spec)


def _verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def _break_even(local: dict, ray: dict, goal: float) -> float | None:
    """Evaluated candidates from which the end-to-end ratio reaches ``goal``, extrapolated
    from the measured fixed costs and steady-state rates (``None``: never, the steady-state
    ratio itself is below the goal)."""
    r_l, r_r = local["steady_per_min"] / 60.0, ray["steady_per_min"] / 60.0
    if not (r_l > 0 and r_r > 0) or 1 / r_l - goal / r_r <= 0:
        return None
    return max(0.0, (goal * ray["fixed_s"] - local["fixed_s"]) / (1 / r_l - goal / r_r))


def _markdown(opt: dict, cal: dict | None, arms: dict[str, dict], batches: int, tx: dict | None = None) -> str:
    local = arms.get("local")
    cost = (f"measured {cal['per_batch_s'] * 1000:.1f} ms per batch + {cal['fixed_s']:.2f} s fixed"
            if cal else "batches given")
    lines = [
        "# Executors: local against Ray Tune with 1 and 2 workers", "",
        f"Candidates of nearly fixed cost: the space settings of `presets/bench/executor.yaml` "
        f"({_preset_text()}) on {opt['data']}, {batches} fine-tuning "
        f"batches each (about {opt['seconds']:g} s on one core: {cost}). Each arm runs the real search path "
        f"(`run_search`, `algo=random`, seed {opt['seed']}: the same genomes in every arm) to "
        f"{opt['trials']} evaluated candidates in its own SQLite study, from one shared base checkpoint. "
        "The local executor trains one candidate at a time in the driver's process with torch on one "
        "thread; each Ray worker has one CPU (`ray.cpus_per_trial=1`, one torch thread): one candidate is "
        "one core in every arm, and Ray's parallelism is compared against that. This machine has "
        f"{os.cpu_count()} cores, shared by the driver, Ray's own processes and the workers.", "",
        "End-to-end: all of the arm's wall time (Ray: from `ray.init` to `ray.shutdown`, with the workers' "
        "start-up). Steady state: from the moment each worker has finished its first trial to the last "
        "completion. Overhead per trial: steady-state wall time per trial per worker minus the mean "
        "fine-tuning time the trainer measured itself, i.e. everything but fine-tuning (ask, pricing, "
        "building the candidate, shipping it and its result, tell, the study's writes).", "",
        "| arm | workers | evaluated | wall (s) | end-to-end cand/min | steady cand/min "
        "| fine-tune s (median, min-max) | wall per trial per worker (s) | overhead per trial (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, a in arms.items():
        lines.append(
            f"| {name} | {a['workers']} | {a['evaluated']} | {a['wall_s']:.1f} | {_fmt(a['e2e_per_min'])} | "
            f"{_fmt(a['steady_per_min'])} | {_fmt(a['train_s_median'])} ({_fmt(a['train_s_min'])}-"
            f"{_fmt(a['train_s_max'])}) | {_fmt(a['wall_per_trial_per_worker_s'])} | "
            f"{_fmt(a['overhead_per_trial_s'])} |")
    lines += ["", "Fixed costs, paid once per run (in the end-to-end figures, not in the steady-state ones). "
              "A worker's first trial imports torch and searchkit and rebuilds the data, base and space "
              "from the run configuration; its start-up is that trial's wall time minus its fine-tuning.", "",
              "| arm | ray.init (s) | driver set-up to first ask (s) | first trial start-up per worker (s) "
              "| ray.shutdown (s) | all fixed: wall - evaluated / steady rate (s) |",
              "|---|---|---|---|---|---|"]
    for name, a in arms.items():
        startup = ", ".join(_fmt(s, ".1f") for s in a["first_trial_startup_s"]) or "-"
        lines.append(f"| {name} | {_fmt(a['ray_init_s'], '.1f')} | {_fmt(a['before_first_ask_s'], '.1f')} | "
                     f"{startup} | {_fmt(a['ray_shutdown_s'], '.1f')} | {_fmt(a['fixed_s'], '.1f')} |")
    lines.append("")
    if local:
        lines += ["| against local | end-to-end throughput | steady-state throughput | fine-tune time | "
                  "overhead per trial beyond local's (s) |", "|---|---|---|---|---|"]
        for name, a in arms.items():
            if name.startswith("ray-"):
                lines.append(
                    f"| {name} | {_fmt(a['e2e_per_min'] / local['e2e_per_min'])}x | "
                    f"{_fmt(a['steady_per_min'] / local['steady_per_min'])}x | "
                    f"{_fmt(a['train_s_median'] / local['train_s_median'])}x | "
                    f"{_fmt(a['overhead_per_trial_s'] - local['overhead_per_trial_s'], '+.2f')} |")
        lines += ["", "With 2 workers on 2 cores the driver, Tune's event loop and Ray's daemons take CPU "
                  "from the workers: that shows as a longer fine-tuning time than the local arm's (the "
                  "'fine-tune time' column), not as overhead.", ""]
    base_arms = [a for k, a in arms.items() if k.startswith("baseline")]
    now_arms = [a for k, a in arms.items() if k == "local" or k.startswith("local (")]
    if base_arms and now_arms:
        b = median([a["overhead_per_trial_s"] for a in base_arms])
        n = median([a["overhead_per_trial_s"] for a in now_arms])
        lines += ["## The driver's own cost per trial, before and after", "",
                  f"`baseline` is the local arm of commit `{opt['baseline']}` (its own benchmark, same batches "
                  f"and seed), interleaved with this version's local arm, {len(base_arms)} round(s) each: "
                  f"median overhead per trial {b:.3f} s before, {n:.3f} s now ({n / b:.2f}x)." if b > 0 else "", ""]
    if tx:
        lines += ["| genome | write transactions per trial, before | now | ratio |", "|---|---|---|---|"]
        for model, t in tx.items():
            lines.append(f"| {model} | {t['baseline']['per_trial']:.1f} | {t['now']['per_trial']:.1f} | "
                         f"{t['now']['per_trial'] / t['baseline']['per_trial']:.2f}x |")
        lines += ["", "Counted on a SQLite study with `algo=abc` ("
                  f"{opt['tx_trials']} trials, no bound): every committed transaction that wrote. Each costs "
                  "an fsync on SQLite (milliseconds to tens of milliseconds on a busy disk) and a round trip "
                  "on PostgreSQL.", ""]
    goals = ["## Goals", ""]
    if now_arms:
        n = median([a["overhead_per_trial_s"] for a in now_arms])
        goals.append(f"- The local driver's own cost per trial <= {GOAL_DRIVER_S} s: {_fmt(n, '.3f')} s "
                     f"{_verdict(n == n and n <= GOAL_DRIVER_S)}.")
    ray2 = arms.get("ray-2")
    if local and ray2:
        e2e = ray2["e2e_per_min"] / local["e2e_per_min"]
        steady = ray2["steady_per_min"] / local["steady_per_min"]
        goals.append(f"- Ray with 2 workers at >= {GOAL_SPEEDUP}x the local throughput, end-to-end "
                     f"({ray2['evaluated']} candidates): {_fmt(e2e)}x {_verdict(e2e >= GOAL_SPEEDUP)}; "
                     f"in steady state: {_fmt(steady)}x {_verdict(steady >= GOAL_SPEEDUP)}.")
        n = _break_even(local, ray2, GOAL_SPEEDUP)
        goals.append("  Extrapolated from these fixed costs and steady rates, the end-to-end ratio reaches "
                     f"{GOAL_SPEEDUP}x from about {n:.0f} candidates of this cost." if n is not None else
                     f"  The steady-state ratio is below {GOAL_SPEEDUP}x, so no number of candidates of this "
                     "cost reaches it end-to-end.")
    for name, a in arms.items():
        if name.startswith("ray-"):
            over = a["overhead_per_trial_s"]
            goals.append(f"- Ray's overhead per trial <= {GOAL_OVERHEAD_S} s, {name}: {_fmt(over)} s "
                         f"{_verdict(over == over and over <= GOAL_OVERHEAD_S)}"
                         + (f" (the local executor's own: {_fmt(local['overhead_per_trial_s'])} s; Ray's "
                            f"beyond it: {_fmt(over - local['overhead_per_trial_s'], '+.2f')} s)" if local else "")
                         + ".")
    return "\n".join(lines + goals) + "\n"


def main(argv: list[str]) -> int:
    opt = options(argv, DEFAULTS)
    for arm in opt["arms"]:
        if arm != "local" and not (arm.startswith("ray-") and arm[4:].isdigit() and int(arm[4:]) >= 1):
            raise SystemExit(f"searchkit.bench executor: error: unknown arm '{arm}' (local, ray-N)")
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The local arm trains in this process: one thread, as each Ray worker has.
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="searchkit-bench-executor-"))
    tree = None
    work_tx = Path(tempfile.mkdtemp(prefix="searchkit-bench-tx-"))
    try:
        common = [*overrides_from_yaml(PRESET), f"data={opt['data']}", "algo=random", f"seed={opt['seed']}",
                  f"trials={opt['trials']}", "progress=false", f"base.epochs={opt['base_epochs']}",
                  f"base.cache_dir={work / 'bases'}"]
        # One base for every arm (trained here, once).
        base_ctx = RunSetup.build(load_config([*common, f"storage=sqlite:///{work / 'base.db'}"]), quiet=True)
        base_ckpt = work / "base.pt"
        torch.save(base_ctx.base.module.state_dict(), base_ckpt)
        common.append(f"base.checkpoint={base_ckpt}")
        cal = None
        if opt["batches"] is None:
            cal = _calibrate(base_ctx, float(opt["seconds"]))
            batches = cal["batches"]
            print(f"calibration: {cal['per_batch_s'] * 1000:.1f} ms per batch + {cal['fixed_s']:.2f} s -> "
                  f"{batches} batches for {opt['seconds']:g} s", flush=True)
        else:
            batches = int(opt["batches"])
        common.append(f"finetune.max_batches={batches}")
        arms: dict[str, dict] = {}
        tree = baseline_tree(str(opt["baseline"])) if opt["baseline"] else None
        rounds = max(1, int(opt["rounds"]))
        plan = [(a, r) for r in range(rounds) for a in (["baseline"] if tree else []) + ["local"]] + \
            [(a, 0) for a in opt["arms"] if a != "local"]
        for arm, r in plan:
            if arm == "baseline":
                result = _baseline_arm(tree, opt, batches, work, r)
            else:
                result = _run_arm(arm, common, work, f"-{r}" if r else "")
            key = arm if r == 0 else f"{arm} (round {r + 1})"
            arms[key] = result
            print(f"{arm}: {result['evaluated']} candidates in {result['wall_s']:.1f} s "
                  f"({result['e2e_per_min']:.2f}/min end-to-end, {_fmt(result['steady_per_min'])}/min steady; "
                  f"fine-tune {_fmt(result['train_s_median'])} s, overhead {_fmt(result['overhead_per_trial_s'])} s"
                  + (f"; ray.init {result['ray_init_s']:.1f} s" if result["ray_init_s"] is not None else "")
                  + ")", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # studies and base: the report keeps the figures
    tx = None
    if tree is not None:
        tx = {}
        for model in ("resnet20", "resnet56"):
            tx[model] = {"baseline": _transactions(tree, model, int(opt["tx_trials"]), work_tx),
                         "now": _transactions(None, model, int(opt["tx_trials"]), work_tx)}
            print(f"write transactions per trial, {model}: {tx[model]['baseline']['per_trial']:.1f} -> "
                  f"{tx[model]['now']['per_trial']:.1f}", flush=True)
    markdown = _markdown(opt, cal, arms, batches, tx)
    path = write_report("executor", markdown, {"options": opt, "calibration": cal, "batches": batches,
                                               "goals": {"speedup": GOAL_SPEEDUP, "overhead_s": GOAL_OVERHEAD_S},
                                               "arms": arms, "transactions": tx}, opt["out"])
    shutil.rmtree(work_tx, ignore_errors=True)
    print(f"wrote {path}")
    return 0
