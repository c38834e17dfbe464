"""space=tinynet end to end: in-band candidates, export at the chosen resolution, the formula."""

import json
import os
import subprocess
import sys

import pytest

from searchkit import study as st
from searchkit.config import load_config
from searchkit.export import export_study
from searchkit.search import run_search

TINY = ["space=tinynet", "data=synthetic", "data.image_size=16", "data.options={size: 128}",
        "finetune.max_batches=2", "progress=false", "space.r=[0.5,1.0,0.125]",
        "space.d=[0.25,0.5,0.05]", "space.w=[0.25,0.5,0.05]"]


def test_tinynet_search_export_and_formula(workdir):
    cfg = load_config(TINY + ["algo=tpe", "trials=3", "constraint.flops=0.6", "algo.n_startup_trials=2"])
    out = run_search(cfg, quiet=True)
    assert out.evaluated == 3
    lo, hi = out.setup.space.flops_band
    for t in st.evaluated_trials(out.study):
        assert lo <= t.user_attrs["cost:flops"] <= hi  # every trained candidate inside the band
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
    flops = out.setup.space.flops_params(genome)[0]
    assert abs(flops / target - 1) <= 0.03
    assert stored["fit"]["data"]


# The quick-start data (scikit-learn's digits), cut down: ABC's and the GA's genomes are raw
# grid vectors that the space maps into the band; every bee/child must land there, and the
# many-to-one map must not turn the search into a storm of rejected or duplicate asks.
DIGITS = ["space=tinynet", "data=digits", "data.image_size=16", "data.max_train=96",
          "finetune.max_batches=1", "finetune.batch_size=16", "progress=false",
          "space.options.r=[0.5,1.0,0.125]", "space.options.d=[0.25,0.5,0.05]",
          "space.options.w=[0.25,0.5,0.05]", "constraint.flops=0.5"]


@pytest.mark.parametrize("algo, options, phases", [
    ("abc", ["algo.food_number=2", "algo.food_limit=1"], {"init", "employed", "onlooker"}),
    ("ga", ["algo.population_size=2", "algo.elitism=1"], {0, 1}),
])
def test_tinynet_abc_and_ga_stay_in_band(workdir, algo, options, phases):
    from searchkit.strategies.abc import role_of
    from searchkit.strategies.ga import member_of

    cfg = load_config(DIGITS + [f"algo={algo}", "trials=6"] + options)
    out = run_search(cfg, quiet=True)
    assert out.evaluated == 6 and out.stop_reason == "budget"
    space = out.setup.space
    lo, hi = space.flops_band
    trials = out.study.trials
    assert not any(t.user_attrs.get(st.INFEASIBLE) for t in trials)  # nothing rejected
    assert len(trials) <= 3 * 6  # duplicates (free, never trained) stay few
    for t in trials:
        genome = t.user_attrs[st.GENOME]
        assert genome == space.genome_of(t.params)  # the strategy's vector maps to it
        assert lo <= space.flops_params(genome)[0] <= hi == out.setup.limits["flops"]
    for t in st.evaluated_trials(out.study):
        assert lo <= t.user_attrs["cost:flops"] <= hi
    seen = {role_of(t)["phase"] if algo == "abc" else member_of(t)["generation"] for t in trials}
    assert phases <= seen  # past the random start: mutants/children were mapped too
