"""Seeded searches whose outcome is pinned by ``golden.json``, per CPU numerics.

A search's values depend on the last bits of the float kernels, and those differ between
CPUs (torch and oneDNN dispatch other kernels on AVX-512 than on AVX2): one validation
image scored differently moves every later proposal. So each run is recorded per
:func:`numerics_key` (CPU model and torch's CPU capability).
``python -m tests.golden.runs record`` writes the file again with this machine's runs only
(after an intended change of behaviour); ``record --add`` adds this machine's to the
others (the code unchanged, a new kind of CPU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

GOLDEN = Path(__file__).with_name("golden.json")

COMMON = ["data=synthetic", "data.options={size: 256}", "base.epochs=1", "finetune.max_batches=2",
          "progress=false"]
CHANNELS = ["space=channels", "space.model=resnet20", "constraint.flops=0.5"]
TINYNET = ["space=tinynet", "data.image_size=16", "space.options.r=[0.5,1.0,0.125]",
           "space.options.d=[0.25,0.5,0.05]", "space.options.w=[0.25,0.5,0.05]", "constraint.flops=0.6"]
RUNS = {
    "channels-abc": CHANNELS + ["algo=abc", "algo.food_number=3", "algo.food_limit=1", "seed=3", "trials=16"],
    "channels-ga": CHANNELS + ["algo=ga", "algo.population_size=3", "seed=4", "trials=12"],
    "channels-tpe": CHANNELS + ["algo=tpe", "algo.n_startup_trials=3", "seed=5", "trials=10"],
    "channels-abc-pareto": ["space=channels", "space.model=resnet20", "constraint.flops=null", "algo=abc",
                            "algo.food_number=3", "objectives=[accuracy,flops]", "seed=7", "trials=10"],
    "channels-random-norepair": CHANNELS + ["algo=random", "repair=false", "seed=8", "trials=4"],
    "tinynet-tpe": TINYNET + ["algo=tpe", "algo.n_startup_trials=2", "seed=6", "trials=8"],
}
ROLE_KEYS = ("abc:role", "ga:member")


def run(name: str, storage: str) -> list[dict]:
    """One run's trials as plain JSON: what the strategy proposed and what it was told."""
    from searchkit.config import load_config
    from searchkit.search import run_search

    out = run_search(load_config(COMMON + RUNS[name] + [f"study={name}", f"storage={storage}"]), quiet=True)
    rows = []
    for t in out.study.get_trials(deepcopy=False):
        ua = t.user_attrs
        rows.append({
            "number": t.number, "state": t.state.name, "archid": ua.get("archid"),
            "values": list(t.values) if t.values else None,
            "role": next((t.system_attrs[k] for k in ROLE_KEYS if k in t.system_attrs), None),
            "infeasible": bool(ua.get("searchkit:infeasible")),
            "duplicate_of": ua.get("searchkit:duplicate_of"),
        })
    return rows


def numerics_key() -> str:
    """What decides the float kernels a run gets here: the CPU model and torch's capability."""
    import torch

    from searchkit.costs.profiling import cpu_model
    return f"{cpu_model() or 'unknown CPU'} / {torch.backends.cpu.get_cpu_capability()}"


def record(workdir: Path, add: bool = False) -> None:
    import os
    os.chdir(workdir)
    data = json.loads(GOLDEN.read_text()) if add and GOLDEN.is_file() else {}
    key = numerics_key()
    for name in RUNS:
        data.setdefault(name, {})[key] = run(name, f"sqlite:///{workdir / 'golden.db'}")
    GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__" and sys.argv[1:2] == ["record"]:
    import tempfile

    import torch
    torch.set_num_threads(1)
    record(Path(tempfile.mkdtemp(prefix="golden-")), add=sys.argv[2:] == ["--add"])
