"""Executor throughput: the local executor against Ray Tune with 1 and 2 workers.

Protocol (one run, side by side, through the real search path ``run_search``):

1. One base network (``model`` on ``data``, ``base_epochs``) is trained once and shared by
   every arm as ``base.checkpoint``, so no arm trains a base.
2. Candidates have a nearly fixed cost: the channel space with every unit keeping
   90-100 % of its channels (``space.keep=[0.9,0.95,1.0]``, no FLOPs bound), and
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
   worker (``W / throughput``) minus the median fine-tuning time; it covers everything
   that is not fine-tuning (ask, pricing, building the candidate, shipping it and its
   result, tell), so the local arm's figure is the baseline Ray adds to.

Example:
    python -m searchkit.bench executor seconds=5 trials=36   # about 10 minutes on 2 cores
    python -m searchkit.bench executor seconds=1 trials=4 out=/tmp/executor   # a smoke run
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from searchkit import study as st
from searchkit.bench.common import median, options, write_report
from searchkit.config import load_config
from searchkit.context import SearchContext, budget_of
from searchkit.evaluate import finetune
from searchkit.search import run_search

DEFAULTS = {"seconds": 5.0, "trials": 36, "model": "resnet20", "data": "digits", "base_epochs": 1,
            "batches": None, "keep": [0.9, 0.95, 1.0], "arms": ["local", "ray-1", "ray-2"],
            "seed": 0, "out": "reports/bench"}
GOAL_SPEEDUP = 1.7  # Ray with 2 workers against the local executor, on 2 cores
GOAL_OVERHEAD_S = 0.3  # Ray's overhead per trial


def _calibrate(ctx: SearchContext, seconds: float) -> dict:
    """``finetune.max_batches`` for about ``seconds`` of fine-tuning on one thread.

    A short run warms up, a longer one gives the rate; the fixed part of a run (the final
    validation) is taken from the difference of two lengths, so it is not scaled up."""
    genome = ctx.space.uniform(0.95)  # the middle of the candidates' cost

    def timed(batches: int) -> float:
        model = ctx.space.build(genome, seed=0)
        budget = dataclasses.replace(budget_of(ctx.cfg), max_batches=batches)
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
                     "flops_ratio": t.user_attrs.get("flops_ratio")})
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
        train = median([r["train_s"] for r in steady])
        out.update(steady_trials=len(steady), steady_per_min=60.0 * rate,
                   wall_per_trial_per_worker_s=workers / rate, steady_train_s_median=train,
                   overhead_per_trial_s=workers / rate - train)
    else:
        out.update(steady_trials=0, steady_per_min=float("nan"), wall_per_trial_per_worker_s=float("nan"),
                   steady_train_s_median=float("nan"), overhead_per_trial_s=float("nan"))
    return out


def _run_arm(arm: str, common: list[str], work: Path) -> dict:
    workers = 1 if arm == "local" else int(arm.split("-", 1)[1])
    overrides = [*common, f"study=executor-{arm}", f"storage=sqlite:///{work / f'{arm}.db'}"]
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


def _markdown(opt: dict, cal: dict | None, arms: dict[str, dict], batches: int) -> str:
    local = arms.get("local")
    cost = (f"measured {cal['per_batch_s'] * 1000:.1f} ms per batch + {cal['fixed_s']:.2f} s fixed"
            if cal else "batches given")
    lines = [
        "# Executors: local against Ray Tune with 1 and 2 workers", "",
        f"Candidates of nearly fixed cost: {opt['model']} on {opt['data']}, channel space with every unit "
        f"keeping {min(opt['keep']):.0%}-{max(opt['keep']):.0%} of its channels, {batches} fine-tuning "
        f"batches each (about {opt['seconds']:g} s on one core: {cost}). Each arm runs the real search path "
        f"(`run_search`, `algo=random`, seed {opt['seed']}: the same genomes in every arm) to "
        f"{opt['trials']} evaluated candidates in its own SQLite study, from one shared base checkpoint. "
        "The local executor trains one candidate at a time in the driver's process with torch on one "
        "thread; each Ray worker has one CPU (`ray.cpus_per_trial=1`, one torch thread): one candidate is "
        "one core in every arm, and Ray's parallelism is compared against that. This machine has "
        f"{os.cpu_count()} cores, shared by the driver, Ray's own processes and the workers.", "",
        "End-to-end: all of the arm's wall time (Ray: from `ray.init` to `ray.shutdown`, with the workers' "
        "start-up). Steady state: from the moment each worker has finished its first trial to the last "
        "completion. Overhead per trial: steady-state wall time per trial per worker minus the median "
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
            if name != "local":
                lines.append(
                    f"| {name} | {_fmt(a['e2e_per_min'] / local['e2e_per_min'])}x | "
                    f"{_fmt(a['steady_per_min'] / local['steady_per_min'])}x | "
                    f"{_fmt(a['train_s_median'] / local['train_s_median'])}x | "
                    f"{_fmt(a['overhead_per_trial_s'] - local['overhead_per_trial_s'], '+.2f')} |")
        lines += ["", "With 2 workers on 2 cores the driver, Tune's event loop and Ray's daemons take CPU "
                  "from the workers: that shows as a longer fine-tuning time than the local arm's (the "
                  "'fine-tune time' column), not as overhead.", ""]
    goals = ["## Goals", ""]
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
        if name != "local":
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
    try:
        keep = "[" + ",".join(str(float(k)) for k in opt["keep"]) + "]"
        common = [f"space.model={opt['model']}", f"data={opt['data']}", f"space.keep={keep}",
                  "constraint.flops=null", "algo=random", f"seed={opt['seed']}", f"trials={opt['trials']}",
                  "progress=false", f"base.epochs={opt['base_epochs']}", f"base.cache_dir={work / 'bases'}"]
        # One base for every arm (trained here, once).
        base_ctx = SearchContext.build(load_config([*common, f"storage=sqlite:///{work / 'base.db'}"]), quiet=True)
        base_ckpt = work / "base.pt"
        torch.save(base_ctx.base.state_dict(), base_ckpt)
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
        for arm in opt["arms"]:
            result = _run_arm(arm, common, work)
            arms[arm] = result
            print(f"{arm}: {result['evaluated']} candidates in {result['wall_s']:.1f} s "
                  f"({result['e2e_per_min']:.2f}/min end-to-end, {_fmt(result['steady_per_min'])}/min steady; "
                  f"fine-tune {_fmt(result['train_s_median'])} s, overhead {_fmt(result['overhead_per_trial_s'])} s"
                  + (f"; ray.init {result['ray_init_s']:.1f} s" if result["ray_init_s"] is not None else "")
                  + ")", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # studies and base: the report keeps the figures
    markdown = _markdown(opt, cal, arms, batches)
    path = write_report("executor", markdown, {"options": opt, "calibration": cal, "batches": batches,
                                               "goals": {"speedup": GOAL_SPEEDUP, "overhead_s": GOAL_OVERHEAD_S},
                                               "arms": arms}, opt["out"])
    print(f"wrote {path}")
    return 0
