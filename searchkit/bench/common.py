"""Shared benchmark plumbing: machine facts, options, writing the report pair."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from searchkit import __version__
from searchkit.config import parse_override


def machine() -> dict[str, Any]:
    import optuna

    from searchkit.costs.profiling import cpu_model
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "optuna": optuna.__version__,
            "searchkit": __version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def cpu_with_flags(flags: tuple[str, ...] = ("avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_vpopcntdq",
                                            "avx2", "fma", "popcnt")) -> str:
    """The CPU model and which of ``flags`` it has (kernel benchmarks print what they ran on)."""
    from searchkit.costs.profiling import cpu_model
    have: set[str] = set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    isa = [f for f in flags if f in have]
    return f"{cpu_model()} ({' '.join(isa) or 'no x86 vector flags found'})"


def interleaved_times(fns: dict, rounds: int, budget: float = 0.05) -> dict[str, float]:
    """Median seconds per call of each fn, rounds interleaved; each round ~``budget`` s."""
    reps = {}
    for k, f in fns.items():
        f()
        start = time.perf_counter()
        f()
        reps[k] = max(1, int(budget / max(time.perf_counter() - start, 1e-7)))
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            start = time.perf_counter()
            for _ in range(reps[k]):
                f()
            out[k].append((time.perf_counter() - start) / reps[k])
    return {k: statistics.median(v) for k, v in out.items()}


def options(argv: list[str], defaults: dict[str, Any]) -> dict[str, Any]:
    """``key=value`` options over ``defaults``; unknown keys are errors."""
    out = dict(defaults)
    for item in argv:
        key, value = parse_override(item)
        if key not in out:
            raise SystemExit(f"searchkit.bench: error: unknown option '{key}' (options: {', '.join(out)})")
        out[key] = value
    return out


def baseline_tree(ref: str) -> Path:
    """A checkout of git ``ref`` of this repository (a detached worktree in the temporary
    directory, made once per commit), to measure an earlier version side by side."""
    import subprocess
    import tempfile
    root = Path(__file__).resolve().parents[2]
    sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", f"{ref}^{{commit}}"],
                         capture_output=True, text=True)
    if sha.returncode != 0:
        raise SystemExit(f"searchkit.bench: error: baseline={ref} is not a commit of {root}")
    tree = Path(tempfile.gettempdir()) / f"searchkit-baseline-{sha.stdout.strip()[:12]}"
    if not (tree / "searchkit").is_dir():
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", "-f", str(tree), sha.stdout.strip()],
                       check=True, capture_output=True)
    return tree


def run_in(tree: Path, args: list[str], *, timeout: float = 7200) -> str:
    """``python ARGS`` with ``tree``'s searchkit first on the path; returns stdout."""
    import subprocess
    env = {**os.environ, "PYTHONPATH": str(tree), "CI": "1"}
    env.pop("SEARCHKIT_PLUGINS", None)
    proc = subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} in {tree} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def write_report(name: str, markdown: str, data: dict, out_dir: str = "reports/bench") -> Path:
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    command = "python -m searchkit.bench " + " ".join([name, *sys.argv[2:]])
    header = (f"<!-- written by `{command}` -->\n\n")
    footer = "\n## Machine\n\n" + "\n".join(f"- {k}: {v}" for k, v in machine().items()) + \
        f"\n\nReproduce: `{command}`\n"
    (path / f"{name}.md").write_text(header + markdown + footer)
    (path / f"{name}.json").write_text(json.dumps({**data, "machine": machine(), "command": command},
                                                  indent=2, sort_keys=True, default=str))
    return path / f"{name}.md"


def latency_target(name: str, root: str, *, quick: bool, work: Path, runtime: str = "onnxruntime") -> tuple[str, str, str]:
    """``(target, dir, how)``: the named fitted profile of ``runtime``, or (``quick``) a quick
    profile of this machine fitted in ``work`` for a smoke run."""
    from searchkit.costs.profiling import fit, load_predictor, profile, target_dir
    if (target_dir(name, root) / "predictor.json").is_file():
        got = load_predictor(name, root).meta.get("runtime", "torch")
        if got != runtime:
            raise SystemExit(f"searchkit.bench: error: target '{name}' was profiled on {got}, not {runtime}")
        return name, str(root), f"`{name}` (full profile)"
    if not quick:
        raise SystemExit(f"searchkit.bench: error: no predictor for target '{name}' in {root}/; run "
                         f"`searchkit latency profile target={name} runtime={runtime}` and "
                         f"`searchkit latency fit target={name}` first (or quick=true)")
    quick_root = work / "latency"
    profile("quick", sweep="quick", root=quick_root, progress=False, log=lambda *a: None, runtime=runtime)
    fit("quick", root=quick_root)
    return "quick", str(quick_root), f"a quick {runtime} profile fitted for this run (a smoke test)"


@dataclass
class Profiled:
    """A benchmark's own profile of this CPU: its fitted predictor, the minutes profiling and
    fitting took, and some of its calibration models with the times the profile measured for
    them (speed references)."""

    predictor: Any
    minutes: float
    references: list
    reference_ms: list[float]

    def measure(self, models: list[tuple], rounds: int) -> tuple[list[float], float | None]:
        """``models`` measured (ms) at the profile's thread count, beside the speed references;
        with the machine's speed now against while profiled (>1: slower now)."""
        from searchkit.costs.profiling import measure_beside_references
        old = torch.get_num_threads()
        torch.set_num_threads(int(self.predictor.meta.get("threads", 1)))
        try:
            refs = [(s.build(), s.input_size) for s in self.references]
            return measure_beside_references(models, refs, self.reference_ms, rounds=rounds)
        finally:
            torch.set_num_threads(old)


def profile_this_cpu(sweep: str, rounds: int) -> Profiled:
    """A torch-runtime profile of this CPU (one thread), fitted, in a temporary folder."""
    import tempfile

    from searchkit.costs.profiling import speed_references, fit, load_predictor, profile
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="searchkit-bench-profile-") as root:
        profile("bench", sweep=sweep, rounds=rounds, root=root, progress=False, log=lambda *a: None)
        fit("bench", root)
        predictor = load_predictor("bench", root)
        refs, ref_ms = speed_references("bench", root)
    return Profiled(predictor, (time.perf_counter() - started) / 60, refs, ref_ms)


def prediction_facts(predicted, measured) -> dict[str, float]:
    """RMSPE, shares within ±5/10 %, mean and worst error, and Spearman's ρ."""
    import numpy as np
    from scipy.stats import spearmanr

    from searchkit.costs.latency import relative_errors
    return {**relative_errors(predicted, measured), "spearman": float(spearmanr(np.asarray(predicted),
                                                                                  np.asarray(measured))[0])}


def latency_bound(cost, fraction: float) -> float:
    """A bound of ``fraction`` of the base's predicted latency, raised where this machine's
    smallest architecture is predicted slower than that (to a quarter of the way from it to
    the base, plus the predictor's margin): a bound a search can meet, not a refusal."""
    base, floor = cost.base(), cost.floor()
    # a quick profile's noise can price the smallest architecture above the base: then the floor
    ms = max(fraction * base, (floor + 0.25 * max(base - floor, 0.0)) * (1 + cost.margin()))
    return math.ceil(ms * 1e4 + 0.5) / 1e4  # rounded up, so the bound stays above the floor


def quick_options(opt: dict[str, Any], argv: list[str], quick: dict[str, Any]) -> dict[str, Any]:
    """``opt`` with a benchmark's ``quick=true`` settings, except those given on the command line."""
    if not opt["quick"]:
        return opt
    return {**opt, **{k: v for k, v in quick.items() if not any(a.startswith(f"{k}=") for a in argv)}}


def work_dir(opt: dict[str, Any], prefix: str) -> Path:
    """``work=DIR`` (reused by a later run: its trained bases), else a fresh temporary folder."""
    import tempfile
    work = Path(opt["work"]) if opt["work"] else Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    return work


def trained(trials) -> list:
    """The trials of a study that were trained and told a value."""
    return [t for t in trials if t.values and t.user_attrs.get("searchkit:evaluated")]


def best_within(study, seconds: float):
    """``(best trial, count)`` among a study's trained trials finished within ``seconds`` of its
    first start (a black-box arm cut at another arm's wall-clock); ``None`` if there are none."""
    began = min(t.datetime_start for t in study.trials)
    within = [t for t in trained(study.trials) if (t.datetime_complete - began).total_seconds() <= seconds]
    return (max(within, key=lambda t: t.values[0]), len(within)) if within else None


def run_cells(fn, cells: list[tuple], jobs: int) -> list[dict]:
    """``fn(*cell)`` for every cell, ``jobs`` at a time in spawned processes; their rows joined."""
    import concurrent.futures as cf
    import multiprocessing as mp
    rows: list[dict] = []
    if jobs > 1:
        with cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            for f in cf.as_completed([pool.submit(fn, *cell) for cell in cells]):
                rows += f.result()
    else:
        for cell in cells:
            rows += fn(*cell)
    return rows
