"""space=tinynet end to end: in-band candidates, export at the chosen resolution, the formula."""

import json
import os
import subprocess
import sys

from searchkit import study as st
from searchkit.config import load_config
from searchkit.export import export_study
from searchkit.search import run_search

TINY = ["space=tinynet", "data=synthetic", "data.image_size=16", "data.options={size: 128}",
        "finetune.max_batches=2", "progress=false", "space.options.r=[0.5,1.0,0.125]",
        "space.options.d=[0.25,0.5,0.05]", "space.options.w=[0.25,0.5,0.05]"]


def test_tinynet_search_export_and_formula(workdir):
    cfg = load_config(TINY + ["algo=tpe", "trials=3", "constraint.flops=0.6", "algo.n_startup_trials=2"])
    out = run_search(cfg, quiet=True)
    assert out.evaluated == 3
    lo, hi = out.context.space.flops_band
    for t in st.evaluated_trials(out.study):
        assert lo <= t.user_attrs["flops"] <= hi  # every trained candidate inside the band
    folders = export_study(cfg.study_name, cfg.storage, out=workdir / "exp", top=1)
    meta = json.loads((folders[0] / "arch.json").read_text())
    side = meta["input_side"]
    assert meta["input_size"] == [3, side, side]
    code = ("import sys; sys.modules['searchkit'] = None\nimport torch\n"
            f"m = torch.export.load({str(folders[0] / 'model.pt2')!r}).module()\n"
            f"print(tuple(m(torch.randn(3, 3, {side}, {side})).shape))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(3, 10)"
    env = {**os.environ, "CI": "1"}
    target = (lo + hi) / 2
    proc = subprocess.run([sys.executable, "-m", "searchkit", "tinynet", "formula", f"study={cfg.study_name}",
                           f"flops={target}"], capture_output=True, text=True, timeout=300, cwd=workdir, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "FLOPs" in proc.stdout
    import optuna
    stored = optuna.load_study(study_name=cfg.study_name, storage=cfg.storage).user_attrs["searchkit:tinyformula"]
    genome = stored["last_genome"]
    flops = out.context.space.costs(genome).flops
    assert abs(flops / target - 1) <= 0.03
    assert stored["fit"]["data"]
